//! The agent's OTLP receivers over real sockets: every status path of the OTLP specification,
//! each encoding and compression, and spans read back through the query API.

use crate::common;

use common::*;
use prost::Message;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use spanflow_cli::serve::Role;
use spanflow_otlp::status::Status;
use spanflow_otlp::ExportTraceServiceResponse;

const PROTOBUF: &str = "application/x-protobuf";

fn gzip(data: &[u8]) -> Vec<u8> {
    spanflow_otlp::decompress::gzip(data)
}

async fn post(
    url: String,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(url)
        .header(CONTENT_TYPE, content_type)
        .body(body);
    if let Some(encoding) = encoding {
        request = request.header(CONTENT_ENCODING, encoding);
    }
    request.send().await.expect("agent answers")
}

async fn protobuf_response(response: reqwest::Response) -> ExportTraceServiceResponse {
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[CONTENT_TYPE], PROTOBUF);
    ExportTraceServiceResponse::decode(response.bytes().await.unwrap())
        .expect("an ExportTraceServiceResponse")
}

#[tokio::test]
async fn gzip_protobuf_on_the_deepflow_path_is_stored_and_tagged_with_the_peer_ip() {
    let running = start_up().await;
    let trace_id = unique_trace_id(1);
    let body = request(
        vec![string("service.name", "payments")],
        vec![server_span(trace_id, [1; 8], "POST /api/pay")],
    )
    .encode_to_vec();
    let url = format!("http://{}/api/v1/otel/trace", running.agent_http.unwrap());
    let response = protobuf_response(post(url, PROTOBUF, Some("gzip"), gzip(&body)).await).await;
    assert_eq!(
        response.partial_success, None,
        "full success leaves partial_success unset"
    );

    let trace = fetch_trace(running.server_query.unwrap(), &hex(&trace_id), 1).await;
    let span = span(&trace, "POST /api/pay");
    assert_eq!(span["app_service"], "payments");
    assert_eq!(span["observation_point"], "s-app");
    assert_eq!(span["request_type"], "POST");
    assert_eq!(span["request_resource"], "/api/pay");
    assert_eq!(span["response_code"], 201);
    assert_eq!(span["response_duration"], 12_345);
    assert_eq!(span["l7_protocol_str"], "http");
    // No app.host.ip in the resource: the agent's view of the sender fills it.
    assert_eq!(span["resource_attributes"]["app.host.ip"], "127.0.0.1");
    assert_eq!(span["ip_1"], "127.0.0.1");
    assert_eq!(span["agent_id"], "test-agent");
    assert_eq!(span["scope_name"], "test-scope");
    running.stop().await.unwrap();
}

#[tokio::test]
async fn an_existing_app_host_ip_is_kept_per_resource() {
    let running = start_up().await;
    let trace_id = unique_trace_id(2);
    let mut both = request(
        vec![string("app.host.ip", "10.20.30.40")],
        vec![server_span(trace_id, [1; 8], "first")],
    );
    let second = request(
        vec![string("service.name", "second")],
        vec![server_span(trace_id, [2; 8], "second")],
    );
    both.resource_spans.extend(second.resource_spans);
    let url = format!("http://{}/v1/traces", running.agent_otlp_http.unwrap());
    protobuf_response(post(url, PROTOBUF, None, both.encode_to_vec()).await).await;

    let trace = fetch_trace(running.server_query.unwrap(), &hex(&trace_id), 2).await;
    assert_eq!(span(&trace, "first")["ip_1"], "10.20.30.40");
    // The second resource has no app.host.ip of its own and must not inherit the first one's.
    assert_eq!(span(&trace, "second")["ip_1"], "127.0.0.1");
    running.stop().await.unwrap();
}

