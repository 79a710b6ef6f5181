//! The conformance suite every [`SpanStore`] backend runs, so that they agree on what a store
//! means: what is written reads back whole, trace-by-id needs no time range, searches filter the
//! same way, and a resent span is stored once.
//!
//! A backend calls [`run_all`] from its tests with a factory that makes an empty store.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use spanflow_model::{
    AttrValue, Attribute, AutoType, Event, L7Protocol, Link, ObservationPoint, Place, ResourceTags,
    ResponseStatus, SpanId, SpanKind, SpanRow, TraceId,
};

use crate::{AttributeFilter, Operation, PlaceFilter, SpanQuery, SpanStore, TimeRange};

/// A trace id whose bytes spell `n`.
pub fn trace_id(n: u8) -> TraceId {
    let mut bytes = [0u8; 16];
    bytes[0] = 0xab;
    bytes[15] = n;
    TraceId(bytes)
}

/// A span id whose bytes spell `n`.
pub fn span_id(n: u8) -> SpanId {
    SpanId([0xcd, 0, 0, 0, 0, 0, 0, n])
}

/// A plain server span starting at `start_time` µs, lasting 1 ms.
pub fn row(trace: u8, span: u8, service: &str, operation: &str, start_time: i64) -> SpanRow {
    SpanRow {
        time: (start_time + 1_000) / 1_000_000,
        start_time,
        end_time: start_time + 1_000,
        trace_id: trace_id(trace),
        span_id: span_id(span),
        span_kind: SpanKind::Server,
        observation_point: ObservationPoint::ServerApp,
        endpoint: operation.to_string(),
        app_service: service.to_string(),
        response_duration: 1_000,
        response_status: ResponseStatus::Ok,
        protocol: 6,
        signal_source: spanflow_model::SIGNAL_SOURCE_OTEL,
        ..SpanRow::default()
    }
}

/// A span with every column set to something other than its default.
pub fn full_row() -> SpanRow {
    SpanRow {
        time: 1_700_000_001,
        start_time: 1_700_000_000_250_000,
        end_time: 1_700_000_001_000_000,
        trace_id: trace_id(200),
        span_id: span_id(2),
        parent_span_id: Some(span_id(1)),
        span_kind: SpanKind::Client,
        observation_point: ObservationPoint::ClientApp,
        trace_state: "vendor=1".into(),
        flags: 0x101,
        endpoint: "SELECT orders".into(),
        app_service: "checkout".into(),
        app_instance: "checkout-1".into(),
        signal_source: spanflow_model::SIGNAL_SOURCE_OTEL,
        agent_id: "node-a".into(),
        l7_protocol: L7Protocol::PostgreSql,
        l7_protocol_str: "postgresql".into(),
        version: "3".into(),
        is_tls: true,
        protocol: 6,
        request_type: "SELECT".into(),
        request_domain: "shop".into(),
        request_resource: "SELECT * FROM orders WHERE id = $1".into(),
        request_length: Some(120),
        response_length: Some(4096),
        response_code: Some(-1),
        response_status: ResponseStatus::ServerError,
        response_exception: "connection reset".into(),
        status_code: 2,
        status_message: "connection reset".into(),
        response_duration: 750_000,
        ip_0: Some(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))),
        ip_1: Some(IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 7))),
        client_port: 51234,
        server_port: 5432,
        place_0: Place {
            pod: "checkout-7d9f8-abcde".into(),
            pod_ns: "shop".into(),
            pod_group: "checkout".into(),
            pod_group_type: "deployment".into(),
            pod_node: "node-a".into(),
            pod_cluster: "prod".into(),
            service: "checkout".into(),
            host: "host-a".into(),
            region: "eu-west".into(),
            az: "eu-west-1a".into(),
            auto_instance: "checkout-7d9f8-abcde".into(),
            auto_instance_type: AutoType::Pod,
            auto_service: "checkout".into(),
            auto_service_type: AutoType::PodService,
            labels: vec![
                ("app".into(), "checkout".into()),
                ("team".into(), "pay \"ments\"".into()),
            ],
        }
        .into(),
        place_1: Place {
            pod_ns: "data".into(),
            service: "orders-db".into(),
            pod_cluster: "prod".into(),
            auto_instance: "orders-db".into(),
            auto_instance_type: AutoType::PodService,
            auto_service: "orders-db".into(),
            auto_service_type: AutoType::PodService,
            ..Place::default()
        }
        .into(),
        scope_name: "sqlalchemy".into(),
        scope_version: "2.0".into(),
        resource: ResourceTags {
            host_name: "host-a".into(),
            container_id: "c0ffee".into(),
            k8s_cluster_name: "prod".into(),
            k8s_namespace_name: "shop".into(),
            k8s_node_name: "node-a".into(),
            k8s_pod_name: "checkout-7d9f8-abcde".into(),
            k8s_pod_uid: "uid-1".into(),
            k8s_workload_kind: "deployment".into(),
            k8s_workload_name: "checkout".into(),
            service_namespace: "shop".into(),
            service_version: "1.4.2".into(),
            deployment_environment: "production".into(),
        }
        .into(),
        attributes: vec![
            Attribute::new("db.system.name", AttrValue::String("postgresql".into())),
            Attribute::new("rows", AttrValue::Int(-3)),
            Attribute::new("ratio", AttrValue::Double(0.25)),
            Attribute::new("cached", AttrValue::Bool(false)),
            Attribute::new("blob", AttrValue::Bytes(vec![0, 255, 7])),
            Attribute::new(
                "tags",
                AttrValue::Array(vec![AttrValue::String("a".into()), AttrValue::Int(2)]),
            ),
            Attribute::new(
                "nested",
                AttrValue::KeyValueList(vec![Attribute::new("inner", AttrValue::Bool(true))]),
            ),
            Attribute::new("nothing", AttrValue::Empty),
        ],
        resource_attributes: vec![
            Attribute::new("service.name", AttrValue::String("checkout".into())),
            Attribute::new("app.host.ip", AttrValue::String("10.1.2.3".into())),
        ]
        .into(),
        events: vec![Event {
            time_us: 1_700_000_000_500_000,
            name: "exception".into(),
            attributes: vec![Attribute::new(
                "exception.message",
                AttrValue::String("connection reset".into()),
            )],
            dropped_attributes_count: 1,
        }],
        links: vec![Link {
            trace_id: trace_id(201),
            span_id: span_id(9),
            trace_state: "other=2".into(),
            attributes: vec![Attribute::new(
                "link.kind",
                AttrValue::String("retry".into()),
            )],
            dropped_attributes_count: 2,
            flags: 1,
        }],
        dropped_attributes_count: 3,
        dropped_events_count: 4,
        dropped_links_count: 5,
    }
}

