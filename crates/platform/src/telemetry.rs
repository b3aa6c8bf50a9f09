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
    let _ = init(format, None);
}

/// Installs the global log subscriber and, with an OTLP endpoint, the trace
/// exporter beside it (see [`crate::trace`]); later calls install nothing.
/// Needs the Tokio runtime when `otlp` is set (the exporter's batches run
/// on it).
///
/// # Errors
/// `otlp` is not an http(s) URL, or the exporter cannot be built.
pub fn init(
    format: LogFormat,
    otlp: Option<crate::trace::Otlp<'_>>,
) -> Result<Option<crate::trace::Traces>, crate::trace::EndpointError> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

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
    let logs = if json {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stdout)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stdout)
            .boxed()
    }
    .with_filter(filter);
    let Some(otlp) = otlp else {
        let _ = tracing_subscriber::registry().with(logs).try_init();
        return Ok(None);
    };
    // Spans at info and above, whatever the log filter says: turning logs
    // down must not cut traces.
    let (spans, traces) = crate::trace::layer(otlp)?;
    let spans = spans.with_filter(tracing_subscriber::filter::LevelFilter::INFO);
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init();
    tracing::info!(
        endpoint = %crate::trace::shown(otlp.endpoint),
        protocol = otlp.protocol.name(),
        "traces: exported over OTLP"
    );
    Ok(Some(traces))
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
