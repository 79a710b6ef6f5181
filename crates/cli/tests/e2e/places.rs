//! Where spans ran, end to end: the agent watches a Kubernetes API (the recorded responses of
//! `crates/k8s/tests/fixtures`, served over HTTP to kube-rs), a host inventory names a host
//! outside Kubernetes, the Rust SDK sends a trace from a pod, and every API answers with the
//! pod, workload, service, node and host of both ends of each call.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Uri};
use axum::response::Response;
use common::*;
use opentelemetry::trace::{Span, SpanKind, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use serde_json::Value;
use spanflow_cli::serve::Role;
use spanflow_cli::settings::{KubernetesMode, Settings};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../k8s/tests/fixtures");

/// A Kubernetes API server that answers every list with its recorded response and holds every
/// watch open with nothing to tell.
async fn fake_kubernetes() -> (String, Arc<AtomicUsize>) {
    let lists = Arc::new(AtomicUsize::new(0));
    let counted = lists.clone();
    let app = axum::Router::new().fallback(move |uri: Uri| {
        let lists = counted.clone();
        async move {
            let query = uri.query().unwrap_or_default();
            if query.contains("watch=true") || query.contains("watch=1") {
                return Response::builder()
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from_stream(futures::stream::pending::<
                        Result<Vec<u8>, std::io::Error>,
                    >()))
                    .unwrap();
            }
            let fixture = match uri.path() {
                "/api/v1/pods" => "pods-list.json",
                "/api/v1/services" => "services-list.json",
                "/api/v1/nodes" => "nodes-list.json",
                "/apis/apps/v1/replicasets" => "replicasets-list.json",
                "/apis/batch/v1/jobs" => "jobs-list.json",
                _ => {
                    return Response::builder()
                        .status(404)
                        .body(Body::from("{}"))
                        .unwrap()
                }
            };
            lists.fetch_add(1, Ordering::SeqCst);
            let body = std::fs::read(format!("{FIXTURES}/{fixture}")).expect("fixture");
            Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body))
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, lists)
}

