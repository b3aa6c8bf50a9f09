//! Distributed tracing: W3C Trace Context in, OpenTelemetry OTLP out.
//!
//! Off by default. With `--otlp-endpoint` set, [`init`] installs an
//! OpenTelemetry layer beside the log layer and turns [`enabled`] on; then
//! every service request gets a server span whose parent is the caller's
//! `traceparent` header (HTTP and gRPC alike, [`crate::layers::trace`]),
//! outgoing calls carry the current span's context ([`inject`],
//! [`traceparent`]), and work that crosses a queue picks its parent up again
//! on the other side ([`follow`]), and calls to stores and key providers
//! get client spans of their own ([`store_span`], [`call_span`],
//! [`traced`]). Spans are batched and exported over
//! OTLP (gRPC, or HTTP with protobuf bodies) from a task on the server's runtime.
//!
//! Off, nothing of this runs: no layer is installed, no span is built, the
//! helpers below return at their first line.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub use crate::config::OtlpProtocol;

/// The W3C Trace Context header.
pub const TRACEPARENT: &str = "traceparent";

/// How long one export to the collector may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (`--otlp-endpoint` is set).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Why `--otlp-endpoint` was refused.
#[derive(Debug, thiserror::Error)]
#[error("--otlp-endpoint '{endpoint}': {why}")]
pub struct EndpointError {
    endpoint: String,
    why: String,
}

/// The exporter, kept by `serve` until it stops: [`Traces::shutdown`]
/// exports what is still batched.
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// Exports the spans still batched and stops the exporter (bounded by
    /// the export timeout; a collector that is down loses them).
    pub async fn shutdown(self) {
        let provider = self.provider;
        // The processor's shutdown blocks until its task has exported:
        // off the runtime's workers, or that task could never run.
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(error) = provider.shutdown() {
                tracing::warn!(%error, "trace export did not finish at shutdown");
            }
        })
        .await;
    }
}

/// An exporter that counts what it sends and what the collector refused,
/// and says so in the log when exporting starts or stops failing (not once
/// per batch: a collector down for an hour is two lines).
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    failing: AtomicBool,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = u64::try_from(batch.len()).unwrap_or(u64::MAX);
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => {
                metrics::counter!(crate::metrics::TRACE_SPANS_EXPORTED_TOTAL).increment(spans);
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("trace export to the OTLP collector works again");
                }
            }
            Err(error) => {
                metrics::counter!(crate::metrics::TRACE_EXPORT_FAILURES_TOTAL).increment(1);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        %error,
                        "trace export to the OTLP collector failed; spans are lost until it \
                         answers (quintet_trace_export_failures_total counts the batches)"
                    );
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// `endpoint` as logs and errors may show it: without a user name or
/// password it may carry (`http://user:secret@collector:4317`), and not at
/// all when it is no URL (it could be a secret pasted in the wrong place).
/// Credentials for a collector belong in `OTEL_EXPORTER_OTLP_HEADERS`.
pub(crate) fn shown(endpoint: &str) -> String {
    match url::Url::parse(endpoint) {
        Ok(mut url) => {
            if url.password().is_some() || !url.username().is_empty() {
                let _ = url.set_password(None);
                let _ = url.set_username("");
            }
            url.to_string()
        }
        Err(_) => "(not a URL)".to_owned(),
    }
}

/// Where and how spans are exported (`--otlp-endpoint`, `--otlp-protocol`).
#[derive(Debug, Clone, Copy)]
pub struct Otlp<'a> {
    /// The collector's URL: OTLP/gRPC's own, or OTLP/HTTP's base URL.
    pub endpoint: &'a str,
    /// gRPC or HTTP with protobuf bodies.
    pub protocol: OtlpProtocol,
}

impl OtlpProtocol {
    /// The protocol as `OTEL_EXPORTER_OTLP_PROTOCOL` names it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
        }
    }
}

/// The URL OTLP/HTTP spans are posted to: the base URL with `/v1/traces`
/// added, as OpenTelemetry's `OTEL_EXPORTER_OTLP_ENDPOINT` is read
/// (`https://gateway/otlp` → `https://gateway/otlp/v1/traces`); a URL that
/// already ends so is taken as it is.
fn traces_url(mut url: url::Url) -> url::Url {
    if !url.path().ends_with("/v1/traces") {
        let path = format!("{}/v1/traces", url.path().trim_end_matches('/'));
        url.set_path(&path);
    }
    url
}

/// The OTLP/HTTP exporter's client: the reqwest client the rest of quintet
/// uses (rustls, the web PKI roots), each export bounded by `EXPORT_TIMEOUT`
/// and the collector's answer by `MAX_ANSWER_BYTES`.
#[derive(Debug)]
struct HttpExport(reqwest::Client);

