//! Mapping OTLP spans to span rows: ids and times checked and converted, the sender and peer IPs
//! placed on the client / server side as DeepFlow does, the protocol found by an exact table, and
//! the request / response columns read from both the pre-1.21 and the current semantic
//! conventions (the current name wins when both are present).
//!
//! Differences from DeepFlow (`reference/deepflow.md` section 2), on purpose:
//! - the sender IP (`app.host.ip` or the TCP peer) is decided per resource, never carried over;
//! - the protocol table is exact and ordered (`rpc.system`, `db.system.name`, `db.system`,
//!   `messaging.system`, `messaging.protocol`, then HTTP), so `https` is HTTP with `is_tls`;
//! - current semantic-convention names are read (`http.request.method`, `url.full`,
//!   `db.query.text`, ...), attributes keep their types, and scope, links and trace state are kept.
//!
//! Invariant: mapping never panics; a span whose ids are unusable is rejected with a short reason
//! and the rest of the request is still mapped.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use spanflow_model::{
    AttrValue, Attribute, Event, L7Protocol, Link, ObservationPoint, Place, ResourceTags,
    ResponseStatus, SpanId, SpanKind, SpanRow, TraceId, SIGNAL_SOURCE_OTEL,
};

use crate::places::{self, Places, WORKLOADS};

/// The resource attribute that names the sender's IP address.
pub const APP_HOST_IP: &str = "app.host.ip";

/// Who sent the payload, as the agent saw it.
#[derive(Debug, Clone, Default)]
pub struct Sender {
    /// The TCP peer of the request, used when a resource has no usable `app.host.ip`.
    pub peer_ip: Option<IpAddr>,
    pub agent_id: String,
    /// Where addresses are, for the place columns of both ends; without it, only what
    /// resources say of themselves.
    pub places: Option<std::sync::Arc<dyn Places>>,
}

/// The rows of one request, and how many spans were rejected.
#[derive(Debug, Default)]
pub struct Mapped {
    pub rows: Vec<SpanRow>,
    pub n_rejected: usize,
    /// The first rejection's reason (with its position), suitable for OTLP's partial success.
    pub rejected_message: Option<String>,
}

/// Maps every span of a decoded request. Spans with unusable ids are counted in `n_rejected`.
///
/// The request is encoded again and mapped from its bytes, as the server maps what it
/// receives ([`crate::wire::map_payload_into`]); this is for callers that hold a request
/// already (tests, benchmarks, the load generator).
pub fn map_request(request: ExportTraceServiceRequest, sender: &Sender) -> Mapped {
    let mut rows = Vec::new();
    let payload = request.encode_to_vec();
    match crate::wire::map_payload_into(&payload, sender, &mut rows) {
        Ok(rejected) => Mapped {
            rows,
            n_rejected: rejected.n_rejected,
            rejected_message: rejected.message,
        },
        // Only a request nested deeper than protobuf decoders accept fails to decode again.
        Err(error) => Mapped {
            rows,
            n_rejected: n_spans(&request),
            rejected_message: Some(error.message),
        },
    }
}

/// The spans a request's mapping rejected.
#[derive(Debug, Default)]
pub struct Rejected {
    pub n_rejected: usize,
    /// The first rejection's reason (with its position), suitable for OTLP's partial success.
    pub message: Option<String>,
}

impl Rejected {
    /// Counts a rejected span, keeping the reason of the first.
    pub(crate) fn reject(&mut self, at: [usize; 3], reason: &str) {
        self.n_rejected += 1;
        if self.message.is_none() {
            let [resource, scope, span] = at;
            self.message = Some(format!(
                "resource {resource}, scope {scope}, span {span}: {reason}"
            ));
        }
    }

    /// The first reason, with how many more spans were rejected.
    pub(crate) fn finish(mut self) -> Rejected {
        if self.n_rejected > 1 {
            self.message = self.message.map(|reason| {
                format!("{reason} (and {} more rejected spans)", self.n_rejected - 1)
            });
        }
        self
    }
}

/// The spans in `request`.
pub fn n_spans(request: &ExportTraceServiceRequest) -> usize {
    request
        .resource_spans
        .iter()
        .flat_map(|resource_spans| &resource_spans.scope_spans)
        .map(|scope_spans| scope_spans.spans.len())
        .sum()
}

/// A span as the mapping takes it: the fields of OTLP's `Span`, with its events and links
/// already as a row holds them and its other text borrowed from the payload. Its attributes are
/// read into the row itself ([`map_span_into`]).
#[derive(Debug, Default)]
pub struct SpanFields<'a> {
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub parent_span_id: &'a [u8],
    pub trace_state: &'a str,
    pub name: &'a str,
    pub kind: i32,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    pub dropped_attributes_count: u32,
    pub events: Vec<Event>,
    pub dropped_events_count: u32,
    /// The links whose ids are usable; `n_bad_links` counts the others, which the row counts
    /// among its dropped links.
    pub links: Vec<Link>,
    pub n_bad_links: u32,
    pub dropped_links_count: u32,
    /// The status's code and message, when the span has a status.
    pub status: Option<(i32, &'a str)>,
    pub flags: u32,
}

/// The instrumentation scope of a span: empty when the span has none.
#[derive(Debug, Default, Clone, Copy)]
pub struct ScopeFields<'a> {
    pub name: &'a str,
    pub version: &'a str,
}

/// What every span of one resource shares: its attributes (with the `app.host.ip` decided for
/// it), the sender IP, the service identity and the resource tags.
#[derive(Debug, Clone, Default)]
pub struct ResourceContext {
    /// Resource attributes in order, with `app.host.ip` appended (or a bad one replaced) when
    /// the sender IP came from the TCP peer.
    pub attributes: std::sync::Arc<[Attribute]>,
    /// `app.host.ip` when it parses as an IP, else the TCP peer; IPv4-mapped IPv6 as IPv4.
    pub sender_ip: Option<IpAddr>,
    /// `service.name` (string values only).
    pub service_name: Option<String>,
    /// `service.instance.id` (string values only).
    pub service_instance: Option<String>,
    pub tags: std::sync::Arc<ResourceTags>,
    pub agent_id: String,
    /// Where the resource runs: its own end of every span.
    pub place: std::sync::Arc<Place>,
    places: Option<std::sync::Arc<dyn Places>>,
    /// Peers' places, looked up once per resource (which one thread maps).
    peers: std::cell::RefCell<HashMap<IpAddr, std::sync::Arc<Place>, foldhash::fast::RandomState>>,
}

/// Peers a resource remembers the place of; past it, each span looks its peer up.
const MAX_REMEMBERED_PEERS: usize = 1024;

impl ResourceContext {
    /// Decides the sender identity of one resource. Nothing is carried over from any other
    /// resource of the same request.
    pub fn new(attributes: Vec<Attribute>, sender: &Sender) -> ResourceContext {
        ResourceContext::new_at(attributes, sender, 0)
    }

    /// As [`ResourceContext::new`], with places looked up as they were at `time_us` (0: now).
    pub fn new_at(
        mut attributes: Vec<Attribute>,
        sender: &Sender,
        time_us: i64,
    ) -> ResourceContext {
        let position = attributes
            .iter()
            .position(|attribute| attribute.key == APP_HOST_IP);
        let declared_ip = first_host_ip(&attributes);
        let sender_ip = match declared_ip {
            Some(ip) => Some(ip),
            None => {
                let peer_ip = sender.peer_ip.map(|ip| ip.to_canonical());
                if let Some(ip) = peer_ip {
                    let value = AttrValue::String(ip.to_string());
                    match position {
                        // No `app.host.ip` of the resource is an IP: the first one says
                        // nothing, and the peer takes its place rather than sit beside it.
                        Some(index) => attributes[index].value = value,
                        None => attributes.push(Attribute::new(APP_HOST_IP, value)),
                    }
                }
                peer_ip
            }
        };
        let own = places::resource_place(&attributes);
        let lookup = sender.places.as_deref();
        if let (Some(ip), Some(lookup)) = (declared_ip, lookup) {
            // Only an address the resource declared is its own: a TCP peer may be a collector.
            if !own.pod.is_empty() || !own.host.is_empty() {
                lookup.learn(ip, &own, time_us);
            }
        }
        let place = places::place_of(lookup, sender_ip, &own, time_us);
        places::add_place_attributes(&mut attributes, &place);
        let service_name = string_attribute(&attributes, "service.name");
        let service_instance = string_attribute(&attributes, "service.instance.id");
        let tags = resource_tags(&attributes);
        ResourceContext {
            attributes: attributes.into(),
            sender_ip,
            service_name,
            service_instance,
            tags: tags.into(),
            agent_id: sender.agent_id.clone(),
            place,
            places: sender.places.clone(),
            peers: Default::default(),
        }
    }

    /// The place of a span's peer address.
    fn peer_place(&self, ip: Option<IpAddr>, time_us: i64) -> std::sync::Arc<Place> {
        let (Some(ip), Some(places)) = (ip, self.places.as_deref()) else {
            return Place::unknown();
        };
        let mut peers = self.peers.borrow_mut();
        if let Some(place) = peers.get(&ip) {
            return place.clone();
        }
        let place = places::place_of(Some(places), Some(ip), &Place::default(), time_us);
        if peers.len() < MAX_REMEMBERED_PEERS {
            peers.insert(ip, place.clone());
        }
        place
    }
}

/// Maps one span of a resource and scope to a row with no attributes, or says why the span is
/// unusable.
pub fn map_span(
    resource: &ResourceContext,
    scope: ScopeFields<'_>,
    span: SpanFields<'_>,
) -> Result<SpanRow, String> {
    let mut row = SpanRow::default();
    map_span_into(resource, scope, span, &mut row)?;
    Ok(row)
}

/// Maps one span of a resource and scope onto `row`, whose `attributes` hold the span's
/// attributes already, or says why the span is unusable. Every other field of `row` is
/// overwritten, its text in the buffers the row holds: a row used again for the next span
/// allocates nothing for text that fits where the last span's was.
pub fn map_span_into(
    resource: &ResourceContext,
    scope: ScopeFields<'_>,
    span: SpanFields<'_>,
    row: &mut SpanRow,
) -> Result<(), String> {
    let trace_id = trace_id_of(span.trace_id).map_err(|reason| format!("trace_id {reason}"))?;
    let span_id = span_id_of(span.span_id).map_err(|reason| format!("span_id {reason}"))?;
    let parent_span_id = if span.parent_span_id.iter().all(|byte| *byte == 0) {
        None
    } else {
        Some(
            SpanId::from_bytes(span.parent_span_id)
                .map_err(|error| format!("parent_span_id {error}"))?,
        )
    };

    let SpanFields {
        trace_state,
        name,
        kind,
        start_time_unix_nano: start_ns,
        end_time_unix_nano: end_ns,
        dropped_attributes_count,
        events,
        dropped_events_count,
        links,
        n_bad_links,
        dropped_links_count,
        status,
        flags,
        ..
    } = span;
    // Every field but the attributes: a field added to the row must be given its value here.
    let SpanRow {
        time,
        start_time,
        end_time,
        trace_id: row_trace_id,
        span_id: row_span_id,
        parent_span_id: row_parent_span_id,
        span_kind,
        observation_point,
        trace_state: row_trace_state,
        flags: row_flags,
        endpoint,
        app_service,
        app_instance,
        signal_source,
        agent_id,
        l7_protocol,
        l7_protocol_str,
        version,
        is_tls,
        protocol,
        request_type,
        request_domain,
        request_resource,
        request_length,
        response_length,
        response_code,
        response_status,
        response_exception,
        status_code,
        status_message,
        response_duration,
        ip_0,
        ip_1,
        client_port,
        server_port,
        place_0,
        place_1,
        scope_name,
        scope_version,
        resource: row_resource,
        attributes,
        resource_attributes,
        events: row_events,
        links: row_links,
        dropped_attributes_count: row_dropped_attributes_count,
        dropped_events_count: row_dropped_events_count,
        dropped_links_count: row_dropped_links_count,
    } = row;
    let known = Known::new(attributes);

    // The span's end; its start when the end is missing or before it, so that `time` never
    // precedes the start and a bound on the start may prune by `time`.
    let time_ns = end_ns.max(start_ns);
    *time = saturating_i64(time_ns / 1_000_000_000);
    *start_time = saturating_i64(start_ns / 1000);
    *end_time = saturating_i64(end_ns / 1000);
    *response_duration = end_ns.saturating_sub(start_ns) / 1000;
    *row_trace_id = trace_id;
    *row_span_id = span_id;
    *row_parent_span_id = parent_span_id;
    *span_kind = SpanKind::from_i32(kind);
    *observation_point = span_kind.observation_point();
    set(row_trace_state, trace_state);
    *row_flags = flags;
    set(endpoint, name);
    *signal_source = SIGNAL_SOURCE_OTEL;
    set(agent_id, &resource.agent_id);
    set(scope_name, scope.name);
    set(scope_version, scope.version);
    *row_resource = resource.tags.clone();
    *row_dropped_attributes_count = dropped_attributes_count;
    *row_dropped_events_count = dropped_events_count;
    *row_dropped_links_count = dropped_links_count.saturating_add(n_bad_links);

    let service = resource.service_name.as_deref();
    set(
        app_service,
        service.or_else(|| known.str(K::ServiceName)).unwrap_or(""),
    );
    let instance = resource.service_instance.as_deref();
    set(
        app_instance,
        instance
            .or_else(|| known.str(K::ServiceInstanceId))
            .unwrap_or(""),
    );

    let addresses = addresses(*observation_point, &known, resource.sender_ip);
    (*ip_0, *ip_1) = (addresses.ip_0, addresses.ip_1);
    (*client_port, *server_port) = (addresses.client_port, addresses.server_port);
    *protocol = addresses.protocol;
    if *observation_point == ObservationPoint::ClientApp {
        *place_0 = resource.place.clone();
        *place_1 = resource.peer_place(*ip_1, *start_time);
    } else {
        *place_0 = resource.peer_place(*ip_0, *start_time);
        *place_1 = resource.place.clone();
    }
    let (family, protocol_found) = fill_protocol(l7_protocol_str, version, &known);
    (*l7_protocol, *is_tls) = protocol_found;
    let request = fill_request(
        RequestColumns {
            request_type,
            request_domain,
            request_resource,
        },
        &known,
        family,
        *span_kind,
    );
    (*request_length, *response_length) = request;

    *row_events = events;
    let (code, message) = status.unwrap_or((0, ""));
    *status_code = u8::try_from(code).unwrap_or(0);
    set(status_message, message);
    let response = fill_response(
        response_exception,
        &known,
        family,
        code,
        status_message,
        row_events,
    );
    (*response_code, *response_status) = response;

    *row_links = links;
    *resource_attributes = resource.attributes.clone();
    Ok(())
}

