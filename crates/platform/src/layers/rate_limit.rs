//! Per-client rate limiting: a token bucket per caller (its bearer token when
//! authenticated, else its IP address), answering 429 with `Retry-After`.
//!
//! Buckets of clients that have gone quiet are pruned as traffic flows, so the
//! table holds only recently active clients.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::{HeaderValue, StatusCode, header};

use crate::config::RateLimit;
use crate::error::ErrorResponse;
use crate::tokens::Caller;

/// How many checks pass between two prunings of idle buckets.
const PRUNE_EVERY: u64 = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ClientKey {
    Token([u8; 8]),
    Ip(IpAddr),
    Unknown,
}

/// A keyed token-bucket limiter shared by every service route.
pub struct ClientRateLimiter {
    limiter: DefaultKeyedRateLimiter<ClientKey>,
    clock: DefaultClock,
    config: RateLimit,
    checks: AtomicU64,
}

impl ClientRateLimiter {
    /// A limiter allowing each client `config.per_second`, `config.burst` at once.
    pub fn new(config: RateLimit) -> Self {
        let per_second = NonZeroU32::new(config.per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.burst).unwrap_or(per_second);
        let quota = Quota::per_second(per_second).allow_burst(burst);
        Self {
            limiter: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
            config,
            checks: AtomicU64::new(0),
        }
    }

    /// `Ok` when the client may proceed, else how many whole seconds to wait.
    fn check(&self, key: ClientKey) -> Result<(), u64> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
            metrics::gauge!(crate::metrics::RATE_LIMIT_CLIENTS)
                .set(crate::metrics::count(self.limiter.len()));
        }
        self.limiter.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}

/// Spends one token of the caller's bucket; the refusal, if any, is the 429
/// (or gRPC `RESOURCE_EXHAUSTED`) answer with its Retry-After.
pub fn admit(limiter: Option<&ClientRateLimiter>, req: &Request) -> Option<Response> {
    let limiter = limiter?;
    let key = match req.extensions().get::<Caller>() {
        Some(Caller::Token { id, .. }) => ClientKey::Token(*id),
        _ => peer_key(req),
    };
    let retry_after = limiter.check(key).err()?;
    metrics::counter!(crate::metrics::RATE_LIMITED_TOTAL).increment(1);
    let message = format!(
        "rate limit exceeded: {} requests/s per client (burst {}); retry after {retry_after}s",
        limiter.config.per_second, limiter.config.burst
    );
    Some(too_many(req, message, retry_after))
}

fn peer_key(req: &Request) -> ClientKey {
    match req.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(peer)) => ClientKey::Ip(peer.ip()),
        None => ClientKey::Unknown,
    }
}

/// A failed authentication spends a token of its address's bucket: within
/// the burst the answer stays `refused` (401), past it 429, so guessing
/// tokens from one address is slowed to the configured rate.
pub fn throttle_failure(
    limiter: Option<&ClientRateLimiter>,
    req: &Request,
    refused: Response,
) -> Response {
    let Some(limiter) = limiter else {
        return refused;
    };
    let Err(retry_after) = limiter.check(peer_key(req)) else {
        return refused;
    };
    metrics::counter!(crate::metrics::AUTH_FAILURES_THROTTLED_TOTAL).increment(1);
    let message = format!(
        "too many failed authentications from this address ({} per second, burst {}); retry \
         after {retry_after}s with a valid token",
        limiter.config.per_second, limiter.config.burst
    );
    too_many(req, message, retry_after)
}

/// The 429 (or gRPC `RESOURCE_EXHAUSTED`) answer with its Retry-After.
fn too_many(req: &Request, message: String, retry_after: u64) -> Response {
    let mut response = if crate::grpc::is_grpc(req.headers()) {
        tonic::Status::resource_exhausted(message).into_http()
    } else {
        ErrorResponse::new(StatusCode::TOO_MANY_REQUESTS, message).into_response()
    };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_is_allowed_then_refused_with_a_wait() {
        let limiter = ClientRateLimiter::new(RateLimit {
            per_second: 1,
            burst: 3,
        });
        let key = ClientKey::Ip("10.0.0.1".parse().expect("ip"));
        for _ in 0..3 {
            assert!(limiter.check(key).is_ok());
        }
        let wait = limiter.check(key).expect_err("over the burst");
        assert!((1..=1).contains(&wait), "wait {wait}s");
        // Another client has its own bucket.
        assert!(
            limiter
                .check(ClientKey::Ip("10.0.0.2".parse().expect("ip")))
                .is_ok()
        );
    }
}
