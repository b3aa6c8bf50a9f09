//! kv's AWS SDK set-up is the platform's, shared with every service on an
//! AWS API: this module re-exports [`platform::aws`] so kv's adapters, its
//! config and its tests keep their paths.

pub use platform::aws::*;
