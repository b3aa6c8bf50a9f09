//! One module per storage engine behind [`crate::ports::MessageStore`].

pub mod postgres;
pub mod redb;
