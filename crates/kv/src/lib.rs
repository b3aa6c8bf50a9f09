//! kv: an envelope-encrypted key-value store (seed 000). Every value is
//! sealed with AES-256-GCM under a data key that a key provider (a local
//! master key or AWS KMS) generates and wraps; only the wrapped key is
//! stored beside the value. Served over gRPC, REST (with the seed's REST
//! twin) and the seed's raw-TCP protobuf protocol.
//!
//! Rooms: [`domain`] (keys, records, the envelope crypto; no I/O), [`ports`]
//! (stores and key providers), [`adapters`] (redb and PostgreSQL stores, the
//! local master-key provider) and [`vault`] (sealing and opening with a
//! bounded data-key cache, rotation) and [`api`] (so far the seed's raw-TCP
//! protocol). Not yet built: the gRPC and REST edges and the CLI; `quintet
//! serve` does not mount kv yet.

pub mod adapters;
pub mod api;
pub mod domain;
pub mod ports;
pub mod vault;

/// Generated protobuf types: quintet's gRPC API and the seed's TCP envelope.
pub mod proto {
    pub mod v1 {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("quintet.kv.v1");
    }
    pub mod seed {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("kv.proto");
    }
}
