//! `apple-sim`: a verifyReceipt simulator for tests, demos and load runs.
//! It answers like Apple's legacy endpoints for legacy (iOS 6 style)
//! transaction receipts — production at `/verifyReceipt`, sandbox at
//! `/sandbox/verifyReceipt`, with 21007/21008 when a receipt reaches the
//! wrong one — and injects faults, either at random (shares per request) or
//! from a script queued through `POST /sim/faults`.
//!
//! Not a validator: it trusts the receipt's text (no signature check), and it
//! knows nothing of iOS 7 app receipts or `StoreKit` 2.
//!
//! Behind the crate's `apple-sim` feature: the worker never runs it. The
//! binary turns the feature on for `quintet apple-sim`; the crate's own
//! tests turn it on through their dev-dependency on the crate.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, serve as axum_serve};
use clap::builder::{StringValueParser, TypedValueParser as _};
use platform::ErrorResponse;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::domain::legacy::LegacyReceipt;

/// Largest request body (a receipt is at most 1 MiB of base64, plus JSON).
pub const MAX_BODY_BYTES: usize = 2 << 20;
/// Most scripted faults waiting at once.
pub const MAX_SCRIPT: usize = 10_000;
/// How long a "timeout" fault holds the request before answering.
pub const TIMEOUT_FAULT: Duration = Duration::from_mins(1);

/// How the simulator misbehaves. `Debug` redacts the shared secret.
#[derive(Clone, Default)]
pub struct SimConfig {
    /// Added before every answer.
    pub latency: Duration,
    /// Probability (0..=1) that a request gets `{"status":21005}`.
    pub share_21005: f64,
    /// Probability (0..=1) that a request gets `{"status":21009}`.
    pub share_21009: f64,
    /// Probability (0..=1) that a request gets HTTP 503.
    pub share_503: f64,
    /// Probability (0..=1) that a request waits [`TIMEOUT_FAULT`] before its answer.
    pub share_timeout: f64,
    /// When set, requests whose `password` differs get 21004.
    pub shared_secret: Option<SecretString>,
}

impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("latency", &self.latency)
            .field("share_21005", &self.share_21005)
            .field("share_21009", &self.share_21009)
            .field("share_503", &self.share_503)
            .field("share_timeout", &self.share_timeout)
            .field(
                "shared_secret",
                &self.shared_secret.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

impl SimConfig {
    fn shares(&self) -> [(f64, Fault); 4] {
        [
            (self.share_21005, Fault::Status(21005)),
            (self.share_21009, Fault::Status(21009)),
            (self.share_503, Fault::Http(503)),
            (self.share_timeout, Fault::Timeout),
        ]
    }

    /// Checks each share is in 0..=1 and that together they are at most 1.
    pub fn validate(&self) -> Result<(), SimError> {
        let mut total = 0.0;
        for (share, fault) in self.shares() {
            if !(0.0..=1.0).contains(&share) {
                return Err(SimError::InvalidConfig(ShareProblem::OutOfRange {
                    fault,
                    share,
                }));
            }
            total += share;
        }
        if total > 1.0 + f64::EPSILON {
            return Err(SimError::InvalidConfig(ShareProblem::Total(total)));
        }
        Ok(())
    }

    /// Draws this request's fault from the shares, if any.
    fn draw(&self, rng: &mut impl Rng) -> Option<Fault> {
        let mut roll: f64 = rng.random();
        for (share, fault) in self.shares() {
            if roll < share {
                return Some(fault);
            }
            roll -= share;
        }
        None
    }
}

/// What is wrong with the configured fault shares.
#[derive(Debug, thiserror::Error)]
pub enum ShareProblem {
    /// One share is outside 0..=1.
    #[error("the share of {fault} faults is {share}; shares are between 0 and 1")]
    OutOfRange {
        /// The fault.
        fault: Fault,
        /// Its share.
        share: f64,
    },
    /// The shares add up to more than 1.
    #[error("fault shares add up to {0}; at most 1")]
    Total(f64),
    /// Not a number.
    #[error("{0} (a share is a number between 0 and 1, e.g. 0.05)")]
    NotANumber(#[source] std::num::ParseFloatError),
    /// A number outside 0..=1.
    #[error("{0} is not between 0 and 1")]
    NotAShare(f64),
}

/// Why the simulator could not start or take a script.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The fault shares cannot work.
    #[error("apple-sim configuration: {0}")]
    InvalidConfig(#[source] ShareProblem),
    #[error(
        "unknown fault '{0}' (expected an Apple status like \"21005\", \"N-retryable\", \"503\", \"http-NNN\" or \"timeout\")"
    )]
    /// A fault name the simulator does not know.
    UnknownFault(String),
    /// The fault script is full.
    #[error("the fault script holds at most {MAX_SCRIPT} entries")]
    ScriptFull,
    /// The listener failed.
    #[error("apple-sim: {0}")]
    Io(#[from] std::io::Error),
}

/// One injected misbehaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `{"status": N}` (HTTP 200); 21006 comes with the decoded receipt, as Apple sends it.
    Status(i64),
    /// `{"status": N, "is-retryable": true}` (HTTP 200).
    Retryable(i64),
    /// This HTTP status, no Apple body.
    Http(u16),
    /// Waits [`TIMEOUT_FAULT`], then answers normally.
    Timeout,
}

