//! A request's own deadline.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::spawn_app;

#[tokio::test]
async fn a_request_slower_than_the_timeout_gets_503() {
    let server = spawn_app(&["--request-timeout", "300ms"]).await;
    let mut slow = TcpStream::connect(server.addr).await.expect("connect");
    // Headers arrive, the body never completes.
    slow.write_all(
        b"POST /messages HTTP/1.1\r\nHost: quintet\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nhel",
    )
    .await
    .expect("write");
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut answer))
        .await
        .expect("answered before the test gave up")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("request timed out after 300ms"), "{answer}");
}
