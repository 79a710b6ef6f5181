//! OTLP/JSON: decoding trace export requests, encoding responses and error statuses.
//!
//! Decoding parses the body into a [`serde_json::Value`] and walks it into the prost structs of
//! [`ExportTraceServiceRequest`], following the OTLP/JSON rules (lowerCamelCase keys, hex trace
//! and span ids, integer enums, 64-bit integers as numbers or decimal strings) and accepting the
//! usual deviations of real senders:
//!
//! - snake_case keys (`resource_spans`, `start_time_unix_nano`, ...) as well as lowerCamelCase;
//! - the pre-1.0 names `instrumentationLibrarySpans` / `instrumentationLibrary` for
//!   `scopeSpans` / `scope`;
//! - unknown fields are ignored, and `null` for any field means the field is absent;
//! - ids as hex (either case) or as base64 (the proto3 JSON encoding of `bytes`); a string of
//!   hex digits only is always read as hex, so a truncated hex id never passes as base64;
//! - enums as integers, numeric strings, or names (`SPAN_KIND_SERVER`, `SERVER`, `server`);
//! - integers as JSON numbers (integral floats up to 2^53 included) or decimal strings;
//! - `doubleValue` as a number or a string (`"NaN"`, `"Infinity"`, `"-Infinity"`, `"1.5"`);
//! - base64 (`bytesValue`, ids) in the standard or URL-safe alphabet, padded or not;
//! - a leading UTF-8 byte order mark.
//!
//! Ids that decode to the wrong length are passed through as they are, so that span validation
//! rejects just that span (a partial success) instead of the whole request. Errors name the JSON
//! path of the offending value, e.g.
//! `resourceSpans[0].scopeSpans[1].spans[3].startTimeUnixNano: expected an integer or a decimal
//! string, got a boolean`.

use std::fmt;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use serde_json::{Map, Value};

/// A request body that is not a valid OTLP/JSON trace export request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JsonError {
    /// Lowercase message naming the JSON path of the offending value, if any.
    pub message: String,
}

impl JsonError {
    fn new(message: impl Into<String>) -> Self {
        JsonError {
            message: message.into(),
        }
    }
}

/// Maximum nesting of `arrayValue` / `kvlistValue` inside one attribute value.
const MAX_ANY_VALUE_DEPTH: usize = 32;

const TRACE_ID_LEN: usize = 16;
const SPAN_ID_LEN: usize = 8;

/// Decodes an OTLP/JSON `ExportTraceServiceRequest`.
///
/// Only the shape of the JSON is checked here; ids of the wrong length, zero timestamps and the
/// like are left for span validation so that they cost a partial success, not the whole request.
pub fn decode_request(body: &[u8]) -> Result<ExportTraceServiceRequest, JsonError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let value: Value =
        serde_json::from_slice(body).map_err(|e| JsonError::new(format!("invalid json: {e}")))?;
    let root = Path::ROOT;
    let Value::Object(obj) = &value else {
        return Err(root.err(format!(
            "expected a json object at the top level, got {}",
            describe(&value)
        )));
    };
    Ok(ExportTraceServiceRequest {
        resource_spans: list(obj, RESOURCE_SPANS, &root, resource_spans)?,
    })
}

/// Encodes an `ExportTraceServiceResponse` as OTLP/JSON.
///
/// `{}` on full success (no partial success, or one with nothing rejected and no message);
/// otherwise `{"partialSuccess":{"rejectedSpans":"3","errorMessage":"..."}}`, with
/// `rejectedSpans` as a decimal string (proto3 JSON for int64) and default-valued fields left
/// out, as proto3 JSON does.
pub fn encode_response(response: &ExportTraceServiceResponse) -> Vec<u8> {
    let mut fields = Vec::new();
    if let Some(partial) = &response.partial_success {
        if partial.rejected_spans != 0 {
            fields.push(format!("\"rejectedSpans\":\"{}\"", partial.rejected_spans));
        }
        if !partial.error_message.is_empty() {
            fields.push(format!(
                "\"errorMessage\":{}",
                json_string(&partial.error_message)
            ));
        }
    }
    if fields.is_empty() {
        b"{}".to_vec()
    } else {
        format!("{{\"partialSuccess\":{{{}}}}}", fields.join(",")).into_bytes()
    }
}

/// Encodes a `google.rpc.Status` as JSON: `{"code":3,"message":"..."}` (both fields always
/// present).
pub fn encode_status(status: &crate::status::Status) -> Vec<u8> {
    format!(
        "{{\"code\":{},\"message\":{}}}",
        status.code,
        json_string(&status.message)
    )
    .into_bytes()
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("serializing a string to JSON cannot fail")
}

// ---------------------------------------------------------------------------------------------
// Field names, preferred spelling first.

const RESOURCE_SPANS: &[&str] = &["resourceSpans", "resource_spans"];
const RESOURCE: &[&str] = &["resource"];
const SCOPE_SPANS: &[&str] = &[
    "scopeSpans",
    "scope_spans",
    "instrumentationLibrarySpans",
    "instrumentation_library_spans",
];
const SCHEMA_URL: &[&str] = &["schemaUrl", "schema_url"];
const SCOPE: &[&str] = &["scope", "instrumentationLibrary", "instrumentation_library"];
const SPANS: &[&str] = &["spans"];
const NAME: &[&str] = &["name"];
const VERSION: &[&str] = &["version"];
const ATTRIBUTES: &[&str] = &["attributes"];
const DROPPED_ATTRIBUTES_COUNT: &[&str] = &["droppedAttributesCount", "dropped_attributes_count"];
const ENTITY_REFS: &[&str] = &["entityRefs", "entity_refs"];
const TYPE: &[&str] = &["type"];
const ID_KEYS: &[&str] = &["idKeys", "id_keys"];
const DESCRIPTION_KEYS: &[&str] = &["descriptionKeys", "description_keys"];
const TRACE_ID: &[&str] = &["traceId", "trace_id"];
const SPAN_ID: &[&str] = &["spanId", "span_id"];
const PARENT_SPAN_ID: &[&str] = &["parentSpanId", "parent_span_id"];
const TRACE_STATE: &[&str] = &["traceState", "trace_state"];
const FLAGS: &[&str] = &["flags"];
const KIND: &[&str] = &["kind"];
const START_TIME: &[&str] = &["startTimeUnixNano", "start_time_unix_nano"];
const END_TIME: &[&str] = &["endTimeUnixNano", "end_time_unix_nano"];
const EVENTS: &[&str] = &["events"];
const DROPPED_EVENTS_COUNT: &[&str] = &["droppedEventsCount", "dropped_events_count"];
const LINKS: &[&str] = &["links"];
const DROPPED_LINKS_COUNT: &[&str] = &["droppedLinksCount", "dropped_links_count"];
const STATUS: &[&str] = &["status"];
const CODE: &[&str] = &["code"];
const MESSAGE: &[&str] = &["message"];
const TIME: &[&str] = &["timeUnixNano", "time_unix_nano"];
const KEY: &[&str] = &["key"];
const VALUE: &[&str] = &["value"];
const VALUES: &[&str] = &["values"];

#[derive(Clone, Copy)]
enum Variant {
    String,
    Bool,
    Int,
    Double,
    Array,
    Kvlist,
    Bytes,
}

const ANY_VALUE_VARIANTS: &[(&[&str], Variant)] = &[
    (&["stringValue", "string_value"], Variant::String),
    (&["boolValue", "bool_value"], Variant::Bool),
    (&["intValue", "int_value"], Variant::Int),
    (&["doubleValue", "double_value"], Variant::Double),
    (&["arrayValue", "array_value"], Variant::Array),
    (&["kvlistValue", "kvlist_value"], Variant::Kvlist),
    (&["bytesValue", "bytes_value"], Variant::Bytes),
];

// ---------------------------------------------------------------------------------------------
// Messages.

fn resource_spans(obj: &Map<String, Value>, path: &Path<'_>) -> Result<ResourceSpans, JsonError> {
    let scope_spans = match get_preferring_nonempty(obj, SCOPE_SPANS) {
        None => Vec::new(),
        Some((name, value)) => elements(value, &path.key(name), scope_spans)?,
    };
    Ok(ResourceSpans {
        resource: field(obj, RESOURCE, path, |v, p| resource(object(v, p)?, p))?,
        scope_spans,
        schema_url: field(obj, SCHEMA_URL, path, string)?.unwrap_or_default(),
    })
}

fn resource(obj: &Map<String, Value>, path: &Path<'_>) -> Result<Resource, JsonError> {
    Ok(Resource {
        attributes: attributes(obj, path)?,
        dropped_attributes_count: field(obj, DROPPED_ATTRIBUTES_COUNT, path, uint32)?
            .unwrap_or_default(),
        entity_refs: list(obj, ENTITY_REFS, path, entity_ref)?,
    })
}

