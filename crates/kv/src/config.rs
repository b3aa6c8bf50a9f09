//! kv's options and what they name: [`KvConfig::check`] validates every
//! option that needs no I/O, so `quintet serve` can refuse a mistake before
//! any store opens. The key provider they name is built in
//! `adapters::key_provider`.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;

use crate::adapters::aws::AwsSettings;
use crate::adapters::local_keys::LocalKeyProvider;
use crate::domain;
use platform::config::ConfigError;

/// `--kv-kms-rate-limit`'s default.
const DEFAULT_KMS_RATE_LIMIT: NonZeroU32 = NonZeroU32::new(1000).unwrap();

/// kv service options.
#[derive(Debug, Clone, clap::Args)]
pub struct KvConfig {
    /// Where the seed's raw-TCP protocol is served (the port the seed's client dials).
    #[arg(long, env = "QUINTET_KV_TCP_ADDR", default_value = "127.0.0.1:50051")]
    pub kv_tcp_addr: SocketAddr,

    /// PEM certificate chain the raw-TCP port presents: with it (and --kv-tcp-tls-key) the
    /// port speaks TLS only.
    #[arg(
        long,
        env = "QUINTET_KV_TCP_TLS_CERT",
        requires = "kv_tcp_tls_key",
        value_name = "FILE"
    )]
    pub kv_tcp_tls_cert: Option<PathBuf>,

    /// PEM private key for --kv-tcp-tls-cert.
    #[arg(
        long,
        env = "QUINTET_KV_TCP_TLS_KEY",
        requires = "kv_tcp_tls_cert",
        value_name = "FILE"
    )]
    pub kv_tcp_tls_key: Option<PathBuf>,

    /// PEM CA certificate(s): every raw-TCP client must present a certificate signed by one
    /// (mutual TLS); a client without one is refused at the handshake. Needs --kv-tcp-tls-cert.
    #[arg(
        long,
        env = "QUINTET_KV_TCP_CLIENT_CA",
        requires = "kv_tcp_tls_cert",
        value_name = "FILE"
    )]
    pub kv_tcp_client_ca: Option<PathBuf>,

    /// Serve the raw-TCP port beyond loopback without client certificates although bearer
    /// tokens guard HTTP and gRPC: any client that reaches the port reads and writes every key.
    #[arg(long, env = "QUINTET_KV_TCP_INSECURE_NO_AUTH")]
    pub kv_tcp_insecure_no_auth: bool,

    /// Client networks the raw-TCP port accepts, comma separated CIDRs or addresses
    /// (e.g. `10.0.0.0/8,192.168.1.7`); others are closed at accept. Empty accepts all.
    #[arg(long, env = "QUINTET_KV_TCP_ALLOW", value_delimiter = ',', value_parser = parse_network, value_name = "CIDR")]
    pub kv_tcp_allow: Vec<ipnet::IpNet>,

    /// Open raw-TCP connections at once; beyond it a new connection is closed at accept.
    #[arg(long, env = "QUINTET_KV_TCP_MAX_CONNECTIONS", default_value_t = 1024)]
    pub kv_tcp_max_connections: usize,

    /// A raw-TCP connection with no request under way for this long is closed.
    #[arg(long, env = "QUINTET_KV_TCP_IDLE_TIMEOUT", value_parser = platform::config::parse_duration, default_value = "5m")]
    pub kv_tcp_idle_timeout: Duration,

    /// Time a raw-TCP request has from its first byte to its last (and the TLS handshake from
    /// connect); a slower one closes the connection.
    #[arg(long, env = "QUINTET_KV_TCP_FRAME_TIMEOUT", value_parser = platform::config::parse_duration, default_value = "30s")]
    pub kv_tcp_frame_timeout: Duration,

    /// Bytes of partly received requests all raw-TCP connections may hold together; a
    /// connection waits for room at most --kv-tcp-budget-wait, then is closed. At least the
    /// largest request (--kv-max-value-bytes + 64 KiB).
    #[arg(long, env = "QUINTET_KV_TCP_BUFFER_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub kv_tcp_buffer_bytes: usize,

    /// How long a raw-TCP connection waits for room in --kv-tcp-buffer-bytes before it is closed.
    #[arg(long, env = "QUINTET_KV_TCP_BUDGET_WAIT", value_parser = platform::config::parse_duration, default_value = "5s")]
    pub kv_tcp_budget_wait: Duration,

    /// Raw-TCP requests per second each client IP may make (answered `internal` past it);
    /// 0 turns the limit off.
    #[arg(long, env = "QUINTET_KV_TCP_RATE_LIMIT", default_value_t = 1000)]
    pub kv_tcp_rate_limit: u32,

    /// Raw-TCP requests a client IP may make in a burst above the rate [default: 2 × the rate].
    #[arg(long, env = "QUINTET_KV_TCP_RATE_LIMIT_BURST")]
    pub kv_tcp_rate_limit_burst: Option<u32>,

    /// Largest value, in bytes (0-byte values are allowed).
    #[arg(long, env = "QUINTET_KV_MAX_VALUE_BYTES", default_value_t = domain::DEFAULT_MAX_VALUE_BYTES)]
    pub kv_max_value_bytes: usize,

    /// Bound into every record's associated data: records copied between
    /// namespaces do not decrypt.
    #[arg(long, env = "QUINTET_KV_NAMESPACE", default_value = "default")]
    pub kv_namespace: String,

    /// The key provider: `local` (master keys in <data-dir>/kv-keys, created on first start,
    /// or from `QUINTET_KV_MASTER_KEY`), `local:///some/dir`, or AWS KMS:
    /// `aws-kms://<key id, key ARN or alias/name>[?region=…&endpoint=…&max_attempts=…]`
    /// (credentials from the AWS SDK's standard chain).
    #[arg(long, env = "QUINTET_KV_KEY_PROVIDER", default_value = "local")]
    pub kv_key_provider: String,

    /// The layout new records are written in: `quintet` (namespace and key bound into each
    /// record as associated data) or `seed`, the original services' `DynamoDB` layout (value S =
    /// base64(iv ‖ tag ‖ ciphertext), `data_key` B = base64 of the KMS blob), which they can read
    /// during a rolling migration but which binds no associated data. `seed` needs a `DynamoDB`
    /// store (--kv-store dynamodb://…).
    #[arg(long, env = "QUINTET_KV_WRITE_FORMAT", value_enum, default_value_t = WriteFormat::Quintet)]
    pub kv_write_format: WriteFormat,

    /// Most AWS KMS calls per second (`GenerateDataKey`, Decrypt, Encrypt) from this instance;
    /// past it a call waits up to 1 s, then fails as unavailable (503). KMS's own quota is
    /// shared by every client of the account and region.
    #[arg(long, env = "QUINTET_KV_KMS_RATE_LIMIT", default_value_t = DEFAULT_KMS_RATE_LIMIT)]
    pub kv_kms_rate_limit: NonZeroU32,

    /// Master keys for the local provider as comma-separated base64 (32 bytes each; the last
    /// is current). When set, no key files are read or written.
    #[arg(
        long = "kv-master-key",
        env = "QUINTET_KV_MASTER_KEY",
        hide_env_values = true,
        hide = true
    )]
    pub kv_master_key: Option<SecretString>,

    /// Longest a data key is used to encrypt (and kept to decrypt); 0 turns caching off.
    #[arg(long, env = "QUINTET_KV_DEK_MAX_AGE", value_parser = platform::config::parse_duration, default_value = "5m")]
    pub kv_dek_max_age: Duration,

    /// Most values one data key encrypts (and decrypts from cache); 0 turns caching off.
    #[arg(long, env = "QUINTET_KV_DEK_MAX_USES", default_value_t = 100_000)]
    pub kv_dek_max_uses: u64,

    /// Most plaintext bytes one data key encrypts (and decrypts from cache); 0 turns caching off.
    #[arg(long, env = "QUINTET_KV_DEK_MAX_BYTES", default_value_t = 1 << 30)]
    pub kv_dek_max_bytes: u64,

    /// Most unwrapped data keys kept for decryption.
    #[arg(long, env = "QUINTET_KV_DEK_CACHE_ENTRIES", default_value_t = 10_000)]
    pub kv_dek_cache_entries: usize,
}

