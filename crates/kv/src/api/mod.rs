//! kv's edges: gRPC, REST (with the seed's REST twin) and the seed's raw-TCP
//! protocol. Each maps kv errors to its own answers in one place.

pub mod cli;
pub mod grpc;
pub mod http;
pub mod seed_tcp;
pub mod tcp_tls;

#[cfg(test)]
mod seed_tcp_fuzz;