/// Most bytes of a collector's answer that are read: an
/// `ExportTraceServiceResponse` is a few bytes, a partial-success message
/// a few hundred.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for HttpExport {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let (parts, body) = request.into_parts();
        let mut answer = self
            .0
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await?;
        let mut response = http::Response::builder().status(answer.status());
        if let Some(headers) = response.headers_mut() {
            headers.extend(answer.headers().clone());
        }
        let mut read = Vec::new();
        while let Some(chunk) = answer.chunk().await? {
            if read.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(format!(
                    "the collector's answer is over {MAX_ANSWER_BYTES} bytes; not read further"
                )
                .into());
            }
            read.extend_from_slice(&chunk);
        }
        Ok(response.body(bytes::Bytes::from(read))?)
    }
}

/// The tracer provider exporting to `otlp.endpoint` over `otlp.protocol`,
/// batching on the current Tokio runtime.
pub(crate) fn provider(otlp: Otlp<'_>) -> Result<SdkTracerProvider, EndpointError> {
    let Otlp { endpoint, protocol } = otlp;
    let example = match protocol {
        OtlpProtocol::Grpc => "an OTLP/gRPC collector's URL, e.g. http://otel-collector:4317",
        OtlpProtocol::HttpProtobuf => {
            "an OTLP/HTTP collector's base URL, e.g. http://otel-collector:4318"
        }
    };
    let refuse = |why: String| EndpointError {
        endpoint: shown(endpoint),
        why,
    };
    let url = url::Url::parse(endpoint).map_err(|e| refuse(format!("{e}; give {example}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(refuse(format!(
            "the endpoint is an http:// or https:// URL with a host: give {example}"
        )));
    }
    let exporter = match protocol {
        OtlpProtocol::Grpc => {
            let mut exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .with_timeout(EXPORT_TIMEOUT);
            if url.scheme() == "https" {
                exporter = exporter.with_tls_config(
                    opentelemetry_otlp::tonic_types::transport::ClientTlsConfig::new()
                        .with_webpki_roots(),
                );
            }
            exporter.build()
        }
        OtlpProtocol::HttpProtobuf => {
            let client = reqwest::Client::builder()
                .timeout(EXPORT_TIMEOUT)
                .build()
                .map_err(|e| refuse(format!("the OTLP/HTTP client could not be built: {e}")))?;
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(HttpExport(client))
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(traces_url(url).as_str())
                .with_timeout(EXPORT_TIMEOUT)
                .build()
        }
    }
    .map_err(|e| refuse(format!("the OTLP exporter could not be built: {e}")))?;
    let exporter = Counted {
        inner: exporter,
        failing: AtomicBool::new(false),
    };
    let processor =
        BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("quintet");
    }
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource.build())
        .build())
}

/// The OpenTelemetry layer for the log subscriber, exporting to `endpoint`;
/// turns [`enabled`] on.
pub(crate) fn layer<S>(
    otlp: Otlp<'_>,
) -> Result<
    (
        tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>,
        Traces,
    ),
    EndpointError,
>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let provider = provider(otlp)?;
    let tracer = provider.tracer("quintet");
    ENABLED.store(true, Ordering::Relaxed);
    Ok((
        tracing_opentelemetry::layer().with_tracer(tracer),
        Traces { provider },
    ))
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// One `traceparent` value, as a queue attribute carries it.
struct One<'a>(Option<&'a str>);

impl Extractor for One<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if key == TRACEPARENT { self.0 } else { None }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

#[derive(Default)]
struct Captured(Option<String>);

impl Injector for Captured {
    fn set(&mut self, key: &str, value: String) {
        if key == TRACEPARENT {
            self.0 = Some(value);
        }
    }
}

/// A client span for one call to a store: named `<engine> <operation>`
/// (`postgresql put`), with `db.system.name` and `db.operation.name`, a
/// child of the current span. `Span::none()` unless spans are exported, so a
/// call costs nothing more when they are off.
pub fn store_span(engine: &'static str, operation: &'static str) -> tracing::Span {
    if !enabled() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "store",
        otel.name = format!("{engine} {operation}"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        db.system.name = engine,
        db.operation.name = operation,
    );
    span
}

/// A client span for one call to another service (a key provider): named
/// `<system> <operation>` (`aws-kms unwrap`), with `peer.service`; a child
/// of the current span, and `Span::none()` unless spans are exported.
pub fn call_span(system: &'static str, operation: &'static str) -> tracing::Span {
    if !enabled() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "call",
        otel.name = format!("{system} {operation}"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        peer.service = system,
    );
    span
}

