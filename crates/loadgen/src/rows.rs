//! Span rows as a store receives them, for store benchmarks: traces across the corpus's
//! services, with the attributes and resource tags of instrumented HTTP, gRPC, database and
//! messaging calls.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use spanflow_model::{
    AttrValue, Attribute, L7Protocol, Place, ResourceTags, ResponseStatus, SpanId, SpanKind,
    SpanRow, TraceId,
};

use crate::corpus::{Random, SERVICES};

/// Each service runs this many pods, with fixed names, nodes and addresses, as in a cluster.
const PODS_PER_SERVICE: u64 = 3;

struct Pod {
    name: String,
    node: String,
    ip: IpAddr,
}

impl Pod {
    fn of(service: usize, replica: usize) -> Pod {
        Pod {
            name: format!(
                "{}-7d9f8b{}-{:05x}",
                SERVICES[service],
                service % 10,
                (service * 7919 + replica * 104_729) % 0xfffff
            ),
            node: format!("node-{}", (service + replica) % 6),
            ip: IpAddr::V4(Ipv4Addr::new(10, 0, service as u8, 10 + replica as u8)),
        }
    }
}

fn string(key: &str, value: impl Into<String>) -> Attribute {
    Attribute::new(key, AttrValue::String(value.into()))
}

fn resource_attributes(service: &str, pod: &str, node: &str, ip: IpAddr) -> Vec<Attribute> {
    vec![
        string("service.name", service),
        string("service.version", "2.0.1"),
        string("service.instance.id", pod),
        string("service.namespace", "shop"),
        string("k8s.namespace.name", "shop"),
        string("k8s.pod.name", pod),
        string("k8s.node.name", node),
        string("k8s.deployment.name", service),
        string("telemetry.sdk.language", "go"),
        string("telemetry.sdk.version", "1.38.0"),
        string("app.host.ip", ip.to_string()),
    ]
}

type SharedResource = (Arc<ResourceTags>, Arc<[Attribute]>);

/// The resource of a pod (service index, replica), made once a thread: the spans of one
/// resource share its tags and attributes, as the OTLP mapper shares those of a request's
/// resource among its spans.
fn shared_resource(
    pod: (usize, usize),
    make: impl FnOnce() -> (ResourceTags, Vec<Attribute>),
) -> SharedResource {
    thread_local! {
        static RESOURCES: RefCell<HashMap<(usize, usize), SharedResource>> =
            RefCell::new(HashMap::new());
    }
    RESOURCES.with(|resources| {
        resources
            .borrow_mut()
            .entry(pod)
            .or_insert_with(|| {
                let (tags, attributes) = make();
                (Arc::new(tags), attributes.into())
            })
            .clone()
    })
}

