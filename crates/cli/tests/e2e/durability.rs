//! Durability end to end: the server process is killed with SIGKILL while spans stream in
//! through the agent, restarted, and every span the agent acknowledged to its client is there
//! exactly once; a clean restart keeps everything too.

use crate::common;

use std::process::{Child, Command};
use std::time::Duration;

use common::*;
use prost::Message;
use reqwest::header::CONTENT_TYPE;
use spanflow_cli::serve::Role;

/// `spanflow server` as a child process, on the given ports and data directory.
fn spawn_server(ingest: u16, query: u16, data_dir: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_spanflow"))
        .args([
            "server",
            "--ingest-listen",
            &format!("127.0.0.1:{ingest}"),
            "--query-listen",
            &format!("127.0.0.1:{query}"),
        ])
        .arg("--data-dir")
        .arg(data_dir)
        // Small files and frequent flushes, so the kill lands amid WAL appends, flushes and trims.
        .args([
            "--flush-rows",
            "500",
            "--store-flush-interval-ms",
            "200",
            "--log",
            "warn",
        ])
        .spawn()
        .expect("spanflow server starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_while_ingesting_loses_no_acknowledged_span_and_duplicates_none() {
    let data_dir = tempfile::tempdir().unwrap();
    let (ingest, query) = (free_port(), free_port());
    let mut server = spawn_server(ingest, query, data_dir.path());
    wait_healthy(query).await;

    let mut agent_settings = test_settings();
    agent_settings.server_url = Some(format!("http://127.0.0.1:{ingest}"));
    let agent = start(Role::Agent, agent_settings).await;
    let url = format!("http://{}/v1/traces", agent.agent_http.unwrap());
    let client = reqwest::Client::new();

    const N_REQUESTS: usize = 400;
    const SPANS_PER_TRACE: u8 = 10;
    let mut acknowledged = Vec::new();
    for n in 0..N_REQUESTS {
        if n == N_REQUESTS / 2 {
            server.kill().expect("SIGKILL the server");
            server.wait().unwrap();
            server = spawn_server(ingest, query, data_dir.path());
        }
        let trace_id = unique_trace_id((n % 251) as u8);
        let spans = (1..=SPANS_PER_TRACE)
            .map(|span| server_span(trace_id, [span; 8], &format!("span {span}")))
            .collect();
        let body = request(vec![string("service.name", "crash-test")], spans).encode_to_vec();
        let response = client
            .post(&url)
            .header(CONTENT_TYPE, "application/x-protobuf")
            .body(body)
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            acknowledged.push(hex::encode(trace_id));
        }
        if n % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert_eq!(
        acknowledged.len(),
        N_REQUESTS,
        "the agent acknowledged every request"
    );
    wait_healthy(query).await;
    for trace_id in &acknowledged {
        let trace = fetch_trace(
            format!("127.0.0.1:{query}").parse().unwrap(),
            trace_id,
            SPANS_PER_TRACE as usize,
        )
        .await;
        let mut span_ids: Vec<&str> = trace["spans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|span| span["span_id"].as_str().unwrap())
            .collect();
        span_ids.sort();
        span_ids.dedup();
        assert_eq!(
            span_ids.len(),
            SPANS_PER_TRACE as usize,
            "trace {trace_id}: every span exactly once"
        );
    }
    agent.stop().await.unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
}

#[tokio::test]
async fn a_clean_restart_keeps_every_span() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings();
    settings.data_dir = Some(data_dir.path().to_path_buf());
    let running = start(Role::Both, settings.clone()).await;
    let url = format!("http://{}/v1/traces", running.agent_http.unwrap());
    let mut trace_ids = Vec::new();
    for n in 0..20u8 {
        let trace_id = unique_trace_id(n);
        let body = request(
            vec![],
            vec![
                server_span(trace_id, [1; 8], "a"),
                server_span(trace_id, [2; 8], "b"),
            ],
        )
        .encode_to_vec();
        let response = reqwest::Client::new()
            .post(&url)
            .header(CONTENT_TYPE, "application/x-protobuf")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        trace_ids.push(hex::encode(trace_id));
    }
    for trace_id in &trace_ids {
        fetch_trace(running.server_query.unwrap(), trace_id, 2).await;
    }
    running.stop().await.unwrap();

    let running = start(Role::Both, settings).await;
    for trace_id in &trace_ids {
        fetch_trace(running.server_query.unwrap(), trace_id, 2).await;
    }
    running.stop().await.unwrap();
}