/// The layout `--kv-write-format` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WriteFormat {
    /// quintet's own layout, with associated data.
    Quintet,
    /// The original services' `DynamoDB` layout (PHP twin), without associated data.
    Seed,
}

impl WriteFormat {
    /// The record layout this option names.
    pub fn record_format(self) -> domain::RecordFormat {
        match self {
            WriteFormat::Quintet => domain::RecordFormat::V1,
            WriteFormat::Seed => domain::RecordFormat::SeedLegacy,
        }
    }
}

/// What `--kv-key-provider` names.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ProviderSpec {
    /// Master key files in this directory.
    LocalDir(PathBuf),
    /// Master keys from the data dir's `kv-keys` directory.
    LocalDefault,
    AwsKms {
        key_id: String,
        settings: AwsSettings,
    },
}

/// Why `--kv-key-provider` names no provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProviderSpecError {
    /// Not a provider kv knows (its first 40 characters).
    #[error("unknown provider '{0}'; use local, local:///dir or aws-kms://<key id or alias/name>")]
    Unknown(String),
    /// `local://` without a directory.
    #[error("local:// needs a directory: local:///var/lib/quintet/keys")]
    NoDirectory,
    /// `aws-kms://` without a key.
    #[error("aws-kms:// needs a key: aws-kms://alias/name or aws-kms://<key id or ARN>")]
    NoKey,
    /// The AWS parameters after `?` are wrong.
    #[error(transparent)]
    Settings(platform::aws::AwsQueryError),
}