/// Runs every case against fresh stores from `make_store`.
pub async fn run_all<S, F, Fut>(make_store: F)
where
    S: SpanStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    a_written_row_reads_back_whole(make_store().await).await;
    a_prepared_write_reads_back_whole(make_store().await).await;
    trace_by_id_spans_time_and_ignores_other_traces(make_store().await).await;
    an_unknown_trace_is_empty(make_store().await).await;
    a_resent_span_is_stored_once(make_store().await).await;
    searches_filter_and_limit(make_store().await).await;
    services_and_operations_are_listed_per_time_range(make_store().await).await;
    the_service_map_and_red_series_aggregate_calls(make_store().await).await;
}

/// The cases only a durable backend passes: `open` opens the store kept at `location`, with a
/// retention of 72 hours. Dropping a store and opening the same location again is a restart.
pub async fn run_durable<S, F, Fut>(location: &std::path::Path, open: F)
where
    S: SpanStore,
    F: Fn(std::path::PathBuf) -> Fut,
    Fut: Future<Output = S>,
{
    let restart = location.join("restart");
    everything_written_survives_a_restart(&restart, &open).await;
    let retention = location.join("retention");
    retention_drops_old_spans_and_keeps_recent_ones(open(retention).await).await;
}

async fn everything_written_survives_a_restart<S, F, Fut>(location: &std::path::Path, open: &F)
where
    S: SpanStore,
    F: Fn(std::path::PathBuf) -> Fut,
    Fut: Future<Output = S>,
{
    let now = now_us();
    // Recent, so that no retention the backend runs on upkeep can take it.
    let mut full = full_row();
    let shift = now - full.start_time;
    full.start_time += shift;
    full.end_time += shift;
    full.time = full.end_time / 1_000_000;
    for event in &mut full.events {
        event.time_us += shift;
    }
    let rows = [
        full.clone(),
        row(7, 1, "a", "x", now),
        row(7, 2, "a", "y", now + 1),
    ];
    {
        let store = open(location.to_path_buf()).await;
        store.write(rows[..1].to_vec()).await.unwrap();
        store.maintain().await.unwrap();
        store.write(rows[1..].to_vec()).await.unwrap();
    }
    let store = open(location.to_path_buf()).await;
    assert_eq!(
        store.trace(full.trace_id).await.unwrap(),
        vec![full],
        "{}",
        store.backend()
    );
    assert_eq!(
        store.trace(trace_id(7)).await.unwrap().len(),
        2,
        "{}",
        store.backend()
    );
    // A resend after the restart still stores each span once.
    store.write(rows[1..].to_vec()).await.unwrap();
    store.maintain().await.unwrap();
    assert_eq!(
        store.trace(trace_id(7)).await.unwrap().len(),
        2,
        "{}",
        store.backend()
    );
}

