//! The agent's spool end to end, with real processes: while no server answers, an agent keeps
//! accepting until its spool is full and then answers 503 with Retry-After; killed with
//! SIGKILL and started again, then stopped with SIGTERM, it loses nothing; once a server is
//! there, every span it acknowledged is stored exactly once.

use crate::common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;
use prost::Message;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};

/// A child process, killed if the test ends early.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Process {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Process {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

struct AgentPorts {
    http: u16,
    otlp_http: u16,
    grpc: u16,
}

fn spawn_agent(ports: &AgentPorts, server_ingest: u16, data_dir: &Path) -> Process {
    Process(
        Command::new(env!("CARGO_BIN_EXE_spanflow"))
            .arg("agent")
            .args(["--agent-http-listen", &format!("127.0.0.1:{}", ports.http)])
            .args([
                "--agent-otlp-http-listen",
                &format!("127.0.0.1:{}", ports.otlp_http),
            ])
            .args([
                "--agent-otlp-grpc-listen",
                &format!("127.0.0.1:{}", ports.grpc),
            ])
            .args(["--server-url", &format!("http://127.0.0.1:{server_ingest}")])
            .arg("--data-dir")
            .arg(data_dir)
            // Memory holds a fraction of what the spool holds.
            .args(["--max-queue-bytes", "32768", "--spool-max-bytes", "400000"])
            .args(["--flush-interval-ms", "20", "--log", "warn"])
            .spawn()
            .expect("spanflow agent starts"),
    )
}

fn spawn_server(ingest: u16, query: u16, data_dir: &Path) -> Process {
    Process(
        Command::new(env!("CARGO_BIN_EXE_spanflow"))
            .arg("server")
            .args(["--ingest-listen", &format!("127.0.0.1:{ingest}")])
            .args(["--query-listen", &format!("127.0.0.1:{query}")])
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--log", "warn"])
            .spawn()
            .expect("spanflow server starts"),
    )
}

async fn metric(port: u16, name: &str) -> f64 {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in the metrics"))
}

const SPANS_PER_TRACE: u8 = 10;

