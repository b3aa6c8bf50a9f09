//! The receipts service's interfaces: REST (submit jobs, read and write
//! queues) and the CLI.

pub mod cli;
pub mod http;