/// The value of a Prometheus sample whose line starts with `prefix`, summed.
async fn metric(agent: std::net::SocketAddr, prefix: &str) -> f64 {
    let text = reqwest::get(format!("http://{agent}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A trace from the `web` pod (10.244.1.11): a request from a load balancer outside the
/// cluster (192.0.2.7, named by the inventory), a query to the `db-0` pod (10.244.1.12), and a
/// call to the `web` service's cluster IP (10.96.0.20).
fn send_trace(endpoint: String) -> String {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .build()
        .unwrap();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name("web")
                .with_attribute(KeyValue::new("app.host.ip", "10.244.1.11"))
                .build(),
        )
        .build();
    let tracer = provider.tracer("places-test");
    let mut server = tracer
        .span_builder("GET /orders")
        .with_kind(SpanKind::Server)
        .with_attributes(vec![
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("client.address", "192.0.2.7"),
            KeyValue::new("server.port", 8080),
        ])
        .start(&tracer);
    let trace_id = server.span_context().trace_id().to_string();
    let context =
        opentelemetry::Context::current().with_remote_span_context(server.span_context().clone());
    tracer
        .span_builder("SELECT orders")
        .with_kind(SpanKind::Client)
        .with_attributes(vec![
            KeyValue::new("db.system.name", "postgresql"),
            KeyValue::new("network.peer.address", "10.244.1.12"),
            KeyValue::new("server.port", 5432),
        ])
        .start_with_context(&tracer, &context)
        .end();
    tracer
        .span_builder("GET /stock")
        .with_kind(SpanKind::Client)
        .with_attributes(vec![
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("network.peer.address", "10.96.0.20"),
            KeyValue::new("server.port", 80),
        ])
        .start_with_context(&tracer, &context)
        .end();
    server.end();
    provider.force_flush().expect("spans flushed");
    provider.shutdown().expect("provider shut down");
    trace_id
}

async fn get_json(url: String) -> Value {
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_from_a_pod_carry_both_ends_places_in_every_api() {
    let (kubernetes, lists) = fake_kubernetes().await;
    let config = tempfile::tempdir().unwrap();
    let kubeconfig = config.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
             clusters: [{{name: fake, cluster: {{server: \"{kubernetes}\"}}}}]\n\
             users: [{{name: fake, user: {{}}}}]\n\
             contexts: [{{name: fake, context: {{cluster: fake, user: fake}}}}]\n"
        ),
    )
    .unwrap();
    let inventory = config.path().join("hosts.yaml");
    std::fs::write(
        &inventory,
        "hosts:\n  - name: edge-lb\n    ips: [192.0.2.7]\n    region: eu-west-1\n    \
         zone: eu-west-1a\n    labels: {team: edge}\n",
    )
    .unwrap();
    let spanflow = common::start(
        Role::Both,
        Settings {
            kubernetes: Some(KubernetesMode::On),
            kubeconfig: Some(kubeconfig),
            node_name: Some("node-a".into()),
            cluster_name: Some("prod".into()),
            k8s_labels: Some("app,version".into()),
            host_inventory_file: Some(inventory),
            ..test_settings()
        },
    )
    .await;
    let agent = spanflow.agent_http.unwrap();
    let query = spanflow.server_query.unwrap();

    // The agent has listed everything and applied the pods before the trace is sent.
    let deadline = Instant::now() + Duration::from_secs(20);
    while lists.load(Ordering::SeqCst) < 5
        || metric(agent, "spanflow_agent_k8s_events_total{kind=\"pod\"}").await < 7.0
    {
        assert!(
            Instant::now() < deadline,
            "the agent never listed the fake API"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let endpoint = format!("http://{agent}/api/v1/otel/trace");
    let trace_id = tokio::task::spawn_blocking(move || send_trace(endpoint))
        .await
        .unwrap();
    let trace = fetch_trace(query, &trace_id, 3).await;

    // The span's own end, as resource tags: what the agent knows of its sender's pod.
    let root = span(&trace, "GET /orders");
    assert_eq!(root["k8s_pod_name"], "web-7c9d8f6b5-abcde", "{root}");
    assert_eq!(root["k8s_namespace_name"], "shop");
    assert_eq!(root["k8s_workload_kind"], "deployment");
    assert_eq!(root["k8s_workload_name"], "web");
    assert_eq!(root["k8s_node_name"], "node-a");
    assert_eq!(root["k8s_cluster_name"], "prod");

    // The native API: each span with both ends' places.
    let query_span = span(&trace, "SELECT orders");
    assert_eq!(
        query_span["place_0"]["pod"], "web-7c9d8f6b5-abcde",
        "{query_span}"
    );
    assert_eq!(query_span["place_0"]["labels"]["version"], "v1");
    assert_eq!(query_span["place_1"]["pod"], "db-0");
    assert_eq!(query_span["place_1"]["pod_group_type"], "statefulset");
    assert_eq!(query_span["place_1"]["auto_instance_type"], "pod");
    assert_eq!(root["place_0"]["host"], "edge-lb", "{root}");
    assert_eq!(root["place_0"]["auto_instance_type"], "host");
    assert_eq!(root["place_1"]["service"], "web");
    // A search by the callee's pod, and by where the span itself ran.
    for search in [
        "pod_1=db-0",
        "workload=web&namespace=shop",
        "pod_group_1=db",
    ] {
        let found = get_json(format!("http://{query}/api/v1/traces?{search}")).await;
        let ids: Vec<&str> = found["traces"]
            .as_array()
            .unwrap_or_else(|| panic!("{found}"))
            .iter()
            .filter_map(|trace| trace["trace_id"].as_str())
            .collect();
        assert_eq!(ids, [trace_id.as_str()], "{search}: {found}");
    }
    let none = get_json(format!("http://{query}/api/v1/traces?pod_1=nowhere")).await;
    assert_eq!(none["traces"], serde_json::json!([]), "{none}");

    // Both ends of every call, by DeepFlow's names, through the SQL API.
    let sql = format!(
        "SELECT endpoint, pod_0, pod_group_0, host_0, region_0, az_0, auto_instance_type_0, \
             pod_1, pod_ns_1, pod_group_1, pod_group_type_1, pod_node_1, pod_cluster_1, \
             service_1, region_1, az_1, auto_service_1, auto_service_type_1, labels_0, labels_1 \
         FROM l7_flow_log WHERE trace_id = '{trace_id}' ORDER BY endpoint"
    );
    let answer: Value = reqwest::Client::new()
        .post(format!("http://{query}/v1/query/"))
        .form(&[("db", "flow_log"), ("sql", sql.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let values = answer["result"]["values"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"));
    let row = |name: &str| -> Vec<String> {
        values
            .iter()
            .find(|row| row[0] == name)
            .unwrap_or_else(|| panic!("no {name} in {answer}"))
            .as_array()
            .unwrap()
            .iter()
            .map(|value| match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            })
            .collect()
    };
    let web_pod = "web-7c9d8f6b5-abcde";
    // The server span: called by the load balancer the inventory names, served by the web pod.
    assert_eq!(
        row("GET /orders"),
        [
            "GET /orders",
            "",
            "",
            "edge-lb",
            "eu-west-1",
            "eu-west-1a",
            "6",
            web_pod,
            "shop",
            "web",
            "deployment",
            "node-a",
            "prod",
            "web",
            "eu-west-1",
            "eu-west-1b",
            "web",
            "11",
            r#"{"team":"edge"}"#,
            r#"{"app":"web","version":"v1"}"#,
        ]
    );
    // The query: from the web pod to the db-0 pod of the db StatefulSet.
    let query_row = row("SELECT orders");
    assert_eq!(query_row[1..3], [web_pod, "web"]);
    assert_eq!(
        query_row[7..13],
        ["db-0", "shop", "db", "statefulset", "node-a", "prod"]
    );
    assert_eq!(query_row[19], r#"{"app":"db"}"#);
    // The call to a service's cluster IP: the service, not a pod.
    let call = row("GET /stock");
    assert_eq!(call[7], "", "no pod behind a cluster IP");
    assert_eq!(call[8], "shop");
    assert_eq!(call[13], "web");
    assert_eq!((call[16].as_str(), call[17].as_str()), ("web", "11"));

    // Jaeger: the process (the span's own end) carries the pod's tags.
    let jaeger = get_json(format!("http://{query}/jaeger/api/traces/{trace_id}")).await;
    let process = jaeger["data"][0]["processes"]
        .as_object()
        .and_then(|processes| processes.values().next())
        .unwrap_or_else(|| panic!("{jaeger}"));
    let tag = |key: &str| {
        process["tags"]
            .as_array()
            .unwrap()
            .iter()
            .find(|tag| tag["key"] == key)
            .map(|tag| tag["value"].clone())
    };
    assert_eq!(tag("k8s.pod.name"), Some(Value::from(web_pod)), "{process}");
    assert_eq!(tag("k8s.deployment.name"), Some(Value::from("web")));
    assert_eq!(tag("k8s.pod.labels.version"), Some(Value::from("v1")));
    // ... and a client span its peer's as span tags.
    let query_tags = jaeger["data"][0]["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|span| span["operationName"] == "SELECT orders")
        .map(|span| span["tags"].clone())
        .unwrap_or_else(|| panic!("{jaeger}"));
    assert!(
        query_tags
            .as_array()
            .unwrap()
            .iter()
            .any(|tag| tag["key"] == "pod_1" && tag["value"] == "db-0"),
        "{query_tags}"
    );

    // Tempo: a search by where the spans ran finds the trace, and so does one by the callee's
    // pod, a place column; each finds this trace only.
    for traceql in [
        "{ resource.k8s.deployment.name = \"web\" && resource.k8s.namespace.name = \"shop\" }",
        "{ .pod_1 = \"db-0\" }",
    ] {
        let found = tempo_search(query, traceql).await;
        let ids: Vec<&str> = found.iter().map(|id| id.trim_start_matches('0')).collect();
        assert_eq!(ids, [trace_id.trim_start_matches('0')], "{traceql}");
    }

    // The service map by workload: the web Deployment's pod calls the db StatefulSet's.
    let map = get_json(format!("http://{query}/api/v1/service-map?by=workload")).await;
    let text = map.to_string();
    assert!(text.contains("\"web\"") && text.contains("\"db\""), "{map}");

    spanflow.stop().await.unwrap();
}

/// The trace ids a Tempo TraceQL search finds.
async fn tempo_search(query: std::net::SocketAddr, traceql: &str) -> Vec<String> {
    let tempo: Value = reqwest::Client::new()
        .get(format!("http://{query}/tempo/api/search"))
        .query(&[("q", traceql)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    tempo["traces"]
        .as_array()
        .unwrap_or_else(|| panic!("{tempo}"))
        .iter()
        .filter_map(|trace| trace["traceID"].as_str().map(str::to_string))
        .collect()
}
