//! Apple, behind the [`ReceiptValidator`](crate::ports::ReceiptValidator)
//! port: the legacy `verifyReceipt` client ([`verify_receipt`]), the offline
//! verifier of `StoreKit` 2 signed transactions ([`jws`]), and the
//! [`AnyValidator`] that routes a receipt to the one that understands it.

pub mod jws;
pub mod router;
pub mod verify_receipt;

pub use router::AnyValidator;
