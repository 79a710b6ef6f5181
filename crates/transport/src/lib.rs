//! The batch format between the spanflow agent and server.
//!
//! An agent posts one [`AgentBatch`] per request to the server's ingest port
//! (`POST /ingest/v1/batch`), protobuf-encoded. Each payload is an OTLP
//! `ExportTraceServiceRequest` as the agent received it, compressed or not: a gzip'd or zstd'd
//! body travels in the bytes its sender compressed, and anything else (JSON turned into
//! protobuf, gRPC messages, bodies the agent had to cut spans from) is zstd'd by the agent. So
//! no payload is compressed twice, and the server does the only full decode. The server answers
//! 200 only once every span of the batch is durable in its store; any other answer leaves the
//! batch with the agent, which sends it again.
//!
//! Version 1 bodies (the whole batch zstd-compressed, payloads uncompressed) are still read.
//!
//! Invariant: this crate knows neither OTLP's contents nor any store.

use bytes::Bytes;

/// The path an agent posts batches to.
pub const INGEST_PATH: &str = "/ingest/v1/batch";
/// The content type of a batch body.
pub const CONTENT_TYPE: &str = "application/x-spanflow-batch";
/// Format version; a server rejects batches of versions it does not know.
pub const VERSION: u32 = 2;
/// The oldest version a server still reads.
pub const MIN_VERSION: u32 = 1;
/// The first bytes of a zstd frame: a version 1 body. A version 2 body is a protobuf message
/// whose first byte is a field tag, never 0x28.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

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
    /// What the agent knows of addresses (its node's pods, services' cluster IPs, its node),
    /// changed since the last batch the server acknowledged, or all of it when `places_full`.
    #[prost(message, repeated, tag = "7")]
    pub places: Vec<PlaceRecord>,
    /// `places` is everything the agent knows: whatever it said before and left out is gone.
    #[prost(bool, tag = "8")]
    pub places_full: bool,
    /// The agent's own host.
    #[prost(message, optional, tag = "9")]
    pub host: Option<HostReport>,
}

/// What an agent knows of one address of one resource (a pod, a service, a node).
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct PlaceRecord {
    /// The resource, unique within the agent (`pod/<uid>`, `service/<ns>/<name>`,
    /// `node/<name>`): a later record for the same key and IP replaces this one.
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub ip: String,
    /// When the resource got the address, µs since the epoch; 0 when unknown.
    #[prost(int64, tag = "3")]
    pub since_us: i64,
    /// When it let the address go, µs since the epoch; 0 while it holds it.
    #[prost(int64, tag = "4")]
    pub until_us: i64,
    #[prost(string, tag = "5")]
    pub pod: String,
    #[prost(string, tag = "6")]
    pub pod_ns: String,
    #[prost(string, tag = "7")]
    pub pod_group: String,
    #[prost(string, tag = "8")]
    pub pod_group_type: String,
    #[prost(string, tag = "9")]
    pub pod_node: String,
    #[prost(string, tag = "10")]
    pub pod_cluster: String,
    #[prost(string, tag = "11")]
    pub service: String,
    #[prost(string, tag = "12")]
    pub host: String,
    #[prost(string, tag = "13")]
    pub region: String,
    #[prost(string, tag = "14")]
    pub az: String,
    #[prost(message, repeated, tag = "15")]
    pub labels: Vec<Label>,
}

#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// The host an agent runs on.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HostReport {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, repeated, tag = "2")]
    pub ips: Vec<String>,
    /// The operating system, as `/etc/os-release` names it (`PRETTY_NAME`).
    #[prost(string, tag = "3")]
    pub os: String,
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
    /// An OTLP `ExportTraceServiceRequest`, protobuf-encoded, then compressed as `encoding`
    /// says.
    #[prost(bytes = "bytes", tag = "3")]
    pub otlp: Bytes,
    #[prost(enumeration = "Encoding", tag = "4")]
    pub encoding: i32,
    /// The tenant the sender named (`X-Org-Id`); empty for the default tenant.
    #[prost(string, tag = "5")]
    pub org_id: String,
}

/// How a payload's bytes are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Encoding {
    Identity = 0,
    Gzip = 1,
    Zstd = 2,
}

impl Payload {
    /// The payload's encoding; an unknown one is an error (prost's `encoding()` would guess
    /// none).
    pub fn checked_encoding(&self) -> Result<Encoding, TransportError> {
        Encoding::try_from(self.encoding).map_err(|_| TransportError::Encoding(self.encoding))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("batch is not valid zstd: {0}")]
    Decompress(std::io::Error),
    #[error("batch is larger than {max_bytes} bytes after decompression")]
    TooLarge { max_bytes: usize },
    #[error("batch is not a valid protobuf AgentBatch: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error(
        "batch format version {0} is not supported (this server reads {MIN_VERSION} to {VERSION})"
    )]
    Version(u32),
    #[error("payload encoding {0} is not known (0 none, 1 gzip, 2 zstd)")]
    Encoding(i32),
}

