//! Jaeger's query API under `/jaeger`: the v1 JSON endpoints Grafana's Jaeger data source and
//! older Jaeger UIs call, and api_v3, which the current Jaeger UI calls.
//!
//! Where a span ran is in its process tags (the resource attributes: `k8s.pod.name`, ...).
//! Where its peer ran is in its span tags, under DeepFlow's column names of the peer's end:
//! a client or producer span has the server end's `pod_1`, `pod_ns_1`, `pod_group_1`, ...,
//! any other span the client end's `pod_0`, `pod_ns_0`, ... The same names (either end) are
//! place filters in a search's tags: `tags={"pod_1":"db-0"}`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};
use spanflow_model::{AttrValue, Attribute, SpanKind, SpanRow, TraceId};
use spanflow_store::analytics::MapBy;
use spanflow_store::{AttributeFilter, PlaceFilter, SpanQuery, TimeRange};

use crate::json::{own_side, place_of};
use crate::otlp_json::{self, Style};
use crate::params::{
    now_us, param_any, parse_go_duration_us, parse_limit, parse_time_us, BadParam,
};
use crate::search::{read_traces, traces_matching};
use crate::tree::{is_error, Tree};
use crate::{parse_trace_id, store_status, Api};

type Params = Query<Vec<(String, String)>>;

/// Jaeger's search looks back this far when no start is given.
const DEFAULT_LOOKBACK_US: i64 = 2 * 24 * 3_600_000_000;

pub(crate) fn router() -> Router<Arc<Api>> {
    Router::new()
        .route("/jaeger/api/services", get(services))
        .route(
            "/jaeger/api/services/{service}/operations",
            get(service_operations),
        )
        .route("/jaeger/api/operations", get(operations))
        .route("/jaeger/api/traces", get(search))
        .route("/jaeger/api/traces/{trace_id}", get(trace))
        .route("/jaeger/api/dependencies", get(dependencies))
        .route("/jaeger/api/v3/services", get(v3_services))
        .route("/jaeger/api/v3/operations", get(v3_operations))
        .route("/jaeger/api/v3/traces", get(v3_search))
        .route("/jaeger/api/v3/traces/{trace_id}", get(v3_trace))
}

// ---------------------------------------------------------------------------------------------
// The v1 envelope.

fn data(data: Value, total: usize) -> Response {
    Json(json!({
        "data": data, "total": total, "limit": 0, "offset": 0, "errors": null
    }))
    .into_response()
}

fn v1_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({
            "data": null, "total": 0, "limit": 0, "offset": 0,
            "errors": [{ "code": status.as_u16(), "msg": message }]
        })),
    )
        .into_response()
}

fn v1_store_error(error: spanflow_store::StoreError) -> Response {
    v1_error(store_status(&error), &error.to_string())
}

async fn services(State(api): State<Arc<Api>>) -> Response {
    match api.store.services(TimeRange::ALL).await {
        Ok(services) => {
            let total = services.len();
            data(json!(services), total)
        }
        Err(error) => v1_store_error(error),
    }
}

async fn service_operations(State(api): State<Arc<Api>>, Path(service): Path<String>) -> Response {
    match api.store.operations(&service, TimeRange::ALL).await {
        Ok(operations) => {
            let mut names: Vec<String> = operations.into_iter().map(|op| op.name).collect();
            names.dedup();
            let total = names.len();
            data(json!(names), total)
        }
        Err(error) => v1_store_error(error),
    }
}

fn span_kind(text: &str) -> Result<SpanKind, BadParam> {
    Ok(match text {
        "server" => SpanKind::Server,
        "client" => SpanKind::Client,
        "producer" => SpanKind::Producer,
        "consumer" => SpanKind::Consumer,
        "internal" => SpanKind::Internal,
        "unspecified" => SpanKind::Unspecified,
        _ => {
            return Err(BadParam(format!(
                "invalid span kind {text:?}: want server, client, producer, consumer or internal"
            )))
        }
    })
}

