//! Queues as jobs and operators name them: a [`QueueName`] (SQS's naming
//! rule, which the embedded queue follows too), or a queue URL as SQS hands
//! them out (`https://sqs.us-east-1.amazonaws.com/123456789012/results`),
//! whose last path segment is the queue's name. [`QueueRef`] is either; the
//! queue port takes it, and each engine decides what a URL means to it.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest queue URL accepted (SQS's are under 150 characters).
pub const MAX_QUEUE_URL_BYTES: usize = 1024;

/// What a queue reference may be, as error messages say it.
pub const QUEUE_REF_ACCEPTED: &str = "a queue name (1 to 80 ASCII letters, digits, '-' or '_', \
     optionally ending in .fifo) or an http(s) queue URL whose last path segment is one";

/// A queue name: 1..=80 characters of ASCII letters, digits, `-` and `_`
/// (SQS's rule), optionally ending in `.fifo`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct QueueName(String);

/// Why a queue name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueNameError {
    /// Empty, or longer than 80 characters.
    #[error("a queue name is 1 to 80 characters, not {0}")]
    Length(usize),
    /// A character outside SQS's set.
    #[error("a queue name holds only ASCII letters, digits, '-' and '_' (and may end in .fifo)")]
    Characters,
}

/// A [`QueueName`] spelled in code, checked when the crate compiles.
macro_rules! queue_name {
    ($name:literal) => {{
        const _: () = assert!($crate::domain::QueueName::check($name).is_ok());
        $crate::domain::QueueName::checked($name)
    }};
}
pub(crate) use queue_name;

impl QueueName {
    /// A queue name, if `name` follows the rule.
    pub fn new(name: impl Into<String>) -> Result<Self, QueueNameError> {
        let name = name.into();
        Self::check(&name)?;
        Ok(Self(name))
    }

    /// Checks `name` against the rule (usable in constants).
    pub const fn check(name: &str) -> Result<(), QueueNameError> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() > 80 {
            return Err(QueueNameError::Length(bytes.len()));
        }
        let fifo = b".fifo";
        let mut base = bytes.len();
        if bytes.len() >= fifo.len() {
            let start = bytes.len() - fifo.len();
            let mut i = 0;
            let mut ends_fifo = true;
            while i < fifo.len() {
                if bytes[start + i] != fifo[i] {
                    ends_fifo = false;
                }
                i += 1;
            }
            if ends_fifo {
                base = start;
            }
        }
        if base == 0 {
            return Err(QueueNameError::Characters);
        }
        let mut i = 0;
        while i < base {
            let b = bytes[i];
            if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Err(QueueNameError::Characters);
            }
            i += 1;
        }
        Ok(())
    }

    /// Whether it names a FIFO queue (ends in `.fifo`, as SQS spells it).
    pub fn is_fifo(&self) -> bool {
        self.0.strip_suffix(".fifo").is_some()
    }

    /// A name [`queue_name!`] checked when the crate compiled.
    #[doc(hidden)]
    pub fn checked(name: &'static str) -> Self {
        Self(name.to_owned())
    }

    /// The name, as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for QueueName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        QueueName::new(text).map_err(de::Error::custom)
    }
}

/// A queue URL: http or https, a host, no user, password, query or
/// fragment, and a path whose last segment is a valid [`QueueName`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueueUrl {
    url: url::Url,
    name: QueueName,
}

impl QueueUrl {
    /// A queue URL, checked as the type says.
    pub fn parse(text: &str) -> Result<Self, QueueRefError> {
        let refuse = |reason: QueueUrlProblem| QueueRefError::BadUrl {
            text: shown(text),
            reason,
        };
        if text.len() > MAX_QUEUE_URL_BYTES {
            return Err(refuse(QueueUrlProblem::TooLong));
        }
        let url = url::Url::parse(text).map_err(|e| refuse(QueueUrlProblem::Parse(e)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(refuse(QueueUrlProblem::Scheme));
        }
        if url.host().is_none() {
            return Err(refuse(QueueUrlProblem::NoHost));
        }
        if !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(refuse(QueueUrlProblem::Extras));
        }
        let last = url
            .path_segments()
            .and_then(|mut segments| segments.next_back())
            .unwrap_or_default();
        if last.is_empty() {
            return Err(refuse(QueueUrlProblem::NoName));
        }
        let name = QueueName::new(last).map_err(|reason| {
            refuse(QueueUrlProblem::BadName {
                segment: shown(last),
                reason,
            })
        })?;
        Ok(Self { url, name })
    }

    /// The URL, as text.
    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }

    /// The queue's name: the URL's last path segment.
    pub fn name(&self) -> &QueueName {
        &self.name
    }
}

/// A queue, by name or by URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum QueueRef {
    /// By name.
    Name(QueueName),
    /// By URL.
    Url(QueueUrl),
}

/// Why a queue URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueUrlProblem {
    /// Over [`MAX_QUEUE_URL_BYTES`].
    #[error("a queue URL is at most {MAX_QUEUE_URL_BYTES} bytes")]
    TooLong,
    /// Not a URL.
    #[error("{0}")]
    Parse(#[source] url::ParseError),
    /// Not http or https.
    #[error("a queue URL is http or https")]
    Scheme,
    /// No host.
    #[error("a queue URL names a host")]
    NoHost,
    /// A user, password, query or fragment.
    #[error("a queue URL carries no user, password, query or fragment")]
    Extras,
    /// No last path segment.
    #[error(
        "a queue URL ends in the queue's name, as in \
         https://sqs.us-east-1.amazonaws.com/123456789012/results"
    )]
    NoName,
    /// A last path segment that is not a queue name.
    #[error("its last path segment '{segment}' is not a queue name: {reason}")]
    BadName {
        /// The segment, as shown (shortened when long).
        segment: String,
        /// Why.
        #[source]
        reason: QueueNameError,
    },
}

