//! The Rust OpenTelemetry SDK (`opentelemetry-otlp`) as a real client, over gRPC and HTTP.

use crate::common;

use common::*;
use opentelemetry::trace::{Span, SpanKind, Status, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

/// Sends a two-span trace through `exporter` and returns its trace id.
fn send_trace(exporter: opentelemetry_otlp::SpanExporter, service: &str) -> String {
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_string())
                .with_attribute(KeyValue::new("k8s.namespace.name", "rust-ns"))
                .build(),
        )
        .build();
    let tracer = provider.tracer("rust-sdk-test");
    let mut server = tracer
        .span_builder("GET /items")
        .with_kind(SpanKind::Server)
        .with_attributes(vec![
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("url.path", "/items"),
            KeyValue::new("http.response.status_code", 503),
        ])
        .start(&tracer);
    let trace_id = server.span_context().trace_id().to_string();
    let context =
        opentelemetry::Context::current().with_remote_span_context(server.span_context().clone());
    let mut client = tracer
        .span_builder("grpc call")
        .with_kind(SpanKind::Client)
        .with_attributes(vec![
            KeyValue::new("rpc.system", "grpc"),
            KeyValue::new("rpc.service", "inventory.Stock"),
            KeyValue::new("rpc.method", "Reserve"),
            KeyValue::new("rpc.grpc.status_code", 0),
        ])
        .start_with_context(&tracer, &context);
    client.end();
    server.set_status(Status::error("upstream unavailable"));
    server.end();
    provider.force_flush().expect("spans flushed");
    provider.shutdown().expect("provider shut down");
    trace_id
}

fn assert_mapped(trace: &serde_json::Value, service: &str) {
    let server = span(trace, "GET /items");
    assert_eq!(server["app_service"], service);
    assert_eq!(server["observation_point"], "s-app");
    assert_eq!(server["request_type"], "GET");
    assert_eq!(server["request_resource"], "/items");
    assert_eq!(server["response_code"], 503);
    assert_eq!(server["response_status"], 3);
    assert_eq!(server["status_message"], "upstream unavailable");
    assert_eq!(server["k8s_namespace_name"], "rust-ns");
    assert_eq!(server["scope_name"], "rust-sdk-test");
    let client = span(trace, "grpc call");
    assert_eq!(client["parent_span_id"], server["span_id"]);
    assert_eq!(client["observation_point"], "c-app");
    assert_eq!(client["l7_protocol"], 41);
    assert_eq!(client["request_type"], "Reserve");
    assert_eq!(client["request_resource"], "inventory.Stock/Reserve");
    assert_eq!(client["response_status"], 0);
    assert_eq!(client["ip_0"], "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_over_grpc_with_gzip() {
    let running = start_up().await;
    let endpoint = format!("http://{}", running.agent_otlp_grpc.unwrap());
    let trace_id = tokio::task::spawn_blocking(move || {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_compression(opentelemetry_otlp::Compression::Gzip)
            .build()
            .unwrap();
        send_trace(exporter, "rust-grpc")
    })
    .await
    .unwrap();
    let trace = fetch_trace(running.server_query.unwrap(), &trace_id, 2).await;
    assert_mapped(&trace, "rust-grpc");
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_over_http_protobuf() {
    let running = start_up().await;
    let endpoint = format!("http://{}/api/v1/otel/trace", running.agent_http.unwrap());
    let trace_id = tokio::task::spawn_blocking(move || {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint)
            .build()
            .unwrap();
        send_trace(exporter, "rust-http")
    })
    .await
    .unwrap();
    let trace = fetch_trace(running.server_query.unwrap(), &trace_id, 2).await;
    assert_mapped(&trace, "rust-http");
    running.stop().await.unwrap();
}
