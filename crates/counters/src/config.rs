//! The counters service's options (`quintet serve` flags and their
//! `QUINTET_…` environment variables).

use std::time::Duration;

use crate::domain;
use crate::engine::Durability;

/// Counters service options.
#[derive(Debug, Clone, clap::Args)]
pub struct CountersConfig {
    /// When an increment is acknowledged: `journal` (after an fsynced local journal; a crash
    /// loses nothing) or `memory` (at once; a crash loses what was not flushed yet).
    #[arg(long, env = "QUINTET_DURABILITY", value_enum, default_value_t = Durability::Journal)]
    pub durability: Durability,

    /// How often pending increments are written to the store.
    #[arg(long, env = "QUINTET_FLUSH_INTERVAL", value_parser = platform::config::parse_duration, default_value = "10s")]
    pub flush_interval: Duration,

    /// Flush early once this many keys have pending increments.
    #[arg(long, env = "QUINTET_FLUSH_MAX_KEYS", default_value_t = 100_000)]
    pub flush_max_keys: usize,

    /// Keys with pending increments at most; beyond, increments to new keys get 503
    /// (e.g. while the store is unreachable).
    #[arg(long, env = "QUINTET_MAX_PENDING_KEYS", default_value_t = 2_000_000)]
    pub max_pending_keys: usize,

    /// Flushed totals kept in memory to answer without a store read.
    #[arg(long, env = "QUINTET_MAX_CACHED_KEYS", default_value_t = 1_000_000)]
    pub max_cached_keys: usize,

    /// Longest counter key, in bytes of UTF-8.
    #[arg(long, env = "QUINTET_COUNTER_MAX_KEY_BYTES", default_value_t = domain::DEFAULT_MAX_KEY_BYTES)]
    pub counter_max_key_bytes: usize,
}