async fn retention_drops_old_spans_and_keeps_recent_ones(store: impl SpanStore) {
    let hour_us = 3_600_000_000i64;
    let now = now_us();
    store
        .write(vec![
            row(1, 1, "a", "four days old", now - 96 * hour_us),
            row(2, 1, "a", "two days old", now - 48 * hour_us),
            row(3, 1, "a", "now", now),
        ])
        .await
        .unwrap();
    store.maintain().await.unwrap();
    assert!(
        store.trace(trace_id(1)).await.unwrap().is_empty(),
        "{}",
        store.backend()
    );
    assert_eq!(
        store.trace(trace_id(2)).await.unwrap().len(),
        1,
        "{}",
        store.backend()
    );
    assert_eq!(
        store.trace(trace_id(3)).await.unwrap().len(),
        1,
        "{}",
        store.backend()
    );
    let all = store.search(&SpanQuery::default()).await.unwrap();
    assert_eq!(all.len(), 2, "{}", store.backend());
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_micros() as i64
}

async fn a_written_row_reads_back_whole(store: impl SpanStore) {
    let row = full_row();
    store.write(vec![row.clone()]).await.unwrap();
    let read = store.trace(row.trace_id).await.unwrap();
    assert_eq!(
        read,
        vec![row],
        "{}: row read back differs",
        store.backend()
    );
}

/// The server's way to write: `prepare` on the thread that built the rows, then `write_prepared`.
async fn a_prepared_write_reads_back_whole(store: impl SpanStore) {
    let row = full_row();
    let prepared = store.prepare(vec![row.clone()]).unwrap();
    assert_eq!(prepared.n_rows(), 1, "{}", store.backend());
    store.write_prepared(prepared).await.unwrap();
    let nothing = store.prepare(Vec::new()).unwrap();
    store.write_prepared(nothing).await.unwrap();
    assert_eq!(
        store.trace(row.trace_id).await.unwrap(),
        vec![row],
        "{}: row read back differs",
        store.backend()
    );
    let all = store.search(&SpanQuery::default()).await.unwrap();
    assert_eq!(all.len(), 1, "{}", store.backend());
}

async fn trace_by_id_spans_time_and_ignores_other_traces(store: impl SpanStore) {
    let hour_us = 3_600_000_000i64;
    let base = 1_700_000_000_000_000i64;
    // One trace whose spans lie days apart, written in three batches, out of order.
    store
        .write(vec![
            row(1, 3, "a", "late", base + 50 * hour_us),
            row(2, 1, "b", "x", base),
        ])
        .await
        .unwrap();
    store
        .write(vec![row(1, 1, "a", "early", base)])
        .await
        .unwrap();
    store
        .write(vec![row(1, 2, "a", "middle", base + hour_us)])
        .await
        .unwrap();
    let spans = store.trace(trace_id(1)).await.unwrap();
    let names: Vec<&str> = spans.iter().map(|span| span.endpoint.as_str()).collect();
    assert_eq!(names, ["early", "middle", "late"], "{}", store.backend());
}

async fn an_unknown_trace_is_empty(store: impl SpanStore) {
    store
        .write(vec![row(1, 1, "a", "x", 1_000_000)])
        .await
        .unwrap();
    assert!(store.trace(trace_id(99)).await.unwrap().is_empty());
}

