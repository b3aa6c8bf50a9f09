//! gRPC `quintet.calc.v1.Calculator`, and the one place where calc's errors
//! become gRPC statuses ([`status`], [`history_status`]).
//!
//! Every method is a thin edge over [`Calculator`]: take the request, call,
//! map. Long prime work stops when tonic drops the RPC future (client
//! cancelled, deadline passed) or the stream's receiver (client gone).

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tonic::{Request, Response, Status};

use crate::domain::event::{DEFAULT_PAGE, EventQuery, Outcome, StoredEvent};
use crate::domain::{CalcError, Operation};
use crate::engine::calculator::{Calculator, HistoryError};
use crate::ports::EventLogError;
use crate::proto::v1::calculator_server::{Calculator as CalculatorRpc, CalculatorServer};
use crate::proto::v1::{
    AddRequest, AddResponse, CalculationEvent, DivideRequest, DivideResponse, HistoryRequest,
    HistoryResponse, MaxRequest, MaxResponse, MinRequest, MinResponse, MultiplyRequest,
    MultiplyResponse, NthPrimesRequest, NthPrimesResponse, PrimesChunk, PrimesRequest,
    SubtractRequest, SubtractResponse,
};

/// The `quintet.calc.v1.Calculator` gRPC service over `calculator`.
pub fn server(calculator: Arc<Calculator>) -> CalculatorServer<CalcGrpc> {
    CalculatorServer::new(CalcGrpc { calculator })
}

/// The gRPC status for a calc error.
pub fn status(error: CalcError) -> Status {
    let message = error.to_string();
    match error {
        CalcError::Cancelled => Status::cancelled(message),
        CalcError::NotRecorded(_) => Status::unavailable(message),
        CalcError::Internal(detail) => {
            tracing::error!(error = %detail, "calculation failed");
            Status::internal("calculation failed")
        }
        e if e.is_invalid_argument() => Status::invalid_argument(message),
        _ => Status::out_of_range(message),
    }
}

/// The gRPC status for a failed history read.
pub fn history_status(error: HistoryError) -> Status {
    let message = error.to_string();
    match error {
        HistoryError::Disabled => Status::failed_precondition(message),
        HistoryError::Log(error @ EventLogError::Unavailable(_)) => {
            tracing::error!(error = %platform::backend::chain(&error), "calc history read failed");
            Status::unavailable(super::http::HISTORY_UNAVAILABLE)
        }
        HistoryError::Log(EventLogError::Corrupt { .. }) => {
            tracing::error!(error = %message, "calc event log holds an unreadable event");
            Status::data_loss(message)
        }
    }
}

