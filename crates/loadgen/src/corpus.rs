//! The corpus: realistic OTLP trace requests, encoded (and gzip-compressed) once before a run.
//!
//! Traces of 4 to 12 spans cross services of a shop (HTTP servers and clients, gRPC, database
//! and messaging calls); each span carries 10 attributes and its resource 10 more, about 500
//! bytes a span as protobuf. A request holds the spans of one service's process, as an SDK's
//! batch exporter sends them.

use std::io::Write;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;

/// One request, ready to send.
#[derive(Clone)]
pub struct Payload {
    pub n_spans: usize,
    pub protobuf: Bytes,
    pub gzip: Bytes,
}

/// A small, fast, seeded generator (splitmix64), so a corpus is the same run after run.
pub struct Random(u64);

impl Random {
    pub fn new(seed: u64) -> Random {
        Random(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The services of the shop the corpus traces run through.
pub const SERVICES: [&str; 12] = [
    "frontend",
    "checkout",
    "cart",
    "payments",
    "shipping",
    "catalog",
    "recommendation",
    "ads",
    "currency",
    "email",
    "quote",
    "accounting",
];
const PODS_PER_SERVICE: usize = 3;

fn text(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..KeyValue::default()
    }
}

fn resource(service: usize, pod: usize) -> Resource {
    let name = SERVICES[service];
    let pod_name = format!(
        "{name}-7d9f8b{}-{:05x}",
        service % 10,
        (service * 7919 + pod * 104_729) % 0xfffff
    );
    Resource {
        attributes: vec![
            text("service.name", name),
            text("service.namespace", "shop"),
            text("service.version", "2.0.1"),
            text("service.instance.id", pod_name.clone()),
            text("k8s.namespace.name", "shop"),
            text("k8s.pod.name", pod_name.clone()),
            text("k8s.node.name", format!("node-{}", (service + pod) % 6)),
            text("k8s.deployment.name", name),
            text("host.name", pod_name),
            text(
                "telemetry.sdk.language",
                ["go", "java", "python", "rust"][service % 4],
            ),
        ],
        ..Resource::default()
    }
}

/// Spans of one trace, each with the service that sent it.
fn trace(random: &mut Random, now_ns: u64, out: &mut [Vec<Span>]) {
    let n_spans = 4 + random.below(9) as usize;
    let mut trace_id = [0u8; 16];
    trace_id[..8].copy_from_slice(&random.next_u64().to_be_bytes());
    trace_id[8..].copy_from_slice(&random.next_u64().to_be_bytes());
    let start = now_ns - random.below(60_000_000_000);
    let mut parent: Option<[u8; 8]> = None;
    let mut service = 0usize;
    for index in 0..n_spans {
        let span_id = random.next_u64().to_be_bytes();
        let duration = 200_000 + random.below(40_000_000);
        let offset = index as u64 * 1_000_000;
        let shape = if index == 0 { 0 } else { random.below(4) };
        let peer = 1 + random.below(SERVICES.len() as u64 - 1) as usize;
        let (kind, name, attributes, error) = match shape {
            0 => {
                let route = [
                    "/api/orders/{id}",
                    "/api/cart",
                    "/api/products/{id}",
                    "/healthz",
                ][random.below(4) as usize];
                let status = if random.below(50) == 0 { 500 } else { 200 };
                (
                    span::SpanKind::Server,
                    format!("GET {route}"),
                    vec![
                        text("http.request.method", "GET"),
                        text(
                            "url.path",
                            route.replace("{id}", &random.below(100_000).to_string()),
                        ),
                        text("http.route", route),
                        int("http.response.status_code", status),
                        text("server.address", format!("{}.shop.svc", SERVICES[service])),
                        int("server.port", 8080),
                        text(
                            "user_agent.original",
                            "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0",
                        ),
                        text(
                            "client.address",
                            format!("10.0.{}.{}", random.below(12), 10 + random.below(3)),
                        ),
                        text("network.protocol.version", "1.1"),
                        text("url.scheme", "http"),
                    ],
                    status >= 500,
                )
            }
            1 => (
                span::SpanKind::Client,
                "SELECT orders".to_string(),
                vec![
                    text("db.system", "postgresql"),
                    text("db.namespace", "shop"),
                    text("db.operation.name", "SELECT"),
                    text("db.collection.name", "orders"),
                    text(
                        "db.query.text",
                        "SELECT id, status, total FROM orders WHERE customer_id = $1 LIMIT 20",
                    ),
                    text("server.address", "postgres.shop.svc"),
                    int("server.port", 5432),
                    text("network.peer.address", "10.0.40.5"),
                    int("network.peer.port", 5432),
                    int("db.response.returned_rows", random.below(20) as i64),
                ],
                false,
            ),
            2 => {
                let method =
                    ["GetQuote", "Charge", "ListProducts", "Convert"][random.below(4) as usize];
                let grpc_status = if random.below(40) == 0 { 14 } else { 0 };
                (
                    span::SpanKind::Client,
                    format!("shop.{}/{method}", SERVICES[peer]),
                    vec![
                        text("rpc.system", "grpc"),
                        text("rpc.service", format!("shop.{}", SERVICES[peer])),
                        text("rpc.method", method),
                        int("rpc.grpc.status_code", grpc_status),
                        text("server.address", format!("{}.shop.svc", SERVICES[peer])),
                        int("server.port", 50051),
                        text(
                            "network.peer.address",
                            format!("10.0.{peer}.{}", 10 + random.below(3)),
                        ),
                        int("network.peer.port", 50051),
                        text("network.transport", "tcp"),
                        int(
                            "rpc.message.uncompressed_size",
                            200 + random.below(4000) as i64,
                        ),
                    ],
                    grpc_status != 0,
                )
            }
            _ => (
                span::SpanKind::Producer,
                "orders publish".to_string(),
                vec![
                    text("messaging.system", "kafka"),
                    text("messaging.destination.name", "orders"),
                    text("messaging.operation.type", "publish"),
                    text(
                        "messaging.message.id",
                        format!("{:016x}", random.next_u64()),
                    ),
                    text(
                        "messaging.kafka.message.key",
                        format!("customer-{}", random.below(10_000)),
                    ),
                    int(
                        "messaging.kafka.destination.partition",
                        random.below(12) as i64,
                    ),
                    text(
                        "messaging.client.id",
                        format!("{}-producer", SERVICES[service]),
                    ),
                    text("server.address", "kafka.shop.svc"),
                    int("server.port", 9092),
                    int("messaging.batch.message_count", 1),
                ],
                false,
            ),
        };
        out[service].push(Span {
            trace_id: trace_id.to_vec(),
            span_id: span_id.to_vec(),
            parent_span_id: parent.map(|id| id.to_vec()).unwrap_or_default(),
            name,
            kind: kind as i32,
            start_time_unix_nano: start + offset,
            end_time_unix_nano: start + offset + duration,
            attributes,
            status: Some(Status {
                message: if error {
                    "upstream failed".into()
                } else {
                    String::new()
                },
                code: if error {
                    status::StatusCode::Error as i32
                } else {
                    status::StatusCode::Unset as i32
                },
            }),
            ..Span::default()
        });
        if shape == 0 || parent.is_none() {
            parent = Some(span_id);
        }
        if shape == 2 {
            service = peer;
        }
    }
}

fn gzip(bytes: &[u8]) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("gzip to memory");
    encoder.finish().expect("gzip to memory").into()
}

/// A request of one span in a trace of its own, `trace_id`: what a probe sends to learn how
/// soon after its acknowledgement a trace can be found.
pub fn probe(trace_id: [u8; 16]) -> Payload {
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_nanos() as u64)
        .unwrap_or(0);
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![text("service.name", "spanflow-loadgen-probe")],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: trace_id.to_vec(),
                    span_id: trace_id[8..].to_vec(),
                    name: "probe".into(),
                    kind: span::SpanKind::Internal as i32,
                    start_time_unix_nano: now_ns,
                    end_time_unix_nano: now_ns + 1_000,
                    ..Span::default()
                }],
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    };
    let protobuf = request.encode_to_vec();
    Payload {
        n_spans: 1,
        gzip: gzip(&protobuf),
        protobuf: protobuf.into(),
    }
}