impl FromStr for Fault {
    type Err = SimError;

    /// `"21005"`, `"21100-retryable"`, `"503"` (or `"http-NNN"`), `"timeout"`.
    fn from_str(text: &str) -> Result<Self, SimError> {
        let unknown = || SimError::UnknownFault(text.chars().take(40).collect());
        let text = text.trim();
        if text.eq_ignore_ascii_case("timeout") {
            return Ok(Self::Timeout);
        }
        if text == "503" {
            return Ok(Self::Http(503));
        }
        if let Some(code) = text.strip_prefix("http-") {
            return match code.parse::<u16>() {
                Ok(code @ 100..=599) => Ok(Self::Http(code)),
                _ => Err(unknown()),
            };
        }
        if let Some(status) = text.strip_suffix("-retryable") {
            return status.parse().map(Self::Retryable).map_err(|_| unknown());
        }
        text.parse().map(Self::Status).map_err(|_| unknown())
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(status) => write!(f, "{status}"),
            Self::Retryable(status) => write!(f, "{status}-retryable"),
            Self::Http(code) => write!(f, "http-{code}"),
            Self::Timeout => f.write_str("timeout"),
        }
    }
}

/// Requests seen so far, by endpoint (faults included), and faults given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    /// Requests to the production endpoint.
    pub production: u64,
    /// Requests to the sandbox endpoint.
    pub sandbox: u64,
    /// Requests answered with a fault.
    pub faults: u64,
}

/// Which endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Production,
    Sandbox,
}

/// The simulator's state: configuration, fault script and counters.
pub struct Simulator {
    config: SimConfig,
    script: Mutex<VecDeque<Fault>>,
    production: AtomicU64,
    sandbox: AtomicU64,
    faults: AtomicU64,
    /// Cancelled when [`serve`] shuts down, so "timeout" faults end early.
    stopping: CancellationToken,
}

impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// A simulator with `config`, once its shares are checked.
    pub fn new(config: SimConfig) -> Result<Self, SimError> {
        config.validate()?;
        Ok(Self {
            config,
            script: Mutex::new(VecDeque::new()),
            production: AtomicU64::new(0),
            sandbox: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            stopping: CancellationToken::new(),
        })
    }

    /// The requests seen so far.
    pub fn stats(&self) -> SimStats {
        SimStats {
            production: self.production.load(Ordering::Relaxed),
            sandbox: self.sandbox.load(Ordering::Relaxed),
            faults: self.faults.load(Ordering::Relaxed),
        }
    }

    /// Queues faults for the next requests, in order; returns how many wait.
    /// All or nothing: a script that does not fit is refused whole.
    pub fn script(&self, faults: &[Fault]) -> Result<usize, SimError> {
        let mut script = self.script.lock().unwrap_or_else(PoisonError::into_inner);
        if script.len() + faults.len() > MAX_SCRIPT {
            return Err(SimError::ScriptFull);
        }
        script.extend(faults.iter().copied());
        Ok(script.len())
    }

    /// Drops the faults still queued.
    pub fn clear_script(&self) {
        self.script
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The scripted fault for this request, else one drawn from the shares.
    fn next_fault(&self) -> Option<Fault> {
        let scripted = self
            .script
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front();
        scripted.or_else(|| self.config.draw(&mut rand::rng()))
    }

    async fn answer(&self, endpoint: Endpoint, body: &[u8]) -> Result<Response, ErrorResponse> {
        match endpoint {
            Endpoint::Production => &self.production,
            Endpoint::Sandbox => &self.sandbox,
        }
        .fetch_add(1, Ordering::Relaxed);
        let request = VerifyRequest::parse(body)?;
        if !self.config.latency.is_zero() {
            tokio::time::sleep(self.config.latency).await;
        }
        if let Some(fault) = self.next_fault() {
            self.faults.fetch_add(1, Ordering::Relaxed);
            match fault {
                Fault::Status(EXPIRED) => return Ok(Json(expired(&request)).into_response()),
                Fault::Status(status) => return Ok(Json(json!({"status": status})).into_response()),
                Fault::Retryable(status) => {
                    return Ok(
                        Json(json!({"status": status, "is-retryable": true})).into_response()
                    );
                }
                Fault::Http(code) => {
                    let code =
                        StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                    return Ok(
                        (code, format!("apple-sim fault: HTTP {}", code.as_u16())).into_response()
                    );
                }
                Fault::Timeout => {
                    tokio::select! {
                        () = tokio::time::sleep(TIMEOUT_FAULT) => {}
                        () = self.stopping.cancelled() => {
                            return Ok((StatusCode::SERVICE_UNAVAILABLE, "apple-sim is shutting down").into_response());
                        }
                    }
                }
            }
        }
        Ok(Json(verdict(
            endpoint,
            &request,
            self.config
                .shared_secret
                .as_ref()
                .map(ExposeSecret::expose_secret),
        ))
        .into_response())
    }
}

/// A verifyReceipt request, as far as the simulator reads it.
#[derive(Deserialize)]
struct VerifyRequest {
    #[serde(rename = "receipt-data", default)]
    receipt_data: Option<Value>,
    #[serde(default)]
    password: Option<Value>,
}

impl VerifyRequest {
    /// Non-JSON (or non-object) bodies are a 400; odd fields are Apple's
    /// business (21002, 21004).
    fn parse(body: &[u8]) -> Result<Self, ErrorResponse> {
        serde_json::from_slice(body).map_err(|e| {
            ErrorResponse::new(
                StatusCode::BAD_REQUEST,
                format!("body is not a verifyReceipt JSON object: {e}"),
            )
        })
    }
}

/// Apple's answer to a request that met no fault.
fn verdict(endpoint: Endpoint, request: &VerifyRequest, secret: Option<&str>) -> Value {
    let Some(receipt) = request
        .receipt_data
        .as_ref()
        .and_then(Value::as_str)
        .and_then(LegacyReceipt::decode)
    else {
        return json!({"status": 21002});
    };
    match (endpoint, receipt.is_sandbox()) {
        (Endpoint::Production, true) => return json!({"status": 21007}),
        (Endpoint::Sandbox, false) => return json!({"status": 21008}),
        _ => {}
    }
    if let Some(secret) = secret
        && request.password.as_ref().and_then(Value::as_str) != Some(secret)
    {
        return json!({"status": 21004});
    }
    decoded(0, &receipt)
}

/// Apple's status for "valid, but the subscription has expired".
const EXPIRED: i64 = 21006;