/// The caller's request id (set or propagated by the platform's request-id layer).
fn request_id<T>(request: &Request<T>) -> String {
    request
        .metadata()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// The gRPC methods, each a call on the shared [`Calculator`].
pub struct CalcGrpc {
    calculator: Arc<Calculator>,
}

impl CalcGrpc {
    async fn binary(&self, op: Operation, a: i64, b: i64, request_id: &str) -> Result<i64, Status> {
        self.calculator
            .binary(op, a, b, request_id)
            .await
            .map_err(status)
    }
}

type PrimesStream = Pin<Box<dyn Stream<Item = Result<PrimesChunk, Status>> + Send>>;

#[tonic::async_trait]
impl CalculatorRpc for CalcGrpc {
    async fn add(&self, request: Request<AddRequest>) -> Result<Response<AddResponse>, Status> {
        let id = request_id(&request);
        let r = request.into_inner();
        let result = self.binary(Operation::Add, r.a, r.b, &id).await?;
        Ok(Response::new(AddResponse { result }))
    }

    async fn subtract(
        &self,
        request: Request<SubtractRequest>,
    ) -> Result<Response<SubtractResponse>, Status> {
        let id = request_id(&request);
        let r = request.into_inner();
        let result = self.binary(Operation::Subtract, r.a, r.b, &id).await?;
        Ok(Response::new(SubtractResponse { result }))
    }

    async fn multiply(
        &self,
        request: Request<MultiplyRequest>,
    ) -> Result<Response<MultiplyResponse>, Status> {
        let id = request_id(&request);
        let r = request.into_inner();
        let result = self.binary(Operation::Multiply, r.a, r.b, &id).await?;
        Ok(Response::new(MultiplyResponse { result }))
    }

    async fn divide(
        &self,
        request: Request<DivideRequest>,
    ) -> Result<Response<DivideResponse>, Status> {
        let id = request_id(&request);
        let r = request.into_inner();
        let result = self.binary(Operation::Divide, r.a, r.b, &id).await?;
        Ok(Response::new(DivideResponse { result }))
    }

    async fn max(&self, request: Request<MaxRequest>) -> Result<Response<MaxResponse>, Status> {
        let id = request_id(&request);
        let r = request.into_inner();
        let result = self
            .calculator
            .fold(Operation::Max, &r.values, &id)
            .await
            .map_err(status)?;
        Ok(Response::new(MaxResponse { result }))
    }

    async fn min(&self, request: Request<MinRequest>) -> Result<Response<MinResponse>, Status> {
        let id = request_id(&request);
        let r = request.into_inner();
        let result = self
            .calculator
            .fold(Operation::Min, &r.values, &id)
            .await
            .map_err(status)?;
        Ok(Response::new(MinResponse { result }))
    }

    async fn nth_primes(
        &self,
        request: Request<NthPrimesRequest>,
    ) -> Result<Response<NthPrimesResponse>, Status> {
        let id = request_id(&request);
        let n = request.into_inner().n;
        let primes = self.calculator.nth_primes(n, &id).await.map_err(status)?;
        Ok(Response::new(NthPrimesResponse { primes }))
    }

    type PrimesStream = PrimesStream;

    async fn primes(
        &self,
        request: Request<PrimesRequest>,
    ) -> Result<Response<Self::PrimesStream>, Status> {
        let id = request_id(&request);
        let r = request.into_inner();
        // Refusals come back as a status before streaming starts, not as a cut stream.
        let chunks = self
            .calculator
            .primes(r.from, r.to, &id)
            .await
            .map_err(status)?;
        let stream = futures_util::stream::unfold(chunks, |mut chunks| async move {
            let item = chunks.recv().await?;
            Some((
                item.map(|primes| PrimesChunk { primes }).map_err(status),
                chunks,
            ))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn history(
        &self,
        request: Request<HistoryRequest>,
    ) -> Result<Response<HistoryResponse>, Status> {
        let r = request.into_inner();
        let since = if r.since.is_empty() {
            None
        } else {
            Some(OffsetDateTime::parse(&r.since, &Rfc3339).map_err(|e| {
                Status::invalid_argument(format!(
                    "since: '{}' is not an RFC 3339 time (e.g. 2026-12-03T08:00:00Z): {e}",
                    r.since
                ))
            })?)
        };
        let limit = match r.limit {
            0 => DEFAULT_PAGE,
            n => n as usize,
        };
        let query = EventQuery::new(r.after, since, limit);
        let events = self
            .calculator
            .history(query)
            .await
            .map_err(history_status)?;
        let next_after = match events.last() {
            Some(last) if events.len() == query.limit => last.seq,
            _ => 0,
        };
        Ok(Response::new(HistoryResponse {
            events: events.into_iter().map(event_message).collect(),
            next_after,
        }))
    }
}

fn event_message(stored: StoredEvent) -> CalculationEvent {
    let e = stored.event;
    let (result_json, error_kind, error_message) = match e.outcome {
        Outcome::Result(value) => (value.to_string(), String::new(), String::new()),
        Outcome::Error { kind, message } => (String::new(), kind, message),
    };
    CalculationEvent {
        seq: stored.seq,
        at: e.at.format(&Rfc3339).unwrap_or_default(),
        request_id: e.request_id,
        method: e.method,
        input_json: e.input.to_string(),
        result_json,
        error_kind,
        error_message,
    }
}
