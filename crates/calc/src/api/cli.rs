//! `quintet calc …`: the calculator's command-line client, over gRPC (the
//! same `--url`, `--token`, `--ca-cert` and `--timeout` as every client).
//! Prints the answer; on error exits non-zero with the gRPC status and message.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use platform::client::ClientArgs;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::proto::v1::calculator_client::CalculatorClient;
use crate::proto::v1::{
    AddRequest, DivideRequest, MaxRequest, MinRequest, MultiplyRequest, NthPrimesRequest,
    PrimesRequest, SubtractRequest,
};

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
fn failed(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", status.code(), status.message())
}

pub async fn run(cli: CalcCli) -> anyhow::Result<()> {
    let token = cli.client.token.clone();
    let token = token.as_deref();
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
    }
    Ok(())
}
