//! A real OTLP/gRPC trace receiver: the OpenTelemetry collector's trace
//! service, generated from the OpenTelemetry protocol's definitions
//! (opentelemetry-proto) and served by tonic. It keeps every span it is
//! sent, with its resource's `service.name`.

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
    keep: bool,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
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
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Receiver {
    /// A receiver on a free loopback port that keeps every span; its
    /// endpoint URL (`http://127.0.0.1:<port>`).
    pub async fn start() -> (Self, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let receiver = Self {
            keep: true,
            ..Self::default()
        };
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