/// The operations of a service, optionally of one kind, as `[{name, spanKind}]`.
async fn operation_list(
    api: &Api,
    params: &[(String, String)],
) -> Result<Vec<Value>, Result<BadParam, spanflow_store::StoreError>> {
    let service = param_any(params, &["service"])
        .ok_or_else(|| Ok(BadParam("parameter 'service' is required".into())))?;
    let kind = param_any(params, &["spanKind", "span_kind"])
        .map(span_kind)
        .transpose()
        .map_err(Ok)?;
    let operations = api
        .store
        .operations(service, TimeRange::ALL)
        .await
        .map_err(Err)?;
    Ok(operations
        .into_iter()
        .filter(|operation| kind.is_none_or(|kind| operation.span_kind == kind))
        .map(|operation| {
            let kind = match operation.span_kind {
                SpanKind::Unspecified => "",
                other => other.as_str(),
            };
            json!({ "name": operation.name, "spanKind": kind })
        })
        .collect())
}

async fn operations(State(api): State<Arc<Api>>, Query(params): Params) -> Response {
    match operation_list(&api, &params).await {
        Ok(operations) => {
            let total = operations.len();
            data(json!(operations), total)
        }
        Err(Ok(bad)) => v1_error(StatusCode::BAD_REQUEST, &bad.0),
        Err(Err(error)) => v1_store_error(error),
    }
}

// ---------------------------------------------------------------------------------------------
// Search.

/// Tags Jaeger derives from a span's fields rather than its attributes; a search on them is
/// checked against each span, not pushed to the store.
fn derived_tag(row: &SpanRow, key: &str) -> Option<String> {
    match key {
        "error" => Some(is_error(row).to_string()),
        "span.kind" => {
            (row.span_kind != SpanKind::Unspecified).then(|| row.span_kind.as_str().into())
        }
        "otel.status_code" => match row.status_code {
            1 => Some("OK".into()),
            2 => Some("ERROR".into()),
            _ => None,
        },
        "otel.status_description" => Some(row.status_message.clone()),
        "otel.scope.name" => Some(row.scope_name.clone()),
        "otel.scope.version" => Some(row.scope_version.clone()),
        "w3c.tracestate" => Some(row.trace_state.clone()),
        _ => None,
    }
}

const DERIVED_TAGS: [&str; 7] = [
    "error",
    "span.kind",
    "otel.status_code",
    "otel.status_description",
    "otel.scope.name",
    "otel.scope.version",
    "w3c.tracestate",
];

/// `tag=k:v` (repeatable) and `tags={"k":"v"}` (repeatable, what Grafana sends).
fn tag_filters(params: &[(String, String)]) -> Result<Vec<(String, String)>, BadParam> {
    let mut tags = Vec::new();
    for (key, value) in params {
        match key.as_str() {
            "tag" => {
                let (tag, tag_value) = value.split_once(':').ok_or_else(|| {
                    BadParam(format!(
                        "malformed 'tag' parameter {value:?}: want key:value"
                    ))
                })?;
                tags.push((tag.to_string(), tag_value.to_string()));
            }
            "tags" => {
                let map: serde_json::Map<String, Value> =
                    serde_json::from_str(value).map_err(|error| {
                        BadParam(format!(
                            "malformed 'tags' parameter: {error} (want a JSON object of strings)"
                        ))
                    })?;
                for (tag, tag_value) in map {
                    let text = match tag_value {
                        Value::String(text) => text,
                        Value::Number(_) | Value::Bool(_) => tag_value.to_string(),
                        _ => {
                            return Err(BadParam(format!(
                                "malformed 'tags' parameter: the value of {tag:?} is not a scalar"
                            )))
                        }
                    };
                    tags.push((tag, text));
                }
            }
            _ => {}
        }
    }
    Ok(tags)
}

/// A tag filter: on a place column when the key names one (`pod_1`), else on an attribute.
fn push_filter(query: &mut SpanQuery, key: String, value: String) {
    match PlaceFilter::new(&key, value.clone()) {
        Some(place) => query.places.push(place),
        None => query.attributes.push(AttributeFilter { key, value }),
    }
}

struct Search {
    query: SpanQuery,
    derived: Vec<(String, String)>,
    limit: usize,
}

impl Search {
    fn keep(&self, row: &SpanRow) -> bool {
        self.derived
            .iter()
            .all(|(key, value)| derived_tag(row, key).as_deref() == Some(value.as_str()))
    }
}

