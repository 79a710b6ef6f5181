//! Grafana Tempo's HTTP API under `/tempo`: trace by id (v1 and v2), search by TraceQL (a
//! spanset filter) or by the legacy logfmt tags, tag names and values, and `echo`.
//!
//! Where each end of a call ran is searched by DeepFlow's place columns (`pod_1`,
//! `pod_group_0`, ...: `_0` the client end, `_1` the server end), as TraceQL's `.pod_1` or
//! `span.pod_1` and as keys of the logfmt tags; they are listed among the span tags. Where a
//! span itself ran is in its resource attributes too (`k8s.pod.name`, ...).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use spanflow_model::{Place, SpanRow};
use spanflow_store::{AttributeFilter, PlaceFilter, SpanQuery, TimeRange};

use crate::json::place_of;
use crate::otlp_json::{self, Style};
use crate::params::{param, parse_go_duration_us, parse_limit, parse_time_us, BadParam};
use crate::search::{traces_matching, Summary};
use crate::tree::is_error;
use crate::{error, otlp_proto, parse_trace_id, store_failure, traceql, Api};

type Params = Query<Vec<(String, String)>>;

/// Tag names and values are read from this many of the newest spans.
const TAG_SAMPLE_SPANS: usize = 1_000;
/// Values listed per tag at most.
const MAX_TAG_VALUES: usize = 1_000;

pub(crate) fn router() -> Router<Arc<Api>> {
    Router::new()
        .route("/tempo/api/echo", get(|| async { "echo" }))
        .route("/tempo/api/traces/{trace_id}", get(trace_v1))
        .route("/tempo/api/v2/traces/{trace_id}", get(trace_v2))
        .route("/tempo/api/search", get(search))
        .route("/tempo/api/search/tags", get(tags_v1))
        .route("/tempo/api/v2/search/tags", get(tags_v2))
        .route("/tempo/api/search/tag/{tag}/values", get(tag_values_v1))
        .route("/tempo/api/v2/search/tag/{tag}/values", get(tag_values_v2))
}

async fn read_trace(api: &Api, trace_id: &str) -> Result<Vec<SpanRow>, Response> {
    let trace_id =
        parse_trace_id(trace_id).map_err(|message| error(StatusCode::BAD_REQUEST, &message))?;
    match api.store.trace(trace_id).await {
        Ok(spans) if spans.is_empty() => Err(error(
            StatusCode::NOT_FOUND,
            &format!("trace {trace_id} not found"),
        )),
        Ok(spans) => Ok(spans),
        Err(store_error) => Err(store_failure(store_error)),
    }
}

/// Whether the client asked for protobuf, as Grafana's Tempo data source does.
fn wants_protobuf(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.contains("application/protobuf"))
}

fn protobuf(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/protobuf")], bytes).into_response()
}

/// `GET /tempo/api/traces/{id}`: `{"batches": [ResourceSpans]}`, or Tempo's `Trace` message
/// when protobuf is asked for. `start` and `end` are accepted and not needed: a trace id is
/// found however old it is.
async fn trace_v1(
    State(api): State<Arc<Api>>,
    Path(trace_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match read_trace(&api, &trace_id).await {
        Ok(spans) if wants_protobuf(&headers) => protobuf(otlp_proto::tempo_trace(&spans)),
        Ok(spans) => Json(json!({ "batches": otlp_json::resource_spans(&spans, Style::Tempo) }))
            .into_response(),
        Err(response) => response,
    }
}

/// `GET /tempo/api/v2/traces/{id}`: `{"trace": {"resourceSpans": [...]}, "status": ...}`, or
/// a `TraceByIDResponse` message when protobuf is asked for.
async fn trace_v2(
    State(api): State<Arc<Api>>,
    Path(trace_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match read_trace(&api, &trace_id).await {
        Ok(spans) if wants_protobuf(&headers) => {
            protobuf(otlp_proto::tempo_trace_by_id_response(&spans))
        }
        Ok(spans) => Json(json!({
            "trace": { "resourceSpans": otlp_json::resource_spans(&spans, Style::Tempo) },
            "status": "COMPLETE",
            "message": "",
            "metrics": {},
        }))
        .into_response(),
        Err(response) => response,
    }
}

/// The legacy `tags` parameter: logfmt, `key=value key2="quoted value"`.
fn logfmt(text: &str) -> Result<Vec<(String, String)>, BadParam> {
    let mut pairs = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let equals = rest
            .find('=')
            .ok_or_else(|| BadParam(format!("malformed tags {text:?}: want key=value pairs")))?;
        let key = rest[..equals].trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(BadParam(format!(
                "malformed tags {text:?}: a key is missing"
            )));
        }
        rest = &rest[equals + 1..];
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut unescaped = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((index, char)) = chars.next() {
                match char {
                    '\\' => {
                        if let Some((_, next)) = chars.next() {
                            unescaped.push(next);
                        }
                    }
                    '"' => {
                        end = Some(index);
                        break;
                    }
                    other => unescaped.push(other),
                }
            }
            let end = end.ok_or_else(|| {
                BadParam(format!("malformed tags {text:?}: a quote is not closed"))
            })?;
            value = unescaped;
            rest = &quoted[end + 1..];
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            value = rest[..end].to_string();
            rest = &rest[end..];
        }
        pairs.push((key.to_string(), value));
        rest = rest.trim_start();
    }
    Ok(pairs)
}

