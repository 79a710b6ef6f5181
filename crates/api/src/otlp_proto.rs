//! Span rows back as OTLP protobuf, for clients that ask for it (Grafana's Tempo data source
//! sends `Accept: application/protobuf`). Tempo's `Trace` message is `repeated ResourceSpans
//! batches = 1`, so it is written here field by field rather than generated.

use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use spanflow_model::{AttrValue, Attribute, SpanRow};

use crate::otlp_json::group;

fn any_value(value: &AttrValue) -> AnyValue {
    let value = match value {
        AttrValue::String(text) => any_value::Value::StringValue(text.clone()),
        AttrValue::Bool(value) => any_value::Value::BoolValue(*value),
        AttrValue::Int(value) => any_value::Value::IntValue(*value),
        AttrValue::Double(value) => any_value::Value::DoubleValue(*value),
        AttrValue::Bytes(bytes) => any_value::Value::BytesValue(bytes.clone()),
        AttrValue::Array(values) => any_value::Value::ArrayValue(ArrayValue {
            values: values.iter().map(any_value).collect(),
        }),
        AttrValue::KeyValueList(attributes) => any_value::Value::KvlistValue(KeyValueList {
            values: key_values(attributes),
        }),
        AttrValue::Empty => return AnyValue { value: None },
    };
    AnyValue { value: Some(value) }
}

fn key_values(attributes: &[Attribute]) -> Vec<KeyValue> {
    attributes
        .iter()
        .map(|attribute| KeyValue {
            key: attribute.key.clone(),
            value: Some(any_value(&attribute.value)),
            ..KeyValue::default()
        })
        .collect()
}

fn nanos(micros: i64) -> u64 {
    u64::try_from(micros)
        .unwrap_or_default()
        .saturating_mul(1_000)
}

fn span(row: &SpanRow) -> Span {
    Span {
        trace_id: row.trace_id.as_bytes().to_vec(),
        span_id: row.span_id.as_bytes().to_vec(),
        trace_state: row.trace_state.clone(),
        parent_span_id: row
            .parent_span_id
            .map(|id| id.as_bytes().to_vec())
            .unwrap_or_default(),
        flags: row.flags,
        name: row.endpoint.clone(),
        kind: i32::from(row.span_kind.as_u8()),
        start_time_unix_nano: nanos(row.start_time),
        end_time_unix_nano: nanos(row.end_time),
        attributes: key_values(&row.attributes),
        dropped_attributes_count: row.dropped_attributes_count,
        events: row
            .events
            .iter()
            .map(|event| span::Event {
                time_unix_nano: nanos(event.time_us),
                name: event.name.clone(),
                attributes: key_values(&event.attributes),
                dropped_attributes_count: event.dropped_attributes_count,
            })
            .collect(),
        dropped_events_count: row.dropped_events_count,
        links: row
            .links
            .iter()
            .map(|link| span::Link {
                trace_id: link.trace_id.as_bytes().to_vec(),
                span_id: link.span_id.as_bytes().to_vec(),
                trace_state: link.trace_state.clone(),
                attributes: key_values(&link.attributes),
                dropped_attributes_count: link.dropped_attributes_count,
                flags: link.flags,
            })
            .collect(),
        dropped_links_count: row.dropped_links_count,
        status: Some(Status {
            message: row.status_message.clone(),
            code: i32::from(row.status_code),
        }),
    }
}

/// Rows as `ResourceSpans` messages, grouped as the JSON form groups them.
pub fn resource_spans(rows: &[SpanRow]) -> Vec<ResourceSpans> {
    group(rows)
        .into_iter()
        .map(|group| ResourceSpans {
            resource: Some(Resource {
                attributes: key_values(&group.attributes),
                dropped_attributes_count: 0,
                entity_refs: Vec::new(),
            }),
            scope_spans: group
                .scopes
                .into_iter()
                .map(|((name, version), rows)| ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name,
                        version,
                        attributes: Vec::new(),
                        dropped_attributes_count: 0,
                    }),
                    spans: rows.into_iter().map(span).collect(),
                    schema_url: String::new(),
                })
                .collect(),
            schema_url: String::new(),
        })
        .collect()
}

/// Tempo's `Trace`: field 1 repeated `ResourceSpans`.
pub fn tempo_trace(rows: &[SpanRow]) -> Vec<u8> {
    let mut out = Vec::new();
    for resource_spans in resource_spans(rows) {
        prost::encoding::message::encode(1, &resource_spans, &mut out);
    }
    out
}

/// Tempo's v2 `TraceByIDResponse`: field 1 the `Trace`, status `COMPLETE` (0, not written).
pub fn tempo_trace_by_id_response(rows: &[SpanRow]) -> Vec<u8> {
    let trace = tempo_trace(rows);
    let mut out = Vec::with_capacity(trace.len() + 8);
    prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(trace.len() as u64, &mut out);
    out.extend_from_slice(&trace);
    out
}
