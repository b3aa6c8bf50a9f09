//! calc's interfaces: gRPC `quintet.calc.v1.Calculator` (REST and the CLI come later).

pub mod grpc;
