//! What the fuzz targets share: the checks every decoded OTLP request and every row must pass
//! on their way from the agent to the store, written independently of the code they check.

use std::net::{IpAddr, Ipv4Addr};

use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use spanflow_model::{AttrValue, Attribute, SpanRow};
use spanflow_otlp::limits::{SpanLimits, TRUNCATED_ATTRIBUTE};
use spanflow_otlp::map::{map_request, Mapped, Sender};
use spanflow_otlp::{scan, ExportTraceServiceRequest};

/// The sender the targets map requests as; every other input is the fuzzer's.
pub fn sender() -> Sender {
    Sender {
        peer_ip: Some(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))),
        agent_id: "fuzz-agent".to_string(),
        places: None,
    }
}

pub fn all_spans(request: &ExportTraceServiceRequest) -> impl Iterator<Item = &Span> {
    request
        .resource_spans
        .iter()
        .flat_map(|resource_spans| &resource_spans.scope_spans)
        .flat_map(|scope_spans| &scope_spans.spans)
}

/// The agent's rejection rule (OTLP partial success), restated: a 16-byte trace id and an
/// 8-byte span id, neither all zero, and a parent id of 8 bytes or all zero (a root).
pub fn has_good_ids(span: &Span) -> bool {
    span.trace_id.len() == 16
        && span.trace_id.iter().any(|&byte| byte != 0)
        && span.span_id.len() == 8
        && span.span_id.iter().any(|&byte| byte != 0)
        && (span.parent_span_id.len() == 8 || span.parent_span_id.iter().all(|&byte| byte == 0))
}

/// `request` without the spans the agent rejects.
pub fn without_bad_spans(mut request: ExportTraceServiceRequest) -> ExportTraceServiceRequest {
    for resource_spans in &mut request.resource_spans {
        for scope_spans in &mut resource_spans.scope_spans {
            scope_spans.spans.retain(has_good_ids);
        }
    }
    request
}

/// What the agent forwards, checked as the server will see it: it must scan with no span
/// rejected, decode with prost, and map every one of its `n_spans` spans to a row (the agent
/// has told the client they were accepted). Returns the rows.
pub fn check_forwarded(forwarded: &[u8], n_spans: usize) -> Mapped {
    let rescan = scan::scan_request(forwarded)
        .unwrap_or_else(|error| panic!("the forwarded payload does not scan: {error}"));
    assert_eq!(
        (rescan.n_spans, rescan.n_rejected),
        (n_spans, 0),
        "the forwarded payload scans differently"
    );
    let request = ExportTraceServiceRequest::decode(forwarded)
        .unwrap_or_else(|error| panic!("the forwarded payload does not decode: {error}"));
    let mapped = map_request(request.clone(), &sender());
    assert_eq!(
        (mapped.rows.len(), mapped.n_rejected),
        (n_spans, 0),
        "the server drops spans the agent accepted: {:?}",
        mapped.rejected_message
    );
    check_rows(&request, &mapped);
    mapped
}

/// Row invariants the rest of spanflow relies on.
pub fn check_rows(request: &ExportTraceServiceRequest, mapped: &Mapped) {
    assert_eq!(
        mapped.rows.len() + mapped.n_rejected,
        all_spans(request).count()
    );
    assert_eq!(mapped.rejected_message.is_some(), mapped.n_rejected > 0);
    for row in &mapped.rows {
        // `time` (seconds) is never before the start (µs): stores prune by it.
        assert!(
            row.time >= row.start_time.div_euclid(1_000_000),
            "time {} before start {}",
            row.time,
            row.start_time
        );
        assert!(!row.trace_id.is_zero() && !row.span_id.is_zero());
        assert!(row.parent_span_id.is_none_or(|parent| !parent.is_zero()));
    }
}

