//! A job's `user_id`: an integer or a string, as the producer wrote it. The
//! worker never interprets it; it is recorded with each claim and posted back
//! in every result with the JSON type it came with (`42` as `42`, `"user-8"`
//! as `"user-8"`), as the original worker did (SPEC §2).

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest string user id, in characters: ids are names or UUIDs, and each
/// one is stored with every claim.
pub const MAX_USER_ID_CHARS: usize = 256;

/// What a `user_id` may be, as error messages say it.
pub const USER_ID_ACCEPTED: &str = "an integer (64-bit) or a string of 1 to 256 characters";

/// A user id: valid by construction (see [`UserText`] for strings).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UserId {
    /// An integer id (64-bit).
    Int(i64),
    /// A string id.
    Text(UserText),
}

/// A string user id: 1 to [`MAX_USER_ID_CHARS`] characters, none of them a
/// control character (`PostgreSQL`'s `text` cannot hold NUL, and ids end up in
/// logs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserText(String);

/// Why a user id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserIdError {
    /// An empty string.
    #[error("an empty string is not a user id; expected {USER_ID_ACCEPTED}")]
    Empty,
    /// A string over the length limit.
    #[error("a string user id of {0} characters is too long; expected {USER_ID_ACCEPTED}")]
    TooLong(usize),
    /// A string with a control character.
    #[error("a string user id holds no control characters; expected {USER_ID_ACCEPTED}")]
    ControlCharacter,
    /// An integer outside 64 bits.
    #[error("integer {0} is out of range; expected {USER_ID_ACCEPTED}")]
    OutOfRange(String),
    /// Quoted text that is not one JSON string.
    #[error("{0} is not a JSON string literal")]
    BadQuoting(String),
}

impl UserText {
    /// A string user id, if it follows the rule.
    pub fn new(text: impl Into<String>) -> Result<Self, UserIdError> {
        let text = text.into();
        if text.is_empty() {
            return Err(UserIdError::Empty);
        }
        let chars = text.chars().count();
        if chars > MAX_USER_ID_CHARS {
            return Err(UserIdError::TooLong(chars));
        }
        if text.chars().any(char::is_control) {
            return Err(UserIdError::ControlCharacter);
        }
        Ok(Self(text))
    }

    /// The id, as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl UserId {
    /// A string user id (see [`UserText::new`]).
    pub fn text(text: impl Into<String>) -> Result<Self, UserIdError> {
        UserText::new(text).map(Self::Text)
    }

    /// A user id as typed on a command line: an integer is an integer, a
    /// JSON string literal (`"42"`, quotes included) is that string, and
    /// anything else is a string as it stands.
    pub fn from_cli(text: &str) -> Result<Self, UserIdError> {
        if text.starts_with('"') {
            let unquoted: String =
                serde_json::from_str(text).map_err(|_| UserIdError::BadQuoting(text.to_owned()))?;
            return Self::text(unquoted);
        }
        if let Ok(n) = text.parse::<i64>() {
            return Ok(Self::Int(n));
        }
        let digits = text.strip_prefix('-').unwrap_or(text);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(UserIdError::OutOfRange(text.to_owned()));
        }
        Self::text(text)
    }
}

impl From<i64> for UserId {
    fn from(n: i64) -> Self {
        Self::Int(n)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int(n) => write!(f, "{n}"),
            Self::Text(text) => f.write_str(text.as_str()),
        }
    }
}

impl Serialize for UserId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Int(n) => serializer.serialize_i64(*n),
            Self::Text(text) => serializer.serialize_str(text.as_str()),
        }
    }
}

impl<'de> Deserialize<'de> for UserId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UserIdVisitor)
    }
}

/// Integers and strings; every other JSON type (float, bool, null, array,
/// object) is refused with serde's "invalid type: …, expected …" naming
/// what is accepted.
struct UserIdVisitor;

impl Visitor<'_> for UserIdVisitor {
    type Value = UserId;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(USER_ID_ACCEPTED)
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<UserId, E> {
        Ok(UserId::Int(n))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<UserId, E> {
        i64::try_from(n)
            .map(UserId::Int)
            .map_err(|_| E::custom(UserIdError::OutOfRange(n.to_string())))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<UserId, E> {
        UserId::text(text).map_err(E::custom)
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<UserId, E> {
        UserId::text(text).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integers_and_strings_round_trip_with_their_json_type() {
        for value in [
            json!(42),
            json!(-7),
            json!(i64::MAX),
            json!(i64::MIN),
            json!("user-8"),
            json!("42"),
            json!("é".repeat(MAX_USER_ID_CHARS)),
        ] {
            let user: UserId = serde_json::from_value(value.clone()).expect("accepted");
            assert_eq!(serde_json::to_value(&user).expect("json"), value);
        }
    }

    #[test]
    fn other_json_types_are_refused_naming_what_is_accepted() {
        for (value, says) in [
            (json!(1.5), "floating point"),
            (json!(true), "boolean"),
            (json!(null), "null"),
            (json!([1]), "sequence"),
            (json!({"id": 1}), "map"),
            (json!(u64::MAX), "out of range"),
            (json!(""), "empty"),
            (json!("x".repeat(MAX_USER_ID_CHARS + 1)), "too long"),
            (json!("a\u{0}b"), "control"),
        ] {
            let err = serde_json::from_value::<UserId>(value.clone())
                .expect_err("refused")
                .to_string();
            assert!(
                err.contains(says) && err.contains(USER_ID_ACCEPTED),
                "{value}: {err}"
            );
        }
    }

    #[test]
    fn command_line_user_ids_are_integers_unless_quoted_or_not_numbers() {
        assert_eq!(UserId::from_cli("42"), Ok(UserId::Int(42)));
        assert_eq!(UserId::from_cli("-3"), Ok(UserId::Int(-3)));
        assert_eq!(UserId::from_cli("user-8"), UserId::text("user-8"));
        assert_eq!(UserId::from_cli("\"42\""), UserId::text("42"));
        assert!(matches!(
            UserId::from_cli("99999999999999999999"),
            Err(UserIdError::OutOfRange(_))
        ));
        assert_eq!(UserId::from_cli(""), Err(UserIdError::Empty));
        assert!(matches!(
            UserId::from_cli("\"unterminated"),
            Err(UserIdError::BadQuoting(_))
        ));
    }
}
