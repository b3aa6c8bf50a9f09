//! The seed's raw-TCP protocol, wire-compatible: one protobuf `req_envelope`
//! (proto2, `proto/seed/key_value.proto`) per request with no length prefix,
//! one envelope back, many requests per connection.
//!
//! With no length prefix, a request ends where its fields do: the reader
//! walks the top-level fields as they arrive, and a request is complete once
//! it holds its `type` and the sub-message that type needs, each of them
//! whole (a length-delimited field is whole only when all its bytes are in).
//! A field number seen twice starts the next request (pipelining). Bytes that
//! are not protobuf, or a request larger than the limit (refused on its
//! announced length, before its bytes are read), get `internal` and the
//! connection is closed, counted, and logged at most once per 10 s; the
//! server never panics.
//!
//! The protocol carries no credential, so the port's identity is mutual TLS
//! ([`super::tcp_tls`]) and its reach an allowlist; its bounds
//! ([`Limits`]): a connection cap, an idle deadline between requests, a
//! whole-request deadline from a request's first byte to its last, a byte
//! budget shared by all connections that a connection takes from before it
//! reads (and waits for a bounded time), and a per-IP request rate. On
//! shutdown the request being handled is answered and every connection
//! closes at once. Not here: the HTTP/gRPC bearer tokens, which this
//! protocol cannot carry.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::tcp_tls::TcpTls;
use crate::domain::KvKey;
use crate::engine::vault::{KvError, Vault};
use crate::proto::seed::{
    Data, GetResponse, ReqEnvelope, SetResponse, get_response, req_envelope, set_response,
};

/// Room for the protobuf framing around a value of the largest size.
pub const REQUEST_OVERHEAD: usize = 64 * 1024;
/// Budget an idle connection holds for the first bytes of its next request.
const FIRST_READ: usize = 1024;
/// Most bytes read at once beyond what the request is known to need.
const READ_CHUNK: usize = 16 * 1024;
/// On shutdown, how long the reply to the request in flight may take to send.
const SHUTDOWN_WRITE_GRACE: Duration = Duration::from_secs(1);
/// At most one WARN line per this interval for garbage and decode errors.
const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// How many rate-limit checks pass between two prunings of idle buckets.
const PRUNE_EVERY: u64 = 4096;

/// The raw-TCP port's bounds (from `--kv-tcp-…`, checked in `config`).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request, in bytes (the value limit plus framing).
    pub max_request: usize,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Between requests.
    pub idle_timeout: Duration,
    /// From a request's first byte to its last; also the TLS handshake.
    pub frame_timeout: Duration,
    /// Bytes of partly received requests all connections hold together.
    pub buffer_bytes: usize,
    /// How long a connection waits for room in `buffer_bytes`.
    pub budget_wait: Duration,
    /// Requests per second per client IP, and the burst.
    pub rate: Option<(NonZeroU32, NonZeroU32)>,
    /// Client networks accepted; empty accepts all.
    pub allow: Vec<ipnet::IpNet>,
}

/// One WARN line per [`LOG_INTERVAL`] at most, with how many were suppressed
/// since the last: a client sending garbage cannot flood the log.
struct ThrottledLog {
    last: Mutex<Option<std::time::Instant>>,
    suppressed: AtomicU64,
}

