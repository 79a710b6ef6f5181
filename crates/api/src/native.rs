//! spanflow's own JSON API under `/api/v1`: a trace as a tree, trace search with summaries,
//! services and their operations.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use spanflow_model::{ResponseStatus, SpanRow};
use spanflow_store::analytics::{Edge, MapBy, RedQuery};
use spanflow_store::{AttributeFilter, PlaceFilter, SpanQuery, TimeRange};

use crate::json::{own_side, place_of, span_json};
use crate::params::{now_us, param, parse_go_duration_us, parse_limit, parse_time_us, BadParam};
use crate::search::{traces_matching, Summary};
use crate::tree::{is_error, Tree};
use crate::{error, parse_trace_id, store_failure, Api};

type Params = Query<Vec<(String, String)>>;

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

/// The native search's filters on where a span itself ran (its own end of the call): the
/// parameter, the place column it reads, and the resource attribute that holds the same name,
/// through which the store can narrow the search first.
const OWN_PLACE_PARAMS: [(&str, &str, Option<&str>); 4] = [
    ("namespace", "pod_ns", Some("k8s.namespace.name")),
    ("workload", "pod_group", None),
    ("pod", "pod", Some("k8s.pod.name")),
    ("node", "pod_node", Some("k8s.node.name")),
];

/// A native search: what the store is asked, and what is checked on each span it returns.
struct NativeSearch {
    query: SpanQuery,
    /// `Some(true)`: only failed spans; `Some(false)`: only spans that did not fail.
    failed: Option<bool>,
    /// Place columns the span's own end must have, with their values.
    own_place: Vec<(&'static str, String)>,
}

impl NativeSearch {
    fn keep(&self, row: &SpanRow) -> bool {
        self.failed.is_none_or(|failed| is_error(row) == failed)
            && self.own_place.iter().all(|(column, value)| {
                place_of(row, own_side(row)).text(column) == Some(value.as_str())
            })
    }
}

/// The filters of a native search.
fn span_query(params: &[(String, String)]) -> Result<NativeSearch, BadParam> {
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
        } else if value.is_empty() {
            continue;
        } else if let Some(place) = PlaceFilter::new(key, value.clone()) {
            query.places.push(place);
        }
    }
    let mut own_place = Vec::new();
    for (name, column, attribute) in OWN_PLACE_PARAMS {
        let Some(value) = param(params, name) else {
            continue;
        };
        // What the server learnt of a span's own end is in its resource attributes too.
        if let Some(key) = attribute {
            query.attributes.push(AttributeFilter {
                key: key.to_string(),
                value: value.to_string(),
            });
        }
        own_place.push((column, value.to_string()));
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
    Ok(NativeSearch {
        query,
        failed,
        own_place,
    })
}

/// `GET /api/v1/traces?service=&operation=&attr.<key>=<value>&<place column>=<value>
/// &namespace=&workload=&pod=&node=&min_duration=&max_duration=&status=&start=&end=&limit=`:
/// summaries of the newest traces with a matching span.
///
/// A place column (`pod_0`, `pod_ns_1`, `pod_group_0`, `service_1`, `auto_service_1`, ...)
/// filters on one end of the call: `_0` the client end, `_1` the server end. `namespace`,
/// `workload`, `pod` and `node` filter on the end the span itself ran on (the client end of a
/// client or producer span, the server end of any other). Other parameters are ignored.
pub(crate) async fn search(State(api): State<Arc<Api>>, Query(params): Params) -> Response {
    let parsed = span_query(&params).and_then(|search| {
        let limit = parse_limit(
            param(&params, "limit"),
            20,
            api.config.max_search_traces,
            "limit",
        )?;
        Ok((search, limit))
    });
    let (search, limit) = match parsed {
        Ok(parsed) => parsed,
        Err(bad) => return bad_request(bad),
    };
    let keep = |row: &SpanRow| search.keep(row);
    match traces_matching(api.store.as_ref(), &api.config, &search.query, &keep, limit).await {
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
                    json!({ "name": operation.name, "span_kind": operation.span_kind.as_str() })
                })
                .collect();
            Json(json!({ "service": service, "operations": operations })).into_response()
        }
        Err(store_error) => store_failure(store_error),
    }
}

fn edge_json(edge: &Edge) -> Value {
    json!({
        "caller": edge.caller,
        "callee": edge.callee,
        "callee_kind": edge.callee_kind.as_str(),
        "calls": edge.calls,
        "errors": edge.errors,
        "latency_p50": edge.p50_us,
        "latency_p95": edge.p95_us,
        "latency_p99": edge.p99_us,
    })
}