async fn a_resent_span_is_stored_once(store: impl SpanStore) {
    let batch = vec![
        row(1, 1, "a", "x", 1_000_000),
        row(1, 2, "a", "y", 2_000_000),
    ];
    store.write(batch.clone()).await.unwrap();
    store.write(batch).await.unwrap();
    assert_eq!(
        store.trace(trace_id(1)).await.unwrap().len(),
        2,
        "{}",
        store.backend()
    );
    let all = store.search(&SpanQuery::default()).await.unwrap();
    assert_eq!(all.len(), 2, "{}", store.backend());
}

async fn services_and_operations_are_listed_per_time_range(store: impl SpanStore) {
    let base = 1_700_000_000_000_000i64;
    let hour_us = 3_600_000_000i64;
    let mut client = row(1, 2, "frontend", "GET /cart", base + 10);
    client.span_kind = SpanKind::Client;
    client.observation_point = ObservationPoint::ClientApp;
    store
        .write(vec![
            row(1, 1, "frontend", "GET /cart", base),
            client,
            row(1, 3, "frontend", "render", base + 20),
            row(1, 4, "cart", "GetCart", base + 30),
            row(2, 1, "frontend", "GET /cart", base + 5 * hour_us),
            row(3, 1, "batch", "nightly", base + 50 * hour_us),
        ])
        .await
        .unwrap();
    let backend = store.backend();
    let services = store.services(TimeRange::ALL).await.unwrap();
    assert_eq!(services, ["batch", "cart", "frontend"], "{backend}");
    let window = TimeRange::new(Some(base), Some(base + hour_us));
    assert_eq!(
        store.services(window).await.unwrap(),
        ["cart", "frontend"],
        "{backend}"
    );
    let operations = store.operations("frontend", TimeRange::ALL).await.unwrap();
    let expected = [
        ("GET /cart", SpanKind::Server),
        ("GET /cart", SpanKind::Client),
        ("render", SpanKind::Server),
    ]
    .map(|(name, span_kind)| Operation {
        name: name.to_string(),
        span_kind,
    });
    assert_eq!(operations, expected, "{backend}");
    let later = TimeRange::new(Some(base + hour_us), None);
    assert_eq!(
        store.operations("frontend", later).await.unwrap(),
        [Operation {
            name: "GET /cart".to_string(),
            span_kind: SpanKind::Server
        }],
        "{backend}"
    );
    assert!(store
        .operations("nobody", TimeRange::ALL)
        .await
        .unwrap()
        .is_empty());
}

/// A span of `kind` lasting `duration` µs, child of `parent` when given.
fn call(
    trace: u8,
    span: u8,
    parent: Option<u8>,
    service: &str,
    kind: SpanKind,
    start_time: i64,
    duration: u64,
) -> SpanRow {
    let mut row = row(trace, span, service, "op", start_time);
    row.parent_span_id = parent.map(span_id);
    row.span_kind = kind;
    row.observation_point = kind.observation_point();
    row.response_duration = duration;
    row.end_time = start_time + duration as i64;
    row.time = row.end_time / 1_000_000;
    row
}

/// A place known only by its `auto_service`, as a workload's pods are.
fn auto_service(name: &str) -> std::sync::Arc<Place> {
    Place {
        pod_group: name.into(),
        auto_service: name.into(),
        auto_service_type: AutoType::PodGroup,
        ..Place::default()
    }
    .into()
}