/// `text` into `target`, in the buffer `target` holds.
fn set(target: &mut String, text: &str) {
    target.clear();
    target.push_str(text);
}

// ---------------------------------------------------------------------------------------------
// Ids, times, values

pub(crate) fn trace_id_of(bytes: &[u8]) -> Result<TraceId, String> {
    let id = TraceId::from_bytes(bytes).map_err(|error| error.to_string())?;
    if id.is_zero() {
        return Err("is all zero".to_string());
    }
    Ok(id)
}

pub(crate) fn span_id_of(bytes: &[u8]) -> Result<SpanId, String> {
    let id = SpanId::from_bytes(bytes).map_err(|error| error.to_string())?;
    if id.is_zero() {
        return Err("is all zero".to_string());
    }
    Ok(id)
}

pub(crate) fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// `text` without leading and trailing white space, as [`str::trim`] gives it; text that begins
/// and ends with a printable ASCII character (nearly every value) is returned as it is without
/// decoding characters from either end.
#[inline]
fn trim(text: &str) -> &str {
    let printable = |byte: &u8| (0x21..0x7f).contains(byte);
    let bytes = text.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) if printable(first) && printable(last) => text,
        _ => text.trim(),
    }
}

/// Text of a scalar value, trimmed; empty text and composites are absent.
fn text_of(value: &AttrValue) -> Option<Cow<'_, str>> {
    let text = match value {
        AttrValue::String(text) => Cow::Borrowed(trim(text)),
        other => Cow::Owned(other.to_text()?),
    };
    (!text.is_empty()).then_some(text)
}

/// A string value, trimmed; other types and empty text are absent.
fn str_of(value: &AttrValue) -> Option<&str> {
    let text = trim(value.as_str()?);
    (!text.is_empty()).then_some(text)
}

/// An integer from an int, an integral double, or a string holding either.
fn int_of(value: &AttrValue) -> Option<i64> {
    if let Some(number) = value.as_i64() {
        return Some(number);
    }
    let number: f64 = trim(value.as_str()?).parse().ok()?;
    let in_range = number.is_finite()
        && number.fract() == 0.0
        && number >= i64::MIN as f64
        && number < i64::MAX as f64;
    in_range.then_some(number as i64)
}

/// An IP address from text: plain, `[v6]`, or with a port; IPv4-mapped IPv6 becomes IPv4.
fn parse_ip(text: &str) -> Option<IpAddr> {
    let text = trim(text);
    let ip = text
        .parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|address| address.ip()))
        .or_else(|| {
            text.strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inner| inner.parse::<IpAddr>().ok())
        })?;
    Some(ip.to_canonical())
}

/// The first `app.host.ip` whose value is a string holding an IP address.
fn first_host_ip(attributes: &[Attribute]) -> Option<IpAddr> {
    attributes
        .iter()
        .filter(|attribute| attribute.key == APP_HOST_IP)
        .find_map(|attribute| attribute.value.as_str().and_then(parse_ip))
}

fn string_attribute(attributes: &[Attribute], key: &str) -> Option<String> {
    attributes
        .iter()
        .filter(|attribute| attribute.key == key)
        .find_map(|attribute| str_of(&attribute.value))
        .map(str::to_string)
}

fn text_attribute(attributes: &[Attribute], key: &str) -> Option<String> {
    attributes
        .iter()
        .filter(|attribute| attribute.key == key)
        .find_map(|attribute| text_of(&attribute.value))
        .map(Cow::into_owned)
}

fn resource_tags(attributes: &[Attribute]) -> ResourceTags {
    let text = |key: &str| text_attribute(attributes, key).unwrap_or_default();
    let (k8s_workload_kind, k8s_workload_name) = WORKLOADS
        .iter()
        .find_map(|(key, kind)| {
            text_attribute(attributes, key).map(|name| (kind.to_string(), name))
        })
        .unwrap_or_default();
    ResourceTags {
        host_name: text("host.name"),
        container_id: text("container.id"),
        k8s_cluster_name: text("k8s.cluster.name"),
        k8s_namespace_name: text("k8s.namespace.name"),
        k8s_node_name: text("k8s.node.name"),
        k8s_pod_name: text("k8s.pod.name"),
        k8s_pod_uid: text("k8s.pod.uid"),
        k8s_workload_kind,
        k8s_workload_name,
        service_namespace: text("service.namespace"),
        service_version: text("service.version"),
        deployment_environment: text_attribute(attributes, "deployment.environment.name")
            .or_else(|| text_attribute(attributes, "deployment.environment"))
            .unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------------------------
// The span attributes the mapping reads, found in one pass

macro_rules! known_keys {
    ($($name:ident = $key:literal,)*) => {
        /// A span attribute key the mapping reads.
        #[derive(Clone, Copy, Debug)]
        enum K { $($name,)* }

        const N_KEYS: usize = [$(K::$name),*].len();

        fn known_key(key: &str) -> Option<K> {
            match key {
                $($key => Some(K::$name),)*
                _ => None,
            }
        }
    };
}

known_keys! {
    ServiceName = "service.name",
    ServiceInstanceId = "service.instance.id",
    // Addresses and ports.
    NetworkPeerAddress = "network.peer.address",
    NetPeerIp = "net.peer.ip",
    ServerAddress = "server.address",
    NetPeerName = "net.peer.name",
    NetHostName = "net.host.name",
    ClientAddress = "client.address",
    NetSockPeerAddr = "net.sock.peer.addr",
    HttpClientIp = "http.client_ip",
    ServerPort = "server.port",
    NetPeerPort = "net.peer.port",
    NetHostPort = "net.host.port",
    ClientPort = "client.port",
    NetSockPeerPort = "net.sock.peer.port",
    NetworkTransport = "network.transport",
    NetTransport = "net.transport",
    NetworkProtocolVersion = "network.protocol.version",
    HttpFlavor = "http.flavor",
    // Protocol systems.
    RpcSystem = "rpc.system",
    DbSystemName = "db.system.name",
    DbSystem = "db.system",
    MessagingSystem = "messaging.system",
    MessagingProtocol = "messaging.protocol",
    UrlScheme = "url.scheme",
    HttpScheme = "http.scheme",
    // HTTP.
    HttpRequestMethod = "http.request.method",
    HttpMethod = "http.method",
    HttpResponseStatusCode = "http.response.status_code",
    HttpStatusCode = "http.status_code",
    UrlFull = "url.full",
    HttpUrl = "http.url",
    UrlPath = "url.path",
    UrlQuery = "url.query",
    HttpTarget = "http.target",
    HttpRoute = "http.route",
    HttpHost = "http.host",
    HttpRequestBodySize = "http.request.body.size",
    HttpRequestContentLength = "http.request_content_length",
    HttpResponseBodySize = "http.response.body.size",
    HttpResponseContentLength = "http.response_content_length",
    // Databases.
    DbOperationName = "db.operation.name",
    DbOperation = "db.operation",
    DbQueryText = "db.query.text",
    DbStatement = "db.statement",
    DbCollectionName = "db.collection.name",
    DbSqlTable = "db.sql.table",
    DbMongodbCollection = "db.mongodb.collection",
    DbNamespace = "db.namespace",
    DbName = "db.name",
    DbConnectionString = "db.connection_string",
    // RPC.
    RpcMethod = "rpc.method",
    RpcService = "rpc.service",
    RpcGrpcStatusCode = "rpc.grpc.status_code",
    RpcResponseStatusCode = "rpc.response.status_code",
    // Messaging.
    MessagingOperationType = "messaging.operation.type",
    MessagingOperation = "messaging.operation",
    MessagingDestinationName = "messaging.destination.name",
    MessagingDestination = "messaging.destination",
    MessagingUrl = "messaging.url",
}

/// The known span attributes by key: the first non-empty value of each (empty strings and
/// values-less `AnyValue`s are absent, so an older name can stand in).
struct Known<'a> {
    slots: [Option<&'a AttrValue>; N_KEYS],
}

impl<'a> Known<'a> {
    fn new(attributes: &'a [Attribute]) -> Known<'a> {
        let mut slots = [None; N_KEYS];
        for attribute in attributes {
            let Some(key) = known_key(&attribute.key) else {
                continue;
            };
            let blank = match &attribute.value {
                AttrValue::Empty => true,
                AttrValue::String(text) => trim(text).is_empty(),
                _ => false,
            };
            let slot = &mut slots[key as usize];
            if slot.is_none() && !blank {
                *slot = Some(&attribute.value);
            }
        }
        Known { slots }
    }

    fn get(&self, key: K) -> Option<&'a AttrValue> {
        self.slots[key as usize]
    }

    fn has(&self, key: K) -> bool {
        self.get(key).is_some()
    }

    /// A string value (other types are absent).
    fn str(&self, key: K) -> Option<&'a str> {
        self.get(key).and_then(str_of)
    }

    /// The first of the keys with a scalar value, as text.
    fn text(&self, keys: &[K]) -> Option<Cow<'a, str>> {
        keys.iter().find_map(|key| self.get(*key).and_then(text_of))
    }

    /// The first of the keys with an integer value (int, integral double, numeric string).
    fn int(&self, keys: &[K]) -> Option<i64> {
        keys.iter().find_map(|key| self.get(*key).and_then(int_of))
    }

    /// The first of the keys whose value is an IP address.
    fn ip(&self, keys: &[K]) -> Option<IpAddr> {
        keys.iter()
            .find_map(|key| self.get(*key).and_then(text_of).and_then(|t| parse_ip(&t)))
    }

    /// The first of the keys holding a port number; a value out of range counts as 0.
    fn port(&self, keys: &[K]) -> u16 {
        self.int(keys)
            .map_or(0, |number| u16::try_from(number).unwrap_or(0))
    }
}

// ---------------------------------------------------------------------------------------------
// IPs and ports

/// A span's addresses, ports and L4 protocol.
#[derive(Default)]
struct Addresses {
    ip_0: Option<IpAddr>,
    ip_1: Option<IpAddr>,
    client_port: u16,
    server_port: u16,
    protocol: u8,
}

