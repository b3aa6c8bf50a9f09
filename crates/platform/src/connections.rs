//! The life of one connection, bounded at every stage: a TLS handshake and
//! a first request within `--handshake-timeout`, HTTP/1.1 headers within
//! `--header-timeout` (hyper's own timer), no more than `--idle-timeout`
//! without a request in flight (HTTP/2 gets a GOAWAY), and a graceful close
//! on shutdown. A silent socket therefore never holds a slot past its
//! deadline; and when every slot is taken, a new connection closes the one
//! that has waited longest with nothing in flight, so silent sockets cannot
//! starve real clients even before their deadline.
//!
//! Metrics: `quintet_http_connections_open` (gauge) and
//! `quintet_http_connections_closed_total{reason}` for the connections the
//! server closed itself (`handshake_timeout`, `tls_failed`, `idle`,
//! `evicted`, `refused`).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::ConnectionTimeouts;

/// Why the server closed a connection.
#[derive(Debug, Clone, Copy)]
pub enum Closed {
    /// No TLS handshake or first request within `--handshake-timeout`.
    HandshakeTimeout,
    /// The TLS handshake failed.
    TlsFailed,
    /// No request in flight for `--idle-timeout`.
    Idle,
    /// Closed to make room for a new connection at `--max-connections`.
    Evicted,
    /// Accepted and closed at once: no slot came free while another was being evicted.
    Refused,
}

impl Closed {
    fn label(self) -> &'static str {
        match self {
            Closed::HandshakeTimeout => "handshake_timeout",
            Closed::TlsFailed => "tls_failed",
            Closed::Idle => "idle",
            Closed::Evicted => "evicted",
            Closed::Refused => "refused",
        }
    }

    /// Counts this close in `quintet_http_connections_closed_total{reason}`.
    pub fn count(self) {
        metrics::counter!(crate::metrics::HTTP_CONNECTIONS_CLOSED_TOTAL, "reason" => self.label())
            .increment(1);
    }
}

/// What the server knows of one open connection.
pub struct Conn {
    id: u64,
    /// Requests whose response has not been sent in full yet.
    in_flight: AtomicUsize,
    /// Requests started so far.
    started: AtomicU64,
    /// When the connection last had nothing in flight, in ms since `epoch`.
    quiet_since_ms: AtomicU64,
    epoch: Instant,
    evict: Notify,
    /// Set once the registry asked it to close, so it is not picked twice.
    evicting: std::sync::atomic::AtomicBool,
}

impl Conn {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Marks a request as started; the guard marks it done when dropped.
    pub fn begin(self: &Arc<Self>) -> Activity {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.started.fetch_add(1, Ordering::Relaxed);
        Activity(self.clone())
    }

