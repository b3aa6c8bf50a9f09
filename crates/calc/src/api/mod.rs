//! calc's interfaces: gRPC `quintet.calc.v1.Calculator` and its command-line
//! client (the REST mapping comes later).

pub mod cli;
pub mod grpc;