struct Search {
    query: SpanQuery,
    filter: Option<traceql::Query>,
    /// Legacy tags checked per span: `status.code=error`-style keys the store cannot push.
    failed: Option<bool>,
    limit: usize,
    spans_per_set: usize,
}

impl Search {
    fn keep(&self, row: &SpanRow) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|filter| filter.matches(row))
            && self.failed.is_none_or(|failed| is_error(row) == failed)
    }
}

fn parse_search(params: &[(String, String)], max_limit: usize) -> Result<Search, BadParam> {
    let (filter, mut query) = match param(params, "q") {
        Some(text) => {
            let filter = traceql::parse(text)
                .map_err(|error| BadParam(format!("invalid TraceQL query: {error}")))?;
            let query = filter.pushdown();
            (Some(filter), query)
        }
        None => (None, SpanQuery::default()),
    };
    let mut failed = None;
    if let Some(tags) = param(params, "tags") {
        for (key, value) in logfmt(tags)? {
            match key.as_str() {
                "service.name" | "resource.service.name" => query.service = Some(value),
                "name" => query.operation = Some(value),
                "status.code" | "status" | "error" => {
                    failed = Some(matches!(value.as_str(), "error" | "2" | "true"))
                }
                _ => match PlaceFilter::new(&key, value.clone()) {
                    Some(place) => query.places.push(place),
                    None => query.attributes.push(AttributeFilter { key, value }),
                },
            }
        }
    }
    let duration = |name: &str| param(params, name).map(parse_go_duration_us).transpose();
    if let Some(min) = duration("minDuration")? {
        query.min_duration_us = Some(query.min_duration_us.map_or(min, |pushed| pushed.max(min)));
    }
    if let Some(max) = duration("maxDuration")? {
        query.max_duration_us = Some(query.max_duration_us.map_or(max, |pushed| pushed.min(max)));
    }
    let seconds = |name: &str| {
        param(params, name)
            .map(|text| parse_time_us(text, 1_000_000, name))
            .transpose()
    };
    if let Some(start) = seconds("start")? {
        query.start_time_min_us = Some(start);
    }
    if let Some(end) = seconds("end")? {
        // `end` is a whole second; spans starting within it count.
        query.start_time_max_us = Some(end.saturating_add(999_999));
    }
    let limit = parse_limit(param(params, "limit"), 20, max_limit, "limit")?;
    let spans_per_set = parse_limit(param(params, "spss"), 3, 1_000, "spss")?;
    Ok(Search {
        query,
        filter,
        failed,
        limit,
        spans_per_set,
    })
}

fn nanos(micros: i64) -> String {
    (i128::from(micros) * 1_000).to_string()
}

