//! Logs and metrics, set up once per process.
//!
//! Logs go to stdout (an event stream, twelve-factor style): JSON lines when
//! stdout is not a terminal, human-readable when it is. The filter comes from
//! `QUINTET_LOG` (or `RUST_LOG`), default [`DEFAULT_FILTER`]: `info`, with
//! rustls at `error` (it warns about every client that sends an IP address
//! as its TLS server name, which lets any client flood the log) and the AWS
//! SDK's instance-metadata and credentials-chain lookups at `error` (off EC2
//! each start printed a multi-line IMDS response dump; a call that finds no
//! credentials reports it as its own one-line error, see
//! `aws::describe_error`), and the fjall storage engine at `warn` (it reports
//! each database it opens and each table it writes at `info`). Request bodies and credentials are never logged.

use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// The log filter when neither `QUINTET_LOG` nor `RUST_LOG` is set.
pub const DEFAULT_FILTER: &str = "info,rustls=error,aws_config::imds=error,aws_config::meta::credentials::chain=error,\
     fjall=warn,lsm_tree=warn";

/// Latency buckets, in seconds: 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Installs the global log subscriber; later calls are no-ops.
pub fn init_logging(format: LogFormat) {
    let filter = std::env::var("QUINTET_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
}

/// The process-wide Prometheus recorder (installed on first use).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Fails only on an empty bucket list, which LATENCY_BUCKETS is not.
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new())
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (e.g. by a test harness);
            // then this handle renders only what this recorder sees, which is fine.
            if metrics::set_global_recorder(recorder).is_ok() {
                crate::metrics::describe();
            }
            handle
        })
        .clone()
}
