//! kv's edges. So far: the seed's raw-TCP protocol.

pub mod seed_tcp;
