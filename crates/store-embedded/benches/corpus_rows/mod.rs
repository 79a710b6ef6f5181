//! Rows mapped from the load generator's corpus, as the server maps them: shared by the
//! `encode` bench and the `encode_corpus` example.

use prost::Message;
use spanflow_model::SpanRow;
use spanflow_otlp::map::{map_request, Sender};
use spanflow_otlp::ExportTraceServiceRequest;

/// The sender the corpus's requests are mapped as coming from.
pub fn sender() -> Sender {
    Sender {
        peer_ip: Some("10.0.0.1".parse().unwrap()),
        agent_id: "bench".into(),
        places: None,
    }
}

/// The rows of the corpus's first 100 requests of 100 spans.
pub fn rows() -> Vec<SpanRow> {
    let sender = sender();
    spanflow_loadgen::corpus::build(100, 100, 1)
        .iter()
        .flat_map(|payload| {
            let request = ExportTraceServiceRequest::decode(payload.protobuf.clone()).unwrap();
            map_request(request, &sender).rows
        })
        .collect()
}
