//! Bearer tokens on every port: no token, a wrong one, the right one.

use crate::common;

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

/// A certificate authority and a certificate it signed for 127.0.0.1 and localhost, as PEM
/// files in `dir`: (ca, cert, key).
fn certificates(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_reach_a_tls_server_only_when_they_trust_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let server = start(
        Role::Server,
        spanflow_cli::settings::Settings {
            tls_cert_file: Some(cert),
            tls_key_file: Some(key),
            ingest_tokens: secret("agents"),
            ..test_settings()
        },
    )
    .await;
    let ingest = server.server_ingest.unwrap().port();
    let query = server.server_query.unwrap();
    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap())
        .build()
        .unwrap();
    // Plain HTTP to a TLS port gets nowhere.
    assert!(reqwest::get(format!("http://{query}/healthz"))
        .await
        .is_err());
    // Nor does TLS with a certificate the client does not trust.
    assert!(
        reqwest::get(format!("https://localhost:{}/healthz", query.port()))
            .await
            .is_err()
    );
    let health = trusting
        .get(format!("https://localhost:{}/healthz", query.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    let agent_with = |ca_file: Option<std::path::PathBuf>| spanflow_cli::settings::Settings {
        server_url: Some(format!("https://127.0.0.1:{ingest}")),
        server_token: secret("agents"),
        server_ca_file: ca_file,
        spool_max_bytes: Some(0),
        ..test_settings()
    };
    let (trusted_id, body) = one_span(71, "GET /over-tls");
    let agent = start(Role::Agent, agent_with(Some(ca.clone()))).await;
    let url = format!("http://{}/v1/traces", agent.agent_otlp_http.unwrap());
    assert_eq!(post(&url, body, None).await.status(), 200);

    let (untrusted_id, body) = one_span(72, "GET /untrusted");
    let doubting = start(Role::Agent, agent_with(None)).await;
    let url = format!("http://{}/v1/traces", doubting.agent_otlp_http.unwrap());
    assert_eq!(post(&url, body, None).await.status(), 200);

    let trace = |trace_id: String| {
        let trusting = trusting.clone();
        async move {
            trusting
                .get(format!(
                    "https://localhost:{}/api/v1/traces/{trace_id}",
                    query.port()
                ))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while trace(trusted_id.clone()).await != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the trusting agent's span never arrived over TLS"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        trace(untrusted_id).await,
        404,
        "an agent that does not trust the certificate sends nothing"
    );
    let retries = reqwest::get(format!("http://{}/metrics", doubting.agent_http.unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        retries.lines().any(
            |line| line.starts_with("spanflow_agent_forward_retries_total ")
                && !line.ends_with(" 0")
        ),
        "the doubting agent keeps its batch and retries:\n{retries}"
    );
    agent.stop().await.unwrap();
    drop(doubting);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_reads_its_own_spans_and_no_one_elses() {
    let spanflow = start(
        Role::Both,
        spanflow_cli::settings::Settings {
            tenant_tokens: secret("acme=acme-key, globex=globex-key"),
            receiver_tokens: secret("collector"),
            query_tokens: secret("admin"),
            ..test_settings()
        },
    )
    .await;
    let otlp = format!("http://{}/v1/traces", spanflow.agent_otlp_http.unwrap());
    let query = spanflow.server_query.unwrap();
    let send = |token: &'static str, org: Option<&'static str>, seed: u8| {
        let otlp = otlp.clone();
        async move {
            let (trace_id, body) = one_span(seed, "GET /tenant");
            let mut request = reqwest::Client::new()
                .post(&otlp)
                .header("content-type", "application/x-protobuf")
                .bearer_auth(token)
                .body(body);
            if let Some(org) = org {
                request = request.header("x-org-id", org);
            }
            (trace_id, request.send().await.unwrap().status())
        }
    };
    let read = |token: &'static str, org: Option<&'static str>, path: String| async move {
        let mut request = reqwest::Client::new()
            .get(format!("http://{query}{path}"))
            .bearer_auth(token);
        if let Some(org) = org {
            request = request.header("x-org-id", org);
        }
        request.send().await.unwrap().status()
    };

    // A tenant token makes the spans its tenant's, and names no other.
    let (acme_trace, status) = send("acme-key", None, 81).await;
    assert_eq!(status, 200);
    let (_, status) = send("acme-key", Some("globex"), 82).await;
    assert_eq!(status, 403, "a tenant token cannot write as another tenant");
    // A collector's own token names its tenant by header.
    let (globex_trace, status) = send("collector", Some("globex"), 83).await;
    assert_eq!(status, 200);
    let (default_trace, status) = send("collector", None, 84).await;
    assert_eq!(status, 200);
    let (_, status) = send("collector", Some("../etc"), 85).await;
    assert_eq!(status, 400, "an org id is a plain name");

    let trace_path = |trace_id: &str| format!("/api/v1/traces/{trace_id}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while read("acme-key", None, trace_path(&acme_trace)).await != 200
        || read("globex-key", None, trace_path(&globex_trace)).await != 200
        || read("admin", None, trace_path(&default_trace)).await != 200
    {
        assert!(
            std::time::Instant::now() < deadline,
            "each tenant's trace reached its store: {:?}",
            (
                read("acme-key", None, trace_path(&acme_trace)).await,
                read("globex-key", None, trace_path(&globex_trace)).await,
                read("admin", None, trace_path(&default_trace)).await
            )
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // No tenant sees another's spans, by any API.
    assert_eq!(read("acme-key", None, trace_path(&globex_trace)).await, 404);
    assert_eq!(read("globex-key", None, trace_path(&acme_trace)).await, 404);
    assert_eq!(
        read("acme-key", None, trace_path(&default_trace)).await,
        404
    );
    assert_eq!(read("admin", None, trace_path(&acme_trace)).await, 404);
    assert_eq!(
        read("acme-key", Some("globex"), trace_path(&globex_trace)).await,
        403
    );
    assert_eq!(
        read("globex-key", None, format!("/api/traces/{acme_trace}")).await,
        404,
        "Jaeger's API too"
    );
    let sql = |token: &'static str| async move {
        reqwest::Client::new()
            .post(format!("http://{query}/v1/query/"))
            .bearer_auth(token)
            .form(&[("sql", "SELECT count(*) AS n FROM l7_flow_log")])
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()["result"]["values"][0][0]
            .as_u64()
    };
    assert_eq!(sql("acme-key").await, Some(1), "SQL sees one tenant's rows");
    assert_eq!(sql("globex-key").await, Some(1));
    // The admin token reads any tenant by naming it.
    assert_eq!(
        read("admin", Some("acme"), trace_path(&acme_trace)).await,
        200
    );
    assert_eq!(read("nobody", None, trace_path(&acme_trace)).await, 401);
    // Each tenant's spans are on disk apart.
    assert!(spanflow.data_dir.path().join("tenants/acme").is_dir());
    assert!(spanflow.data_dir.path().join("tenants/globex").is_dir());
    spanflow.stop().await.unwrap();
}
