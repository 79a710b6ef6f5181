//! What every receiver does with a request body, whatever the transport: decode or validate it,
//! drop the spans that are bad one by one, and queue the rest for the server. Also the one
//! mapping from a receive error to an HTTP status and a gRPC code, because OTLP clients decide
//! whether to retry from those.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use spanflow_model::metric_names;
use spanflow_otlp::{json, scan, validate};
use spanflow_transport::{Encoding, Payload};

use crate::queue::ForwardQueue;

/// How long a throttled client should wait before sending again.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// Bodies up to this size (as received) are decompressed and walked on the task that read
/// them: a hand-off to the blocking pool costs two thread switches, more than that work on a
/// request of a few hundred spans. Larger bodies go to the blocking pool.
pub const INLINE_BODY_BYTES: usize = 32 << 10;

/// Runs `work`, CPU work on a body of `n_bytes`, inline or on the blocking pool (see
/// [`INLINE_BODY_BYTES`]).
pub async fn cpu_work<T: Send + 'static>(
    n_bytes: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    if n_bytes <= INLINE_BODY_BYTES {
        Ok(work())
    } else {
        tokio::task::spawn_blocking(work).await
    }
}

/// A request body as it arrived, still compressed: forwarded in these very bytes when nothing
/// in it has to change.
pub struct Received {
    pub bytes: Bytes,
    pub encoding: Encoding,
}

/// The body's encoding, from `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentKind {
    Protobuf,
    Json,
}

impl ContentKind {
    /// Parses a `Content-Type` header, ignoring parameters such as `charset`.
    pub fn from_content_type(value: &str) -> Option<ContentKind> {
        let media_type = value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match media_type.as_str() {
            "application/x-protobuf" | "application/protobuf" => Some(ContentKind::Protobuf),
            "application/json" => Some(ContentKind::Json),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ContentKind::Protobuf => "application/x-protobuf",
            ContentKind::Json => "application/json",
        }
    }
}

/// Who sent a request: its TCP peer, and the tenant it named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    pub peer: IpAddr,
    pub org: Option<String>,
}

impl Sender {
    /// A sender from its peer address and its `X-Org-Id` value, if it sent one.
    pub fn new(peer: IpAddr, org_header: Option<&[u8]>) -> Result<Sender, ReceiveError> {
        let org = match org_header {
            None => None,
            Some(value) => spanflow_model::tenant::parse_org(value)
                .map_err(|error| ReceiveError::new(ReceiveErrorKind::BadRequest, error))?,
        };
        Ok(Sender { peer, org })
    }
}