impl AgentBatch {
    pub fn n_spans(&self) -> u64 {
        self.payloads
            .iter()
            .map(|payload| u64::from(payload.n_spans))
            .sum()
    }

    /// The body of an ingest request.
    pub fn encode_body(&self) -> Vec<u8> {
        prost::Message::encode_to_vec(self)
    }

    /// A version 1 body: the batch protobuf-encoded, then zstd-compressed.
    pub fn encode_v1_body(&self, level: i32) -> Vec<u8> {
        let encoded = prost::Message::encode_to_vec(self);
        zstd::bulk::compress(&encoded, level).expect("zstd compression of a buffer cannot fail")
    }

    /// Reads a body of either version. A version 1 body is refused when it inflates past
    /// `max_bytes`; a payload's own decompression is its reader's to bound.
    pub fn decode_body(body: Bytes, max_bytes: usize) -> Result<AgentBatch, TransportError> {
        let batch: AgentBatch = if body.starts_with(&ZSTD_MAGIC) {
            use std::io::Read;
            let decoder =
                zstd::stream::read::Decoder::new(&body[..]).map_err(TransportError::Decompress)?;
            let mut encoded = Vec::new();
            decoder
                .take(max_bytes as u64 + 1)
                .read_to_end(&mut encoded)
                .map_err(TransportError::Decompress)?;
            if encoded.len() > max_bytes {
                return Err(TransportError::TooLarge { max_bytes });
            }
            prost::Message::decode(Bytes::from(encoded))?
        } else {
            prost::Message::decode(body)?
        };
        if !(MIN_VERSION..=VERSION).contains(&batch.version) {
            return Err(TransportError::Version(batch.version));
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> AgentBatch {
        AgentBatch {
            version: VERSION,
            agent_id: "node-a".into(),
            agent_host_name: "node-a".into(),
            agent_host_ip: "10.0.0.1".into(),
            batch_seq: 7,
            payloads: vec![Payload {
                peer_ip: "10.0.0.9".into(),
                n_spans: 3,
                otlp: Bytes::from_static(b"\x1f\x8b\x08"),
                encoding: Encoding::Gzip as i32,
                org_id: String::new(),
            }],
            places: vec![PlaceRecord {
                key: "pod/0b5c".into(),
                ip: "10.0.0.9".into(),
                since_us: 1,
                pod: "web-1".into(),
                labels: vec![Label {
                    key: "app".into(),
                    value: "web".into(),
                }],
                ..Default::default()
            }],
            places_full: true,
            host: Some(HostReport {
                name: "node-a".into(),
                ips: vec!["10.0.0.1".into()],
                os: "Debian GNU/Linux 12 (bookworm)".into(),
            }),
        }
    }

    #[test]
    fn a_batch_round_trips_with_its_payload_encodings() {
        let batch = batch();
        let decoded = AgentBatch::decode_body(batch.encode_body().into(), 1 << 20).unwrap();
        assert_eq!(decoded, batch);
        assert_eq!(decoded.n_spans(), 3);
        assert_eq!(
            decoded.payloads[0].checked_encoding().unwrap(),
            Encoding::Gzip
        );
    }

    #[test]
    fn a_version_1_body_is_still_read() {
        let mut old = batch();
        old.version = 1;
        old.payloads[0].encoding = 0;
        let decoded = AgentBatch::decode_body(old.encode_v1_body(1).into(), 1 << 20).unwrap();
        assert_eq!(decoded, old);
        assert_eq!(
            decoded.payloads[0].checked_encoding().unwrap(),
            Encoding::Identity
        );
    }

    #[test]
    fn oversized_garbage_unknown_versions_and_encodings_are_refused() {
        let big = AgentBatch {
            version: 1,
            payloads: vec![Payload {
                otlp: vec![0u8; 10_000].into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(matches!(
            AgentBatch::decode_body(big.encode_v1_body(1).into(), 1000),
            Err(TransportError::TooLarge { max_bytes: 1000 })
        ));
        assert!(matches!(
            AgentBatch::decode_body(Bytes::from_static(b"\x28\xb5\x2f\xfdgarbage"), 1000),
            Err(TransportError::Decompress(_))
        ));
        assert!(matches!(
            AgentBatch::decode_body(Bytes::from_static(b"\xffgarbage"), 1000),
            Err(TransportError::Decode(_))
        ));
        let future = AgentBatch {
            version: 99,
            ..Default::default()
        };
        assert!(matches!(
            AgentBatch::decode_body(future.encode_body().into(), 1000),
            Err(TransportError::Version(99))
        ));
        let mut odd = batch();
        odd.payloads[0].encoding = 7;
        let decoded = AgentBatch::decode_body(odd.encode_body().into(), 1000).unwrap();
        assert!(matches!(
            decoded.payloads[0].checked_encoding(),
            Err(TransportError::Encoding(7))
        ));
    }
}
