//! The server's ingest of an agent batch: `AgentBatch::decode_body` under a cap, then each
//! payload as `crates/server/src/ingest.rs` (`decode_batch`, private) handles it: its encoding
//! checked, decompressed under what is left of the cap, mapped to rows from its bytes, the
//! span limits applied, and the rows grouped by tenant. Keep the steps below in step with
//! `decode_batch`.

#![no_main]

use std::net::IpAddr;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use spanflow_fuzz::{check_limited, check_rows};
use spanflow_model::SpanRow;
use spanflow_otlp::decompress::{decompress, DecompressError, Encoding};
use spanflow_otlp::limits::SpanLimits;
use spanflow_otlp::map::{Mapped, Sender};
use spanflow_otlp::wire::map_payload_into;
use spanflow_otlp::ExportTraceServiceRequest;
use spanflow_transport::{AgentBatch, TransportError};

/// The cap on the body and on its payloads once inflated, together (`max_batch_bytes`).
const MAX_BATCH_BYTES: usize = 256 << 10;

/// Limits small enough for inputs of a few KB to go past every one of them.
const LIMITS: SpanLimits = SpanLimits {
    max_attributes: 4,
    max_events: 2,
    max_links: 2,
    max_string_bytes: 24,
};

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = AgentBatch::decode_body(Bytes::copy_from_slice(data), MAX_BATCH_BYTES) else {
        return;
    };
    // What a server decodes, an agent must be able to send again as it is.
    let again = AgentBatch::decode_body(batch.encode_body().into(), usize::MAX)
        .unwrap_or_else(|error| panic!("a re-encoded batch does not decode: {error}"));
    assert_eq!(again, batch);

    if let Ok((groups, n_stored)) = decode_batch(&batch) {
        assert_eq!(
            groups.iter().map(|(_, rows)| rows.len()).sum::<usize>(),
            n_stored
        );
        for (index, (org_id, _)) in groups.iter().enumerate() {
            assert!(groups[..index].iter().all(|(other, _)| other != org_id));
        }
    }
});

/// `decode_batch` of ingest.rs, from `AgentBatch::decode_body` on: the rows by tenant, and how
/// many were stored.
#[allow(clippy::type_complexity)]
fn decode_batch(
    batch: &AgentBatch,
) -> Result<(Vec<(String, Vec<SpanRow>)>, usize), TransportError> {
    // What the batch says of addresses goes into a place map, which the mapping then reads.
    let places = std::sync::Arc::new(spanflow_server::PlaceMap::new());
    places.apply_agent(
        &batch.agent_id,
        &batch.places,
        batch.places_full,
        batch.host.as_ref(),
    );
    let mut groups: Vec<(String, Vec<SpanRow>)> = Vec::new();
    let mut n_stored = 0;
    let mut budget = MAX_BATCH_BYTES;
    for payload in &batch.payloads {
        let encoding = match payload.checked_encoding()? {
            spanflow_transport::Encoding::Identity => Encoding::Identity,
            spanflow_transport::Encoding::Gzip => Encoding::Gzip,
            spanflow_transport::Encoding::Zstd => Encoding::Zstd,
        };
        let otlp = match decompress(payload.otlp.clone(), encoding, budget) {
            Ok(otlp) => otlp,
            Err(DecompressError::TooLarge { .. }) => {
                return Err(TransportError::TooLarge {
                    max_bytes: MAX_BATCH_BYTES,
                })
            }
            Err(_) => continue,
        };
        assert!(
            otlp.len() <= budget,
            "a payload inflated past the batch's cap"
        );
        budget -= otlp.len();
        let sender = Sender {
            peer_ip: payload.peer_ip.parse::<IpAddr>().ok(),
            agent_id: batch.agent_id.clone(),
            places: Some(places.clone()),
        };
        let mut rows = Vec::new();
        let wired = map_payload_into(&otlp, &sender, &mut rows);
        let decoded = ExportTraceServiceRequest::decode(otlp);
        assert_eq!(wired.is_ok(), decoded.is_ok(), "the server and prost disagree");
        let (Ok(rejected), Ok(request)) = (wired, decoded) else {
            assert!(rows.is_empty());
            continue;
        };
        let mut mapped = Mapped {
            rows,
            n_rejected: rejected.n_rejected,
            rejected_message: rejected.message,
        };
        check_rows(&request, &mapped);
        for row in &mut mapped.rows {
            let before = row.clone();
            let limited = LIMITS.apply(row);
            check_limited(&LIMITS, &before, row, limited);
        }
        n_stored += mapped.rows.len();
        match groups.iter_mut().find(|(org, _)| *org == payload.org_id) {
            Some((_, rows)) => rows.extend(mapped.rows),
            None => groups.push((payload.org_id.clone(), mapped.rows)),
        }
    }
    Ok((groups, n_stored))
}