/// `n_requests` requests of `spans_per_request` spans each, all with distinct ids.
pub fn build(n_requests: usize, spans_per_request: usize, seed: u64) -> Vec<Payload> {
    let mut random = Random::new(seed);
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_nanos() as u64)
        .unwrap_or(0);
    let spans_per_request = spans_per_request.max(1);
    let mut pending: Vec<Vec<Span>> = vec![Vec::new(); SERVICES.len()];
    let mut payloads = Vec::with_capacity(n_requests);
    let mut next_pod = 0usize;
    while payloads.len() < n_requests {
        trace(&mut random, now_ns, &mut pending);
        for (service, waiting) in pending.iter_mut().enumerate() {
            if waiting.len() < spans_per_request || payloads.len() == n_requests {
                continue;
            }
            let spans: Vec<Span> = waiting.drain(..spans_per_request).collect();
            next_pod += 1;
            let request = ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: Some(resource(service, next_pod % PODS_PER_SERVICE)),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
                                .into(),
                            version: "0.63.0".into(),
                            ..InstrumentationScope::default()
                        }),
                        spans,
                        ..ScopeSpans::default()
                    }],
                    ..ResourceSpans::default()
                }],
            };
            let protobuf = request.encode_to_vec();
            payloads.push(Payload {
                n_spans: spans_per_request,
                gzip: gzip(&protobuf),
                protobuf: protobuf.into(),
            });
        }
    }
    payloads
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_realistic_and_ids_distinct() {
        let corpus = build(24, 100, 7);
        assert_eq!(corpus.len(), 24);
        let mut span_ids = std::collections::HashSet::new();
        let mut bytes = 0;
        for payload in &corpus {
            let request = ExportTraceServiceRequest::decode(payload.protobuf.clone()).unwrap();
            let resource = &request.resource_spans[0];
            assert_eq!(resource.resource.as_ref().unwrap().attributes.len(), 10);
            let spans = &resource.scope_spans[0].spans;
            assert_eq!(spans.len(), 100);
            for span in spans {
                assert_eq!(span.attributes.len(), 10);
                assert!(span_ids.insert((span.trace_id.clone(), span.span_id.clone())));
            }
            bytes += payload.protobuf.len();
            assert!(payload.gzip.len() < payload.protobuf.len() / 2);
        }
        let per_span = bytes / (24 * 100);
        assert!((400..=650).contains(&per_span), "{per_span} bytes a span");
        // The same seed gives the same spans (their times follow the clock).
        let ids = |payload: &Payload| -> Vec<Vec<u8>> {
            let request = ExportTraceServiceRequest::decode(payload.protobuf.clone()).unwrap();
            request.resource_spans[0].scope_spans[0]
                .spans
                .iter()
                .map(|span| span.span_id.clone())
                .collect()
        };
        assert_eq!(ids(&build(2, 10, 7)[1]), ids(&build(2, 10, 7)[1]));
    }
}