impl ProviderSpec {
    /// Parses `--kv-key-provider`. Not with `url`: a key ARN
    /// (`arn:aws:kms:…:key/…`) is no URL authority, so the query is split
    /// off at its `?` and the key id is taken as written.
    fn parse(text: &str) -> Result<Self, ProviderSpecError> {
        if text == "local" {
            return Ok(Self::LocalDefault);
        }
        if let Some(dir) = text.strip_prefix("local://") {
            return match dir {
                "" => Err(ProviderSpecError::NoDirectory),
                dir => Ok(Self::LocalDir(dir.into())),
            };
        }
        let Some(rest) = text.strip_prefix("aws-kms://") else {
            return Err(ProviderSpecError::Unknown(text.chars().take(40).collect()));
        };
        let (key_id, query) = rest.split_once('?').unwrap_or((rest, ""));
        if key_id.is_empty() {
            return Err(ProviderSpecError::NoKey);
        }
        let (settings, _) =
            AwsSettings::from_query(query, &[]).map_err(ProviderSpecError::Settings)?;
        Ok(Self::AwsKms {
            key_id: key_id.to_owned(),
            settings,
        })
    }
}

/// A `--kv-tcp-allow` value that is neither a network nor an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is neither a CIDR (10.0.0.0/8, fd00::/8) nor an IP address")]
pub(crate) struct NotANetwork(String);

/// `--kv-tcp-allow`'s values: a CIDR, or one address (a /32 or /128).
fn parse_network(text: &str) -> Result<ipnet::IpNet, NotANetwork> {
    let text = text.trim();
    if let Ok(net) = text.parse::<ipnet::IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<std::net::IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| NotANetwork(text.to_owned()))
}

impl KvConfig {
    /// Checks the options that need no I/O but reading the raw-TCP port's
    /// certificate files — the key provider's spec, `QUINTET_KV_MASTER_KEY`,
    /// the namespace, the TCP bounds and TLS files — naming the option at
    /// fault. `tokens_configured` says whether bearer tokens guard HTTP and
    /// gRPC: then the raw-TCP port may listen beyond loopback only with
    /// client certificates or the explicit `--kv-tcp-insecure-no-auth`.
    pub fn check(&self, tokens_configured: bool) -> Result<(), ConfigError> {
        self.spec()?;
        self.master_keys()?;
        domain::Namespace::new(self.kv_namespace.clone())
            .map_err(|e| ConfigError::new("--kv-namespace", e.to_string()))?;
        self.tcp_limits()?;
        self.tcp_tls()?;
        self.check_tcp_exposure(tokens_configured)
    }

