//! Shared helpers for end-to-end tests: a whole spanflow on loopback ports, and polling the
//! query API until a trace is stored.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use serde_json::Value;
use spanflow_cli::serve::{self, Role, Running};
use spanflow_cli::settings::Settings;

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Settings with every port on loopback, chosen by the OS, and a short flush interval.
pub fn test_settings() -> Settings {
    Settings {
        agent_http_listen: Some(loopback()),
        agent_otlp_http_listen: Some(loopback()),
        agent_otlp_grpc_listen: Some(loopback()),
        ingest_listen: Some(loopback()),
        query_listen: Some(loopback()),
        flush_interval_ms: Some(20),
        agent_id: Some("test-agent".into()),
        ..Settings::default()
    }
}

/// A running spanflow and the data directory it owns (removed when dropped).
pub struct Spanflow {
    running: Running,
    pub data_dir: tempfile::TempDir,
}

impl std::ops::Deref for Spanflow {
    type Target = Running;
    fn deref(&self) -> &Running {
        &self.running
    }
}

impl Spanflow {
    pub async fn stop(self) -> anyhow::Result<()> {
        self.running.stop().await
    }

    /// Stops spanflow and hands over its data directory, to open the store and look inside.
    pub async fn stop_keeping_data(self) -> tempfile::TempDir {
        self.running.stop().await.expect("spanflow stops cleanly");
        self.data_dir
    }
}

/// Starts `role` with `settings`; unless the settings name a data directory, the store (the
/// default, embedded one) lives in a fresh temporary directory.
pub async fn start(role: Role, mut settings: Settings) -> Spanflow {
    let data_dir = tempfile::tempdir().expect("a temporary directory");
    settings
        .data_dir
        .get_or_insert_with(|| data_dir.path().to_path_buf());
    let running = serve::start(role, settings.resolve())
        .await
        .expect("spanflow starts");
    Spanflow { running, data_dir }
}

/// Agent and server in one process, as `spanflow up` runs them.
pub async fn start_up() -> Spanflow {
    start(Role::Both, test_settings()).await
}

/// Polls `GET /api/v1/traces/{id}` until it answers 200 with `n_spans` spans (10 s at most).
pub async fn fetch_trace(query: SocketAddr, trace_id: &str, n_spans: usize) -> Value {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let url = format!("http://{query}/api/v1/traces/{trace_id}");
    let mut last = String::new();
    while Instant::now() < deadline {
        let response = client.get(&url).send().await.expect("query API answers");
        let status = response.status();
        let body: Value = response.json().await.expect("query API answers JSON");
        if status == 200 && body["spans"].as_array().map(Vec::len) == Some(n_spans) {
            return body;
        }
        last = format!("{status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("trace {trace_id} did not reach {n_spans} spans within 10 s; last answer: {last}");
}

/// The span of a fetched trace with this `endpoint` (span name).
pub fn span<'a>(trace: &'a Value, name: &str) -> &'a Value {
    trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|span| span["endpoint"] == name)
        .unwrap_or_else(|| panic!("no span named {name:?} in {trace}"))
}

pub fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

pub fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

/// Nanoseconds since the epoch, a second ago: recent, and the same for both ends of a test.
pub fn recent_ns() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    (now.as_secs() - 1) * 1_000_000_000
}

/// A server span with HTTP attributes, in a resource named `service`.
pub fn server_span(trace_id: [u8; 16], span_id: [u8; 8], name: &str) -> Span {
    let start = recent_ns();
    Span {
        trace_id: trace_id.to_vec(),
        span_id: span_id.to_vec(),
        name: name.into(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 12_345_000,
        attributes: vec![
            string("http.request.method", "POST"),
            string("url.path", "/api/pay"),
            int("http.response.status_code", 201),
        ],
        status: Some(Status {
            code: status::StatusCode::Ok as i32,
            message: String::new(),
        }),
        ..Default::default()
    }
}

pub fn request(resource_attributes: Vec<KeyValue>, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: resource_attributes,
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "test-scope".into(),
                    version: "0.1".into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A trace id unique to the calling test.
pub fn unique_trace_id(seed: u8) -> [u8; 16] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&(nanos as u64).to_be_bytes());
    id[8] = seed;
    id[15] = 1;
    id
}

/// A loopback port free now, for a process started after (which binds it itself).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `GET /healthz` on the loopback `port` answers 200 (20 s at most).
pub async fn wait_healthy(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await {
            if response.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing healthy on port {port}");
}