impl ThrottledLog {
    fn new() -> Self {
        Self {
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    fn warn(&self, peer: SocketAddr, error: &(dyn std::fmt::Display + Sync)) {
        let now = std::time::Instant::now();
        let due = {
            let mut last = self
                .last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let due = last.is_none_or(|at| now.duration_since(at) >= LOG_INTERVAL);
            if due {
                *last = Some(now);
            }
            due
        };
        if due {
            let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
            tracing::warn!(%peer, %error, suppressed, "kv tcp: not a request; closing (at most one such line per 10s, `suppressed` counts the others)");
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What every connection shares.
struct Shared {
    vault: Arc<Vault>,
    limits: Limits,
    /// Permits are bytes of [`Limits::buffer_bytes`].
    budget: Arc<Semaphore>,
    /// One permit per open connection.
    slots: Arc<Semaphore>,
    rate: Option<DefaultKeyedRateLimiter<IpAddr>>,
    checks: AtomicU64,
    garbage: ThrottledLog,
    stop: CancellationToken,
}

impl Shared {
    fn buffered_changed(&self) {
        let held = self
            .limits
            .buffer_bytes
            .saturating_sub(self.budget.available_permits());
        // A gauge is an f64; byte counts lose precision only past 2^53 bytes.
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!(crate::metrics::TCP_BUFFERED).set(held as f64);
    }

    /// Whether `ip` may make another request now.
    fn admit(&self, ip: IpAddr) -> bool {
        let Some(limiter) = &self.rate else {
            return true;
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        limiter.check_key(&ip).is_ok()
    }
}

/// Decrements the open-connections gauge when a connection ends.
struct OpenGuard;

impl OpenGuard {
    fn new() -> Self {
        metrics::gauge!(crate::metrics::TCP_OPEN).increment(1.0);
        Self
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        metrics::gauge!(crate::metrics::TCP_OPEN).decrement(1.0);
    }
}

fn refused(reason: &'static str) {
    metrics::counter!(crate::metrics::TCP_REFUSED, "reason" => reason).increment(1);
}

fn timed_out(stage: &'static str) {
    metrics::counter!(crate::metrics::TCP_TIMED_OUT, "stage" => stage).increment(1);
}

/// Where the next request ends, if it is all here.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// The first `n` bytes are one whole request.
    Complete(usize),
    /// More bytes are needed: at least `need` in all (a lower bound; a
    /// length-delimited field tells its end before its bytes arrive).
    Incomplete {
        /// Bytes still needed before the frame is whole.
        need: usize,
    },
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
                Frame::Incomplete { need: pos + 1 }
            });
        }
        let start = pos;
        let Some(key) = varint(buf, &mut pos)? else {
            return Ok(Frame::Incomplete {
                need: buf.len() + 1,
            });
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
                    return Ok(Frame::Incomplete {
                        need: buf.len() + 1,
                    });
                }
            }
            2 => {
                let Some(len) = varint(buf, &mut pos)? else {
                    return Ok(Frame::Incomplete {
                        need: buf.len() + 1,
                    });
                };
                // Refused on the announced length, before its bytes are read.
                let end = usize::try_from(len)
                    .ok()
                    .and_then(|len| pos.checked_add(len))
                    .filter(|&end| end <= max)
                    .ok_or(Malformed("request larger than the limit"))?;
                if buf.len() < end {
                    return Ok(Frame::Incomplete { need: end });
                }
                pos = end;
            }
            _ => return Err(Malformed("unexpected wire type")),
        }
        seen |= bit;
    }
}

