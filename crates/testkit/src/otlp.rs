//! A real OTLP trace receiver: the OpenTelemetry collector's trace service,
//! generated from the OpenTelemetry protocol's definitions
//! (opentelemetry-proto), served over gRPC by tonic or over HTTP
//! (`POST /v1/traces`, protobuf bodies, as OTLP/HTTP specifies) by axum. It
//! keeps every span it is sent, with its resource's `service.name`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;

/// The spans received so far, shared with the server task.
#[derive(Clone, Default)]
pub struct Receiver {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
    /// Spans received but not kept (`keep: false`, for load).
    counted: Arc<std::sync::atomic::AtomicU64>,
    /// The headers of each OTLP/HTTP export.
    headers: Arc<Mutex<Vec<axum::http::HeaderMap>>>,
    keep: bool,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.receive(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Receiver {
    fn receive(&self, request: ExportTraceServiceRequest) {
        let mut received = Vec::new();
        for resource_spans in request.resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref()?.value.as_ref())
                .map(|v| match v {
                    Any::StringValue(s) => s.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                received.extend(scope.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
        self.counted.fetch_add(
            u64::try_from(received.len()).unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
        if self.keep {
            self.spans
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(received);
        }
    }

    /// A receiver of OTLP/HTTP on a free loopback port that keeps every
    /// span and the headers of every export; its base URL
    /// (`http://127.0.0.1:<port>`, spans go to `/v1/traces`).
    pub async fn start_http() -> (Self, String) {
        use axum::http::{HeaderMap, StatusCode, header};
        use prost::Message as _;

        let (listener, endpoint, receiver) = Self::keeping().await;
        let this = receiver.clone();
        let export = move |headers: HeaderMap, body: axum::body::Bytes| {
            let this = this.clone();
            async move {
                let protobuf = headers
                    .get(header::CONTENT_TYPE)
                    .is_some_and(|v| v.as_bytes() == b"application/x-protobuf");
                let protobuf_type = [(header::CONTENT_TYPE, "application/x-protobuf")];
                if !protobuf {
                    return (
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        protobuf_type,
                        Vec::new(),
                    );
                }
                let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                    return (StatusCode::BAD_REQUEST, protobuf_type, Vec::new());
                };
                this.headers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(headers);
                this.receive(request);
                let answer = ExportTraceServiceResponse {
                    partial_success: None,
                };
                (StatusCode::OK, protobuf_type, answer.encode_to_vec())
            }
        };
        let app = axum::Router::new().route("/v1/traces", axum::routing::post(export));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, endpoint)
    }

    /// The headers of every OTLP/HTTP export received so far.
    pub fn headers(&self) -> Vec<axum::http::HeaderMap> {
        self.headers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A free loopback port, its URL, and a receiver that keeps every span.
    async fn keeping() -> (tokio::net::TcpListener, String, Self) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let receiver = Self {
            keep: true,
            ..Self::default()
        };
        (listener, endpoint, receiver)
    }

    /// A receiver on a free loopback port that keeps every span; its
    /// endpoint URL (`http://127.0.0.1:<port>`).
    pub async fn start() -> (Self, String) {
        let (listener, endpoint, receiver) = Self::keeping().await;
        receiver.serve(listener);
        (receiver, endpoint)
    }

    /// A receiver on `addr` that only counts what it is sent (for load).
    pub async fn counting(addr: SocketAddr) -> (Self, SocketAddr) {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let local = listener.local_addr().expect("addr");
        let receiver = Self::default();
        receiver.serve(listener);
        (receiver, local)
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
    }

    /// Every span kept so far, with its service name.
    pub fn spans(&self) -> Vec<(String, Span)> {
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many spans were received.
    pub fn count(&self) -> u64 {
        self.counted.load(std::sync::atomic::Ordering::Relaxed)
    }
}
