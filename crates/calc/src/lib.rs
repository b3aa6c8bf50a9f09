//! calc: seed 003's gRPC calculator — checked int64 arithmetic and prime
//! numbers (the n-th prime, primes in a range) computed by a segmented sieve —
//! with the seed's open question answered: every calculation is appended to
//! an event log.
//!
//! Rooms: [`config`] (the service's options), [`domain`] (arithmetic, the
//! sieve, the `CalculationPerformed` event; pure, no I/O), [`ports`] (the
//! `EventLog`, and [`ports::Backends`]), [`adapters`] (redb, PostgreSQL, NATS
//! JetStream), [`engine`] (the calculator and the recorder: compute and
//! record without waiting on the log), [`api`] (gRPC
//! `quintet.calc.v1.Calculator`, its REST mapping, the CLI) and [`metrics`]
//! (every metric it emits).

use std::sync::Arc;

pub mod adapters;
pub mod api;
pub mod config;
pub mod domain;
pub mod engine;
pub mod metrics;
pub mod ports;

pub use config::CalcConfig;
use engine::{calculator, recorder};
/// Generated protobuf types for quintet's calculator API.
pub mod proto {
    /// The encoded descriptor set of calc's protos, for gRPC server reflection.
    pub const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));

    pub mod v1 {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("quintet.calc.v1");
    }
}

/// Builds the service the platform mounts: gRPC and REST over one
/// [`calculator::Calculator`], and the task writing its events to the
/// backends' event log (`None`: events are not kept).
pub async fn service(
    config: CalcConfig,
    backends: ports::Backends,
    _ctx: &platform::service::Context,
) -> anyhow::Result<platform::Service> {
    metrics::describe();
    let log = backends.events;
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
    Ok(match writer {
        Some(writer) => service.background("calc-events", move |stop| {
            Box::pin(async move { writer.run(stop).await })
        }),
        None => service,
    })
}