/// Serves the protocol on `listener` until `stop`. On `stop` the listener
/// closes, a request being handled finishes and is answered, and every
/// connection closes at once otherwise (idle, or mid-request).
pub async fn serve(
    listener: TcpListener,
    vault: Arc<Vault>,
    limits: Limits,
    tls: Option<TcpTls>,
    stop: CancellationToken,
) {
    let rate = limits.rate.map(|(per_second, burst)| {
        RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst))
    });
    let shared = Arc::new(Shared {
        budget: Arc::new(Semaphore::new(limits.buffer_bytes)),
        slots: Arc::new(Semaphore::new(limits.max_connections)),
        vault,
        limits,
        rate,
        checks: AtomicU64::new(0),
        garbage: ThrottledLog::new(),
        stop: stop.clone(),
    });
    shared.buffered_changed();
    metrics::gauge!(crate::metrics::TCP_OPEN).set(0.0);
    let tracker = tokio_util::task::TaskTracker::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // An IPv4 client of a dual-stack socket shows as ::ffff:a.b.c.d.
                    let ip = peer.ip().to_canonical();
                    if !shared.limits.allow.is_empty()
                        && !shared.limits.allow.iter().any(|net| net.contains(&ip))
                    {
                        refused("allowlist");
                        tracing::debug!(%peer, "kv tcp: client not in --kv-tcp-allow; closed");
                        continue;
                    }
                    let Ok(slot) = shared.slots.clone().try_acquire_owned() else {
                        refused("cap");
                        tracing::debug!(%peer, "kv tcp: --kv-tcp-max-connections reached; closed");
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    metrics::counter!(crate::metrics::TCP_ACCEPTED).increment(1);
                    let shared = shared.clone();
                    let tls = tls.clone();
                    tracker.spawn(async move {
                        let _slot = slot;
                        let _open = OpenGuard::new();
                        accepted_connection(stream, peer, tls, &shared).await;
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "kv tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

/// The TLS handshake, when the port has TLS, then the connection.
async fn accepted_connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TcpTls>,
    shared: &Shared,
) {
    let Some(tls) = tls else {
        return connection(stream, peer, shared).await;
    };
    let handshake = tokio::select! {
        () = shared.stop.cancelled() => return,
        handshake = tokio::time::timeout(shared.limits.frame_timeout, tls.acceptor.accept(stream)) => handshake,
    };
    match handshake {
        Ok(Ok(stream)) => connection(stream, peer, shared).await,
        Ok(Err(error)) => {
            refused("tls");
            // A client without a valid certificate can repeat this at will: debug only.
            tracing::debug!(%peer, %error, mutual = tls.mutual, "kv tcp: TLS handshake refused");
        }
        Err(_) => timed_out("handshake"),
    }
}

/// Why a connection's read loop stopped.
enum Closed {
    /// The client closed, a read or write failed, or the server is stopping.
    Quietly,
    /// A deadline or the byte budget closed it.
    TimedOut(&'static str),
}

/// Requests and replies on one connection, under the bounds in `shared.limits`.
async fn connection<S>(mut stream: S, peer: SocketAddr, shared: &Shared)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let limits = &shared.limits;
    let mut buf = BytesMut::new();
    // Bytes of the shared budget this connection holds: what `buf` may be filled to
    // (its allocation may round up; the RSS test bounds the whole).
    let mut held: Option<OwnedSemaphorePermit> = None;
    // When the request being received must be whole (set at its first byte).
    let mut deadline: Option<Instant> = None;
    let closed = loop {
        let need = match frame(&buf, limits.max_request) {
            Ok(Frame::Complete(end)) => {
                let request = buf.split_to(end).freeze();
                // Whatever follows (a pipelined request) moves to a buffer of
                // its own size, so the budget held matches the memory held.
                buf = BytesMut::from(&buf[..]);
                deadline = (!buf.is_empty()).then(|| Instant::now() + limits.frame_timeout);
                let reply = match ReqEnvelope::decode(request) {
                    Ok(envelope) => respond(shared, envelope, peer).await,
                    Err(error) => {
                        garbage(shared, &mut stream, peer, &error).await;
                        break Closed::Quietly;
                    }
                };
                release(shared, &mut held, buf.len());
                // A client that does not read its replies cannot hold the
                // connection, nor the shutdown for longer than its grace.
                let reply = reply.encode_to_vec();
                let write = stream.write_all(&reply);
                tokio::pin!(write);
                let written = tokio::select! {
                    written = tokio::time::timeout(limits.frame_timeout, &mut write) => written,
                    () = shared.stop.cancelled() => {
                        tokio::time::timeout(SHUTDOWN_WRITE_GRACE, &mut write).await
                    }
                };
                match written {
                    // Stopping: the request in flight was answered; the rest waits for no one.
                    Ok(Ok(())) if shared.stop.is_cancelled() => break Closed::Quietly,
                    Ok(Ok(())) => continue,
                    Ok(Err(_)) => break Closed::Quietly,
                    Err(_) => break Closed::TimedOut("frame"),
                }
            }
            Ok(Frame::Incomplete { need }) => need,
            Err(malformed) => {
                garbage(shared, &mut stream, peer, &malformed).await;
                break Closed::Quietly;
            }
        };
        // Room for what the request is known to need (a whole field once its
        // length is read), taken from the shared budget before it is read.
        let want = if buf.is_empty() {
            FIRST_READ
        } else {
            need.max(buf.len() + READ_CHUNK)
                .min(limits.max_request + READ_CHUNK)
        };
        let holding = held.as_ref().map_or(0, OwnedSemaphorePermit::num_permits);
        if want > holding {
            let Ok(extra) = u32::try_from(want - holding) else {
                break Closed::TimedOut("budget");
            };
            let acquired = tokio::select! {
                () = shared.stop.cancelled() => break Closed::Quietly,
                acquired = tokio::time::timeout(
                    limits.budget_wait,
                    shared.budget.clone().acquire_many_owned(extra),
                ) => acquired,
            };
            match acquired {
                Ok(Ok(permit)) => match held.as_mut() {
                    Some(held) => held.merge(permit),
                    None => held = Some(permit),
                },
                // The semaphore is never closed; either way the connection cannot go on.
                Ok(Err(_)) | Err(_) => break Closed::TimedOut("budget"),
            }
            shared.buffered_changed();
        }
        let room = want.saturating_sub(buf.len()).max(1);
        buf.reserve(room);
        let until = deadline.unwrap_or_else(|| Instant::now() + limits.idle_timeout);
        let mut limited = (&mut buf).limit(room);
        let read = tokio::select! {
            () = shared.stop.cancelled() => break Closed::Quietly,
            read = tokio::time::timeout_at(until, stream.read_buf(&mut limited)) => read,
        };
        match read {
            Ok(Ok(0)) => break Closed::Quietly,
            Ok(Ok(_)) => {
                deadline.get_or_insert_with(|| Instant::now() + limits.frame_timeout);
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, %peer, "kv tcp read failed");
                break Closed::Quietly;
            }
            Err(_) => break Closed::TimedOut(if buf.is_empty() { "idle" } else { "frame" }),
        }
    };
    drop(held);
    shared.buffered_changed();
    if let Closed::TimedOut(stage) = closed {
        timed_out(stage);
        tracing::debug!(%peer, stage, "kv tcp: deadline passed; closing");
    }
}

/// Gives back budget beyond the `keep` bytes still buffered.
fn release(shared: &Shared, held: &mut Option<OwnedSemaphorePermit>, keep: usize) {
    if keep == 0 {
        *held = None;
    } else if let Some(permit) = held.as_mut() {
        let excess = permit.num_permits().saturating_sub(keep);
        drop(permit.split(excess));
    }
    shared.buffered_changed();
}

/// Bytes that are not a request: `internal`, counted, logged (throttled); the caller closes.
async fn garbage<S>(
    shared: &Shared,
    stream: &mut S,
    peer: SocketAddr,
    error: &(dyn std::fmt::Display + Sync),
) where
    S: AsyncWrite + Unpin,
{
    metrics::counter!(crate::metrics::TCP_GARBAGE).increment(1);
    metrics::counter!(crate::metrics::TCP_REQUESTS, "type" => "malformed", "outcome" => "internal")
        .increment(1);
    shared.garbage.warn(peer, error);
    let _ = tokio::time::timeout(
        shared.limits.frame_timeout,
        stream.write_all(&internal_reply(None).encode_to_vec()),
    )
    .await;
}

/// The reply to one decoded request, under the per-IP rate limit.
async fn respond(shared: &Shared, envelope: ReqEnvelope, peer: SocketAddr) -> ReqEnvelope {
    if !shared.admit(peer.ip().to_canonical()) {
        let kind = req_envelope::MsgType::try_from(envelope.r#type).ok();
        let label = match kind {
            Some(req_envelope::MsgType::SetRequestT) => "set",
            Some(req_envelope::MsgType::GetRequestT) => "get",
            _ => "invalid",
        };
        metrics::counter!(crate::metrics::TCP_REQUESTS, "type" => label, "outcome" => "rate_limited")
            .increment(1);
        return internal_reply(kind);
    }
    handle(&shared.vault, envelope, peer).await
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

async fn handle(vault: &Vault, envelope: ReqEnvelope, peer: SocketAddr) -> ReqEnvelope {
    let kind = req_envelope::MsgType::try_from(envelope.r#type).ok();
    let (label, outcome, reply) = match (kind, envelope.set_req, envelope.get_req) {
        (Some(req_envelope::MsgType::SetRequestT), Some(set), _) => {
            let outcome = match KvKey::new(set.req.key) {
                Ok(key) => vault.set(&key, set.req.value.as_bytes()).await,
                Err(e) => Err(KvError::InvalidKey(e)),
            };
            match outcome {
                Ok(()) => ("set", "ok", set_reply(set_response::ErrorT::Ok)),
                Err(error) => (
                    "set",
                    log_error(&error, peer, "set"),
                    set_reply(set_response::ErrorT::Internal),
                ),
            }
        }
        (Some(req_envelope::MsgType::GetRequestT), _, Some(get)) => {
            let key = KvKey::new(get.key.clone()).map_err(KvError::InvalidKey);
            let outcome = match key {
                Ok(key) => vault.get(&key).await,
                Err(e) => Err(e),
            };
            let (outcome, error, req) = match outcome {
                Ok(value) => {
                    if let Ok(value) = String::from_utf8(value) {
                        (
                            "ok",
                            get_response::ErrorT::Ok,
                            Some(Data {
                                key: get.key,
                                value,
                            }),
                        )
                    } else {
                        tracing::warn!(%peer, "kv tcp get: the value is not UTF-8, which the seed protocol's string cannot carry");
                        ("not_utf8", get_response::ErrorT::Internal, None)
                    }
                }
                Err(KvError::NotFound(_)) => ("not_found", get_response::ErrorT::NotFound, None),
                Err(error) => (
                    log_error(&error, peer, "get"),
                    get_response::ErrorT::Internal,
                    None,
                ),
            };
            (
                "get",
                outcome,
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
            tracing::debug!(%peer, r#type = envelope.r#type, "kv tcp: request type without its body, or not a request");
            ("invalid", "internal", internal_reply(kind))
        }
    };
    metrics::counter!(crate::metrics::TCP_REQUESTS, "type" => label, "outcome" => outcome)
        .increment(1);
    reply
}

/// Logs a failed request at the level its kind deserves; returns its outcome label.
/// A refused argument is the client's doing and could be repeated at will: debug only.
/// The seed protocol has one error for everything but "not found": `internal`.
fn log_error(error: &KvError, peer: SocketAddr, op: &str) -> &'static str {
    match error {
        KvError::InvalidKey(_) => {
            tracing::debug!(%peer, op, %error, "kv tcp request refused");
            "invalid_argument"
        }
        KvError::TooLarge { .. } => {
            tracing::debug!(%peer, op, %error, "kv tcp request refused");
            "too_large"
        }
        KvError::Integrity { .. } => {
            tracing::error!(%peer, op, %error, "kv tcp request failed");
            "error"
        }
        _ => {
            let error = platform::backend::chain(error);
            tracing::warn!(%peer, op, %error, "kv tcp request failed");
            "error"
        }
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
            assert!(
                matches!(frame(&bytes[..n], 1 << 20), Ok(Frame::Incomplete { need }) if need > n && need <= bytes.len()),
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
        // Refused on the announced length alone, before its bytes arrive.
        let big = set_request("k", &"v".repeat(2000));
        assert_eq!(
            frame(&big[..8], 1000),
            Err(Malformed("request larger than the limit"))
        );
        // A field's length tells how much the request needs before it arrives.
        assert!(
            matches!(frame(&big[..8], 1 << 20), Ok(Frame::Incomplete { need }) if need == big.len())
        );
    }
}
