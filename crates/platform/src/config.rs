//! Server configuration: every option is a flag with a `QUINTET_*` environment
//! variable, validated up front into a [`ResolvedConfig`] before anything binds.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use secrecy::{ExposeSecret, SecretString};

use crate::tls::TlsSource;
use crate::tokens::TokenSet;

/// The port used when neither `--addr` nor `PORT` says otherwise.
pub const DEFAULT_PORT: u16 = 8080;

/// `--addr`: a socket address, or an IP alone (the port then comes from `PORT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenAddr {
    /// HOST:PORT, used as given (`PORT` is ignored).
    Socket(SocketAddr),
    /// An IP alone: the port comes from `PORT`, else [`DEFAULT_PORT`].
    Host(IpAddr),
}

/// An `--addr` that is neither a socket address nor an IP address.
#[derive(Debug, thiserror::Error)]
#[error("'{0}' is neither HOST:PORT (0.0.0.0:8080, [::]:8080) nor an IP address")]
pub struct ListenAddrError(String);

fn parse_listen_addr(text: &str) -> Result<ListenAddr, ListenAddrError> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(ListenAddr::Socket(addr));
    }
    let host = text.trim_start_matches('[').trim_end_matches(']');
    host.parse::<IpAddr>()
        .map(ListenAddr::Host)
        .map_err(|_| ListenAddrError(text.to_owned()))
}

/// Options shared by every service served from `quintet serve`.
#[derive(Debug, Clone, Args)]
pub struct ServerConfig {
    /// Address of the one listener that serves REST, gRPC and the ops routes:
    /// HOST:PORT, or a HOST alone whose port comes from `PORT` (else 8080)
    /// [default: 127.0.0.1:8080; when unset, a `PORT` environment variable sets the port].
    #[arg(long, env = "QUINTET_ADDR", value_name = "HOST[:PORT]", value_parser = parse_listen_addr)]
    pub addr: Option<ListenAddr>,

    /// Directory for embedded stores, the self-signed certificate and other state.
    #[arg(
        long,
        env = "QUINTET_DATA_DIR",
        default_value = "./data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,

    /// TLS mode: `off` serves plain HTTP; `self-signed` creates a certificate once in
    /// `<data-dir>/tls/` and reuses it. Giving --tls-cert and --tls-key turns TLS on with those files.
    #[arg(long, env = "QUINTET_TLS", value_enum, default_value_t = TlsMode::Off)]
    pub tls: TlsMode,

