//! What to do after each verifyReceipt answer: Apple's status table (a
//! verdict, a hop between production and sandbox, a retry, or a failure),
//! and the backoff between retries.
//!
//! Status codes: <https://developer.apple.com/documentation/appstorereceipts/status>.

use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBuilder};
use rand::Rng;

use super::AppleError;
use super::answer::{Answer, TransportKind};
use crate::domain::{Transaction, Validation};

/// Which verifyReceipt endpoint answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint {
    Production,
    Sandbox,
}

impl Endpoint {
    /// The metric label.
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Production => "production",
            Self::Sandbox => "sandbox",
        }
    }

    /// How Apple spells the environment in `environment`.
    fn environment(self) -> &'static str {
        match self {
            Self::Production => "Production",
            Self::Sandbox => "Sandbox",
        }
    }
}

/// What to do after one answer.
#[derive(Debug)]
pub(super) enum Step {
    /// Final: the receipt's verdict.
    Done(Validation),
    /// Final: give up on this receipt for now (or for good: misconfigured).
    Fail(AppleError),
    /// Ask the other environment (21007, 21008).
    Redirect(Endpoint),
    /// Transient: try again after a backoff; this is the outcome once out
    /// of attempts.
    Retry(Result<Validation, AppleError>),
}

/// Refused; `transactions` are those Apple's answer still named.
fn invalid(reason: impl Into<String>, transactions: Vec<Transaction>) -> Validation {
    Validation::Invalid {
        reason: reason.into(),
        transactions,
    }
}

fn retry_then_unavailable(error: AppleError) -> Step {
    Step::Retry(Err(error))
}

pub(super) fn ping_pong() -> Step {
    retry_then_unavailable(AppleError::PingPong)
}

/// Classifies one answer from `endpoint` (Apple's status table, plus HTTP
/// and transport failures).
pub(super) fn step(endpoint: Endpoint, answer: Answer) -> Step {
    let response = match answer {
        Answer::Apple(response) => response,
        Answer::Http(code) if code == 429 || code >= 500 => {
            return retry_then_unavailable(AppleError::Status(code));
        }
        Answer::Http(code) => return Step::Fail(AppleError::Status(code)),
        // Every kind of transport failure (timeout, connection, reading) is
        // worth another try.
        Answer::Transport(e) => match e.kind {
            TransportKind::Timeout | TransportKind::Connect | TransportKind::Other => {
                return retry_then_unavailable(AppleError::Transport(e));
            }
        },
        Answer::BadBody(e) => return retry_then_unavailable(AppleError::BadAnswer(e)),
    };
    // A refusal keeps the transactions Apple's answer names: 21006 (valid,
    // but the subscription expired) comes with the receipt, and the original
    // worker posted INVALID with its transaction_id.
    let named = response.transactions;
    match response.status {
        0 if named.is_empty() => Step::Done(Validation::invalid("receipt holds no transaction")),
        0 => Step::Done(Validation::Valid {
            environment: response
                .environment
                .unwrap_or_else(|| endpoint.environment().to_owned()),
            transactions: named,
        }),
        21007 => Step::Redirect(Endpoint::Sandbox),
        21008 => Step::Redirect(Endpoint::Production),
        // Apple answers 21002 for truncated uploads and during incidents as
        // well as for garbage, so it gets the same budget before it is final.
        21002 => Step::Retry(Ok(invalid("21002: the receipt data is malformed", named))),
        21005 => retry_then_unavailable(AppleError::Apple {
            status: 21005,
            meaning: "the receipt server is temporarily unavailable",
        }),
        21009 => retry_then_unavailable(AppleError::Apple {
            status: 21009,
            meaning: "internal data access error",
        }),
        status @ 21100..=21199 if response.is_retryable => {
            retry_then_unavailable(AppleError::Apple {
                status,
                meaning: "internal data access error (retryable)",
            })
        }
        status @ 21100..=21199 => Step::Done(invalid(
            format!("{status}: internal data access error"),
            named,
        )),
        21003 => Step::Done(invalid(
            "21003: the receipt could not be authenticated",
            named,
        )),
        21006 => Step::Done(invalid(
            "21006: the receipt is valid but the subscription has expired",
            named,
        )),
        21010 => Step::Done(invalid(
            "21010: the user account cannot be found or has been deleted",
            named,
        )),
        21004 => Step::Fail(AppleError::SharedSecret),
        status => Step::Done(invalid(format!("apple status {status}"), named)),
    }
}

