//! `quintet calc …`: the calculator's command-line client, over gRPC (the
//! same `--url`, `--token`, `--ca-cert` and `--timeout` as every client).
//! Prints the answer; on error exits non-zero with the gRPC status and message.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use platform::client::ClientArgs;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::proto::v1::calculator_client::CalculatorClient;
use crate::proto::v1::{
    AddRequest, CalculationEvent, DivideRequest, HistoryRequest, MaxRequest, MinRequest,
    MultiplyRequest, NthPrimesRequest, PrimesRequest, SubtractRequest,
};

// clap turns doc comments into help text: a doc here would change `--help`.
#[allow(missing_docs)]
#[derive(Debug, Args)]
pub struct CalcCli {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: CalcCommand,
}

#[derive(Debug, Subcommand)]
enum CalcCommand {
    /// A + B.
    Add {
        #[arg(allow_negative_numbers = true)]
        a: i64,
        #[arg(allow_negative_numbers = true)]
        b: i64,
    },
    /// A - B.
    Subtract {
        #[arg(allow_negative_numbers = true)]
        a: i64,
        #[arg(allow_negative_numbers = true)]
        b: i64,
    },
    /// A * B.
    Multiply {
        #[arg(allow_negative_numbers = true)]
        a: i64,
        #[arg(allow_negative_numbers = true)]
        b: i64,
    },
    /// A / B, truncated toward zero.
    Divide {
        #[arg(allow_negative_numbers = true)]
        a: i64,
        #[arg(allow_negative_numbers = true)]
        b: i64,
    },
    /// The largest of the values.
    Max {
        #[arg(required = true, allow_negative_numbers = true)]
        values: Vec<i64>,
    },
    /// The smallest of the values.
    Min {
        #[arg(required = true, allow_negative_numbers = true)]
        values: Vec<i64>,
    },
    /// The N-th prime for each N (1-based: 1 → 2), one per line.
    NthPrime {
        #[arg(required = true)]
        n: Vec<u64>,
    },
    /// Every prime from FROM to TO, one per line (streamed).
    Primes { from: u64, to: u64 },
    /// Replays the event log: every calculation the server performed, oldest
    /// first, one JSON object per line.
    History {
        /// Only events at or after this time: RFC 3339 (2026-12-03T08:00:00Z)
        /// or a duration ago (90s, 15m, 2h, 1day).
        #[arg(long, value_parser = parse_since)]
        since: Option<OffsetDateTime>,
        /// Stop after this many events (default: all).
        #[arg(long)]
        limit: Option<u64>,
    },
}

/// Why a `--since` value was refused.
#[derive(Debug, thiserror::Error)]
enum SinceError {
    #[error("'{0}' is neither an RFC 3339 time (2026-12-03T08:00:00Z) nor a duration (15m, 2h)")]
    Unreadable(String),
    #[error("'{0}' reaches back too far")]
    TooFar(String),
}

/// `--since`: an RFC 3339 time, or a duration before now.
fn parse_since(text: &str) -> Result<OffsetDateTime, SinceError> {
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(at);
    }
    let ago =
        humantime::parse_duration(text).map_err(|_| SinceError::Unreadable(text.to_owned()))?;
    let ago = time::Duration::try_from(ago).map_err(|_| SinceError::TooFar(text.to_owned()))?;
    OffsetDateTime::now_utc()
        .checked_sub(ago)
        .ok_or_else(|| SinceError::TooFar(text.to_owned()))
}

/// One event as a JSON line, fields in the order `GET /calc/history` gives them.
fn event_line(event: &CalculationEvent) -> String {
    #[derive(serde::Serialize)]
    struct Line<'a> {
        seq: u64,
        at: &'a str,
        request_id: &'a str,
        method: &'a str,
        input: serde_json::Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<serde_json::Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<serde_json::Value>,
    }
    let parse = |text: &str| {
        serde_json::from_str::<serde_json::Value>(text)
            .unwrap_or_else(|_| serde_json::Value::String(text.to_owned()))
    };
    let answered = event.error_kind.is_empty();
    let line = Line {
        seq: event.seq,
        at: &event.at,
        request_id: &event.request_id,
        method: &event.method,
        input: parse(&event.input_json),
        result: answered.then(|| parse(&event.result_json)),
        error: (!answered)
            .then(|| serde_json::json!({"kind": event.error_kind, "message": event.error_message})),
    };
    serde_json::to_string(&line).unwrap_or_default()
}

