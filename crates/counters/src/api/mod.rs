//! The edges of the counters service: HTTP routes and the CLI client.

pub mod cli;
pub mod http;
