//! Bearer tokens on every port: no token, a wrong one, the right one.

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use spanflow_cli::auth::Secret;
use spanflow_cli::serve::Role;

fn secret(text: &str) -> Option<Secret> {
    Some(Secret::new(text))
}

fn one_span(seed: u8, name: &str) -> (String, Vec<u8>) {
    let trace_id = unique_trace_id(seed);
    let request = request(
        vec![string("service.name", "guarded")],
        vec![server_span(trace_id, [seed; 8], name)],
    );
    (hex::encode(trace_id), request.encode_to_vec())
}

async fn post(url: &str, body: Vec<u8>, token: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-protobuf")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn get(url: &str, token: Option<&str>) -> reqwest::StatusCode {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_port_wants_its_token() {
    let spanflow = start(
        Role::Both,
        spanflow_cli::settings::Settings {
            receiver_tokens: secret("clients-1, clients-2"),
            ingest_tokens: secret("agents"),
            query_tokens: secret("readers"),
            ..test_settings()
        },
    )
    .await;
    let otlp = format!("http://{}/v1/traces", spanflow.agent_otlp_http.unwrap());
    let deepflow = format!("http://{}/api/v1/otel/trace", spanflow.agent_http.unwrap());
    let mut stored = Vec::new();
    for (n, url) in [(1u8, &otlp), (2, &deepflow)] {
        let (trace_id, body) = one_span(n, "GET /guarded");
        let refused = post(url, body.clone(), None).await;
        assert_eq!(refused.status(), 401, "{url}");
        assert_eq!(refused.headers()["www-authenticate"], "Bearer");
        let reason: serde_json::Value = refused.json().await.unwrap();
        assert!(
            reason["error"].as_str().unwrap().contains("Authorization"),
            "{reason}"
        );
        assert_eq!(
            post(url, body.clone(), Some("clients-3")).await.status(),
            401
        );
        assert_eq!(post(url, body, Some("clients-2")).await.status(), 200);
        stored.push(trace_id);
    }

    let grpc = format!("http://{}", spanflow.agent_otlp_grpc.unwrap());
    let mut client = TraceServiceClient::connect(grpc).await.unwrap();
    let (trace_id, body) = one_span(3, "grpc guarded");
    let export =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
            body.as_slice(),
        )
        .unwrap();
    let refused = client
        .export(tonic::Request::new(export.clone()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let mut wrong = tonic::Request::new(export.clone());
    wrong
        .metadata_mut()
        .insert("authorization", "Bearer nope".parse().unwrap());
    assert_eq!(
        client.export(wrong).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    let mut right = tonic::Request::new(export);
    right
        .metadata_mut()
        .insert("authorization", "Bearer clients-1".parse().unwrap());
    client.export(right).await.unwrap();
    stored.push(trace_id);

    // The agent reached its own server with the ingest token; readers need theirs.
    let query = spanflow.server_query.unwrap();
    for trace_id in &stored {
        let url = format!("http://{query}/api/v1/traces/{trace_id}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while get(&url, Some("readers")).await != 200 {
            assert!(
                std::time::Instant::now() < deadline,
                "{trace_id} not stored"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(get(&url, None).await, 401);
        assert_eq!(get(&url, Some("agents")).await, 401);
    }
    assert_eq!(get(&format!("http://{query}/healthz"), None).await, 200);
    assert_eq!(get(&format!("http://{query}/metrics"), None).await, 401);
    let sql = reqwest::Client::new()
        .post(format!("http://{query}/v1/query/"))
        .form(&[("sql", "SELECT count(*) FROM l7_flow_log")])
        .send()
        .await
        .unwrap();
    assert_eq!(sql.status(), 401);

    // The ingest port itself.
    let ingest = format!("http://{}/ingest/v1/batch", spanflow.server_ingest.unwrap());
    assert_eq!(post(&ingest, Vec::new(), None).await.status(), 401);
    assert_eq!(
        post(&ingest, Vec::new(), Some("clients-1")).await.status(),
        401
    );
    spanflow.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_with_a_wrong_server_token_keeps_its_spans_and_the_server_stores_none() {
    let server = start(
        Role::Server,
        spanflow_cli::settings::Settings {
            ingest_tokens: secret("agents"),
            ..test_settings()
        },
    )
    .await;
    let server_url = format!("http://{}", server.server_ingest.unwrap());
    let agent = |token: &str| {
        start(
            Role::Agent,
            spanflow_cli::settings::Settings {
                server_url: Some(server_url.clone()),
                server_token: secret(token),
                ..test_settings()
            },
        )
    };
    let impostor = agent("guess").await;
    let (refused_trace, body) = one_span(4, "never stored");
    let url = format!("http://{}/v1/traces", impostor.agent_otlp_http.unwrap());
    assert_eq!(
        post(&url, body, None).await.status(),
        200,
        "queued by the agent"
    );
    let trusted = agent("agents").await;
    let (trace_id, body) = one_span(5, "stored");
    let url = format!("http://{}/v1/traces", trusted.agent_otlp_http.unwrap());
    assert_eq!(post(&url, body, None).await.status(), 200);
    let query = server.server_query.unwrap();
    fetch_trace(query, &trace_id, 1).await;
    let url = format!("http://{query}/api/v1/traces/{refused_trace}");
    assert_eq!(get(&url, None).await, 404);
    let metrics = reqwest::get(format!("http://{query}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("spanflow_auth_refused_total{port=\"ingest\"}"),
        "{metrics}"
    );
    trusted.stop().await.unwrap();
    server.stop().await.unwrap();
    // The impostor still holds its batch (its server refuses it); stopping gives up after the
    // grace period rather than pretending it was delivered.
    drop(impostor);
}
