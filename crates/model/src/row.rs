//! The span row: DeepFlow's `l7_flow_log` columns where the meaning is the same, with its gaps
//! fixed (typed attributes, scope, links, trace state and status message kept, resource tags
//! in their own columns).

use std::net::IpAddr;

use crate::{SpanId, TraceId};

/// DeepFlow's `signal_source` value for spans imported from OpenTelemetry.
pub const SIGNAL_SOURCE_OTEL: u16 = 4;

/// OTLP span kind. Values outside the OTLP enum are read as `Unspecified`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub enum SpanKind {
    #[default]
    Unspecified = 0,
    Internal = 1,
    Server = 2,
    Client = 3,
    Producer = 4,
    Consumer = 5,
}

impl SpanKind {
    pub fn from_i32(value: i32) -> SpanKind {
        match value {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }

    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// Lowercase name as Jaeger prints it (`server`, `client`, ...); empty for unspecified.
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "unspecified",
            SpanKind::Internal => "internal",
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
        }
    }

    /// Where the span was observed, as DeepFlow names it.
    pub fn observation_point(self) -> ObservationPoint {
        match self {
            SpanKind::Client | SpanKind::Producer => ObservationPoint::ClientApp,
            SpanKind::Server | SpanKind::Consumer => ObservationPoint::ServerApp,
            SpanKind::Unspecified | SpanKind::Internal => ObservationPoint::App,
        }
    }
}

/// DeepFlow's `observation_point` (tap side) for application spans.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum ObservationPoint {
    /// `c-app`: the calling side (client or producer span).
    ClientApp,
    /// `s-app`: the called side (server or consumer span).
    ServerApp,
    /// `app`: inside the application (internal or unspecified span).
    #[default]
    App,
}

impl ObservationPoint {
    pub fn as_str(self) -> &'static str {
        match self {
            ObservationPoint::ClientApp => "c-app",
            ObservationPoint::ServerApp => "s-app",
            ObservationPoint::App => "app",
        }
    }

    pub fn parse(text: &str) -> Option<ObservationPoint> {
        match text {
            "c-app" => Some(ObservationPoint::ClientApp),
            "s-app" => Some(ObservationPoint::ServerApp),
            "app" => Some(ObservationPoint::App),
            _ => None,
        }
    }
}

/// DeepFlow's `response_status` enum.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum ResponseStatus {
    Ok = 0,
    Error = 1,
    Timeout = 2,
    ServerError = 3,
    ClientError = 4,
    #[default]
    Unknown = 5,
}

impl ResponseStatus {
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    pub fn from_u8(value: u8) -> ResponseStatus {
        match value {
            0 => ResponseStatus::Ok,
            1 => ResponseStatus::Error,
            2 => ResponseStatus::Timeout,
            3 => ResponseStatus::ServerError,
            4 => ResponseStatus::ClientError,
            _ => ResponseStatus::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ResponseStatus::Ok => "ok",
            ResponseStatus::Error => "error",
            ResponseStatus::Timeout => "timeout",
            ResponseStatus::ServerError => "server_error",
            ResponseStatus::ClientError => "client_error",
            ResponseStatus::Unknown => "unknown",
        }
    }
}

/// DeepFlow's `l7_protocol` enum (`server/libs/datatype/flow.go`), numbers kept.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum L7Protocol {
    #[default]
    Unknown = 0,
    Http1 = 20,
    Http2 = 21,
    Dubbo = 40,
    Grpc = 41,
    SofaRpc = 43,
    FastCgi = 44,
    Brpc = 45,
    Tars = 46,
    SomeIp = 47,
    Triple = 49,
    MySql = 60,
    PostgreSql = 61,
    Oracle = 62,
    Redis = 80,
    MongoDb = 81,
    Memcached = 82,
    Kafka = 100,
    Mqtt = 101,
    Amqp = 102,
    OpenWire = 103,
    Nats = 104,
    Pulsar = 105,
    Zmtp = 106,
    RocketMq = 107,
    Dns = 120,
    Tls = 121,
    Custom = 127,
}

