//! `spanflow sink`: a server that accepts and counts, and does nothing else.
//!
//! It answers an agent's batches (`POST /ingest/v1/batch`) with 200 once it has decompressed
//! and decoded them, counting their spans, so an agent can be measured without a server's cost
//! behind it. Any other POST is read to its end and answered 200 with an empty body: an empty
//! HTTP handler, the ceiling of the HTTP stack itself. `GET /metrics` gives the counts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use spanflow_transport::{AgentBatch, INGEST_PATH};

/// The largest batch the sink decompresses, as a server would refuse more.
const MAX_BATCH_BYTES: usize = 256 << 20;

#[derive(Default)]
struct Counts {
    batches: AtomicU64,
    spans: AtomicU64,
    rejected: AtomicU64,
    other_requests: AtomicU64,
    other_bytes: AtomicU64,
}

pub fn router() -> Router {
    let counts = Arc::new(Counts::default());
    Router::new()
        .route(INGEST_PATH, post(batch))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(other)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BATCH_BYTES))
        .with_state(counts)
}

async fn batch(State(counts): State<Arc<Counts>>, body: Bytes) -> (StatusCode, String) {
    match AgentBatch::decode_body(body, MAX_BATCH_BYTES) {
        Ok(batch) => {
            counts.batches.fetch_add(1, Ordering::Relaxed);
            counts.spans.fetch_add(batch.n_spans(), Ordering::Relaxed);
            (StatusCode::OK, String::new())
        }
        Err(error) => {
            counts.rejected.fetch_add(1, Ordering::Relaxed);
            (StatusCode::BAD_REQUEST, format!("{error}\n"))
        }
    }
}

async fn other(State(counts): State<Arc<Counts>>, body: Bytes) -> StatusCode {
    counts.other_requests.fetch_add(1, Ordering::Relaxed);
    counts
        .other_bytes
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    StatusCode::OK
}

async fn metrics(State(counts): State<Arc<Counts>>) -> String {
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    format!(
        "# TYPE spanflow_sink_batches_total counter\n\
         spanflow_sink_batches_total {}\n\
         # TYPE spanflow_sink_spans_total counter\n\
         spanflow_sink_spans_total {}\n\
         # TYPE spanflow_sink_batches_rejected_total counter\n\
         spanflow_sink_batches_rejected_total {}\n\
         # TYPE spanflow_sink_other_requests_total counter\n\
         spanflow_sink_other_requests_total {}\n\
         # TYPE spanflow_sink_other_bytes_total counter\n\
         spanflow_sink_other_bytes_total {}\n",
        load(&counts.batches),
        load(&counts.spans),
        load(&counts.rejected),
        load(&counts.other_requests),
        load(&counts.other_bytes),
    )
}
