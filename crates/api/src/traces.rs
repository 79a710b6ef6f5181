//! `GET /api/v1/traces/{trace_id}`: every span of a trace, as rows.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use spanflow_model::{metric_names, TraceId};
use spanflow_store::{SpanStore, StoreError};

use crate::json::span_json;

pub(crate) async fn trace_by_id(
    State(store): State<Arc<dyn SpanStore>>,
    Path(trace_id): Path<String>,
) -> Response {
    let response = match parse_trace_id(&trace_id) {
        Err(message) => error(StatusCode::BAD_REQUEST, &message),
        Ok(trace_id) => match store.trace(trace_id).await {
            Ok(spans) if spans.is_empty() => error(
                StatusCode::NOT_FOUND,
                &format!("trace {trace_id} not found"),
            ),
            Ok(spans) => Json(json!({
                "trace_id": trace_id.to_hex(),
                "spans": spans.iter().map(span_json).collect::<Vec<_>>(),
            }))
            .into_response(),
            Err(store_error) => store_failure(store_error),
        },
    };
    metrics::counter!(metric_names::API_REQUESTS, "route" => "trace_by_id", "status" => response.status().as_str().to_owned()).increment(1);
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

pub(crate) fn store_failure(store_error: StoreError) -> Response {
    tracing::warn!(error = %store_error, "store read failed");
    let status = StatusCode::from_u16(store_error.kind.http_status())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error(status, &store_error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use spanflow_store::{conformance, MemoryStore};
    use tower::ServiceExt;

    async fn get(store: Arc<dyn SpanStore>, uri: &str) -> (StatusCode, serde_json::Value) {
        let response = crate::api_router(store)
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn a_trace_is_returned_with_its_spans_named_as_columns() {
        let store = Arc::new(MemoryStore::new(100));
        let row = conformance::full_row();
        store.write(vec![row.clone()]).await.unwrap();
        let (status, body) = get(store, &format!("/api/v1/traces/{}", row.trace_id)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["trace_id"], row.trace_id.to_hex());
        let span = &body["spans"][0];
        assert_eq!(span["span_id"], row.span_id.to_hex());
        assert_eq!(span["observation_point"], "c-app");
        assert_eq!(span["l7_protocol"], 61);
        assert_eq!(span["l7_protocol_str"], "postgresql");
        assert_eq!(span["ip_0"], "10.1.2.3");
        assert_eq!(span["ip_1"], "fd00::7");
        assert_eq!(span["attributes"]["rows"], -3);
        assert_eq!(span["attributes"]["cached"], false);
        assert_eq!(span["attributes"]["tags"], json!(["a", 2]));
        assert_eq!(span["k8s_pod_name"], "checkout-7d9f8-abcde");
    }

    #[tokio::test]
    async fn unknown_and_malformed_ids_get_json_errors() {
        let store: Arc<dyn SpanStore> = Arc::new(MemoryStore::new(100));
        let (status, body) = get(
            store.clone(),
            &format!("/api/v1/traces/{}", "0".repeat(31) + "1"),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body["error"].as_str().unwrap().contains("not found"));
        let (status, body) = get(store, "/api/v1/traces/xyz").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"].as_str().unwrap().contains("invalid trace id"));
    }

    #[test]
    fn short_trace_ids_are_zero_padded() {
        assert_eq!(
            parse_trace_id("00f067aa0ba902b7").unwrap().to_hex(),
            "000000000000000000f067aa0ba902b7"
        );
    }
}