fn v1_search(params: &[(String, String)], max_limit: usize) -> Result<Search, BadParam> {
    let service = param_any(params, &["service"])
        .ok_or_else(|| BadParam("parameter 'service' is required".into()))?;
    let end = param_any(params, &["end"])
        .map(|text| parse_time_us(text, 1, "end"))
        .transpose()?
        .unwrap_or_else(now_us);
    let start = param_any(params, &["start"])
        .map(|text| parse_time_us(text, 1, "start"))
        .transpose()?
        .unwrap_or(end - DEFAULT_LOOKBACK_US);
    let duration = |name: &str| {
        param_any(params, &[name])
            .map(parse_go_duration_us)
            .transpose()
    };
    let (min, max) = (duration("minDuration")?, duration("maxDuration")?);
    if let (Some(min), Some(max)) = (min, max) {
        if max < min {
            return Err(BadParam(
                "'maxDuration' should be greater than 'minDuration'".into(),
            ));
        }
    }
    let mut query = SpanQuery {
        service: Some(service.to_string()),
        operation: param_any(params, &["operation"]).map(str::to_string),
        min_duration_us: min,
        max_duration_us: max,
        start_time_min_us: Some(start),
        start_time_max_us: Some(end),
        ..SpanQuery::default()
    };
    let mut derived = Vec::new();
    for (key, value) in tag_filters(params)? {
        if DERIVED_TAGS.contains(&key.as_str()) {
            derived.push((key, value));
        } else {
            push_filter(&mut query, key, value);
        }
    }
    let limit = parse_limit(param_any(params, &["limit"]), 100, max_limit, "limit")?;
    Ok(Search {
        query,
        derived,
        limit,
    })
}

async fn search(State(api): State<Arc<Api>>, Query(params): Params) -> Response {
    let raw = param_any(&params, &["raw"]) == Some("true");
    let ids: Vec<&str> = params
        .iter()
        .filter(|(key, _)| key == "traceID")
        .map(|(_, value)| value.as_str())
        .collect();
    if !ids.is_empty() {
        return traces_by_id(&api, &ids, raw).await;
    }
    let search = match v1_search(&params, api.config.max_search_traces) {
        Ok(search) => search,
        Err(bad) => return v1_error(StatusCode::BAD_REQUEST, &bad.0),
    };
    let keep = |row: &SpanRow| search.keep(row);
    match traces_matching(
        api.store.as_ref(),
        &api.config,
        &search.query,
        &keep,
        search.limit,
    )
    .await
    {
        Ok(found) => {
            let traces: Vec<Value> = found
                .traces
                .iter()
                .map(|spans| trace_json(spans, raw))
                .collect();
            let total = traces.len();
            data(json!(traces), total)
        }
        Err(error) => v1_store_error(error),
    }
}

async fn traces_by_id(api: &Api, ids: &[&str], raw: bool) -> Response {
    let mut parsed = Vec::new();
    for id in ids {
        match parse_trace_id(id) {
            Ok(id) => parsed.push(id),
            Err(message) => return v1_error(StatusCode::BAD_REQUEST, &message),
        }
    }
    match read_traces(api.store.as_ref(), &parsed).await {
        Ok(traces) => {
            let mut found = Vec::new();
            let mut errors = Vec::new();
            for (id, spans) in parsed.iter().zip(&traces) {
                if spans.is_empty() {
                    errors.push(json!({
                        "code": 404, "msg": "trace not found", "traceID": jaeger_trace_id(id)
                    }));
                } else {
                    found.push(trace_json(spans, raw));
                }
            }
            let total = found.len();
            Json(json!({
                "data": found, "total": total, "limit": 0, "offset": 0,
                "errors": if errors.is_empty() { Value::Null } else { json!(errors) }
            }))
            .into_response()
        }
        Err(error) => v1_store_error(error),
    }
}

async fn trace(
    State(api): State<Arc<Api>>,
    Path(trace_id): Path<String>,
    Query(params): Params,
) -> Response {
    let trace_id = match parse_trace_id(&trace_id) {
        Ok(trace_id) => trace_id,
        Err(message) => return v1_error(StatusCode::BAD_REQUEST, &message),
    };
    // `start` and `end` may narrow a lookup; a trace id is found without them, so they are
    // ignored, and a link keeps working for as long as the trace is kept.
    let raw = param_any(&params, &["raw"]) == Some("true");
    match api.store.trace(trace_id).await {
        Ok(spans) if spans.is_empty() => v1_error(StatusCode::NOT_FOUND, "trace not found"),
        Ok(spans) => data(json!([trace_json(&spans, raw)]), 1),
        Err(error) => v1_store_error(error),
    }
}