    /// The start-up policy of the raw-TCP port, which carries no credential.
    fn check_tcp_exposure(&self, tokens_configured: bool) -> Result<(), ConfigError> {
        let addr = self.kv_tcp_addr;
        if !tokens_configured
            || addr.ip().is_loopback()
            || self.kv_tcp_client_ca.is_some()
            || self.kv_tcp_insecure_no_auth
        {
            return Ok(());
        }
        Err(ConfigError::new(
            "--kv-tcp-addr",
            format!(
                "bearer tokens guard HTTP and gRPC (--tokens), but the raw-TCP port would listen \
                 on {addr} beyond loopback, where the seed protocol carries no credential and any \
                 client could read and overwrite every key. Choose one: require client \
                 certificates (--kv-tcp-tls-cert, --kv-tcp-tls-key and --kv-tcp-client-ca), \
                 listen on loopback only (--kv-tcp-addr 127.0.0.1:50051, e.g. behind stunnel), \
                 or accept the risk with --kv-tcp-insecure-no-auth"
            ),
        ))
    }

    /// The raw-TCP port's bounds, checked.
    pub(crate) fn tcp_limits(&self) -> Result<crate::api::seed_tcp::Limits, ConfigError> {
        // Permits of a tokio semaphore are counted in a usize with 3 bits spare.
        const MAX_BUDGET: usize = usize::MAX >> 4;
        use crate::api::seed_tcp::{Limits, REQUEST_OVERHEAD};
        let max_request = self.kv_max_value_bytes.saturating_add(REQUEST_OVERHEAD);
        if self.kv_tcp_max_connections == 0 {
            return Err(ConfigError::new(
                "--kv-tcp-max-connections",
                "must be greater than zero",
            ));
        }
        for (option, value) in [
            ("--kv-tcp-idle-timeout", self.kv_tcp_idle_timeout),
            ("--kv-tcp-frame-timeout", self.kv_tcp_frame_timeout),
            ("--kv-tcp-budget-wait", self.kv_tcp_budget_wait),
        ] {
            if value.is_zero() {
                return Err(ConfigError::new(option, "must be greater than zero"));
            }
        }
        if self.kv_tcp_buffer_bytes < max_request || self.kv_tcp_buffer_bytes > MAX_BUDGET {
            return Err(ConfigError::new(
                "--kv-tcp-buffer-bytes",
                format!(
                    "{} bytes cannot hold one request of the largest value: use at least {max_request} \
                     (--kv-max-value-bytes + 64 KiB)",
                    self.kv_tcp_buffer_bytes
                ),
            ));
        }
        let rate = match self.kv_tcp_rate_limit {
            0 => None,
            per_second => {
                let burst = self
                    .kv_tcp_rate_limit_burst
                    .unwrap_or(per_second.saturating_mul(2));
                let burst = NonZeroU32::new(burst).ok_or_else(|| {
                    ConfigError::new("--kv-tcp-rate-limit-burst", "must be greater than zero")
                })?;
                let per_second = NonZeroU32::new(per_second).ok_or_else(|| {
                    ConfigError::new("--kv-tcp-rate-limit", "must be greater than zero")
                })?;
                Some((per_second, burst))
            }
        };
        Ok(Limits {
            max_request,
            max_connections: self.kv_tcp_max_connections,
            idle_timeout: self.kv_tcp_idle_timeout,
            frame_timeout: self.kv_tcp_frame_timeout,
            buffer_bytes: self.kv_tcp_buffer_bytes,
            budget_wait: self.kv_tcp_budget_wait,
            rate,
            allow: self.kv_tcp_allow.clone(),
        })
    }