fn entity_ref(obj: &Map<String, Value>, path: &Path<'_>) -> Result<EntityRef, JsonError> {
    Ok(EntityRef {
        schema_url: field(obj, SCHEMA_URL, path, string)?.unwrap_or_default(),
        r#type: field(obj, TYPE, path, string)?.unwrap_or_default(),
        id_keys: field(obj, ID_KEYS, path, strings)?.unwrap_or_default(),
        description_keys: field(obj, DESCRIPTION_KEYS, path, strings)?.unwrap_or_default(),
    })
}

fn scope_spans(obj: &Map<String, Value>, path: &Path<'_>) -> Result<ScopeSpans, JsonError> {
    Ok(ScopeSpans {
        scope: field(obj, SCOPE, path, |v, p| scope(object(v, p)?, p))?,
        spans: list(obj, SPANS, path, span)?,
        schema_url: field(obj, SCHEMA_URL, path, string)?.unwrap_or_default(),
    })
}

fn scope(obj: &Map<String, Value>, path: &Path<'_>) -> Result<InstrumentationScope, JsonError> {
    Ok(InstrumentationScope {
        name: field(obj, NAME, path, string)?.unwrap_or_default(),
        version: field(obj, VERSION, path, string)?.unwrap_or_default(),
        attributes: attributes(obj, path)?,
        dropped_attributes_count: field(obj, DROPPED_ATTRIBUTES_COUNT, path, uint32)?
            .unwrap_or_default(),
    })
}

fn span(obj: &Map<String, Value>, path: &Path<'_>) -> Result<Span, JsonError> {
    Ok(Span {
        trace_id: field(obj, TRACE_ID, path, |v, p| id(v, p, TRACE_ID_LEN))?.unwrap_or_default(),
        span_id: field(obj, SPAN_ID, path, |v, p| id(v, p, SPAN_ID_LEN))?.unwrap_or_default(),
        trace_state: field(obj, TRACE_STATE, path, string)?.unwrap_or_default(),
        parent_span_id: field(obj, PARENT_SPAN_ID, path, |v, p| id(v, p, SPAN_ID_LEN))?
            .unwrap_or_default(),
        flags: field(obj, FLAGS, path, uint32)?.unwrap_or_default(),
        name: field(obj, NAME, path, string)?.unwrap_or_default(),
        kind: field(obj, KIND, path, |v, p| {
            enumeration(v, p, "span kind", span_kind)
        })?
        .unwrap_or_default(),
        start_time_unix_nano: field(obj, START_TIME, path, uint64)?.unwrap_or_default(),
        end_time_unix_nano: field(obj, END_TIME, path, uint64)?.unwrap_or_default(),
        attributes: attributes(obj, path)?,
        dropped_attributes_count: field(obj, DROPPED_ATTRIBUTES_COUNT, path, uint32)?
            .unwrap_or_default(),
        events: list(obj, EVENTS, path, event)?,
        dropped_events_count: field(obj, DROPPED_EVENTS_COUNT, path, uint32)?.unwrap_or_default(),
        links: list(obj, LINKS, path, link)?,
        dropped_links_count: field(obj, DROPPED_LINKS_COUNT, path, uint32)?.unwrap_or_default(),
        status: field(obj, STATUS, path, |v, p| status(object(v, p)?, p))?,
    })
}

fn event(obj: &Map<String, Value>, path: &Path<'_>) -> Result<Event, JsonError> {
    Ok(Event {
        time_unix_nano: field(obj, TIME, path, uint64)?.unwrap_or_default(),
        name: field(obj, NAME, path, string)?.unwrap_or_default(),
        attributes: attributes(obj, path)?,
        dropped_attributes_count: field(obj, DROPPED_ATTRIBUTES_COUNT, path, uint32)?
            .unwrap_or_default(),
    })
}

fn link(obj: &Map<String, Value>, path: &Path<'_>) -> Result<Link, JsonError> {
    Ok(Link {
        trace_id: field(obj, TRACE_ID, path, |v, p| id(v, p, TRACE_ID_LEN))?.unwrap_or_default(),
        span_id: field(obj, SPAN_ID, path, |v, p| id(v, p, SPAN_ID_LEN))?.unwrap_or_default(),
        trace_state: field(obj, TRACE_STATE, path, string)?.unwrap_or_default(),
        attributes: attributes(obj, path)?,
        dropped_attributes_count: field(obj, DROPPED_ATTRIBUTES_COUNT, path, uint32)?
            .unwrap_or_default(),
        flags: field(obj, FLAGS, path, uint32)?.unwrap_or_default(),
    })
}

fn status(obj: &Map<String, Value>, path: &Path<'_>) -> Result<Status, JsonError> {
    Ok(Status {
        message: field(obj, MESSAGE, path, string)?.unwrap_or_default(),
        code: field(obj, CODE, path, |v, p| {
            enumeration(v, p, "status code", status_code)
        })?
        .unwrap_or_default(),
    })
}

fn span_kind(name: &str) -> Option<i32> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("SPAN_KIND_").unwrap_or(&upper);
    let kind = match bare {
        "UNSPECIFIED" => SpanKind::Unspecified,
        "INTERNAL" => SpanKind::Internal,
        "SERVER" => SpanKind::Server,
        "CLIENT" => SpanKind::Client,
        "PRODUCER" => SpanKind::Producer,
        "CONSUMER" => SpanKind::Consumer,
        _ => return None,
    };
    Some(kind as i32)
}

fn status_code(name: &str) -> Option<i32> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("STATUS_CODE_").unwrap_or(&upper);
    let code = match bare {
        "UNSET" => StatusCode::Unset,
        "OK" => StatusCode::Ok,
        "ERROR" => StatusCode::Error,
        _ => return None,
    };
    Some(code as i32)
}

fn attributes(obj: &Map<String, Value>, path: &Path<'_>) -> Result<Vec<KeyValue>, JsonError> {
    list(obj, ATTRIBUTES, path, |kv, p| key_value(kv, p, 0))
}

/// `depth` is the number of `arrayValue` / `kvlistValue` levels enclosing this key-value.
fn key_value(
    obj: &Map<String, Value>,
    path: &Path<'_>,
    depth: usize,
) -> Result<KeyValue, JsonError> {
    Ok(KeyValue {
        key: field(obj, KEY, path, string)?.unwrap_or_default(),
        value: field(obj, VALUE, path, |v, p| any(v, p, depth))?,
        key_strindex: 0,
    })
}

/// `depth` is the number of `arrayValue` / `kvlistValue` levels enclosing this value.
fn any(value: &Value, path: &Path<'_>, depth: usize) -> Result<AnyValue, JsonError> {
    let obj = object(value, path)?;
    let mut chosen: Option<(&'static str, &Value, Variant)> = None;
    for &(names, variant) in ANY_VALUE_VARIANTS {
        if let Some((name, v)) = get(obj, names) {
            if let Some((first, _, _)) = chosen {
                return Err(path.err(format!(
                    "expected at most one of the anyvalue fields, got both {first} and {name}"
                )));
            }
            chosen = Some((name, v, variant));
        }
    }
    let Some((name, v, variant)) = chosen else {
        return Ok(AnyValue { value: None });
    };
    let path = &path.key(name);
    let value = match variant {
        Variant::String => any_value::Value::StringValue(string(v, path)?),
        Variant::Bool => any_value::Value::BoolValue(boolean(v, path)?),
        Variant::Int => any_value::Value::IntValue(int64(v, path)?),
        Variant::Double => any_value::Value::DoubleValue(double(v, path)?),
        Variant::Array => {
            let inner = nested(v, path, depth)?;
            let values = match get(inner, VALUES) {
                None => Vec::new(),
                Some((name, items)) => {
                    let items_path = path.key(name);
                    array(items, &items_path)?
                        .iter()
                        .enumerate()
                        .map(|(i, item)| any(item, &items_path.index(i), depth + 1))
                        .collect::<Result<_, _>>()?
                }
            };
            any_value::Value::ArrayValue(ArrayValue { values })
        }
        Variant::Kvlist => {
            let inner = nested(v, path, depth)?;
            let values = list(inner, VALUES, path, |kv, p| key_value(kv, p, depth + 1))?;
            any_value::Value::KvlistValue(KeyValueList { values })
        }
        Variant::Bytes => any_value::Value::BytesValue(bytes(v, path)?),
    };
    Ok(AnyValue { value: Some(value) })
}

/// The object of an `arrayValue` / `kvlistValue` found inside `depth` enclosing levels.
fn nested<'v>(
    value: &'v Value,
    path: &Path<'_>,
    depth: usize,
) -> Result<&'v Map<String, Value>, JsonError> {
    if depth >= MAX_ANY_VALUE_DEPTH {
        return Err(path.err(format!(
            "arrayValue/kvlistValue nested more than {MAX_ANY_VALUE_DEPTH} levels deep"
        )));
    }
    object(value, path)
}

