//! Generators for the decoders' never-panic property tests.
//!
//! Every decoder of bytes from outside the process has a `proptest!` test
//! named `fuzz_…` beside it: `cargo test` runs each with a modest number of
//! cases, `scripts/fuzz` with a million (`PROPTEST_CASES`). Random bytes
//! rarely get past a decoder's first check, so these generators make inputs
//! that do: JSON objects holding the fields a reader looks for (with values
//! of every JSON type), base64 of random bytes, and valid encodings with one
//! mutation (cut, flipped, inserted or appended bytes).

use base64::Engine as _;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;
use serde_json::{Map, Number, Value};

/// The config of a fuzz target: `cases` cases, or `PROPTEST_CASES` when it
/// is set (the long run sets it).
pub fn config(cases: u32) -> Config {
    // Config::default() reads PROPTEST_CASES (and proptest's other variables).
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

/// Any bytes, up to `max` of them.
pub fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> + Clone {
    proptest::collection::vec(any::<u8>(), 0..=max)
}

/// Any text: every Unicode scalar value, control characters included.
pub fn text(max_chars: usize) -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        proptest::collection::vec(any::<char>(), 0..=max_chars).prop_map(String::from_iter),
        // ASCII letters, digits and the punctuation of base64, URLs and ids,
        // which is where most checks look.
        proptest::collection::vec(
            proptest::sample::select(
                b"abcdefxyzABCXYZ0123456789+/=-_.:;,\"\\{}[] \t\n%@#"
                    .iter()
                    .map(|&b| char::from(b))
                    .collect::<Vec<_>>()
            ),
            0..=max_chars
        )
        .prop_map(String::from_iter),
    ]
}

/// A JSON number of any kind: small and extreme integers, both signs, floats.
pub fn json_number() -> impl Strategy<Value = Value> + Clone {
    prop_oneof![
        (-3i64..300).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        Just(Value::from(i64::MIN)),
        Just(Value::from(i64::MAX)),
        Just(Value::from(u64::MAX)),
        any::<f64>().prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        (-5i32..5).prop_map(|n| Number::from_f64(f64::from(n)).map_or(Value::Null, Value::Number)),
    ]
}

/// A JSON scalar of any type.
pub fn json_scalar() -> impl Strategy<Value = Value> + Clone {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        json_number(),
        text(24).prop_map(Value::String),
    ]
}

/// Any JSON value, nested up to four levels.
pub fn json_value() -> BoxedStrategy<Value> {
    json_scalar()
        .prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec((text(12), inner), 0..6)
                    .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
            ]
        })
        .boxed()
}

/// A JSON object that holds each of `fields` (with probability 4/5) with a
/// value from its strategy, plus up to two other fields of any value.
pub fn object_with(fields: Vec<(&'static str, BoxedStrategy<Value>)>) -> BoxedStrategy<Value> {
    let present = fields
        .into_iter()
        .map(|(name, value)| proptest::option::weighted(0.8, value).prop_map(move |v| (name, v)))
        .collect::<Vec<_>>();
    (
        present,
        proptest::collection::vec((text(12), json_value()), 0..=2),
    )
        .prop_map(|(present, extra)| {
            let mut object = Map::new();
            for (name, value) in extra {
                object.insert(name, value);
            }
            for (name, value) in present {
                if let Some(value) = value {
                    object.insert(name.to_owned(), value);
                }
            }
            Value::Object(object)
        })
        .boxed()
}

/// One of `values`, or any JSON value (a plausible value or a wrong type).
pub fn plausible(values: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    prop_oneof![3 => values, 1 => json_value()].boxed()
}

/// `value` as JSON text, compact or pretty.
pub fn json_bytes(value: impl Strategy<Value = Value>) -> impl Strategy<Value = Vec<u8>> {
    (value, any::<bool>()).prop_map(|(value, pretty)| {
        if pretty {
            serde_json::to_vec_pretty(&value).expect("a Value always serialises")
        } else {
            serde_json::to_vec(&value).expect("a Value always serialises")
        }
    })
}

/// One change to an encoding.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// The encoding as it is.
    None,
    /// Cut at a position.
    Truncate(Index),
    /// A byte flipped by a XOR mask.
    Flip(Index, u8),
    /// A byte inserted at a position.
    Insert(Index, u8),
    /// The byte at a position removed.
    Remove(Index),
    /// Bytes added at the end.
    Append(Vec<u8>),
}

impl Mutation {
    /// `bytes` with this change made.
    pub fn apply(&self, mut bytes: Vec<u8>) -> Vec<u8> {
        match self {
            Self::Truncate(at) => bytes.truncate(at.index(bytes.len() + 1)),
            Self::Flip(at, mask) if !bytes.is_empty() => {
                let at = at.index(bytes.len());
                bytes[at] ^= mask;
            }
            Self::Insert(at, byte) => bytes.insert(at.index(bytes.len() + 1), *byte),
            Self::Remove(at) if !bytes.is_empty() => {
                bytes.remove(at.index(bytes.len()));
            }
            Self::Append(tail) => bytes.extend_from_slice(tail),
            // Flip and Remove change nothing in an empty encoding.
            Self::None | Self::Flip(..) | Self::Remove(_) => {}
        }
        bytes
    }
}

/// No change half the time, else one cut, flipped, inserted, removed or appended byte(s).
pub fn mutation() -> impl Strategy<Value = Mutation> + Clone {
    prop_oneof![
        5 => Just(Mutation::None),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), 1u8..=255).prop_map(|(at, mask)| Mutation::Flip(at, mask)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        1 => any::<Index>().prop_map(Mutation::Remove),
        1 => bytes(6).prop_map(Mutation::Append),
    ]
}

/// `encoding`'s bytes with one [`mutation`] (or none), and the mutation.
pub fn mutated(
    encoding: impl Strategy<Value = Vec<u8>>,
) -> impl Strategy<Value = (Vec<u8>, Mutation)> {
    (encoding, mutation()).prop_map(|(bytes, mutation)| (mutation.apply(bytes), mutation))
}

/// Standard base64 (padded) of `bytes`.
pub fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Base64url without padding of `bytes` (JWS parts).
pub fn base64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `bytes` is one JSON text: UTF-8 (RFC 8259 §8.1) holding one
/// value and nothing after it but whitespace. Numbers beyond f64's range
/// are JSON too (a reader that skips them may accept them).
pub fn is_json(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes)
        .is_ok_and(|text| serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok())
}

/// `bytes` as a JSON value, if they are one JSON text whose numbers are all
/// in f64's range (what a test can hold its answer against).
pub fn json(bytes: &[u8]) -> Option<Value> {
    serde_json::from_slice(bytes).ok()
}