    /// PEM certificate chain for TLS (with --tls-key).
    #[arg(
        long,
        env = "QUINTET_TLS_CERT",
        requires = "tls_key",
        value_name = "FILE"
    )]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for TLS (with --tls-cert).
    #[arg(
        long,
        env = "QUINTET_TLS_KEY",
        requires = "tls_cert",
        value_name = "FILE"
    )]
    pub tls_key: Option<PathBuf>,

    /// Host names and IP addresses the self-signed certificate is valid for.
    #[arg(
        long,
        env = "QUINTET_TLS_NAMES",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1,::1"
    )]
    pub tls_names: Vec<String>,

    /// Bearer tokens accepted by the service routes, comma separated: each `secret`,
    /// `name:secret`, or `name:secret:admin` for a token that may also call the admin
    /// routes (`/admin/…`). With no tokens configured (here or in --tokens-file) the
    /// service routes are open.
    #[arg(
        long,
        env = "QUINTET_TOKENS",
        value_delimiter = ',',
        hide_env_values = true,
        value_parser = parse_secret
    )]
    pub tokens: Vec<SecretString>,

    /// File with one bearer token per line (blank lines and `#` comments ignored).
    #[arg(long, env = "QUINTET_TOKENS_FILE", value_name = "FILE")]
    pub tokens_file: Option<PathBuf>,

    /// Largest request body any route accepts, in bytes (services may set lower limits).
    #[arg(long, env = "QUINTET_MAX_BODY_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Time a request may take from its headers to its response (e.g. `30s`, `500ms`).
    #[arg(long, env = "QUINTET_REQUEST_TIMEOUT", value_parser = parse_duration, default_value = "30s")]
    pub request_timeout: Duration,

    /// Requests handled at once across all service routes; more wait their turn.
    #[arg(long, env = "QUINTET_MAX_CONCURRENT_REQUESTS", default_value_t = 1024)]
    pub max_concurrent_requests: usize,

    /// Open connections at once. At the limit, a new connection closes the one that
    /// has waited longest with no request in flight; when every connection is busy,
    /// the listener stops accepting until one ends.
    #[arg(long, env = "QUINTET_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Time a new connection has to finish its TLS handshake and start its first
    /// request; a connection silent for longer is closed.
    #[arg(long, env = "QUINTET_HANDSHAKE_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    pub handshake_timeout: Duration,

    /// Time an HTTP/1.1 client has to send a request's headers once it started them.
    #[arg(long, env = "QUINTET_HEADER_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    pub header_timeout: Duration,

    /// A connection with no request in flight for this long is closed (HTTP/2 with
    /// GOAWAY, so clients reconnect cleanly).
    #[arg(long, env = "QUINTET_IDLE_TIMEOUT", value_parser = parse_duration, default_value = "60s")]
    pub idle_timeout: Duration,

    /// Failed authentications each client IP may make per second (burst: 10 × this)
    /// before it gets 429 instead of 401; 0 turns the limit off.
    #[arg(long, env = "QUINTET_AUTH_FAILURE_LIMIT", default_value_t = 5)]
    pub auth_failure_limit: u32,

    /// Requests per second each client may make to the service routes (a client is
    /// its bearer token, or its IP address when unauthenticated); 0 turns the limit off.
    #[arg(long, env = "QUINTET_RATE_LIMIT", default_value_t = 1000)]
    pub rate_limit: u32,

    /// Requests a client may make in a burst above the rate [default: 2 × --rate-limit].
    #[arg(long, env = "QUINTET_RATE_LIMIT_BURST")]
    pub rate_limit_burst: Option<u32>,

    /// How long shutdown waits for in-flight requests before cutting connections.
    #[arg(long, env = "QUINTET_SHUTDOWN_TIMEOUT", value_parser = parse_duration, default_value = "30s")]
    pub shutdown_timeout: Duration,

    /// After SIGTERM, how long to keep serving with readiness false before the
    /// listener closes, so load balancers stop sending first (e.g. `5s` in Kubernetes).
    #[arg(long, env = "QUINTET_SHUTDOWN_DELAY", value_parser = parse_duration, default_value = "0s")]
    pub shutdown_delay: Duration,

    /// Log format: `auto` is JSON lines when stdout is not a terminal, human-readable when it is.
    #[arg(long, env = "QUINTET_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,

    /// Export traces to this OpenTelemetry collector (OTLP/gRPC:
    /// `http://otel-collector:4317`; OTLP/HTTP: its base URL,
    /// `http://otel-collector:4318`, to which `/v1/traces` is added); W3C
    /// `traceparent` is then accepted on every request and passed on. Off when
    /// unset: no span is built.
    #[arg(long, env = "QUINTET_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// How traces reach --otlp-endpoint: OTLP over gRPC, or over HTTP with
    /// protobuf bodies (collectors and vendor gateways that take only HTTP).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_PROTOCOL", value_enum, default_value_t = OtlpProtocol::Grpc)]
    pub otlp_protocol: OtlpProtocol,
}

/// The OTLP transport of exported traces (the values of OpenTelemetry's
/// `OTEL_EXPORTER_OTLP_PROTOCOL`; `http/json` is not offered).
// clap turns doc comments into help text: docs here would change `--help`.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OtlpProtocol {
    Grpc,
    #[value(name = "http/protobuf")]
    HttpProtobuf,
}

/// Whether and how the listener speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TlsMode {
    /// Plain HTTP (or TLS from --tls-cert/--tls-key when both are given).
    Off,
    /// A certificate generated once into the data directory.
    SelfSigned,
}

/// Log output format.
// clap turns doc comments into help text: docs here would change `--help`.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Auto,
    Json,
    Text,
}

