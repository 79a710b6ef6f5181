//! spanflow's query API on port 20416: axum routers over a [`SpanStore`].
//!
//! Invariant: handlers parse HTTP and print JSON; what a query means lives in the store layer.

#![recursion_limit = "256"]

mod json;
mod traces;

use std::sync::Arc;

use axum::Router;
use spanflow_store::SpanStore;

pub use json::span_json;

/// Every query route, under `/api/v1`.
pub fn api_router(store: Arc<dyn SpanStore>) -> Router {
    Router::new()
        .route(
            "/api/v1/traces/{trace_id}",
            axum::routing::get(traces::trace_by_id),
        )
        .with_state(store)
}
