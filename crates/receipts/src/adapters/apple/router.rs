//! Routes each receipt to the validator that understands it: `StoreKit` 2
//! signed transactions (JWS) to the offline [`JwsVerifier`], everything
//! else to the legacy `verifyReceipt` client.
//!
//! Not here: the validation rules themselves ([`super::jws`],
//! [`super::verify_receipt`]).

use std::sync::Arc;

use async_trait::async_trait;
use platform::backend::{BackendError, FailureKind};

use super::jws::{JwsVerifier, is_jws};
use crate::domain::Validation;
use crate::ports::{ReceiptValidator, ValidatorError};

/// A [`ReceiptValidator`] that sends JWS receipts to `jws` and the rest to `legacy`.
#[derive(Clone)]
pub struct AnyValidator {
    /// The validator of everything that is not a JWS.
    pub legacy: Arc<dyn ReceiptValidator>,
    /// The offline verifier of signed transactions (JWS).
    pub jws: Arc<JwsVerifier>,
}

impl AnyValidator {
    /// Routes JWS receipts to `jws`, the rest to `legacy`.
    pub fn new(legacy: Arc<dyn ReceiptValidator>, jws: Arc<JwsVerifier>) -> Self {
        Self { legacy, jws }
    }
}

#[async_trait]
impl ReceiptValidator for AnyValidator {
    async fn validate(&self, receipt: &str) -> Result<Validation, ValidatorError> {
        if !is_jws(receipt) {
            return self.legacy.validate(receipt).await;
        }
        // Three ECDSA verifications and three certificate parses: a few
        // hundred microseconds of CPU, kept off the runtime's workers.
        let (verifier, receipt) = (self.jws.clone(), receipt.to_owned());
        let validation = tokio::task::spawn_blocking(move || verifier.verify(&receipt))
            .await
            .map_err(|e| {
                ValidatorError::Unavailable(BackendError::new(
                    "jws",
                    "verification task",
                    FailureKind::Other,
                    e,
                ))
            })?;
        let outcome = match &validation {
            Validation::Valid { .. } => "valid",
            Validation::Invalid { reason, .. } => {
                tracing::debug!(%reason, "signed transaction refused");
                "invalid"
            }
        };
        metrics::counter!(crate::metrics::JWS_TOTAL, "outcome" => outcome).increment(1);
        Ok(validation)
    }
}