/// A configuration error, reported as `invalid value for <option>: <reason>`.
#[derive(Debug, thiserror::Error)]
#[error("invalid value for {option}: {reason}")]
pub struct ConfigError {
    /// The flag (`--tls-names`) or variable (`PORT`) whose value is refused.
    pub option: &'static str,
    /// Why it is refused, for the operator.
    pub reason: String,
}

impl ConfigError {
    /// The error for `option`, refused because of `reason`.
    pub fn new(option: &'static str, reason: impl Into<String>) -> Self {
        Self {
            option,
            reason: reason.into(),
        }
    }
}

/// Configuration after validation: what the server actually runs with.
#[derive(Debug, Clone)]
pub struct ResolvedConfig {
    /// The address the one listener binds.
    pub addr: SocketAddr,
    /// Where embedded stores and the self-signed certificate live.
    pub data_dir: PathBuf,
    /// Where the TLS certificate comes from; `None` serves plain HTTP.
    pub tls: Option<TlsSource>,
    /// The accepted bearer tokens (empty: the service routes are open).
    pub tokens: TokenSet,
    /// Largest request body any route accepts, in bytes (more than zero).
    pub max_body_bytes: usize,
    /// Time a request may take from its headers to its response (more than zero).
    pub request_timeout: Duration,
    /// Requests handled at once across all service routes (more than zero).
    pub max_concurrent_requests: usize,
    /// Connections open at once (more than zero).
    pub max_connections: usize,
    /// The deadlines of a connection's stages.
    pub timeouts: ConnectionTimeouts,
    /// The per-client request rate; `None` when the limit is off.
    pub rate_limit: Option<RateLimit>,
    /// The per-address rate of failed authentications; `None` when the limit is off.
    pub auth_failure_limit: Option<RateLimit>,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_timeout: Duration,
    /// How long the server keeps serving, not ready, after SIGTERM.
    pub shutdown_delay: Duration,
    /// How log lines are written.
    pub log_format: LogFormat,
}

/// The deadlines of a connection's stages (a request's own is `request_timeout`).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionTimeouts {
    /// Time to finish the TLS handshake and start the first request.
    pub handshake: Duration,
    /// Time an HTTP/1.1 client has to finish a request's headers.
    pub header: Duration,
    /// Time with no request in flight after which a connection is closed.
    pub idle: Duration,
}

/// A per-client rate: `per_second` sustained, `burst` at once.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    /// Sustained rate, per second (more than zero).
    pub per_second: u32,
    /// How many may come at once above the rate (more than zero).
    pub burst: u32,
}

impl ServerConfig {
    /// Validates every option; `port_env` is the value of the `PORT` variable, if any.
    pub fn resolve(&self, port_env: Option<&str>) -> Result<ResolvedConfig, ConfigError> {
        let addr = self.listen_addr(port_env)?;
        let tls = self.tls_source()?;
        let tokens = self.token_set()?;

        positive("--max-body-bytes", self.max_body_bytes)?;
        positive("--max-concurrent-requests", self.max_concurrent_requests)?;
        positive("--max-connections", self.max_connections)?;
        for (option, value) in [
            ("--request-timeout", self.request_timeout),
            ("--handshake-timeout", self.handshake_timeout),
            ("--header-timeout", self.header_timeout),
            ("--idle-timeout", self.idle_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::new(option, "must be greater than zero"));
            }
        }
        let rate_limit = match self.rate_limit {
            0 => None,
            per_second => {
                let burst = self
                    .rate_limit_burst
                    .unwrap_or(per_second.saturating_mul(2));
                if burst == 0 {
                    return Err(ConfigError::new(
                        "--rate-limit-burst",
                        "must be greater than zero",
                    ));
                }
                Some(RateLimit { per_second, burst })
            }
        };

