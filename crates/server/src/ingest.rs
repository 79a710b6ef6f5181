//! `POST /ingest/v1/batch`: decode -> map -> write -> acknowledge.

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use http_body_util::BodyExt;
use prost::Message;
use spanflow_model::{metric_names, SpanRow};
use spanflow_otlp::map::{map_request, Sender};
use spanflow_otlp::ExportTraceServiceRequest;
use spanflow_store::SpanStore;
use spanflow_transport::{AgentBatch, TransportError, INGEST_PATH};

#[derive(Clone, Debug)]
pub struct IngestConfig {
    /// Cap on a batch after decompression.
    pub max_batch_bytes: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_batch_bytes: 256 << 20,
        }
    }
}

struct Ingest {
    store: Arc<dyn SpanStore>,
    config: IngestConfig,
}

/// The router agents post batches to.
pub fn ingest_router(store: Arc<dyn SpanStore>, config: IngestConfig) -> Router {
    Router::new()
        .route(INGEST_PATH, post(receive_batch))
        .with_state(Arc::new(Ingest { store, config }))
}

/// What one batch came to.
#[derive(Debug, Default, PartialEq, Eq)]
struct Outcome {
    n_spans_stored: usize,
    n_spans_rejected: usize,
    n_payloads_rejected: usize,
}

async fn receive_batch(
    State(ingest): State<Arc<Ingest>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let compressed_cap = ingest.config.max_batch_bytes;
    let body = match http_body_util::Limited::new(body, compressed_cap)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return refuse(StatusCode::PAYLOAD_TOO_LARGE, "batch body over the cap");
            }
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!("reading batch body: {error}"),
            );
        }
    };
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_string();
    let max_batch_bytes = ingest.config.max_batch_bytes;
    let decoded = tokio::task::spawn_blocking(move || decode_batch(&body, max_batch_bytes)).await;
    let (rows, outcome) = match decoded {
        Ok(Ok(decoded)) => decoded,
        Ok(Err(error)) => {
            metrics::counter!(metric_names::SERVER_BATCHES, "outcome" => "malformed").increment(1);
            tracing::warn!(%error, agent, "batch refused");
            let status = match error {
                TransportError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::BAD_REQUEST,
            };
            return refuse(status, &error.to_string());
        }
        Err(join_error) => {
            tracing::error!(%join_error, "batch decoding panicked");
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, "batch decoding failed");
        }
    };
    if let Err(error) = ingest.store.write(rows).await {
        metrics::counter!(metric_names::SERVER_BATCHES, "outcome" => "store_error").increment(1);
        tracing::warn!(%error, kind = ?error.kind, "store write failed; the agent will resend");
        let status = StatusCode::from_u16(error.kind.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return refuse(status, &error.to_string());
    }
    metrics::counter!(metric_names::SERVER_BATCHES, "outcome" => "stored").increment(1);
    metrics::counter!(metric_names::SERVER_SPANS_STORED).increment(outcome.n_spans_stored as u64);
    if outcome.n_spans_rejected > 0 {
        metrics::counter!(metric_names::SERVER_SPANS_REJECTED)
            .increment(outcome.n_spans_rejected as u64);
    }
    if outcome.n_payloads_rejected > 0 {
        metrics::counter!(metric_names::SERVER_PAYLOADS_REJECTED)
            .increment(outcome.n_payloads_rejected as u64);
    }
    let body = serde_json::json!({
        "n_spans_stored": outcome.n_spans_stored,
        "n_spans_rejected": outcome.n_spans_rejected,
        "n_payloads_rejected": outcome.n_payloads_rejected,
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn refuse(status: StatusCode, message: &str) -> Response {
    let mut response =
        (status, axum::Json(serde_json::json!({ "error": message }))).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    response
}

/// Decodes a batch into rows. A payload that is not valid OTLP is skipped and counted (an agent
/// validates payloads before it accepts them, so this means a bug or a foreign sender); the
/// rest of the batch is kept.
fn decode_batch(
    body: &[u8],
    max_batch_bytes: usize,
) -> Result<(Vec<SpanRow>, Outcome), TransportError> {
    let batch = AgentBatch::decode_compressed(body, max_batch_bytes)?;
    let mut rows = Vec::with_capacity(batch.n_spans() as usize);
    let mut outcome = Outcome::default();
    for payload in &batch.payloads {
        let request = match ExportTraceServiceRequest::decode(payload.otlp.clone()) {
            Ok(request) => request,
            Err(error) => {
                outcome.n_payloads_rejected += 1;
                tracing::error!(%error, agent_id = batch.agent_id, "payload in batch is not valid OTLP; skipped");
                continue;
            }
        };
        let sender = Sender {
            peer_ip: payload.peer_ip.parse::<IpAddr>().ok(),
            agent_id: batch.agent_id.clone(),
        };
        let mapped = map_request(&request, &sender);
        outcome.n_spans_rejected += mapped.n_rejected;
        rows.extend(mapped.rows);
    }
    outcome.n_spans_stored = rows.len();
    Ok((rows, outcome))
}
