//! calc's interfaces: gRPC `quintet.calc.v1.Calculator`, its REST mapping
//! under `/calc/…`, and the command-line client.

pub mod cli;
pub mod grpc;
pub mod http;