// ---------------------------------------------------------------------------------------------
// Lookup helpers.

/// The first of `names` present in `obj` with a non-null value.
fn get<'v>(
    obj: &'v Map<String, Value>,
    names: &[&'static str],
) -> Option<(&'static str, &'v Value)> {
    names
        .iter()
        .find_map(|&name| obj.get(name).filter(|v| !v.is_null()).map(|v| (name, v)))
}

/// Like [`get`], but skips empty arrays when a later spelling holds a non-empty one (senders in
/// the `instrumentationLibrarySpans` transition sometimes sent both names).
fn get_preferring_nonempty<'v>(
    obj: &'v Map<String, Value>,
    names: &[&'static str],
) -> Option<(&'static str, &'v Value)> {
    names
        .iter()
        .filter_map(|&name| obj.get(name).filter(|v| !v.is_null()).map(|v| (name, v)))
        .find(|(_, v)| !matches!(v, Value::Array(items) if items.is_empty()))
        .or_else(|| get(obj, names))
}

/// Parses the field `names` of `obj`, if present and not null.
fn field<'v, T>(
    obj: &'v Map<String, Value>,
    names: &[&'static str],
    path: &Path<'_>,
    parse: impl FnOnce(&'v Value, &Path<'_>) -> Result<T, JsonError>,
) -> Result<Option<T>, JsonError> {
    match get(obj, names) {
        None => Ok(None),
        Some((name, value)) => parse(value, &path.key(name)).map(Some),
    }
}

/// Parses the repeated message field `names` of `obj`; absent or null is empty.
fn list<'v, T>(
    obj: &'v Map<String, Value>,
    names: &[&'static str],
    path: &Path<'_>,
    parse: impl FnMut(&'v Map<String, Value>, &Path<'_>) -> Result<T, JsonError>,
) -> Result<Vec<T>, JsonError> {
    Ok(field(obj, names, path, |v, p| elements(v, p, parse))?.unwrap_or_default())
}

/// Parses a JSON array of objects.
fn elements<'v, T>(
    value: &'v Value,
    path: &Path<'_>,
    mut parse: impl FnMut(&'v Map<String, Value>, &Path<'_>) -> Result<T, JsonError>,
) -> Result<Vec<T>, JsonError> {
    array(value, path)?
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let item_path = path.index(i);
            parse(object(item, &item_path)?, &item_path)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Scalars.

fn object<'v>(value: &'v Value, path: &Path<'_>) -> Result<&'v Map<String, Value>, JsonError> {
    match value {
        Value::Object(obj) => Ok(obj),
        other => Err(path.err(format!("expected an object, got {}", describe(other)))),
    }
}

fn array<'v>(value: &'v Value, path: &Path<'_>) -> Result<&'v Vec<Value>, JsonError> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(path.err(format!("expected an array, got {}", describe(other)))),
    }
}

fn string(value: &Value, path: &Path<'_>) -> Result<String, JsonError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        other => Err(path.err(format!("expected a string, got {}", describe(other)))),
    }
}

fn strings(value: &Value, path: &Path<'_>) -> Result<Vec<String>, JsonError> {
    array(value, path)?
        .iter()
        .enumerate()
        .map(|(i, item)| string(item, &path.index(i)))
        .collect()
}

fn boolean(value: &Value, path: &Path<'_>) -> Result<bool, JsonError> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        other => Err(path.err(format!("expected a boolean, got {}", describe(other)))),
    }
}

/// Largest magnitude up to which every integer is exactly representable as an `f64`.
const MAX_EXACT_FLOAT: f64 = 9_007_199_254_740_992.0; // 2^53

/// An integer written as a JSON number with a fraction or exponent (`5.0`, `1e6`).
fn integral_float(n: &serde_json::Number, path: &Path<'_>) -> Result<f64, JsonError> {
    let Some(f) = n.as_f64().filter(|f| f.is_finite()) else {
        return Err(path.err(format!("expected an integer, got {n}")));
    };
    if f.fract() != 0.0 {
        return Err(path.err(format!(
            "expected an integer, got the fractional number {n}"
        )));
    }
    if f.abs() > MAX_EXACT_FLOAT {
        return Err(path.err(format!(
            "integer {n} is out of range or not exact as a json float; send it as a decimal string"
        )));
    }
    Ok(f)
}

fn uint64(value: &Value, path: &Path<'_>) -> Result<u64, JsonError> {
    match value {
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Ok(u)
            } else if n.as_i64().is_some() {
                Err(path.err(format!("expected a non-negative integer, got {n}")))
            } else {
                let f = integral_float(n, path)?;
                if f < 0.0 {
                    return Err(path.err(format!("expected a non-negative integer, got {n}")));
                }
                Ok(f as u64)
            }
        }
        Value::String(s) => match s.parse::<u64>() {
            Ok(u) => Ok(u),
            Err(_) if s.starts_with('-') && s.parse::<i128>().is_ok() => Err(path.err(format!(
                "expected a non-negative integer, got \"{}\"",
                excerpt(s)
            ))),
            Err(_) if is_decimal(s) => Err(path.err(format!(
                "integer \"{}\" is out of range for a 64-bit unsigned integer",
                excerpt(s)
            ))),
            Err(_) => Err(path.err(format!(
                "expected an integer or a decimal string, got \"{}\"",
                excerpt(s)
            ))),
        },
        other => Err(path.err(format!(
            "expected an integer or a decimal string, got {}",
            describe(other)
        ))),
    }
}

fn uint32(value: &Value, path: &Path<'_>) -> Result<u32, JsonError> {
    let u = uint64(value, path)?;
    u32::try_from(u).map_err(|_| {
        path.err(format!(
            "integer {u} is out of range for a 32-bit unsigned integer"
        ))
    })
}

fn int64(value: &Value, path: &Path<'_>) -> Result<i64, JsonError> {
    match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i)
            } else if n.as_u64().is_some() {
                Err(path.err(format!(
                    "integer {n} is out of range for a 64-bit signed integer"
                )))
            } else {
                Ok(integral_float(n, path)? as i64)
            }
        }
        Value::String(s) => match s.parse::<i64>() {
            Ok(i) => Ok(i),
            Err(_) if is_decimal(s) => Err(path.err(format!(
                "integer \"{}\" is out of range for a 64-bit signed integer",
                excerpt(s)
            ))),
            Err(_) => Err(path.err(format!(
                "expected an integer or a decimal string, got \"{}\"",
                excerpt(s)
            ))),
        },
        other => Err(path.err(format!(
            "expected an integer or a decimal string, got {}",
            describe(other)
        ))),
    }
}

/// An optionally signed run of ASCII digits (so a failed parse means out of range).
fn is_decimal(s: &str) -> bool {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn double(value: &Value, path: &Path<'_>) -> Result<f64, JsonError> {
    match value {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| path.err(format!("number {n} is not representable as a double"))),
        // Accepts "NaN", "Infinity", "-Infinity" (proto3 JSON) and numeric strings.
        Value::String(s) => s.parse::<f64>().map_err(|_| {
            path.err(format!(
                "expected a number, \"NaN\", \"Infinity\" or \"-Infinity\", got \"{}\"",
                excerpt(s)
            ))
        }),
        other => Err(path.err(format!("expected a number, got {}", describe(other)))),
    }
}

/// An enum as an integer, a numeric string, or a name recognized by `by_name`. Integers outside
/// the known values are kept (proto3 enums are open); validation decides about them.
fn enumeration(
    value: &Value,
    path: &Path<'_>,
    what: &str,
    by_name: fn(&str) -> Option<i32>,
) -> Result<i32, JsonError> {
    let int = match value {
        Value::Number(_) => int64(value, path)?,
        Value::String(s) => match s.parse::<i64>() {
            Ok(i) => i,
            Err(_) => {
                return by_name(s).ok_or_else(|| {
                    path.err(format!(
                        "unknown {what} \"{}\"; expected an integer or an enum name",
                        excerpt(s)
                    ))
                })
            }
        },
        other => {
            return Err(path.err(format!(
                "expected an enum integer or name, got {}",
                describe(other)
            )))
        }
    };
    i32::try_from(int).map_err(|_| path.err(format!("{what} {int} is out of range")))
}

/// base64 as proto3 JSON parsers accept it: standard or URL-safe alphabet, padded or not.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    const CONFIG: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, CONFIG);
    const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, CONFIG);
    STANDARD.decode(s).or_else(|_| URL_SAFE.decode(s)).ok()
}

fn bytes(value: &Value, path: &Path<'_>) -> Result<Vec<u8>, JsonError> {
    match value {
        Value::String(s) => base64_decode(s)
            .ok_or_else(|| path.err(format!("expected a base64 string, got \"{}\"", excerpt(s)))),
        other => Err(path.err(format!("expected a base64 string, got {}", describe(other)))),
    }
}

