//! API tests: the application built in-process on port 0 (no child process,
//! no log scraping), driven over HTTP, HTTPS and gRPC like a client would.
//! Tests that need a separate process (exit codes, signals, crashes, the
//! CLI, the server's log) are in the e2e target.

// A failed expectation is the test failing; a test is one scenario read
// top to bottom, however long.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod app;
mod calc;
mod calc_events;
#[path = "../common/mod.rs"]
mod common;
mod counters;
mod edge_attacks;
mod kv;
mod kv_tcp_security;
mod lifecycle;
mod messages_api;
mod ops;
mod security;
mod support;