#[tokio::test]
async fn json_and_zstd_and_every_path_are_accepted() {
    let running = start_up().await;
    let agent = running.agent_http.unwrap();
    let trace_id = unique_trace_id(3);
    let json = serde_json::json!({
        "resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
            "scopeSpans": [{"spans": [{
                "traceId": hex(&trace_id).to_uppercase(),
                "spanId": "0102030405060708",
                "name": "json span",
                "kind": 3,
                "startTimeUnixNano": recent_ns().to_string(),
                "endTimeUnixNano": recent_ns() + 1_000_000,
                "attributes": [{"key": "db.system.name", "value": {"stringValue": "redis"}}]
            }]}]
        }]
    })
    .to_string();
    let response = post(
        format!("http://{agent}/v1/traces"),
        "application/json",
        None,
        json.into_bytes(),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    assert_eq!(response.text().await.unwrap(), "{}");

    let zstd_body = zstd::encode_all(
        &request(vec![], vec![server_span(trace_id, [9; 8], "zstd span")]).encode_to_vec()[..],
        3,
    )
    .unwrap();
    let response = post(
        format!("http://{agent}/api/v1/otel/trace/v1/traces"),
        PROTOBUF,
        Some("zstd"),
        zstd_body,
    )
    .await;
    protobuf_response(response).await;

    let trace = fetch_trace(running.server_query.unwrap(), &hex(&trace_id), 2).await;
    let json_span = span(&trace, "json span");
    assert_eq!(json_span["app_service"], "json-svc");
    assert_eq!(json_span["observation_point"], "c-app");
    assert_eq!(json_span["l7_protocol_str"], "redis");
    assert_eq!(json_span["span_id"], "0102030405060708");
    span(&trace, "zstd span");
    running.stop().await.unwrap();
}

#[tokio::test]
async fn bad_spans_are_rejected_one_by_one_with_partial_success() {
    let running = start_up().await;
    let trace_id = unique_trace_id(4);
    let mut short_trace_id = server_span(trace_id, [1; 8], "bad trace id");
    short_trace_id.trace_id.truncate(5);
    let zero_span_id = server_span(trace_id, [0; 8], "zero span id");
    let good = server_span(trace_id, [3; 8], "good");
    let body = request(vec![], vec![short_trace_id, good, zero_span_id]).encode_to_vec();
    let url = format!("http://{}/v1/traces", running.agent_otlp_http.unwrap());
    let response = protobuf_response(post(url, PROTOBUF, Some("gzip"), gzip(&body)).await).await;
    let partial = response.partial_success.expect("partial success reported");
    assert_eq!(partial.rejected_spans, 2);
    assert!(
        partial.error_message.contains("trace_id"),
        "{}",
        partial.error_message
    );
    assert!(
        partial.error_message.contains("span_id"),
        "{}",
        partial.error_message
    );
    let trace = fetch_trace(running.server_query.unwrap(), &hex(&trace_id), 1).await;
    span(&trace, "good");

    // The same through JSON.
    let json = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0011","spanId":"0102030405060708","name":"x"}]}]}]}"#;
    let url = format!("http://{}/v1/traces", running.agent_otlp_http.unwrap());
    let response = post(url, "application/json", None, json.as_bytes().to_vec()).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["partialSuccess"]["rejectedSpans"], "1");
    running.stop().await.unwrap();
}

