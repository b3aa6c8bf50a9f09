//! The verifyReceipt client against `apple-sim` over real HTTP: the sandbox
//! fallback, every retryable and final Apple status, retry budgets, the
//! shared-secret alert, and the simulator's own edges.

// A test that unwraps is a test that fails on the unexpected value.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use platform::backend::chain;
use receipts::adapters::apple::verify_receipt::{AppleConfig, VerifyReceiptClient};
use receipts::apple_sim::{self as sim, SimConfig, SimStats, Simulator};
use receipts::domain::Validation;
use receipts::ports::{ReceiptValidator, ValidatorError};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const RECEIPT_1_TRANSACTION: &str = "1000000042928567";
const RECEIPT_2_TRANSACTION: &str = "1000000181492557";

/// A simulator served on an ephemeral port; stops when dropped.
struct Sim {
    base: String,
    http: reqwest::Client,
    stop: CancellationToken,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Sim {
    async fn start(config: SimConfig) -> Self {
        let simulator = Arc::new(Simulator::new(config).expect("valid simulator config"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            sim::serve(
                listener,
                simulator,
                async move { stopped.cancelled().await },
            )
            .await
            .expect("apple-sim serves");
        });
        Self {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            stop,
        }
    }

    fn client(&self, max_attempts: u32, shared_secret: Option<&str>) -> VerifyReceiptClient {
        VerifyReceiptClient::new(AppleConfig {
            production_url: format!("{}/verifyReceipt", self.base),
            sandbox_url: format!("{}/sandbox/verifyReceipt", self.base),
            shared_secret: shared_secret.map(Into::into),
            max_attempts,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            request_timeout: Duration::from_millis(500),
        })
        .expect("client builds")
    }

    async fn script(&self, faults: &[&str]) -> reqwest::Response {
        self.http
            .post(format!("{}/sim/faults", self.base))
            .json(faults)
            .send()
            .await
            .expect("POST /sim/faults")
    }

    async fn queue(&self, faults: &[&str]) {
        let response = self.script(faults).await;
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
    }

    async fn stats(&self) -> SimStats {
        let response = self
            .http
            .get(format!("{}/sim/stats", self.base))
            .send()
            .await
            .expect("GET /sim/stats");
        assert_eq!(response.status(), 200);
        response.json().await.expect("stats JSON")
    }

    async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .body(body)
            .send()
            .await
            .expect("POST");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }
}

