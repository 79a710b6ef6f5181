//! Span rows as JSON objects whose keys are the row's column names.

use base64::Engine;
use serde_json::{json, Map, Value};
use spanflow_model::{AttrValue, Attribute, ObservationPoint, Place, SpanRow};

/// The side of the call a span ran on: 0 (the client end, `place_0`) for client and producer
/// spans, 1 (the server end, `place_1`) for the others, as the server tags them.
pub(crate) fn own_side(row: &SpanRow) -> u8 {
    if row.observation_point == ObservationPoint::ClientApp {
        0
    } else {
        1
    }
}

/// The place of one side of a span's call.
pub(crate) fn place_of(row: &SpanRow, side: u8) -> &Place {
    if side == 0 {
        &row.place_0
    } else {
        &row.place_1
    }
}

/// One span row as a JSON object keyed by column name. Where each end of the call ran is in
/// `place_0` (the client end) and `place_1` (the server end), each left out when nothing is
/// known of it.
pub fn span_json(row: &SpanRow) -> Value {
    let tags = &row.resource;
    let mut span = json!({
        "time": row.time,
        "start_time": row.start_time,
        "end_time": row.end_time,
        "trace_id": row.trace_id.to_hex(),
        "span_id": row.span_id.to_hex(),
        "parent_span_id": row.parent_span_id.map(|id| id.to_hex()).unwrap_or_default(),
        "span_kind": row.span_kind.as_u8(),
        "span_kind_str": row.span_kind.as_str(),
        "observation_point": row.observation_point.as_str(),
        "trace_state": row.trace_state,
        "flags": row.flags,
        "endpoint": row.endpoint,
        "app_service": row.app_service,
        "app_instance": row.app_instance,
        "signal_source": row.signal_source,
        "agent_id": row.agent_id,
        "l7_protocol": row.l7_protocol.as_u8(),
        "l7_protocol_str": row.l7_protocol_str,
        "version": row.version,
        "is_tls": row.is_tls,
        "protocol": row.protocol,
        "request_type": row.request_type,
        "request_domain": row.request_domain,
        "request_resource": row.request_resource,
        "request_length": row.request_length,
        "response_length": row.response_length,
        "response_code": row.response_code,
        "response_status": row.response_status.as_u8(),
        "response_status_str": row.response_status.as_str(),
        "response_exception": row.response_exception,
        "status_code": row.status_code,
        "status_message": row.status_message,
        "response_duration": row.response_duration,
        "ip_0": row.ip_0.map(|ip| ip.to_string()),
        "ip_1": row.ip_1.map(|ip| ip.to_string()),
        "client_port": row.client_port,
        "server_port": row.server_port,
        "scope_name": row.scope_name,
        "scope_version": row.scope_version,
        "host_name": tags.host_name,
        "container_id": tags.container_id,
        "k8s_cluster_name": tags.k8s_cluster_name,
        "k8s_namespace_name": tags.k8s_namespace_name,
        "k8s_node_name": tags.k8s_node_name,
        "k8s_pod_name": tags.k8s_pod_name,
        "k8s_pod_uid": tags.k8s_pod_uid,
        "k8s_workload_kind": tags.k8s_workload_kind,
        "k8s_workload_name": tags.k8s_workload_name,
        "service_namespace": tags.service_namespace,
        "service_version": tags.service_version,
        "deployment_environment": tags.deployment_environment,
        "attributes": attributes_json(&row.attributes),
        "resource_attributes": attributes_json(&row.resource_attributes),
        "events": row.events.iter().map(|event| json!({
            "time": event.time_us,
            "name": event.name,
            "attributes": attributes_json(&event.attributes),
            "dropped_attributes_count": event.dropped_attributes_count,
        })).collect::<Vec<_>>(),
        "links": row.links.iter().map(|link| json!({
            "trace_id": link.trace_id.to_hex(),
            "span_id": link.span_id.to_hex(),
            "trace_state": link.trace_state,
            "attributes": attributes_json(&link.attributes),
            "dropped_attributes_count": link.dropped_attributes_count,
            "flags": link.flags,
        })).collect::<Vec<_>>(),
        "dropped_attributes_count": row.dropped_attributes_count,
        "dropped_events_count": row.dropped_events_count,
        "dropped_links_count": row.dropped_links_count,
    });
    let object = span.as_object_mut().expect("a row is an object");
    for (key, place) in [("place_0", &row.place_0), ("place_1", &row.place_1)] {
        if let Some(place) = place_json(place) {
            object.insert(key.into(), place);
        }
    }
    span
}

/// One end's place with DeepFlow's field names (`pod`, `pod_ns`, `pod_group`, ...), its empty
/// fields left out; `None` when nothing is known.
pub fn place_json(place: &Place) -> Option<Value> {
    if place.is_unknown() {
        return None;
    }
    let mut object = Map::new();
    for (name, field) in Place::TEXT_COLUMNS {
        let value = field(place);
        if value.is_empty() {
            continue;
        }
        object.insert(name.into(), Value::String(value.clone()));
        // A kind says something only of a name that is there.
        if name == "auto_instance" {
            object.insert(
                "auto_instance_type".into(),
                json!(place.auto_instance_type.as_str()),
            );
        } else if name == "auto_service" {
            object.insert(
                "auto_service_type".into(),
                json!(place.auto_service_type.as_str()),
            );
        }
    }
    if !place.labels.is_empty() {
        let labels: Map<String, Value> = place
            .labels
            .iter()
            .map(|(key, value)| (key.clone(), Value::String(value.clone())))
            .collect();
        object.insert("labels".into(), Value::Object(labels));
    }
    (!object.is_empty()).then_some(Value::Object(object))
}

/// Attributes as a JSON object, values keeping their JSON type.
pub fn attributes_json(attributes: &[Attribute]) -> Value {
    let mut object = Map::with_capacity(attributes.len());
    for attribute in attributes {
        object.insert(attribute.key.clone(), value_json(&attribute.value));
    }
    Value::Object(object)
}

pub(crate) fn value_json(value: &AttrValue) -> Value {
    match value {
        AttrValue::String(text) => Value::String(text.clone()),
        AttrValue::Bool(value) => Value::Bool(*value),
        AttrValue::Int(value) => json!(value),
        // NaN and the infinities have no JSON number; print them as OTLP/JSON does.
        AttrValue::Double(value) if !value.is_finite() => Value::String(value.to_string()),
        AttrValue::Double(value) => json!(value),
        AttrValue::Bytes(bytes) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        AttrValue::Array(values) => Value::Array(values.iter().map(value_json).collect()),
        AttrValue::KeyValueList(attributes) => attributes_json(attributes),
        AttrValue::Empty => Value::Null,
    }
}
