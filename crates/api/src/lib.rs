//! spanflow's query API on port 20416: axum routers over a [`SpanStore`].
//!
//! - `/api/v1/...`: spanflow's own JSON API (`native`).
//! - `/jaeger/api/...`: Jaeger's query API, v1 and api_v3 (`jaeger`).
//! - `POST /v1/query/`: DeepFlow's querier SQL API (`deepflow`).
//! - `/tempo/api/...`: Tempo's HTTP API with a TraceQL subset (`tempo`, `traceql`).
//!
//! Invariant: handlers parse HTTP and print JSON; what a query means lives in the store layer.

#![recursion_limit = "256"]

mod deepflow;
mod jaeger;
mod json;
mod native;
pub mod otlp_json;
pub mod otlp_proto;
pub mod params;
mod search;
mod tempo;
pub mod traceql;
pub mod tree;

use std::sync::Arc;

use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use spanflow_model::{metric_names, TraceId};
use spanflow_store::sql::SqlLimits;
use spanflow_store::{SpanStore, StoreError};

pub use json::span_json;
pub use native::trace_json;

/// Limits on what one query may ask of the store.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Spans a trace view returns at most; a bigger trace is cut to its upper levels and
    /// marked `truncated`.
    pub max_trace_spans: usize,
    /// Traces a search returns at most.
    pub max_search_traces: usize,
    /// Spans a trace search reads at most to find its traces.
    pub max_inspected_spans: usize,
    /// Rows, time and memory one SQL query may take.
    pub sql: SqlLimits,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_trace_spans: 50_000,
            max_search_traces: 1_000,
            max_inspected_spans: 50_000,
            sql: SqlLimits::default(),
        }
    }
}

pub(crate) struct Api {
    pub store: Arc<dyn SpanStore>,
    pub config: ApiConfig,
}

/// Every query route.
pub fn api_router(store: Arc<dyn SpanStore>, config: ApiConfig) -> Router {
    let api = Arc::new(Api { store, config });
    Router::new()
        .route("/api/v1/traces", get(native::search))
        .route("/api/v1/traces/{trace_id}", get(native::trace))
        .route("/api/v1/services", get(native::services))
        .route(
            "/api/v1/services/{service}/operations",
            get(native::operations),
        )
        .route("/api/v1/service-map", get(native::service_map))
        .route("/api/v1/red", get(native::red))
        .merge(jaeger::router())
        .merge(tempo::router())
        .merge(deepflow::router())
        .with_state(api)
        .layer(axum::middleware::from_fn(count_requests))
}

/// Counts every request by its route and answer.
async fn count_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    metrics::counter!(
        metric_names::API_REQUESTS,
        "route" => route,
        "status" => response.status().as_str().to_owned()
    )
    .increment(1);
    response
}

/// Accepts 32 hex digits, or 16 (the short form Jaeger prints when the high half is zero).
pub(crate) fn parse_trace_id(text: &str) -> Result<TraceId, String> {
    let padded;
    let text = if text.len() == 16 {
        padded = format!("{:0>32}", text);
        &padded
    } else {
        text
    };
    text.parse::<TraceId>()
        .map_err(|cause| format!("invalid trace id {text:?}: {cause} (want 32 hexadecimal digits)"))
}

pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// The HTTP status a failed store call answers with, whichever dialect answers it. Failures
/// of the store are logged; a caller's bad query is only the caller's to read.
pub(crate) fn store_status(store_error: &StoreError) -> StatusCode {
    let status = StatusCode::from_u16(store_error.kind.http_status())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error() {
        tracing::warn!(error = %store_error, "store read failed");
    } else {
        tracing::debug!(error = %store_error, "query refused");
    }
    status
}

pub(crate) fn store_failure(store_error: StoreError) -> Response {
    error(store_status(&store_error), &store_error.to_string())
}
