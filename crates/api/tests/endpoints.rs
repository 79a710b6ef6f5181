//! Every query endpoint against known traces, on each store: the in-memory store, the embedded
//! store (from its buffer and from Parquet files), and a real ClickHouse server.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use spanflow_api::{api_router, ApiConfig};
use spanflow_model::{
    AttrValue, Attribute, AutoType, Event, ObservationPoint, Place, ResourceTags, ResponseStatus,
    SpanId, SpanKind, SpanRow, TraceId,
};
use spanflow_store::{MemoryStore, SpanStore};
use spanflow_store_clickhouse::test_server::TestServer;
use spanflow_store_clickhouse::{ClickHouseConfig, ClickHouseStore};
use spanflow_store_embedded::{EmbeddedConfig, EmbeddedStore};
use tower::ServiceExt;

const MS: i64 = 1_000;

fn trace_a() -> TraceId {
    TraceId([0xaa; 16])
}

fn trace_b() -> TraceId {
    let mut bytes = [0u8; 16];
    bytes[8..].copy_from_slice(&[0xbb; 8]);
    TraceId(bytes)
}

fn span_id(n: u8) -> SpanId {
    SpanId([n; 8])
}

fn resource(service: &str, host: &str) -> (Arc<ResourceTags>, Arc<[Attribute]>) {
    (
        Arc::new(ResourceTags {
            host_name: host.to_string(),
            ..ResourceTags::default()
        }),
        Arc::from(vec![
            Attribute::new("service.name", AttrValue::String(service.into())),
            Attribute::new("host.name", AttrValue::String(host.into())),
        ]),
    )
}

#[allow(clippy::too_many_arguments)]
fn span(
    trace: TraceId,
    n: u8,
    parent: Option<u8>,
    service: &str,
    host: &str,
    kind: SpanKind,
    name: &str,
    start: i64,
    end: i64,
    attributes: Vec<Attribute>,
) -> SpanRow {
    let (tags, resource_attributes) = resource(service, host);
    SpanRow {
        time: end / 1_000_000,
        start_time: start,
        end_time: end,
        trace_id: trace,
        span_id: span_id(n),
        parent_span_id: parent.map(span_id),
        span_kind: kind,
        observation_point: kind.observation_point(),
        flags: 1,
        endpoint: name.to_string(),
        app_service: service.to_string(),
        signal_source: spanflow_model::SIGNAL_SOURCE_OTEL,
        response_status: ResponseStatus::Ok,
        response_duration: (end - start) as u64,
        protocol: 6,
        scope_name: "io.opentelemetry.http".into(),
        scope_version: "1.2.0".into(),
        resource: tags,
        resource_attributes,
        attributes,
        ..SpanRow::default()
    }
}

fn string(key: &str, value: &str) -> Attribute {
    Attribute::new(key, AttrValue::String(value.into()))
}

fn int(key: &str, value: i64) -> Attribute {
    Attribute::new(key, AttrValue::Int(value))
}

/// The frontend's pod: a Deployment's.
fn web_place() -> Place {
    Place {
        pod: "web-7d9f-x2k4q".into(),
        pod_ns: "shop".into(),
        pod_group: "web".into(),
        pod_group_type: "deployment".into(),
        pod_node: "node-a".into(),
        pod_cluster: "prod".into(),
        auto_instance: "web-7d9f-x2k4q".into(),
        auto_instance_type: AutoType::Pod,
        auto_service: "web".into(),
        auto_service_type: AutoType::PodGroup,
        labels: vec![("app".into(), "web".into())],
        ..Place::default()
    }
}

/// The cart's pod: a StatefulSet's, behind a Kubernetes service.
fn cart_place() -> Place {
    Place {
        pod: "cart-0".into(),
        pod_ns: "shop".into(),
        pod_group: "cart".into(),
        pod_group_type: "statefulset".into(),
        pod_node: "node-b".into(),
        pod_cluster: "prod".into(),
        service: "cart-svc".into(),
        auto_instance: "cart-0".into(),
        auto_instance_type: AutoType::Pod,
        auto_service: "cart-svc".into(),
        auto_service_type: AutoType::PodService,
        labels: vec![
            ("app".into(), "cart".into()),
            ("tier".into(), "backend".into()),
        ],
        ..Place::default()
    }
}

/// Redis on a host of the inventory, outside Kubernetes.
fn cache_place() -> Place {
    Place {
        host: "cache-1".into(),
        region: "eu-west".into(),
        az: "eu-west-1a".into(),
        auto_instance: "cache-1".into(),
        auto_instance_type: AutoType::Host,
        auto_service: "cache-1".into(),
        auto_service_type: AutoType::Host,
        ..Place::default()
    }
}

/// Tags both ends of a span's call, and writes its own end's pod, namespace and node into its
/// resource attributes, as the server does.
fn placed(mut row: SpanRow, place_0: Option<Place>, place_1: Option<Place>) -> SpanRow {
    let own = if row.observation_point == ObservationPoint::ClientApp {
        place_0.clone()
    } else {
        place_1.clone()
    };
    if let Some(own) = own {
        let mut resource = row.resource_attributes.to_vec();
        for (key, value) in [
            ("k8s.pod.name", &own.pod),
            ("k8s.namespace.name", &own.pod_ns),
            ("k8s.node.name", &own.pod_node),
        ] {
            if !value.is_empty() {
                resource.push(string(key, value));
            }
        }
        row.resource_attributes = Arc::from(resource);
    }
    row.place_0 = Arc::new(place_0.unwrap_or_default());
    row.place_1 = Arc::new(place_1.unwrap_or_default());
    row
}

/// Two traces ten minutes old: a checkout through frontend (pods of the `web` Deployment) and
/// cart (behind the `cart-svc` service), with a failed render, and a slow failed payment a
/// second later, of which nothing is known but the service.
fn known_spans(base: i64) -> Vec<SpanRow> {
    let mut render = span(
        trace_a(),
        5,
        Some(1),
        "frontend",
        "node-a",
        SpanKind::Internal,
        "render",
        base + 65 * MS,
        base + 95 * MS,
        vec![],
    );
    render.status_code = 2;
    render.status_message = "template missing".into();
    render.events = vec![Event {
        time_us: base + 90 * MS,
        name: "exception".into(),
        attributes: vec![string("exception.type", "TemplateError")],
        dropped_attributes_count: 0,
    }];
    render.observation_point = ObservationPoint::App;
    let render = placed(render, None, Some(web_place()));
    let mut redis = span(
        trace_a(),
        4,
        Some(3),
        "cart",
        "node-b",
        SpanKind::Client,
        "redis GET",
        base + 20 * MS,
        base + 30 * MS,
        vec![string("db.system", "redis")],
    );
    redis.l7_protocol = spanflow_model::L7Protocol::Redis;
    redis.l7_protocol_str = "redis".into();
    let redis = placed(redis, Some(cart_place()), Some(cache_place()));
    let mut pay = span(
        trace_b(),
        9,
        None,
        "payments",
        "node-c",
        SpanKind::Server,
        "POST /pay",
        base + 1_000 * MS,
        base + 2_000 * MS,
        vec![
            string("http.request.method", "POST"),
            int("http.response.status_code", 500),
        ],
    );
    pay.status_code = 2;
    pay.response_status = ResponseStatus::ServerError;
    pay.response_code = Some(500);
    vec![
        placed(
            span(
                trace_a(),
                1,
                None,
                "frontend",
                "node-a",
                SpanKind::Server,
                "GET /checkout",
                base,
                base + 100 * MS,
                vec![
                    string("http.request.method", "GET"),
                    int("http.response.status_code", 200),
                ],
            ),
            None,
            Some(web_place()),
        ),
        placed(
            span(
                trace_a(),
                2,
                Some(1),
                "frontend",
                "node-a",
                SpanKind::Client,
                "POST /cart",
                base + 10 * MS,
                base + 60 * MS,
                vec![string("http.request.method", "POST")],
            ),
            Some(web_place()),
            Some(cart_place()),
        ),
        placed(
            span(
                trace_a(),
                3,
                Some(2),
                "cart",
                "node-b",
                SpanKind::Server,
                "POST /cart",
                base + 15 * MS,
                base + 55 * MS,
                vec![string("http.request.method", "POST")],
            ),
            Some(web_place()),
            Some(cart_place()),
        ),
        redis,
        render,
        pay,
    ]
}

