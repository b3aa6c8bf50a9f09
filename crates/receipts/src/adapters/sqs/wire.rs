//! What SQS's messages and answers look like to this adapter: text bodies
//! and the `reason` attribute, whole seconds, the error codes that mean a
//! missing queue or a bad handle, and failures as the port's errors.

use std::time::Duration;

use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{BatchResultErrorEntry, Message, MessageSystemAttributeName};
use platform::backend::{BackendError, BoxError, FailureKind};

use crate::ports::{Delivery, QueueError};

/// SQS's longest long poll, in seconds.
pub(super) const MAX_WAIT_SECONDS: u64 = 20;
/// SQS's longest visibility timeout (12 hours), in seconds.
pub(super) const MAX_VISIBILITY_SECONDS: u64 = 43_200;
/// The message attribute that carries [`Outgoing::reason`].
pub(super) const REASON: &str = "reason";
/// The message attribute that carries [`Outgoing::traceparent`] (the W3C
/// name, as OpenTelemetry's messaging instrumentations use it).
pub(super) const TRACEPARENT: &str = platform::trace::TRACEPARENT;
/// The codes SQS answers for a queue that does not exist (the JSON
/// protocol's and the query protocol's), and for a queue URL that cannot be
/// one on this endpoint (another region's, a malformed account id).
pub(super) const MISSING_QUEUE: &[&str] = &[
    "QueueDoesNotExist",
    "AWS.SimpleQueueService.NonExistentQueue",
    "InvalidAddress",
];
/// Codes meaning a receipt handle is malformed, expired or not in flight.
pub(super) const BAD_HANDLE: &[&str] = &[
    "ReceiptHandleIsInvalid",
    "MessageNotInflight",
    "AWS.SimpleQueueService.MessageNotInflight",
];
/// Codes of a call refused for want of permission: SQS was reached and the
/// caller authenticated; least-privilege roles may lack `ListQueues`, and
/// another account's queue may allow us `SendMessage` alone.
pub(super) const ACCESS_DENIED: &[&str] = &["AccessDenied", "AccessDeniedException"];

/// A failure of `operation` that SQS's SDK did not report as its error:
/// an answer without what it must hold, a request that cannot be built, a
/// message SQS would refuse.
pub(super) fn failure(
    operation: &'static str,
    kind: FailureKind,
    why: impl Into<BoxError>,
) -> QueueError {
    BackendError::new("sqs", operation, kind, why).into()
}

pub(super) fn closed() -> QueueError {
    BackendError::closed("sqs").into()
}

/// A message body SQS does not carry; sending it again will not help.
#[derive(Debug, thiserror::Error)]
enum BodyRefusal {
    #[error("SQS carries text only and this body is not UTF-8 (byte {valid_up_to})")]
    NotUtf8 { valid_up_to: usize },
    #[error("the body holds U+{code:04X}, which SQS does not carry")]
    Character { code: u32 },
}

/// One entry of a batch call that SQS refused.
#[derive(Debug, thiserror::Error)]
#[error("{}", if *.sender_fault {
    format!("SQS refused this message ({code}: {message}); sending it again will not help")
} else {
    format!("{code}: {message}")
})]
struct EntryFailure {
    code: String,
    message: String,
    sender_fault: bool,
}

/// The service error's code, if SQS answered one.
pub(super) fn code<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> Option<&str> {
    error
        .as_service_error()
        .and_then(ProvideErrorMetadata::code)
}

pub(super) fn is_bad_handle(code: &str, message: Option<&str>) -> bool {
    BAD_HANDLE.contains(&code)
        || (code == "InvalidParameterValue" && message.is_some_and(|m| m.contains("ReceiptHandle")))
}

/// Whole seconds, rounded up, at most `max`.
pub(super) fn whole_seconds(duration: Duration, max: u64) -> i32 {
    let seconds = duration
        .as_secs()
        .saturating_add(u64::from(duration.subsec_nanos() > 0));
    i32::try_from(seconds.min(max)).unwrap_or(i32::MAX)
}

/// The `WaitTimeSeconds` of one receive call with `remaining` to wait.
pub(super) fn wait_seconds(remaining: Duration) -> i32 {
    whole_seconds(remaining, MAX_WAIT_SECONDS)
}

/// Whether SQS carries `c` in a body or attribute (its allowed Unicode set).
pub(super) fn sqs_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// The body as SQS text, or why SQS would refuse it.
pub(super) fn text_body(body: &[u8]) -> Result<String, QueueError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        failure(
            "SendMessageBatch",
            FailureKind::Rejected,
            BodyRefusal::NotUtf8 {
                valid_up_to: e.valid_up_to(),
            },
        )
    })?;
    if let Some(c) = text.chars().find(|c| !sqs_char(*c)) {
        return Err(failure(
            "SendMessageBatch",
            FailureKind::Rejected,
            BodyRefusal::Character { code: u32::from(c) },
        ));
    }
    Ok(text.to_owned())
}

