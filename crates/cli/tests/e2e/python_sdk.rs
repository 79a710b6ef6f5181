//! The OpenTelemetry Python SDK as a real client: each exporter sends one known trace through
//! the agent, and the mapped spans are read back through the query API.
//!
//! The interpreters come from `scripts/setup-python` (run by `scripts/test`), through
//! `SPANFLOW_PY_PROTO`, `SPANFLOW_PY_JSON` and `SPANFLOW_PY_SENDER`, or from the repository's
//! `.venv/` when those are unset.

use crate::common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use serde_json::Value;

fn repository_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn from_env_or_repository(variable: &str, relative: &str) -> PathBuf {
    let path = std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|| repository_root().join(relative));
    assert!(
        path.exists(),
        "{} not found ({variable} unset or wrong): run scripts/test, which installs the \
         OpenTelemetry Python SDK venvs, or scripts/setup-python",
        path.display()
    );
    path
}

/// Runs the sender and returns what it printed: the trace id and span ids it sent.
async fn send(venv: &str, exporter: &str, endpoint: String, compression: &str) -> Value {
    let (variable, relative) = match venv {
        "proto" => ("SPANFLOW_PY_PROTO", ".venv/otel-proto/bin/python"),
        _ => ("SPANFLOW_PY_JSON", ".venv/otel-json/bin/python"),
    };
    let python = from_env_or_repository(variable, relative);
    let sender = from_env_or_repository("SPANFLOW_PY_SENDER", "tests/python/send_traces.py");
    let exporter = exporter.to_string();
    let compression = compression.to_string();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(sender)
            .args([
                "--exporter",
                &exporter,
                "--endpoint",
                &endpoint,
                "--compression",
                &compression,
            ])
            .output()
            .expect("python starts")
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "sender failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("sender prints one JSON line")
}

/// What every exporter's trace must look like once stored.
fn assert_mapped(sent: &Value, trace: &Value) {
    let root = span(trace, "GET /api/orders/{id}");
    assert_eq!(root["span_id"], sent["spans"]["GET /api/orders/{id}"]);
    assert_eq!(root["parent_span_id"], "");
    assert_eq!(root["span_kind"], 2);
    assert_eq!(root["observation_point"], "s-app");
    assert_eq!(root["app_service"], "checkout");
    assert_eq!(root["app_instance"], "checkout-1");
    assert_eq!(root["l7_protocol"], 20);
    assert_eq!(root["l7_protocol_str"], "http");
    assert_eq!(root["request_type"], "GET");
    assert_eq!(root["request_domain"], "shop.example.com");
    assert_eq!(root["request_resource"], "/api/orders/42");
    assert_eq!(root["response_code"], 200);
    assert_eq!(root["response_status"], 0);
    assert_eq!(root["response_duration"], 250_000);
    let start_us = sent["start_time_unix_nano"].as_i64().unwrap() / 1000;
    assert_eq!(root["start_time"], start_us);
    assert_eq!(root["end_time"], start_us + 250_000);
    assert_eq!(root["server_port"], 8080);
    // The server side is the sender, the client side the peer the span names.
    assert_eq!(root["ip_1"], "127.0.0.1");
    assert_eq!(root["ip_0"], "10.1.2.3");
    assert_eq!(root["resource_attributes"]["app.host.ip"], "127.0.0.1");
    assert_eq!(root["attributes"]["order.count"], 3);
    assert_eq!(root["attributes"]["order.total"], 12.5);
    assert_eq!(root["attributes"]["order.paid"], true);
    assert_eq!(
        root["attributes"]["order.tags"],
        serde_json::json!(["a", "b"])
    );
    assert_eq!(root["events"][0]["name"], "cache miss");
    assert_eq!(root["events"][0]["attributes"]["cache.key"], "order:42");
    assert_eq!(root["k8s_namespace_name"], "shop");
    assert_eq!(root["k8s_pod_name"], "checkout-7d9f8-abcde");
    assert_eq!(root["k8s_node_name"], "node-a");
    assert_eq!(root["k8s_workload_kind"], "deployment");
    assert_eq!(root["k8s_workload_name"], "checkout");
    assert_eq!(root["host_name"], "host-a");
    assert_eq!(root["service_version"], "1.4.2");

    let client = span(trace, "SELECT orders");
    assert_eq!(
        client["parent_span_id"],
        sent["spans"]["GET /api/orders/{id}"]
    );
    assert_eq!(client["observation_point"], "c-app");
    assert_eq!(client["l7_protocol"], 61);
    assert_eq!(client["l7_protocol_str"], "postgresql");
    assert_eq!(client["request_type"], "SELECT");
    assert_eq!(
        client["request_resource"],
        "SELECT * FROM orders WHERE id = $1"
    );
    assert_eq!(client["request_domain"], "shop");
    assert_eq!(client["response_status"], 3);
    assert_eq!(client["response_exception"], "connection reset");
    assert_eq!(client["status_code"], 2);
    assert_eq!(client["status_message"], "connection reset");
    assert_eq!(client["response_duration"], 40_000);
    assert_eq!(client["ip_0"], "127.0.0.1");
    assert_eq!(client["ip_1"], "10.9.8.7");
    assert_eq!(client["server_port"], 5432);
    let exception = client["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|event| event["name"] == "exception");
    assert!(
        exception.is_some(),
        "the recorded exception is kept as an event: {client}"
    );

    let internal = span(trace, "render");
    assert_eq!(internal["observation_point"], "app");
    assert_eq!(internal["span_kind"], 1);
    assert_eq!(
        internal["links"][0]["span_id"],
        sent["spans"]["SELECT orders"]
    );
    assert_eq!(internal["links"][0]["trace_id"], sent["trace_id"]);
    assert_eq!(internal["attributes"]["template"], "order.html");
    assert_eq!(internal["scope_name"], root["scope_name"]);
}

async fn check(
    venv: &str,
    exporter: &str,
    path: impl Fn(&spanflow_cli::serve::Running) -> String,
    compression: &str,
) {
    let running = start_up().await;
    let sent = send(venv, exporter, path(&running), compression).await;
    let trace_id = sent["trace_id"].as_str().unwrap();
    let trace = fetch_trace(running.server_query.unwrap(), trace_id, 3).await;
    assert_eq!(trace["trace_id"], trace_id);
    assert_mapped(&sent, &trace);
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_http_protobuf_gzip_to_the_deepflow_path() {
    check(
        "proto",
        "http-proto",
        |running| format!("http://{}/api/v1/otel/trace", running.agent_http.unwrap()),
        "gzip",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_http_protobuf_gzip_to_the_otlp_port() {
    check(
        "proto",
        "http-proto",
        |running| format!("http://{}/v1/traces", running.agent_otlp_http.unwrap()),
        "gzip",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_grpc_to_the_otlp_grpc_port() {
    check(
        "proto",
        "grpc",
        |running| format!("http://{}", running.agent_otlp_grpc.unwrap()),
        "gzip",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_http_json() {
    check(
        "json",
        "http-json",
        |running| format!("http://{}/v1/traces", running.agent_otlp_http.unwrap()),
        "none",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_http_json_gzip_to_the_deepflow_path() {
    check(
        "json",
        "http-json",
        |running| format!("http://{}/api/v1/otel/trace", running.agent_http.unwrap()),
        "gzip",
    )
    .await;
}