#[tokio::test]
async fn every_error_path_answers_as_otlp_says_and_the_receiver_stays_up() {
    let mut settings = test_settings();
    settings.max_body_bytes = Some(1 << 20);
    let running = start(Role::Both, settings).await;
    let agent = running.agent_http.unwrap();
    let url = format!("http://{agent}/v1/traces");

    // Undecodable protobuf: 400 with a protobuf google.rpc.Status.
    let response = post(url.clone(), PROTOBUF, None, b"\x0a\xff\xff\xff".to_vec()).await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()[CONTENT_TYPE], PROTOBUF);
    let status = Status::decode(response.bytes().await.unwrap()).unwrap();
    assert_eq!(status.code, 3, "INVALID_ARGUMENT");
    assert!(
        status.message.contains("undecodable OTLP protobuf"),
        "{}",
        status.message
    );

    // Undecodable JSON: 400 with a JSON google.rpc.Status.
    let response = post(url.clone(), "application/json", None, b"{not json".to_vec()).await;
    assert_eq!(response.status(), 400);
    let status: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status["code"], 3);
    assert!(status["message"]
        .as_str()
        .unwrap()
        .contains("undecodable OTLP JSON"));

    // Corrupt gzip: 400.
    let response = post(url.clone(), PROTOBUF, Some("gzip"), b"not gzip".to_vec()).await;
    assert_eq!(response.status(), 400);

    // Wrong method: 405.
    let response = reqwest::Client::new().get(&url).send().await.unwrap();
    assert_eq!(response.status(), 405);
    let response = reqwest::Client::new()
        .put(format!("http://{agent}/api/v1/otel/trace"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);

    // Unknown content type or encoding: 415.
    let response = post(url.clone(), "text/plain", None, b"hello".to_vec()).await;
    assert_eq!(response.status(), 415);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("application/x-protobuf"));
    let response = post(url.clone(), PROTOBUF, Some("br"), b"hello".to_vec()).await;
    assert_eq!(response.status(), 415);

    // Over the cap, plain and as a decompression bomb: 413.
    let response = post(url.clone(), PROTOBUF, None, vec![0u8; (1 << 20) + 1]).await;
    assert_eq!(response.status(), 413);
    let bomb = gzip(&vec![0u8; 64 << 20]);
    assert!(bomb.len() < 1 << 20, "the bomb itself is under the cap");
    let response = post(url.clone(), PROTOBUF, Some("gzip"), bomb).await;
    assert_eq!(response.status(), 413);
    let status = Status::decode(response.bytes().await.unwrap()).unwrap();
    assert!(
        status.message.contains("after decompression"),
        "{}",
        status.message
    );

    // Empty request: 200.
    let response = post(url.clone(), PROTOBUF, None, Vec::new()).await;
    assert_eq!(protobuf_response(response).await.partial_success, None);
    let response = post(url.clone(), "application/json", None, b"{}".to_vec()).await;
    assert_eq!(response.status(), 200);

    // And the next good request is served and stored.
    let trace_id = unique_trace_id(5);
    let body = request(vec![], vec![server_span(trace_id, [1; 8], "after errors")]).encode_to_vec();
    protobuf_response(post(url, PROTOBUF, None, body).await).await;
    fetch_trace(running.server_query.unwrap(), &hex(&trace_id), 1).await;

    // The failures are counted.
    let metrics = reqwest::get(format!("http://{agent}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains("spanflow_agent_requests_total{transport=\"http\",outcome=\"too_large\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("outcome=\"bad_request\"} 3"), "{metrics}");
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after_and_nothing_is_lost_once_the_server_is_back() {
    // Reserve a port for a server that is not running yet.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server_port = reserved.local_addr().unwrap().port();
    drop(reserved);

    let mut agent_settings = test_settings();
    agent_settings.server_url = Some(format!("http://127.0.0.1:{server_port}"));
    agent_settings.max_queue_bytes = Some(1);
    // In memory only: with a spool the agent would hold far more.
    agent_settings.spool_max_bytes = Some(0);
    let agent = start(Role::Agent, agent_settings).await;
    let url = format!("http://{}/v1/traces", agent.agent_http.unwrap());

    let trace_id = unique_trace_id(6);
    let first = request(
        vec![],
        vec![server_span(
            trace_id,
            [1; 8],
            "kept while the server is down",
        )],
    )
    .encode_to_vec();
    protobuf_response(post(url.clone(), PROTOBUF, None, first).await).await;
    // The queue holds the first payload; the second must be refused with a retryable status.
    let second = request(vec![], vec![server_span(trace_id, [2; 8], "refused")]).encode_to_vec();
    let response = post(url.clone(), PROTOBUF, None, second).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()[RETRY_AFTER], "1");
    let status = Status::decode(response.bytes().await.unwrap()).unwrap();
    assert_eq!(status.code, 14, "UNAVAILABLE");

    // Let the agent fail a few sends, then start the server on the reserved port.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let mut server_settings = test_settings();
    server_settings.ingest_listen = Some(format!("127.0.0.1:{server_port}").parse().unwrap());
    let server = start(Role::Server, server_settings).await;
    let trace = fetch_trace(server.server_query.unwrap(), &hex(&trace_id), 1).await;
    span(&trace, "kept while the server is down");

    let metrics = reqwest::get(format!("http://{}/metrics", agent.agent_http.unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("spanflow_agent_forward_retries_total"),
        "{metrics}"
    );
    agent.stop().await.unwrap();
    server.stop().await.unwrap();
}

#[tokio::test]
async fn health_and_metrics_answer_on_the_agent_and_query_ports() {
    let running = start_up().await;
    for (address, role) in [
        (running.agent_http.unwrap(), "agent"),
        (running.server_query.unwrap(), "server"),
    ] {
        let health: serde_json::Value = reqwest::get(format!("http://{address}/healthz"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(health["status"], "ok");
        assert_eq!(health["role"], role);
        let response = reqwest::get(format!("http://{address}/metrics"))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        assert!(
            text.contains("# TYPE spanflow_agent_spans_accepted_total counter"),
            "{text}"
        );
        assert!(
            text.contains("spanflow_store_spans_evicted_total 0"),
            "{text}"
        );
    }
    running.stop().await.unwrap();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
