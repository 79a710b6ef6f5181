//! OTLP/HTTP receivers: `POST /api/v1/otel/trace` (DeepFlow's path) and `POST /v1/traces`,
//! protobuf or JSON by `Content-Type`, gzip, zstd or no compression, with the status codes and
//! bodies the OTLP specification gives.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use http_body_util::BodyExt;
use prost::Message;
use spanflow_model::metric_names;
use spanflow_otlp::decompress::{decompress, DecompressError, Encoding};
use spanflow_otlp::status::Status;
use spanflow_otlp::{json, ExportTracePartialSuccess, ExportTraceServiceResponse};

use crate::receive::{
    cpu_work, Accepted, ContentKind, ReceiveError, ReceiveErrorKind, Received, Receiver, Sender,
    RETRY_AFTER_SECONDS,
};

/// DeepFlow's OTLP path, which the seed's collector config posts to.
pub const DEEPFLOW_TRACES_PATH: &str = "/api/v1/otel/trace";
/// The standard OTLP/HTTP traces path.
pub const OTLP_TRACES_PATH: &str = "/v1/traces";
/// Where a collector posts when `endpoint` was set to DeepFlow's path instead of
/// `traces_endpoint` (the exporter appends `/v1/traces`); DeepFlow answers 404 there.
pub const MISTAKEN_TRACES_PATH: &str = "/api/v1/otel/trace/v1/traces";

/// Routes of the agent's main port (38086): DeepFlow's path, the standard one, and the path a
/// misconfigured collector ends up posting to.
pub fn deepflow_router(receiver: Arc<Receiver>) -> Router {
    Router::new()
        .route(DEEPFLOW_TRACES_PATH, post(export))
        .route(OTLP_TRACES_PATH, post(export))
        .route(MISTAKEN_TRACES_PATH, post(export))
        .with_state(receiver)
}

/// Routes of the standard OTLP/HTTP port (4318).
pub fn otlp_router(receiver: Arc<Receiver>) -> Router {
    Router::new()
        .route(OTLP_TRACES_PATH, post(export))
        .with_state(receiver)
}

