//! One module per engine behind [`crate::ports::EventLog`].

pub mod nats;
pub mod postgres;
pub mod redb;
