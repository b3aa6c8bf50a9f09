//! One module per technology implementing a kv port.

pub mod local_keys;
pub mod postgres;
pub mod redb;
