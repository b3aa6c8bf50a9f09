//! The gRPC service `quintet.kv.v1.KeyValue`, and the one place where kv
//! errors become gRPC statuses ([`status`]).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::domain::{KeyPrefix, KvKey, PageLimit};
use crate::engine::vault::{KvError, Vault};
use crate::proto::v1::key_value_server::{KeyValue, KeyValueServer};
use crate::proto::v1::{
    DeleteRequest, DeleteResponse, Entry, GetRequest, GetResponse, ListRequest, ListResponse,
    SetRequest, SetResponse,
};

/// Room for the protobuf framing around a value of the largest size.
const MESSAGE_OVERHEAD: usize = 64 * 1024;

/// The gRPC status of each kv error.
pub fn status(error: &KvError) -> Status {
    let message = error.to_string();
    match error {
        KvError::InvalidKey(_) => Status::invalid_argument(message),
        KvError::SeedLayoutUnsupported => Status::failed_precondition(message),
        KvError::NotFound(_) => Status::not_found(message),
        KvError::TooLarge { .. } => Status::resource_exhausted(message),
        KvError::Store(_) | KvError::Provider(_) | KvError::Seal(_) => {
            tracing::error!(error = %platform::backend::chain(error), "kv rpc failed");
            Status::unavailable(super::http::UNAVAILABLE)
        }
        KvError::Integrity { .. } => {
            metrics::counter!(crate::metrics::CORRUPT_RECORDS).increment(1);
            tracing::error!(error = %message, "kv rpc failed");
            Status::data_loss(format!("{message}; {}", platform::integrity::VERIFY_HINT))
        }
    }
}

fn key(raw: String) -> Result<KvKey, Status> {
    KvKey::new(raw).map_err(|e| Status::invalid_argument(e.to_string()))
}

/// kv's gRPC service (`quintet.kv.v1.KeyValue`) over the vault.
#[derive(Clone)]
pub struct KvGrpc {
    vault: Arc<Vault>,
}

/// The service, with message limits sized to the value limit (tonic's
/// default of 4 MiB would refuse the largest values).
pub fn server(vault: Arc<Vault>) -> ExhaustedOverLimit<KeyValueServer<KvGrpc>> {
    let limit = vault.max_value_bytes().saturating_add(MESSAGE_OVERHEAD);
    ExhaustedOverLimit(
        KeyValueServer::new(KvGrpc { vault })
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
    )
}

/// tonic refuses a request message over its decoding limit with
/// `OUT_OF_RANGE` before kv sees it; kv answers a value over the limit with
/// `RESOURCE_EXHAUSTED` (as [`status`] does for one just over it), so this
/// wrapper gives the larger ones the same code. kv itself never answers
/// `OUT_OF_RANGE`, so the code names only that refusal here.
#[derive(Clone)]
pub struct ExhaustedOverLimit<S>(S);

impl<S: tonic::server::NamedService> tonic::server::NamedService for ExhaustedOverLimit<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B, R> tonic::codegen::Service<http::Request<B>> for ExhaustedOverLimit<S>
where
    S: tonic::codegen::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future =
        futures_util::future::MapOk<S::Future, fn(http::Response<R>) -> http::Response<R>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        use futures_util::TryFutureExt;
        self.0.call(request).map_ok(out_of_range_to_exhausted::<R>)
    }
}

/// A trailers-only answer (the one tonic gives a refused request) carries
/// its status in the headers.
fn out_of_range_to_exhausted<R>(mut response: http::Response<R>) -> http::Response<R> {
    let headers = response.headers_mut();
    if headers
        .get("grpc-status")
        .is_some_and(|code| code.as_bytes() == b"11")
    {
        headers.insert(
            "grpc-status",
            http::HeaderValue::from_static("8"), // RESOURCE_EXHAUSTED
        );
    }
    response
}

#[tonic::async_trait]
impl KeyValue for KvGrpc {
    async fn set(&self, request: Request<SetRequest>) -> Result<Response<SetResponse>, Status> {
        let SetRequest { key: raw, value } = request.into_inner();
        self.vault
            .set(&key(raw)?, &value)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(SetResponse {}))
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let value = self
            .vault
            .get(&key(request.into_inner().key)?)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(GetResponse { value }))
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        self.vault
            .delete(&key(request.into_inner().key)?)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(DeleteResponse {}))
    }

    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let ListRequest {
            prefix,
            cursor,
            limit,
        } = request.into_inner();
        let prefix =
            KeyPrefix::new(prefix).map_err(|e| Status::invalid_argument(format!("prefix: {e}")))?;
        let after = if cursor.is_empty() {
            None
        } else {
            Some(KvKey::new(cursor).map_err(|e| Status::invalid_argument(format!("cursor: {e}")))?)
        };
        let limit = match limit {
            0 => PageLimit::parse(None),
            n => PageLimit::parse(Some(&n.to_string())),
        }
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let page = self
            .vault
            .list(&prefix, after.as_ref(), limit)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(ListResponse {
            entries: page
                .entries
                .into_iter()
                .map(|e| Entry {
                    key: e.key.into_string(),
                    size: e.size,
                })
                .collect(),
            next_cursor: page.next.map(KvKey::into_string).unwrap_or_default(),
        }))
    }
}