/// Sends one trace of ten spans; its id if the agent acknowledged it, None if it was told to
/// retry later (with a Retry-After).
async fn send(client: &reqwest::Client, port: u16, n: usize) -> Option<String> {
    let trace_id = unique_trace_id((n % 251) as u8);
    let spans = (1..=SPANS_PER_TRACE)
        .map(|span| {
            let mut span = server_span(trace_id, [span; 8], &format!("span {span}"));
            // Some weight, so that the spool fills in a few hundred requests.
            span.attributes
                .push(string("payload", &"x".repeat(200 + n % 7)));
            span
        })
        .collect();
    let body = request(vec![string("service.name", "spooled")], spans).encode_to_vec();
    let response = client
        .post(format!("http://127.0.0.1:{port}/v1/traces"))
        .header(CONTENT_TYPE, "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    match response.status().as_u16() {
        200 => Some(hex::encode(trace_id)),
        503 | 429 => {
            assert!(
                response.headers().contains_key(RETRY_AFTER),
                "a throttled client is told when to retry"
            );
            None
        }
        status => panic!(
            "unexpected status {status}: {}",
            response.text().await.unwrap()
        ),
    }
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A line of `/proc/<pid>/<file>` as its number (`THP_enabled:\t0`, `AnonHugePages:  0 kB`).
fn proc_figure(pid: u32, file: &str, name: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap();
    let line = text
        .lines()
        .find(|line| line.starts_with(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/{file}:\n{text}"));
    line[name.len() + 1..]
        .trim()
        .trim_end_matches(" kB")
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_and_server_map_no_huge_pages_from_their_start() {
    // mimalloc asks for transparent huge pages for its arenas; an agent that turned them off
    // only in `main` still held 6 MiB of them, mapped before, and 4 MiB more resident at rest.
    let (agent_dir, server_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ports = AgentPorts {
        http: free_port(),
        otlp_http: free_port(),
        grpc: free_port(),
    };
    let (ingest, query) = (free_port(), free_port());
    let server = spawn_server(ingest, query, server_dir.path());
    let agent = spawn_agent(&ports, ingest, agent_dir.path());
    wait_healthy(query).await;
    wait_healthy(ports.http).await;
    let client = reqwest::Client::new();
    let mut trace_ids = Vec::new();
    for n in 0..20 {
        trace_ids.push(send(&client, ports.otlp_http, n).await.unwrap());
    }
    for trace_id in &trace_ids {
        fetch_trace(
            std::net::SocketAddr::from(([127, 0, 0, 1], query)),
            trace_id,
            SPANS_PER_TRACE.into(),
        )
        .await;
    }
    for (name, pid) in [("agent", agent.id()), ("server", server.id())] {
        assert_eq!(proc_figure(pid, "status", "THP_enabled"), 0, "{name}");
        assert_eq!(
            proc_figure(pid, "smaps_rollup", "AnonHugePages"),
            0,
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_a_server_spools_until_full_and_loses_nothing_to_kills_and_restarts() {
    let agent_dir = tempfile::tempdir().unwrap();
    let server_dir = tempfile::tempdir().unwrap();
    let ports = AgentPorts {
        http: free_port(),
        otlp_http: free_port(),
        grpc: free_port(),
    };
    // No server listens here yet.
    let (ingest, query) = (free_port(), free_port());
    let client = reqwest::Client::new();

    // 1. No server: the agent accepts until its spool is full, then pushes back.
    let mut agent = spawn_agent(&ports, ingest, agent_dir.path());
    wait_healthy(ports.http).await;
    let mut acknowledged = Vec::new();
    let mut n = 0;
    let mut throttled = 0;
    while throttled < 3 {
        assert!(n < 5_000, "the spool never filled");
        match send(&client, ports.otlp_http, n).await {
            Some(trace_id) => acknowledged.push(trace_id),
            None => throttled += 1,
        }
        n += 1;
    }
    let spooled = metric(ports.http, "spanflow_agent_spool_bytes").await;
    assert!(
        spooled > 300_000.0,
        "the spool holds far more than memory ({spooled} bytes)"
    );
    assert!(
        metric(ports.http, "spanflow_agent_queue_bytes").await <= 32768.0,
        "memory stays within its bound"
    );
    let first_phase = acknowledged.len();
    assert!(first_phase > 50, "only {first_phase} requests acknowledged");

    // 2. Killed with a full spool and started again: still full, nothing lost.
    agent.kill().expect("SIGKILL the agent");
    agent.wait().unwrap();
    let mut agent = spawn_agent(&ports, ingest, agent_dir.path());
    wait_healthy(ports.http).await;
    // The request refused last, byte for byte: requests differ in size, and a smaller one
    // could still fit in what the spool has left.
    assert!(
        send(&client, ports.otlp_http, n - 1).await.is_none(),
        "the spool is still full after the restart"
    );
    assert!(metric(ports.http, "spanflow_agent_spool_recovered_payloads_total").await > 0.0);

    // 3. A clean stop (SIGTERM) with no server: the process exits, the spool stays.
    sigterm(&agent);
    let stopped = Instant::now();
    let status = agent.wait().unwrap();
    assert!(status.success(), "SIGTERM is a clean exit: {status}");
    assert!(stopped.elapsed() < Duration::from_secs(30));

    // 4. A server at last: every acknowledged span arrives, exactly once.
    let mut server = spawn_server(ingest, query, server_dir.path());
    wait_healthy(query).await;
    let mut agent = spawn_agent(&ports, ingest, agent_dir.path());
    wait_healthy(ports.http).await;
    // Room again once the spool drains.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(trace_id) = send(&client, ports.otlp_http, n).await {
            acknowledged.push(trace_id);
            break;
        }
        assert!(Instant::now() < deadline, "the spool never drained");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let query_addr = format!("127.0.0.1:{query}").parse().unwrap();
    for trace_id in &acknowledged {
        let trace = fetch_trace(query_addr, trace_id, SPANS_PER_TRACE as usize).await;
        let mut span_ids: Vec<&str> = trace["spans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|span| span["span_id"].as_str().unwrap())
            .collect();
        span_ids.sort();
        span_ids.dedup();
        assert_eq!(span_ids.len(), SPANS_PER_TRACE as usize, "trace {trace_id}");
    }
    // Counted as rows, so a payload delivered twice would show.
    let counted: serde_json::Value = client
        .post(format!("http://127.0.0.1:{query}/v1/query/"))
        .form(&[(
            "sql",
            "SELECT count(*) AS n FROM l7_flow_log WHERE app_service = 'spooled'",
        )])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        counted["result"]["values"][0][0].as_u64(),
        Some(acknowledged.len() as u64 * u64::from(SPANS_PER_TRACE)),
        "every acknowledged span stored once: {counted}"
    );
    assert_eq!(metric(ports.http, "spanflow_agent_spool_bytes").await, 0.0);

    sigterm(&agent);
    assert!(agent.wait().unwrap().success());
    server.kill().unwrap();
    server.wait().unwrap();
}