/// A scripted 21006: like Apple, it comes with the decoded receipt (when
/// the request holds one the simulator can read).
fn expired(request: &VerifyRequest) -> Value {
    request
        .receipt_data
        .as_ref()
        .and_then(Value::as_str)
        .and_then(LegacyReceipt::decode)
        .map_or_else(|| json!({"status": EXPIRED}), |r| decoded(EXPIRED, &r))
}

/// An answer with `status` and the receipt, decoded.
fn decoded(status: i64, receipt: &LegacyReceipt) -> Value {
    // iOS 6 style: the purchase-info keys with underscores, values as strings.
    let fields: Map<String, Value> = receipt
        .purchase
        .iter()
        .map(|(key, value)| (key.replace('-', "_"), Value::String(value.clone())))
        .collect();
    json!({
        "status": status,
        "environment": if receipt.is_sandbox() { "Sandbox" } else { "Production" },
        "receipt": fields,
    })
}

/// The simulator's routes: both verifyReceipt endpoints and `/sim/*`.
pub fn router(sim: Arc<Simulator>) -> Router {
    Router::new()
        .route("/verifyReceipt", post(production))
        .route("/sandbox/verifyReceipt", post(sandbox))
        .route("/sim/faults", post(add_faults).delete(clear_faults))
        .route("/sim/stats", get(stats))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(sim)
}

fn read_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ErrorResponse> {
    body.map_err(|rejection| ErrorResponse::from_body_rejection(rejection, MAX_BODY_BYTES))
}

async fn production(
    State(sim): State<Arc<Simulator>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ErrorResponse> {
    sim.answer(Endpoint::Production, &read_body(body)?).await
}

async fn sandbox(
    State(sim): State<Arc<Simulator>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ErrorResponse> {
    sim.answer(Endpoint::Sandbox, &read_body(body)?).await
}

async fn add_faults(
    State(sim): State<Arc<Simulator>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ErrorResponse> {
    let bad_request = |message: String| ErrorResponse::new(StatusCode::BAD_REQUEST, message);
    let names: Vec<String> = serde_json::from_slice(&read_body(body)?)
        .map_err(|e| bad_request(format!("body is not a JSON array of fault names: {e}")))?;
    let faults = names
        .iter()
        .map(|name| name.parse::<Fault>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_request(e.to_string()))?;
    let queued = sim
        .script(&faults)
        .map_err(|e| bad_request(e.to_string()))?;
    Ok(Json(json!({"queued": queued})))
}

async fn clear_faults(State(sim): State<Arc<Simulator>>) -> StatusCode {
    sim.clear_script();
    StatusCode::NO_CONTENT
}

async fn stats(State(sim): State<Arc<Simulator>>) -> Json<SimStats> {
    Json(sim.stats())
}

/// Serves the simulator on `listener` until `shutdown` completes; requests
/// held by "timeout" faults are answered 503 at once when it does.
pub async fn serve(
    listener: tokio::net::TcpListener,
    sim: Arc<Simulator>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stopping = sim.stopping.clone();
    axum_serve(listener, router(sim))
        .with_graceful_shutdown(async move {
            shutdown.await;
            stopping.cancel();
        })
        .await
}

/// `quintet apple-sim`'s arguments. `Debug` redacts the shared secret.
#[derive(Clone, clap::Args)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8089")]
    pub addr: SocketAddr,

    /// Added before every answer (e.g. 20ms).
    #[arg(long, default_value = "0ms", value_parser = platform::config::parse_duration)]
    pub latency: Duration,

    /// Share of requests (0..=1) answered `{"status":21005}`.
    #[arg(long = "fault-21005", default_value_t = 0.0, value_parser = parse_share)]
    pub fault_21005: f64,

    /// Share of requests (0..=1) answered `{"status":21009}`.
    #[arg(long = "fault-21009", default_value_t = 0.0, value_parser = parse_share)]
    pub fault_21009: f64,

    /// Share of requests (0..=1) answered HTTP 503.
    #[arg(long = "fault-503", default_value_t = 0.0, value_parser = parse_share)]
    pub fault_503: f64,

    /// Share of requests (0..=1) held 60 s before their answer.
    #[arg(long = "fault-timeout", default_value_t = 0.0, value_parser = parse_share)]
    pub fault_timeout: f64,

    /// Shared secret requests must send as `password` (else 21004).
    #[arg(long, env = "QUINTET_APPLE_SIM_SHARED_SECRET", hide_env_values = true, value_parser = StringValueParser::new().map(SecretString::from))]
    pub shared_secret: Option<SecretString>,
}

impl fmt::Debug for SimArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimArgs")
            .field("addr", &self.addr)
            .field("config", &self.config())
            .finish_non_exhaustive()
    }
}

