//! An agent given several servers sends to the next when one does not answer.

use crate::common;

use common::*;
use prost::Message;
use spanflow_cli::serve::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_fails_over_to_the_next_server_and_loses_nothing() {
    let first = start(Role::Server, test_settings()).await;
    let second = start(Role::Server, test_settings()).await;
    // A port nothing listens on comes first.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let agent = start(
        Role::Agent,
        spanflow_cli::settings::Settings {
            server_url: Some(format!(
                "http://127.0.0.1:{dead_port}, http://{}, http://{}",
                first.server_ingest.unwrap(),
                second.server_ingest.unwrap()
            )),
            ..test_settings()
        },
    )
    .await;
    let url = format!("http://{}/v1/traces", agent.agent_otlp_http.unwrap());
    let send = |seed: u8| {
        let url = url.clone();
        async move {
            let trace_id = unique_trace_id(seed);
            let body = request(
                vec![string("service.name", "failover")],
                vec![server_span(trace_id, [seed; 8], "GET /failover")],
            )
            .encode_to_vec();
            let response = reqwest::Client::new()
                .post(url)
                .header("content-type", "application/x-protobuf")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            hex::encode(trace_id)
        }
    };
    let early = send(1).await;
    fetch_trace(first.server_query.unwrap(), &early, 1).await;
    // The server the agent settled on stops; the next batch goes to the other.
    first.stop().await.unwrap();
    let late = send(2).await;
    fetch_trace(second.server_query.unwrap(), &late, 1).await;
    agent.stop().await.unwrap();
    second.stop().await.unwrap();
}