/// What was accepted from one request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Accepted {
    pub n_spans: usize,
    pub n_rejected: usize,
    pub rejected_message: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiveErrorKind {
    /// Undecodable or invalid data; resending cannot help.
    BadRequest,
    /// The body is over the cap after decompression.
    TooLarge,
    /// The forward queue is full; the client should retry later.
    Unavailable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiveError {
    pub kind: ReceiveErrorKind,
    pub message: String,
}

impl ReceiveError {
    pub fn new(kind: ReceiveErrorKind, message: impl Into<String>) -> ReceiveError {
        ReceiveError {
            kind,
            message: message.into(),
        }
    }

    pub fn http_status(&self) -> http::StatusCode {
        match self.kind {
            ReceiveErrorKind::BadRequest => http::StatusCode::BAD_REQUEST,
            ReceiveErrorKind::TooLarge => http::StatusCode::PAYLOAD_TOO_LARGE,
            ReceiveErrorKind::Unavailable => http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn grpc_code(&self) -> tonic::Code {
        match self.kind {
            ReceiveErrorKind::BadRequest => tonic::Code::InvalidArgument,
            // Over the cap is permanent: RESOURCE_EXHAUSTED without RetryInfo is not retried.
            ReceiveErrorKind::TooLarge => tonic::Code::ResourceExhausted,
            ReceiveErrorKind::Unavailable => tonic::Code::Unavailable,
        }
    }

    /// The `google.rpc.Code` for the `Status` body of an HTTP error.
    pub fn rpc_code(&self) -> i32 {
        self.grpc_code() as i32
    }

    /// A short label for metrics.
    pub fn outcome(&self) -> &'static str {
        match self.kind {
            ReceiveErrorKind::BadRequest => "bad_request",
            ReceiveErrorKind::TooLarge => "too_large",
            ReceiveErrorKind::Unavailable => "throttled",
        }
    }
}

/// Validates request bodies and queues them for the server.
pub struct Receiver {
    queue: Arc<ForwardQueue>,
    max_body_bytes: usize,
    body_timeout: std::time::Duration,
}

/// How long an HTTP client may take to send its body, by default.
pub const DEFAULT_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl Receiver {
    pub fn new(queue: Arc<ForwardQueue>, max_body_bytes: usize) -> Receiver {
        Receiver {
            queue,
            max_body_bytes,
            body_timeout: DEFAULT_BODY_TIMEOUT,
        }
    }

    /// The same receiver with another body timeout.
    pub fn with_body_timeout(mut self, body_timeout: std::time::Duration) -> Receiver {
        self.body_timeout = body_timeout;
        self
    }

    /// How long an HTTP client may take to send its body; a slower one gets 408.
    pub fn body_timeout(&self) -> std::time::Duration {
        self.body_timeout
    }

    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// Accepts one decompressed OTLP body from `peer`; `received` is the body as it arrived,
    /// when it arrived compressed.
    pub fn accept(
        &self,
        kind: ContentKind,
        body: Bytes,
        sender: &Sender,
        received: Option<Received>,
    ) -> Result<Accepted, ReceiveError> {
        let (otlp, accepted) = match kind {
            ContentKind::Protobuf => Self::protobuf(body)?,
            ContentKind::Json => Self::json(&body)?,
        };
        if accepted.n_rejected > 0 {
            metrics::counter!(metric_names::AGENT_SPANS_REJECTED)
                .increment(accepted.n_rejected as u64);
        }
        if accepted.n_spans == 0 {
            return Ok(accepted);
        }
        // A compressed protobuf body that lost no span travels as its sender compressed it;
        // anything else is compressed here, once.
        let (otlp, encoding) = match received {
            Some(received) if kind == ContentKind::Protobuf && accepted.n_rejected == 0 => {
                (received.bytes, received.encoding)
            }
            _ => (
                zstd::bulk::compress(&otlp, 1)
                    .expect("zstd compression of a buffer cannot fail")
                    .into(),
                Encoding::Zstd,
            ),
        };
        let payload = Payload {
            peer_ip: sender.peer.to_canonical().to_string(),
            org_id: sender.org.clone().unwrap_or_default(),
            n_spans: u32::try_from(accepted.n_spans).unwrap_or(u32::MAX),
            otlp,
            encoding: encoding as i32,
        };
        if let Err(full) = self.queue.push(payload) {
            return Err(Self::throttled(full));
        }
        metrics::counter!(metric_names::AGENT_SPANS_ACCEPTED).increment(accepted.n_spans as u64);
        Ok(accepted)
    }

    /// Refuses a body of `n_bytes` (before decompression) up front when the queue could not
    /// take even that much, so that an overloaded agent does not decompress and walk bodies
    /// only to refuse them.
    pub fn check_room(&self, n_bytes: usize) -> Result<(), ReceiveError> {
        match self.queue.has_no_room_for(n_bytes) {
            Some(full) => Err(Self::throttled(full)),
            None => Ok(()),
        }
    }

    fn throttled(full: crate::queue::QueueFull) -> ReceiveError {
        metrics::counter!(metric_names::AGENT_REQUESTS_THROTTLED).increment(1);
        tracing::debug!(reason = %full, "asking the client to retry");
        ReceiveError::new(ReceiveErrorKind::Unavailable, full.to_string())
    }

    /// Protobuf is forwarded as received: only walked, never decoded, unless spans must be cut.
    fn protobuf(body: Bytes) -> Result<(Bytes, Accepted), ReceiveError> {
        let scanned = scan::scan_request(&body).map_err(|error| {
            ReceiveError::new(
                ReceiveErrorKind::BadRequest,
                format!("undecodable OTLP protobuf: {error}"),
            )
        })?;
        let otlp = if scanned.n_rejected > 0 {
            scan::without_rejected_spans(&body)
                .map_err(|error| {
                    ReceiveError::new(ReceiveErrorKind::BadRequest, error.to_string())
                })?
                .into()
        } else {
            body
        };
        Ok((
            otlp,
            Accepted {
                n_spans: scanned.n_spans,
                n_rejected: scanned.n_rejected,
                rejected_message: scanned.rejected_message,
            },
        ))
    }

    /// JSON is decoded once and forwarded as protobuf.
    fn json(body: &[u8]) -> Result<(Bytes, Accepted), ReceiveError> {
        let mut request = json::decode_request(body).map_err(|error| {
            ReceiveError::new(
                ReceiveErrorKind::BadRequest,
                format!("undecodable OTLP JSON: {error}"),
            )
        })?;
        let validated = validate::remove_invalid_spans(&mut request);
        Ok((
            request.encode_to_vec().into(),
            Accepted {
                n_spans: validated.n_spans,
                n_rejected: validated.n_rejected,
                rejected_message: validated.rejected_message,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use spanflow_otlp::ExportTraceServiceRequest;

    use super::*;

    fn request(span_ids: &[&[u8]]) -> Bytes {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: span_ids
                        .iter()
                        .map(|span_id| Span {
                            trace_id: vec![7; 16],
                            span_id: span_id.to_vec(),
                            name: "GET /".into(),
                            start_time_unix_nano: 1,
                            end_time_unix_nano: 2,
                            ..Span::default()
                        })
                        .collect(),
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        }
        .encode_to_vec()
        .into()
    }

    fn gzip(bytes: &[u8]) -> Bytes {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap().into()
    }

    fn receiver() -> (Receiver, Arc<ForwardQueue>) {
        let queue = Arc::new(ForwardQueue::new(1 << 20));
        (Receiver::new(queue.clone(), 1 << 20), queue)
    }

    fn sender() -> Sender {
        Sender {
            peer: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            org: None,
        }
    }

    #[tokio::test]
    async fn a_compressed_body_that_loses_no_span_is_queued_in_the_senders_bytes() {
        let (receiver, queue) = receiver();
        let body = request(&[&[1; 8], &[2; 8]]);
        let gzipped = gzip(&body);
        let received = Received {
            bytes: gzipped.clone(),
            encoding: Encoding::Gzip,
        };
        let accepted = receiver
            .accept(ContentKind::Protobuf, body, &sender(), Some(received))
            .unwrap();
        assert_eq!(accepted.n_spans, 2);
        let queued = queue.take_all().await.payloads;
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].checked_encoding().unwrap(), Encoding::Gzip);
        assert_eq!(queued[0].otlp, gzipped);
        assert_eq!(queued[0].n_spans, 2);
        assert_eq!(queued[0].peer_ip, "127.0.0.1");
    }

    #[tokio::test]
    async fn a_body_that_loses_spans_or_came_uncompressed_is_queued_zstd_once() {
        let (receiver, queue) = receiver();
        // The second span's id is all zeros: cut, so the sender's bytes no longer do.
        let body = request(&[&[1; 8], &[0; 8]]);
        let received = Received {
            bytes: gzip(&body),
            encoding: Encoding::Gzip,
        };
        let accepted = receiver
            .accept(ContentKind::Protobuf, body, &sender(), Some(received))
            .unwrap();
        assert_eq!((accepted.n_spans, accepted.n_rejected), (1, 1));
        let plain = request(&[&[3; 8]]);
        receiver
            .accept(ContentKind::Protobuf, plain.clone(), &sender(), None)
            .unwrap();
        let queued = queue.take_all().await.payloads;
        assert_eq!(queued.len(), 2);
        for payload in &queued {
            assert_eq!(payload.checked_encoding().unwrap(), Encoding::Zstd);
        }
        let cut = zstd::decode_all(&queued[0].otlp[..]).unwrap();
        let cut = ExportTraceServiceRequest::decode(&cut[..]).unwrap();
        let spans = &cut.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].span_id, vec![1; 8]);
        assert_eq!(
            zstd::decode_all(&queued[1].otlp[..]).unwrap(),
            plain.to_vec()
        );
    }
}
