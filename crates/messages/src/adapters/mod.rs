//! One module per storage engine behind [`crate::ports::MessageStore`].

pub mod fjall;
pub mod migrate;
pub mod postgres;
pub mod redb;
