//! spanflow's own JSON API under `/api/v1`: a trace as a tree, trace search with summaries,
//! services and their operations.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use spanflow_model::{ResponseStatus, SpanRow};
use spanflow_store::{AttributeFilter, SpanQuery, TimeRange};

use crate::json::span_json;
use crate::params::{parse_go_duration_us, parse_limit, parse_time_us, BadParam};
use crate::search::{traces_matching, Summary};
use crate::tree::{is_error, Tree};
use crate::{error, parse_trace_id, store_failure, Api};

type Params = Query<Vec<(String, String)>>;

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
        .filter(|value| !value.is_empty())
}

fn bad_request(bad: BadParam) -> Response {
    error(StatusCode::BAD_REQUEST, &bad.0)
}

/// `start` and `end`: RFC 3339, or integers in µs since the epoch.
fn time_range(params: &[(String, String)]) -> Result<TimeRange, BadParam> {
    let time = |name: &str| {
        param(params, name)
            .map(|text| parse_time_us(text, 1, name))
            .transpose()
    };
    let range = TimeRange::new(time("start")?, time("end")?);
    if let (Some(start), Some(end)) = (range.start_us, range.end_us) {
        if start > end {
            return Err(BadParam("start is after end".into()));
        }
    }
    Ok(range)
}

