//! The seed's raw-TCP protocol, wire-compatible: one protobuf `req_envelope`
//! (proto2, `proto/seed/key_value.proto`) per request with no length prefix,
//! one envelope back, many requests per connection.
//!
//! With no length prefix, a request ends where its fields do: the reader
//! walks the top-level fields as they arrive, and a request is complete once
//! it holds its `type` and the sub-message that type needs, each of them
//! whole (a length-delimited field is whole only when all its bytes are in).
//! A field number seen twice starts the next request (pipelining). Bytes that
//! are not protobuf, or a request larger than the limit, get `internal` and
//! the connection is closed, with a log line; the server never panics.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::domain::KvKey;
use crate::proto::seed::{
    Data, GetResponse, ReqEnvelope, SetResponse, get_response, req_envelope, set_response,
};
use crate::vault::{KvError, Vault};

/// A request that has sat half-received this long closes the connection.
const PARTIAL_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// An idle connection (between requests) is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Where the next request ends, if it is all here.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// The first `n` bytes are one whole request.
    Complete(usize),
    /// More bytes are needed.
    Incomplete,
}

/// The bytes are not a request.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed request: {0}")]
pub struct Malformed(pub &'static str);

fn varint(buf: &[u8], pos: &mut usize) -> Result<Option<u64>, Malformed> {
    let mut value = 0u64;
    for shift in 0..10 {
        let Some(&byte) = buf.get(*pos) else {
            return Ok(None);
        };
        *pos += 1;
        value |= u64::from(byte & 0x7f) << (7 * shift);
        if byte & 0x80 == 0 {
            return Ok(Some(value));
        }
    }
    Err(Malformed("varint longer than 10 bytes"))
}

/// Finds the end of the first request in `buf`, refusing requests over `max` bytes.
pub fn frame(buf: &[u8], max: usize) -> Result<Frame, Malformed> {
    let mut pos = 0;
    let mut seen = 0u32; // bit n: field n (1..=5) is in
    let complete = |seen: u32| {
        seen & 0b10 != 0 && seen & 0b11_1100 != 0 // type and a sub-message
    };
    loop {
        if pos > max {
            return Err(Malformed("request larger than the limit"));
        }
        if pos == buf.len() {
            return Ok(if complete(seen) {
                Frame::Complete(pos)
            } else {
                Frame::Incomplete
            });
        }
        let start = pos;
        let Some(key) = varint(buf, &mut pos)? else {
            return Ok(Frame::Incomplete);
        };
        let field = key >> 3;
        if !(1..=5).contains(&field) {
            return Err(Malformed("unknown field"));
        }
        let bit = 1u32 << field;
        if seen & bit != 0 {
            return if complete(seen) {
                Ok(Frame::Complete(start))
            } else {
                Err(Malformed("field repeated before the request was complete"))
            };
        }
        match key & 7 {
            0 => {
                if varint(buf, &mut pos)?.is_none() {
                    return Ok(Frame::Incomplete);
                }
            }
            2 => {
                let Some(len) = varint(buf, &mut pos)? else {
                    return Ok(Frame::Incomplete);
                };
                let len = usize::try_from(len).map_err(|_| Malformed("length too large"))?;
                if len > max {
                    return Err(Malformed("request larger than the limit"));
                }
                if buf.len() - pos < len {
                    return Ok(Frame::Incomplete);
                }
                pos += len;
            }
            _ => return Err(Malformed("unexpected wire type")),
        }
        seen |= bit;
    }
}

/// Serves the protocol on `listener` until `stop`; connections finish their
/// current request and close.
pub async fn serve(listener: TcpListener, vault: Arc<Vault>, stop: CancellationToken) {
    let tracker = tokio_util::task::TaskTracker::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    metrics::counter!("quintet_kv_tcp_connections_total").increment(1);
                    tracker.spawn(connection(stream, vault.clone(), stop.clone(), peer));
                }
                Err(error) => {
                    tracing::warn!(%error, "kv tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    tracker.close();
    tracker.wait().await;
}

async fn connection(
    mut stream: TcpStream,
    vault: Arc<Vault>,
    stop: CancellationToken,
    peer: std::net::SocketAddr,
) {
    let max = vault.max_value_bytes() + 64 * 1024;
    let mut buf = BytesMut::with_capacity(8 * 1024);
    loop {
        let end = match frame(&buf, max) {
            Ok(Frame::Complete(end)) => end,
            Ok(Frame::Incomplete) => {
                let wait = if buf.is_empty() {
                    IDLE_TIMEOUT
                } else {
                    PARTIAL_REQUEST_TIMEOUT
                };
                let read = tokio::select! {
                    () = stop.cancelled(), if buf.is_empty() => return,
                    read = tokio::time::timeout(wait, stream.read_buf(&mut buf)) => read,
                };
                match read {
                    Ok(Ok(0)) | Err(_) => return,
                    Ok(Ok(_)) => continue,
                    Ok(Err(error)) => {
                        tracing::debug!(%error, %peer, "kv tcp read failed");
                        return;
                    }
                }
            }
            Err(malformed) => {
                tracing::warn!(%peer, error = %malformed, "kv tcp: malformed request; closing");
                metrics::counter!("quintet_kv_tcp_requests_total", "type" => "malformed", "outcome" => "internal").increment(1);
                let _ = stream
                    .write_all(&internal_reply(None).encode_to_vec())
                    .await;
                return;
            }
        };
        let request = buf.split_to(end).freeze();
        let reply = match ReqEnvelope::decode(request) {
            Ok(envelope) => handle(&vault, envelope, peer).await,
            Err(error) => {
                tracing::warn!(%peer, %error, "kv tcp: undecodable request");
                internal_reply(None)
            }
        };
        if stream.write_all(&reply.encode_to_vec()).await.is_err() {
            return;
        }
    }
}

fn internal_reply(kind: Option<req_envelope::MsgType>) -> ReqEnvelope {
    match kind {
        Some(req_envelope::MsgType::SetRequestT) => set_reply(set_response::ErrorT::Internal),
        _ => ReqEnvelope {
            r#type: req_envelope::MsgType::GetResponseT as i32,
            get_resp: Some(GetResponse {
                error: get_response::ErrorT::Internal as i32,
                req: None,
            }),
            ..Default::default()
        },
    }
}

fn set_reply(error: set_response::ErrorT) -> ReqEnvelope {
    ReqEnvelope {
        r#type: req_envelope::MsgType::SetResponseT as i32,
        set_resp: Some(SetResponse {
            error: error as i32,
        }),
        ..Default::default()
    }
}

async fn handle(vault: &Vault, envelope: ReqEnvelope, peer: std::net::SocketAddr) -> ReqEnvelope {
    let kind = req_envelope::MsgType::try_from(envelope.r#type).ok();
    let (label, reply) = match (kind, envelope.set_req, envelope.get_req) {
        (Some(req_envelope::MsgType::SetRequestT), Some(set), _) => {
            let outcome = match KvKey::new(set.req.key) {
                Ok(key) => vault.set(&key, set.req.value.as_bytes()).await,
                Err(e) => Err(KvError::InvalidArgument(e.to_string())),
            };
            match outcome {
                Ok(()) => ("set", set_reply(set_response::ErrorT::Ok)),
                Err(error) => {
                    log_error(&error, peer, "set");
                    ("set", set_reply(set_response::ErrorT::Internal))
                }
            }
        }
        (Some(req_envelope::MsgType::GetRequestT), _, Some(get)) => {
            let key =
                KvKey::new(get.key.clone()).map_err(|e| KvError::InvalidArgument(e.to_string()));
            let outcome = match key {
                Ok(key) => vault.get(&key).await,
                Err(e) => Err(e),
            };
            let (error, req) = match outcome {
                Ok(value) => match String::from_utf8(value) {
                    Ok(value) => (
                        get_response::ErrorT::Ok,
                        Some(Data {
                            key: get.key,
                            value,
                        }),
                    ),
                    Err(_) => {
                        tracing::warn!(%peer, "kv tcp get: the value is not UTF-8, which the seed protocol's string cannot carry");
                        (get_response::ErrorT::Internal, None)
                    }
                },
                Err(KvError::NotFound(_)) => (get_response::ErrorT::NotFound, None),
                Err(error) => {
                    log_error(&error, peer, "get");
                    (get_response::ErrorT::Internal, None)
                }
            };
            (
                "get",
                ReqEnvelope {
                    r#type: req_envelope::MsgType::GetResponseT as i32,
                    get_resp: Some(GetResponse {
                        error: error as i32,
                        req,
                    }),
                    ..Default::default()
                },
            )
        }
        _ => {
            tracing::warn!(%peer, r#type = envelope.r#type, "kv tcp: request type without its body, or not a request");
            ("invalid", internal_reply(kind))
        }
    };
    metrics::counter!("quintet_kv_tcp_requests_total", "type" => label).increment(1);
    reply
}

fn log_error(error: &KvError, peer: std::net::SocketAddr, op: &str) {
    match error {
        KvError::Integrity { .. } => tracing::error!(%peer, op, %error, "kv tcp request failed"),
        _ => tracing::warn!(%peer, op, %error, "kv tcp request failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::seed::{GetRequest, SetRequest};

    fn set_request(key: &str, value: &str) -> Vec<u8> {
        ReqEnvelope {
            r#type: req_envelope::MsgType::SetRequestT as i32,
            set_req: Some(SetRequest {
                req: Data {
                    key: key.into(),
                    value: value.into(),
                },
            }),
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn every_prefix_of_a_request_is_incomplete_and_the_whole_is_complete() {
        let bytes = set_request("key", &"v".repeat(5000));
        for n in 0..bytes.len() {
            assert_eq!(
                frame(&bytes[..n], 1 << 20),
                Ok(Frame::Incomplete),
                "prefix {n}"
            );
        }
        assert_eq!(frame(&bytes, 1 << 20), Ok(Frame::Complete(bytes.len())));
    }

    #[test]
    fn pipelined_requests_split_where_the_second_begins() {
        let first = set_request("a", "1");
        let get = ReqEnvelope {
            r#type: req_envelope::MsgType::GetRequestT as i32,
            get_req: Some(GetRequest { key: "a".into() }),
            ..Default::default()
        }
        .encode_to_vec();
        let mut both = first.clone();
        both.extend_from_slice(&get);
        assert_eq!(frame(&both, 1 << 20), Ok(Frame::Complete(first.len())));
    }

    #[test]
    fn garbage_and_oversized_requests_are_refused() {
        assert!(frame(b"GET / HTTP/1.1\r\n", 1 << 20).is_err());
        assert!(frame(&[0x08, 0x01, 0x08, 0x01], 1 << 20).is_err());
        assert!(frame(&set_request("k", &"v".repeat(2000)), 1000).is_err());
    }
}