    fn is_quiet(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// When this connection must have shown activity by, if it is quiet:
    /// the handshake deadline before its first request, the idle one after.
    fn deadline(&self, timeouts: &ConnectionTimeouts) -> Option<Instant> {
        if !self.is_quiet() {
            return None;
        }
        let limit = if self.started.load(Ordering::Relaxed) == 0 {
            timeouts.handshake
        } else {
            timeouts.idle
        };
        let since = Duration::from_millis(self.quiet_since_ms.load(Ordering::Acquire));
        Some(self.epoch + since + limit)
    }
}

/// A request in flight on its connection.
pub struct Activity(Arc<Conn>);

impl Drop for Activity {
    fn drop(&mut self) {
        let conn = &self.0;
        conn.quiet_since_ms.store(conn.now_ms(), Ordering::Release);
        conn.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Every open connection, to find one to close when the limit is reached.
pub struct Registry {
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    epoch: Instant,
    timeouts: ConnectionTimeouts,
}

impl Registry {
    /// An empty registry; its connections close by `timeouts`.
    pub fn new(timeouts: ConnectionTimeouts) -> Arc<Self> {
        Arc::new(Self {
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            epoch: Instant::now(),
            timeouts,
        })
    }

    /// Registers a connection just accepted; it leaves with the returned guard.
    pub fn open(self: &Arc<Self>) -> Registered {
        let conn = Arc::new(Conn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            in_flight: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            quiet_since_ms: AtomicU64::new(0),
            epoch: self.epoch,
            evict: Notify::new(),
            evicting: std::sync::atomic::AtomicBool::new(false),
        });
        conn.quiet_since_ms.store(conn.now_ms(), Ordering::Release);
        self.lock().insert(conn.id, conn.clone());
        metrics::gauge!(crate::metrics::HTTP_CONNECTIONS_OPEN).increment(1.0);
        Registered {
            registry: self.clone(),
            conn,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Asks the connection that has been quiet the longest to close; false
    /// when every connection has a request in flight.
    pub fn evict_longest_quiet(&self) -> bool {
        let conns = self.lock();
        let victim = conns
            .values()
            .filter(|c| c.is_quiet() && !c.evicting.load(Ordering::Acquire))
            .min_by_key(|c| c.quiet_since_ms.load(Ordering::Acquire));
        match victim {
            Some(conn) => {
                conn.evicting.store(true, Ordering::Release);
                conn.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A connection's place in the registry, given up when the connection ends.
pub struct Registered {
    registry: Arc<Registry>,
    conn: Arc<Conn>,
}

impl Registered {
    /// The registered connection.
    pub fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }

    /// Resolves when the registry asks this connection to make room.
    pub async fn evicted(&self) {
        self.conn.evict.notified().await;
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.conn.id);
        metrics::gauge!(crate::metrics::HTTP_CONNECTIONS_OPEN).decrement(1.0);
    }
}

/// How long a connection closed for being quiet may take to say goodbye
/// (HTTP/2's GOAWAY waits for a ping's answer) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// The same for a connection evicted to make room: a new one is waiting.
const EVICT_GRACE: Duration = Duration::from_millis(50);

/// Drives `conn` to its end, closing it gracefully when it has been quiet
/// past its deadline, when the registry evicts it, or when `drain` fires;
/// `graceful_shutdown` is the connection's own (hyper's). A connection still
/// quiet a grace period after it was asked to close is dropped (`None`):
/// nothing is in flight on it, so nothing is lost.
pub async fn drive<C: Future>(
    conn: C,
    graceful_shutdown: impl Fn(Pin<&mut C>),
    registered: &Registered,
    drain: &tokio_util::sync::CancellationToken,
) -> Option<C::Output> {
    let state = registered.conn();
    let timeouts = registered.registry.timeouts;
    let mut conn = std::pin::pin!(conn);
    // Set once the connection was asked to close: when to drop it if quiet.
    let mut drop_at: Option<Instant> = None;
    loop {
        let open = drop_at.is_none();
        // Recomputed after every wake-up: a request may have come and gone.
        let deadline = match drop_at {
            Some(at) => at,
            None => state
                .deadline(&timeouts)
                .unwrap_or_else(|| Instant::now() + timeouts.idle),
        };
        tokio::select! {
            output = conn.as_mut() => return Some(output),
            () = drain.cancelled(), if open => {
                graceful_shutdown(conn.as_mut());
                drop_at = Some(Instant::now() + CLOSE_GRACE);
            }
            () = state.evict.notified(), if open => {
                Closed::Evicted.count();
                graceful_shutdown(conn.as_mut());
                drop_at = Some(Instant::now() + EVICT_GRACE);
            }
            () = tokio::time::sleep_until(deadline) => {
                if !open {
                    if state.is_quiet() {
                        return None;
                    }
                    // A response is still streaming: it may finish.
                    drop_at = Some(Instant::now() + CLOSE_GRACE);
                } else if state.deadline(&timeouts).is_some_and(|d| d <= Instant::now()) {
                    let reason = if state.started.load(Ordering::Relaxed) == 0 {
                        Closed::HandshakeTimeout
                    } else {
                        Closed::Idle
                    };
                    reason.count();
                    graceful_shutdown(conn.as_mut());
                    drop_at = Some(Instant::now() + CLOSE_GRACE);
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted as in flight until it
    /// has been sent (or dropped), so a long download is never "quiet".
    pub struct Tracked<B> {
        #[pin]
        body: B,
        activity: Activity,
    }
}

impl<B> Tracked<B> {
    /// Wraps `body`; `activity` ends when the body is done or dropped.
    pub fn new(body: B, activity: Activity) -> Self {
        Self { body, activity }
    }
}

impl<B: http_body::Body> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts() -> ConnectionTimeouts {
        ConnectionTimeouts {
            handshake: Duration::from_secs(10),
            header: Duration::from_secs(10),
            idle: Duration::from_mins(1),
        }
    }

    #[tokio::test]
    async fn eviction_picks_the_longest_quiet_connection_never_a_busy_one() {
        let registry = Registry::new(timeouts());
        let oldest = registry.open();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let busy = registry.open();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let newer = registry.open();
        assert_eq!(registry.len(), 3);

        // The oldest is busy: the next-oldest quiet one is asked to close.
        let request = oldest.conn().begin();
        let _busy_request = busy.conn().begin();
        assert!(registry.evict_longest_quiet());
        tokio::time::timeout(Duration::from_millis(1), newer.evicted())
            .await
            .expect("the quiet connection was asked to close");
        // Not picked twice; the busy ones never.
        assert!(!registry.evict_longest_quiet());
        drop(request);
        assert!(
            registry.evict_longest_quiet(),
            "quiet again once its answer is sent"
        );
        tokio::time::timeout(Duration::from_millis(1), oldest.evicted())
            .await
            .expect("asked to close");
        drop((oldest, busy, newer));
        assert!(registry.is_empty());
    }

    #[tokio::test]
    async fn deadlines_are_the_handshake_before_a_request_and_idle_after() {
        let registry = Registry::new(timeouts());
        let before = Instant::now();
        let conn = registry.open();
        let first = conn.conn().deadline(&timeouts()).expect("quiet");
        assert!(
            first >= before + Duration::from_millis(9_990)
                && first <= Instant::now() + Duration::from_secs(10),
            "the handshake deadline"
        );
        let request = conn.conn().begin();
        assert_eq!(conn.conn().deadline(&timeouts()), None, "busy: no deadline");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let answered = Instant::now();
        drop(request);
        let deadline = conn.conn().deadline(&timeouts()).expect("quiet");
        assert!(
            deadline >= answered + Duration::from_millis(59_990),
            "the idle deadline counts from the answer"
        );
    }
}