/// `GET /api/v1/traces/{trace_id}?limit=`: the trace's spans in waterfall order, each with its
/// depth, self time, clock-skew shift and critical-path mark.
pub(crate) async fn trace(
    State(api): State<Arc<Api>>,
    Path(trace_id): Path<String>,
    Query(params): Params,
) -> Response {
    let trace_id = match parse_trace_id(&trace_id) {
        Ok(trace_id) => trace_id,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let limit = match parse_limit(
        param(&params, "limit"),
        api.config.max_trace_spans,
        api.config.max_trace_spans,
        "limit",
    ) {
        Ok(limit) => limit,
        Err(bad) => return bad_request(bad),
    };
    let spans = match api.store.trace(trace_id).await {
        Ok(spans) if spans.is_empty() => {
            return error(
                StatusCode::NOT_FOUND,
                &format!("trace {trace_id} not found"),
            )
        }
        Ok(spans) => spans,
        Err(store_error) => return store_failure(store_error),
    };
    Json(trace_json(&spans, limit)).into_response()
}

/// A trace as the native API shows it, cut to the `limit` shallowest spans.
pub fn trace_json(spans: &[SpanRow], limit: usize) -> Value {
    let tree = Tree::build(spans);
    let kept = tree.keep_shallowest(limit);
    let summary = Summary::of(spans).map(|summary| summary_json(&summary));
    let json_spans: Vec<Value> = kept
        .iter()
        .map(|&index| {
            let node = &tree.nodes[index];
            let row = &spans[node.row];
            let mut span = span_json(row);
            let object = span.as_object_mut().expect("a row is an object");
            object.insert("depth".into(), json!(node.depth));
            object.insert("self_time".into(), json!(node.self_time));
            object.insert("adjusted_start_time".into(), json!(node.start));
            object.insert("clock_skew".into(), json!(node.skew));
            object.insert("on_critical_path".into(), json!(node.on_critical_path));
            object.insert("is_error".into(), json!(is_error(row)));
            object.insert("child_count".into(), json!(node.children.len()));
            object.insert("warnings".into(), json!(node.warnings));
            span
        })
        .collect();
    let critical_path: Vec<Value> = tree
        .critical_path
        .iter()
        .map(|section| {
            json!({
                "span_id": spans[section.row].span_id.to_hex(),
                "start_time": section.start,
                "end_time": section.end,
            })
        })
        .collect();
    let orphans = tree
        .roots
        .iter()
        .filter(|&&root| spans[root].parent_span_id.is_some())
        .count();
    json!({
        "trace_id": spans.first().map(|span| span.trace_id.to_hex()),
        "summary": summary,
        "spans": json_spans,
        "spans_returned": kept.len(),
        "truncated": kept.len() < spans.len(),
        "orphan_count": orphans,
        "critical_path": critical_path,
    })
}

pub(crate) fn summary_json(summary: &Summary) -> Value {
    json!({
        "trace_id": summary.trace_id.to_hex(),
        "root_service": summary.root_service,
        "root_operation": summary.root_operation,
        "start_time": summary.start,
        "end_time": summary.end,
        "duration": summary.duration_us(),
        "span_count": summary.span_count,
        "error_count": summary.error_count,
        "services": summary.services.iter().map(|(name, stats)| json!({
            "name": name,
            "span_count": stats.span_count,
            "error_count": stats.error_count,
        })).collect::<Vec<_>>(),
    })
}

/// The span filter of a native search and whether it wants only failed spans.
fn span_query(params: &[(String, String)]) -> Result<(SpanQuery, Option<bool>), BadParam> {
    let range = time_range(params)?;
    let duration = |name: &str| {
        param(params, name)
            .map(|text| match text.parse::<u64>() {
                Ok(micros) => Ok(micros),
                Err(_) => parse_go_duration_us(text),
            })
            .transpose()
    };
    let mut query = SpanQuery {
        service: param(params, "service").map(str::to_string),
        operation: param(params, "operation").map(str::to_string),
        min_duration_us: duration("min_duration")?,
        max_duration_us: duration("max_duration")?,
        start_time_min_us: range.start_us,
        start_time_max_us: range.end_us,
        ..SpanQuery::default()
    };
    if let (Some(min), Some(max)) = (query.min_duration_us, query.max_duration_us) {
        if min > max {
            return Err(BadParam("min_duration is more than max_duration".into()));
        }
    }
    for (key, value) in params {
        if let Some(attribute) = key.strip_prefix("attr.") {
            query.attributes.push(AttributeFilter {
                key: attribute.to_string(),
                value: value.clone(),
            });
        }
    }
    let mut failed = None;
    match param(params, "status") {
        None => {}
        Some("error") => failed = Some(true),
        Some("ok") => failed = Some(false),
        Some(other) => {
            query.response_status = Some(match other {
                "server_error" => ResponseStatus::ServerError,
                "client_error" => ResponseStatus::ClientError,
                "timeout" => ResponseStatus::Timeout,
                "unknown" => ResponseStatus::Unknown,
                _ => {
                    return Err(BadParam(format!(
                        "invalid status {other:?}: want error, ok, server_error, client_error, \
                         timeout or unknown"
                    )))
                }
            })
        }
    }
    Ok((query, failed))
}

/// `GET /api/v1/traces?service=&operation=&attr.<key>=<value>&min_duration=&max_duration=
/// &status=&start=&end=&limit=`: summaries of the newest traces with a matching span.
pub(crate) async fn search(State(api): State<Arc<Api>>, Query(params): Params) -> Response {
    let parsed = span_query(&params).and_then(|(query, failed)| {
        let limit = parse_limit(
            param(&params, "limit"),
            20,
            api.config.max_search_traces,
            "limit",
        )?;
        Ok((query, failed, limit))
    });
    let (query, failed, limit) = match parsed {
        Ok(parsed) => parsed,
        Err(bad) => return bad_request(bad),
    };
    let keep = move |row: &SpanRow| failed.is_none_or(|failed| is_error(row) == failed);
    match traces_matching(api.store.as_ref(), &api.config, &query, &keep, limit).await {
        Ok(found) => Json(json!({
            "traces": found
                .traces
                .iter()
                .filter_map(|spans| Summary::of(spans))
                .map(|summary| summary_json(&summary))
                .collect::<Vec<_>>(),
            "complete": found.complete,
            "spans_inspected": found.spans_inspected,
        }))
        .into_response(),
        Err(store_error) => store_failure(store_error),
    }
}

/// `GET /api/v1/services?start=&end=`.
pub(crate) async fn services(State(api): State<Arc<Api>>, Query(params): Params) -> Response {
    let range = match time_range(&params) {
        Ok(range) => range,
        Err(bad) => return bad_request(bad),
    };
    match api.store.services(range).await {
        Ok(services) => Json(json!({ "services": services })).into_response(),
        Err(store_error) => store_failure(store_error),
    }
}

/// `GET /api/v1/services/{service}/operations?start=&end=`.
pub(crate) async fn operations(
    State(api): State<Arc<Api>>,
    Path(service): Path<String>,
    Query(params): Params,
) -> Response {
    let range = match time_range(&params) {
        Ok(range) => range,
        Err(bad) => return bad_request(bad),
    };
    match api.store.operations(&service, range).await {
        Ok(operations) => {
            let operations: Vec<Value> = operations
                .iter()
                .map(|operation| {
                    let mut object = Map::new();
                    object.insert("name".into(), json!(operation.name));
                    object.insert("span_kind".into(), json!(operation.span_kind.as_str()));
                    Value::Object(object)
                })
                .collect();
            Json(json!({ "service": service, "operations": operations })).into_response()
        }
        Err(store_error) => store_failure(store_error),
    }
}