fn base_time() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    (now - 600 * 1_000_000) / 1_000_000 * 1_000_000
}

struct Client {
    router: axum::Router,
}

impl Client {
    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        let response = self
            .router
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        (status, value)
    }

    async fn post(&self, uri: &str, content_type: &str, body: String) -> (StatusCode, Value) {
        let request = Request::post(uri)
            .header("content-type", content_type)
            .body(Body::from(body))
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    /// DeepFlow's querier call, as a form.
    async fn sql(&self, sql: &str) -> (StatusCode, Value) {
        let body = format!("db=flow_log&sql={}", encode(sql));
        self.post("/v1/query/", "application/x-www-form-urlencoded", body)
            .await
    }

    async fn sql_ok(&self, sql: &str) -> Value {
        let (status, body) = self.sql(sql).await;
        assert_eq!(status, StatusCode::OK, "{sql}: {body}");
        assert_eq!(body["OPT_STATUS"], json!("SUCCESS"));
        body["result"].clone()
    }

    async fn get_bytes(&self, uri: &str, accept: &str) -> (StatusCode, String, Vec<u8>) {
        let request = Request::get(uri)
            .header("accept", accept)
            .body(Body::empty())
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|value| value.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, content_type, body.to_vec())
    }

    async fn ok(&self, uri: &str) -> Value {
        let (status, body) = self.get(uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        body
    }
}

fn encode(text: &str) -> String {
    let mut encoded = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Writes the known traces and checks every endpoint.
async fn check_endpoints(store: Arc<dyn SpanStore>, after_write: impl AsyncFnOnce()) {
    let base = base_time();
    store.write(known_spans(base)).await.unwrap();
    after_write().await;
    let backend = store.backend();
    let client = Client {
        router: api_router(store.clone(), ApiConfig::default()),
    };
    if backend == "memory" {
        let (status, body) = client.sql("SELECT * FROM l7_flow_log").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["DESCRIPTION"]
            .as_str()
            .unwrap()
            .contains("does not answer SQL"));
    } else {
        deepflow(&client).await;
        let small = Client {
            router: api_router(
                store,
                ApiConfig {
                    sql: spanflow_store::sql::SqlLimits {
                        max_rows: 2,
                        ..Default::default()
                    },
                    ..ApiConfig::default()
                },
            ),
        };
        let (status, body) = small.sql("SELECT trace_id FROM l7_flow_log").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["OPT_STATUS"], json!("FAIL"));
        assert!(
            body["DESCRIPTION"]
                .as_str()
                .unwrap()
                .contains("more than 2 rows"),
            "{body}"
        );
    }
    native(&client, base).await;
    jaeger(&client, base).await;
    jaeger_v3(&client, base).await;
    tempo(&client, base).await;
    grafana_jaeger_data_source(&client, base).await;
    grafana_tempo_data_source(&client, base).await;
    eprintln!("{backend}: every endpoint answered as expected");
}

