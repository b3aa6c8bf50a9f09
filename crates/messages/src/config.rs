//! The messages service's options (`quintet serve` flags and their
//! `QUINTET_…` environment variables).

/// Messages service options.
#[derive(Debug, Clone, clap::Args)]
pub struct MessagesConfig {
    /// Largest message accepted, in bytes of UTF-8 text; larger ones get 413.
    #[arg(long, env = "QUINTET_MAX_MESSAGE_BYTES", default_value_t = 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Memory kept for the answers of recently read messages, in bytes: a
    /// `GET` of one of them is answered without the store. 0 turns it off.
    #[arg(long, env = "QUINTET_MESSAGE_CACHE_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub message_cache_bytes: u64,
}