/// The window of an aggregate: `start` and `end`, the last hour when absent.
fn aggregate_range(params: &[(String, String)]) -> Result<TimeRange, BadParam> {
    let range = time_range(params)?;
    let end = range.end_us.unwrap_or_else(now_us);
    Ok(TimeRange::new(
        Some(range.start_us.unwrap_or(end - 3_600_000_000)),
        Some(end),
    ))
}

/// `GET /api/v1/service-map?start=&end=&by=`: nodes and the calls between them. `by=service`
/// (the default) makes a node of each `service.name`; `by=workload` of where each end ran (its
/// Kubernetes service, else its workload, else its host or address; the service name where
/// nothing is known).
pub(crate) async fn service_map(State(api): State<Arc<Api>>, Query(params): Params) -> Response {
    let parsed = aggregate_range(&params).and_then(|range| {
        let by = match param(&params, "by") {
            None => MapBy::Service,
            Some(text) => MapBy::parse(text).ok_or_else(|| {
                BadParam(format!("invalid by {text:?}: want service or workload"))
            })?,
        };
        Ok((range, by))
    });
    let (range, by) = match parsed {
        Ok(parsed) => parsed,
        Err(bad) => return bad_request(bad),
    };
    match api.store.service_map(range, by).await {
        Ok(edges) => {
            let mut nodes: BTreeMap<&str, &str> = BTreeMap::new();
            for edge in &edges {
                nodes.entry(&edge.caller).or_insert("service");
                nodes.insert(&edge.callee, edge.callee_kind.as_str());
            }
            let nodes: Vec<Value> = nodes
                .into_iter()
                .map(|(name, kind)| json!({ "name": name, "kind": kind }))
                .collect();
            Json(json!({
                "start": range.start_us,
                "end": range.end_us,
                "by": by.as_str(),
                "nodes": nodes,
                "edges": edges.iter().map(edge_json).collect::<Vec<_>>(),
            }))
            .into_response()
        }
        Err(store_error) => store_failure(store_error),
    }
}

/// Buckets a RED series may have at most.
const MAX_RED_BUCKETS: i64 = 10_000;

/// `GET /api/v1/red?service=&group_by=operation&start=&end=&step=`: calls, errors and latency
/// percentiles of a service's entry spans per step.
pub(crate) async fn red(State(api): State<Arc<Api>>, Query(params): Params) -> Response {
    let parsed = (|| {
        let service = param(&params, "service")
            .ok_or_else(|| BadParam("service is required".into()))?
            .to_string();
        let range = aggregate_range(&params)?;
        let span = range.end_us.unwrap_or_default() - range.start_us.unwrap_or_default();
        let step_us = match param(&params, "step") {
            Some(text) => match text.parse::<i64>() {
                Ok(seconds) => seconds.saturating_mul(1_000_000),
                Err(_) => parse_go_duration_us(text)? as i64,
            },
            // About 60 points.
            None => (span / 60).max(1_000_000),
        };
        if step_us <= 0 {
            return Err(BadParam("step must be positive".into()));
        }
        if span / step_us > MAX_RED_BUCKETS {
            return Err(BadParam(format!(
                "the range holds more than {MAX_RED_BUCKETS} steps; widen the step"
            )));
        }
        let by_operation = match param(&params, "group_by") {
            None | Some("service") => false,
            Some("operation") => true,
            Some(other) => {
                return Err(BadParam(format!(
                    "invalid group_by {other:?}: want operation or service"
                )))
            }
        };
        Ok(RedQuery {
            service,
            range,
            step_us,
            by_operation,
        })
    })();
    let query = match parsed {
        Ok(query) => query,
        Err(bad) => return bad_request(bad),
    };
    match api.store.red(&query).await {
        Ok(points) => {
            let step_seconds = query.step_us as f64 / 1e6;
            let points: Vec<Value> = points
                .iter()
                .map(|point| {
                    json!({
                        "time": point.time_us,
                        "operation": point.operation,
                        "calls": point.calls,
                        "errors": point.errors,
                        "rate": point.calls as f64 / step_seconds,
                        "error_rate": if point.calls == 0 { 0.0 } else { point.errors as f64 / point.calls as f64 },
                        "latency_p50": point.p50_us,
                        "latency_p95": point.p95_us,
                        "latency_p99": point.p99_us,
                    })
                })
                .collect();
            Json(json!({
                "service": query.service,
                "start": query.range.start_us,
                "end": query.range.end_us,
                "step": query.step_us,
                "points": points,
            }))
            .into_response()
        }
        Err(store_error) => store_failure(store_error),
    }
}
