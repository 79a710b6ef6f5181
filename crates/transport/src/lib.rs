//! The batch format between the spanflow agent and server.
//!
//! An agent posts one [`AgentBatch`] per request to the server's ingest port
//! (`POST /ingest/v1/batch`), protobuf-encoded and zstd-compressed. Each payload is an OTLP
//! `ExportTraceServiceRequest` exactly as the agent received it (JSON already turned into
//! protobuf), so the server does the only full decode. The server answers 200 only once every
//! span of the batch is durable in its store; any other answer leaves the batch with the agent,
//! which sends it again.
//!
//! Invariant: this crate knows neither OTLP's contents nor any store.

use bytes::Bytes;

/// The path an agent posts batches to.
pub const INGEST_PATH: &str = "/ingest/v1/batch";
/// The content type of a batch body (always zstd-compressed).
pub const CONTENT_TYPE: &str = "application/x-spanflow-batch";
/// Format version; a server rejects batches of versions it does not know.
pub const VERSION: u32 = 1;

/// One forwarded batch: the agent's identity and the payloads it received.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AgentBatch {
    #[prost(uint32, tag = "1")]
    pub version: u32,
    #[prost(string, tag = "2")]
    pub agent_id: String,
    #[prost(string, tag = "3")]
    pub agent_host_name: String,
    #[prost(string, tag = "4")]
    pub agent_host_ip: String,
    /// Increases by one per batch an agent cuts; a resent batch keeps its number.
    #[prost(uint64, tag = "5")]
    pub batch_seq: u64,
    #[prost(message, repeated, tag = "6")]
    pub payloads: Vec<Payload>,
}

/// One OTLP request as the agent received it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Payload {
    /// The TCP peer address of the sender, as text (IPv4-mapped IPv6 written as IPv4).
    #[prost(string, tag = "1")]
    pub peer_ip: String,
    /// Spans in `otlp`, as the agent counted them.
    #[prost(uint32, tag = "2")]
    pub n_spans: u32,
    /// An OTLP `ExportTraceServiceRequest`, protobuf-encoded.
    #[prost(bytes = "bytes", tag = "3")]
    pub otlp: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("batch is not valid zstd: {0}")]
    Decompress(std::io::Error),
    #[error("batch is larger than {max_bytes} bytes after decompression")]
    TooLarge { max_bytes: usize },
    #[error("batch is not a valid protobuf AgentBatch: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("batch format version {0} is not supported (this server speaks {VERSION})")]
    Version(u32),
}

impl AgentBatch {
    pub fn n_spans(&self) -> u64 {
        self.payloads
            .iter()
            .map(|payload| u64::from(payload.n_spans))
            .sum()
    }

    /// Protobuf then zstd, the body of an ingest request.
    pub fn encode_compressed(&self, level: i32) -> Vec<u8> {
        let encoded = prost::Message::encode_to_vec(self);
        zstd::bulk::compress(&encoded, level).expect("zstd compression of a buffer cannot fail")
    }

    /// Inverse of [`AgentBatch::encode_compressed`], refusing to inflate past `max_bytes`.
    pub fn decode_compressed(body: &[u8], max_bytes: usize) -> Result<AgentBatch, TransportError> {
        use std::io::Read;
        let decoder = zstd::stream::read::Decoder::new(body).map_err(TransportError::Decompress)?;
        let mut encoded = Vec::new();
        decoder
            .take(max_bytes as u64 + 1)
            .read_to_end(&mut encoded)
            .map_err(TransportError::Decompress)?;
        if encoded.len() > max_bytes {
            return Err(TransportError::TooLarge { max_bytes });
        }
        let batch: AgentBatch = prost::Message::decode(Bytes::from(encoded))?;
        if batch.version != VERSION {
            return Err(TransportError::Version(batch.version));
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_round_trips() {
        let batch = AgentBatch {
            version: VERSION,
            agent_id: "node-a".into(),
            agent_host_name: "node-a".into(),
            agent_host_ip: "10.0.0.1".into(),
            batch_seq: 7,
            payloads: vec![Payload {
                peer_ip: "10.0.0.9".into(),
                n_spans: 3,
                otlp: Bytes::from_static(b"\x0a\x00"),
            }],
        };
        let body = batch.encode_compressed(1);
        let decoded = AgentBatch::decode_compressed(&body, 1 << 20).unwrap();
        assert_eq!(decoded, batch);
        assert_eq!(decoded.n_spans(), 3);
    }

    #[test]
    fn oversized_garbage_and_unknown_versions_are_refused() {
        let batch = AgentBatch {
            version: VERSION,
            payloads: vec![Payload {
                otlp: vec![0u8; 10_000].into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let body = batch.encode_compressed(1);
        assert!(matches!(
            AgentBatch::decode_compressed(&body, 1000),
            Err(TransportError::TooLarge { max_bytes: 1000 })
        ));
        assert!(matches!(
            AgentBatch::decode_compressed(b"garbage", 1000),
            Err(TransportError::Decompress(_))
        ));
        let future = AgentBatch {
            version: 99,
            ..Default::default()
        };
        assert!(matches!(
            AgentBatch::decode_compressed(&future.encode_compressed(1), 1000),
            Err(TransportError::Version(99))
        ));
    }
}