fn addresses(
    observation_point: ObservationPoint,
    known: &Known<'_>,
    sender_ip: Option<IpAddr>,
) -> Addresses {
    use K::*;
    let mut found = Addresses::default();
    match observation_point {
        ObservationPoint::ClientApp => {
            found.ip_0 = sender_ip;
            found.ip_1 = known.ip(&[NetworkPeerAddress, NetPeerIp, ServerAddress, NetPeerName]);
            found.server_port = known.port(&[ServerPort, NetPeerPort]);
        }
        ObservationPoint::ServerApp => {
            found.ip_1 = sender_ip;
            found.ip_0 = known.ip(&[
                NetworkPeerAddress,
                NetPeerIp,
                ClientAddress,
                NetSockPeerAddr,
                HttpClientIp,
            ]);
            found.server_port = known.port(&[ServerPort, NetHostPort]);
            found.client_port = known.port(&[ClientPort, NetSockPeerPort]);
        }
        ObservationPoint::App => {
            found.ip_1 = sender_ip;
            found.ip_0 = known.ip(&[NetworkPeerAddress, NetPeerIp]);
            found.server_port = known.port(&[ServerPort]);
        }
    }
    let transport = known.text(&[NetworkTransport, NetTransport]);
    let udp = |name: &str| name.eq_ignore_ascii_case("udp") || name.eq_ignore_ascii_case("ip_udp");
    found.protocol = if transport.as_deref().is_some_and(udp) {
        17
    } else {
        6
    };
    found
}

// ---------------------------------------------------------------------------------------------
// Protocol

/// Which conventions the request and response columns are read from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Family {
    Rpc,
    Db,
    Messaging,
    Http,
    None,
}

/// An exact table from a lowercased system name to DeepFlow's protocol.
type ProtocolTable = fn(&str) -> L7Protocol;

fn rpc_protocol(system: &str) -> L7Protocol {
    match system {
        "grpc" => L7Protocol::Grpc,
        "apache_dubbo" | "dubbo" => L7Protocol::Dubbo,
        "triple" => L7Protocol::Triple,
        "sofarpc" | "sofa_rpc" => L7Protocol::SofaRpc,
        "brpc" => L7Protocol::Brpc,
        "tars" => L7Protocol::Tars,
        "someip" | "some/ip" => L7Protocol::SomeIp,
        _ => L7Protocol::Unknown,
    }
}

fn db_protocol(system: &str) -> L7Protocol {
    match system {
        "mysql" | "mariadb" | "tidb" => L7Protocol::MySql,
        "postgresql" | "postgres" => L7Protocol::PostgreSql,
        "oracle" | "oracle.db" => L7Protocol::Oracle,
        "redis" => L7Protocol::Redis,
        "mongodb" => L7Protocol::MongoDb,
        "memcached" => L7Protocol::Memcached,
        _ => L7Protocol::Unknown,
    }
}

fn messaging_protocol(system: &str) -> L7Protocol {
    match system {
        "kafka" => L7Protocol::Kafka,
        "rabbitmq" | "amqp" => L7Protocol::Amqp,
        "activemq" | "openwire" => L7Protocol::OpenWire,
        "rocketmq" => L7Protocol::RocketMq,
        "pulsar" => L7Protocol::Pulsar,
        "nats" => L7Protocol::Nats,
        "mqtt" => L7Protocol::Mqtt,
        "zeromq" | "zmtp" => L7Protocol::Zmtp,
        _ => L7Protocol::Unknown,
    }
}

const HTTP_MARKERS: [K; 8] = [
    K::HttpRequestMethod,
    K::HttpMethod,
    K::HttpResponseStatusCode,
    K::HttpStatusCode,
    K::UrlFull,
    K::HttpUrl,
    K::UrlPath,
    K::HttpTarget,
];

/// Sets `l7_protocol_str` and `version`; returns the conventions the span follows, its
/// `l7_protocol` and `is_tls`. The first system key present decides, in a fixed order.
fn fill_protocol(
    l7_protocol_str: &mut String,
    version: &mut String,
    known: &Known<'_>,
) -> (Family, (L7Protocol, bool)) {
    let version_text = known.text(&[K::NetworkProtocolVersion, K::HttpFlavor]);
    set(version, version_text.as_deref().unwrap_or_default());
    l7_protocol_str.clear();

    let systems: [(K, Family, ProtocolTable); 5] = [
        (K::RpcSystem, Family::Rpc, rpc_protocol),
        (K::DbSystemName, Family::Db, db_protocol),
        (K::DbSystem, Family::Db, db_protocol),
        (K::MessagingSystem, Family::Messaging, messaging_protocol),
        (K::MessagingProtocol, Family::Messaging, messaging_protocol),
    ];
    for (key, family, table) in systems {
        if let Some(system) = known.str(key) {
            set_lowercase(l7_protocol_str, system);
            return (family, (table(l7_protocol_str), false));
        }
    }

    let scheme = known.str(K::UrlScheme).or_else(|| known.str(K::HttpScheme));
    let url_scheme = known
        .str(K::UrlFull)
        .or_else(|| known.str(K::HttpUrl))
        .and_then(|url| url.split_once("://"))
        .map(|(scheme, _)| scheme);
    let is_http =
        |scheme: &str| scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
    let is_http_scheme = scheme.is_some_and(is_http);
    let has_http_keys = HTTP_MARKERS.iter().any(|key| known.has(*key));
    if !is_http_scheme && !has_http_keys {
        if let Some(scheme) = scheme {
            set_lowercase(l7_protocol_str, scheme);
        }
        return (Family::None, (L7Protocol::Unknown, false));
    }
    set_lowercase(l7_protocol_str, scheme.or(url_scheme).unwrap_or("http"));
    let is_tls = l7_protocol_str == "https";
    let l7_protocol = match version_text.as_deref() {
        Some("2" | "2.0") => L7Protocol::Http2,
        _ => L7Protocol::Http1,
    };
    (Family::Http, (l7_protocol, is_tls))
}

/// `text` lowercased (ASCII letters only) into `target`, in the buffer `target` holds.
fn set_lowercase(target: &mut String, text: &str) {
    set(target, text);
    target.make_ascii_lowercase();
}

// ---------------------------------------------------------------------------------------------
// Request columns

/// Host of a URL (`scheme://user@host:port/...`), without port, userinfo or IPv6 brackets.
fn url_host(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host = if let Some(bracketed) = host_port.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    (!host.is_empty()).then_some(host)
}

/// Path and query of a URL (fragment dropped) into `target`; a relative URL starting with `/`
/// is its own. False, and `target` left alone, when the URL has neither.
fn url_path_and_query(url: &str, target: &mut String) -> bool {
    let after_authority = match url.split_once("://") {
        Some((_, rest)) => match rest.find(['/', '?', '#']) {
            Some(index) => &rest[index..],
            None => "",
        },
        None if url.starts_with('/') => url,
        None => return false,
    };
    let without_fragment = after_authority.split('#').next().unwrap_or_default();
    target.clear();
    if !without_fragment.starts_with('/') {
        target.push('/');
    }
    target.push_str(without_fragment);
    true
}

/// The request's text columns, written in the buffers the row holds.
struct RequestColumns<'r> {
    request_type: &'r mut String,
    request_domain: &'r mut String,
    request_resource: &'r mut String,
}

/// Sets the request's text columns; returns its request and response lengths.
fn fill_request(
    columns: RequestColumns<'_>,
    known: &Known<'_>,
    family: Family,
    kind: SpanKind,
) -> (Option<i64>, Option<i64>) {
    use K::*;
    let RequestColumns {
        request_type,
        request_domain,
        request_resource,
    } = columns;
    let text = |keys: &[K]| known.text(keys);
    fn set_text(target: &mut String, text: Option<Cow<'_, str>>) {
        set(target, text.as_deref().unwrap_or_default());
    }
    request_resource.clear();
    match family {
        Family::Http => {
            set_text(request_type, text(&[HttpRequestMethod, HttpMethod]));
            // Before 1.21, `net.peer.name` named the server on client spans only.
            let name_key = if kind.observation_point() == ObservationPoint::ServerApp {
                NetHostName
            } else {
                NetPeerName
            };
            let url = known.str(UrlFull).or_else(|| known.str(HttpUrl));
            match text(&[ServerAddress, HttpHost, name_key]) {
                Some(domain) => set(request_domain, &domain),
                None => set(request_domain, url.and_then(url_host).unwrap_or_default()),
            }
            if let Some(path) = text(&[UrlPath]) {
                request_resource.push_str(&path);
                if let Some(query) = text(&[UrlQuery]) {
                    request_resource.push('?');
                    request_resource.push_str(query.trim_start_matches('?'));
                }
            } else if let Some(target) = text(&[HttpTarget]) {
                request_resource.push_str(&target);
            } else {
                let from_url = [UrlFull, HttpUrl].iter().any(|key| {
                    known
                        .str(*key)
                        .is_some_and(|url| url_path_and_query(url, request_resource))
                });
                if !from_url {
                    set_text(request_resource, text(&[HttpRoute]));
                }
            }
            let request_length = known
                .int(&[HttpRequestBodySize, HttpRequestContentLength])
                .filter(|length| *length >= 0);
            let response_length = known
                .int(&[HttpResponseBodySize, HttpResponseContentLength])
                .filter(|length| *length >= 0);
            return (request_length, response_length);
        }
        Family::Db => {
            set_text(request_type, text(&[DbOperationName, DbOperation]));
            set_text(
                request_resource,
                text(&[
                    DbQueryText,
                    DbStatement,
                    DbCollectionName,
                    DbSqlTable,
                    DbMongodbCollection,
                ]),
            );
            set_text(
                request_domain,
                text(&[DbNamespace, DbName, ServerAddress, DbConnectionString]),
            );
        }
        Family::Rpc => {
            let method = text(&[RpcMethod]);
            if let Some(service) = text(&[RpcService]) {
                request_resource.push_str(&service);
                if method.is_some() {
                    request_resource.push('/');
                }
            }
            request_resource.push_str(method.as_deref().unwrap_or_default());
            set_text(request_type, method);
            set_text(request_domain, text(&[ServerAddress]));
        }
        Family::Messaging => {
            set_text(
                request_type,
                text(&[MessagingOperationType, MessagingOperation]),
            );
            set_text(
                request_resource,
                text(&[MessagingDestinationName, MessagingDestination, MessagingUrl]),
            );
            set_text(request_domain, text(&[ServerAddress]));
        }
        Family::None => {
            request_type.clear();
            request_domain.clear();
        }
    }
    (None, None)
}

// ---------------------------------------------------------------------------------------------
// Response columns

const GRPC_CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// A gRPC status code from a number or its canonical name (`NOT_FOUND`, `not_found`).
fn grpc_code_of(value: &AttrValue) -> Option<i64> {
    if let Some(number) = int_of(value) {
        return Some(number);
    }
    let name = trim(value.as_str()?).to_ascii_uppercase();
    let name = if name == "CANCELED" {
        "CANCELLED".to_string()
    } else {
        name
    };
    GRPC_CODES
        .iter()
        .position(|code| *code == name)
        .and_then(|index| i64::try_from(index).ok())
}

fn grpc_status(code: i64) -> ResponseStatus {
    match code {
        0 => ResponseStatus::Ok,
        3 | 5 | 6 | 7 | 9 | 11 | 16 => ResponseStatus::ClientError,
        _ => ResponseStatus::ServerError,
    }
}

fn http_status(code: i64) -> ResponseStatus {
    match code {
        400..=499 => ResponseStatus::ClientError,
        500..=599 => ResponseStatus::ServerError,
        _ => ResponseStatus::Ok,
    }
}

/// The standard reason phrase of an HTTP error status.
fn http_reason(code: i64) -> Option<&'static str> {
    Some(match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        _ => return None,
    })
}

/// `exception.type: exception.message` of the first `exception` event.
fn exception_event_text(events: &[Event]) -> Option<String> {
    let event = events.iter().find(|event| event.name == "exception")?;
    let text = |key: &str| text_attribute(&event.attributes, key);
    match (text("exception.type"), text("exception.message")) {
        (Some(kind), Some(message)) => Some(format!("{kind}: {message}")),
        (None, Some(message)) => Some(message),
        (Some(kind), None) => Some(kind),
        (None, None) => None,
    }
}

const STATUS_OK: i32 = 1;
const STATUS_ERROR: i32 = 2;