async fn native(client: &Client, base: i64) {
    let a = trace_a().to_hex();
    let trace = client.ok(&format!("/api/v1/traces/{a}")).await;
    let ids: Vec<&str> = trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|span| span["span_id"].as_str().unwrap())
        .collect();
    let hex = |n: u8| span_id(n).to_hex();
    assert_eq!(ids, [hex(1), hex(2), hex(3), hex(4), hex(5)]);
    let field = |name: &str| -> Vec<Value> {
        trace["spans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|span| span[name].clone())
            .collect()
    };
    assert_eq!(
        field("depth"),
        [json!(0), json!(1), json!(2), json!(3), json!(1)]
    );
    // GET /checkout: 100 ms less the cart call (50) and render (30).
    assert_eq!(
        field("self_time"),
        [
            json!(20_000),
            json!(10_000),
            json!(30_000),
            json!(10_000),
            json!(30_000)
        ]
    );
    assert_eq!(
        field("on_critical_path"),
        [
            json!(true),
            json!(true),
            json!(true),
            json!(true),
            json!(true)
        ]
    );
    assert_eq!(field("is_error")[4], json!(true));
    assert_eq!(
        trace["summary"],
        json!({
            "trace_id": a,
            "root_service": "frontend",
            "root_operation": "GET /checkout",
            "start_time": base,
            "end_time": base + 100 * MS,
            "duration": 100 * MS,
            "span_count": 5,
            "error_count": 1,
            "services": [
                { "name": "cart", "span_count": 2, "error_count": 0 },
                { "name": "frontend", "span_count": 3, "error_count": 1 },
            ],
        })
    );
    assert_eq!(trace["truncated"], json!(false));
    assert_eq!(
        trace["spans"][0]["attributes"]["http.response.status_code"],
        json!(200)
    );
    // Both ends of each call, where known: the frontend's call to the cart from a pod of the
    // `web` Deployment to the cart's pod behind `cart-svc`.
    let web = json!({
        "pod": "web-7d9f-x2k4q", "pod_ns": "shop", "pod_group": "web",
        "pod_group_type": "deployment", "pod_node": "node-a", "pod_cluster": "prod",
        "auto_instance": "web-7d9f-x2k4q", "auto_instance_type": "pod",
        "auto_service": "web", "auto_service_type": "pod_group",
        "labels": { "app": "web" },
    });
    let cart = json!({
        "pod": "cart-0", "pod_ns": "shop", "pod_group": "cart",
        "pod_group_type": "statefulset", "pod_node": "node-b", "pod_cluster": "prod",
        "service": "cart-svc", "auto_instance": "cart-0", "auto_instance_type": "pod",
        "auto_service": "cart-svc", "auto_service_type": "pod_service",
        "labels": { "app": "cart", "tier": "backend" },
    });
    let call = &trace["spans"][1];
    assert_eq!(call["span_kind_str"], json!("client"));
    assert_eq!(call["place_0"], web);
    assert_eq!(call["place_1"], cart);
    assert_eq!(trace["spans"][2]["place_0"], web);
    assert_eq!(trace["spans"][2]["place_1"], cart);
    assert_eq!(
        trace["spans"][3]["place_1"],
        json!({
            "host": "cache-1", "region": "eu-west", "az": "eu-west-1a",
            "auto_instance": "cache-1", "auto_instance_type": "host",
            "auto_service": "cache-1", "auto_service_type": "host",
        })
    );
    let root = trace["spans"][0].as_object().unwrap();
    assert!(!root.contains_key("place_0"), "an unknown end is left out");
    assert_eq!(root["place_1"], web);
    let payment = client
        .ok(&format!("/api/v1/traces/{}", trace_b().to_hex()))
        .await;
    let payment = payment["spans"][0].as_object().unwrap();
    assert!(!payment.contains_key("place_0") && !payment.contains_key("place_1"));
    let cut = client.ok(&format!("/api/v1/traces/{a}?limit=2")).await;
    assert_eq!(cut["spans_returned"], json!(2));
    assert_eq!(cut["truncated"], json!(true));
    assert_eq!(cut["summary"]["span_count"], json!(5));

    let (status, body) = client
        .get(&format!("/api/v1/traces/{}", "0".repeat(31) + "1"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("not found"));
    let (status, body) = client.get("/api/v1/traces/xyz").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("invalid trace id"));

    let found = |body: &Value| -> Vec<String> {
        body["traces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|trace| trace["trace_id"].as_str().unwrap().to_string())
            .collect()
    };
    let b = trace_b().to_hex();
    let all = client.ok("/api/v1/traces").await;
    assert_eq!(found(&all), [b.as_str(), a.as_str()], "newest first");
    assert_eq!(all["traces"][0]["duration"], json!(1_000 * MS));
    assert_eq!(all["complete"], json!(true));
    let by_service = client.ok("/api/v1/traces?service=cart").await;
    assert_eq!(found(&by_service), [a.as_str()]);
    let by_attribute = client.ok("/api/v1/traces?attr.db.system=redis").await;
    assert_eq!(found(&by_attribute), [a.as_str()]);
    let by_int_attribute = client
        .ok("/api/v1/traces?attr.http.response.status_code=500")
        .await;
    assert_eq!(found(&by_int_attribute), [b.as_str()]);
    let failed = client
        .ok("/api/v1/traces?status=error&service=frontend")
        .await;
    assert_eq!(found(&failed), [a.as_str()]);
    let slow = client.ok("/api/v1/traces?min_duration=500ms").await;
    assert_eq!(found(&slow), [b.as_str()]);
    let fast = client
        .ok("/api/v1/traces?max_duration=60000&service=frontend&operation=POST%20/cart")
        .await;
    assert_eq!(found(&fast), [a.as_str()]);
    // Either end of a call by its place columns; where a span itself ran by `namespace`,
    // `workload`, `pod` and `node`. An unknown parameter is ignored, as ever.
    for (query, expected) in [
        ("pod_1=cart-0", vec![a.as_str()]),
        ("pod_group_0=web&service=cart", vec![a.as_str()]),
        (
            "auto_service_1=cart-svc&operation=POST%20/cart",
            vec![a.as_str()],
        ),
        ("labels_1=x&pod_2=cart-0", vec![b.as_str(), a.as_str()]),
        ("pod_0=cart-0&service=frontend", vec![]),
        ("pod_ns_1=shop&service=payments", vec![]),
        ("workload=cart", vec![a.as_str()]),
        ("workload=web&service=cart", vec![]),
        ("namespace=shop", vec![a.as_str()]),
        (
            "pod=web-7d9f-x2k4q&operation=POST%20/cart",
            vec![a.as_str()],
        ),
        ("node=node-b&service=frontend", vec![]),
        ("node=node-b&operation=redis%20GET", vec![a.as_str()]),
    ] {
        let body = client.ok(&format!("/api/v1/traces?{query}")).await;
        assert_eq!(found(&body), expected, "{query}");
    }
    let window = format!("/api/v1/traces?start={}&end={}", base, base + 500 * MS);
    assert_eq!(found(&client.ok(&window).await), [a.as_str()]);
    assert_eq!(
        found(&client.ok("/api/v1/traces?limit=1").await),
        [b.as_str()]
    );
    for (query, message) in [
        ("min_duration=fast", "invalid duration"),
        ("min_duration=2s&max_duration=1s", "min_duration"),
        ("status=broken", "invalid status"),
        ("start=yesterday", "RFC 3339"),
        ("limit=100000", "allowed"),
    ] {
        let (status, body) = client.get(&format!("/api/v1/traces?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(
            body["error"].as_str().unwrap().contains(message),
            "{query}: {body}"
        );
    }

    let minute = 60_000_000;
    let map = client
        .ok(&format!(
            "/api/v1/service-map?start={}&end={}",
            base - minute,
            base + minute
        ))
        .await;
    assert_eq!(
        map["nodes"],
        json!([
            { "name": "cart", "kind": "service" },
            { "name": "frontend", "kind": "service" },
            { "name": "redis", "kind": "database" },
        ])
    );
    assert_eq!(
        map["edges"],
        json!([
            { "caller": "cart", "callee": "redis", "callee_kind": "database", "calls": 1,
              "errors": 0, "latency_p50": 10_000.0, "latency_p95": 10_000.0, "latency_p99": 10_000.0 },
            { "caller": "frontend", "callee": "cart", "callee_kind": "service", "calls": 1,
              "errors": 0, "latency_p50": 40_000.0, "latency_p95": 40_000.0, "latency_p99": 40_000.0 },
        ])
    );
    let by_service = client
        .ok(&format!(
            "/api/v1/service-map?start={}&end={}&by=service",
            base - minute,
            base + minute
        ))
        .await;
    assert_eq!(by_service["edges"], map["edges"]);
    assert_eq!(map["by"], json!("service"));
    // By where each end ran: the `web` Deployment calls the `cart-svc` service, which calls
    // Redis on the host `cache-1`.
    let by_workload = client
        .ok(&format!(
            "/api/v1/service-map?start={}&end={}&by=workload",
            base - minute,
            base + minute
        ))
        .await;
    assert_eq!(by_workload["by"], json!("workload"));
    assert_eq!(
        by_workload["nodes"],
        json!([
            { "name": "cache-1", "kind": "database" },
            { "name": "cart-svc", "kind": "service" },
            { "name": "web", "kind": "service" },
        ])
    );
    assert_eq!(
        by_workload["edges"],
        json!([
            { "caller": "cart-svc", "callee": "cache-1", "callee_kind": "database", "calls": 1,
              "errors": 0, "latency_p50": 10_000.0, "latency_p95": 10_000.0, "latency_p99": 10_000.0 },
            { "caller": "web", "callee": "cart-svc", "callee_kind": "service", "calls": 1,
              "errors": 0, "latency_p50": 40_000.0, "latency_p95": 40_000.0, "latency_p99": 40_000.0 },
        ])
    );
    let (status, body) = client.get("/api/v1/service-map?by=pod").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"],
        json!(r#"invalid by "pod": want service or workload"#)
    );
    let red = client
        .ok(&format!(
            "/api/v1/red?service=payments&group_by=operation&start={}&end={}&step=60",
            base - minute,
            base + minute
        ))
        .await;
    assert_eq!(red["step"], json!(minute));
    assert_eq!(
        red["points"],
        json!([{
            "time": (base + 1_000 * MS).div_euclid(minute) * minute,
            "operation": "POST /pay",
            "calls": 1,
            "errors": 1,
            "rate": 1.0 / 60.0,
            "error_rate": 1.0,
            "latency_p50": 1_000_000.0,
            "latency_p95": 1_000_000.0,
            "latency_p99": 1_000_000.0,
        }])
    );
    let (status, body) = client.get("/api/v1/red?group_by=operation").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("service"));
    let (status, _) = client.get("/api/v1/red?service=cart&step=1us").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "too many buckets");

    assert_eq!(
        client.ok("/api/v1/services").await,
        json!({ "services": ["cart", "frontend", "payments"] })
    );
    assert_eq!(
        client.ok("/api/v1/services/frontend/operations").await,
        json!({ "service": "frontend", "operations": [
            { "name": "GET /checkout", "span_kind": "server" },
            { "name": "POST /cart", "span_kind": "client" },
            { "name": "render", "span_kind": "internal" },
        ]})
    );
}