/// One trace of 4 to 12 spans across services: HTTP, gRPC, database and messaging calls, each
/// span with about 10 attributes and its resource with about 10 more.
pub fn trace(random: &mut Random, start_us: i64, out: &mut Vec<SpanRow>) {
    let trace_id =
        TraceId(((random.next_u64() as u128) << 64 | random.next_u64() as u128).to_be_bytes());
    let n_spans = 4 + random.below(9) as usize;
    let mut parent: Option<SpanId> = None;
    for index in 0..n_spans {
        let span_id = SpanId(random.next_u64().max(1).to_be_bytes());
        let service = SERVICES[random.below(SERVICES.len() as u64) as usize];
        let kind_pick = random.below(4);
        let service_index = SERVICES.iter().position(|name| *name == service).unwrap();
        let replica = random.below(PODS_PER_SERVICE) as usize;
        let pod = Pod::of(service_index, replica);
        let peer = Pod::of(
            random.below(SERVICES.len() as u64) as usize,
            random.below(PODS_PER_SERVICE) as usize,
        );
        let (pod_ip, node) = (pod.ip, pod.node.clone());
        let pod = pod.name;
        let duration = 200 + random.below(50_000) * (1 + random.below(4));
        let start = start_us + index as i64 * 150 + random.below(100) as i64;
        let (kind, protocol, endpoint, request_type, resource, mut attributes) = match kind_pick {
            0 => {
                let route = format!(
                    "/api/{service}/{}",
                    ["list", "get", "update", "search"][random.below(4) as usize]
                );
                (
                    SpanKind::Server,
                    L7Protocol::Http1,
                    format!("GET {route}"),
                    "GET".to_string(),
                    route.clone(),
                    vec![
                        string("http.request.method", "GET"),
                        string("url.path", route.clone()),
                        string("url.scheme", "http"),
                        string("http.route", route),
                        Attribute::new("http.response.status_code", AttrValue::Int(200)),
                        string("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64)"),
                        string("client.address", peer.ip.to_string()),
                    ],
                )
            }
            1 => {
                let method =
                    ["GetProduct", "ListProducts", "Charge", "Convert"][random.below(4) as usize];
                (
                    SpanKind::Client,
                    L7Protocol::Grpc,
                    format!("oteldemo.{service}/{method}"),
                    method.to_string(),
                    format!("oteldemo.{service}/{method}"),
                    vec![
                        string("rpc.system", "grpc"),
                        string("rpc.service", format!("oteldemo.{service}")),
                        string("rpc.method", method),
                        Attribute::new("rpc.grpc.status_code", AttrValue::Int(0)),
                        string("server.address", format!("{service}.shop.svc")),
                        Attribute::new("server.port", AttrValue::Int(8080)),
                        string("network.peer.address", peer.ip.to_string()),
                    ],
                )
            }
            2 => {
                let table = ["orders", "carts", "products", "users"][random.below(4) as usize];
                let statement = format!("SELECT * FROM {table} WHERE id = $1");
                (
                    SpanKind::Client,
                    L7Protocol::PostgreSql,
                    format!("SELECT {table}"),
                    "SELECT".to_string(),
                    statement.clone(),
                    vec![
                        string("db.system.name", "postgresql"),
                        string("db.namespace", "shop"),
                        string("db.operation.name", "SELECT"),
                        string("db.query.text", statement),
                        string("db.collection.name", table),
                        string("server.address", "postgres.shop.svc"),
                        Attribute::new("server.port", AttrValue::Int(5432)),
                    ],
                )
            }
            _ => {
                let topic = ["orders", "payments", "emails"][random.below(3) as usize];
                (
                    SpanKind::Producer,
                    L7Protocol::Kafka,
                    format!("{topic} publish"),
                    "publish".to_string(),
                    topic.to_string(),
                    vec![
                        string("messaging.system", "kafka"),
                        string("messaging.destination.name", topic),
                        string("messaging.operation.type", "publish"),
                        Attribute::new(
                            "messaging.kafka.message.offset",
                            AttrValue::Int(random.below(1_000_000) as i64),
                        ),
                        string("messaging.client.id", format!("{service}-producer")),
                        string("server.address", "kafka.shop.svc"),
                        Attribute::new("server.port", AttrValue::Int(9092)),
                    ],
                )
            }
        };
        attributes.push(string(
            "thread.name",
            format!("worker-{}", random.below(16)),
        ));
        attributes.push(Attribute::new(
            "code.lineno",
            AttrValue::Int(random.below(2000) as i64),
        ));
        attributes.push(string(
            "code.function",
            format!("handle_{}", random.below(40)),
        ));
        let (resource_tags, resource_attributes) =
            shared_resource((service_index, replica), || {
                (
                    ResourceTags {
                        k8s_namespace_name: "shop".into(),
                        k8s_pod_name: pod.clone(),
                        k8s_node_name: node.clone(),
                        k8s_workload_kind: "deployment".into(),
                        k8s_workload_name: service.into(),
                        service_namespace: "shop".into(),
                        service_version: "2.0.1".into(),
                        ..ResourceTags::default()
                    },
                    resource_attributes(service, &pod, &node, pod_ip),
                )
            });
        let error = random.below(50) == 0;
        out.push(SpanRow {
            time: (start + duration as i64) / 1_000_000,
            start_time: start,
            end_time: start + duration as i64,
            trace_id,
            span_id,
            parent_span_id: parent,
            span_kind: kind,
            observation_point: kind.observation_point(),
            endpoint,
            app_service: service.to_string(),
            app_instance: pod.clone(),
            signal_source: spanflow_model::SIGNAL_SOURCE_OTEL,
            agent_id: node.clone(),
            l7_protocol: protocol,
            l7_protocol_str: protocol.as_str().to_ascii_lowercase(),
            protocol: 6,
            request_type,
            request_domain: format!("{service}.shop.svc"),
            request_resource: resource,
            response_code: Some(if error { 500 } else { 200 }),
            response_status: if error {
                ResponseStatus::ServerError
            } else {
                ResponseStatus::Ok
            },
            status_code: if error { 2 } else { 0 },
            response_duration: duration,
            // The client's address first, as DeepFlow orders the two ends.
            ip_0: Some(if kind == SpanKind::Server {
                peer.ip
            } else {
                pod_ip
            }),
            ip_1: Some(if kind == SpanKind::Server {
                pod_ip
            } else {
                peer.ip
            }),
            server_port: 8080,
            scope_name: "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp".into(),
            scope_version: "0.63.0".into(),
            // No place known for either end: the shared empty place, as the OTLP mapper
            // gives such rows (a default row would allocate one of its own per end).
            place_0: Place::unknown(),
            place_1: Place::unknown(),
            resource: resource_tags,
            attributes,
            resource_attributes,
            ..SpanRow::default()
        });
        if kind == SpanKind::Server || parent.is_none() {
            parent = Some(span_id);
        }
    }
}
