//! `spanflow trace`, `search` and `query` against a running `spanflow up`, with spans from
//! the Rust OpenTelemetry SDK.

use crate::common;

use common::*;
use opentelemetry::trace::{Span, SpanKind, Status, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

/// A checkout: a server span, a client call under it, and a failed step; returns the trace id.
fn send_checkout(endpoint: String) -> String {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .build()
        .expect("an HTTP exporter");
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("shop").build())
        .build();
    let tracer = provider.tracer("terminal-test");
    let root = tracer
        .span_builder("GET /checkout")
        .with_kind(SpanKind::Server)
        .with_attributes(vec![KeyValue::new("http.request.method", "GET")])
        .start(&tracer);
    let trace_id = root.span_context().trace_id().to_string();
    let context =
        opentelemetry::Context::current().with_remote_span_context(root.span_context().clone());
    let mut call = tracer
        .span_builder("charge card")
        .with_kind(SpanKind::Client)
        .start_with_context(&tracer, &context);
    std::thread::sleep(std::time::Duration::from_millis(5));
    call.end();
    let mut render = tracer
        .span_builder("render")
        .start_with_context(&tracer, &context);
    render.set_status(Status::error("template missing"));
    render.end();
    let mut root = root;
    root.end();
    provider.force_flush().expect("spans flushed");
    provider.shutdown().expect("provider shut down");
    trace_id
}

async fn spanflow(args: Vec<String>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_spanflow"))
            .args(&args)
            .output()
            .expect("the spanflow binary runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_client_draws_searches_and_queries() {
    let spanflow_up = start_up().await;
    let endpoint = format!("http://{}/v1/traces", spanflow_up.agent_otlp_http.unwrap());
    let trace_id = tokio::task::spawn_blocking(move || send_checkout(endpoint))
        .await
        .unwrap();
    let query = spanflow_up.server_query.unwrap();
    fetch_trace(query, &trace_id, 3).await;
    let server = format!("http://{query}");

    let (ok, out, err) = spanflow(vec![
        "trace".into(),
        trace_id.clone(),
        "--server".into(),
        server.clone(),
        "--color".into(),
        "never".into(),
    ])
    .await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with(&format!("trace {trace_id}  shop: GET /checkout")),
        "{out}"
    );
    assert!(lines[0].contains("3 spans, 1 error"), "{out}");
    let rows = &lines[4..];
    assert_eq!(rows.len(), 3, "{out}");
    assert!(rows[0].starts_with("shop     GET /checkout"), "{out}");
    assert!(rows[1].contains("├─charge card"), "{out}");
    assert!(rows[2].contains("└─render ✗"), "{out}");
    assert!(rows.iter().all(|row| row.contains('█')), "{out}");

    let (ok, out, err) = spanflow(vec![
        "trace".into(),
        trace_id.clone(),
        "--server".into(),
        server.clone(),
        "--color".into(),
        "always".into(),
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("\u{1b}[31m└─render ✗"), "{out}");

    let (ok, out, err) = spanflow(vec![
        "search".into(),
        "--server".into(),
        server.clone(),
        "--service".into(),
        "shop".into(),
        "--status".into(),
        "error".into(),
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.starts_with("TRACE ID"), "{out}");
    assert!(
        out.contains(&trace_id) && out.contains("shop: GET /checkout"),
        "{out}"
    );
    assert!(out.ends_with("(1 row)\n"), "{out}");

    let (ok, out, err) = spanflow(vec![
        "query".into(),
        "SELECT endpoint, span_kind FROM l7_flow_log ORDER BY endpoint".into(),
        "--server".into(),
        server.clone(),
    ])
    .await;
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "endpoint       span_kind\nGET /checkout  2\ncharge card    3\nrender         1\n(3 rows)\n"
    );

    let (ok, _, err) = spanflow(vec![
        "query".into(),
        "DROP TABLE l7_flow_log".into(),
        "--server".into(),
        server.clone(),
    ])
    .await;
    assert!(!ok);
    assert!(err.contains("only SELECT"), "{err}");
    let (ok, _, err) = spanflow(vec![
        "trace".into(),
        "0".repeat(32),
        "--server".into(),
        server,
    ])
    .await;
    assert!(!ok);
    assert!(err.contains("404") && err.contains("not found"), "{err}");
    spanflow_up.stop().await.unwrap();
}