/// `GET /jaeger/api/dependencies?endTs=<ms>&lookback=<ms>&service=`: calls between services,
/// one entry per (parent, child).
async fn dependencies(State(api): State<Arc<Api>>, Query(params): Params) -> Response {
    let millis = |name: &str, default: i64| -> Result<i64, BadParam> {
        match param_any(&params, &[name]) {
            None => Ok(default),
            Some(text) => text
                .parse::<i64>()
                .map_err(|_| BadParam(format!("invalid {name} {text:?}: want milliseconds"))),
        }
    };
    let range = match (
        millis("endTs", now_us() / 1_000),
        millis("lookback", 86_400_000),
    ) {
        (Ok(end), Ok(lookback)) if lookback >= 0 => TimeRange::new(
            Some(end.saturating_sub(lookback).saturating_mul(1_000)),
            Some(end.saturating_mul(1_000)),
        ),
        (Ok(_), Ok(_)) => {
            return v1_error(StatusCode::BAD_REQUEST, "lookback must not be negative")
        }
        (Err(bad), _) | (_, Err(bad)) => return v1_error(StatusCode::BAD_REQUEST, &bad.0),
    };
    let service = param_any(&params, &["service"]);
    match api.store.service_map(range, MapBy::Service).await {
        Ok(edges) => {
            let mut pairs: std::collections::BTreeMap<(String, String), u64> = Default::default();
            for edge in edges {
                if service.is_some_and(|s| s != edge.caller && s != edge.callee) {
                    continue;
                }
                *pairs.entry((edge.caller, edge.callee)).or_default() += edge.calls;
            }
            let links: Vec<Value> = pairs
                .into_iter()
                .map(|((parent, child), calls)| {
                    json!({ "parent": parent, "child": child, "callCount": calls })
                })
                .collect();
            let total = links.len();
            data(json!(links), total)
        }
        Err(error) => v1_store_error(error),
    }
}

// ---------------------------------------------------------------------------------------------
// The v1 trace model.

/// Jaeger prints a trace id as 16 hex digits when its high half is zero.
pub(crate) fn jaeger_trace_id(id: &TraceId) -> String {
    let hex = id.to_hex();
    match hex.strip_prefix("0000000000000000") {
        Some(low) => low.to_string(),
        None => hex,
    }
}

/// Integers JavaScript reads exactly.
const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

fn tag(key: &str, value: &AttrValue) -> Value {
    let (kind, value) = match value {
        AttrValue::String(text) => ("string", json!(text)),
        AttrValue::Bool(value) => ("bool", json!(value)),
        AttrValue::Int(value) if value.abs() > MAX_SAFE_INTEGER => {
            ("int64", json!(value.to_string()))
        }
        AttrValue::Int(value) => ("int64", json!(value)),
        AttrValue::Double(value) if value.is_finite() => ("float64", json!(value)),
        AttrValue::Double(value) => ("float64", json!(value.to_string())),
        AttrValue::Bytes(bytes) => (
            "binary",
            json!(base64::engine::general_purpose::STANDARD.encode(bytes)),
        ),
        AttrValue::Array(_) | AttrValue::KeyValueList(_) => {
            ("string", json!(crate::json::value_json(value).to_string()))
        }
        AttrValue::Empty => ("string", json!("")),
    };
    json!({ "key": key, "type": kind, "value": value })
}

fn string_tag(key: &str, value: &str) -> Value {
    json!({ "key": key, "type": "string", "value": value })
}

fn tags(attributes: &[Attribute]) -> Vec<Value> {
    attributes
        .iter()
        .map(|attribute| tag(&attribute.key, &attribute.value))
        .collect()
}

/// The tags Jaeger's OTLP translator adds from the span's own fields.
fn span_tags(row: &SpanRow) -> Vec<Value> {
    let mut tags = tags(&row.attributes);
    if !row.scope_name.is_empty() {
        tags.push(string_tag("otel.scope.name", &row.scope_name));
    }
    if !row.scope_version.is_empty() {
        tags.push(string_tag("otel.scope.version", &row.scope_version));
    }
    if row.span_kind != SpanKind::Unspecified {
        tags.push(string_tag("span.kind", row.span_kind.as_str()));
    }
    match row.status_code {
        1 => tags.push(string_tag("otel.status_code", "OK")),
        2 => {
            tags.push(string_tag("otel.status_code", "ERROR"));
            tags.push(json!({ "key": "error", "type": "bool", "value": true }));
        }
        _ => {}
    }
    if !row.status_message.is_empty() {
        tags.push(string_tag("otel.status_description", &row.status_message));
    }
    if !row.trace_state.is_empty() {
        tags.push(string_tag("w3c.tracestate", &row.trace_state));
    }
    peer_tags(row, &mut tags);
    tags
}