async fn the_service_map_and_red_series_aggregate_calls(store: impl SpanStore) {
    use crate::analytics::{Edge, MapBy, NodeKind, RedPoint, RedQuery};
    let base = 1_700_000_000_000_000i64;
    let mut rows = Vec::new();
    for (trace, start) in [(1u8, base), (2, base + 10_000_000)] {
        rows.push(call(
            trace,
            1,
            None,
            "frontend",
            SpanKind::Server,
            start,
            9_000,
        ));
        let mut post = call(
            trace,
            2,
            Some(1),
            "frontend",
            SpanKind::Client,
            start + 10,
            3_000,
        );
        post.endpoint = "POST /cart".into();
        post.place_0 = auto_service("web");
        rows.push(post);
        let mut cart = call(
            trace,
            3,
            Some(2),
            "cart",
            SpanKind::Server,
            start + 20,
            2_000,
        );
        cart.endpoint = "POST /cart".into();
        cart.place_1 = auto_service("cart-svc");
        if trace == 2 {
            cart.status_code = 2;
        }
        rows.push(cart);
        let mut redis = call(trace, 4, Some(3), "cart", SpanKind::Client, start + 30, 500);
        redis.l7_protocol = L7Protocol::Redis;
        redis.l7_protocol_str = "redis".into();
        redis.place_0 = auto_service("cart-svc");
        if trace == 1 {
            // A database whose address is known: by workload, the callee is its workload.
            redis.place_1 = auto_service("redis-cache");
        }
        rows.push(redis);
        // A call within one service is no edge.
        rows.push(call(
            trace,
            5,
            Some(1),
            "frontend",
            SpanKind::Client,
            start + 40,
            100,
        ));
        rows.push(call(
            trace,
            6,
            Some(5),
            "frontend",
            SpanKind::Server,
            start + 41,
            90,
        ));
    }
    let mut publish = call(3, 1, None, "frontend", SpanKind::Producer, base + 20, 700);
    // Known only by its address: it stands for its service.
    publish.place_0 = Place {
        auto_instance: "10.0.0.9".into(),
        auto_service: "10.0.0.9".into(),
        auto_service_type: AutoType::Ip,
        ..Place::default()
    }
    .into();
    publish.l7_protocol = L7Protocol::Kafka;
    publish.l7_protocol_str = "kafka".into();
    rows.push(publish);
    rows.push(call(
        3,
        2,
        Some(1),
        "worker",
        SpanKind::Consumer,
        base + 5_000,
        4_000,
    ));
    store.write(rows).await.unwrap();
    let backend = store.backend();
    let edge = |caller: &str, callee: &str, callee_kind, calls, errors, latency: f64| Edge {
        caller: caller.into(),
        callee: callee.into(),
        callee_kind,
        calls,
        errors,
        p50_us: latency,
        p95_us: latency,
        p99_us: latency,
    };
    let map = store
        .service_map(TimeRange::ALL, MapBy::Service)
        .await
        .unwrap();
    assert_eq!(
        map,
        [
            edge("cart", "redis", NodeKind::Database, 2, 0, 500.0),
            edge("frontend", "cart", NodeKind::Service, 2, 1, 2_000.0),
            edge("frontend", "kafka", NodeKind::Messaging, 1, 0, 700.0),
            edge("frontend", "worker", NodeKind::Service, 1, 0, 4_000.0),
        ],
        "{backend}"
    );
    // By where each end ran; spans with no place stand for their service.
    let by_workload = store
        .service_map(TimeRange::ALL, MapBy::Workload)
        .await
        .unwrap();
    assert_eq!(
        by_workload,
        [
            edge("cart-svc", "redis", NodeKind::Database, 1, 0, 500.0),
            edge("cart-svc", "redis-cache", NodeKind::Database, 1, 0, 500.0),
            edge("frontend", "kafka", NodeKind::Messaging, 1, 0, 700.0),
            edge("frontend", "worker", NodeKind::Service, 1, 0, 4_000.0),
            edge("web", "cart-svc", NodeKind::Service, 2, 1, 2_000.0),
        ],
        "{backend}"
    );
    let first = store
        .service_map(
            TimeRange::new(Some(base), Some(base + 1_000_000)),
            MapBy::Service,
        )
        .await
        .unwrap();
    assert_eq!(first[1].calls, 1, "{backend}: only the first trace");
    let point = |time_us, operation: Option<&str>, errors, latency: f64| RedPoint {
        time_us,
        operation: operation.map(str::to_string),
        calls: 1,
        errors,
        p50_us: latency,
        p95_us: latency,
        p99_us: latency,
    };
    let red = store
        .red(&RedQuery {
            service: "cart".into(),
            range: TimeRange::new(Some(base), Some(base + 60_000_000)),
            step_us: 10_000_000,
            by_operation: true,
        })
        .await
        .unwrap();
    assert_eq!(
        red,
        [
            point(base, Some("POST /cart"), 0, 2_000.0),
            point(base + 10_000_000, Some("POST /cart"), 1, 2_000.0),
        ],
        "{backend}"
    );
    let all = store
        .red(&RedQuery {
            service: "frontend".into(),
            range: TimeRange::new(Some(base), Some(base + 60_000_000)),
            step_us: 60_000_000,
            by_operation: false,
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "{backend}");
    assert_eq!((all[0].calls, all[0].errors), (4, 0), "{backend}");
    assert_eq!(all[0].p99_us, 9_000.0, "{backend}");
}

async fn searches_filter_and_limit(store: impl SpanStore) {
    let mut slow = row(1, 1, "checkout", "GET /orders", 10_000_000);
    slow.response_duration = 900_000;
    slow.attributes = vec![Attribute::new(
        "http.response.status_code",
        AttrValue::Int(500),
    )];
    slow.response_status = ResponseStatus::ServerError;
    let mut fast = row(2, 1, "checkout", "GET /cart", 20_000_000);
    fast.response_duration = 3_000;
    fast.resource_attributes = vec![Attribute::new(
        "k8s.pod.name",
        AttrValue::String("checkout-1".into()),
    )]
    .into();
    let mut other = row(3, 1, "payments", "charge", 30_000_000);
    other.place_0 = Place {
        pod: "payments-0".into(),
        pod_group: "payments".into(),
        ..Place::default()
    }
    .into();
    other.place_1 = Place {
        service: "bank".into(),
        ..Place::default()
    }
    .into();
    fast.place_1 = Place {
        pod: "payments-0".into(),
        ..Place::default()
    }
    .into();
    store
        .write(vec![slow.clone(), fast.clone(), other.clone()])
        .await
        .unwrap();

    check(&store, SpanQuery::default(), vec![&other, &fast, &slow]).await;
    check(
        &store,
        SpanQuery {
            service: Some("checkout".into()),
            ..SpanQuery::default()
        },
        vec![&fast, &slow],
    )
    .await;
    check(
        &store,
        SpanQuery {
            operation: Some("charge".into()),
            ..SpanQuery::default()
        },
        vec![&other],
    )
    .await;
    check(
        &store,
        SpanQuery {
            min_duration_us: Some(100_000),
            ..SpanQuery::default()
        },
        vec![&slow],
    )
    .await;
    check(
        &store,
        SpanQuery {
            max_duration_us: Some(1_000),
            ..SpanQuery::default()
        },
        vec![&other],
    )
    .await;
    check(
        &store,
        SpanQuery {
            start_time_min_us: Some(15_000_000),
            start_time_max_us: Some(25_000_000),
            ..SpanQuery::default()
        },
        vec![&fast],
    )
    .await;
    check(
        &store,
        SpanQuery {
            response_status: Some(ResponseStatus::ServerError),
            ..SpanQuery::default()
        },
        vec![&slow],
    )
    .await;
    // Attribute equality compares text, so an integer attribute matches "500".
    check(
        &store,
        SpanQuery {
            attributes: vec![AttributeFilter {
                key: "http.response.status_code".into(),
                value: "500".into(),
            }],
            ..SpanQuery::default()
        },
        vec![&slow],
    )
    .await;
    check(
        &store,
        SpanQuery {
            attributes: vec![AttributeFilter {
                key: "k8s.pod.name".into(),
                value: "checkout-1".into(),
            }],
            ..SpanQuery::default()
        },
        vec![&fast],
    )
    .await;
    // Either end of the call, by its own columns: the same pod as the caller of one span and
    // the callee of another.
    let place = |column: &str, value: &str| PlaceFilter::new(column, value).unwrap();
    check(
        &store,
        SpanQuery {
            places: vec![place("pod_0", "payments-0")],
            ..SpanQuery::default()
        },
        vec![&other],
    )
    .await;
    check(
        &store,
        SpanQuery {
            places: vec![place("pod_1", "payments-0")],
            ..SpanQuery::default()
        },
        vec![&fast],
    )
    .await;
    check(
        &store,
        SpanQuery {
            places: vec![place("pod_group_0", "payments"), place("service_1", "bank")],
            ..SpanQuery::default()
        },
        vec![&other],
    )
    .await;
    check(
        &store,
        SpanQuery {
            places: vec![place("service_1", "nowhere")],
            ..SpanQuery::default()
        },
        vec![],
    )
    .await;
    check(
        &store,
        SpanQuery {
            limit: 1,
            ..SpanQuery::default()
        },
        vec![&other],
    )
    .await;
}

async fn check(store: &impl SpanStore, query: SpanQuery, expected: Vec<&SpanRow>) {
    let found = store.search(&query).await.unwrap();
    let found: Vec<&str> = found.iter().map(|row| row.endpoint.as_str()).collect();
    let expected: Vec<&str> = expected.iter().map(|row| row.endpoint.as_str()).collect();
    assert_eq!(found, expected, "{}: {query:?}", store.backend());
}