/// Why a queue reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueRefError {
    /// Not a queue name.
    #[error("'{text}' is not a queue name: {reason}")]
    BadName {
        /// The text, as shown (shortened when long).
        text: String,
        /// Why.
        #[source]
        reason: QueueNameError,
    },
    /// Not a queue URL.
    #[error("'{text}' is not a queue URL: {reason}")]
    BadUrl {
        /// The text, as shown (shortened when long).
        text: String,
        /// Why.
        #[source]
        reason: QueueUrlProblem,
    },
}

impl QueueRef {
    /// A URL when `text` has a scheme (`…://`), else a name.
    pub fn parse(text: &str) -> Result<Self, QueueRefError> {
        if text.contains("://") {
            return QueueUrl::parse(text).map(Self::Url);
        }
        QueueName::new(text)
            .map(Self::Name)
            .map_err(|reason| QueueRefError::BadName {
                text: shown(text),
                reason,
            })
    }

    /// The queue's name (a URL's last path segment).
    pub fn name(&self) -> &QueueName {
        match self {
            Self::Name(name) => name,
            Self::Url(url) => url.name(),
        }
    }

    /// The URL, when the queue was given by one.
    pub fn url(&self) -> Option<&QueueUrl> {
        match self {
            Self::Name(_) => None,
            Self::Url(url) => Some(url),
        }
    }
}

impl From<QueueName> for QueueRef {
    fn from(name: QueueName) -> Self {
        Self::Name(name)
    }
}

impl fmt::Display for QueueRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(name) => name.fmt(f),
            Self::Url(url) => f.write_str(url.as_str()),
        }
    }
}

impl Serialize for QueueRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for QueueRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(QueueRefVisitor)
    }
}

struct QueueRefVisitor;

impl Visitor<'_> for QueueRefVisitor {
    type Value = QueueRef;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(QUEUE_REF_ACCEPTED)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<QueueRef, E> {
        QueueRef::parse(text)
            .map_err(|e| E::custom(format_args!("{e}; expected {QUEUE_REF_ACCEPTED}")))
    }
}

/// At most 100 characters of `text`, for an error message.
fn shown(text: &str) -> String {
    const MAX: usize = 100;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_follow_sqs_rules() {
        assert!(QueueName::new("results").is_ok());
        assert!(QueueName::new("a-b_c.fifo").is_ok());
        assert!(QueueName::new("").is_err());
        assert!(QueueName::new(".fifo").is_err());
        assert!(QueueName::new("x".repeat(81)).is_err());
        assert!(QueueName::new("a/b").is_err());
    }

    #[test]
    fn a_queue_url_names_its_queue_by_its_last_path_segment() {
        for (text, name) in [
            (
                "https://sqs.us-east-1.amazonaws.com/123456789012/results",
                "results",
            ),
            ("http://127.0.0.1:4566/000000000000/jobs.fifo", "jobs.fifo"),
            ("http://localhost/results", "results"),
        ] {
            let queue = QueueRef::parse(text).expect("valid URL");
            assert_eq!(queue.name().as_str(), name);
            assert_eq!(queue.url().map(QueueUrl::as_str), Some(text));
            assert_eq!(queue.to_string(), text);
        }
        let name = QueueRef::parse("results").expect("valid name");
        assert_eq!(
            name,
            QueueRef::Name(QueueName::new("results").expect("name"))
        );
        assert_eq!(name.url(), None);
    }

    #[test]
    fn bad_queue_references_say_what_is_wrong() {
        for (text, says) in [
            ("", "1 to 80 characters"),
            ("no spaces", "only ASCII letters"),
            (
                "https://sqs.us-east-1.amazonaws.com/123456789012/",
                "ends in the queue's name",
            ),
            (
                "https://sqs.us-east-1.amazonaws.com",
                "ends in the queue's name",
            ),
            ("https://h/123/bad%20name", "not a queue name"),
            ("ftp://h/123/results", "http or https"),
            ("https://user:pw@h/123/results", "no user, password"),
            ("https://h/123/results?x=1", "query"),
            ("https://h/123/results#top", "fragment"),
            ("http://", "not a queue URL"),
        ] {
            let err = QueueRef::parse(text).expect_err("refused").to_string();
            assert!(err.contains(says), "{text:?}: {err}");
        }
        let long = format!("https://h/{}/results", "a".repeat(MAX_QUEUE_URL_BYTES));
        assert!(QueueRef::parse(&long).is_err());
    }

    #[test]
    fn queue_references_deserialize_from_strings_only() {
        let queue: QueueRef = serde_json::from_str(r#""https://h/1/results""#).expect("url");
        assert_eq!(queue.name().as_str(), "results");
        for json in ["5", "null", r#"{"name":"q"}"#, r#""a b""#] {
            let err = serde_json::from_str::<QueueRef>(json)
                .expect_err("refused")
                .to_string();
            assert!(err.contains(QUEUE_REF_ACCEPTED), "{json}: {err}");
        }
    }
}
