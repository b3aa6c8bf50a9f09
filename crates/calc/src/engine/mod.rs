//! calc's running core, between the api and the event log: the
//! [`calculator::Calculator`] computes (checked arithmetic, the sieve on
//! blocking threads, a bound on sieves at once) and the [`recorder::Recorder`]
//! writes an event for each calculation to the log without making the
//! caller wait on it.

pub mod calculator;
pub mod recorder;