/// `GET /tempo/api/search`: the newest traces with a span the query matches, with the
/// matching spans of each as its span set.
async fn search(State(api): State<Arc<Api>>, Query(params): Params) -> Response {
    let search = match parse_search(&params, api.config.max_search_traces) {
        Ok(search) => search,
        Err(bad) => return error(StatusCode::BAD_REQUEST, &bad.0),
    };
    let keep = |row: &SpanRow| search.keep(row);
    let found = match traces_matching(
        api.store.as_ref(),
        &api.config,
        &search.query,
        &keep,
        search.limit,
    )
    .await
    {
        Ok(found) => found,
        Err(store_error) => return store_failure(store_error),
    };
    let traces: Vec<Value> = found
        .traces
        .iter()
        .filter_map(|spans| {
            let summary = Summary::of(spans)?;
            let matched: Vec<&SpanRow> = spans
                .iter()
                .filter(|span| search.query.matches(span) && search.keep(span))
                .collect();
            let shown: Vec<Value> = matched
                .iter()
                .take(search.spans_per_set)
                .map(|span| {
                    json!({
                        "spanID": span.span_id.to_hex(),
                        "name": span.endpoint,
                        "startTimeUnixNano": nanos(span.start_time),
                        "durationNanos": (u128::from(span.response_duration) * 1_000).to_string(),
                        "attributes": [
                            { "key": "service.name", "value": { "stringValue": span.app_service } },
                        ],
                    })
                })
                .collect();
            let span_set = json!({ "spans": shown, "matched": matched.len() });
            let service_stats: BTreeMap<&String, Value> = summary
                .services
                .iter()
                .map(|(name, stats)| {
                    (
                        name,
                        json!({ "spanCount": stats.span_count, "errorCount": stats.error_count }),
                    )
                })
                .collect();
            Some(json!({
                "traceID": summary.trace_id.to_hex(),
                "rootServiceName": summary.root_service,
                "rootTraceName": summary.root_operation,
                "startTimeUnixNano": nanos(summary.start),
                "durationMs": summary.duration_us() / 1_000,
                "spanSet": span_set,
                "spanSets": [span_set],
                "serviceStats": service_stats,
            }))
        })
        .collect();
    Json(json!({
        "traces": traces,
        "metrics": {
            "inspectedTraces": found.traces.len(),
            "inspectedSpans": found.spans_inspected.to_string(),
            "inspectedBytes": "0",
            "completedJobs": 1,
            "totalJobs": 1,
        },
    }))
    .into_response()
}

const INTRINSICS: [&str; 5] = ["duration", "kind", "name", "status", "statusMessage"];

/// The newest spans, from which tag names and values are read.
async fn sample(api: &Api, params: &[(String, String)]) -> Result<Vec<SpanRow>, Response> {
    let seconds = |name: &str| {
        param(params, name)
            .map(|text| parse_time_us(text, 1_000_000, name))
            .transpose()
    };
    let (start, end) = match (seconds("start"), seconds("end")) {
        (Ok(start), Ok(end)) => (start, end),
        (Err(bad), _) | (_, Err(bad)) => return Err(error(StatusCode::BAD_REQUEST, &bad.0)),
    };
    api.store
        .search(&SpanQuery {
            start_time_min_us: start,
            start_time_max_us: end,
            limit: TAG_SAMPLE_SPANS,
            ..SpanQuery::default()
        })
        .await
        .map_err(store_failure)
}

/// Attribute names by scope (`resource`, `span`) among the spans; the place columns any of
/// them has a value in are span tags.
fn tag_names(spans: &[SpanRow]) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut resource = BTreeSet::from(["service.name".to_string()]);
    let mut span = BTreeSet::new();
    for row in spans {
        resource.extend(row.resource_attributes.iter().map(|a| a.key.clone()));
        span.extend(row.attributes.iter().map(|a| a.key.clone()));
        for (side, place) in [(0, &row.place_0), (1, &row.place_1)] {
            if place.is_unknown() {
                continue;
            }
            for (column, field) in Place::TEXT_COLUMNS {
                if !field(place).is_empty() {
                    span.insert(format!("{column}_{side}"));
                }
            }
        }
    }
    (resource, span)
}

/// The place column a tag names (`pod_1`, `span.pod_1` or `.pod_1`), as a filter to read it.
fn place_tag(scope: Option<&str>, name: &str) -> Option<PlaceFilter> {
    if scope == Some("resource") {
        return None;
    }
    PlaceFilter::new(name, "")
}

/// `GET /tempo/api/search/tags`: `{"tagNames": [...]}`, span and resource attributes together.
async fn tags_v1(State(api): State<Arc<Api>>, Query(params): Params) -> Response {
    match sample(&api, &params).await {
        Ok(spans) => {
            let (resource, span) = tag_names(&spans);
            let names: BTreeSet<String> = resource.into_iter().chain(span).collect();
            Json(json!({ "tagNames": names })).into_response()
        }
        Err(response) => response,
    }
}