/// Sets `response_exception`; returns the response code and status.
fn fill_response(
    response_exception: &mut String,
    known: &Known<'_>,
    family: Family,
    status_code: i32,
    status_message: &str,
    events: &[Event],
) -> (Option<i32>, ResponseStatus) {
    let http_code = known.int(&[K::HttpResponseStatusCode, K::HttpStatusCode]);
    let grpc_code = [K::RpcGrpcStatusCode, K::RpcResponseStatusCode]
        .iter()
        .find_map(|key| known.get(*key).and_then(grpc_code_of));
    let to_i32 = |code: i64| i32::try_from(code).ok();

    // A gRPC call answers HTTP 200 whatever its status, so on RPC spans the RPC code leads.
    let (response_code, code_status, exception) = match (family, grpc_code, http_code) {
        (Family::Rpc, Some(code), _) | (_, Some(code), None) => {
            let name = usize::try_from(code).ok().and_then(|i| GRPC_CODES.get(i));
            let exception = name.filter(|_| code != 0).copied();
            (to_i32(code), Some(grpc_status(code)), exception)
        }
        (_, _, Some(code)) => {
            let status = http_status(code);
            let exception = (status != ResponseStatus::Ok)
                .then(|| http_reason(code))
                .flatten();
            (to_i32(code), Some(status), exception)
        }
        (_, None, None) => (None, None, None),
    };

    let mut status = code_status.unwrap_or(match status_code {
        STATUS_OK => ResponseStatus::Ok,
        STATUS_ERROR => ResponseStatus::ServerError,
        _ => ResponseStatus::Unknown,
    });
    if status_code == STATUS_ERROR && status != ResponseStatus::ClientError {
        status = ResponseStatus::ServerError;
    }

    let status_message = trim(status_message);
    if status_code == STATUS_ERROR && !status_message.is_empty() {
        set(response_exception, status_message);
    } else if let Some(exception) = exception {
        set(response_exception, exception);
    } else {
        let from_event = exception_event_text(events);
        set(
            response_exception,
            from_event.as_deref().unwrap_or_default(),
        );
    }
    (response_code, status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{
        any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn values_are_trimmed_as_str_trim_trims_them() {
        for text in [
            "",
            " ",
            "a",
            " a",
            "a ",
            "\ta\n",
            "GET /cart",
            "\u{a0}x",
            "x\u{3000}",
            "\u{85}",
            "é",
            " é ",
            "\x1fa",
            "a\x7f",
            "\u{2028}a\u{2029}",
        ] {
            assert_eq!(trim(text), text.trim(), "{text:?}");
        }
    }

    proptest! {
        #[test]
        fn any_text_is_trimmed_as_str_trim_trims_it(text in "\\PC*|[ \t\n\u{a0}\u{3000}a-z]{0,6}") {
            prop_assert_eq!(trim(&text), text.trim());
        }
    }

    const TRACE: [u8; 16] = [0x5b; 16];
    const SPAN: [u8; 8] = [0x11; 8];
    const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 9);

    // Kinds.
    const INTERNAL: i32 = 1;
    const SERVER: i32 = 2;
    const CLIENT: i32 = 3;
    const PRODUCER: i32 = 4;
    const CONSUMER: i32 = 5;

    fn s(text: &str) -> AnyValue {
        AnyValue {
            value: Some(any_value::Value::StringValue(text.to_string())),
        }
    }
    fn i(number: i64) -> AnyValue {
        AnyValue {
            value: Some(any_value::Value::IntValue(number)),
        }
    }
    fn d(number: f64) -> AnyValue {
        AnyValue {
            value: Some(any_value::Value::DoubleValue(number)),
        }
    }
    fn b(flag: bool) -> AnyValue {
        AnyValue {
            value: Some(any_value::Value::BoolValue(flag)),
        }
    }

    fn kvs(attributes: &[(&str, AnyValue)]) -> Vec<KeyValue> {
        attributes
            .iter()
            .map(|(key, value)| KeyValue {
                key: key.to_string(),
                value: Some(value.clone()),
                ..Default::default()
            })
            .collect()
    }

    /// A valid span of the kind with the attributes, 1 s to 1.5 s after 2024-01-01.
    fn span(kind: i32, attributes: &[(&str, AnyValue)]) -> Span {
        Span {
            trace_id: TRACE.to_vec(),
            span_id: SPAN.to_vec(),
            name: "op".to_string(),
            kind,
            start_time_unix_nano: 1_704_067_201_000_000_000,
            end_time_unix_nano: 1_704_067_201_500_000_000,
            attributes: kvs(attributes),
            ..Default::default()
        }
    }

    fn resource(attributes: &[(&str, AnyValue)]) -> ResourceSpans {
        ResourceSpans {
            resource: Some(Resource {
                attributes: kvs(attributes),
                ..Default::default()
            }),
            scope_spans: Vec::new(),
            schema_url: String::new(),
        }
    }

    fn request(resources: Vec<(ResourceSpans, Vec<Span>)>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: resources
                .into_iter()
                .map(|(mut resource, spans)| {
                    resource.scope_spans.push(ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "lib".to_string(),
                            version: "1.2".to_string(),
                            ..Default::default()
                        }),
                        spans,
                        schema_url: String::new(),
                    });
                    resource
                })
                .collect(),
        }
    }

    fn sender() -> Sender {
        Sender {
            peer_ip: Some(IpAddr::V4(PEER)),
            agent_id: "agent-1".to_string(),
            places: None,
        }
    }

    /// The one helper: maps a span under a resource and returns its row.
    fn map_with(resource_attributes: &[(&str, AnyValue)], span: Span) -> SpanRow {
        let mapped = map_request(
            request(vec![(resource(resource_attributes), vec![span])]),
            &sender(),
        );
        assert_eq!(mapped.n_rejected, 0, "{:?}", mapped.rejected_message);
        mapped.rows.into_iter().next().expect("one row")
    }

    fn row(kind: i32, attributes: &[(&str, AnyValue)]) -> SpanRow {
        map_with(&[("service.name", s("svc"))], span(kind, attributes))
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    fn with_status(mut span: Span, code: i32, message: &str) -> Span {
        span.status = Some(Status {
            message: message.to_string(),
            code,
        });
        span
    }

    // --- ids ---------------------------------------------------------------------------------

    #[test]
    fn bad_ids_are_rejected_and_the_rest_kept() {
        let good = span(SERVER, &[]);
        let mut short_trace = span(SERVER, &[]);
        short_trace.trace_id = vec![1, 2, 3];
        let mut zero_trace = span(SERVER, &[]);
        zero_trace.trace_id = vec![0; 16];
        let mut zero_span = span(SERVER, &[]);
        zero_span.span_id = vec![0; 8];
        let mut long_span = span(SERVER, &[]);
        long_span.span_id = vec![1; 9];
        let mut bad_parent = span(SERVER, &[]);
        bad_parent.parent_span_id = vec![1; 4];
        let spans = vec![
            short_trace,
            good.clone(),
            zero_trace,
            zero_span,
            long_span,
            bad_parent,
        ];
        let mapped = map_request(request(vec![(resource(&[]), spans)]), &sender());
        assert_eq!(mapped.rows.len(), 1);
        assert_eq!(mapped.n_rejected, 5);
        let message = mapped.rejected_message.unwrap();
        assert!(
            message.starts_with("resource 0, scope 0, span 0: trace_id"),
            "{message}"
        );
        assert!(message.contains("expected 16 bytes, got 3"), "{message}");
        assert!(message.contains("and 4 more"), "{message}");
    }

    #[test]
    fn all_zero_ids_give_a_reason() {
        let zero = SpanFields {
            trace_id: &TRACE,
            span_id: &[0; 8],
            ..Default::default()
        };
        let error =
            map_span(&ResourceContext::default(), ScopeFields::default(), zero).unwrap_err();
        assert_eq!(error, "span_id is all zero");
    }

    #[test]
    fn parent_id_variants() {
        let mut root = span(SERVER, &[]);
        assert_eq!(map_with(&[], root.clone()).parent_span_id, None);
        root.parent_span_id = vec![0; 8];
        assert_eq!(map_with(&[], root.clone()).parent_span_id, None);
        root.parent_span_id = vec![7; 8];
        assert_eq!(
            map_with(&[], root.clone()).parent_span_id,
            Some(SpanId([7; 8]))
        );
        root.parent_span_id = vec![0; 3];
        assert_eq!(map_with(&[], root).parent_span_id, None);
    }

    #[test]
    fn ids_are_kept() {
        let row = row(SERVER, &[]);
        assert_eq!(row.trace_id, TraceId(TRACE));
        assert_eq!(row.span_id, SpanId(SPAN));
    }

    // --- times and basics --------------------------------------------------------------------

    #[test]
    fn times_are_converted() {
        let row = row(SERVER, &[]);
        assert_eq!(row.start_time, 1_704_067_201_000_000);
        assert_eq!(row.end_time, 1_704_067_201_500_000);
        assert_eq!(row.time, 1_704_067_201);
        assert_eq!(row.response_duration, 500_000);
    }

    #[test]
    fn end_before_start_has_zero_duration() {
        let mut reversed = span(SERVER, &[]);
        reversed.end_time_unix_nano = reversed.start_time_unix_nano - 5_000;
        let row = map_with(&[], reversed);
        assert_eq!(row.response_duration, 0);
        assert_eq!(
            row.time,
            row.start_time / 1_000_000,
            "time is never before the start"
        );
    }

    #[test]
    fn missing_end_uses_start_for_time() {
        let mut open = span(SERVER, &[]);
        open.end_time_unix_nano = 0;
        let row = map_with(&[], open);
        assert_eq!(row.time, 1_704_067_201);
        assert_eq!(row.end_time, 0);
        assert_eq!(row.response_duration, 0);
    }

    #[test]
    fn extreme_times_saturate() {
        let mut far = span(SERVER, &[]);
        far.start_time_unix_nano = 0;
        far.end_time_unix_nano = u64::MAX;
        let row = map_with(&[], far);
        assert_eq!(row.end_time, (u64::MAX / 1000) as i64);
        assert_eq!(row.time, (u64::MAX / 1_000_000_000) as i64);
        assert_eq!(row.response_duration, u64::MAX / 1000);
    }

    #[test]
    fn basics_are_kept() {
        let mut basic = span(CLIENT, &[]);
        basic.trace_state = "congo=t61rcWkgMzE".to_string();
        basic.flags = 0x301;
        basic.name = "GET /users".to_string();
        let row = map_with(&[], basic);
        assert_eq!(row.trace_state, "congo=t61rcWkgMzE");
        assert_eq!(row.flags, 0x301);
        assert_eq!(row.endpoint, "GET /users");
        assert_eq!(row.signal_source, SIGNAL_SOURCE_OTEL);
        assert_eq!(row.agent_id, "agent-1");
        assert_eq!(row.scope_name, "lib");
        assert_eq!(row.scope_version, "1.2");
    }

    // --- kinds, sides, IPs -------------------------------------------------------------------

    #[test]
    fn span_kinds_give_observation_points() {
        let cases = [
            (0, SpanKind::Unspecified, ObservationPoint::App),
            (INTERNAL, SpanKind::Internal, ObservationPoint::App),
            (SERVER, SpanKind::Server, ObservationPoint::ServerApp),
            (CLIENT, SpanKind::Client, ObservationPoint::ClientApp),
            (PRODUCER, SpanKind::Producer, ObservationPoint::ClientApp),
            (CONSUMER, SpanKind::Consumer, ObservationPoint::ServerApp),
            (99, SpanKind::Unspecified, ObservationPoint::App),
            (-1, SpanKind::Unspecified, ObservationPoint::App),
        ];
        for (kind, span_kind, point) in cases {
            let row = row(kind, &[]);
            assert_eq!((row.span_kind, row.observation_point), (span_kind, point));
        }
    }

    #[test]
    fn client_span_sender_on_ip0_peer_on_ip1() {
        let row = row(
            CLIENT,
            &[("server.address", s("10.1.1.1")), ("server.port", i(8080))],
        );
        assert_eq!(row.ip_0, ip("10.0.0.9"));
        assert_eq!(row.ip_1, ip("10.1.1.1"));
        assert_eq!(row.server_port, 8080);
        assert_eq!(row.client_port, 0);
    }

    #[test]
    fn server_span_sender_on_ip1_peer_on_ip0() {
        let row = row(
            SERVER,
            &[
                ("client.address", s("192.168.0.7")),
                ("client.port", i(51000)),
                ("server.port", i(443)),
            ],
        );
        assert_eq!(row.ip_1, ip("10.0.0.9"));
        assert_eq!(row.ip_0, ip("192.168.0.7"));
        assert_eq!(row.server_port, 443);
        assert_eq!(row.client_port, 51000);
    }

    #[test]
    fn producer_and_consumer_sides() {
        let producer = row(PRODUCER, &[("net.peer.name", s("10.2.0.1"))]);
        assert_eq!(
            (producer.ip_0, producer.ip_1),
            (ip("10.0.0.9"), ip("10.2.0.1"))
        );
        let consumer = row(CONSUMER, &[("net.sock.peer.addr", s("10.3.0.1"))]);
        assert_eq!(
            (consumer.ip_0, consumer.ip_1),
            (ip("10.3.0.1"), ip("10.0.0.9"))
        );
    }

    #[test]
    fn internal_span_sender_on_ip1_generic_peer_on_ip0() {
        let row = row(
            INTERNAL,
            &[
                ("server.address", s("10.9.9.9")),
                ("net.peer.ip", s("10.4.0.1")),
            ],
        );
        assert_eq!(row.ip_1, ip("10.0.0.9"));
        assert_eq!(row.ip_0, ip("10.4.0.1"));
        let bare = self::row(INTERNAL, &[("server.address", s("10.9.9.9"))]);
        assert_eq!(bare.ip_0, None);
    }

    #[test]
    fn network_peer_address_wins_over_old_names() {
        let row = row(
            CLIENT,
            &[
                ("net.peer.ip", s("10.0.0.2")),
                ("network.peer.address", s("10.0.0.1")),
                ("server.address", s("10.0.0.3")),
            ],
        );
        assert_eq!(row.ip_1, ip("10.0.0.1"));
    }

    #[test]
    fn peer_that_is_not_an_ip_falls_through() {
        let row = row(
            CLIENT,
            &[
                ("network.peer.address", s("db.internal")),
                ("net.peer.ip", b(true)),
                ("server.address", s("")),
                ("net.peer.name", s("10.5.5.5")),
            ],
        );
        assert_eq!(row.ip_1, ip("10.5.5.5"));
        let none = self::row(CLIENT, &[("server.address", s("example.com"))]);
        assert_eq!(none.ip_1, None);
    }

    #[test]
    fn ipv6_and_ipv4_mapped_peers() {
        let v6 = row(SERVER, &[("client.address", s("2001:db8::1"))]);
        assert_eq!(v6.ip_0, ip("2001:db8::1"));
        let mapped = row(SERVER, &[("http.client_ip", s("::ffff:10.6.0.1"))]);
        assert_eq!(mapped.ip_0, ip("10.6.0.1"));
        let bracketed = row(SERVER, &[("client.address", s("[2001:db8::2]"))]);
        assert_eq!(bracketed.ip_0, ip("2001:db8::2"));
        let with_port = row(SERVER, &[("client.address", s("10.6.0.2:5000"))]);
        assert_eq!(with_port.ip_0, ip("10.6.0.2"));
    }

    #[test]
    fn app_host_ip_is_the_sender() {
        let row = map_with(&[("app.host.ip", s("172.16.0.5"))], span(CLIENT, &[]));
        assert_eq!(row.ip_0, ip("172.16.0.5"));
        assert_eq!(row.resource_attributes.len(), 1);
        assert_eq!(
            row.resource_attribute("app.host.ip"),
            Some(&AttrValue::String("172.16.0.5".into()))
        );
    }

    #[test]
    fn app_host_ip_v6_and_mapped() {
        let v6 = map_with(&[("app.host.ip", s("fd00::5"))], span(SERVER, &[]));
        assert_eq!(v6.ip_1, ip("fd00::5"));
        let mapped = map_with(
            &[("app.host.ip", s("::ffff:172.16.0.6"))],
            span(SERVER, &[]),
        );
        assert_eq!(mapped.ip_1, ip("172.16.0.6"));
    }

    #[test]
    fn missing_app_host_ip_takes_the_peer_and_is_appended() {
        let row = map_with(&[("service.name", s("svc"))], span(SERVER, &[]));
        assert_eq!(row.ip_1, ip("10.0.0.9"));
        assert_eq!(row.resource_attributes.len(), 2);
        assert_eq!(row.resource_attributes[1].key, "app.host.ip");
        assert_eq!(
            row.resource_attributes[1].value,
            AttrValue::String("10.0.0.9".into())
        );
    }

    #[test]
    fn bad_app_host_ip_is_replaced_by_the_peer() {
        for bad in [s("not-an-ip"), s(""), i(42)] {
            let row = map_with(&[("app.host.ip", bad)], span(SERVER, &[]));
            assert_eq!(row.ip_1, ip("10.0.0.9"));
            assert_eq!(row.resource_attributes.len(), 1);
            assert_eq!(
                row.resource_attribute("app.host.ip"),
                Some(&AttrValue::String("10.0.0.9".into()))
            );
        }
    }

    #[test]
    fn duplicate_app_host_ips() {
        let later_valid = map_with(
            &[("app.host.ip", s("junk")), ("app.host.ip", s("172.16.0.8"))],
            span(SERVER, &[]),
        );
        assert_eq!(later_valid.ip_1, ip("172.16.0.8"));
        assert_eq!(
            later_valid.resource_attributes[0].value,
            AttrValue::String("junk".into())
        );
        let none_valid = map_with(
            &[("app.host.ip", s("")), ("app.host.ip", s("junk"))],
            span(SERVER, &[]),
        );
        assert_eq!(none_valid.ip_1, ip("10.0.0.9"));
        let values: Vec<&AttrValue> = none_valid
            .resource_attributes
            .iter()
            .map(|a| &a.value)
            .collect();
        assert_eq!(
            values,
            [
                &AttrValue::String("10.0.0.9".into()),
                &AttrValue::String("junk".into())
            ]
        );
    }

    #[test]
    fn mapped_peer_is_written_as_ipv4() {
        let sender = Sender {
            peer_ip: Some(IpAddr::V6(Ipv4Addr::new(10, 7, 0, 1).to_ipv6_mapped())),
            agent_id: String::new(),
            places: None,
        };
        let mapped = map_request(
            request(vec![(resource(&[]), vec![span(SERVER, &[])])]),
            &sender,
        );
        let row = &mapped.rows[0];
        assert_eq!(row.ip_1, ip("10.7.0.1"));
        assert_eq!(
            row.resource_attribute("app.host.ip"),
            Some(&AttrValue::String("10.7.0.1".into()))
        );
    }

    #[test]
    fn no_peer_and_no_app_host_ip() {
        let mapped = map_request(
            request(vec![(resource(&[]), vec![span(SERVER, &[])])]),
            &Sender::default(),
        );
        assert_eq!(mapped.rows[0].ip_1, None);
        assert!(mapped.rows[0].resource_attributes.is_empty());
    }

    #[test]
    fn sender_ip_is_decided_per_resource() {
        let mapped = map_request(
            request(vec![
                (
                    resource(&[("app.host.ip", s("172.16.0.5"))]),
                    vec![span(CLIENT, &[])],
                ),
                (resource(&[]), vec![span(CLIENT, &[])]),
                (
                    ResourceSpans {
                        resource: None,
                        ..Default::default()
                    },
                    vec![span(CLIENT, &[])],
                ),
            ]),
            &sender(),
        );
        assert_eq!(mapped.rows[0].ip_0, ip("172.16.0.5"));
        for row in &mapped.rows[1..] {
            assert_eq!(row.ip_0, ip("10.0.0.9"));
            assert_eq!(
                row.resource_attribute("app.host.ip"),
                Some(&AttrValue::String("10.0.0.9".into()))
            );
        }
    }

    #[test]
    fn ports_as_int_string_and_out_of_range() {
        assert_eq!(row(CLIENT, &[("server.port", s("8443"))]).server_port, 8443);
        assert_eq!(row(CLIENT, &[("net.peer.port", d(80.0))]).server_port, 80);
        assert_eq!(row(CLIENT, &[("server.port", i(70000))]).server_port, 0);
        assert_eq!(row(CLIENT, &[("server.port", i(-1))]).server_port, 0);
        assert_eq!(row(CLIENT, &[("server.port", b(true))]).server_port, 0);
        let old = row(
            SERVER,
            &[
                ("net.host.port", i(8080)),
                ("net.sock.peer.port", s("40000")),
            ],
        );
        assert_eq!((old.server_port, old.client_port), (8080, 40000));
        let both = row(CLIENT, &[("net.peer.port", i(1)), ("server.port", i(2))]);
        assert_eq!(both.server_port, 2);
    }

    #[test]
    fn l4_protocol_from_transport() {
        assert_eq!(row(CLIENT, &[]).protocol, 6);
        assert_eq!(row(CLIENT, &[("network.transport", s("udp"))]).protocol, 17);
        assert_eq!(row(CLIENT, &[("net.transport", s("IP_UDP"))]).protocol, 17);
        assert_eq!(row(CLIENT, &[("net.transport", s("ip_tcp"))]).protocol, 6);
        let current_wins = row(
            CLIENT,
            &[
                ("network.transport", s("tcp")),
                ("net.transport", s("ip_udp")),
            ],
        );
        assert_eq!(current_wins.protocol, 6);
    }

    // --- identity and resource tags ----------------------------------------------------------

    #[test]
    fn service_from_resource_then_span() {
        let from_resource = map_with(
            &[
                ("service.name", s("cart")),
                ("service.instance.id", s("cart-1")),
            ],
            span(SERVER, &[("service.name", s("ignored"))]),
        );
        assert_eq!(from_resource.app_service, "cart");
        assert_eq!(from_resource.app_instance, "cart-1");
        let from_span = map_with(
            &[("service.name", i(3))],
            span(
                SERVER,
                &[
                    ("service.name", s("checkout")),
                    ("service.instance.id", s("c-2")),
                ],
            ),
        );
        assert_eq!(from_span.app_service, "checkout");
        assert_eq!(from_span.app_instance, "c-2");
    }

    #[test]
    fn resource_tags_are_filled() {
        let row = map_with(
            &[
                ("host.name", s("node-a")),
                ("container.id", s("abc123")),
                ("k8s.cluster.name", s("prod")),
                ("k8s.namespace.name", s("shop")),
                ("k8s.node.name", s("node-a")),
                ("k8s.pod.name", s("cart-7d9")),
                ("k8s.pod.uid", s("uid-1")),
                ("k8s.replicaset.name", s("cart-7d")),
                ("k8s.deployment.name", s("cart")),
                ("service.namespace", s("shop")),
                ("service.version", d(1.5)),
                ("deployment.environment", s("old")),
                ("deployment.environment.name", s("production")),
            ],
            span(SERVER, &[]),
        );
        let tags = row.resource;
        assert_eq!(tags.host_name, "node-a");
        assert_eq!(tags.container_id, "abc123");
        assert_eq!(tags.k8s_cluster_name, "prod");
        assert_eq!(tags.k8s_namespace_name, "shop");
        assert_eq!(tags.k8s_node_name, "node-a");
        assert_eq!(tags.k8s_pod_name, "cart-7d9");
        assert_eq!(tags.k8s_pod_uid, "uid-1");
        assert_eq!(tags.k8s_workload_kind, "deployment");
        assert_eq!(tags.k8s_workload_name, "cart");
        assert_eq!(tags.service_namespace, "shop");
        assert_eq!(tags.service_version, "1.5");
        assert_eq!(tags.deployment_environment, "production");
    }

    #[test]
    fn workload_kinds_and_old_environment() {
        for (key, kind) in WORKLOADS {
            let row = map_with(&[(key, s("w"))], span(SERVER, &[]));
            assert_eq!(row.resource.k8s_workload_kind, kind);
            assert_eq!(row.resource.k8s_workload_name, "w");
        }
        let env = map_with(
            &[("deployment.environment", s("staging"))],
            span(SERVER, &[]),
        );
        assert_eq!(env.resource.deployment_environment, "staging");
    }

    // --- protocol table ----------------------------------------------------------------------

    #[test]
    fn protocol_table() {
        let cases: [(&str, &str, L7Protocol); 20] = [
            ("rpc.system", "grpc", L7Protocol::Grpc),
            ("rpc.system", "apache_dubbo", L7Protocol::Dubbo),
            ("rpc.system", "dubbo", L7Protocol::Dubbo),
            ("db.system", "mysql", L7Protocol::MySql),
            ("db.system", "mariadb", L7Protocol::MySql),
            ("db.system", "postgresql", L7Protocol::PostgreSql),
            ("db.system.name", "postgres", L7Protocol::PostgreSql),
            ("db.system", "redis", L7Protocol::Redis),
            ("db.system", "mongodb", L7Protocol::MongoDb),
            ("db.system", "memcached", L7Protocol::Memcached),
            ("db.system", "oracle", L7Protocol::Oracle),
            ("db.system.name", "oracle.db", L7Protocol::Oracle),
            ("messaging.system", "kafka", L7Protocol::Kafka),
            ("messaging.system", "rabbitmq", L7Protocol::Amqp),
            ("messaging.system", "activemq", L7Protocol::OpenWire),
            ("messaging.system", "rocketmq", L7Protocol::RocketMq),
            ("messaging.system", "pulsar", L7Protocol::Pulsar),
            ("messaging.system", "nats", L7Protocol::Nats),
            ("messaging.protocol", "MQTT", L7Protocol::Mqtt),
            ("messaging.protocol", " amqp ", L7Protocol::Amqp),
        ];
        for (key, value, protocol) in cases {
            let row = row(CLIENT, &[(key, s(value))]);
            assert_eq!(row.l7_protocol, protocol, "{key}={value}");
            assert_eq!(row.l7_protocol_str, value.trim().to_ascii_lowercase());
        }
    }

    #[test]
    fn no_substring_matching() {
        for value in ["sql", "my", "http-ish", "grpc-web", "kafka2"] {
            let row = row(CLIENT, &[("db.system", s(value))]);
            assert_eq!(row.l7_protocol, L7Protocol::Unknown, "{value}");
        }
    }

    #[test]
    fn unknown_system_keeps_its_name() {
        let row = row(CLIENT, &[("db.system", s("Elasticsearch"))]);
        assert_eq!(row.l7_protocol, L7Protocol::Unknown);
        assert_eq!(row.l7_protocol_str, "elasticsearch");
    }

    #[test]
    fn system_priority_order() {
        let row = row(
            CLIENT,
            &[
                ("messaging.system", s("kafka")),
                ("db.system", s("redis")),
                ("rpc.system", s("grpc")),
                ("http.method", s("POST")),
            ],
        );
        assert_eq!(row.l7_protocol, L7Protocol::Grpc);
        let db = self::row(
            CLIENT,
            &[("db.system", s("mysql")), ("db.system.name", s("mariadb"))],
        );
        assert_eq!(db.l7_protocol_str, "mariadb");
    }

    #[test]
    fn https_scheme_is_http1_with_tls() {
        let row = row(CLIENT, &[("url.scheme", s("https"))]);
        assert_eq!(row.l7_protocol, L7Protocol::Http1);
        assert!(row.is_tls);
        assert_eq!(row.l7_protocol_str, "https");
        let old = self::row(CLIENT, &[("http.scheme", s("http"))]);
        assert_eq!(old.l7_protocol, L7Protocol::Http1);
        assert!(!old.is_tls);
        assert_eq!(old.l7_protocol_str, "http");
    }

    #[test]
    fn https_from_url_full() {
        let row = row(CLIENT, &[("url.full", s("https://api.example.com/v1"))]);
        assert_eq!(row.l7_protocol, L7Protocol::Http1);
        assert!(row.is_tls);
        assert_eq!(row.l7_protocol_str, "https");
    }

    #[test]
    fn http_keys_alone_mean_http1() {
        for key in [
            "http.request.method",
            "http.method",
            "http.response.status_code",
            "http.status_code",
            "url.full",
            "http.url",
            "url.path",
            "http.target",
        ] {
            let row = row(SERVER, &[(key, s("200"))]);
            assert_eq!(row.l7_protocol, L7Protocol::Http1, "{key}");
            assert_eq!(row.l7_protocol_str, "http");
        }
    }

    #[test]
    fn http2_from_version() {
        let current = row(
            CLIENT,
            &[
                ("http.request.method", s("GET")),
                ("network.protocol.version", s("2")),
            ],
        );
        assert_eq!(current.l7_protocol, L7Protocol::Http2);
        assert_eq!(current.version, "2");
        let old = row(
            CLIENT,
            &[("http.method", s("GET")), ("http.flavor", s("2.0"))],
        );
        assert_eq!(old.l7_protocol, L7Protocol::Http2);
        assert_eq!(old.version, "2.0");
        let one = row(
            CLIENT,
            &[
                ("http.method", s("GET")),
                ("network.protocol.version", s("1.1")),
            ],
        );
        assert_eq!(
            (one.l7_protocol, one.version.as_str()),
            (L7Protocol::Http1, "1.1")
        );
    }

    #[test]
    fn no_protocol_keys() {
        let row = row(INTERNAL, &[("custom", s("x"))]);
        assert_eq!(row.l7_protocol, L7Protocol::Unknown);
        assert_eq!(row.l7_protocol_str, "");
        assert_eq!(row.request_type, "");
    }

    #[test]
    fn non_http_scheme_alone_is_unknown() {
        let row = row(CLIENT, &[("url.scheme", s("ftp"))]);
        assert_eq!(row.l7_protocol, L7Protocol::Unknown);
        assert_eq!(row.l7_protocol_str, "ftp");
    }

    #[test]
    fn system_that_is_not_a_string_is_ignored() {
        let row = row(CLIENT, &[("db.system", b(true)), ("http.method", s("GET"))]);
        assert_eq!(row.l7_protocol, L7Protocol::Http1);
    }

    // --- HTTP --------------------------------------------------------------------------------

    #[test]
    fn http_current_conventions() {
        let row = row(
            CLIENT,
            &[
                ("http.request.method", s("POST")),
                ("server.address", s("api.example.com")),
                ("server.port", i(443)),
                ("url.full", s("https://api.example.com/v1/orders?id=3")),
                ("http.response.status_code", i(201)),
                ("http.request.body.size", i(120)),
                ("http.response.body.size", s("64")),
            ],
        );
        assert_eq!(row.request_type, "POST");
        assert_eq!(row.request_domain, "api.example.com");
        assert_eq!(row.request_resource, "/v1/orders?id=3");
        assert_eq!(row.response_code, Some(201));
        assert_eq!(row.response_status, ResponseStatus::Ok);
        assert_eq!(row.request_length, Some(120));
        assert_eq!(row.response_length, Some(64));
    }

    #[test]
    fn http_old_conventions() {
        let row = row(
            SERVER,
            &[
                ("http.method", s("GET")),
                ("http.host", s("shop.local:8080")),
                ("http.target", s("/cart?x=1")),
                ("http.status_code", i(200)),
                ("http.request_content_length", i(10)),
                ("http.response_content_length", i(20)),
            ],
        );
        assert_eq!(row.request_type, "GET");
        assert_eq!(row.request_domain, "shop.local:8080");
        assert_eq!(row.request_resource, "/cart?x=1");
        assert_eq!(row.response_code, Some(200));
        assert_eq!(
            (row.request_length, row.response_length),
            (Some(10), Some(20))
        );
    }

    #[test]
    fn http_current_name_wins() {
        let row = row(
            CLIENT,
            &[
                ("http.method", s("GET")),
                ("http.request.method", s("PUT")),
                ("http.status_code", i(200)),
                ("http.response.status_code", i(404)),
                ("http.target", s("/old")),
                ("url.path", s("/new")),
            ],
        );
        assert_eq!(row.request_type, "PUT");
        assert_eq!(row.response_code, Some(404));
        assert_eq!(row.request_resource, "/new");
    }

    #[test]
    fn http_path_with_query() {
        let row = row(
            SERVER,
            &[("url.path", s("/search")), ("url.query", s("q=otel"))],
        );
        assert_eq!(row.request_resource, "/search?q=otel");
    }

    #[test]
    fn http_resource_fallbacks() {
        let from_old_url = row(CLIENT, &[("http.url", s("http://h:81/a/b?c=d#frag"))]);
        assert_eq!(from_old_url.request_resource, "/a/b?c=d");
        assert_eq!(from_old_url.request_domain, "h");
        let bare_host = row(CLIENT, &[("url.full", s("http://user:pw@[::1]:8080"))]);
        assert_eq!(bare_host.request_resource, "/");
        assert_eq!(bare_host.request_domain, "::1");
        let route = row(
            SERVER,
            &[("http.method", s("GET")), ("http.route", s("/users/:id"))],
        );
        assert_eq!(route.request_resource, "/users/:id");
    }

    #[test]
    fn http_domain_fallbacks() {
        let peer_name = row(
            CLIENT,
            &[("http.method", s("GET")), ("net.peer.name", s("backend"))],
        );
        assert_eq!(peer_name.request_domain, "backend");
        let server_side = row(
            SERVER,
            &[
                ("http.method", s("GET")),
                ("net.peer.name", s("the-client")),
                ("net.host.name", s("frontend")),
            ],
        );
        assert_eq!(server_side.request_domain, "frontend");
    }

    #[test]
    fn status_code_oddly_typed() {
        assert_eq!(
            row(SERVER, &[("http.status_code", s("404"))]).response_code,
            Some(404)
        );
        assert_eq!(
            row(SERVER, &[("http.status_code", d(404.0))]).response_code,
            Some(404)
        );
        assert_eq!(
            row(SERVER, &[("http.status_code", s("404.0"))]).response_code,
            Some(404)
        );
        assert_eq!(
            row(SERVER, &[("http.status_code", d(404.5))]).response_code,
            None
        );
        assert_eq!(
            row(SERVER, &[("http.status_code", b(true))]).response_code,
            None
        );
        assert_eq!(
            row(SERVER, &[("http.status_code", i(1 << 40))]).response_code,
            None
        );
        let fallback = row(
            SERVER,
            &[
                ("http.response.status_code", s("oops")),
                ("http.status_code", i(503)),
            ],
        );
        assert_eq!(fallback.response_code, Some(503));
        assert_eq!(fallback.response_status, ResponseStatus::ServerError);
    }

    #[test]
    fn empty_strings_are_absent() {
        let row = row(
            CLIENT,
            &[
                ("http.request.method", s("")),
                ("http.method", s("DELETE")),
                ("url.path", s("  ")),
                ("http.target", s("/x")),
            ],
        );
        assert_eq!(row.request_type, "DELETE");
        assert_eq!(row.request_resource, "/x");
    }

    #[test]
    fn negative_lengths_are_dropped() {
        let row = row(
            CLIENT,
            &[("http.method", s("GET")), ("http.request.body.size", i(-5))],
        );
        assert_eq!(row.request_length, None);
    }

    // --- DB ----------------------------------------------------------------------------------

    #[test]
    fn db_current_conventions() {
        let row = row(
            CLIENT,
            &[
                ("db.system.name", s("postgresql")),
                ("db.operation.name", s("SELECT")),
                ("db.query.text", s("SELECT * FROM users WHERE id = $1")),
                ("db.collection.name", s("users")),
                ("db.namespace", s("shop")),
                ("server.address", s("pg.local")),
            ],
        );
        assert_eq!(row.l7_protocol, L7Protocol::PostgreSql);
        assert_eq!(row.request_type, "SELECT");
        assert_eq!(row.request_resource, "SELECT * FROM users WHERE id = $1");
        assert_eq!(row.request_domain, "shop");
    }

    #[test]
    fn db_old_conventions() {
        let row = row(
            CLIENT,
            &[
                ("db.system", s("mysql")),
                ("db.operation", s("INSERT")),
                ("db.statement", s("INSERT INTO t VALUES (1)")),
                ("db.name", s("orders")),
            ],
        );
        assert_eq!(row.request_type, "INSERT");
        assert_eq!(row.request_resource, "INSERT INTO t VALUES (1)");
        assert_eq!(row.request_domain, "orders");
    }

    #[test]
    fn db_current_name_wins() {
        let row = row(
            CLIENT,
            &[
                ("db.system", s("mysql")),
                ("db.statement", s("old")),
                ("db.query.text", s("new")),
                ("db.name", s("old_db")),
                ("db.namespace", s("new_db")),
                ("db.operation", s("old_op")),
                ("db.operation.name", s("new_op")),
            ],
        );
        assert_eq!(
            (row.request_resource.as_str(), row.request_domain.as_str()),
            ("new", "new_db")
        );
        assert_eq!(row.request_type, "new_op");
    }

    #[test]
    fn db_collection_and_domain_fallbacks() {
        let mongo = row(
            CLIENT,
            &[
                ("db.system", s("mongodb")),
                ("db.mongodb.collection", s("carts")),
                ("server.address", s("mongo.local")),
            ],
        );
        assert_eq!(mongo.request_resource, "carts");
        assert_eq!(mongo.request_domain, "mongo.local");
        let table = row(
            CLIENT,
            &[
                ("db.system", s("mysql")),
                ("db.sql.table", s("t1")),
                ("db.connection_string", s("Server=x;Database=y")),
            ],
        );
        assert_eq!(table.request_resource, "t1");
        assert_eq!(table.request_domain, "Server=x;Database=y");
        let redis = row(CLIENT, &[("db.system", s("redis")), ("db.namespace", i(0))]);
        assert_eq!(redis.request_domain, "0");
    }

    // --- RPC ---------------------------------------------------------------------------------

    #[test]
    fn grpc_span() {
        let row = row(
            CLIENT,
            &[
                ("rpc.system", s("grpc")),
                ("rpc.service", s("helloworld.Greeter")),
                ("rpc.method", s("SayHello")),
                ("rpc.grpc.status_code", i(0)),
                ("server.address", s("greeter.local")),
            ],
        );
        assert_eq!(row.l7_protocol, L7Protocol::Grpc);
        assert_eq!(row.l7_protocol_str, "grpc");
        assert_eq!(row.request_type, "SayHello");
        assert_eq!(row.request_resource, "helloworld.Greeter/SayHello");
        assert_eq!(row.request_domain, "greeter.local");
        assert_eq!(row.response_code, Some(0));
        assert_eq!(row.response_status, ResponseStatus::Ok);
    }

    #[test]
    fn grpc_status_codes() {
        let cases = [
            (3, ResponseStatus::ClientError),
            (5, ResponseStatus::ClientError),
            (6, ResponseStatus::ClientError),
            (7, ResponseStatus::ClientError),
            (9, ResponseStatus::ClientError),
            (11, ResponseStatus::ClientError),
            (16, ResponseStatus::ClientError),
            (2, ResponseStatus::ServerError),
            (4, ResponseStatus::ServerError),
            (13, ResponseStatus::ServerError),
            (14, ResponseStatus::ServerError),
        ];
        for (code, status) in cases {
            let row = row(
                CLIENT,
                &[("rpc.system", s("grpc")), ("rpc.grpc.status_code", i(code))],
            );
            assert_eq!(row.response_status, status, "{code}");
            assert_eq!(row.response_exception, GRPC_CODES[code as usize]);
        }
    }

    #[test]
    fn rpc_response_status_code_as_name_or_string() {
        let by_name = row(
            SERVER,
            &[
                ("rpc.system", s("grpc")),
                ("rpc.response.status_code", s("NOT_FOUND")),
            ],
        );
        assert_eq!(by_name.response_code, Some(5));
        assert_eq!(by_name.response_status, ResponseStatus::ClientError);
        let by_text = row(
            SERVER,
            &[
                ("rpc.system", s("grpc")),
                ("rpc.response.status_code", s("14")),
            ],
        );
        assert_eq!(by_text.response_code, Some(14));
        assert_eq!(by_text.response_status, ResponseStatus::ServerError);
    }

    #[test]
    fn grpc_code_leads_over_http_200_on_rpc_spans() {
        let row = row(
            CLIENT,
            &[
                ("rpc.system", s("grpc")),
                ("http.status_code", i(200)),
                ("rpc.grpc.status_code", i(5)),
            ],
        );
        assert_eq!(row.response_code, Some(5));
        assert_eq!(row.response_status, ResponseStatus::ClientError);
    }

    #[test]
    fn rpc_service_or_method_alone() {
        let service = row(
            CLIENT,
            &[("rpc.system", s("dubbo")), ("rpc.service", s("Svc"))],
        );
        assert_eq!(
            (
                service.request_resource.as_str(),
                service.request_type.as_str()
            ),
            ("Svc", "")
        );
        let method = row(
            CLIENT,
            &[("rpc.system", s("dubbo")), ("rpc.method", s("Do"))],
        );
        assert_eq!(method.request_resource, "Do");
        assert_eq!(method.l7_protocol, L7Protocol::Dubbo);
    }

    // --- messaging ---------------------------------------------------------------------------

    #[test]
    fn messaging_current_conventions() {
        let row = row(
            PRODUCER,
            &[
                ("messaging.system", s("kafka")),
                ("messaging.operation.type", s("send")),
                ("messaging.destination.name", s("orders")),
                ("server.address", s("kafka-0")),
            ],
        );
        assert_eq!(row.l7_protocol, L7Protocol::Kafka);
        assert_eq!(row.request_type, "send");
        assert_eq!(row.request_resource, "orders");
        assert_eq!(row.request_domain, "kafka-0");
    }

    #[test]
    fn messaging_old_conventions_and_precedence() {
        let old = row(
            CONSUMER,
            &[
                ("messaging.system", s("rabbitmq")),
                ("messaging.operation", s("process")),
                ("messaging.destination", s("q1")),
            ],
        );
        assert_eq!(
            (old.request_type.as_str(), old.request_resource.as_str()),
            ("process", "q1")
        );
        let url = row(
            CONSUMER,
            &[
                ("messaging.system", s("nats")),
                ("messaging.url", s("nats://n:4222")),
            ],
        );
        assert_eq!(url.request_resource, "nats://n:4222");
        let both = row(
            CONSUMER,
            &[
                ("messaging.system", s("kafka")),
                ("messaging.operation", s("receive")),
                ("messaging.operation.type", s("process")),
                ("messaging.destination", s("old")),
                ("messaging.destination.name", s("new")),
            ],
        );
        assert_eq!(
            (both.request_type.as_str(), both.request_resource.as_str()),
            ("process", "new")
        );
    }

    // --- response status and exception -------------------------------------------------------

    #[test]
    fn http_status_ranges() {
        let cases = [
            (200, ResponseStatus::Ok, ""),
            (302, ResponseStatus::Ok, ""),
            (404, ResponseStatus::ClientError, "Not Found"),
            (499, ResponseStatus::ClientError, ""),
            (500, ResponseStatus::ServerError, "Internal Server Error"),
            (503, ResponseStatus::ServerError, "Service Unavailable"),
            (600, ResponseStatus::Ok, ""),
        ];
        for (code, status, exception) in cases {
            let row = row(SERVER, &[("http.response.status_code", i(code))]);
            assert_eq!(row.response_status, status, "{code}");
            assert_eq!(row.response_exception, exception, "{code}");
        }
    }

    #[test]
    fn span_status_without_codes() {
        let ok = map_with(&[], with_status(span(SERVER, &[]), 1, ""));
        assert_eq!(
            (ok.response_status, ok.status_code),
            (ResponseStatus::Ok, 1)
        );
        let error = map_with(&[], with_status(span(SERVER, &[]), 2, "boom"));
        assert_eq!(error.response_status, ResponseStatus::ServerError);
        assert_eq!(error.response_exception, "boom");
        assert_eq!(
            (error.status_code, error.status_message.as_str()),
            (2, "boom")
        );
        let unset = map_with(&[], span(SERVER, &[]));
        assert_eq!(
            (unset.response_status, unset.status_code),
            (ResponseStatus::Unknown, 0)
        );
        let odd = map_with(&[], with_status(span(SERVER, &[]), -3, ""));
        assert_eq!(
            (odd.response_status, odd.status_code),
            (ResponseStatus::Unknown, 0)
        );
    }

    #[test]
    fn error_status_forces_server_error_unless_client_error() {
        let ok_code = map_with(
            &[],
            with_status(span(SERVER, &[("http.status_code", i(200))]), 2, "failed"),
        );
        assert_eq!(ok_code.response_status, ResponseStatus::ServerError);
        assert_eq!(ok_code.response_exception, "failed");
        let client = map_with(
            &[],
            with_status(span(SERVER, &[("http.status_code", i(404))]), 2, ""),
        );
        assert_eq!(client.response_status, ResponseStatus::ClientError);
        assert_eq!(client.response_exception, "Not Found");
    }

    #[test]
    fn ok_message_is_not_an_exception() {
        let row = map_with(&[], with_status(span(SERVER, &[]), 1, "fine"));
        assert_eq!(row.response_exception, "");
        assert_eq!(row.status_message, "fine");
    }

    #[test]
    fn exception_event_gives_the_exception() {
        let mut failing = span(SERVER, &[]);
        failing.events = vec![
            span::Event {
                time_unix_nano: 1_704_067_201_100_000_000,
                name: "log".to_string(),
                attributes: kvs(&[("exception.message", s("not this"))]),
                dropped_attributes_count: 0,
            },
            span::Event {
                time_unix_nano: 1_704_067_201_200_000_000,
                name: "exception".to_string(),
                attributes: kvs(&[
                    ("exception.type", s("java.io.IOException")),
                    ("exception.message", s("disk full")),
                ]),
                dropped_attributes_count: 2,
            },
        ];
        let row = map_with(&[], with_status(failing, 2, ""));
        assert_eq!(row.response_exception, "java.io.IOException: disk full");
        assert_eq!(row.events.len(), 2);
        assert_eq!(row.events[1].time_us, 1_704_067_201_200_000);
        assert_eq!(row.events[1].name, "exception");
        assert_eq!(row.events[1].dropped_attributes_count, 2);
        assert_eq!(row.events[1].attributes.len(), 2);
    }

    #[test]
    fn exception_event_message_only() {
        let mut failing = span(SERVER, &[]);
        failing.events = vec![span::Event {
            name: "exception".to_string(),
            attributes: kvs(&[("exception.message", s("oops"))]),
            ..Default::default()
        }];
        assert_eq!(map_with(&[], failing).response_exception, "oops");
    }

    // --- attributes, events, links -----------------------------------------------------------

    #[test]
    fn attributes_keep_types_and_order() {
        let nested = AnyValue {
            value: Some(any_value::Value::KvlistValue(KeyValueList {
                values: kvs(&[("inner", i(1))]),
            })),
        };
        let array = AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: vec![s("a"), b(false), AnyValue { value: None }],
            })),
        };
        let bytes = AnyValue {
            value: Some(any_value::Value::BytesValue(vec![1, 2])),
        };
        let mut typed = span(
            INTERNAL,
            &[
                ("z", s("text")),
                ("a", i(-7)),
                ("f", d(0.5)),
                ("t", b(true)),
                ("kv", nested),
                ("arr", array),
                ("raw", bytes),
                ("none", AnyValue { value: None }),
            ],
        );
        typed.attributes.push(KeyValue {
            key: "missing".to_string(),
            value: None,
            ..Default::default()
        });
        typed.dropped_attributes_count = 4;
        typed.dropped_events_count = 5;
        let row = map_with(&[], typed);
        let keys: Vec<&str> = row.attributes.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(
            keys,
            ["z", "a", "f", "t", "kv", "arr", "raw", "none", "missing"]
        );
        assert_eq!(row.attribute("a"), Some(&AttrValue::Int(-7)));
        assert_eq!(row.attribute("f"), Some(&AttrValue::Double(0.5)));
        assert_eq!(row.attribute("t"), Some(&AttrValue::Bool(true)));
        assert_eq!(
            row.attribute("kv"),
            Some(&AttrValue::KeyValueList(vec![Attribute::new(
                "inner",
                AttrValue::Int(1)
            )]))
        );
        assert_eq!(
            row.attribute("arr"),
            Some(&AttrValue::Array(vec![
                AttrValue::String("a".into()),
                AttrValue::Bool(false),
                AttrValue::Empty
            ]))
        );
        assert_eq!(row.attribute("raw"), Some(&AttrValue::Bytes(vec![1, 2])));
        assert_eq!(row.attribute("none"), Some(&AttrValue::Empty));
        assert_eq!(row.attribute("missing"), Some(&AttrValue::Empty));
        assert_eq!(
            (row.dropped_attributes_count, row.dropped_events_count),
            (4, 5)
        );
    }

    #[test]
    fn values_nest_as_deep_as_protobuf_allows() {
        fn nested(levels: usize) -> AnyValue {
            let mut value = s("leaf");
            for _ in 0..levels {
                value = AnyValue {
                    value: Some(any_value::Value::ArrayValue(ArrayValue {
                        values: vec![value],
                    })),
                };
            }
            value
        }
        // Five messages enclose a span's attribute value, and each level of an array two more:
        // 47 levels reach prost's recursion limit of 100.
        let row = row(INTERNAL, &[("deep", nested(47))]);
        let mut current = row.attribute("deep").unwrap();
        let mut depth = 0;
        while let AttrValue::Array(items) = current {
            current = &items[0];
            depth += 1;
        }
        assert_eq!(depth, 47);
        assert_eq!(current, &AttrValue::String("leaf".to_string()));

        // One more and the payload is refused whole, as prost refuses it.
        let mapped = map_request(
            request(vec![(
                resource(&[]),
                vec![span(INTERNAL, &[("deep", nested(48))])],
            )]),
            &sender(),
        );
        assert!(mapped.rows.is_empty());
        assert_eq!(mapped.n_rejected, 1);
        let message = mapped.rejected_message.unwrap();
        assert!(message.contains("recursion limit of 100"), "{message}");
    }

    #[test]
    fn links_with_bad_ids_are_dropped() {
        let mut linked = span(CONSUMER, &[]);
        linked.dropped_links_count = 1;
        let good = span::Link {
            trace_id: vec![9; 16],
            span_id: vec![8; 8],
            trace_state: "k=v".to_string(),
            attributes: kvs(&[("link.kind", s("batch"))]),
            dropped_attributes_count: 3,
            flags: 0x100,
        };
        let zero = span::Link {
            trace_id: vec![0; 16],
            ..good.clone()
        };
        let short = span::Link {
            span_id: vec![8; 2],
            ..good.clone()
        };
        linked.links = vec![zero, good, short];
        let row = map_with(&[], linked);
        assert_eq!(row.links.len(), 1);
        let link = &row.links[0];
        assert_eq!(
            (link.trace_id, link.span_id),
            (TraceId([9; 16]), SpanId([8; 8]))
        );
        assert_eq!(link.trace_state, "k=v");
        assert_eq!(link.attributes[0].key, "link.kind");
        assert_eq!((link.dropped_attributes_count, link.flags), (3, 0x100));
        assert_eq!(row.dropped_links_count, 3);
    }

    #[test]
    fn resource_attributes_are_kept() {
        let row = map_with(
            &[("service.name", s("svc")), ("process.pid", i(42))],
            span(SERVER, &[]),
        );
        let keys: Vec<&str> = row
            .resource_attributes
            .iter()
            .map(|a| a.key.as_str())
            .collect();
        assert_eq!(keys, ["service.name", "process.pid", "app.host.ip"]);
        assert_eq!(
            row.resource_attribute("process.pid"),
            Some(&AttrValue::Int(42))
        );
    }

    #[test]
    fn map_span_is_usable_alone() {
        let context = ResourceContext::new(
            vec![Attribute::new(
                "service.name",
                AttrValue::String("alone".to_string()),
            )],
            &Sender {
                peer_ip: Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
                agent_id: "a".to_string(),
                places: None,
            },
        );
        assert_eq!(context.sender_ip, Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        let span = SpanFields {
            trace_id: &TRACE,
            span_id: &SPAN,
            kind: CLIENT,
            ..Default::default()
        };
        let row = map_span(&context, ScopeFields::default(), span).unwrap();
        assert_eq!(row.app_service, "alone");
        assert_eq!(row.ip_0, Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert_eq!(row.scope_name, "");
    }

    #[test]
    fn empty_request_maps_to_nothing() {
        let mapped = map_request(ExportTraceServiceRequest::default(), &sender());
        assert!(mapped.rows.is_empty());
        assert_eq!(mapped.n_rejected, 0);
        assert_eq!(mapped.rejected_message, None);
    }

    // --- property ----------------------------------------------------------------------------

    /// Keys the mapping reads, plus arbitrary ones.
    fn key_strategy() -> impl Strategy<Value = String> {
        let known: Vec<&'static str> = vec![
            "app.host.ip",
            "service.name",
            "network.peer.address",
            "net.peer.ip",
            "server.address",
            "client.address",
            "http.client_ip",
            "server.port",
            "client.port",
            "net.peer.port",
            "network.transport",
            "network.protocol.version",
            "http.flavor",
            "rpc.system",
            "db.system",
            "db.system.name",
            "messaging.system",
            "url.scheme",
            "url.full",
            "http.url",
            "url.path",
            "url.query",
            "http.status_code",
            "http.response.status_code",
            "rpc.grpc.status_code",
            "rpc.response.status_code",
            "http.request.body.size",
            "rpc.service",
            "rpc.method",
            "k8s.deployment.name",
        ];
        prop_oneof![
            proptest::sample::select(known).prop_map(str::to_string),
            ".{0,12}",
        ]
    }

    fn leaf_strategy() -> impl Strategy<Value = AnyValue> {
        let value = prop_oneof![
            ".{0,24}".prop_map(any_value::Value::StringValue),
            "(https?|ftp)://[a-z@:\\[\\]0-9.]{0,10}[/?#]{0,3}.{0,6}"
                .prop_map(any_value::Value::StringValue),
            "[0-9a-f:.\\[\\]]{0,20}".prop_map(any_value::Value::StringValue),
            any::<bool>().prop_map(any_value::Value::BoolValue),
            any::<i64>().prop_map(any_value::Value::IntValue),
            any::<f64>().prop_map(any_value::Value::DoubleValue),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(any_value::Value::BytesValue),
            any::<i32>().prop_map(any_value::Value::StringValueStrindex),
        ];
        proptest::option::of(value).prop_map(|value| AnyValue { value })
    }

    fn value_strategy() -> impl Strategy<Value = AnyValue> {
        leaf_strategy().prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(|values| AnyValue {
                    value: Some(any_value::Value::ArrayValue(ArrayValue { values })),
                }),
                proptest::collection::vec(("[a-z.]{0,6}", inner), 0..4).prop_map(|pairs| {
                    AnyValue {
                        value: Some(any_value::Value::KvlistValue(KeyValueList {
                            values: pairs
                                .into_iter()
                                .map(|(key, value)| KeyValue {
                                    key,
                                    value: Some(value),
                                    ..Default::default()
                                })
                                .collect(),
                        })),
                    }
                }),
            ]
        })
    }

    fn attributes_strategy() -> impl Strategy<Value = Vec<KeyValue>> {
        proptest::collection::vec(
            (key_strategy(), proptest::option::of(value_strategy())),
            0..12,
        )
        .prop_map(|pairs| {
            pairs
                .into_iter()
                .map(|(key, value)| KeyValue {
                    key,
                    value,
                    ..Default::default()
                })
                .collect()
        })
    }

    fn bytes_strategy(len: usize) -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), len),
            proptest::collection::vec(any::<u8>(), 0..20),
            Just(vec![0; len]),
        ]
    }

    prop_compose! {
        fn span_strategy()(
            trace_id in bytes_strategy(16),
            span_id in bytes_strategy(8),
            parent_span_id in bytes_strategy(8),
            kind in any::<i32>(),
            start in any::<u64>(),
            end in any::<u64>(),
            attributes in attributes_strategy(),
            status in proptest::option::of((any::<i32>(), ".{0,8}")),
            event_attributes in attributes_strategy(),
            link_ids in (bytes_strategy(16), bytes_strategy(8)),
            dropped in any::<u32>(),
        ) -> Span {
            Span {
                trace_id,
                span_id,
                parent_span_id,
                kind,
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                attributes,
                status: status.map(|(code, message)| Status { code, message }),
                events: vec![span::Event {
                    time_unix_nano: end,
                    name: "exception".to_string(),
                    attributes: event_attributes,
                    dropped_attributes_count: dropped,
                }],
                links: vec![span::Link {
                    trace_id: link_ids.0,
                    span_id: link_ids.1,
                    ..Default::default()
                }],
                dropped_links_count: dropped,
                ..Default::default()
            }
        }
    }

    /// Spans of every family, each setting every column its family can, with events, links,
    /// an error status and trace state: the rows a pool then holds have no column left empty.
    fn every_column_filled() -> ExportTraceServiceRequest {
        let common = [
            ("service.name", s("svc")),
            ("service.instance.id", s("svc-0")),
            ("network.peer.address", s("10.1.1.1")),
            ("client.address", s("10.1.1.2")),
            ("server.port", i(8080)),
            ("client.port", i(4242)),
            ("network.transport", s("udp")),
            ("network.protocol.version", s("2")),
            ("server.address", s("svc.example")),
        ];
        let families: [&[(&str, AnyValue)]; 4] = [
            &[
                ("url.scheme", s("https")),
                ("http.request.method", s("POST")),
                ("url.path", s("/orders")),
                ("url.query", s("a=1")),
                ("http.response.status_code", i(503)),
                ("http.request.body.size", i(12)),
                ("http.response.body.size", i(34)),
            ],
            &[
                ("db.system", s("PostgreSQL")),
                ("db.operation.name", s("SELECT")),
                ("db.query.text", s("SELECT 1")),
                ("db.namespace", s("orders")),
            ],
            &[
                ("rpc.system", s("grpc")),
                ("rpc.service", s("Cart")),
                ("rpc.method", s("Get")),
                ("rpc.grpc.status_code", i(5)),
            ],
            &[
                ("messaging.system", s("kafka")),
                ("messaging.operation.type", s("publish")),
                ("messaging.destination.name", s("orders")),
            ],
        ];
        let spans = families
            .iter()
            .flat_map(|family| [CLIENT, SERVER].map(|kind| (family, kind)))
            .map(|(family, kind)| {
                let attributes: Vec<_> = common.iter().chain(family.iter()).cloned().collect();
                let mut span = span(kind, &attributes);
                span.trace_state = "k=v".to_string();
                span.parent_span_id = vec![7; 8];
                span.flags = 0x301;
                span.status = Some(Status {
                    code: 2,
                    message: "broken".to_string(),
                });
                span.events = vec![span::Event {
                    time_unix_nano: 1,
                    name: "exception".to_string(),
                    attributes: kvs(&[("exception.type", s("E"))]),
                    dropped_attributes_count: 1,
                }];
                span.links = vec![span::Link {
                    trace_id: vec![3; 16],
                    span_id: vec![4; 8],
                    trace_state: "l=1".to_string(),
                    ..Default::default()
                }];
                span.dropped_attributes_count = 1;
                span.dropped_events_count = 2;
                span.dropped_links_count = 3;
                span
            })
            .collect();
        request(vec![(
            resource(&[("k8s.pod.name", s("svc-0")), ("host.name", s("node"))]),
            spans,
        )])
    }

    fn request_strategy() -> impl Strategy<Value = ExportTraceServiceRequest> {
        proptest::collection::vec(
            (
                attributes_strategy(),
                proptest::collection::vec(span_strategy(), 0..4),
            ),
            0..3,
        )
        .prop_map(|resources| ExportTraceServiceRequest {
            resource_spans: resources
                .into_iter()
                .map(|(attributes, spans)| ResourceSpans {
                    resource: Some(Resource {
                        attributes,
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        scope: None,
                        spans,
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                })
                .collect(),
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Rows mapped into the buffers of the spans before them are the rows mapped afresh:
        /// nothing of an earlier span stays behind in a reused row.
        #[test]
        fn a_pool_used_again_maps_as_a_fresh_one(
            requests in proptest::collection::vec(request_strategy(), 1..6),
        ) {
            let sender = Sender { peer_ip: None, agent_id: "p".into(), places: None };
            let mut pool = crate::wire::RowPool::default();
            let filled = every_column_filled().encode_to_vec();
            for request in requests {
                let payload = request.encode_to_vec();
                let fresh = map_request(request, &sender);
                crate::wire::map_payload(&filled, &sender, &mut pool).unwrap();
                prop_assert_eq!(pool.rows().len(), 8);
                let reused = crate::wire::map_payload(&payload, &sender, &mut pool).unwrap();
                // As text: NaN doubles are not equal to themselves.
                prop_assert_eq!(format!("{:?}", pool.rows()), format!("{:?}", fresh.rows));
                prop_assert_eq!(reused.n_rejected, fresh.n_rejected);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn map_request_never_panics(
            resources in proptest::collection::vec(
                (attributes_strategy(), proptest::collection::vec(span_strategy(), 0..4)),
                0..3,
            ),
            peer in proptest::option::of(any::<IpAddr>()),
        ) {
            let n_spans: usize = resources.iter().map(|(_, spans)| spans.len()).sum();
            let request = ExportTraceServiceRequest {
                resource_spans: resources
                    .into_iter()
                    .map(|(attributes, spans)| ResourceSpans {
                        resource: Some(Resource { attributes, ..Default::default() }),
                        scope_spans: vec![ScopeSpans { scope: None, spans, schema_url: String::new() }],
                        schema_url: String::new(),
                    })
                    .collect(),
            };
            let mapped = map_request(request, &Sender { peer_ip: peer, agent_id: "p".into(), places: None });
            prop_assert_eq!(mapped.rows.len() + mapped.n_rejected, n_spans);
            prop_assert_eq!(mapped.rejected_message.is_some(), mapped.n_rejected > 0);
            for row in &mapped.rows {
                // The sender side holds the resource's first usable `app.host.ip`, which
                // always exists when the TCP peer is known.
                let sender_side = match row.observation_point {
                    ObservationPoint::ClientApp => row.ip_0,
                    _ => row.ip_1,
                };
                let declared = first_host_ip(&row.resource_attributes);
                prop_assert!(declared.is_none() || declared == sender_side);
                prop_assert!(peer.is_none() || declared.is_some());
                for ip in [row.ip_0, row.ip_1].into_iter().flatten() {
                    if let IpAddr::V6(v6) = ip {
                        prop_assert!(v6.to_ipv4_mapped().is_none());
                    }
                }
            }
        }
    }
}