/// The reason as an attribute value SQS accepts; `None` when empty.
pub(super) fn reason_text(reason: &str) -> Option<String> {
    (!reason.is_empty()).then(|| {
        reason
            .chars()
            .map(|c| if sqs_char(c) { c } else { '\u{FFFD}' })
            .collect()
    })
}

/// A refused batch entry as the caller's error.
pub(super) fn entry_error(operation: &'static str, failed: &BatchResultErrorEntry) -> QueueError {
    let kind = if failed.sender_fault {
        FailureKind::Rejected
    } else if platform::aws::is_throttling_code(&failed.code) {
        FailureKind::Throttled
    } else {
        FailureKind::Other
    };
    failure(
        operation,
        kind,
        EntryFailure {
            code: failed.code.clone(),
            message: failed.message.as_deref().unwrap_or("no message").to_owned(),
            sender_fault: failed.sender_fault,
        },
    )
}

/// A received message as a [`Delivery`]; `None` without id or handle.
pub(super) fn delivery(message: Message) -> Option<Delivery> {
    let attribute = |name: &MessageSystemAttributeName| {
        message
            .attributes
            .as_ref()
            .and_then(|a| a.get(name))
            .map(String::as_str)
    };
    let receive_count = attribute(&MessageSystemAttributeName::ApproximateReceiveCount)
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let sent_at_ms = attribute(&MessageSystemAttributeName::SentTimestamp)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let text = |name: &str| {
        message
            .message_attributes
            .as_ref()
            .and_then(|a| a.get(name))
            .and_then(|v| v.string_value.clone())
    };
    let (reason, traceparent) = (text(REASON), text(TRACEPARENT));
    Some(Delivery {
        message_id: message.message_id?,
        handle: message.receipt_handle?,
        body: message.body.unwrap_or_default().into_bytes(),
        receive_count,
        sent_at_ms,
        reason,
        traceparent,
    })
}

/// The entry index a batch answer names (ids are the indexes, "0".."9").
pub(super) fn entry_index(id: &str, len: usize) -> Option<usize> {
    id.parse().ok().filter(|i| *i < len)
}

#[cfg(test)]
mod tests {
    use super::super::MAX_WAIT;
    use super::*;
    use platform::backend::chain;

    #[test]
    fn waits_and_timeouts_round_up_to_whole_seconds_within_sqs_limits() {
        assert_eq!(wait_seconds(Duration::ZERO), 0);
        assert_eq!(wait_seconds(Duration::from_millis(300)), 1);
        assert_eq!(wait_seconds(Duration::from_secs(1)), 1);
        assert_eq!(wait_seconds(Duration::from_millis(1001)), 2);
        assert_eq!(wait_seconds(Duration::from_mins(1)), 20);
        assert_eq!(wait_seconds(MAX_WAIT), 20);
        assert_eq!(whole_seconds(Duration::ZERO, MAX_VISIBILITY_SECONDS), 0);
        assert_eq!(
            whole_seconds(Duration::from_millis(1500), MAX_VISIBILITY_SECONDS),
            2
        );
        assert_eq!(
            whole_seconds(Duration::from_secs(u64::MAX), MAX_VISIBILITY_SECONDS),
            43_200
        );
    }

    #[test]
    fn bodies_sqs_cannot_carry_are_refused_and_reasons_are_cleaned() {
        assert_eq!(
            text_body(b"{\"a\": 1}\n\t\r").expect("text"),
            "{\"a\": 1}\n\t\r"
        );
        assert_eq!(text_body("ключ 🔑".as_bytes()).expect("text"), "ключ 🔑");
        assert!(
            matches!(text_body(&[0xff, 0x00]), Err(e @ QueueError::Unavailable(_)) if chain(&e).contains("UTF-8"))
        );
        assert!(
            matches!(text_body(b"a\x00b"), Err(e @ QueueError::Unavailable(_)) if chain(&e).contains("U+0000"))
        );
        assert!(matches!(
            text_body("\u{FFFE}".as_bytes()),
            Err(QueueError::Unavailable(_))
        ));
        assert_eq!(reason_text(""), None);
        assert_eq!(
            reason_text("bad\u{1}byte").as_deref(),
            Some("bad\u{FFFD}byte")
        );
    }

    #[test]
    fn bad_handle_codes_are_recognised() {
        assert!(is_bad_handle("ReceiptHandleIsInvalid", None));
        assert!(is_bad_handle("MessageNotInflight", None));
        assert!(is_bad_handle(
            "InvalidParameterValue",
            Some("Value x for parameter ReceiptHandle is invalid.")
        ));
        assert!(!is_bad_handle(
            "InvalidParameterValue",
            Some("VisibilityTimeout")
        ));
        assert!(!is_bad_handle("InternalError", None));
    }
}