        Ok(ResolvedConfig {
            addr,
            data_dir: self.data_dir.clone(),
            tls,
            tokens,
            max_body_bytes: self.max_body_bytes,
            request_timeout: self.request_timeout,
            max_concurrent_requests: self.max_concurrent_requests,
            max_connections: self.max_connections,
            timeouts: ConnectionTimeouts {
                handshake: self.handshake_timeout,
                header: self.header_timeout,
                idle: self.idle_timeout,
            },
            rate_limit,
            auth_failure_limit: (self.auth_failure_limit > 0).then(|| RateLimit {
                per_second: self.auth_failure_limit,
                burst: self.auth_failure_limit.saturating_mul(10),
            }),
            shutdown_timeout: self.shutdown_timeout,
            shutdown_delay: self.shutdown_delay,
            log_format: self.log_format,
        })
    }

    /// The listen address from `--addr` and the `PORT` variable.
    fn listen_addr(&self, port_env: Option<&str>) -> Result<SocketAddr, ConfigError> {
        let port = port_env
            .map(|port| {
                port.trim().parse::<u16>().map_err(|_| {
                    ConfigError::new("PORT", format!("'{port}' is not a port number (0-65535)"))
                })
            })
            .transpose()?;
        Ok(match (self.addr, port) {
            (Some(ListenAddr::Socket(addr)), _) => addr,
            (Some(ListenAddr::Host(host)), port) => {
                SocketAddr::new(host, port.unwrap_or(DEFAULT_PORT))
            }
            (None, port) => SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                port.unwrap_or(DEFAULT_PORT),
            ),
        })
    }

    /// Where the certificate comes from, if TLS is on; given files are read now.
    fn tls_source(&self) -> Result<Option<TlsSource>, ConfigError> {
        Ok(match (&self.tls_cert, &self.tls_key, self.tls) {
            (Some(_), Some(_), TlsMode::SelfSigned) => {
                return Err(ConfigError::new(
                    "--tls",
                    "'self-signed' cannot be combined with --tls-cert/--tls-key",
                ));
            }
            (Some(cert), Some(key), TlsMode::Off) => {
                // Read now, so a wrong path exits before any store opens.
                crate::tls::server_config(cert, key)
                    .map_err(|e| ConfigError::new(e.option(), error_chain(&e)))?;
                Some(TlsSource::Files {
                    cert: cert.clone(),
                    key: key.clone(),
                })
            }
            (_, _, TlsMode::SelfSigned) => {
                if self.tls_names.iter().all(|n| n.trim().is_empty()) {
                    return Err(ConfigError::new(
                        "--tls-names",
                        "at least one name is needed",
                    ));
                }
                Some(TlsSource::SelfSigned {
                    names: self.tls_names.clone(),
                })
            }
            _ => None,
        })
    }

    /// The tokens of `--tokens` and `--tokens-file`, parsed.
    fn token_set(&self) -> Result<TokenSet, ConfigError> {
        let mut tokens: Vec<SecretString> = self
            .tokens
            .iter()
            .filter(|t| !t.expose_secret().is_empty())
            .cloned()
            .collect();
        if let Some(path) = &self.tokens_file {
            let text = fs::read_to_string(path).map_err(|e| {
                ConfigError::new(
                    "--tokens-file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            tokens.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(SecretString::from),
            );
        }
        // The error never echoes a secret: it is one even when malformed.
        TokenSet::parse(tokens.iter().map(ExposeSecret::expose_secret))
            .map_err(|e| ConfigError::new("--tokens", e.to_string()))
    }
}

/// An error and its causes on one line (`a: b: c`).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn positive(option: &'static str, value: usize) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::new(option, "must be greater than zero"));
    }
    Ok(())
}

/// A secret option's value (a clap value parser): held redacted from here on.
#[allow(clippy::unnecessary_wraps)] // reason: clap's value parsers return a Result
pub fn parse_secret(text: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(text))
}

/// A duration option that does not parse, with examples of ones that do.
#[derive(Debug, thiserror::Error)]
#[error("{0} (examples: 30s, 500ms, 2m)")]
pub struct DurationError(humantime::DurationError);