/// Where the span's peer ran, under the place columns of the peer's end (`pod_1` for a
/// client span's server, `pod_0` for a server span's client); nothing for what is unknown.
fn peer_tags(row: &SpanRow, tags: &mut Vec<Value>) {
    let side = 1 - own_side(row);
    let place = place_of(row, side);
    if place.is_unknown() {
        return;
    }
    let mut put = |name: &str, value: &str| {
        if !value.is_empty() {
            tags.push(string_tag(&format!("{name}_{side}"), value));
        }
    };
    for (name, field) in spanflow_model::Place::TEXT_COLUMNS {
        put(name, field(place));
        if name == "auto_instance" && !place.auto_instance.is_empty() {
            put("auto_instance_type", place.auto_instance_type.as_str());
        } else if name == "auto_service" && !place.auto_service.is_empty() {
            put("auto_service_type", place.auto_service_type.as_str());
        }
    }
    put("labels", &place.labels_json());
}

/// A trace in Jaeger's UI model. Unless `raw`, spans are moved as the clock-skew adjuster
/// says, and what was adjusted is in each span's `warnings`.
pub(crate) fn trace_json(spans: &[SpanRow], raw: bool) -> Value {
    let tree = Tree::build(spans);
    let mut processes: Vec<(String, Vec<Attribute>)> = Vec::new();
    let mut process_ids: HashMap<String, usize> = HashMap::new();
    let trace_id = spans.first().map(|span| jaeger_trace_id(&span.trace_id));
    let json_spans: Vec<Value> = tree
        .order
        .iter()
        .map(|&index| {
            let row = &spans[index];
            let node = &tree.nodes[index];
            let resource: Vec<Attribute> = row
                .resource_attributes
                .iter()
                .filter(|attribute| attribute.key != "service.name")
                .cloned()
                .collect();
            let key = format!("{}\u{0}{:?}", row.app_service, resource);
            let process = *process_ids.entry(key).or_insert_with(|| {
                processes.push((row.app_service.clone(), resource));
                processes.len()
            });
            let mut references = Vec::new();
            if let Some(parent) = row.parent_span_id {
                references.push(json!({
                    "refType": "CHILD_OF",
                    "traceID": jaeger_trace_id(&row.trace_id),
                    "spanID": parent.to_hex(),
                }));
            }
            for link in &row.links {
                let child_of = link.attributes.iter().any(|attribute| {
                    attribute.key == "opentracing.ref_type"
                        && attribute.value.as_str() == Some("child_of")
                });
                references.push(json!({
                    "refType": if child_of { "CHILD_OF" } else { "FOLLOWS_FROM" },
                    "traceID": jaeger_trace_id(&link.trace_id),
                    "spanID": link.span_id.to_hex(),
                }));
            }
            let logs: Vec<Value> = row
                .events
                .iter()
                .map(|event| {
                    let mut fields = vec![string_tag("event", &event.name)];
                    fields.extend(tags(&event.attributes));
                    json!({ "timestamp": event.time_us + if raw { 0 } else { node.skew }, "fields": fields })
                })
                .collect();
            let warnings = if raw || node.warnings.is_empty() {
                Value::Null
            } else {
                json!(node.warnings)
            };
            json!({
                "traceID": jaeger_trace_id(&row.trace_id),
                "spanID": row.span_id.to_hex(),
                "flags": row.flags,
                "operationName": row.endpoint,
                "references": references,
                "startTime": if raw { row.start_time } else { node.start },
                "duration": row.response_duration,
                "tags": span_tags(row),
                "logs": logs,
                "processID": format!("p{process}"),
                "warnings": warnings,
            })
        })
        .collect();
    let processes: serde_json::Map<String, Value> = processes
        .into_iter()
        .enumerate()
        .map(|(index, (service, resource))| {
            (
                format!("p{}", index + 1),
                json!({ "serviceName": service, "tags": tags(&resource) }),
            )
        })
        .collect();
    json!({
        "traceID": trace_id,
        "spans": json_spans,
        "processes": processes,
        "warnings": null,
    })
}

// ---------------------------------------------------------------------------------------------
// api_v3.

fn v3_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": { "httpCode": status.as_u16(), "message": message } })),
    )
        .into_response()
}

