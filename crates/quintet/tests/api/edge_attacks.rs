//! The HTTP edge under attack, as far as an answer shows it: an oversized
//! announced body (a row of SECURITY.md's findings table).

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use crate::support::{read_to_close, spawn_app};

#[tokio::test]
async fn an_announced_body_over_the_limit_is_refused_before_it_is_sent() {
    let server = spawn_app(&["--services", "messages", "--max-body-bytes", "1048576"]).await;
    let addr = server.addr;
    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .write_all(
                b"POST /messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                  Content-Length: 1000000000\r\n\r\n",
            )
            .expect("write");
        // Not a byte of the body: the answer must come anyway, and the connection close.
        read_to_close(&mut stream, Duration::from_secs(5))
    })
    .await
    .expect("socket")
    .expect("answered and closed without reading the body");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(
        text.contains("1000000000") && text.contains("--max-body-bytes"),
        "{text}"
    );
}
