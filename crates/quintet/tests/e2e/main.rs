//! End-to-end tests: the real `quintet` binary on port 0, driven over HTTP,
//! HTTPS, gRPC, raw TCP and its own CLI.

// A failed expectation is the test failing; a test is one scenario read
// top to bottom, however long.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod calc;
mod calc_events;
mod cli;
#[path = "../common/mod.rs"]
mod common;
mod copy;
mod counters;
mod edge_attacks;
mod errors;
mod integrity;
mod kv;
mod kv_aws;
mod kv_seed;
mod kv_tcp_security;
mod lifecycle;
mod metrics;
mod migrate;
mod ops;
mod postgres;
mod readme;
mod receipts;
mod receipts_aws;
mod security;
mod support;
mod traces;