/// What `SpanLimits::apply` must leave: every count and string within the limits (but for the
/// `spanflow.truncated` attribute it adds), each string a prefix of what was sent, what was
/// dropped counted, and `limited` true exactly when the row changed.
pub fn check_limited(limits: &SpanLimits, before: &SpanRow, after: &SpanRow, limited: bool) {
    // Debug text, not `==`: a NaN double is not equal to itself.
    let changed = format!("{before:?}") != format!("{after:?}");
    assert_eq!(
        limited, changed,
        "apply says {limited}, the row says {changed}"
    );
    let max = limits.max_string_bytes;
    let strings = |row: &SpanRow| {
        [
            row.endpoint.clone(),
            row.request_resource.clone(),
            row.request_domain.clone(),
            row.request_type.clone(),
            row.status_message.clone(),
            row.response_exception.clone(),
            row.trace_state.clone(),
            row.app_service.clone(),
            row.app_instance.clone(),
            row.scope_name.clone(),
            row.scope_version.clone(),
            row.l7_protocol_str.clone(),
            row.version.clone(),
        ]
    };
    for (sent, kept) in strings(before).iter().zip(strings(after).iter()) {
        assert!(
            kept.len() <= max && sent.starts_with(kept.as_str()),
            "{sent:?} became {kept:?}"
        );
    }

    let n_kept = before.attributes.len().min(limits.max_attributes);
    let marked = after.attributes.len() == n_kept + 1;
    assert!(
        after.attributes.len() == n_kept || marked,
        "attributes past the limit"
    );
    if marked {
        assert_eq!(after.attributes[n_kept].key, TRUNCATED_ATTRIBUTE);
    }
    check_attributes(limits, &before.attributes, &after.attributes[..n_kept]);
    let n_dropped = (before.attributes.len() - n_kept) as u64;
    assert_eq!(
        u64::from(after.dropped_attributes_count),
        (u64::from(before.dropped_attributes_count) + n_dropped).min(u64::from(u32::MAX)),
        "dropped attributes not counted"
    );

    assert!(after.events.len() <= limits.max_events);
    assert!(after.dropped_events_count >= before.dropped_events_count);
    for (sent, kept) in before.events.iter().zip(&after.events) {
        assert!(kept.name.len() <= max && sent.name.starts_with(kept.name.as_str()));
        assert!(kept.attributes.len() <= limits.max_attributes);
        check_attributes(limits, &sent.attributes, &kept.attributes);
    }
    assert!(after.links.len() <= limits.max_links);
    assert!(after.dropped_links_count >= before.dropped_links_count);
    for (sent, kept) in before.links.iter().zip(&after.links) {
        assert!(kept.trace_state.len() <= max);
        assert!(kept.attributes.len() <= limits.max_attributes);
        check_attributes(limits, &sent.attributes, &kept.attributes);
    }
    assert!(after.resource_attributes.len() <= limits.max_attributes);
    check_attributes(
        limits,
        &before.resource_attributes,
        &after.resource_attributes,
    );
}

/// `kept` within the limits, each a prefix of the attribute sent in its place.
fn check_attributes(limits: &SpanLimits, sent: &[Attribute], kept: &[Attribute]) {
    assert!(kept.len() <= sent.len());
    for (sent, kept) in sent.iter().zip(kept) {
        assert!(kept.key.len() <= limits.max_string_bytes);
        assert!(sent.key.starts_with(kept.key.as_str()));
        check_value(limits, &sent.value, &kept.value);
    }
}

fn check_value(limits: &SpanLimits, sent: &AttrValue, kept: &AttrValue) {
    let max = limits.max_string_bytes;
    match (sent, kept) {
        (AttrValue::String(sent), AttrValue::String(kept)) => {
            assert!(kept.len() <= max && sent.starts_with(kept.as_str()))
        }
        (AttrValue::Bytes(sent), AttrValue::Bytes(kept)) => {
            assert!(kept.len() <= max && sent.starts_with(kept))
        }
        (AttrValue::Array(sent), AttrValue::Array(kept)) => {
            assert!(kept.len() <= limits.max_attributes && kept.len() <= sent.len());
            for (sent, kept) in sent.iter().zip(kept) {
                check_value(limits, sent, kept);
            }
        }
        (AttrValue::KeyValueList(sent), AttrValue::KeyValueList(kept)) => {
            assert!(kept.len() <= limits.max_attributes);
            check_attributes(limits, sent, kept);
        }
        (sent, kept) => assert_eq!(format!("{sent:?}"), format!("{kept:?}")),
    }
}
