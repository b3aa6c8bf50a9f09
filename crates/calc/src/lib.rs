//! calc: seed 003's gRPC calculator — checked int64 arithmetic and prime
//! numbers (the n-th prime, primes in a range) computed by a segmented sieve —
//! with the seed's open question answered: every calculation is appended to
//! an event log.
//!
//! Rooms: [`domain`] (arithmetic, the sieve, the `CalculationPerformed`
//! event; pure, no I/O), [`ports`] (the `EventLog`), [`adapters`] (redb,
//! PostgreSQL, NATS JetStream), [`calculator`] and [`recorder`] (compute and
//! record without waiting on the log), and [`api`] (gRPC
//! `quintet.calc.v1.Calculator`, its REST mapping, the CLI).

use std::sync::Arc;

pub mod adapters;
pub mod api;
pub mod calculator;
pub mod domain;
pub mod ports;
pub mod recorder;

/// Generated protobuf types for quintet's calculator API.
pub mod proto {
    /// The encoded descriptor set of calc's protos, for gRPC server reflection.
    pub const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));

    pub mod v1 {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("quintet.calc.v1");
    }
}

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
    /// (JetStream), or `none`. Default: the `--store` engine (redb or PostgreSQL).
    #[arg(long, env = "QUINTET_CALC_EVENTS", value_name = "URL")]
    pub calc_events: Option<String>,

    /// Events held in memory while the event log is slow or down; beyond
    /// that, new events are dropped and counted (quintet_calc_events_dropped_total).
    #[arg(long, env = "QUINTET_CALC_EVENT_BUFFER", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub calc_event_buffer: u64,
}

/// Builds the service the platform mounts: gRPC and REST over one
/// [`calculator::Calculator`], and the task writing its events to `log`
/// (`None`: events are not kept).
pub fn service(config: CalcConfig, log: Option<Arc<dyn ports::EventLog>>) -> platform::Service {
    let max_sieves = match config.calc_max_sieves {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let limits = calculator::Limits {
        max_n: config.calc_max_n,
        max_range: config.calc_max_range,
        max_sieves,
    };
    let (recorder, writer) = match &log {
        Some(log) => {
            let (recorder, writer) =
                recorder::Recorder::new(log.clone(), config.calc_event_buffer as usize);
            (recorder, Some(writer))
        }
        None => (recorder::Recorder::disabled(), None),
    };
    let readiness = log.clone().map(ports::EventLogReadiness);
    let calculator = Arc::new(calculator::Calculator::new(limits, recorder, log));
    let mut service = platform::Service::new("calc")
        .routes(api::http::router(calculator.clone()))
        .openapi(api::http::openapi(config.calc_max_n))
        .grpc(api::grpc::server(calculator))
        .grpc_descriptors(proto::DESCRIPTORS);
    if let Some(readiness) = readiness {
        service = service.readiness(Arc::new(readiness));
    }
    match writer {
        Some(writer) => service.background("calc-events", move |stop| {
            Box::pin(async move { writer.run(stop).await })
        }),
        None => service,
    }
}