async fn channel(args: &ClientArgs) -> anyhow::Result<Channel> {
    if args.insecure {
        bail!("--insecure is not supported for gRPC; pass the server's certificate with --ca-cert");
    }
    let url = args.url.trim_end_matches('/').to_owned();
    let mut endpoint = Endpoint::from_shared(url.clone())
        .with_context(|| format!("--url '{url}' is not a valid URL"))?
        .timeout(args.timeout)
        .connect_timeout(args.timeout);
    if url.starts_with("https://") {
        let mut tls = ClientTlsConfig::new().with_webpki_roots();
        if let Some(path) = &args.ca_cert {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read --ca-cert {}", path.display()))?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        endpoint = endpoint.tls_config(tls).context("TLS configuration")?;
    } else if !url.starts_with("http://") {
        bail!("--url must start with http:// or https:// (got '{url}')");
    }
    endpoint
        .connect()
        .await
        .with_context(|| format!("cannot connect to {url}"))
}

/// A request carrying the bearer token, if any.
fn request<T>(message: T, token: Option<&str>) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        let value = MetadataValue::try_from(format!("Bearer {token}"))
            .context("--token holds characters a header cannot carry")?;
        request.metadata_mut().insert("authorization", value);
    }
    Ok(request)
}

/// The error line for a failed call: its status code and message.
// By value, to be passed to `map_err` as it is.
#[allow(clippy::needless_pass_by_value)]
fn failed(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", status.code(), status.message())
}

/// Runs one `quintet calc` command against a server and prints its answer.
pub async fn run(cli: CalcCli) -> anyhow::Result<()> {
    let token = cli.client.bearer_token();
    let mut calc = CalculatorClient::new(channel(&cli.client).await?);
    match cli.command {
        CalcCommand::Add { a, b } => {
            let answer = calc.add(request(AddRequest { a, b }, token)?).await;
            println!("{}", answer.map_err(failed)?.into_inner().result);
        }
        CalcCommand::Subtract { a, b } => {
            let answer = calc
                .subtract(request(SubtractRequest { a, b }, token)?)
                .await;
            println!("{}", answer.map_err(failed)?.into_inner().result);
        }
        CalcCommand::Multiply { a, b } => {
            let answer = calc
                .multiply(request(MultiplyRequest { a, b }, token)?)
                .await;
            println!("{}", answer.map_err(failed)?.into_inner().result);
        }
        CalcCommand::Divide { a, b } => {
            let answer = calc.divide(request(DivideRequest { a, b }, token)?).await;
            println!("{}", answer.map_err(failed)?.into_inner().result);
        }
        CalcCommand::Max { values } => {
            let answer = calc.max(request(MaxRequest { values }, token)?).await;
            println!("{}", answer.map_err(failed)?.into_inner().result);
        }
        CalcCommand::Min { values } => {
            let answer = calc.min(request(MinRequest { values }, token)?).await;
            println!("{}", answer.map_err(failed)?.into_inner().result);
        }
        CalcCommand::NthPrime { n } => {
            let answer = calc
                .nth_primes(request(NthPrimesRequest { n }, token)?)
                .await;
            for prime in answer.map_err(failed)?.into_inner().primes {
                println!("{prime}");
            }
        }
        CalcCommand::Primes { from, to } => {
            let answer = calc
                .primes(request(PrimesRequest { from, to }, token)?)
                .await;
            let mut stream = answer.map_err(failed)?.into_inner();
            while let Some(chunk) = stream.message().await.map_err(failed)? {
                for prime in chunk.primes {
                    println!("{prime}");
                }
            }
        }
        CalcCommand::History { since, limit } => {
            let since = match since {
                Some(at) => at.format(&Rfc3339).context("formatting --since")?,
                None => String::new(),
            };
            let mut left = limit.unwrap_or(u64::MAX);
            let mut after = 0;
            while left > 0 {
                let page = calc
                    .history(request(
                        HistoryRequest {
                            since: since.clone(),
                            after,
                            // At most MAX_PAGE (1,000): it fits a u32.
                            limit: u32::try_from(left.min(crate::domain::event::MAX_PAGE as u64))
                                .unwrap_or(u32::MAX),
                        },
                        token,
                    )?)
                    .await
                    .map_err(failed)?
                    .into_inner();
                for event in &page.events {
                    println!("{}", event_line(event));
                }
                left = left.saturating_sub(page.events.len() as u64);
                if page.next_after == 0 {
                    break;
                }
                after = page.next_after;
            }
        }
    }
    Ok(())
}