impl L7Protocol {
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// DeepFlow's display name (`l7_protocol_str`).
    pub fn as_str(self) -> &'static str {
        match self {
            L7Protocol::Unknown => "N/A",
            L7Protocol::Http1 => "HTTP",
            L7Protocol::Http2 => "HTTP2",
            L7Protocol::Dubbo => "Dubbo",
            L7Protocol::Grpc => "gRPC",
            L7Protocol::SofaRpc => "SofaRPC",
            L7Protocol::FastCgi => "FastCGI",
            L7Protocol::Brpc => "bRPC",
            L7Protocol::Tars => "Tars",
            L7Protocol::SomeIp => "SOME/IP",
            L7Protocol::Triple => "Triple",
            L7Protocol::MySql => "MySQL",
            L7Protocol::PostgreSql => "PostgreSQL",
            L7Protocol::Oracle => "Oracle",
            L7Protocol::Redis => "Redis",
            L7Protocol::MongoDb => "MongoDB",
            L7Protocol::Memcached => "Memcached",
            L7Protocol::Kafka => "Kafka",
            L7Protocol::Mqtt => "MQTT",
            L7Protocol::Amqp => "AMQP",
            L7Protocol::OpenWire => "OpenWire",
            L7Protocol::Nats => "NATS",
            L7Protocol::Pulsar => "Pulsar",
            L7Protocol::Zmtp => "ZMTP",
            L7Protocol::RocketMq => "RocketMQ",
            L7Protocol::Dns => "DNS",
            L7Protocol::Tls => "TLS",
            L7Protocol::Custom => "Custom",
        }
    }

    pub fn from_u8(value: u8) -> L7Protocol {
        const ALL: [L7Protocol; 28] = [
            L7Protocol::Unknown,
            L7Protocol::Http1,
            L7Protocol::Http2,
            L7Protocol::Dubbo,
            L7Protocol::Grpc,
            L7Protocol::SofaRpc,
            L7Protocol::FastCgi,
            L7Protocol::Brpc,
            L7Protocol::Tars,
            L7Protocol::SomeIp,
            L7Protocol::Triple,
            L7Protocol::MySql,
            L7Protocol::PostgreSql,
            L7Protocol::Oracle,
            L7Protocol::Redis,
            L7Protocol::MongoDb,
            L7Protocol::Memcached,
            L7Protocol::Kafka,
            L7Protocol::Mqtt,
            L7Protocol::Amqp,
            L7Protocol::OpenWire,
            L7Protocol::Nats,
            L7Protocol::Pulsar,
            L7Protocol::Zmtp,
            L7Protocol::RocketMq,
            L7Protocol::Dns,
            L7Protocol::Tls,
            L7Protocol::Custom,
        ];
        ALL.into_iter()
            .find(|protocol| protocol.as_u8() == value)
            .unwrap_or(L7Protocol::Unknown)
    }
}

/// A typed attribute value, as OTLP's `AnyValue` carries it.
#[derive(Clone, PartialEq, Debug)]
pub enum AttrValue {
    String(String),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(Vec<u8>),
    Array(Vec<AttrValue>),
    KeyValueList(Vec<Attribute>),
    /// An `AnyValue` with no value set.
    Empty,
}

impl AttrValue {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttrValue::String(text) => Some(text),
            _ => None,
        }
    }

    /// The value as an integer: ints as they are, strings that parse as an integer, doubles
    /// without a fractional part. Senders disagree on types; mapping must not care.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            AttrValue::Int(value) => Some(*value),
            AttrValue::String(text) => text.trim().parse().ok(),
            AttrValue::Double(value) if value.fract() == 0.0 && value.is_finite() => {
                Some(*value as i64)
            }
            _ => None,
        }
    }

    /// The value as text: strings as they are, scalars printed, composites as `None`.
    pub fn to_text(&self) -> Option<String> {
        match self {
            AttrValue::String(text) => Some(text.clone()),
            AttrValue::Bool(value) => Some(value.to_string()),
            AttrValue::Int(value) => Some(value.to_string()),
            AttrValue::Double(value) => Some(value.to_string()),
            _ => None,
        }
    }
}

/// One key/value attribute with its type kept.
#[derive(Clone, PartialEq, Debug)]
pub struct Attribute {
    pub key: String,
    pub value: AttrValue,
}

impl Attribute {
    pub fn new(key: impl Into<String>, value: AttrValue) -> Attribute {
        Attribute {
            key: key.into(),
            value,
        }
    }
}

/// A span event (a log line inside the span).
#[derive(Clone, PartialEq, Debug, Default)]
pub struct Event {
    pub time_us: i64,
    pub name: String,
    pub attributes: Vec<Attribute>,
    pub dropped_attributes_count: u32,
}

/// A link from this span to a span of the same or another trace.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct Link {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub trace_state: String,
    pub attributes: Vec<Attribute>,
    pub dropped_attributes_count: u32,
    pub flags: u32,
}

/// Where the span ran, from well-known resource attributes, in columns that can be filtered on.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct ResourceTags {
    pub host_name: String,
    pub container_id: String,
    pub k8s_cluster_name: String,
    pub k8s_namespace_name: String,
    pub k8s_node_name: String,
    pub k8s_pod_name: String,
    pub k8s_pod_uid: String,
    /// `deployment`, `statefulset`, `daemonset`, `replicaset`, `job` or `cronjob`.
    pub k8s_workload_kind: String,
    pub k8s_workload_name: String,
    pub service_namespace: String,
    pub service_version: String,
    pub deployment_environment: String,
}