fn v3_store_error(error: spanflow_store::StoreError) -> Response {
    v3_error(store_status(&error), &error.to_string())
}

async fn v3_services(State(api): State<Arc<Api>>) -> Response {
    match api.store.services(TimeRange::ALL).await {
        Ok(services) => Json(json!({ "services": services })).into_response(),
        Err(error) => v3_store_error(error),
    }
}

async fn v3_operations(State(api): State<Arc<Api>>, Query(params): Params) -> Response {
    match operation_list(&api, &params).await {
        Ok(operations) => Json(json!({ "operations": operations })).into_response(),
        Err(Ok(bad)) => v3_error(StatusCode::BAD_REQUEST, &bad.0),
        Err(Err(error)) => v3_store_error(error),
    }
}

fn v3_query(params: &[(String, String)], max_limit: usize) -> Result<(SpanQuery, usize), BadParam> {
    let time = |names: &[&str]| {
        param_any(params, names)
            .map(|text| parse_time_us(text, 1, names[0]))
            .transpose()
    };
    let start = time(&["query.start_time_min", "query.startTimeMin"])?
        .ok_or_else(|| BadParam("query.start_time_min is required".into()))?;
    let end = time(&["query.start_time_max", "query.startTimeMax"])?
        .ok_or_else(|| BadParam("query.start_time_max is required".into()))?;
    let duration = |names: &[&str]| {
        param_any(params, names)
            .map(parse_go_duration_us)
            .transpose()
    };
    let mut query = SpanQuery {
        service: param_any(params, &["query.service_name", "query.serviceName"])
            .map(str::to_string),
        operation: param_any(params, &["query.operation_name", "query.operationName"])
            .map(str::to_string),
        min_duration_us: duration(&["query.duration_min", "query.durationMin"])?,
        max_duration_us: duration(&["query.duration_max", "query.durationMax"])?,
        start_time_min_us: Some(start),
        start_time_max_us: Some(end),
        ..SpanQuery::default()
    };
    if let Some(attributes) = param_any(params, &["query.attributes"]) {
        let map: serde_json::Map<String, Value> = serde_json::from_str(attributes)
            .map_err(|error| BadParam(format!("malformed query.attributes: {error}")))?;
        for (key, value) in map {
            let value = match value {
                Value::String(text) => text,
                other => other.to_string(),
            };
            push_filter(&mut query, key, value);
        }
    }
    for (key, value) in params {
        if let Some(key) = key
            .strip_prefix("query.attributes[")
            .and_then(|rest| rest.strip_suffix(']'))
        {
            push_filter(&mut query, key.to_string(), value.clone());
        }
    }
    let limit = parse_limit(
        param_any(
            params,
            &[
                "query.search_depth",
                "query.num_traces",
                "query.searchDepth",
            ],
        ),
        20,
        max_limit,
        "query.search_depth",
    )?;
    Ok((query, limit))
}

async fn v3_search(State(api): State<Arc<Api>>, Query(params): Params) -> Response {
    let (query, limit) = match v3_query(&params, api.config.max_search_traces) {
        Ok(parsed) => parsed,
        Err(bad) => return v3_error(StatusCode::BAD_REQUEST, &bad.0),
    };
    match traces_matching(api.store.as_ref(), &api.config, &query, &|_| true, limit).await {
        Ok(found) if found.traces.is_empty() => {
            v3_error(StatusCode::NOT_FOUND, "no trace matches the query")
        }
        Ok(found) => {
            let spans = found.traces.iter().flatten();
            Json(json!({ "result": { "resourceSpans": otlp_json::resource_spans(spans, Style::Otlp) } }))
                .into_response()
        }
        Err(error) => v3_store_error(error),
    }
}

async fn v3_trace(State(api): State<Arc<Api>>, Path(trace_id): Path<String>) -> Response {
    let trace_id = match parse_trace_id(&trace_id) {
        Ok(trace_id) => trace_id,
        Err(message) => return v3_error(StatusCode::BAD_REQUEST, &message),
    };
    match api.store.trace(trace_id).await {
        Ok(spans) if spans.is_empty() => v3_error(StatusCode::NOT_FOUND, "trace not found"),
        Ok(spans) => Json(json!({
            "result": { "resourceSpans": otlp_json::resource_spans(&spans, Style::Otlp) }
        }))
        .into_response(),
        Err(error) => v3_store_error(error),
    }
}
