//! kv's edges: REST (with the seed's REST twin) and the seed's raw-TCP protocol.

pub mod http;
pub mod seed_tcp;