/// The pauses before each retry, at most `max_attempts - 1` of them:
/// exponential ceilings (`initial · 2^(retry-1)`, capped at `max`) with full
/// jitter, so clients that failed together do not retry together.
pub(super) fn backoff(
    max_attempts: u32,
    initial: Duration,
    max: Duration,
) -> impl backon::Backoff + use<> {
    ceilings(max_attempts, initial, max).map(|ceiling| full_jitter(ceiling, &mut rand::rng()))
}

/// The backoff ceilings before each retry.
fn ceilings(max_attempts: u32, initial: Duration, max: Duration) -> impl backon::Backoff + use<> {
    // The first ceiling is capped too (the builder would start at `initial`).
    ExponentialBuilder::new()
        .with_min_delay(initial.min(max))
        .with_max_delay(max)
        .with_factor(2.0)
        .with_max_times(usize::try_from(max_attempts.saturating_sub(1)).unwrap_or(usize::MAX))
        .build()
}

/// "Full jitter": a uniform pause in `0..=ceiling`.
fn full_jitter(ceiling: Duration, rng: &mut impl Rng) -> Duration {
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.random_range(0..=nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::apple::verify_receipt::answer::{
        BadAnswer, TransportError, parse_response,
    };
    use serde_json::{Value, json};

    fn apple(body: &Value) -> Answer {
        Answer::Apple(parse_response(body.to_string().as_bytes()).expect("parses"))
    }

    fn txn(id: &str, product: Option<&str>) -> Transaction {
        Transaction {
            transaction_id: id.into(),
            product_id: product.map(str::to_owned),
        }
    }

    /// The verdict, if the step is one.
    fn done(step: Step) -> Option<Validation> {
        match step {
            Step::Done(validation) => Some(validation),
            _ => None,
        }
    }

    #[test]
    fn status_0_is_valid_and_environment_defaults_to_the_endpoint() {
        let body = json!({"status": 0, "receipt": {"transaction_id": "7", "product_id": "p"}});
        assert_eq!(
            done(step(Endpoint::Production, apple(&body))),
            Some(Validation::Valid {
                environment: "Production".into(),
                transactions: vec![txn("7", Some("p"))]
            })
        );
        assert!(matches!(
            step(Endpoint::Sandbox, apple(&body)),
            Step::Done(Validation::Valid { environment, .. }) if environment == "Sandbox"
        ));
        assert_eq!(
            done(step(
                Endpoint::Production,
                apple(&json!({"status": 0, "receipt": {"in_app": []}}))
            )),
            Some(Validation::invalid("receipt holds no transaction"))
        );
    }

    #[test]
    fn apple_statuses_map_to_the_contract() {
        let at = |body: Value| step(Endpoint::Production, apple(&body));
        assert!(matches!(
            at(json!({"status": 21007})),
            Step::Redirect(Endpoint::Sandbox)
        ));
        assert!(matches!(
            at(json!({"status": 21008})),
            Step::Redirect(Endpoint::Production)
        ));

        let unavailable_after_retries = |s: Step| matches!(s, Step::Retry(Err(_)));
        assert!(unavailable_after_retries(at(json!({"status": 21005}))));
        assert!(unavailable_after_retries(at(json!({"status": 21009}))));
        assert!(unavailable_after_retries(at(
            json!({"status": 21100, "is-retryable": true})
        )));
        assert!(unavailable_after_retries(at(
            json!({"status": 21199, "is-retryable": 1})
        )));
        assert!(matches!(
            at(json!({"status": 21002})),
            Step::Retry(Ok(Validation::Invalid { reason, .. })) if reason.starts_with("21002")
        ));

        for (status, retryable) in [
            (21003, false),
            (21010, false),
            (21150, false),
            (21000, false),
            (21006, false),
        ] {
            match at(json!({"status": status, "is-retryable": retryable})) {
                Step::Done(Validation::Invalid { reason, .. }) => {
                    assert!(reason.contains(&status.to_string()), "{status}: {reason}");
                }
                other => panic!("{status}: {other:?}"),
            }
        }
        assert_eq!(
            done(at(json!({"status": 42}))),
            Some(Validation::invalid("apple status 42"))
        );
        // A refusal that comes with a receipt (21006: valid, but expired)
        // keeps its transactions; one without names none.
        assert_eq!(
            done(at(
                json!({"status": 21006, "receipt": {"transaction_id": "7", "product_id": "p"}})
            )),
            Some(invalid(
                "21006: the receipt is valid but the subscription has expired",
                vec![txn("7", Some("p"))]
            ))
        );
        assert!(matches!(
            at(json!({"status": 21003})),
            Step::Done(Validation::Invalid { transactions, .. }) if transactions.is_empty()
        ));
        assert!(
            matches!(at(json!({"status": 21004})), Step::Fail(e @ AppleError::SharedSecret) if e.to_string().starts_with("21004"))
        );
    }

    #[test]
    fn http_and_transport_failures_retry_except_plain_4xx() {
        let s = |a: Answer| step(Endpoint::Sandbox, a);
        let answers = || {
            [
                Answer::Http(500),
                Answer::Http(503),
                Answer::Http(429),
                Answer::Transport(TransportError::new(TransportKind::Timeout, "timed out")),
                Answer::Transport(TransportError::new(
                    TransportKind::Connect,
                    "connection refused",
                )),
                Answer::Transport(TransportError::new(TransportKind::Other, "reset")),
                Answer::BadBody(BadAnswer::NotAnObject),
            ]
        };
        for (answer, label) in answers()
            .into_iter()
            .zip(answers().map(|a| format!("{a:?}")))
        {
            assert!(matches!(s(answer), Step::Retry(Err(_))), "{label}");
        }
        for code in [301, 400, 404] {
            assert!(
                matches!(s(Answer::Http(code)), Step::Fail(e @ AppleError::Status(_)) if e.to_string().contains(&code.to_string()))
            );
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_one_pause_per_retry() {
        let ms = Duration::from_millis;
        // The ceilings are computed in f32 by the retry library: equal to
        // the microsecond.
        let close = |a: Duration, b: Duration| a.abs_diff(b) < Duration::from_micros(1);
        let got: Vec<_> = ceilings(7, ms(100), ms(1000)).collect();
        let want = [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)];
        assert_eq!(got.len(), want.len(), "{got:?}");
        assert!(got.iter().zip(want).all(|(g, w)| close(*g, w)), "{got:?}");
        assert_eq!(ceilings(1, ms(100), ms(1000)).count(), 0);
        assert!(ceilings(100, ms(100), ms(5000)).all(|c| c <= ms(5000)));
        assert!(ceilings(40, Duration::MAX, Duration::MAX).all(|c| c > Duration::ZERO));
        assert!(ceilings(3, Duration::ZERO, ms(5)).all(|c| c.is_zero()));
        assert!(ceilings(3, ms(50), ms(10)).all(|c| c == ms(10)));
        let pauses: Vec<_> = backoff(5, ms(10), ms(40)).collect();
        assert_eq!(pauses.len(), 4);
        assert!(
            pauses
                .iter()
                .zip([10, 20, 40, 40])
                .all(|(p, c)| *p <= ms(c) + Duration::from_micros(1))
        );
    }

    #[test]
    fn full_jitter_stays_within_the_ceiling_and_spreads() {
        let mut rng = rand::rng();
        let ceiling = Duration::from_millis(10);
        let pauses: Vec<_> = (0..200).map(|_| full_jitter(ceiling, &mut rng)).collect();
        assert!(pauses.iter().all(|p| *p <= ceiling));
        assert!(pauses.iter().any(|p| *p < ceiling / 2));
        assert!(pauses.iter().any(|p| *p > ceiling / 2));
        assert_eq!(full_jitter(Duration::ZERO, &mut rng), Duration::ZERO);
        assert!(full_jitter(Duration::MAX, &mut rng) <= Duration::MAX);
    }
}
