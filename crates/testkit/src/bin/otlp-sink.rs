//! An OTLP/gRPC trace receiver that accepts and counts spans, for the trace
//! benchmark (`bench/traces.sh`): `otlp-sink 127.0.0.1:4317` prints
//! `listening <addr>`, then, each second the count changed, `spans <n>`.

#![allow(clippy::expect_used)]

use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned())
        .parse()
        .expect("an address: host:port");
    let (receiver, local) = testkit::otlp::Receiver::counting(addr).await;
    println!("listening {local}");
    let mut last = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = receiver.count();
        if now != last {
            println!("spans {now}");
            last = now;
        }
    }
}