async fn export(
    State(receiver): State<Arc<Receiver>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let Some(kind) = ContentKind::from_content_type(content_type) else {
        count("unsupported_media_type");
        return plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported content type {content_type:?}; send application/x-protobuf or application/json"
            ),
        );
    };
    let content_encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|value| value.to_str().unwrap_or("?"));
    let Some(encoding) = Encoding::from_header(content_encoding) else {
        count("unsupported_encoding");
        return failure(
            kind,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            tonic::Code::InvalidArgument as i32,
            &format!(
                "unsupported content encoding {:?}; send gzip, zstd or none",
                content_encoding.unwrap_or_default()
            ),
        );
    };
    let sender = match Sender::new(
        peer.ip(),
        headers
            .get(spanflow_model::tenant::ORG_HEADER)
            .map(|value| value.as_bytes()),
    ) {
        Ok(sender) => sender,
        Err(error) => {
            count(error.outcome());
            return error_response(kind, &error);
        }
    };
    let max_body_bytes = receiver.max_body_bytes();
    let read = http_body_util::Limited::new(body, max_body_bytes).collect();
    let Ok(read) = tokio::time::timeout(receiver.body_timeout(), read).await else {
        // A client that never finishes its body must not hold a connection and a buffer.
        count("body_timeout");
        return failure(
            kind,
            StatusCode::REQUEST_TIMEOUT,
            tonic::Code::DeadlineExceeded as i32,
            &format!(
                "the request body did not arrive within {} s",
                receiver.body_timeout().as_secs_f64()
            ),
        );
    };
    let compressed = match read {
        Ok(collected) => collected.to_bytes(),
        Err(error)
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            let error = too_large(max_body_bytes);
            count(error.outcome());
            return error_response(kind, &error);
        }
        Err(error) => {
            count("read_error");
            return failure(
                kind,
                StatusCode::BAD_REQUEST,
                tonic::Code::InvalidArgument as i32,
                &format!("reading the request body: {error}"),
            );
        }
    };
    metrics::counter!(metric_names::AGENT_RECEIVED_BYTES).increment(compressed.len() as u64);
    // The queue holds bodies compressed: a compressed one as it came, an uncompressed one
    // after zstd has made it about a fifth of its size. Checking room for that much first, an
    // agent under overload does not decompress and walk bodies only to refuse them.
    let expected_bytes = match encoding {
        Encoding::Identity => compressed.len() / 4,
        _ => compressed.len(),
    };
    if let Err(error) = receiver.check_room(expected_bytes) {
        count(error.outcome());
        return error_response(kind, &error);
    }
    let received = match encoding {
        Encoding::Identity => None,
        Encoding::Gzip => Some(spanflow_transport::Encoding::Gzip),
        Encoding::Zstd => Some(spanflow_transport::Encoding::Zstd),
    }
    .map(|encoding| Received {
        bytes: compressed.clone(),
        encoding,
    });
    let outcome = cpu_work(compressed.len(), move || {
        let body =
            decompress(compressed, encoding, max_body_bytes).map_err(|error| match error {
                DecompressError::TooLarge { .. } => too_large(max_body_bytes),
                corrupt => ReceiveError::new(ReceiveErrorKind::BadRequest, corrupt.to_string()),
            })?;
        receiver.accept(kind, body, &sender, received)
    })
    .await;
    match outcome {
        Ok(Ok(accepted)) => {
            count("ok");
            success(kind, &accepted)
        }
        Ok(Err(error)) => {
            count(error.outcome());
            if error.kind == ReceiveErrorKind::BadRequest {
                tracing::debug!(%peer, error = error.message, "request refused");
            }
            error_response(kind, &error)
        }
        Err(join_error) => {
            count("internal_error");
            tracing::error!(%join_error, "request handling panicked");
            failure(
                kind,
                StatusCode::INTERNAL_SERVER_ERROR,
                tonic::Code::Internal as i32,
                "internal error",
            )
        }
    }
}

fn too_large(max_body_bytes: usize) -> ReceiveError {
    ReceiveError::new(
        ReceiveErrorKind::TooLarge,
        format!("request body is larger than {max_body_bytes} bytes after decompression"),
    )
}

fn count(outcome: &'static str) {
    metrics::counter!(metric_names::AGENT_REQUESTS, "transport" => "http", "outcome" => outcome)
        .increment(1);
}

/// 200 with an `ExportTraceServiceResponse` in the request's encoding; `partial_success` only
/// when something was rejected.
fn success(kind: ContentKind, accepted: &Accepted) -> Response {
    let response = ExportTraceServiceResponse {
        partial_success: accepted.rejected_message.as_ref().map(|message| {
            ExportTracePartialSuccess {
                rejected_spans: accepted.n_rejected as i64,
                error_message: message.clone(),
            }
        }),
    };
    let body = match kind {
        ContentKind::Protobuf => response.encode_to_vec(),
        ContentKind::Json => json::encode_response(&response),
    };
    with_content_type(StatusCode::OK, kind, body)
}

fn error_response(kind: ContentKind, error: &ReceiveError) -> Response {
    let mut response = failure(kind, error.http_status(), error.rpc_code(), &error.message);
    if error.kind == ReceiveErrorKind::Unavailable {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    }
    response
}

/// An error with a `google.rpc.Status` body in the request's encoding.
fn failure(kind: ContentKind, status: StatusCode, code: i32, message: &str) -> Response {
    let rpc_status = Status {
        code,
        message: message.to_string(),
    };
    let body = match kind {
        ContentKind::Protobuf => rpc_status.encode_to_vec(),
        ContentKind::Json => json::encode_status(&rpc_status),
    };
    with_content_type(status, kind, body)
}

fn with_content_type(status: StatusCode, kind: ContentKind, body: Vec<u8>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(kind.content_type()),
        )],
        body,
    )
        .into_response()
}

fn plain(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}
