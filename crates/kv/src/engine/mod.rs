//! kv's running core, between the api and the ports: the [`vault`] that
//! seals and opens values (with its data-key cache and rotation), and the
//! record [`verify`] check `quintet verify` runs.

pub mod vault;
pub mod verify;
