//! A rate limit in front of a remote key provider (AWS KMS): KMS has a
//! per-account request quota shared by every client, and a burst of cache
//! misses must not spend it all (or be throttled into errors for everyone).
//!
//! Calls that wrap, unwrap or generate keys take a token from one bucket of
//! `per_second` tokens (burst the same). A call waits for a token up to
//! `max_wait`, then fails as `Unavailable` (a 503 with `Retry-After` at the
//! API), so the limit sheds load rather than queueing it without bound.
//! Waits and refusals are counted in `quintet_kv_provider_throttled_total`.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use platform::backend::{BackendError, FailureKind};

use crate::domain::{DataKey, WrappedKey};
use crate::metrics;
use crate::ports::{KeyProvider, ProviderError};

/// A call found no token within the wait: this instance's own limit on a
/// remote provider was reached.
#[derive(Debug, thiserror::Error)]
#[error("{provider} rate limit of {per_second}/s reached; retry later")]
pub struct RateLimitReached {
    /// The provider limited.
    pub provider: &'static str,
    /// The limit.
    pub per_second: NonZeroU32,
}

/// A [`KeyProvider`] that lets at most `per_second` calls through to `inner`.
pub struct RateLimitedProvider {
    inner: Arc<dyn KeyProvider>,
    limiter: DefaultDirectRateLimiter,
    per_second: NonZeroU32,
    max_wait: Duration,
}

impl RateLimitedProvider {
    /// Lets at most `per_second` calls through to `inner`; a call waits up to `max_wait` for its turn.
    pub fn new(inner: Arc<dyn KeyProvider>, per_second: NonZeroU32, max_wait: Duration) -> Self {
        Self {
            inner,
            limiter: RateLimiter::direct(Quota::per_second(per_second)),
            per_second,
            max_wait,
        }
    }

    async fn admit(&self) -> Result<(), ProviderError> {
        if self.limiter.check().is_ok() {
            return Ok(());
        }
        let kind = self.inner.kind();
        if tokio::time::timeout(self.max_wait, self.limiter.until_ready())
            .await
            .is_ok()
        {
            ::metrics::counter!(metrics::PROVIDER_THROTTLED, "provider" => kind, "outcome" => "waited")
                .increment(1);
            return Ok(());
        }
        ::metrics::counter!(metrics::PROVIDER_THROTTLED, "provider" => kind, "outcome" => "refused")
            .increment(1);
        Err(BackendError::new(
            kind,
            "rate limit",
            FailureKind::Throttled,
            RateLimitReached {
                provider: kind,
                per_second: self.per_second,
            },
        )
        .into())
    }
}

#[async_trait]
impl KeyProvider for RateLimitedProvider {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn current_key_id(&self) -> Result<String, ProviderError> {
        self.inner.current_key_id().await
    }

    async fn generate(&self) -> Result<(DataKey, WrappedKey), ProviderError> {
        self.admit().await?;
        self.inner.generate().await
    }

    async fn unwrap(&self, wrapped: &WrappedKey) -> Result<DataKey, ProviderError> {
        self.admit().await?;
        self.inner.unwrap(wrapped).await
    }

    async fn wrap(&self, key: &DataKey) -> Result<WrappedKey, ProviderError> {
        self.admit().await?;
        self.inner.wrap(key).await
    }

    async fn add_key(&self) -> Result<bool, ProviderError> {
        self.inner.add_key().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::local_keys::LocalKeyProvider;

    fn limited(per_second: u32, max_wait: Duration) -> RateLimitedProvider {
        let inner = LocalKeyProvider::from_env_value(&base64_key().into()).expect("key");
        RateLimitedProvider::new(
            Arc::new(inner),
            NonZeroU32::new(per_second).expect("nonzero"),
            max_wait,
        )
    }

    fn base64_key() -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode([7u8; 32])
    }

    #[tokio::test]
    async fn calls_past_the_limit_are_refused_after_the_wait() {
        let provider = limited(2, Duration::from_millis(10));
        provider.generate().await.expect("first");
        provider.generate().await.expect("second");
        match provider.generate().await {
            Err(ProviderError::Unavailable(error)) => {
                assert_eq!(error.kind(), FailureKind::Throttled);
                let message = platform::backend::chain(&error);
                assert!(message.contains("rate limit of 2/s"), "{message}");
            }
            other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
        }
    }

    #[tokio::test]
    async fn calls_past_the_limit_wait_for_a_token_when_allowed_to() {
        let provider = limited(20, Duration::from_secs(2));
        let (key, wrapped) = provider.generate().await.expect("generate");
        for _ in 0..25 {
            provider.wrap(&key).await.expect("waits, then passes");
        }
        provider.unwrap(&wrapped).await.expect("unwrap");
    }
}