/// A resource tag's field.
pub type ResourceTag = fn(&ResourceTags) -> &String;

impl ResourceTags {
    /// The tags as the span row's columns name them, in column order, with their field.
    pub const COLUMNS: [(&'static str, ResourceTag); 12] = [
        ("host_name", |tags| &tags.host_name),
        ("container_id", |tags| &tags.container_id),
        ("k8s_cluster_name", |tags| &tags.k8s_cluster_name),
        ("k8s_namespace_name", |tags| &tags.k8s_namespace_name),
        ("k8s_node_name", |tags| &tags.k8s_node_name),
        ("k8s_pod_name", |tags| &tags.k8s_pod_name),
        ("k8s_pod_uid", |tags| &tags.k8s_pod_uid),
        ("k8s_workload_kind", |tags| &tags.k8s_workload_kind),
        ("k8s_workload_name", |tags| &tags.k8s_workload_name),
        ("service_namespace", |tags| &tags.service_namespace),
        ("service_version", |tags| &tags.service_version),
        ("deployment_environment", |tags| {
            &tags.deployment_environment
        }),
    ];
}

/// One span as a wide row.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct SpanRow {
    /// End time in seconds since the epoch (DeepFlow's `time`, the partitioning column); the
    /// start when the end is missing or before it, so never before the start.
    pub time: i64,
    /// Start time in microseconds since the epoch.
    pub start_time: i64,
    /// End time in microseconds since the epoch.
    pub end_time: i64,
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// `None` for a root span.
    pub parent_span_id: Option<SpanId>,
    pub span_kind: SpanKind,
    pub observation_point: ObservationPoint,
    pub trace_state: String,
    /// W3C trace flags as OTLP carries them in `Span.flags`.
    pub flags: u32,
    /// The span name.
    pub endpoint: String,
    pub app_service: String,
    pub app_instance: String,
    pub signal_source: u16,
    pub agent_id: String,

    pub l7_protocol: L7Protocol,
    /// The protocol as the span named it (`db.system`, `rpc.system`, ...), lowercased.
    pub l7_protocol_str: String,
    /// Protocol version (`network.protocol.version`, `http.flavor`).
    pub version: String,
    pub is_tls: bool,
    /// L4 protocol number: 6 (TCP) or 17 (UDP).
    pub protocol: u8,
    pub request_type: String,
    pub request_domain: String,
    pub request_resource: String,
    pub request_length: Option<i64>,
    pub response_length: Option<i64>,
    pub response_code: Option<i32>,
    pub response_status: ResponseStatus,
    pub response_exception: String,
    /// OTLP status code: 0 unset, 1 ok, 2 error.
    pub status_code: u8,
    pub status_message: String,
    /// Duration in microseconds (0 when the end is before the start).
    pub response_duration: u64,

    /// Client side of the call.
    pub ip_0: Option<IpAddr>,
    /// Server side of the call.
    pub ip_1: Option<IpAddr>,
    pub client_port: u16,
    pub server_port: u16,
    /// Where the client side ran (DeepFlow's `_0` universal tags).
    pub place_0: std::sync::Arc<crate::Place>,
    /// Where the server side ran (`_1`).
    pub place_1: std::sync::Arc<crate::Place>,

    pub scope_name: String,
    pub scope_version: String,
    /// Shared by the spans of one resource rather than copied into each.
    pub resource: std::sync::Arc<ResourceTags>,
    /// Span attributes, in the order the span carried them.
    pub attributes: Vec<Attribute>,
    /// Resource attributes, including the `app.host.ip` the agent decided; shared by the
    /// spans of one resource rather than copied into each.
    pub resource_attributes: std::sync::Arc<[Attribute]>,
    pub events: Vec<Event>,
    pub links: Vec<Link>,
    pub dropped_attributes_count: u32,
    pub dropped_events_count: u32,
    pub dropped_links_count: u32,
}

impl SpanRow {
    /// A span attribute by key.
    pub fn attribute(&self, key: &str) -> Option<&AttrValue> {
        self.attributes
            .iter()
            .find(|attribute| attribute.key == key)
            .map(|attribute| &attribute.value)
    }

    /// A resource attribute by key.
    pub fn resource_attribute(&self, key: &str) -> Option<&AttrValue> {
        self.resource_attributes
            .iter()
            .find(|attribute| attribute.key == key)
            .map(|attribute| &attribute.value)
    }
}