/// Runs `call` inside `span` (a [`store_span`] or [`call_span`]), marking
/// the span failed when the call fails.
pub async fn traced<T, E>(
    span: tracing::Span,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    if span.is_none() {
        return call.await;
    }
    let result = call.instrument(span.clone()).await;
    if result.is_err() {
        span.record("otel.status_code", "ERROR");
    }
    result
}

/// Makes the caller's context (`traceparent` in `headers`) the parent of
/// `span`; without one, `span` starts a trace.
pub fn follow_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    if !enabled() || headers.get(TRACEPARENT).is_none() {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let _ = span.set_parent(parent);
}

/// Makes the context a queued message carried (its `traceparent`) the
/// parent of `span`.
pub fn follow(span: &tracing::Span, traceparent: Option<&str>) {
    if !enabled() || traceparent.is_none() {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&One(traceparent));
    let _ = span.set_parent(parent);
}

/// Puts the current span's context in `headers` (`traceparent`), for an
/// outgoing call.
pub fn inject(headers: &mut http::HeaderMap) {
    if !enabled() {
        return;
    }
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
}

/// The current span's context as a `traceparent` value, for a message sent
/// on a queue; `None` when tracing is off.
pub fn traceparent() -> Option<String> {
    if !enabled() {
        return None;
    }
    let context = tracing::Span::current().context();
    let mut captured = Captured::default();
    TraceContextPropagator::new().inject_context(&context, &mut captured);
    captured.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_endpoint_is_refused_with_an_example() {
        for bad in [
            "collector:4317",
            "ftp://collector:4317",
            "http://",
            "not a url",
        ] {
            for (protocol, example) in [
                (OtlpProtocol::Grpc, "http://otel-collector:4317"),
                (OtlpProtocol::HttpProtobuf, "http://otel-collector:4318"),
            ] {
                let Err(error) = provider(Otlp {
                    endpoint: bad,
                    protocol,
                }) else {
                    panic!("{bad} was accepted");
                };
                let error = error.to_string();
                assert!(error.starts_with("--otlp-endpoint"), "{error}");
                assert!(error.contains(example), "{error}");
            }
        }
    }

    #[tokio::test]
    async fn a_collector_answer_over_the_limit_is_not_read_into_memory() {
        use opentelemetry_http::HttpClient as _;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new()
            .route("/small", axum::routing::post(|| async { vec![0u8; 16] }))
            .route(
                "/huge",
                axum::routing::post(|| async { vec![0u8; MAX_ANSWER_BYTES + 1] }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = HttpExport(reqwest::Client::new());
        let post = |path: &str| {
            http::Request::post(format!("http://{addr}{path}"))
                .body(bytes::Bytes::from_static(b"spans"))
                .expect("request")
        };
        let small = client
            .send_bytes(post("/small"))
            .await
            .expect("a small answer");
        assert_eq!(small.body().len(), 16);
        let Err(error) = client.send_bytes(post("/huge")).await else {
            panic!("an answer over the limit was read");
        };
        assert!(error.to_string().contains("over 65536 bytes"), "{error}");
    }

    #[test]
    fn otlp_http_posts_to_the_base_url_and_v1_traces() {
        for (base, posted) in [
            ("http://collector:4318", "http://collector:4318/v1/traces"),
            ("http://collector:4318/", "http://collector:4318/v1/traces"),
            (
                "https://gateway.example/otlp",
                "https://gateway.example/otlp/v1/traces",
            ),
            (
                "https://gateway.example/otlp/v1/traces",
                "https://gateway.example/otlp/v1/traces",
            ),
        ] {
            let url = url::Url::parse(base).expect("url");
            assert_eq!(traces_url(url).as_str(), posted, "{base}");
        }
    }

    #[test]
    fn an_endpoint_is_shown_without_credentials() {
        assert_eq!(
            shown("http://user:secret@collector:4317"),
            "http://collector:4317/"
        );
        let Err(error) = provider(Otlp {
            endpoint: "ftp://user:secret@collector:4317",
            protocol: OtlpProtocol::Grpc,
        }) else {
            panic!("ftp accepted");
        };
        assert!(!error.to_string().contains("secret"), "{error}");
        assert_eq!(shown("not a url with a s3cret"), "(not a URL)");
    }

    #[test]
    fn off_the_helpers_do_nothing() {
        assert!(!enabled());
        assert_eq!(traceparent(), None);
        let mut headers = http::HeaderMap::new();
        inject(&mut headers);
        assert!(headers.is_empty());
    }
}
