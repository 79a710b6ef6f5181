//! Span rows back as OTLP/JSON `ResourceSpans`: Jaeger's api_v3 prints ids as hex and enums as
//! numbers (the OTLP/JSON rules), Tempo prints ids as base64 and enums by name (gogo jsonpb).

use std::collections::HashMap;

use base64::Engine;
use serde_json::{json, Value};
use spanflow_model::{AttrValue, Attribute, SpanKind, SpanRow};

/// How ids and enums are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// OTLP/JSON: lowercase hex ids, enums as integers (Jaeger api_v3).
    Otlp,
    /// Tempo: base64 ids, enums by name.
    Tempo,
}

impl Style {
    fn id(self, bytes: &[u8]) -> Value {
        match self {
            Style::Otlp => Value::String(hex::encode(bytes)),
            Style::Tempo => Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
        }
    }

    fn kind(self, kind: SpanKind) -> Value {
        match self {
            Style::Otlp => json!(kind.as_u8()),
            Style::Tempo => json!(match kind {
                SpanKind::Unspecified => "SPAN_KIND_UNSPECIFIED",
                SpanKind::Internal => "SPAN_KIND_INTERNAL",
                SpanKind::Server => "SPAN_KIND_SERVER",
                SpanKind::Client => "SPAN_KIND_CLIENT",
                SpanKind::Producer => "SPAN_KIND_PRODUCER",
                SpanKind::Consumer => "SPAN_KIND_CONSUMER",
            }),
        }
    }

    fn status_code(self, code: u8) -> Value {
        match self {
            Style::Otlp => json!(code),
            Style::Tempo => json!(match code {
                1 => "STATUS_CODE_OK",
                2 => "STATUS_CODE_ERROR",
                _ => "STATUS_CODE_UNSET",
            }),
        }
    }
}

/// An attribute value as OTLP/JSON's `AnyValue`; 64-bit integers as strings.
pub fn any_value(value: &AttrValue) -> Value {
    match value {
        AttrValue::String(text) => json!({ "stringValue": text }),
        AttrValue::Bool(value) => json!({ "boolValue": value }),
        AttrValue::Int(value) => json!({ "intValue": value.to_string() }),
        AttrValue::Double(value) if value.is_finite() => json!({ "doubleValue": value }),
        AttrValue::Double(value) => json!({ "doubleValue": value.to_string() }),
        AttrValue::Bytes(bytes) => json!({
            "bytesValue": base64::engine::general_purpose::STANDARD.encode(bytes)
        }),
        AttrValue::Array(values) => json!({
            "arrayValue": { "values": values.iter().map(any_value).collect::<Vec<_>>() }
        }),
        AttrValue::KeyValueList(attributes) => json!({
            "kvlistValue": { "values": key_values(attributes) }
        }),
        AttrValue::Empty => json!({}),
    }
}

pub fn key_values(attributes: &[Attribute]) -> Vec<Value> {
    attributes
        .iter()
        .map(|attribute| json!({ "key": attribute.key, "value": any_value(&attribute.value) }))
        .collect()
}

/// A row's resource attributes, with `service.name` from the row when the resource lacks it.
pub fn resource_attributes(row: &SpanRow) -> Vec<Attribute> {
    let mut attributes = row.resource_attributes.to_vec();
    if !attributes
        .iter()
        .any(|attribute| attribute.key == "service.name")
    {
        attributes.insert(
            0,
            Attribute::new("service.name", AttrValue::String(row.app_service.clone())),
        );
    }
    attributes
}

/// One span as an OTLP/JSON `Span`.
pub fn span(row: &SpanRow, style: Style) -> Value {
    let mut span = json!({
        "traceId": style.id(row.trace_id.as_bytes()),
        "spanId": style.id(row.span_id.as_bytes()),
        "name": row.endpoint,
        "kind": style.kind(row.span_kind),
        "startTimeUnixNano": (i128::from(row.start_time) * 1_000).to_string(),
        "endTimeUnixNano": (i128::from(row.end_time) * 1_000).to_string(),
        "attributes": key_values(&row.attributes),
        "events": row.events.iter().map(|event| json!({
            "timeUnixNano": (i128::from(event.time_us) * 1_000).to_string(),
            "name": event.name,
            "attributes": key_values(&event.attributes),
            "droppedAttributesCount": event.dropped_attributes_count,
        })).collect::<Vec<_>>(),
        "links": row.links.iter().map(|link| json!({
            "traceId": style.id(link.trace_id.as_bytes()),
            "spanId": style.id(link.span_id.as_bytes()),
            "traceState": link.trace_state,
            "attributes": key_values(&link.attributes),
            "droppedAttributesCount": link.dropped_attributes_count,
            "flags": link.flags,
        })).collect::<Vec<_>>(),
        "status": {
            "code": style.status_code(row.status_code),
            "message": row.status_message,
        },
        "flags": row.flags,
        "droppedAttributesCount": row.dropped_attributes_count,
        "droppedEventsCount": row.dropped_events_count,
        "droppedLinksCount": row.dropped_links_count,
    });
    let object = span.as_object_mut().expect("an object");
    if let Some(parent) = row.parent_span_id {
        object.insert("parentSpanId".into(), style.id(parent.as_bytes()));
    }
    if !row.trace_state.is_empty() {
        object.insert("traceState".into(), json!(row.trace_state));
    }
    span
}

/// The rows of one resource: its attributes and its scopes, each with its rows.
pub struct ResourceGroup<'a> {
    pub attributes: Vec<Attribute>,
    /// ((scope name, scope version), rows)
    pub scopes: Vec<((String, String), Vec<&'a SpanRow>)>,
}

/// Rows grouped by resource, then by scope, in the order the rows first name them.
pub fn group<'a>(rows: impl IntoIterator<Item = &'a SpanRow>) -> Vec<ResourceGroup<'a>> {
    let mut groups: Vec<ResourceGroup<'a>> = Vec::new();
    let mut by_resource: HashMap<String, usize> = HashMap::new();
    for row in rows {
        let attributes = resource_attributes(row);
        let key = format!("{:?}", attributes);
        let index = *by_resource.entry(key).or_insert_with(|| {
            groups.push(ResourceGroup {
                attributes,
                scopes: Vec::new(),
            });
            groups.len() - 1
        });
        let scopes = &mut groups[index].scopes;
        let scope = (row.scope_name.clone(), row.scope_version.clone());
        match scopes.iter_mut().find(|(name, _)| *name == scope) {
            Some((_, spans)) => spans.push(row),
            None => scopes.push((scope, vec![row])),
        }
    }
    groups
}

/// Rows as `ResourceSpans`, one per resource, each with one `ScopeSpans` per scope, in the
/// order the rows first name them.
pub fn resource_spans<'a>(rows: impl IntoIterator<Item = &'a SpanRow>, style: Style) -> Vec<Value> {
    group(rows)
        .into_iter()
        .map(|group| {
            json!({
                "resource": { "attributes": key_values(&group.attributes) },
                "scopeSpans": group.scopes.into_iter().map(|((name, version), rows)| json!({
                    "scope": { "name": name, "version": version },
                    "spans": rows.into_iter().map(|row| span(row, style)).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect()
}
