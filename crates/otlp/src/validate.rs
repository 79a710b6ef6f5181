//! Per-span validation of decoded requests (the OTLP/JSON path): spans with bad ids are removed
//! and counted, the rest kept, as OTLP partial success asks. The rule is `scan`'s, and takes
//! exactly the spans the server's mapping can store.

use crate::ExportTraceServiceRequest;

/// What validation kept and removed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Validated {
    pub n_spans: usize,
    pub n_rejected: usize,
    pub rejected_message: Option<String>,
}

/// Why a span's ids make it unusable, if they do. A parent id must be 8 bytes, or all zero
/// (empty included) for a root.
pub fn span_id_problem(trace_id: &[u8], span_id: &[u8], parent_span_id: &[u8]) -> Option<String> {
    if trace_id.len() != 16 {
        return Some(format!(
            "trace_id must be 16 bytes (got {})",
            trace_id.len()
        ));
    }
    if trace_id.iter().all(|byte| *byte == 0) {
        return Some("trace_id must not be all zero".to_string());
    }
    if span_id.len() != 8 {
        return Some(format!("span_id must be 8 bytes (got {})", span_id.len()));
    }
    if span_id.iter().all(|byte| *byte == 0) {
        return Some("span_id must not be all zero".to_string());
    }
    if parent_span_id.len() != 8 && parent_span_id.iter().any(|byte| *byte != 0) {
        return Some(format!(
            "parent_span_id must be 8 bytes or empty (got {})",
            parent_span_id.len()
        ));
    }
    None
}

/// Removes spans with bad ids from `request` in place.
pub fn remove_invalid_spans(request: &mut ExportTraceServiceRequest) -> Validated {
    let mut validated = Validated::default();
    let mut reasons: Vec<String> = Vec::new();
    for resource_spans in &mut request.resource_spans {
        for scope_spans in &mut resource_spans.scope_spans {
            scope_spans.spans.retain(|span| {
                match span_id_problem(&span.trace_id, &span.span_id, &span.parent_span_id) {
                    None => {
                        validated.n_spans += 1;
                        true
                    }
                    Some(reason) => {
                        validated.n_rejected += 1;
                        if !reasons.contains(&reason) {
                            reasons.push(reason);
                        }
                        false
                    }
                }
            });
        }
    }
    if validated.n_rejected > 0 {
        validated.rejected_message = Some(format!(
            "{} spans rejected: {}",
            validated.n_rejected,
            reasons.join("; ")
        ));
    }
    validated
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn span(trace_id: Vec<u8>, span_id: Vec<u8>) -> Span {
        Span {
            trace_id,
            span_id,
            ..Default::default()
        }
    }

    fn child(parent_span_id: Vec<u8>) -> Span {
        Span {
            parent_span_id,
            ..span(vec![5; 16], vec![6; 8])
        }
    }

    #[test]
    fn bad_spans_are_removed_and_the_rest_kept() {
        let mut request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![
                        span(vec![1; 16], vec![2; 8]),
                        span(vec![1; 5], vec![2; 8]),
                        span(vec![1; 16], vec![0; 8]),
                        span(vec![0; 16], vec![2; 8]),
                        span(vec![1; 16], vec![2; 9]),
                        span(vec![3; 16], vec![4; 8]),
                        child(vec![1; 4]),
                        child(vec![0; 3]),
                        child(vec![7; 8]),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let validated = remove_invalid_spans(&mut request);
        assert_eq!((validated.n_spans, validated.n_rejected), (4, 5));
        assert_eq!(
            validated.rejected_message.unwrap(),
            "5 spans rejected: trace_id must be 16 bytes (got 5); span_id must not be all zero; \
             trace_id must not be all zero; span_id must be 8 bytes (got 9); \
             parent_span_id must be 8 bytes or empty (got 4)"
        );
        let kept: Vec<u8> = request.resource_spans[0].scope_spans[0]
            .spans
            .iter()
            .map(|span| span.trace_id[0])
            .collect();
        assert_eq!(kept, [1, 3, 5, 5]);
    }
}