/// A trace or span id of `len` bytes: hex (OTLP/JSON) or base64 (proto3 JSON). `""` is an empty
/// id.
///
/// A string made only of hex digits is always read as hex, so that a truncated hex id is never
/// mistaken for unpadded base64; any other string is read as base64 (padded or not, standard or
/// URL-safe alphabet; a hex-looking string can only be base64 of the right length when unpadded,
/// since padded base64 of 16 or 8 bytes ends in `=`). Ids of the wrong length are returned as
/// decoded, so that validation rejects just that span; only a string that is neither hex nor
/// base64 is an error.
fn id(value: &Value, path: &Path<'_>, len: usize) -> Result<Vec<u8>, JsonError> {
    let Value::String(s) = value else {
        return Err(path.err(format!("expected a hex string, got {}", describe(value))));
    };
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let decoded = if s.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(s).ok()
    } else {
        base64_decode(s)
    };
    decoded.ok_or_else(|| {
        path.err(format!(
            "expected {} hex characters (or base64 of {len} bytes), got \"{}\"",
            2 * len,
            excerpt(s)
        ))
    })
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `s` shortened for an error message.
fn excerpt(s: &str) -> String {
    const MAX_CHARS: usize = 64;
    let mut chars = s.chars();
    let head: String = chars.by_ref().take(MAX_CHARS).collect();
    let head = if chars.next().is_some() {
        head + "..."
    } else {
        head
    };
    // Escape quotes and control characters so the message stays on one line.
    head.escape_default().to_string()
}

// ---------------------------------------------------------------------------------------------
// JSON paths for error messages, built on the stack and rendered only on error.

#[derive(Clone, Copy)]
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

#[derive(Clone, Copy)]
struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    segment: Option<Segment<'a>>,
}