    /// The raw-TCP port's TLS configuration, when it has one; the files are
    /// read here, so a wrong path or a key that does not match exits 2.
    pub(crate) fn tcp_tls(&self) -> Result<Option<crate::api::tcp_tls::TcpTls>, ConfigError> {
        let (Some(cert), Some(key)) = (&self.kv_tcp_tls_cert, &self.kv_tcp_tls_key) else {
            return Ok(None);
        };
        crate::api::tcp_tls::TcpTls::load(cert, key, self.kv_tcp_client_ca.as_deref()).map(Some)
    }

    pub(crate) fn spec(&self) -> Result<ProviderSpec, ConfigError> {
        ProviderSpec::parse(&self.kv_key_provider)
            .map_err(|e| ConfigError::new("--kv-key-provider", e.to_string()))
    }

    /// The local provider from `QUINTET_KV_MASTER_KEY`, when it is set.
    pub(crate) fn master_keys(&self) -> Result<Option<LocalKeyProvider>, ConfigError> {
        let Some(keys) = &self.kv_master_key else {
            return Ok(None);
        };
        if !matches!(self.spec()?, ProviderSpec::LocalDefault) {
            return Err(ConfigError::new(
                "QUINTET_KV_MASTER_KEY",
                "it is for the local provider only; unset it or use --kv-key-provider local",
            ));
        }
        LocalKeyProvider::from_env_value(keys)
            .map(Some)
            .map_err(|e| ConfigError::new("QUINTET_KV_MASTER_KEY", e.to_string()))
    }