/// `GET /tempo/api/v2/search/tags?scope=`: tag names by scope.
async fn tags_v2(State(api): State<Arc<Api>>, Query(params): Params) -> Response {
    let scope = param(&params, "scope").unwrap_or("all");
    if !matches!(scope, "all" | "resource" | "span" | "intrinsic") {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("invalid scope {scope:?}: want resource, span, intrinsic or all"),
        );
    }
    match sample(&api, &params).await {
        Ok(spans) => {
            let (resource, span) = tag_names(&spans);
            let mut scopes = Vec::new();
            if matches!(scope, "all" | "resource") {
                scopes.push(json!({ "name": "resource", "tags": resource }));
            }
            if matches!(scope, "all" | "span") {
                scopes.push(json!({ "name": "span", "tags": span }));
            }
            if matches!(scope, "all" | "intrinsic") {
                scopes.push(json!({ "name": "intrinsic", "tags": INTRINSICS }));
            }
            Json(json!({ "scopes": scopes })).into_response()
        }
        Err(response) => response,
    }
}

/// A tag's values with their TraceQL types (`string`, `int`, `float`, `bool`, `keyword`,
/// `duration`).
async fn tag_values(
    api: &Api,
    tag: &str,
    params: &[(String, String)],
) -> Result<Vec<(&'static str, String)>, Response> {
    let (scope, name) = match tag.split_once('.') {
        Some(("resource", name)) => (Some("resource"), name),
        Some(("span", name)) => (Some("span"), name),
        Some(("", name)) => (None, name),
        _ => (None, tag),
    };
    if name == "service.name" && scope != Some("span") {
        let services = api
            .store
            .services(TimeRange::ALL)
            .await
            .map_err(store_failure)?;
        return Ok(services.into_iter().map(|s| ("string", s)).collect());
    }
    match tag {
        "status" => {
            return Ok(["error", "ok", "unset"]
                .map(|v| ("keyword", v.to_string()))
                .to_vec())
        }
        "kind" => {
            return Ok([
                "client",
                "consumer",
                "internal",
                "producer",
                "server",
                "unspecified",
            ]
            .map(|v| ("keyword", v.to_string()))
            .to_vec())
        }
        _ => {}
    }
    let spans = sample(api, params).await?;
    let mut values: BTreeSet<(&'static str, String)> = BTreeSet::new();
    let place = place_tag(scope, name);
    for row in &spans {
        if tag == "name" {
            values.insert(("string", row.endpoint.clone()));
            continue;
        }
        if let Some(place) = &place {
            let value = place_of(row, place.side())
                .text(place.name())
                .unwrap_or_default();
            if !value.is_empty() {
                values.insert(("string", value.to_string()));
            }
            if values.len() >= MAX_TAG_VALUES {
                break;
            }
            continue;
        }
        let span = row.attributes.iter();
        let resource = row.resource_attributes.iter();
        let attributes: Vec<&spanflow_model::Attribute> = match scope {
            Some("span") => span.collect(),
            Some("resource") => resource.collect(),
            _ => span.chain(resource).collect(),
        };
        for attribute in attributes.into_iter().filter(|a| a.key == name) {
            let kind = match attribute.value {
                spanflow_model::AttrValue::Int(_) => "int",
                spanflow_model::AttrValue::Double(_) => "float",
                spanflow_model::AttrValue::Bool(_) => "bool",
                _ => "string",
            };
            if let Some(text) = attribute.value.to_text() {
                values.insert((kind, text));
            }
        }
        if values.len() >= MAX_TAG_VALUES {
            break;
        }
    }
    Ok(values.into_iter().collect())
}

async fn tag_values_v1(
    State(api): State<Arc<Api>>,
    Path(tag): Path<String>,
    Query(params): Params,
) -> Response {
    match tag_values(&api, &tag, &params).await {
        Ok(values) => {
            let values: Vec<String> = values.into_iter().map(|(_, value)| value).collect();
            Json(json!({ "tagValues": values })).into_response()
        }
        Err(response) => response,
    }
}

async fn tag_values_v2(
    State(api): State<Arc<Api>>,
    Path(tag): Path<String>,
    Query(params): Params,
) -> Response {
    match tag_values(&api, &tag, &params).await {
        Ok(values) => {
            let values: Vec<Value> = values
                .into_iter()
                .map(|(kind, value)| json!({ "type": kind, "value": value }))
                .collect();
            Json(json!({ "tagValues": values })).into_response()
        }
        Err(response) => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_pairs() {
        assert_eq!(
            logfmt(r#"service.name=cart http.method="GET \"x\"" a=b"#).unwrap(),
            [
                ("service.name".to_string(), "cart".to_string()),
                ("http.method".to_string(), "GET \"x\"".to_string()),
                ("a".to_string(), "b".to_string()),
            ]
        );
        assert!(logfmt("novalue").is_err());
        assert!(logfmt(r#"a="open"#).is_err());
        assert!(logfmt("").unwrap().is_empty());
    }
}