impl SimArgs {
    /// The simulator configuration these arguments describe.
    pub fn config(&self) -> SimConfig {
        SimConfig {
            latency: self.latency,
            share_21005: self.fault_21005,
            share_21009: self.fault_21009,
            share_503: self.fault_503,
            share_timeout: self.fault_timeout,
            shared_secret: self
                .shared_secret
                .clone()
                .filter(|s| !s.expose_secret().is_empty()),
        }
    }

    /// Binds `--addr` and serves until `shutdown` completes.
    pub async fn run(
        &self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), SimError> {
        let sim = Arc::new(Simulator::new(self.config())?);
        let listener = tokio::net::TcpListener::bind(self.addr).await?;
        let addr = listener.local_addr()?;
        // Said at start, so nobody mistakes it for Apple: it trusts every
        // receipt's text and checks no signature.
        tracing::info!(
            production_url = %format!("http://{addr}/verifyReceipt"),
            sandbox_url = %format!("http://{addr}/sandbox/verifyReceipt"),
            config = ?self.config(),
            "apple-sim listening on {addr}: a simulator of Apple's legacy verifyReceipt API \
             for tests and demos, not Apple (receipts are not verified); point \
             --apple-production-url and --apple-sandbox-url at the URLs here"
        );
        serve(listener, sim, shutdown).await?;
        Ok(())
    }
}

