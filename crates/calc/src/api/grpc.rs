//! gRPC `quintet.calc.v1.Calculator`, and the one place where calc's errors
//! become gRPC statuses ([`status`]).
//!
//! Prime computations run on the blocking pool with a cancellation flag the
//! RPC's future raises when it is dropped — which is what tonic does when
//! the client cancels or its deadline passes — so abandoned work stops at the
//! next sieve segment instead of holding a core.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::Stream;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use crate::domain::{self, CalcError, primes};
use crate::proto::v1::calculator_server::{Calculator, CalculatorServer};
use crate::proto::v1::{
    AddRequest, AddResponse, DivideRequest, DivideResponse, MaxRequest, MaxResponse, MinRequest,
    MinResponse, MultiplyRequest, MultiplyResponse, NthPrimesRequest, NthPrimesResponse,
    PrimesChunk, PrimesRequest, SubtractRequest, SubtractResponse,
};

/// Most values one `Max`/`Min` takes, and most n one `NthPrimes` takes.
pub const MAX_VALUES: usize = 10_000;

/// The limits the server enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest n for `NthPrimes`.
    pub max_n: u64,
    /// Widest `Primes` range.
    pub max_range: u64,
}

pub fn server(limits: Limits) -> CalculatorServer<CalcGrpc> {
    CalculatorServer::new(CalcGrpc { limits })
}

/// The gRPC status for a calc error.
pub fn status(error: CalcError) -> Status {
    let message = error.to_string();
    match error {
        CalcError::DivisionByZero | CalcError::InvalidN => Status::invalid_argument(message),
        CalcError::Cancelled => Status::cancelled(message),
        _ => Status::out_of_range(message),
    }
}

/// Raised when dropped: the RPC future's end (completed, cancelled or timed out).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

fn values(values: &[i64]) -> Result<(), Status> {
    if values.is_empty() {
        return Err(Status::invalid_argument("values: give at least one"));
    }
    if values.len() > MAX_VALUES {
        return Err(Status::invalid_argument(format!(
            "values: at most {MAX_VALUES}, got {}",
            values.len()
        )));
    }
    Ok(())
}

pub struct CalcGrpc {
    limits: Limits,
}

type PrimesStream = Pin<Box<dyn Stream<Item = Result<PrimesChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Calculator for CalcGrpc {
    async fn add(&self, request: Request<AddRequest>) -> Result<Response<AddResponse>, Status> {
        let r = request.into_inner();
        let result = domain::add(r.a, r.b).map_err(status)?;
        Ok(Response::new(AddResponse { result }))
    }

    async fn subtract(
        &self,
        request: Request<SubtractRequest>,
    ) -> Result<Response<SubtractResponse>, Status> {
        let r = request.into_inner();
        let result = domain::subtract(r.a, r.b).map_err(status)?;
        Ok(Response::new(SubtractResponse { result }))
    }

    async fn multiply(
        &self,
        request: Request<MultiplyRequest>,
    ) -> Result<Response<MultiplyResponse>, Status> {
        let r = request.into_inner();
        let result = domain::multiply(r.a, r.b).map_err(status)?;
        Ok(Response::new(MultiplyResponse { result }))
    }

    async fn divide(
        &self,
        request: Request<DivideRequest>,
    ) -> Result<Response<DivideResponse>, Status> {
        let r = request.into_inner();
        let result = domain::divide(r.a, r.b).map_err(status)?;
        Ok(Response::new(DivideResponse { result }))
    }

    async fn max(&self, request: Request<MaxRequest>) -> Result<Response<MaxResponse>, Status> {
        let r = request.into_inner();
        values(&r.values)?;
        let result = r.values.iter().copied().fold(i64::MIN, domain::max);
        Ok(Response::new(MaxResponse { result }))
    }

    async fn min(&self, request: Request<MinRequest>) -> Result<Response<MinResponse>, Status> {
        let r = request.into_inner();
        values(&r.values)?;
        let result = r.values.iter().copied().fold(i64::MAX, domain::min);
        Ok(Response::new(MinResponse { result }))
    }

    async fn nth_primes(
        &self,
        request: Request<NthPrimesRequest>,
    ) -> Result<Response<NthPrimesResponse>, Status> {
        let n = request.into_inner().n;
        if n.is_empty() || n.len() > MAX_VALUES {
            return Err(Status::invalid_argument(format!(
                "n: give 1 to {MAX_VALUES} values"
            )));
        }
        let cancelled = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(cancelled.clone());
        let max_n = self.limits.max_n;
        let primes = tokio::task::spawn_blocking(move || {
            primes::nth_primes(&n, max_n, &|| cancelled.load(Ordering::Acquire))
        })
        .await
        .map_err(|e| Status::internal(format!("prime computation failed: {e}")))?
        .map_err(status)?;
        Ok(Response::new(NthPrimesResponse { primes }))
    }

    type PrimesStream = PrimesStream;

    async fn primes(
        &self,
        request: Request<PrimesRequest>,
    ) -> Result<Response<Self::PrimesStream>, Status> {
        let r = request.into_inner();
        if r.from > r.to {
            return Err(Status::invalid_argument(format!(
                "from ({}) is above to ({})",
                r.from, r.to
            )));
        }
        let max_range = self.limits.max_range;
        // Checked before streaming starts, so the caller gets a status, not a cut stream.
        if r.to - r.from >= max_range {
            return Err(status(CalcError::RangeTooLarge {
                width: r.to - r.from + 1,
                max: max_range,
            }));
        }
        let (tx, rx) = mpsc::channel::<Result<PrimesChunk, Status>>(4);
        tokio::task::spawn_blocking(move || {
            let cancelled = || tx.is_closed();
            let mut sink = |chunk: &[u64]| {
                tx.blocking_send(Ok(PrimesChunk {
                    primes: chunk.to_vec(),
                }))
                .is_ok()
            };
            if let Err(e) = primes::primes_in_range(r.from, r.to, max_range, &cancelled, &mut sink)
                && !matches!(e, CalcError::Cancelled)
            {
                let _ = tx.blocking_send(Err(status(e)));
            }
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