fn fixture(n: u8) -> String {
    let path = format!(
        "{}/tests/fixtures/apple-sandbox-receipt-{n}.b64",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A legacy receipt without `environment`: a production one.
fn production_receipt(transaction_id: &str) -> String {
    let info = STANDARD.encode(format!(
        "{{ \"transaction-id\" = \"{transaction_id}\"; \"original-transaction-id\" = \"{transaction_id}\"; \"product-id\" = \"gems\"; \"bid\" = \"com.example\"; \"quantity\" = \"1\"; }}"
    ));
    STANDARD.encode(format!("{{ \"purchase-info\" = \"{info}\"; }}"))
}

fn transaction_ids(validation: &Validation) -> Vec<&str> {
    match validation {
        Validation::Valid { transactions, .. } => transactions
            .iter()
            .map(|t| t.transaction_id.as_str())
            .collect(),
        Validation::Invalid { reason, .. } => panic!("expected Valid, got Invalid: {reason}"),
    }
}

fn stats(production: u64, sandbox: u64, faults: u64) -> SimStats {
    SimStats {
        production,
        sandbox,
        faults,
    }
}

#[tokio::test]
async fn sandbox_fixtures_are_valid_after_production_sends_them_to_sandbox() {
    let sim = Sim::start(SimConfig::default()).await;
    let client = sim.client(5, None);

    let one = client.validate(&fixture(1)).await.expect("validates");
    assert_eq!(transaction_ids(&one), [RECEIPT_1_TRANSACTION]);
    let Validation::Valid {
        environment,
        transactions,
    } = &one
    else {
        unreachable!("checked above")
    };
    assert_eq!(environment, "Sandbox");
    assert_eq!(
        transactions[0].product_id.as_deref(),
        Some("com.miniclip.animalshelter.currencyPack1")
    );
    // Production answered 21007 (else sandbox, answering 0, would be alone).
    assert_eq!(sim.stats().await, stats(1, 1, 0));

    let two = client.validate(&fixture(2)).await.expect("validates");
    assert_eq!(transaction_ids(&two), [RECEIPT_2_TRANSACTION]);
    assert!(matches!(two, Validation::Valid { environment, .. } if environment == "Sandbox"));
    assert_eq!(sim.stats().await, stats(2, 2, 0));
}

#[tokio::test]
async fn production_receipts_never_reach_sandbox() {
    let sim = Sim::start(SimConfig::default()).await;
    let validation = sim
        .client(5, None)
        .validate(&production_receipt("42"))
        .await
        .expect("validates");
    assert_eq!(transaction_ids(&validation), ["42"]);
    assert!(
        matches!(validation, Validation::Valid { environment, .. } if environment == "Production")
    );
    assert_eq!(sim.stats().await, stats(1, 0, 0));
}

/// One scripted fault, then the fixture: valid, with exactly one retry
/// (production asked twice: the fault, then the 21007 that leads to sandbox).
async fn retried_once_then_valid(fault: &str) {
    let sim = Sim::start(SimConfig::default()).await;
    sim.queue(&[fault]).await;
    let validation = sim
        .client(5, None)
        .validate(&fixture(1))
        .await
        .unwrap_or_else(|e| panic!("{fault}: {e}"));
    assert_eq!(
        transaction_ids(&validation),
        [RECEIPT_1_TRANSACTION],
        "{fault}"
    );
    assert_eq!(sim.stats().await, stats(2, 1, 1), "{fault}");
}

#[tokio::test]
async fn status_21005_is_retried() {
    retried_once_then_valid("21005").await;
}

#[tokio::test]
async fn status_21009_is_retried() {
    retried_once_then_valid("21009").await;
}

#[tokio::test]
async fn http_503_is_retried() {
    retried_once_then_valid("503").await;
}

#[tokio::test]
async fn http_429_is_retried() {
    retried_once_then_valid("http-429").await;
}

#[tokio::test]
async fn a_timeout_is_retried() {
    retried_once_then_valid("timeout").await;
}

#[tokio::test]
async fn status_21002_is_retried() {
    retried_once_then_valid("21002").await;
}

#[tokio::test]
async fn status_21100_marked_retryable_is_retried() {
    retried_once_then_valid("21100-retryable").await;
}

#[tokio::test]
async fn a_retry_after_sandbox_starts_at_sandbox() {
    let sim = Sim::start(SimConfig::default()).await;
    // Scripted: production's 21007 (as the real one would say), then sandbox's 503.
    sim.queue(&["21007", "503"]).await;
    let validation = sim
        .client(5, None)
        .validate(&fixture(1))
        .await
        .expect("validates");
    assert_eq!(transaction_ids(&validation), [RECEIPT_1_TRANSACTION]);
    assert_eq!(sim.stats().await, stats(1, 2, 2));
}

#[tokio::test]
async fn a_contradictory_redirect_is_retried_not_followed_forever() {
    let sim = Sim::start(SimConfig::default()).await;
    // prod → 21007 → sandbox → 21008 → prod → 21007 again: one hop each way, then retry.
    sim.queue(&["21007", "21008", "21007"]).await;
    let validation = sim
        .client(5, None)
        .validate(&fixture(1))
        .await
        .expect("validates");
    assert_eq!(transaction_ids(&validation), [RECEIPT_1_TRANSACTION]);
    // The retry starts at production (where the attempt ended): 21007, then sandbox's 0.
    assert_eq!(sim.stats().await, stats(3, 2, 3));
}

#[tokio::test]
async fn final_statuses_are_invalid_at_once_and_name_the_status() {
    for status in ["21003", "21010", "21199", "21000", "21100"] {
        let sim = Sim::start(SimConfig::default()).await;
        sim.queue(&[status]).await;
        match sim.client(5, None).validate(&fixture(1)).await {
            Ok(Validation::Invalid {
                reason,
                transactions,
            }) => {
                assert!(reason.contains(status), "{status}: {reason}");
                assert!(transactions.is_empty(), "{status}: {transactions:?}");
            }
            other => panic!("{status}: expected Invalid, got {other:?}"),
        }
        assert_eq!(sim.stats().await, stats(1, 0, 1), "{status}: no retry");
    }
}

/// Apple answers 21006 (valid, but the subscription expired) with the
/// receipt: the refusal names its transaction, so INVALID can be posted for it.
#[tokio::test]
async fn status_21006_is_invalid_and_names_the_receipts_transaction() {
    let sim = Sim::start(SimConfig::default()).await;
    sim.queue(&["21006"]).await;
    let validation = sim
        .client(5, None)
        .validate(&fixture(1))
        .await
        .expect("answers");
    match validation {
        Validation::Invalid {
            reason,
            transactions,
        } => {
            assert!(reason.contains("21006"), "{reason}");
            let ids: Vec<&str> = transactions
                .iter()
                .map(|t| t.transaction_id.as_str())
                .collect();
            assert_eq!(ids, [RECEIPT_1_TRANSACTION]);
        }
        other @ Validation::Valid { .. } => panic!("expected Invalid, got {other:?}"),
    }
    assert_eq!(sim.stats().await, stats(1, 0, 1), "no retry");
}

#[tokio::test]
async fn status_21002_past_the_budget_is_invalid() {
    let sim = Sim::start(SimConfig::default()).await;
    sim.queue(&["21002"; 4]).await;
    let validation = sim
        .client(3, None)
        .validate(&fixture(1))
        .await
        .expect("answers");
    assert!(
        matches!(&validation, Validation::Invalid { reason, .. } if reason.contains("21002")),
        "{validation:?}"
    );
    assert_eq!(sim.stats().await, stats(3, 0, 3));
}

#[tokio::test]
async fn retryable_answers_past_the_budget_are_unavailable() {
    for fault in ["21005", "21009", "503", "21100-retryable", "timeout"] {
        let sim = Sim::start(SimConfig::default()).await;
        sim.queue(&[fault; 3]).await;
        match sim.client(3, None).validate(&fixture(1)).await {
            Err(e @ ValidatorError::Unavailable(_)) => assert!(!chain(&e).is_empty()),
            other => panic!("{fault}: expected Unavailable, got {other:?}"),
        }
        assert_eq!(sim.stats().await, stats(3, 0, 3), "{fault}");
    }
}

#[tokio::test]
async fn a_client_error_is_unavailable_without_retry() {
    let sim = Sim::start(SimConfig::default()).await;
    sim.queue(&["http-404"]).await;
    let outcome = sim.client(5, None).validate(&fixture(1)).await;
    assert!(
        matches!(&outcome, Err(e @ ValidatorError::Unavailable(_)) if chain(e).contains("404")),
        "{outcome:?}"
    );
    assert_eq!(sim.stats().await, stats(1, 0, 1));
}

#[tokio::test]
async fn a_wrong_shared_secret_is_a_configuration_error() {
    let sim = Sim::start(SimConfig {
        shared_secret: Some("right".into()),
        ..SimConfig::default()
    })
    .await;
    for secret in [Some("wrong"), None] {
        let outcome = sim.client(5, secret).validate(&fixture(1)).await;
        assert!(
            matches!(&outcome, Err(e @ ValidatorError::Config(_)) if chain(e).contains("21004")),
            "{secret:?}: {outcome:?}"
        );
    }
    // No retry: production (21007) and sandbox (21004) once per receipt.
    assert_eq!(sim.stats().await, stats(2, 2, 0));

    let validation = sim
        .client(5, Some("right"))
        .validate(&fixture(2))
        .await
        .expect("validates");
    assert_eq!(transaction_ids(&validation), [RECEIPT_2_TRANSACTION]);
}

#[tokio::test]
async fn garbage_receipt_data_is_invalid_after_its_retries() {
    let sim = Sim::start(SimConfig::default()).await;
    for garbage in ["not base64 at all!", "aGVsbG8gd29ybGQ=", ""] {
        let validation = sim
            .client(2, None)
            .validate(garbage)
            .await
            .expect("answers");
        assert!(
            matches!(&validation, Validation::Invalid { reason, .. } if reason.contains("21002")),
            "{garbage:?}: {validation:?}"
        );
    }
    assert_eq!(sim.stats().await, stats(6, 0, 0));
}

#[tokio::test]
async fn an_unreachable_apple_is_unavailable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let client = VerifyReceiptClient::new(AppleConfig {
        production_url: format!("http://{addr}/verifyReceipt"),
        sandbox_url: format!("http://{addr}/sandbox/verifyReceipt"),
        max_attempts: 2,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(2),
        request_timeout: Duration::from_millis(500),
        ..AppleConfig::default()
    })
    .expect("client");
    let outcome = client.validate(&fixture(1)).await;
    assert!(
        matches!(outcome, Err(ValidatorError::Unavailable(_))),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn the_simulator_answers_like_apple() {
    let sim = Sim::start(SimConfig::default()).await;
    let body = |receipt: &str| {
        json!({"receipt-data": receipt, "exclude-old-transactions": false}).to_string()
    };

    let (status, text) = sim
        .post("/sandbox/verifyReceipt", body(&production_receipt("9")))
        .await;
    assert_eq!(
        (status, serde_json::from_str::<Value>(&text).expect("json")),
        (200, json!({"status": 21008}))
    );

    let (status, text) = sim.post("/verifyReceipt", body(&fixture(1))).await;
    assert_eq!(
        (status, serde_json::from_str::<Value>(&text).expect("json")),
        (200, json!({"status": 21007}))
    );

    let (status, text) = sim.post("/sandbox/verifyReceipt", body(&fixture(1))).await;
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(answer["status"], 0);
    assert_eq!(answer["environment"], "Sandbox");
    assert_eq!(answer["receipt"]["transaction_id"], RECEIPT_1_TRANSACTION);
    assert_eq!(
        answer["receipt"]["original_transaction_id"],
        RECEIPT_1_TRANSACTION
    );
    assert_eq!(answer["receipt"]["bid"], "com.miniclip.animalshelter");
    assert_eq!(answer["receipt"]["quantity"], "1");
    assert_eq!(answer["receipt"]["purchase_date_ms"], "1334750833000");

    let (status, text) = sim.post("/verifyReceipt", "receipt-data=abc").await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("error"), "{text}");

    let (status, _) = sim
        .post("/verifyReceipt", vec![b' '; sim::MAX_BODY_BYTES + 1])
        .await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn the_fault_script_is_checked_queued_and_clearable() {
    let sim = Sim::start(SimConfig::default()).await;
    let response = sim.script(&["21005", "sometimes"]).await;
    assert_eq!(response.status(), 400);
    assert!(response.text().await.expect("body").contains("sometimes"));
    let (status, _) = sim.post("/sim/faults", "{\"not\":\"a list\"}").await;
    assert_eq!(status, 400);

    let response = sim.script(&["21003", "21003"]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({"queued": 2})
    );
    let cleared = sim
        .http
        .delete(format!("{}/sim/faults", sim.base))
        .send()
        .await
        .expect("DELETE");
    assert!(cleared.status().is_success());

    let validation = sim
        .client(5, None)
        .validate(&fixture(2))
        .await
        .expect("validates");
    assert_eq!(transaction_ids(&validation), [RECEIPT_2_TRANSACTION]);
    assert_eq!(sim.stats().await.faults, 0);
}

#[tokio::test]
async fn random_faults_at_full_share_always_fire() {
    let sim = Sim::start(SimConfig {
        share_21009: 1.0,
        ..SimConfig::default()
    })
    .await;
    let outcome = sim.client(2, None).validate(&fixture(1)).await;
    assert!(
        matches!(outcome, Err(ValidatorError::Unavailable(_))),
        "{outcome:?}"
    );
    assert_eq!(sim.stats().await, stats(2, 0, 2));
}
