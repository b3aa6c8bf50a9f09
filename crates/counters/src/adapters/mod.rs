//! One module per storage engine behind [`crate::ports::CounterStore`].

pub mod postgres;
pub mod redb;