fn parse_share(text: &str) -> Result<f64, ShareProblem> {
    let share: f64 = text.parse().map_err(ShareProblem::NotANumber)?;
    if (0.0..=1.0).contains(&share) {
        Ok(share)
    } else {
        Err(ShareProblem::NotAShare(share))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use clap::Parser;

    fn receipt(environment: Option<&str>) -> String {
        let info = STANDARD.encode(
            "{ \"transaction-id\" = \"77\"; \"product-id\" = \"gems\"; \"purchase-date-ms\" = \"1\"; }",
        );
        let env = environment.map_or(String::new(), |e| format!("\"environment\" = \"{e}\"; "));
        STANDARD.encode(format!("{{ \"purchase-info\" = \"{info}\"; {env}}}"))
    }

    fn request(receipt: &str, password: Option<&str>) -> VerifyRequest {
        VerifyRequest {
            receipt_data: Some(Value::String(receipt.into())),
            password: password.map(|p| Value::String(p.into())),
        }
    }

    #[test]
    fn receipts_meet_the_right_endpoint_or_are_redirected() {
        let sandbox = receipt(Some("Sandbox"));
        let production = receipt(None);
        assert_eq!(
            verdict(Endpoint::Production, &request(&sandbox, None), None)["status"],
            21007
        );
        assert_eq!(
            verdict(Endpoint::Sandbox, &request(&production, None), None)["status"],
            21008
        );
        let ok = verdict(Endpoint::Sandbox, &request(&sandbox, None), None);
        assert_eq!(
            ok,
            json!({"status": 0, "environment": "Sandbox", "receipt": {
                "transaction_id": "77", "product_id": "gems", "purchase_date_ms": "1"
            }})
        );
        let ok = verdict(Endpoint::Production, &request(&production, None), None);
        assert_eq!(ok["environment"], "Production");
    }

    #[test]
    fn garbage_is_21002_and_a_wrong_password_is_21004() {
        assert_eq!(
            verdict(Endpoint::Production, &request("bm9wZQ==", None), None)["status"],
            21002
        );
        let missing = VerifyRequest {
            receipt_data: None,
            password: None,
        };
        assert_eq!(
            verdict(Endpoint::Production, &missing, None)["status"],
            21002
        );
        let sandbox = receipt(Some("Sandbox"));
        assert_eq!(
            verdict(
                Endpoint::Sandbox,
                &request(&sandbox, Some("nope")),
                Some("s")
            )["status"],
            21004
        );
        assert_eq!(
            verdict(Endpoint::Sandbox, &request(&sandbox, None), Some("s"))["status"],
            21004
        );
        assert_eq!(
            verdict(Endpoint::Sandbox, &request(&sandbox, Some("s")), Some("s"))["status"],
            0
        );
    }

    #[test]
    fn fault_names_parse_and_print_back() {
        for (text, fault) in [
            ("21005", Fault::Status(21005)),
            ("21100-retryable", Fault::Retryable(21100)),
            ("503", Fault::Http(503)),
            ("http-429", Fault::Http(429)),
            ("timeout", Fault::Timeout),
        ] {
            assert_eq!(text.parse::<Fault>().expect(text), fault);
        }
        assert_eq!(Fault::Retryable(21100).to_string(), "21100-retryable");
        for bad in ["", "x", "http-99", "http-600", "21100-sometimes"] {
            assert!(bad.parse::<Fault>().is_err(), "{bad}");
        }
    }

    #[test]
    fn shares_are_checked_and_drawn_in_proportion() {
        let config = |share_21005, share_503| SimConfig {
            share_21005,
            share_503,
            ..SimConfig::default()
        };
        assert!(Simulator::new(config(1.5, 0.0)).is_err());
        assert!(Simulator::new(config(-0.1, 0.0)).is_err());
        assert!(Simulator::new(config(0.7, 0.7)).is_err());
        assert!(Simulator::new(config(0.5, 0.5)).is_ok());

        let mut rng = rand::rng();
        assert!((0..1000).all(|_| config(0.0, 0.0).draw(&mut rng).is_none()));
        assert!((0..1000).all(|_| config(1.0, 0.0).draw(&mut rng) == Some(Fault::Status(21005))));
        let half = config(0.0, 0.5);
        let hits = (0..4000)
            .filter(|_| half.draw(&mut rng) == Some(Fault::Http(503)))
            .count();
        assert!((1600..2400).contains(&hits), "{hits}");
    }

    #[test]
    fn the_script_is_bounded_and_all_or_nothing() {
        let sim = Simulator::new(SimConfig::default()).expect("sim");
        assert_eq!(
            sim.script(&[Fault::Timeout, Fault::Status(21005)])
                .expect("fits"),
            2
        );
        assert!(matches!(
            sim.script(&vec![Fault::Timeout; MAX_SCRIPT]),
            Err(SimError::ScriptFull)
        ));
        assert_eq!(sim.next_fault(), Some(Fault::Timeout));
        sim.clear_script();
        assert_eq!(sim.next_fault(), None);
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    #[test]
    fn arguments_parse_and_debug_hides_the_secret() {
        let cli = Cli::try_parse_from([
            "apple-sim",
            "--latency",
            "20ms",
            "--fault-21005",
            "0.1",
            "--shared-secret",
            "hunter2",
        ])
        .expect("parses");
        assert_eq!(cli.sim.addr, "127.0.0.1:8089".parse().expect("addr"));
        let config = cli.sim.config();
        assert_eq!(config.latency, Duration::from_millis(20));
        assert!((config.share_21005 - 0.1).abs() < f64::EPSILON);
        assert_eq!(
            config
                .shared_secret
                .as_ref()
                .map(ExposeSecret::expose_secret),
            Some("hunter2")
        );
        assert!(!format!("{:?}", cli.sim).contains("hunter2"));
        assert!(Cli::try_parse_from(["apple-sim", "--fault-503", "2"]).is_err());
    }
}
