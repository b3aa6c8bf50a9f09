//! The edges of the messages service: HTTP routes and the CLI client.

pub mod cli;
pub mod hot;
pub mod http;