/// Parses durations like `30s`, `500ms`, `2m` (a clap value parser).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    humantime::parse_duration(text).map_err(DurationError)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        server: ServerConfig,
    }

    fn parse(args: &[&str]) -> ServerConfig {
        let mut all = vec!["quintet"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all)
            .expect("test arguments parse")
            .server
    }

    #[test]
    fn port_env_sets_the_port_when_addr_is_not_given() {
        let cfg = parse(&[]).resolve(Some("9090")).expect("valid");
        assert_eq!(cfg.addr, "127.0.0.1:9090".parse().expect("addr"));
    }

    #[test]
    fn explicit_addr_wins_over_port_env() {
        let cfg = parse(&["--addr", "0.0.0.0:7000"])
            .resolve(Some("9090"))
            .expect("valid");
        assert_eq!(cfg.addr.port(), 7000);
    }

    #[test]
    fn a_host_alone_takes_its_port_from_port_env() {
        let cfg = parse(&["--addr", "0.0.0.0"])
            .resolve(Some("9090"))
            .expect("valid");
        assert_eq!(cfg.addr, "0.0.0.0:9090".parse().expect("addr"));
        let cfg = parse(&["--addr", "[::]"]).resolve(None).expect("valid");
        assert_eq!(cfg.addr, "[::]:8080".parse().expect("addr"));
        let mut all = vec!["quintet", "--addr", "example.com"];
        assert!(Cli::try_parse_from(&all).is_err());
        all[2] = "0.0.0.0:99999";
        assert!(Cli::try_parse_from(&all).is_err());
    }

    #[test]
    fn bad_port_env_names_port() {
        let err = parse(&[]).resolve(Some("eighty")).expect_err("invalid");
        assert_eq!(err.option, "PORT");
    }

    #[test]
    fn zero_limits_are_refused_with_the_option_named() {
        let err = parse(&["--max-connections", "0"])
            .resolve(None)
            .expect_err("invalid");
        assert_eq!(err.option, "--max-connections");
    }

    #[test]
    fn rate_limit_zero_turns_it_off_and_burst_defaults_to_twice_the_rate() {
        assert!(
            parse(&["--rate-limit", "0"])
                .resolve(None)
                .expect("valid")
                .rate_limit
                .is_none()
        );
        let rl = parse(&["--rate-limit", "5"])
            .resolve(None)
            .expect("valid")
            .rate_limit
            .expect("on");
        assert_eq!((rl.per_second, rl.burst), (5, 10));
    }

    #[test]
    fn tokens_with_spaces_are_refused_without_echoing_them() {
        let err = parse(&["--tokens", "s3cret value"])
            .resolve(None)
            .expect_err("invalid");
        assert!(!err.to_string().contains("s3cret"));
    }

    #[test]
    fn unreadable_tls_files_are_refused_naming_the_option_and_the_file() {
        let err = parse(&[
            "--tls-cert",
            "/nonexistent/c.pem",
            "--tls-key",
            "/nonexistent/k.pem",
        ])
        .resolve(None)
        .expect_err("no such file");
        assert_eq!(err.option, "--tls-cert");
        assert!(err.reason.contains("/nonexistent/c.pem"), "{err}");
        assert!(err.reason.contains("No such file"), "{err}");
    }

    #[test]
    fn debug_of_the_configuration_shows_no_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("tokens");
        std::fs::write(&file, "# ops\nops:f1lesecret:admin\n").expect("write");
        let path = file.to_str().expect("utf-8 path");
        let server = parse(&[
            "--tokens",
            "ci:s3cretvalue,plainsecret",
            "--tokens-file",
            path,
        ]);
        let resolved = server.resolve(None).expect("valid");
        assert!(!resolved.tokens.is_empty());
        let shown = format!("{server:?} {resolved:?} {server:#?} {resolved:#?}");
        for secret in ["s3cretvalue", "plainsecret", "f1lesecret"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("REDACTED"), "{shown}");
    }

    #[test]
    fn self_signed_and_files_conflict() {
        let err = parse(&["--tls", "self-signed", "--tls-cert", "a", "--tls-key", "b"])
            .resolve(None)
            .expect_err("invalid");
        assert_eq!(err.option, "--tls");
    }
}
