//! calc: seed 003's gRPC calculator — checked int64 arithmetic and prime
//! numbers (the n-th prime, primes in a range), computed by a segmented sieve.
//!
//! Rooms: [`domain`] (the arithmetic, the sieve, and their errors; pure, no
//! I/O) and [`api`] (gRPC `quintet.calc.v1.Calculator` on the shared
//! listener, and its command-line client). Not yet: the REST mapping, the
//! event log.

pub mod api;
pub mod domain;

/// Generated protobuf types for quintet's calculator API.
pub mod proto {
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
}

/// Builds the service the platform mounts: the gRPC calculator.
pub fn service(config: CalcConfig) -> platform::Service {
    platform::Service::new("calc").grpc(api::grpc::server(api::grpc::Limits {
        max_n: config.calc_max_n,
        max_range: config.calc_max_range,
    }))
}
