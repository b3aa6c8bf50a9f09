//! Apple: the legacy `verifyReceipt` client (a [`ReceiptValidator`](crate::ports::ReceiptValidator)),
//! the offline verifier of StoreKit 2 signed transactions ([`jws`]), the
//! [`AnyValidator`] that routes a receipt to the one that understands it, and
//! `apple-sim`, a verifyReceipt simulator for tests, demos and load runs.

pub mod jws;
pub mod router;
pub mod sim;
pub mod verify_receipt;

pub use router::AnyValidator;