async fn deepflow(client: &Client) {
    let counts = client
        .sql_ok("SELECT app_service, count(*) AS spans FROM l7_flow_log GROUP BY app_service ORDER BY app_service")
        .await;
    assert_eq!(counts["columns"], json!(["app_service", "spans"]));
    assert_eq!(
        counts["values"],
        json!([["cart", 2], ["frontend", 3], ["payments", 1]])
    );
    let posts = client
        .sql_ok(
            "SELECT endpoint, attribute.http.request.method AS method FROM l7_flow_log \
             WHERE attribute.http.request.method = 'POST' ORDER BY endpoint, app_service",
        )
        .await;
    assert_eq!(
        posts["values"],
        json!([
            ["POST /cart", "POST"],
            ["POST /cart", "POST"],
            ["POST /pay", "POST"]
        ])
    );
    // Selected without an alias, an attribute keeps its DeepFlow name.
    let named = client
        .sql_ok(
            "SELECT endpoint, attribute.http.request.method FROM l7_flow_log \
             WHERE attribute.http.request.method = 'POST' ORDER BY endpoint LIMIT 1",
        )
        .await;
    assert_eq!(
        named["columns"],
        json!(["endpoint", "attribute.http.request.method"])
    );
    assert_eq!(named["values"], json!([["POST /cart", "POST"]]));
    let quoted = client
        .sql_ok("SELECT count(*) AS n FROM l7_flow_log WHERE `attribute.http.response.status_code` = '500'")
        .await;
    assert_eq!(quoted["values"], json!([[1]]));
    let slowest = client
        .sql_ok(
            "SELECT app_service, max(response_duration) AS slowest, sum(response_duration) AS total \
             FROM l7_flow_log GROUP BY app_service ORDER BY slowest DESC LIMIT 2",
        )
        .await;
    assert_eq!(
        slowest["values"],
        json!([
            ["payments", 1_000_000, 1_000_000],
            ["frontend", 100_000, 180_000]
        ])
    );
    // The resources' attributes, which ClickHouse keeps in a table of their own.
    let resources = client
        .sql_ok(
            "SELECT app_service, resource_attribute_names[1] AS name, \
             resource_attribute_values[1] AS value FROM l7_flow_log WHERE app_service = 'payments'",
        )
        .await;
    assert_eq!(
        resources["values"],
        json!([["payments", "service.name", "payments"]])
    );
    let frontend = client
        .sql_ok(
            "SELECT count(*) AS n FROM flow_log.l7_flow_log AS spans \
             WHERE spans.resource_attribute_values[1] = 'frontend'",
        )
        .await;
    assert_eq!(frontend["values"], json!([[3]]));
    let errors = client
        .sql_ok("SELECT endpoint FROM l7_flow_log WHERE status_code = 2 ORDER BY endpoint")
        .await;
    assert_eq!(errors["values"], json!([["POST /pay"], ["render"]]));
    let (status, body) = client
        .post(
            "/v1/query/",
            "application/json",
            json!({ "db": "flow_log", "sql": "SELECT count(*) AS n FROM l7_flow_log" }).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"]["values"], json!([[6]]));

    let tables = client.sql_ok("show tables").await;
    assert_eq!(tables["values"], json!([["l7_flow_log"]]));
    let tags = client.sql_ok("show tags from l7_flow_log").await;
    let names: Vec<&Value> = tags["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| &row[0])
        .collect();
    for name in [
        "app_service",
        "endpoint",
        "trace_id",
        "response_duration",
        "attribute.<key>",
        "pod_0",
        "pod_ns_1",
        "pod_group_0",
        "pod_group_type_1",
        "service_1",
        "auto_instance_type_0",
        "auto_service_1",
        "auto_service_type_1",
        "labels_1",
    ] {
        assert!(names.contains(&&json!(name)), "{name} in {tags}");
    }
    let calls = client
        .sql_ok(
            "SELECT app_service, pod_0, pod_1, auto_service_1, auto_service_type_1, labels_1 \
             FROM l7_flow_log WHERE pod_group_0 = 'web' AND span_kind = 3",
        )
        .await;
    assert_eq!(
        calls["values"],
        json!([[
            "frontend",
            "web-7d9f-x2k4q",
            "cart-0",
            "cart-svc",
            11,
            r#"{"app":"cart","tier":"backend"}"#
        ]])
    );
    let workloads = client
        .sql_ok("show tag pod_group_1 values from l7_flow_log")
        .await;
    assert_eq!(
        workloads["values"],
        json!([["", "", 2], ["cart", "cart", 2], ["web", "web", 2]])
    );
    let services = client
        .sql_ok("show tag app_service values from l7_flow_log")
        .await;
    assert_eq!(
        services["values"],
        json!([
            ["frontend", "frontend", 3],
            ["cart", "cart", 2],
            ["payments", "payments", 1]
        ])
    );
    let methods = client
        .sql_ok("show tag attribute.http.request.method values from l7_flow_log where app_service = 'cart' limit 5")
        .await;
    // The redis call has no method: a missing attribute reads as '' on every store.
    assert_eq!(methods["values"], json!([["", "", 1], ["POST", "POST", 1]]));

    for (sql, message) in [
        ("DROP TABLE l7_flow_log", "only SELECT"),
        (
            "INSERT INTO l7_flow_log (app_service) VALUES ('x')",
            "only SELECT",
        ),
        (
            "SELECT 1 FROM l7_flow_log; DROP TABLE l7_flow_log",
            "one statement",
        ),
        ("SELECT * FROM system.tables", "only the table"),
        ("SELECT no_such_column FROM l7_flow_log", ""),
        ("SELEKT 1", "parse"),
        ("show tag app_service values from secrets", "unknown table"),
    ] {
        let (status, body) = client.sql(sql).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{sql}: {body}");
        assert_eq!(body["OPT_STATUS"], json!("FAIL"), "{sql}");
        assert!(
            body["DESCRIPTION"].as_str().unwrap().contains(message),
            "{sql}: {body}"
        );
    }
    let (status, body) = client
        .post(
            "/v1/query/",
            "application/x-www-form-urlencoded",
            "db=other&sql=show%20tables".into(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["DESCRIPTION"]
        .as_str()
        .unwrap()
        .contains("unknown database"));
    // Nothing was written by any of it.
    let count = client.sql_ok("SELECT count(*) AS n FROM l7_flow_log").await;
    assert_eq!(count["values"], json!([[6]]));
}

async fn jaeger(client: &Client, base: i64) {
    let services = client.ok("/jaeger/api/services").await;
    assert_eq!(
        services,
        json!({ "data": ["cart", "frontend", "payments"], "total": 3, "limit": 0, "offset": 0, "errors": null })
    );
    let operations = client.ok("/jaeger/api/services/cart/operations").await;
    assert_eq!(operations["data"], json!(["POST /cart", "redis GET"]));
    let servers = client
        .ok("/jaeger/api/operations?service=frontend&spanKind=server")
        .await;
    assert_eq!(
        servers["data"],
        json!([{ "name": "GET /checkout", "spanKind": "server" }])
    );
    let (status, body) = client.get("/jaeger/api/operations").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errors"][0]["code"], json!(400));

    let a = trace_a().to_hex();
    let trace = client.ok(&format!("/jaeger/api/traces/{a}")).await;
    let trace = &trace["data"][0];
    assert_eq!(trace["traceID"], json!(a));
    let spans = trace["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 5);
    let root = &spans[0];
    assert_eq!(root["operationName"], json!("GET /checkout"));
    assert_eq!(root["startTime"], json!(base));
    assert_eq!(root["duration"], json!(100 * MS));
    assert_eq!(root["references"], json!([]));
    assert!(root["tags"].as_array().unwrap().contains(&json!(
        { "key": "http.response.status_code", "type": "int64", "value": 200 }
    )));
    assert!(root["tags"].as_array().unwrap().contains(&json!(
        { "key": "span.kind", "type": "string", "value": "server" }
    )));
    let cart = &spans[2];
    assert_eq!(
        cart["references"],
        json!([{ "refType": "CHILD_OF", "traceID": a, "spanID": span_id(2).to_hex() }])
    );
    let process = &trace["processes"][cart["processID"].as_str().unwrap()];
    assert_eq!(process["serviceName"], json!("cart"));
    assert_eq!(
        process["tags"],
        json!([
            { "key": "host.name", "type": "string", "value": "node-b" },
            { "key": "k8s.pod.name", "type": "string", "value": "cart-0" },
            { "key": "k8s.namespace.name", "type": "string", "value": "shop" },
            { "key": "k8s.node.name", "type": "string", "value": "node-b" },
        ])
    );
    // Where each span's peer ran: the frontend's call names the cart's end (`_1`), the cart's
    // server span the frontend's (`_0`); the cart's own end is in its process tags.
    let tag_of = |span: &Value, key: &str| -> Option<Value> {
        span["tags"]
            .as_array()
            .unwrap()
            .iter()
            .find(|tag| tag["key"] == key)
            .map(|tag| tag["value"].clone())
    };
    let call = &spans[1];
    assert_eq!(tag_of(call, "pod_1"), Some(json!("cart-0")));
    assert_eq!(tag_of(call, "pod_group_1"), Some(json!("cart")));
    assert_eq!(tag_of(call, "pod_group_type_1"), Some(json!("statefulset")));
    assert_eq!(tag_of(call, "service_1"), Some(json!("cart-svc")));
    assert_eq!(
        tag_of(call, "auto_service_type_1"),
        Some(json!("pod_service"))
    );
    assert_eq!(
        tag_of(call, "labels_1"),
        Some(json!(r#"{"app":"cart","tier":"backend"}"#))
    );
    assert_eq!(tag_of(call, "pod_0"), None, "its own end is its process");
    assert_eq!(
        tag_of(call, "region_1"),
        None,
        "nothing for what is unknown"
    );
    assert_eq!(tag_of(cart, "pod_0"), Some(json!("web-7d9f-x2k4q")));
    assert_eq!(tag_of(cart, "pod_group_0"), Some(json!("web")));
    assert_eq!(tag_of(cart, "pod_1"), None);
    assert_eq!(tag_of(&spans[3], "host_1"), Some(json!("cache-1")));
    assert_eq!(
        tag_of(&spans[3], "auto_instance_type_1"),
        Some(json!("host"))
    );
    assert_eq!(tag_of(root, "pod_0"), None, "nothing known of the caller");
    assert_eq!(trace["processes"].as_object().unwrap().len(), 2);
    let render = &spans[4];
    let render_tags = render["tags"].as_array().unwrap();
    assert!(render_tags.contains(&json!({ "key": "error", "type": "bool", "value": true })));
    assert!(render_tags.contains(&json!(
        { "key": "otel.status_description", "type": "string", "value": "template missing" }
    )));
    assert_eq!(
        render["logs"][0]["fields"],
        json!([
            { "key": "event", "type": "string", "value": "exception" },
            { "key": "exception.type", "type": "string", "value": "TemplateError" },
        ])
    );
    // A trace id whose high half is zero prints as 16 digits, and is found that way too.
    let b = trace_b().to_hex();
    let short = client.ok(&format!("/jaeger/api/traces/{}", &b[16..])).await;
    assert_eq!(short["data"][0]["traceID"], json!(&b[16..]));
    let (status, body) = client
        .get(&format!("/jaeger/api/traces/{}", "1".repeat(32)))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["errors"][0]["msg"], json!("trace not found"));

    let window = format!("start={}&end={}", base - 60_000_000, base + 60_000_000);
    let tags = encode(r#"{"http.request.method":"POST"}"#);
    let search = client
        .ok(&format!(
            "/jaeger/api/traces?service=cart&{window}&tags={tags}&limit=20&lookback=custom"
        ))
        .await;
    assert_eq!(search["total"], json!(1));
    assert_eq!(
        search["data"][0]["spans"].as_array().unwrap().len(),
        5,
        "whole traces"
    );
    // A place column in the tags filters on that end of the call.
    for (tags, found) in [
        (r#"{"pod_1":"cart-0"}"#, 1),
        (r#"{"pod_group_0":"web","http.request.method":"POST"}"#, 1),
        (r#"{"pod_1":"web-7d9f-x2k4q"}"#, 0),
    ] {
        let search = client
            .ok(&format!(
                "/jaeger/api/traces?service=cart&{window}&tags={}",
                encode(tags)
            ))
            .await;
        assert_eq!(search["total"], json!(found), "{tags}: {search}");
    }
    let by_tag = client
        .ok(&format!(
            "/jaeger/api/traces?service=frontend&{window}&tag=service_1:cart-svc"
        ))
        .await;
    assert_eq!(by_tag["data"][0]["traceID"], json!(a));
    let errors = client
        .ok(&format!(
            "/jaeger/api/traces?service=frontend&{window}&tag=error:true"
        ))
        .await;
    assert_eq!(errors["data"][0]["traceID"], json!(a));
    let none = client
        .ok(&format!(
            "/jaeger/api/traces?service=frontend&{window}&minDuration=1s"
        ))
        .await;
    assert_eq!(none["data"], json!([]));
    let (status, body) = client
        .get(&format!(
            "/jaeger/api/traces?service=cart&{window}&minDuration=2s&maxDuration=1s"
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["errors"][0]["msg"]
        .as_str()
        .unwrap()
        .contains("maxDuration"));
    let (status, _) = client.get(&format!("/jaeger/api/traces?{window}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "service is required");
    let dependencies = client
        .ok(&format!(
            "/jaeger/api/dependencies?endTs={}&lookback=120000",
            (base + 60_000_000) / 1_000
        ))
        .await;
    assert_eq!(
        dependencies["data"],
        json!([
            { "parent": "cart", "child": "redis", "callCount": 1 },
            { "parent": "frontend", "child": "cart", "callCount": 1 },
        ])
    );
    let missing = "2".repeat(32);
    let many = client
        .ok(&format!("/jaeger/api/traces?traceID={a}&traceID={missing}"))
        .await;
    assert_eq!(many["total"], json!(1));
    assert_eq!(many["errors"][0]["traceID"], json!(missing));
}

async fn jaeger_v3(client: &Client, base: i64) {
    assert_eq!(
        client.ok("/jaeger/api/v3/services").await,
        json!({ "services": ["cart", "frontend", "payments"] })
    );
    let operations = client.ok("/jaeger/api/v3/operations?service=cart").await;
    assert_eq!(
        operations,
        json!({ "operations": [
            { "name": "POST /cart", "spanKind": "server" },
            { "name": "redis GET", "spanKind": "client" },
        ]})
    );
    let a = trace_a().to_hex();
    let trace = client.ok(&format!("/jaeger/api/v3/traces/{a}")).await;
    let resources = trace["result"]["resourceSpans"].as_array().unwrap();
    assert_eq!(resources.len(), 2, "frontend and cart");
    let first = &resources[0]["scopeSpans"][0];
    assert_eq!(
        first["scope"],
        json!({ "name": "io.opentelemetry.http", "version": "1.2.0" })
    );
    let root = &first["spans"][0];
    assert_eq!(root["traceId"], json!(a));
    assert_eq!(root["kind"], json!(2));
    assert_eq!(
        root["startTimeUnixNano"],
        json!((i128::from(base) * 1_000).to_string())
    );
    assert_eq!(
        root["attributes"][1],
        json!({ "key": "http.response.status_code", "value": { "intValue": "200" } })
    );
    let start = chrono_time(base - 60_000_000);
    let end = chrono_time(base + 60_000_000);
    let search = client
        .ok(&format!(
            "/jaeger/api/v3/traces?query.service_name=payments&query.start_time_min={start}&query.start_time_max={end}"
        ))
        .await;
    let spans = &search["result"]["resourceSpans"][0]["scopeSpans"][0]["spans"];
    assert_eq!(spans[0]["status"], json!({ "code": 2, "message": "" }));
    let by_place = client
        .ok(&format!(
            "/jaeger/api/v3/traces?query.service_name=cart&query.attributes[pod_group_0]=web&query.start_time_min={start}&query.start_time_max={end}"
        ))
        .await;
    assert_eq!(
        by_place["result"]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"],
        json!(a)
    );
    let (status, _) = client
        .get(&format!(
            "/jaeger/api/v3/traces?query.service_name=cart&query.attributes={}&query.start_time_min={start}&query.start_time_max={end}",
            encode(r#"{"pod_group_1":"web"}"#)
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = client
        .get(&format!(
            "/jaeger/api/v3/traces?query.service_name=nobody&query.start_time_min={start}&query.start_time_max={end}"
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["httpCode"], json!(404));
    let (status, _) = client
        .get("/jaeger/api/v3/traces?query.service_name=cart")
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the time range is required"
    );
}

fn chrono_time(micros: i64) -> String {
    let seconds = micros.div_euclid(1_000_000);
    let days = seconds.div_euclid(86_400);
    let rest = seconds.rem_euclid(86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

async fn tempo(client: &Client, base: i64) {
    let (status, body) = client.get("/tempo/api/echo").await;
    assert_eq!((status, body), (StatusCode::OK, json!("echo")));
    let window = format!(
        "start={}&end={}",
        base / 1_000_000 - 60,
        base / 1_000_000 + 60
    );
    let q = encode(
        r#"{ resource.service.name = "payments" && span.http.response.status_code >= 500 && duration > 100ms }"#,
    );
    let search = client
        .ok(&format!("/tempo/api/search?q={q}&{window}&limit=20"))
        .await;
    let traces = search["traces"].as_array().unwrap();
    assert_eq!(traces.len(), 1, "{search}");
    let b = &traces[0];
    assert_eq!(b["traceID"], json!(trace_b().to_hex()));
    assert_eq!(b["rootServiceName"], json!("payments"));
    assert_eq!(b["rootTraceName"], json!("POST /pay"));
    assert_eq!(b["durationMs"], json!(1_000));
    assert_eq!(
        b["startTimeUnixNano"],
        json!((i128::from(base + 1_000 * MS) * 1_000).to_string())
    );
    assert_eq!(b["spanSets"][0]["matched"], json!(1));
    assert_eq!(
        b["serviceStats"]["payments"],
        json!({ "spanCount": 1, "errorCount": 1 })
    );
    let either = encode(r#"{ name = "redis GET" || (status = error && kind = server) }"#);
    let both = client
        .ok(&format!("/tempo/api/search?q={either}&{window}"))
        .await;
    assert_eq!(both["traces"].as_array().unwrap().len(), 2, "{both}");
    let errors = client
        .ok(&format!(
            "/tempo/api/search?q={}&{window}",
            encode("{ status = error }")
        ))
        .await;
    let a = errors["traces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["traceID"] == json!(trace_a().to_hex()))
        .unwrap();
    assert_eq!(
        a["spanSets"][0]["spans"][0]["spanID"],
        json!(span_id(5).to_hex())
    );
    let legacy = client
        .ok(&format!(
            "/tempo/api/search?tags={}&minDuration=20ms&{window}",
            encode("service.name=cart db.system=redis")
        ))
        .await;
    assert_eq!(
        legacy["traces"].as_array().unwrap().len(),
        0,
        "redis GET took 10 ms"
    );
    let legacy = client
        .ok(&format!(
            "/tempo/api/search?tags={}&{window}",
            encode("service.name=cart db.system=redis")
        ))
        .await;
    assert_eq!(legacy["traces"][0]["traceID"], json!(trace_a().to_hex()));
    // By where either end of a call ran, in logfmt tags and in TraceQL.
    let a_hex = trace_a().to_hex();
    for tags in [
        "pod_1=cart-0",
        "service.name=cart pod_group_0=web",
        "auto_service_1=cache-1",
    ] {
        let legacy = client
            .ok(&format!("/tempo/api/search?tags={}&{window}", encode(tags)))
            .await;
        let traces = legacy["traces"].as_array().unwrap();
        assert_eq!(traces.len(), 1, "{tags}: {legacy}");
        assert_eq!(traces[0]["traceID"], json!(a_hex), "{tags}");
    }
    let none = client
        .ok(&format!(
            "/tempo/api/search?tags={}&{window}",
            encode("pod_1=db-0")
        ))
        .await;
    assert_eq!(none["traces"], json!([]));
    for (q, matched) in [
        (r#"{ .pod_1 = "cart-0" }"#, 2),
        (r#"{ span.pod_1 = "cart-0" && kind = server }"#, 1),
        (r#"{ .pod_group_0 = "web" || .host_1 = "cache-1" }"#, 3),
        (r#"{ resource.k8s.pod.name = "cart-0" }"#, 2),
    ] {
        let search = client
            .ok(&format!("/tempo/api/search?q={}&{window}", encode(q)))
            .await;
        let traces = search["traces"].as_array().unwrap();
        assert_eq!(traces.len(), 1, "{q}: {search}");
        assert_eq!(traces[0]["traceID"], json!(a_hex), "{q}");
        assert_eq!(traces[0]["spanSets"][0]["matched"], json!(matched), "{q}");
    }
    let (status, body) = client
        .get(&format!(
            "/tempo/api/search?q={}",
            encode("{ duration > 5 }")
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap().contains("TraceQL"),
        "{body}"
    );

    let trace = client
        .ok(&format!("/tempo/api/traces/{}", trace_a().to_hex()))
        .await;
    let batches = trace["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 2);
    let root = &batches[0]["scopeSpans"][0]["spans"][0];
    assert_eq!(root["spanId"], json!("AQEBAQEBAQE="), "base64 ids");
    assert_eq!(root["kind"], json!("SPAN_KIND_SERVER"));
    let v2 = client
        .ok(&format!("/tempo/api/v2/traces/{}", trace_b().to_hex()))
        .await;
    assert_eq!(v2["status"], json!("COMPLETE"));
    assert_eq!(
        v2["trace"]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["status"]["code"],
        json!("STATUS_CODE_ERROR")
    );

    let tags = client.ok("/tempo/api/search/tags").await;
    let names = tags["tagNames"].as_array().unwrap();
    for name in [
        "service.name",
        "host.name",
        "http.request.method",
        "db.system",
    ] {
        assert!(names.contains(&json!(name)), "{name} in {tags}");
    }
    for name in [
        "pod_0",
        "pod_1",
        "pod_group_0",
        "auto_service_1",
        "labels_1",
    ] {
        let listed = names.contains(&json!(name));
        assert_eq!(listed, name != "labels_1", "{name} in {tags}");
    }
    assert!(
        !names.contains(&json!("region_0")),
        "only the place columns known of some span: {tags}"
    );
    let scoped = client.ok("/tempo/api/v2/search/tags?scope=span").await;
    assert_eq!(scoped["scopes"][0]["name"], json!("span"));
    let span_tags = scoped["scopes"][0]["tags"].as_array().unwrap();
    for name in ["db.system", "pod_1", "pod_ns_0", "host_1"] {
        assert!(span_tags.contains(&json!(name)), "{name} in {scoped}");
    }
    let resource_tags = client.ok("/tempo/api/v2/search/tags?scope=resource").await;
    assert!(
        !resource_tags["scopes"][0]["tags"]
            .as_array()
            .unwrap()
            .contains(&json!("pod_1")),
        "{resource_tags}"
    );
    for tag in ["pod_1", ".pod_1", "span.pod_1"] {
        let pods = client
            .ok(&format!("/tempo/api/v2/search/tag/{tag}/values"))
            .await;
        assert_eq!(
            pods["tagValues"],
            json!([
                { "type": "string", "value": "cart-0" },
                { "type": "string", "value": "web-7d9f-x2k4q" },
            ]),
            "{tag}"
        );
    }
    let callees = client
        .ok("/tempo/api/search/tag/auto_service_1/values")
        .await;
    assert_eq!(callees["tagValues"], json!(["cache-1", "cart-svc", "web"]));
    let services = client
        .ok("/tempo/api/v2/search/tag/resource.service.name/values")
        .await;
    assert_eq!(
        services["tagValues"],
        json!([
            { "type": "string", "value": "cart" },
            { "type": "string", "value": "frontend" },
            { "type": "string", "value": "payments" },
        ])
    );
    let methods = client
        .ok("/tempo/api/search/tag/http.request.method/values")
        .await;
    assert_eq!(methods["tagValues"], json!(["GET", "POST"]));
    let codes = client
        .ok("/tempo/api/v2/search/tag/span.http.response.status_code/values")
        .await;
    assert_eq!(
        codes["tagValues"],
        json!([{ "type": "int", "value": "200" }, { "type": "int", "value": "500" }])
    );
}

#[tokio::test]
async fn on_the_memory_store() {
    check_endpoints(Arc::new(MemoryStore::new(1_000)), async || {}).await;
}

fn embedded_config(dir: &std::path::Path) -> EmbeddedConfig {
    EmbeddedConfig {
        upkeep_interval: Duration::from_secs(3600),
        flush_interval: Duration::from_secs(3600),
        ..EmbeddedConfig::new(dir)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_embedded_store_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(embedded_config(dir.path()))
        .await
        .unwrap();
    check_endpoints(Arc::new(store), async || {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_embedded_store_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        EmbeddedStore::open(embedded_config(dir.path()))
            .await
            .unwrap(),
    );
    let flushing = store.clone();
    check_endpoints(store, async move || flushing.flush().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_clickhouse() {
    let server = TestServer::start();
    let store = ClickHouseStore::open(ClickHouseConfig {
        database: "endpoints".into(),
        batch_wait: Duration::from_millis(20),
        upkeep_interval: Duration::from_secs(3600),
        ..ClickHouseConfig::new(server.url())
    })
    .await
    .unwrap();
    check_endpoints(Arc::new(store), async || {}).await;
}

/// The calls Grafana's Jaeger data source makes, in its order, with the data source's URL set
/// to spanflow's `/jaeger`, and the fields it reads from each answer.
async fn grafana_jaeger_data_source(client: &Client, base: i64) {
    // "Save & test": the service list must not be empty.
    let health = client.ok("/jaeger/api/services").await;
    assert!(!health["data"].as_array().unwrap().is_empty());
    // The query editor's pickers.
    let services = client.ok("/jaeger/api/services").await;
    assert!(services["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(Value::is_string));
    let operations = client.ok("/jaeger/api/services/frontend/operations").await;
    assert!(operations["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(Value::is_string));
    // Search: logfmt tags `http.request.method=POST` become a JSON object; times in µs.
    let tags = encode(r#"{"http.request.method":"POST"}"#);
    let search = client
        .ok(&format!(
            "/jaeger/api/traces?service=frontend&operation=POST%20%2Fcart&tags={tags}\
             &minDuration=1ms&maxDuration=10s&limit=20&start={}&end={}&lookback=custom",
            base - 3_600_000_000,
            base + 3_600_000_000
        ))
        .await;
    let traces = search["data"].as_array().unwrap();
    assert_eq!(traces.len(), 1);
    // The results table is built from whole traces: the root span's service and name, the
    // trace's start and duration.
    let trace = &traces[0];
    assert_eq!(trace["traceID"], json!(trace_a().to_hex()));
    for span in trace["spans"].as_array().unwrap() {
        for field in ["traceID", "spanID", "operationName", "processID"] {
            assert!(span[field].is_string(), "{field} in {span}");
        }
        assert!(
            span["startTime"].is_i64() && span["duration"].is_u64(),
            "{span}"
        );
        assert!(
            span["references"].is_array() && span["tags"].is_array() && span["logs"].is_array()
        );
        let process = &trace["processes"][span["processID"].as_str().unwrap()];
        assert!(process["serviceName"].is_string(), "{process}");
    }
    // The trace view reads `data[0]`, with or without a time range.
    let view = client
        .ok(&format!(
            "/jaeger/api/traces/{}?start={}&end={}",
            trace_a().to_hex(),
            base,
            base + 1
        ))
        .await;
    assert_eq!(view["data"][0]["spans"].as_array().unwrap().len(), 5);
    // The node graph: `endTs` and `lookback` in ms.
    let graph = client
        .ok(&format!(
            "/jaeger/api/dependencies?endTs={}&lookback=3600000",
            base / 1_000 + 60_000
        ))
        .await;
    for link in graph["data"].as_array().unwrap() {
        assert!(link["parent"].is_string() && link["child"].is_string());
        assert!(link["callCount"].is_u64());
    }
}

/// The calls Grafana's Tempo data source makes with its URL set to spanflow's `/tempo`.
async fn grafana_tempo_data_source(client: &Client, base: i64) {
    use opentelemetry_proto::tonic::trace::v1::TracesData;
    use prost::Message;
    let (status, echo) = client.get("/tempo/api/echo").await;
    assert_eq!((status, echo), (StatusCode::OK, json!("echo")));
    // The TraceQL editor's autocompletion.
    let tags = client.ok("/tempo/api/v2/search/tags?scope=resource").await;
    assert!(tags["scopes"][0]["tags"]
        .as_array()
        .unwrap()
        .contains(&json!("service.name")));
    let values = client
        .ok("/tempo/api/v2/search/tag/resource.service.name/values")
        .await;
    assert!(values["tagValues"]
        .as_array()
        .unwrap()
        .iter()
        .all(|v| v["type"] == json!("string")));
    // Search, with the time range in seconds.
    let q = encode(r#"{ resource.service.name = "frontend" && status = error }"#);
    let search = client
        .ok(&format!(
            "/tempo/api/search?q={q}&limit=20&spss=3&start={}&end={}",
            base / 1_000_000 - 3_600,
            base / 1_000_000 + 3_600
        ))
        .await;
    let trace = &search["traces"][0];
    for field in [
        "traceID",
        "rootServiceName",
        "rootTraceName",
        "startTimeUnixNano",
    ] {
        assert!(trace[field].is_string(), "{field} in {trace}");
    }
    assert!(trace["durationMs"].is_i64());
    let set = &trace["spanSets"][0];
    assert_eq!(set["matched"], json!(1));
    assert!(set["spans"][0]["durationNanos"].is_string());
    // The trace view asks v2 for protobuf; older Grafanas ask v1.
    let id = trace["traceID"].as_str().unwrap();
    let (status, content_type, body) = client
        .get_bytes(
            &format!("/tempo/api/v2/traces/{id}"),
            "application/protobuf",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/protobuf");
    // TraceByIDResponse { Trace trace = 1; ... }: field 1 wraps Tempo's Trace.
    assert_eq!(body[0], 0x0a);
    let (length, used) = {
        let mut value = 0u64;
        let mut used = 0;
        for (index, byte) in body[1..].iter().enumerate() {
            value |= u64::from(byte & 0x7f) << (7 * index);
            used = index + 1;
            if byte & 0x80 == 0 {
                break;
            }
        }
        (value as usize, used)
    };
    let trace = TracesData::decode(&body[1 + used..1 + used + length]).unwrap();
    let spans: usize = trace
        .resource_spans
        .iter()
        .flat_map(|resource| &resource.scope_spans)
        .map(|scope| scope.spans.len())
        .sum();
    assert_eq!(spans, 5);
    let (status, _, body) = client
        .get_bytes(&format!("/tempo/api/traces/{id}"), "application/protobuf")
        .await;
    assert_eq!(status, StatusCode::OK);
    let v1 = TracesData::decode(body.as_slice()).unwrap();
    assert_eq!(v1.resource_spans.len(), 2, "frontend and cart");
    let root = &v1.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(root.span_id, span_id(1).0.to_vec());
    assert_eq!(root.start_time_unix_nano, base as u64 * 1_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_of_a_hundred_thousand_spans_is_served_cut_to_its_upper_levels() {
    let store = Arc::new(MemoryStore::new(200_000));
    let base = base_time();
    let trace = trace_a();
    // A root with 1,000 children, each with 99 children of its own.
    let mut rows = Vec::with_capacity(100_000);
    let id = |n: u32| SpanId(u64::from(n + 1).to_be_bytes());
    let row = |n: u32, parent: Option<u32>, start: i64| {
        let mut row = span(
            trace,
            0,
            None,
            "wide",
            "node-a",
            SpanKind::Server,
            "step",
            start,
            start + 10,
            vec![],
        );
        row.span_id = id(n);
        row.parent_span_id = parent.map(id);
        row
    };
    rows.push(row(0, None, base));
    for child in 0..1_000u32 {
        let n = 1 + child * 100;
        rows.push(row(n, Some(0), base + i64::from(child)));
        for grandchild in 1..100u32 {
            rows.push(row(n + grandchild, Some(n), base + i64::from(child)));
        }
    }
    assert_eq!(rows.len(), 100_001);
    store.write(rows).await.unwrap();
    let client = Client {
        router: api_router(
            store,
            ApiConfig {
                max_trace_spans: 5_000,
                ..ApiConfig::default()
            },
        ),
    };
    let uri = format!("/api/v1/traces/{}", trace.to_hex());
    let cut = client.ok(&uri).await;
    assert_eq!(cut["truncated"], json!(true));
    assert_eq!(cut["spans_returned"], json!(5_000));
    assert_eq!(cut["summary"]["span_count"], json!(100_001));
    let depths: Vec<u64> = cut["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|span| span["depth"].as_u64().unwrap())
        .collect();
    // The root and all its children first, then as many grandchildren as fit.
    assert_eq!(depths.iter().filter(|&&depth| depth <= 1).count(), 1_001);
    assert_eq!(depths.len(), 5_000);
    let small = client.ok(&format!("{uri}?limit=10")).await;
    assert_eq!(small["spans_returned"], json!(10));
    let (status, body) = client.get(&format!("{uri}?limit=6000")).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "over the configured most: {body}"
    );
}
