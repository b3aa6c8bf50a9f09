//! Apple: the legacy `verifyReceipt` client (a [`ReceiptValidator`](crate::ports::ReceiptValidator))
//! and `apple-sim`, a verifyReceipt simulator for tests, demos and load runs.

pub mod sim;
pub mod verify_receipt;
