//! calc's options (`quintet serve` flags and their `QUINTET_…` environment
//! variables).

use crate::domain;

/// calc service options.
#[derive(Debug, Clone, clap::Args)]
pub struct CalcConfig {
    /// Largest n `NthPrimes` computes (the 10^9-th prime takes seconds of one core).
    #[arg(long, env = "QUINTET_CALC_MAX_N", default_value_t = 1_000_000_000, value_parser = clap::value_parser!(u64).range(1..=domain::primes::MAX_N))]
    pub calc_max_n: u64,

    /// Widest range `Primes` streams.
    #[arg(long, env = "QUINTET_CALC_MAX_RANGE", default_value_t = 1_000_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub calc_max_range: u64,

    /// Prime computations running at once (0: one per CPU); more wait their turn.
    #[arg(long, env = "QUINTET_CALC_MAX_SIEVES", default_value_t = 0)]
    pub calc_max_sieves: usize,

    /// Where every calculation is recorded: `redb` (a file in the data dir),
    /// `redb:///dir`, `postgres://…`, `nats://host:4222[?stream=…&subject=…]`
    /// (`JetStream`), or `none`. Default: the `--store` engine (redb or `PostgreSQL`).
    #[arg(long, env = "QUINTET_CALC_EVENTS", value_name = "URL")]
    pub calc_events: Option<String>,

    /// Events held in memory while the event log is slow or down; beyond
    /// that, new events are dropped and counted (`quintet_calc_events_dropped_total`).
    #[arg(long, env = "QUINTET_CALC_EVENT_BUFFER", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub calc_event_buffer: u64,

    /// When a calculation is answered: `buffered` at once (its event is appended
    /// within ~100 ms; a killed process loses the events not yet appended), or
    /// `appended` only once its event is in the log (UNAVAILABLE / 503 when the
    /// log does not take it; every answered calculation is then in the history).
    #[arg(long, env = "QUINTET_CALC_EVENT_ACK", value_enum, default_value_t = crate::engine::recorder::EventAck::Buffered)]
    pub calc_event_ack: crate::engine::recorder::EventAck,
}