    /// The directory local master keys are read from, when the provider is
    /// the local one with files (not `QUINTET_KV_MASTER_KEY`, not KMS).
    pub(crate) fn local_key_dir(&self, data_dir: &Path) -> Result<Option<PathBuf>, ConfigError> {
        if self.kv_master_key.is_some() {
            return Ok(None);
        }
        Ok(match self.spec()? {
            ProviderSpec::LocalDefault => Some(data_dir.join("kv-keys")),
            ProviderSpec::LocalDir(dir) => Some(dir),
            ProviderSpec::AwsKms { .. } => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_specs_parse_and_name_what_is_wrong() {
        assert_eq!(ProviderSpec::parse("local"), Ok(ProviderSpec::LocalDefault));
        assert_eq!(
            ProviderSpec::parse("local:///k"),
            Ok(ProviderSpec::LocalDir("/k".into()))
        );
        let Ok(ProviderSpec::AwsKms { key_id, settings }) = ProviderSpec::parse(
            "aws-kms://arn:aws:kms:eu-west-1:111122223333:key/abc?region=eu-west-1",
        ) else {
            panic!("an ARN parses");
        };
        assert_eq!(key_id, "arn:aws:kms:eu-west-1:111122223333:key/abc");
        assert_eq!(settings.region.as_deref(), Some("eu-west-1"));
        assert!(ProviderSpec::parse("aws-kms://").is_err());
        assert!(ProviderSpec::parse("local://").is_err());
        let err = ProviderSpec::parse("vault://x").expect_err("unknown");
        assert!(
            err.to_string().contains("unknown provider 'vault://x'"),
            "{err}"
        );
        let err = ProviderSpec::parse("aws-kms://alias/x?token=1").expect_err("unknown param");
        assert!(
            err.to_string().contains("unknown parameter 'token'"),
            "{err}"
        );
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        kv: KvConfig,
    }

    fn config(args: &[&str]) -> KvConfig {
        use clap::Parser;
        let mut all = vec!["quintet"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).expect("test arguments parse").kv
    }

    #[test]
    fn debug_shows_no_master_key() {
        use base64::Engine as _;
        let key = base64::engine::general_purpose::STANDARD.encode([42u8; 32]);
        let config = config(&["--kv-master-key", &key]);
        assert!(config.check(false).is_ok());
        let debug = format!("{config:?}");
        assert!(!debug.contains(&key), "{debug}");
        assert!(debug.contains("REDACTED"), "{debug}");
    }

    #[test]
    fn check_names_the_option_at_fault_without_io() {
        assert!(config(&[]).check(false).is_ok());
        let err = config(&["--kv-key-provider", "aws-kmz://x"])
            .check(false)
            .expect_err("typo");
        assert_eq!(err.option, "--kv-key-provider");
        assert!(err.to_string().contains("aws-kms://"), "{err}");
        let err = config(&["--kv-key-provider", "local:///k", "--kv-master-key", "AAAA"])
            .check(false)
            .expect_err("master key with a key dir");
        assert_eq!(err.option, "QUINTET_KV_MASTER_KEY");
        let err = config(&["--kv-master-key", "not base64!"])
            .check(false)
            .expect_err("bad key");
        assert_eq!(err.option, "QUINTET_KV_MASTER_KEY");
        assert!(!err.to_string().contains("not base64!"), "{err}");
    }

    #[test]
    fn tokens_and_a_tcp_port_beyond_loopback_need_client_certificates_or_the_ack() {
        let open = config(&["--kv-tcp-addr", "0.0.0.0:50051"]);
        let err = open.check(true).expect_err("refused");
        assert_eq!(err.option, "--kv-tcp-addr");
        for choice in [
            "--kv-tcp-client-ca",
            "127.0.0.1",
            "--kv-tcp-insecure-no-auth",
        ] {
            assert!(err.to_string().contains(choice), "{choice}: {err}");
        }
        // Without tokens there is nothing to bypass; on loopback it stays local.
        assert!(open.check(false).is_ok());
        assert!(
            config(&["--kv-tcp-addr", "[::1]:50051"])
                .check(true)
                .is_ok()
        );
        assert!(
            config(&[
                "--kv-tcp-addr",
                "0.0.0.0:50051",
                "--kv-tcp-insecure-no-auth"
            ])
            .check(true)
            .is_ok()
        );
        let mut mutual = open.clone();
        mutual.kv_tcp_client_ca = Some("/ca.pem".into());
        assert!(mutual.check_tcp_exposure(true).is_ok());
    }

    #[test]
    fn tcp_bounds_are_checked_and_named() {
        let err = config(&["--kv-tcp-buffer-bytes", "1000"])
            .check(false)
            .expect_err("budget below one request");
        assert_eq!(err.option, "--kv-tcp-buffer-bytes");
        assert!(err.to_string().contains("at least"), "{err}");
        let err = config(&["--kv-tcp-max-connections", "0"])
            .check(false)
            .expect_err("no connections");
        assert_eq!(err.option, "--kv-tcp-max-connections");
        let err = config(&["--kv-tcp-frame-timeout", "0s"])
            .check(false)
            .expect_err("zero deadline");
        assert_eq!(err.option, "--kv-tcp-frame-timeout");
        let err = config(&["--kv-tcp-rate-limit-burst", "0"])
            .check(false)
            .expect_err("zero burst");
        assert_eq!(err.option, "--kv-tcp-rate-limit-burst");
        let err = config(&[
            "--kv-tcp-tls-cert",
            "/nonexistent.pem",
            "--kv-tcp-tls-key",
            "/k.pem",
        ])
        .check(false)
        .err()
        .map(|e| e.option);
        assert_eq!(err, Some("--kv-tcp-tls-cert"));
    }

    #[test]
    fn allowlist_entries_are_networks_or_addresses() {
        assert_eq!(
            parse_network("10.1.2.3/8").map(|n| n.to_string()),
            Ok("10.0.0.0/8".to_owned())
        );
        assert_eq!(
            parse_network("192.168.1.7").map(|n| n.to_string()),
            Ok("192.168.1.7/32".to_owned())
        );
        assert_eq!(
            parse_network("::1").map(|n| n.to_string()),
            Ok("::1/128".to_owned())
        );
        let err = parse_network("10.0.0.0/33").expect_err("bad prefix");
        assert!(err.to_string().contains("neither a CIDR"), "{err}");
        let allow = config(&["--kv-tcp-allow", "10.0.0.0/8,127.0.0.1"]).kv_tcp_allow;
        assert_eq!(allow.len(), 2);
    }
}