impl<'a> Path<'a> {
    const ROOT: Path<'static> = Path {
        parent: None,
        segment: None,
    };

    fn key(&'a self, key: &'a str) -> Path<'a> {
        Path {
            parent: Some(self),
            segment: Some(Segment::Key(key)),
        }
    }

    fn index(&'a self, index: usize) -> Path<'a> {
        Path {
            parent: Some(self),
            segment: Some(Segment::Index(index)),
        }
    }

    fn err(&self, message: impl fmt::Display) -> JsonError {
        let path = self.to_string();
        if path.is_empty() {
            JsonError::new(message.to_string())
        } else {
            JsonError::new(format!("{path}: {message}"))
        }
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(parent) = self.parent {
            parent.fmt(f)?;
        }
        match self.segment {
            None => Ok(()),
            Some(Segment::Index(i)) => write!(f, "[{i}]"),
            Some(Segment::Key(key)) if self.parent.is_some_and(|p| p.segment.is_some()) => {
                write!(f, ".{key}")
            }
            Some(Segment::Key(key)) => f.write_str(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Status as RpcStatus;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess;

    const SPAN: &str = "resourceSpans[0].scopeSpans[0].spans[0]";
    const ATTR: &str = "resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value";

    fn decode(json: &str) -> ExportTraceServiceRequest {
        decode_request(json.as_bytes()).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    fn decode_err(json: &str) -> String {
        match decode_request(json.as_bytes()) {
            Ok(request) => panic!("{json}: expected an error, got {request:?}"),
            Err(e) => e.message,
        }
    }

    /// A request holding one span with the given JSON fields.
    fn with_span(fields: &str) -> String {
        format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{{fields}}}]}}]}}]}}"#)
    }

    /// A request holding one span with one attribute `k` of the given JSON value.
    fn with_value(value: &str) -> String {
        with_span(&format!(r#""attributes":[{{"key":"k","value":{value}}}]"#))
    }

    fn only_span(request: &ExportTraceServiceRequest) -> &Span {
        assert_eq!(request.resource_spans.len(), 1, "{request:?}");
        assert_eq!(
            request.resource_spans[0].scope_spans.len(),
            1,
            "{request:?}"
        );
        let spans = &request.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 1, "{request:?}");
        &spans[0]
    }

    fn decode_span(fields: &str) -> Span {
        only_span(&decode(&with_span(fields))).clone()
    }

    fn decode_value(value: &str) -> Option<AnyValue> {
        let span = decode_span(&format!(r#""attributes":[{{"key":"k","value":{value}}}]"#));
        assert_eq!(span.attributes.len(), 1);
        assert_eq!(span.attributes[0].key, "k");
        span.attributes[0].value.clone()
    }

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            value: Some(AnyValue { value: Some(value) }),
            key_strindex: 0,
        }
    }

    fn string_kv(key: &str, value: &str) -> KeyValue {
        kv(key, any_value::Value::StringValue(value.to_string()))
    }

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// `examples/trace.json` from opentelemetry-proto (times as strings, as in its current
    /// version).
    const OFFICIAL_EXAMPLE: &str = r#"{
      "resourceSpans": [
        {
          "resource": {
            "attributes": [
              { "key": "service.name", "value": { "stringValue": "my.service" } }
            ]
          },
          "scopeSpans": [
            {
              "scope": {
                "name": "my.library",
                "version": "1.0.0",
                "attributes": [
                  { "key": "my.scope.attribute", "value": { "stringValue": "some scope attribute" } }
                ]
              },
              "spans": [
                {
                  "traceId": "5B8EFFF798038103D269B633813FC60C",
                  "spanId": "EEE19B7EC3C1B174",
                  "parentSpanId": "EEE19B7EC3C1B173",
                  "name": "I'm a server span",
                  "startTimeUnixNano": "1544712660000000000",
                  "endTimeUnixNano": "1544712661000000000",
                  "kind": 2,
                  "attributes": [
                    { "key": "my.span.attr", "value": { "stringValue": "some value" } }
                  ]
                }
              ]
            }
          ]
        }
      ]
    }"#;

    fn official_example_expected() -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![string_kv("service.name", "my.service")],
                    dropped_attributes_count: 0,
                    entity_refs: vec![],
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "my.library".into(),
                        version: "1.0.0".into(),
                        attributes: vec![string_kv("my.scope.attribute", "some scope attribute")],
                        dropped_attributes_count: 0,
                    }),
                    spans: vec![Span {
                        trace_id: unhex("5b8efff798038103d269b633813fc60c"),
                        span_id: unhex("eee19b7ec3c1b174"),
                        trace_state: String::new(),
                        parent_span_id: unhex("eee19b7ec3c1b173"),
                        flags: 0,
                        name: "I'm a server span".into(),
                        kind: SpanKind::Server as i32,
                        start_time_unix_nano: 1_544_712_660_000_000_000,
                        end_time_unix_nano: 1_544_712_661_000_000_000,
                        attributes: vec![string_kv("my.span.attr", "some value")],
                        dropped_attributes_count: 0,
                        events: vec![],
                        dropped_events_count: 0,
                        links: vec![],
                        dropped_links_count: 0,
                        status: None,
                    }],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    #[test]
    fn official_example() {
        let request = decode(OFFICIAL_EXAMPLE);
        let span = only_span(&request);
        assert_eq!(span.trace_id.len(), 16);
        assert_eq!(span.trace_id[0], 0x5b);
        assert_eq!(
            span.span_id,
            [0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74]
        );
        assert_eq!(
            span.parent_span_id,
            [0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x73]
        );
        assert_eq!(span.name, "I'm a server span");
        assert_eq!(span.kind, 2);
        assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
        assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
        let scope = request.resource_spans[0].scope_spans[0]
            .scope
            .as_ref()
            .unwrap();
        assert_eq!(
            (scope.name.as_str(), scope.version.as_str()),
            ("my.library", "1.0.0")
        );
        assert_eq!(request, official_example_expected());
    }

    #[test]
    fn all_span_fields() {
        let span = decode_span(
            r#""traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
               "parentSpanId": "", "traceState": "a=b", "flags": 257, "name": "n", "kind": 3,
               "startTimeUnixNano": "10", "endTimeUnixNano": 20,
               "droppedAttributesCount": 1, "droppedEventsCount": "2", "droppedLinksCount": 3,
               "events": [{"timeUnixNano": "15", "name": "ev", "droppedAttributesCount": 4,
                           "attributes": [{"key": "e", "value": {"intValue": "7"}}]}],
               "links": [{"traceId": "000102030405060708090a0b0c0d0e0f",
                          "spanId": "0001020304050607", "traceState": "c=d", "flags": 1,
                          "droppedAttributesCount": 5,
                          "attributes": [{"key": "l", "value": {"boolValue": true}}]}],
               "status": {"code": 2, "message": "boom"}"#,
        );
        let expected = Span {
            trace_id: unhex("5b8efff798038103d269b633813fc60c"),
            span_id: unhex("eee19b7ec3c1b174"),
            trace_state: "a=b".into(),
            parent_span_id: vec![],
            flags: 257,
            name: "n".into(),
            kind: SpanKind::Client as i32,
            start_time_unix_nano: 10,
            end_time_unix_nano: 20,
            attributes: vec![],
            dropped_attributes_count: 1,
            events: vec![Event {
                time_unix_nano: 15,
                name: "ev".into(),
                attributes: vec![kv("e", any_value::Value::IntValue(7))],
                dropped_attributes_count: 4,
            }],
            dropped_events_count: 2,
            links: vec![Link {
                trace_id: (0..16).collect(),
                span_id: (0..8).collect(),
                trace_state: "c=d".into(),
                attributes: vec![kv("l", any_value::Value::BoolValue(true))],
                dropped_attributes_count: 5,
                flags: 1,
            }],
            dropped_links_count: 3,
            status: Some(Status {
                message: "boom".into(),
                code: StatusCode::Error as i32,
            }),
        };
        assert_eq!(span, expected);
    }

    #[test]
    fn resource_scope_and_schema_urls() {
        let request = decode(
            r#"{"resourceSpans":[{"schemaUrl":"https://r","resource":{"droppedAttributesCount":2,
                 "entityRefs":[{"type":"service","idKeys":["service.name"],"descriptionKeys":[]}]},
                 "scopeSpans":[{"schemaUrl":"https://s","scope":{"name":"lib","droppedAttributesCount":"1"},
                 "spans":[]}]}]}"#,
        );
        let rs = &request.resource_spans[0];
        assert_eq!(rs.schema_url, "https://r");
        let resource = rs.resource.as_ref().unwrap();
        assert_eq!(resource.dropped_attributes_count, 2);
        assert_eq!(resource.entity_refs.len(), 1);
        assert_eq!(resource.entity_refs[0].r#type, "service");
        assert_eq!(resource.entity_refs[0].id_keys, ["service.name"]);
        let ss = &rs.scope_spans[0];
        assert_eq!(ss.schema_url, "https://s");
        let scope = ss.scope.as_ref().unwrap();
        assert_eq!(
            (scope.name.as_str(), scope.dropped_attributes_count),
            ("lib", 1)
        );
        assert!(ss.spans.is_empty());
    }

    #[test]
    fn times_as_numbers_or_strings() {
        let cases: &[(&str, u64)] = &[
            ("1544712660000000000", 1_544_712_660_000_000_000),
            (r#""1544712660000000000""#, 1_544_712_660_000_000_000),
            ("0", 0),
            (r#""0""#, 0),
            ("18446744073709551615", u64::MAX),
            (r#""18446744073709551615""#, u64::MAX),
            ("5.0", 5),
            ("1e6", 1_000_000),
        ];
        for &(json, expected) in cases {
            let span = decode_span(&format!(
                r#""startTimeUnixNano":{json},"end_time_unix_nano":{json},
                   "events":[{{"timeUnixNano":{json}}}]"#
            ));
            assert_eq!(span.start_time_unix_nano, expected, "{json}");
            assert_eq!(span.end_time_unix_nano, expected, "{json}");
            assert_eq!(span.events[0].time_unix_nano, expected, "{json}");
        }
    }

    #[test]
    fn small_ints_as_numbers_or_strings() {
        let cases: &[(&str, u32)] = &[("1", 1), (r#""1""#, 1), ("4294967295", u32::MAX)];
        for &(json, expected) in cases {
            let span = decode_span(&format!(
                r#""flags":{json},"droppedAttributesCount":{json},"droppedEventsCount":{json},
                   "droppedLinksCount":{json}"#
            ));
            assert_eq!(span.flags, expected, "{json}");
            assert_eq!(span.dropped_attributes_count, expected, "{json}");
            assert_eq!(span.dropped_events_count, expected, "{json}");
            assert_eq!(span.dropped_links_count, expected, "{json}");
        }
    }

    #[test]
    fn trace_ids() {
        let full = unhex("5b8efff798038103d269b633813fc60c");
        let cases: &[(&str, Vec<u8>)] = &[
            ("5B8EFFF798038103D269B633813FC60C", full.clone()),
            ("5b8efff798038103d269b633813fc60c", full.clone()),
            ("5b8EFFF798038103d269b633813FC60C", full.clone()),
            // base64 (proto3 JSON bytes): standard, unpadded, URL-safe
            ("W47/95gDgQPSabYzgT/GDA==", full.clone()),
            ("W47/95gDgQPSabYzgT/GDA", full.clone()),
            ("W47_95gDgQPSabYzgT_GDA==", full.clone()),
            ("", vec![]),
            // hex of another length is passed through for validation to reject
            ("0102030405", vec![1, 2, 3, 4, 5]),
            (
                "5b8efff798038103d269b633813fc60c00",
                [full.clone(), vec![0]].concat(),
            ),
            // hex digits only: hex, never unpadded base64 (which would be 16 bytes here)
            ("0123456789abcdef012345", unhex("0123456789abcdef012345")),
            // so is base64 of another length
            ("AQID", vec![1, 2, 3]),
            ("AQIDBA", vec![1, 2, 3, 4]),
        ];
        for (json, expected) in cases {
            let span = decode_span(&format!(r#""traceId":"{json}""#));
            assert_eq!(&span.trace_id, expected, "{json}");
            let span = decode_span(&format!(r#""links":[{{"traceId":"{json}"}}]"#));
            assert_eq!(&span.links[0].trace_id, expected, "link {json}");
        }
    }

    #[test]
    fn span_ids() {
        let full = unhex("eee19b7ec3c1b174");
        let cases: &[(&str, Vec<u8>)] = &[
            ("EEE19B7EC3C1B174", full.clone()),
            ("eee19b7ec3c1b174", full.clone()),
            ("7uGbfsPBsXQ=", full.clone()),
            ("7uGbfsPBsXQ", full.clone()),
            ("", vec![]),
            ("eee19b7ec3c1b1", full[..7].to_vec()),
            ("7uGbfsPBsQ==", unhex("eee19b7ec3c1b1")),
            // 32 hex chars: valid hex of the wrong length for a span id
            (
                "5b8efff798038103d269b633813fc60c",
                unhex("5b8efff798038103d269b633813fc60c"),
            ),
        ];
        for (json, expected) in cases {
            let span = decode_span(&format!(
                r#""spanId":"{json}","parentSpanId":"{json}","links":[{{"spanId":"{json}"}}]"#
            ));
            assert_eq!(&span.span_id, expected, "{json}");
            assert_eq!(&span.parent_span_id, expected, "parent {json}");
            assert_eq!(&span.links[0].span_id, expected, "link {json}");
        }
    }

    #[test]
    fn span_kinds() {
        let cases: &[(&str, i32)] = &[
            ("0", 0),
            ("2", 2),
            ("5", 5),
            ("9", 9), // unknown values are kept; validation decides
            (r#""3""#, 3),
            (r#""SPAN_KIND_UNSPECIFIED""#, 0),
            (r#""SPAN_KIND_INTERNAL""#, 1),
            (r#""SPAN_KIND_SERVER""#, 2),
            (r#""SPAN_KIND_CLIENT""#, 3),
            (r#""SPAN_KIND_PRODUCER""#, 4),
            (r#""SPAN_KIND_CONSUMER""#, 5),
            (r#""span_kind_consumer""#, 5),
            (r#""SERVER""#, 2),
            (r#""server""#, 2),
            (r#""Client""#, 3),
            (r#""internal""#, 1),
            ("null", 0),
        ];
        for &(json, expected) in cases {
            assert_eq!(
                decode_span(&format!(r#""kind":{json}"#)).kind,
                expected,
                "{json}"
            );
        }
    }

    #[test]
    fn status_codes() {
        let cases: &[(&str, i32)] = &[
            ("0", 0),
            ("1", 1),
            ("2", 2),
            (r#""2""#, 2),
            (r#""STATUS_CODE_UNSET""#, 0),
            (r#""STATUS_CODE_OK""#, 1),
            (r#""STATUS_CODE_ERROR""#, 2),
            (r#""UNSET""#, 0),
            (r#""OK""#, 1),
            (r#""ERROR""#, 2),
            (r#""error""#, 2),
            ("null", 0),
        ];
        for &(json, expected) in cases {
            let span = decode_span(&format!(r#""status":{{"code":{json},"message":"m"}}"#));
            let status = span.status.unwrap();
            assert_eq!(
                (status.code, status.message.as_str()),
                (expected, "m"),
                "{json}"
            );
        }
    }

    #[test]
    fn any_value_scalars() {
        use any_value::Value as V;
        let cases: &[(&str, Option<V>)] = &[
            (r#"{"stringValue":"s"}"#, Some(V::StringValue("s".into()))),
            (r#"{"stringValue":""}"#, Some(V::StringValue(String::new()))),
            (r#"{"boolValue":true}"#, Some(V::BoolValue(true))),
            (r#"{"boolValue":false}"#, Some(V::BoolValue(false))),
            (r#"{"boolValue":"true"}"#, Some(V::BoolValue(true))),
            (r#"{"intValue":42}"#, Some(V::IntValue(42))),
            (r#"{"intValue":-42}"#, Some(V::IntValue(-42))),
            (r#"{"intValue":"-42"}"#, Some(V::IntValue(-42))),
            (
                r#"{"intValue":"9223372036854775807"}"#,
                Some(V::IntValue(i64::MAX)),
            ),
            (
                r#"{"intValue":-9223372036854775808}"#,
                Some(V::IntValue(i64::MIN)),
            ),
            (r#"{"doubleValue":1.5}"#, Some(V::DoubleValue(1.5))),
            (r#"{"doubleValue":3}"#, Some(V::DoubleValue(3.0))),
            (r#"{"doubleValue":"2.25"}"#, Some(V::DoubleValue(2.25))),
            (
                r#"{"doubleValue":"Infinity"}"#,
                Some(V::DoubleValue(f64::INFINITY)),
            ),
            (
                r#"{"doubleValue":"-Infinity"}"#,
                Some(V::DoubleValue(f64::NEG_INFINITY)),
            ),
            (
                r#"{"bytesValue":"AP/+IGhlbGxv"}"#,
                Some(V::BytesValue(b"\x00\xff\xfe hello".to_vec())),
            ),
            (
                r#"{"bytesValue":"AP_-IGhlbGxv"}"#,
                Some(V::BytesValue(b"\x00\xff\xfe hello".to_vec())),
            ),
            (r#"{"bytesValue":""}"#, Some(V::BytesValue(vec![]))),
            (
                r#"{"string_value":"snake"}"#,
                Some(V::StringValue("snake".into())),
            ),
            (r#"{"int_value":"1"}"#, Some(V::IntValue(1))),
            // empty, unknown-only, or null-only: an AnyValue without a value
            ("{}", None),
            (r#"{"futureValue":1}"#, None),
            (r#"{"stringValue":null}"#, None),
            // a null sibling does not count as a second value
            (
                r#"{"stringValue":"s","intValue":null}"#,
                Some(V::StringValue("s".into())),
            ),
        ];
        for (json, expected) in cases {
            let value = decode_value(json).expect(json);
            assert_eq!(&value.value, expected, "{json}");
        }
        let nan = decode_value(r#"{"doubleValue":"NaN"}"#).unwrap();
        assert!(matches!(nan.value, Some(V::DoubleValue(f)) if f.is_nan()));
    }

    #[test]
    fn any_value_nested() {
        use any_value::Value as V;
        let value = decode_value(
            r#"{"arrayValue":{"values":[
                 {"stringValue":"a"},
                 {"intValue":"1"},
                 {},
                 {"arrayValue":{"values":[{"boolValue":true}]}},
                 {"kvlistValue":{"values":[
                    {"key":"x","value":{"doubleValue":0.5}},
                    {"key":"y","value":{"kvlistValue":{"values":[{"key":"z","value":{"bytesValue":"AQI="}}]}}},
                    {"key":"no value"}
                 ]}},
                 {"arrayValue":{}},
                 {"kvlistValue":{"values":null}}
               ]}}"#,
        )
        .unwrap();
        let expected = V::ArrayValue(ArrayValue {
            values: vec![
                AnyValue {
                    value: Some(V::StringValue("a".into())),
                },
                AnyValue {
                    value: Some(V::IntValue(1)),
                },
                AnyValue { value: None },
                AnyValue {
                    value: Some(V::ArrayValue(ArrayValue {
                        values: vec![AnyValue {
                            value: Some(V::BoolValue(true)),
                        }],
                    })),
                },
                AnyValue {
                    value: Some(V::KvlistValue(KeyValueList {
                        values: vec![
                            kv("x", V::DoubleValue(0.5)),
                            kv(
                                "y",
                                V::KvlistValue(KeyValueList {
                                    values: vec![kv("z", V::BytesValue(vec![1, 2]))],
                                }),
                            ),
                            KeyValue {
                                key: "no value".into(),
                                value: None,
                                key_strindex: 0,
                            },
                        ],
                    })),
                },
                AnyValue {
                    value: Some(V::ArrayValue(ArrayValue { values: vec![] })),
                },
                AnyValue {
                    value: Some(V::KvlistValue(KeyValueList { values: vec![] })),
                },
            ],
        });
        assert_eq!(value.value, Some(expected));
    }

    /// Nested containers, outermost first: `a` for an arrayValue, `k` for a kvlistValue; the
    /// innermost holds the string "leaf".
    fn nested(kinds: &str) -> String {
        let mut json = r#"{"stringValue":"leaf"}"#.to_string();
        for kind in kinds.chars().rev() {
            json = match kind {
                'a' => format!(r#"{{"arrayValue":{{"values":[{json}]}}}}"#),
                'k' => format!(r#"{{"kvlistValue":{{"values":[{{"key":"k","value":{json}}}]}}}}"#),
                _ => unreachable!(),
            };
        }
        json
    }

    /// Unwraps `kinds` levels of containers around the leaf.
    fn leaf(mut value: AnyValue, kinds: &str) -> AnyValue {
        for kind in kinds.chars() {
            value = match (kind, value.value) {
                ('a', Some(any_value::Value::ArrayValue(array))) => {
                    array.values.into_iter().next().unwrap()
                }
                ('k', Some(any_value::Value::KvlistValue(list))) => {
                    list.values.into_iter().next().unwrap().value.unwrap()
                }
                (kind, other) => panic!("expected {kind}, got {other:?}"),
            };
        }
        value
    }

    #[test]
    fn nesting_depth() {
        let max = MAX_ANY_VALUE_DEPTH;
        // At the limit: accepted, and the leaf is where it should be. (Each kvlist level costs
        // four JSON levels and serde_json stops at 128, so kvlists alone cannot reach 32.)
        let at_limit = [
            "a".repeat(max),
            format!("k{}", "a".repeat(max - 1)),
            "ak".repeat(max / 2),
            format!("{}{}", "k".repeat(max / 2), "a".repeat(max / 2)),
        ];
        for kinds in &at_limit {
            let value = decode_value(&nested(kinds)).expect(kinds);
            let leaf = leaf(value, kinds);
            assert_eq!(
                leaf.value,
                Some(any_value::Value::StringValue("leaf".into())),
                "{kinds}"
            );
        }

        // One past the limit: rejected with the path of the offending level.
        let err = decode_err(&with_value(&nested(&"a".repeat(max + 1))));
        let inner = ".arrayValue.values[0]".repeat(max);
        assert_eq!(
            err,
            format!(
                "{ATTR}{inner}.arrayValue: arrayValue/kvlistValue nested more than 32 levels deep"
            )
        );
        let err = decode_err(&with_value(&nested(&format!("{}k", "a".repeat(max)))));
        assert_eq!(
            err,
            format!(
                "{ATTR}{inner}.kvlistValue: arrayValue/kvlistValue nested more than 32 levels deep"
            )
        );
        let err = decode_err(&with_value(&nested(&format!("k{}", "a".repeat(max)))));
        let inner = ".arrayValue.values[0]".repeat(max - 1);
        assert_eq!(
            err,
            format!("{ATTR}.kvlistValue.values[0].value{inner}.arrayValue: arrayValue/kvlistValue nested more than 32 levels deep")
        );

        // A depth bomb: serde_json's own recursion limit stops it before we walk it.
        let bomb = with_value(&nested(&"a".repeat(1_000)));
        let err = decode_err(&bomb);
        assert!(
            err.starts_with("invalid json: recursion limit exceeded"),
            "{err}"
        );
        let bomb = with_value(&nested(&"k".repeat(1_000)));
        assert!(decode_err(&bomb).starts_with("invalid json: recursion limit exceeded"));
        let bomb = "[".repeat(1_000_000);
        assert!(decode_err(&bomb).starts_with("invalid json: recursion limit exceeded"));
    }

    #[test]
    fn snake_case_keys() {
        let snake = r#"{"resource_spans":[{"resource":{"attributes":[{"key":"service.name","value":{"string_value":"my.service"}}]},
            "scope_spans":[{"scope":{"name":"my.library","version":"1.0.0","attributes":[{"key":"my.scope.attribute","value":{"string_value":"some scope attribute"}}]},
            "spans":[{"trace_id":"5B8EFFF798038103D269B633813FC60C","span_id":"EEE19B7EC3C1B174","parent_span_id":"EEE19B7EC3C1B173",
            "name":"I'm a server span","start_time_unix_nano":"1544712660000000000","end_time_unix_nano":1544712661000000000,"kind":"SPAN_KIND_SERVER",
            "attributes":[{"key":"my.span.attr","value":{"string_value":"some value"}}]}]}]}]}"#;
        assert_eq!(decode(snake), official_example_expected());

        let span = decode_span(
            r#""trace_state":"t","dropped_attributes_count":1,"dropped_events_count":2,"dropped_links_count":3,
               "events":[{"time_unix_nano":4,"dropped_attributes_count":5}],
               "links":[{"trace_id":"00000000000000000000000000000001","span_id":"0000000000000002","trace_state":"u","dropped_attributes_count":6}]"#,
        );
        assert_eq!(span.trace_state, "t");
        assert_eq!(
            (
                span.dropped_attributes_count,
                span.dropped_events_count,
                span.dropped_links_count
            ),
            (1, 2, 3)
        );
        assert_eq!(
            (
                span.events[0].time_unix_nano,
                span.events[0].dropped_attributes_count
            ),
            (4, 5)
        );
        assert_eq!(span.links[0].trace_id[15], 1);
        assert_eq!(span.links[0].span_id[7], 2);
        assert_eq!(
            (
                span.links[0].trace_state.as_str(),
                span.links[0].dropped_attributes_count
            ),
            ("u", 6)
        );
        let request =
            decode(r#"{"resource_spans":[{"schema_url":"r","scope_spans":[{"schema_url":"s"}]}]}"#);
        assert_eq!(request.resource_spans[0].schema_url, "r");
        assert_eq!(request.resource_spans[0].scope_spans[0].schema_url, "s");
    }

    #[test]
    fn instrumentation_library_names() {
        let cases = [
            r#"{"resourceSpans":[{"instrumentationLibrarySpans":[{"instrumentationLibrary":{"name":"old","version":"1"},"spans":[{"name":"s"}]}]}]}"#,
            r#"{"resource_spans":[{"instrumentation_library_spans":[{"instrumentation_library":{"name":"old","version":"1"},"spans":[{"name":"s"}]}]}]}"#,
            // both spellings, the new one empty (as senders did during the transition)
            r#"{"resourceSpans":[{"scopeSpans":[],"instrumentationLibrarySpans":[{"instrumentationLibrary":{"name":"old","version":"1"},"spans":[{"name":"s"}]}]}]}"#,
        ];
        for json in cases {
            let request = decode(json);
            let scope_spans = &request.resource_spans[0].scope_spans[0];
            let scope = scope_spans.scope.as_ref().expect(json);
            assert_eq!(
                (scope.name.as_str(), scope.version.as_str()),
                ("old", "1"),
                "{json}"
            );
            assert_eq!(only_span(&request).name, "s", "{json}");
        }
        // When both are non-empty, scopeSpans wins.
        let request = decode(
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"new"}]}],"instrumentationLibrarySpans":[{"spans":[{"name":"old"}]}]}]}"#,
        );
        assert_eq!(only_span(&request).name, "new");
    }

    #[test]
    fn unknown_fields_ignored() {
        let noisy = r#"{"futureTopLevel":[1,2,{"x":null}],"resourceSpans":[{"unknown":1,"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"my.service"},"extra":true}],"entityRefs":null,"weird":{}},
            "scopeSpans":[{"scope":{"name":"my.library","version":"1.0.0","attributes":[{"key":"my.scope.attribute","value":{"stringValue":"some scope attribute"}}],"other":"x"},
            "spans":[{"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174","parentSpanId":"EEE19B7EC3C1B173","newField":{"deep":[1]},
            "name":"I'm a server span","startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000","kind":2,
            "attributes":[{"key":"my.span.attr","value":{"stringValue":"some value"}}]}],"more":1}]}]}"#;
        assert_eq!(decode(noisy), official_example_expected());
        let status = decode_span(r#""status":{"deprecatedCode":1,"code":1}"#)
            .status
            .unwrap();
        assert_eq!(status.code, 1);
    }

    #[test]
    fn null_fields_are_absent() {
        let span = decode_span(
            r#""traceId":null,"spanId":null,"parentSpanId":null,"traceState":null,"flags":null,
               "name":null,"kind":null,"startTimeUnixNano":null,"endTimeUnixNano":null,
               "attributes":null,"droppedAttributesCount":null,"events":null,"droppedEventsCount":null,
               "links":null,"droppedLinksCount":null,"status":null"#,
        );
        assert_eq!(span, Span::default());
        let request = decode(
            r#"{"resourceSpans":[{"resource":null,"schemaUrl":null,"scopeSpans":[{"scope":null,"spans":null,"schemaUrl":null}]}]}"#,
        );
        assert_eq!(request.resource_spans[0].resource, None);
        assert_eq!(
            request.resource_spans[0].scope_spans[0],
            ScopeSpans::default()
        );
        let span = decode_span(
            r#""attributes":[{"key":"k","value":null},{"key":null,"value":{"stringValue":"v"}}]"#,
        );
        assert_eq!(
            span.attributes[0],
            KeyValue {
                key: "k".into(),
                value: None,
                key_strindex: 0
            }
        );
        assert_eq!(span.attributes[1], string_kv("", "v"));
        assert_eq!(
            decode(r#"{"resourceSpans":null}"#),
            ExportTraceServiceRequest::default()
        );
    }

    #[test]
    fn empty_requests() {
        let cases = ["{}", " { } ", r#"{"resourceSpans":[]}"#, "\u{feff}{}"];
        for json in cases {
            assert_eq!(
                decode(json),
                ExportTraceServiceRequest::default(),
                "{json:?}"
            );
        }
        let request = decode(r#"{"resourceSpans":[{}]}"#);
        assert_eq!(request.resource_spans, [ResourceSpans::default()]);
        // An empty resource / scope object is present, not absent.
        let request = decode(r#"{"resourceSpans":[{"resource":{},"scopeSpans":[{"scope":{}}]}]}"#);
        assert_eq!(
            request.resource_spans[0].resource,
            Some(Resource::default())
        );
        assert_eq!(
            request.resource_spans[0].scope_spans[0].scope,
            Some(InstrumentationScope::default())
        );
    }

    #[test]
    fn errors() {
        let span = |fields: &str| with_span(fields);
        let value = |json: &str| with_value(json);
        let cases: Vec<(String, String)> = vec![
            // top level
            ("[]".into(), "expected a json object at the top level, got an array".into()),
            (r#""x""#.into(), "expected a json object at the top level, got a string".into()),
            ("null".into(), "expected a json object at the top level, got null".into()),
            ("12".into(), "expected a json object at the top level, got a number".into()),
            (r#"{"resourceSpans":{}}"#.into(), "resourceSpans: expected an array, got an object".into()),
            (r#"{"resource_spans":[1]}"#.into(), "resource_spans[0]: expected an object, got a number".into()),
            (r#"{"resourceSpans":[{"resource":[]}]}"#.into(), "resourceSpans[0].resource: expected an object, got an array".into()),
            (r#"{"resourceSpans":[{"scopeSpans":[{"scope":{"name":1}}]}]}"#.into(), "resourceSpans[0].scopeSpans[0].scope.name: expected a string, got a number".into()),
            (r#"{"resourceSpans":[{"scopeSpans":[{"spans":[null]}]}]}"#.into(), format!("{SPAN}: expected an object, got null")),
            // ids
            (span(r#""traceId":"5B8EFFF798038103D269B633813FC6!C""#), format!(r#"{SPAN}.traceId: expected 32 hex characters (or base64 of 16 bytes), got "5B8EFFF798038103D269B633813FC6!C""#)),
            (span(r#""spanId":"not hex, not base64""#), format!(r#"{SPAN}.spanId: expected 16 hex characters (or base64 of 8 bytes), got "not hex, not base64""#)),
            (span(r#""spanId":"eee19b7ec3c""#), format!(r#"{SPAN}.spanId: expected 16 hex characters (or base64 of 8 bytes), got "eee19b7ec3c""#)),
            (span(r#""traceId":"5B8EFFF798038103D269B633813FC60""#), format!(r#"{SPAN}.traceId: expected 32 hex characters (or base64 of 16 bytes), got "5B8EFFF798038103D269B633813FC60""#)),
            (span(r#""parentSpanId":"EEE19B7EC3C1B17""#), format!(r#"{SPAN}.parentSpanId: expected 16 hex characters (or base64 of 8 bytes), got "EEE19B7EC3C1B17""#)),
            (span(r#""links":[{"traceId":"%%%"}]"#), format!(r#"{SPAN}.links[0].traceId: expected 32 hex characters (or base64 of 16 bytes), got "%%%""#)),
            (span(r#""traceId":123"#), format!("{SPAN}.traceId: expected a hex string, got a number")),
            // enums
            (span(r#""kind":"SERVERX""#), format!(r#"{SPAN}.kind: unknown span kind "SERVERX"; expected an integer or an enum name"#)),
            (span(r#""kind":"STATUS_CODE_OK""#), format!(r#"{SPAN}.kind: unknown span kind "STATUS_CODE_OK"; expected an integer or an enum name"#)),
            (span(r#""status":{"code":"FAILED"}"#), format!(r#"{SPAN}.status.code: unknown status code "FAILED"; expected an integer or an enum name"#)),
            (span(r#""kind":true"#), format!("{SPAN}.kind: expected an enum integer or name, got a boolean")),
            (span(r#""kind":4294967296"#), format!("{SPAN}.kind: span kind 4294967296 is out of range")),
            (span(r#""kind":1.5"#), format!("{SPAN}.kind: expected an integer, got the fractional number 1.5")),
            // integers
            (span(r#""startTimeUnixNano":1.5"#), format!("{SPAN}.startTimeUnixNano: expected an integer, got the fractional number 1.5")),
            (span(r#""startTimeUnixNano":"1.5""#), format!(r#"{SPAN}.startTimeUnixNano: expected an integer or a decimal string, got "1.5""#)),
            (span(r#""endTimeUnixNano":-1"#), format!("{SPAN}.endTimeUnixNano: expected a non-negative integer, got -1")),
            (span(r#""endTimeUnixNano":"-1""#), format!(r#"{SPAN}.endTimeUnixNano: expected a non-negative integer, got "-1""#)),
            (span(r#""endTimeUnixNano":-1.0"#), format!("{SPAN}.endTimeUnixNano: expected a non-negative integer, got -1.0")),
            (span(r#""startTimeUnixNano":true"#), format!("{SPAN}.startTimeUnixNano: expected an integer or a decimal string, got a boolean")),
            (span(r#""startTimeUnixNano":"soon""#), format!(r#"{SPAN}.startTimeUnixNano: expected an integer or a decimal string, got "soon""#)),
            (span(r#""startTimeUnixNano":"18446744073709551616""#), format!(r#"{SPAN}.startTimeUnixNano: integer "18446744073709551616" is out of range for a 64-bit unsigned integer"#)),
            (span(r#""startTimeUnixNano":18446744073709551616"#), format!("{SPAN}.startTimeUnixNano: integer 1.8446744073709552e+19 is out of range or not exact as a json float; send it as a decimal string")),
            (span(r#""events":[{"timeUnixNano":2.5}]"#), format!("{SPAN}.events[0].timeUnixNano: expected an integer, got the fractional number 2.5")),
            (span(r#""droppedAttributesCount":4294967296"#), format!("{SPAN}.droppedAttributesCount: integer 4294967296 is out of range for a 32-bit unsigned integer")),
            (span(r#""flags":-1"#), format!("{SPAN}.flags: expected a non-negative integer, got -1")),
            (span(r#""name":5"#), format!("{SPAN}.name: expected a string, got a number")),
            (span(r#""status":"ERROR""#), format!("{SPAN}.status: expected an object, got a string")),
            // attribute values
            (value(r#""plain""#), format!("{ATTR}: expected an object, got a string")),
            (value(r#"{"bytesValue":"***"}"#), format!(r#"{ATTR}.bytesValue: expected a base64 string, got "***""#)),
            (value(r#"{"bytesValue":[1]}"#), format!("{ATTR}.bytesValue: expected a base64 string, got an array")),
            (value(r#"{"intValue":"9223372036854775808"}"#), format!(r#"{ATTR}.intValue: integer "9223372036854775808" is out of range for a 64-bit signed integer"#)),
            (value(r#"{"intValue":9223372036854775808}"#), format!("{ATTR}.intValue: integer 9223372036854775808 is out of range for a 64-bit signed integer")),
            (value(r#"{"intValue":0.5}"#), format!("{ATTR}.intValue: expected an integer, got the fractional number 0.5")),
            (value(r#"{"doubleValue":"fast"}"#), format!(r#"{ATTR}.doubleValue: expected a number, "NaN", "Infinity" or "-Infinity", got "fast""#)),
            (value(r#"{"boolValue":1}"#), format!("{ATTR}.boolValue: expected a boolean, got a number")),
            (value(r#"{"stringValue":1}"#), format!("{ATTR}.stringValue: expected a string, got a number")),
            (value(r#"{"stringValue":"a","intValue":1}"#), format!("{ATTR}: expected at most one of the anyvalue fields, got both stringValue and intValue")),
            (value(r#"{"arrayValue":[]}"#), format!("{ATTR}.arrayValue: expected an object, got an array")),
            (value(r#"{"arrayValue":{"values":[{"intValue":"x"}]}}"#), format!(r#"{ATTR}.arrayValue.values[0].intValue: expected an integer or a decimal string, got "x""#)),
            (value(r#"{"kvlistValue":{"values":[{"key":"a","value":{"doubleValue":{}}}]}}"#), format!("{ATTR}.kvlistValue.values[0].value.doubleValue: expected a number, got an object")),
            (value(r#"{"kvlistValue":{"values":{}}}"#), format!("{ATTR}.kvlistValue.values: expected an array, got an object")),
        ];
        for (json, expected) in &cases {
            assert_eq!(&decode_err(json), expected, "{json}");
        }
    }

    #[test]
    fn invalid_json() {
        for json in ["", "{", "{\"resourceSpans\":[}", "nope", "{}{}", "\u{feff}"] {
            let err = decode_err(json);
            assert!(err.starts_with("invalid json: "), "{json:?}: {err}");
        }
        let err = decode_request(b"{\"a\":\"\xff\"}").unwrap_err();
        assert!(err.message.starts_with("invalid json: "), "{err}");
    }

    #[test]
    fn error_paths_index_the_right_element() {
        let json = r#"{"resourceSpans":[{},{"scopeSpans":[{"spans":[]},{"spans":[{},{},{},{"startTimeUnixNano":false}]}]}]}"#;
        assert_eq!(
            decode_err(json),
            "resourceSpans[1].scopeSpans[1].spans[3].startTimeUnixNano: expected an integer or a decimal string, got a boolean"
        );
        let json = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"a","value":{}},{"key":"b","value":{"intValue":[]}}]}}]}"#;
        assert_eq!(
            decode_err(json),
            "resourceSpans[0].resource.attributes[1].value.intValue: expected an integer or a decimal string, got an array"
        );
        let long = "z".repeat(100);
        let err = decode_err(&with_span(&format!(r#""traceId":"{long}!""#)));
        assert!(
            err.ends_with(&format!(r#"got "{}...""#, "z".repeat(64))),
            "{err}"
        );
        let err = decode_err(&with_value("{\"bytesValue\":\"a\\\"\\n\"}"));
        assert!(err.ends_with(r#"got "a\"\n""#), "{err}");
    }

    #[test]
    fn encode_responses() {
        let partial = |rejected_spans: i64, error_message: &str| ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans,
                error_message: error_message.to_string(),
            }),
        };
        let cases: &[(ExportTraceServiceResponse, &str)] = &[
            (
                ExportTraceServiceResponse {
                    partial_success: None,
                },
                "{}",
            ),
            (partial(0, ""), "{}"),
            (
                partial(3, "span 2: invalid trace id"),
                r#"{"partialSuccess":{"rejectedSpans":"3","errorMessage":"span 2: invalid trace id"}}"#,
            ),
            (
                partial(1, ""),
                r#"{"partialSuccess":{"rejectedSpans":"1"}}"#,
            ),
            (
                partial(0, "warning"),
                r#"{"partialSuccess":{"errorMessage":"warning"}}"#,
            ),
            (
                partial(9_007_199_254_740_993, "quote \" backslash \\ newline \n é"),
                r#"{"partialSuccess":{"rejectedSpans":"9007199254740993","errorMessage":"quote \" backslash \\ newline \n é"}}"#,
            ),
        ];
        for (response, expected) in cases {
            let bytes = encode_response(response);
            assert_eq!(String::from_utf8(bytes.clone()).unwrap(), *expected);
            serde_json::from_slice::<Value>(&bytes).expect("valid json");
        }
    }

    #[test]
    fn encode_statuses() {
        let cases: &[(i32, &str, &str)] = &[
            (
                3,
                "resourceSpans: expected an array",
                r#"{"code":3,"message":"resourceSpans: expected an array"}"#,
            ),
            (0, "", r#"{"code":0,"message":""}"#),
            (
                8,
                "too \"big\"\t",
                r#"{"code":8,"message":"too \"big\"\t"}"#,
            ),
            (13, "\u{1}", r#"{"code":13,"message":"\u0001"}"#),
        ];
        for &(code, message, expected) in cases {
            let status = RpcStatus {
                code,
                message: message.to_string(),
            };
            let bytes = encode_status(&status);
            assert_eq!(String::from_utf8(bytes.clone()).unwrap(), expected);
            let parsed: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(parsed["message"], message);
        }
    }

    #[test]
    fn decode_error_message_is_the_display() {
        let err = decode_request(b"[]").unwrap_err();
        assert_eq!(err.to_string(), err.message);
    }
}
