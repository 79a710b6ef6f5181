//! spanflow on ClickHouse end to end (Debian's 18.16 in CI): an outage under load, a two-shard
//! cluster, and two servers writing to one ClickHouse.

use crate::common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer, TracerProvider};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use prost::Message;
use reqwest::header::CONTENT_TYPE;
use spanflow_cli::serve::Role;
use spanflow_cli::settings::{Settings, StoreKind};
use spanflow_store_clickhouse::test_server::{TestServer, CLUSTER};

fn clickhouse_settings(urls: &[String], cluster: Option<&str>) -> Settings {
    Settings {
        store: Some(StoreKind::Clickhouse),
        clickhouse_url: Some(urls.join(",")),
        clickhouse_cluster: cluster.map(str::to_string),
        ..test_settings()
    }
}

/// Runs `sql` on the ClickHouse at `url` and returns its answer, trimmed.
async fn clickhouse(url: &str, sql: &str) -> String {
    let response = reqwest::Client::new()
        .post(url)
        .body(sql.to_string())
        .send()
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{sql}: {status} {text}");
    text.trim().to_string()
}

async fn count(url: &str, sql: &str) -> u64 {
    let text = clickhouse(url, sql).await;
    text.parse()
        .unwrap_or_else(|_| panic!("{sql}: `{text}` is not a count"))
}

/// Waits until `sql` counts `expected` (60 s at most) and returns the last count.
async fn wait_for_count(url: &str, sql: &str, expected: u64) -> u64 {
    let started = Instant::now();
    loop {
        let n = count(url, sql).await;
        if n >= expected || started.elapsed() > Duration::from_secs(60) {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends one OTLP/HTTP request of `n_spans` spans of a fresh trace to the agent; the trace
/// id when the agent acknowledged it.
async fn send_trace(
    client: &reqwest::Client,
    url: &str,
    seed: u8,
    n_spans: u8,
    service: &str,
) -> Option<String> {
    let trace_id = unique_trace_id(seed);
    let spans = (1..=n_spans)
        .map(|span| server_span(trace_id, [span; 8], &format!("span {span}")))
        .collect();
    let body = request(vec![string("service.name", service)], spans).encode_to_vec();
    let response = client
        .post(url)
        .header(CONTENT_TYPE, "application/x-protobuf")
        .body(body)
        .send()
        .await
        .ok()?;
    (response.status() == 200).then(|| hex::encode(trace_id))
}

/// Checks through the query API that each trace has exactly `n_spans` distinct spans.
async fn assert_traces_whole(query: SocketAddr, trace_ids: &[String], n_spans: usize) {
    for trace_id in trace_ids {
        let trace = fetch_trace(query, trace_id, n_spans).await;
        let spans = trace["spans"].as_array().unwrap();
        let ids: HashSet<&str> = spans
            .iter()
            .map(|span| span["span_id"].as_str().unwrap())
            .collect();
        assert_eq!(spans.len(), n_spans, "trace {trace_id}: {spans:?}");
        assert_eq!(ids.len(), n_spans, "trace {trace_id}: a span twice");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_down_under_load_loses_no_acknowledged_span_and_stores_none_twice() {
    let mut server = TestServer::start();
    let url = server.url();
    let spanflow = start(
        Role::Both,
        Settings {
            // A small spool, so that the outage reaches the clients as 503s.
            spool_max_bytes: Some(1 << 20),
            ..clickhouse_settings(std::slice::from_ref(&url), None)
        },
    )
    .await;
    let agent = format!("http://{}/v1/traces", spanflow.agent_http.unwrap());

    const SPANS_PER_TRACE: u8 = 10;
    const SENDERS: usize = 4;
    const OUTAGE: Duration = Duration::from_secs(60);
    let stop_at = Instant::now() + OUTAGE + Duration::from_secs(10);
    let senders: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let agent = agent.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut acknowledged = Vec::new();
                let mut refused = 0usize;
                let mut n = 0usize;
                while Instant::now() < stop_at {
                    let seed = ((sender * 64 + n) % 251) as u8;
                    n += 1;
                    match send_trace(&client, &agent, seed, SPANS_PER_TRACE, "outage").await {
                        Some(trace_id) => acknowledged.push(trace_id),
                        None => refused += 1,
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                (acknowledged, refused)
            })
        })
        .collect();

    // ClickHouse goes away for a minute in the middle of the load.
    tokio::time::sleep(Duration::from_secs(4)).await;
    server.kill();
    tokio::time::sleep(OUTAGE).await;
    server.restart();

    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for sender in senders {
        let (sent, not_taken) = sender.await.unwrap();
        acknowledged.extend(sent);
        refused += not_taken;
    }
    assert!(
        refused > 0,
        "the store's outage reached the clients as 503s once the agent's spool was full"
    );
    let expected = acknowledged.len() as u64 * u64::from(SPANS_PER_TRACE);
    assert!(
        acknowledged.len() > 200,
        "only {} requests acknowledged",
        acknowledged.len()
    );
    let distinct = "SELECT count() FROM (SELECT DISTINCT trace_id, span_id \
                    FROM flow_log.l7_flow_log WHERE app_service = 'outage')";
    assert_eq!(
        wait_for_count(&url, distinct, expected).await,
        expected,
        "every acknowledged span reached ClickHouse"
    );
    // Every acknowledged trace whole, by SQL...
    let stored = clickhouse(
        &url,
        "SELECT lower(hex(trace_id)), uniqExact(span_id) FROM flow_log.l7_flow_log \
         WHERE app_service = 'outage' GROUP BY trace_id",
    )
    .await;
    let whole: HashSet<&str> = stored
        .lines()
        .filter_map(|line| line.strip_suffix(&format!("\t{SPANS_PER_TRACE}")))
        .collect();
    for trace_id in &acknowledged {
        assert!(
            whole.contains(trace_id.as_str()),
            "trace {trace_id} not whole"
        );
    }
    // ...and a sample from each phase of the outage through the query API.
    let sample: Vec<String> = acknowledged
        .iter()
        .step_by(acknowledged.len() / 100)
        .cloned()
        .collect();
    assert_traces_whole(
        spanflow.server_query.unwrap(),
        &sample,
        SPANS_PER_TRACE as usize,
    )
    .await;
    // An insert that ClickHouse committed but whose answer the kill cut off was sent again;
    // once parts merge, each span is one row.
    clickhouse(&url, "OPTIMIZE TABLE flow_log.l7_flow_log FINAL").await;
    assert_eq!(
        count(&url, "SELECT count() FROM flow_log.l7_flow_log").await,
        expected,
        "no span stored twice"
    );
    let metrics = reqwest::get(format!("http://{}/metrics", spanflow.server_query.unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let failures = metrics
        .lines()
        .find_map(|line| line.strip_prefix("spanflow_clickhouse_insert_failures_total "))
        .and_then(|value| value.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(
        failures > 0.0,
        "the outage shows in the metrics:\n{metrics}"
    );
    assert!(
        metrics.lines().any(|line| line
            .starts_with("spanflow_server_batches_total{outcome=\"store_error\"}")
            && !line.ends_with(" 0")),
        "the server told the agent to wait:\n{metrics}"
    );
    spanflow.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_shard_cluster_keeps_each_trace_on_one_shard() {
    let shards = TestServer::cluster(2);
    let urls: Vec<String> = shards.iter().map(TestServer::url).collect();
    let spanflow = start(Role::Both, clickhouse_settings(&urls, Some(CLUSTER))).await;
    let agent = format!("http://{}/v1/traces", spanflow.agent_http.unwrap());
    let client = reqwest::Client::new();

    const TRACES: usize = 200;
    const SPANS_PER_TRACE: u8 = 5;
    let mut trace_ids = Vec::new();
    for n in 0..TRACES {
        let trace_id = send_trace(&client, &agent, (n % 251) as u8, SPANS_PER_TRACE, "sharded")
            .await
            .expect("the agent acknowledges");
        trace_ids.push(trace_id);
    }
    assert_traces_whole(
        spanflow.server_query.unwrap(),
        &trace_ids,
        SPANS_PER_TRACE as usize,
    )
    .await;

    // Each shard holds whole traces, their index rows beside them, and together all of them.
    let mut seen = HashSet::new();
    for url in &urls {
        let spans = clickhouse(
            url,
            "SELECT lower(hex(trace_id)) AS t, count() FROM flow_log.l7_flow_log_local \
             GROUP BY t ORDER BY t",
        )
        .await;
        let indexed = clickhouse(
            url,
            "SELECT DISTINCT lower(hex(trace_id)) AS t FROM flow_log.l7_trace_index_local \
             ORDER BY t",
        )
        .await;
        let mut here = Vec::new();
        for line in spans.lines() {
            let (trace_id, n) = line.split_once('\t').unwrap();
            assert_eq!(
                n,
                SPANS_PER_TRACE.to_string(),
                "trace {trace_id} split on {url}"
            );
            assert!(
                seen.insert(trace_id.to_string()),
                "trace {trace_id} on two shards"
            );
            here.push(trace_id);
        }
        assert!(!here.is_empty(), "shard {url} holds no trace");
        assert_eq!(
            indexed.lines().collect::<Vec<_>>(),
            here,
            "index rows beside their spans on {url}"
        );
    }
    let expected: HashSet<String> = trace_ids.into_iter().collect();
    assert_eq!(seen, expected);
    spanflow.stop().await.unwrap();
}

/// Sends `traces` two-span traces through the Rust SDK to the agent at `endpoint`.
fn send_with_sdk(endpoint: String, service: &'static str, traces: usize) -> Vec<String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .build()
        .expect("an OTLP/HTTP exporter");
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service).build())
        .build();
    let tracer = provider.tracer("two-servers");
    let mut trace_ids = Vec::new();
    for _ in 0..traces {
        tracer.in_span("GET /checkout", |context| {
            trace_ids.push(context.span().span_context().trace_id().to_string());
            let _child = tracer
                .span_builder("SELECT orders")
                .with_kind(SpanKind::Client)
                .start_with_context(&tracer, &context);
        });
    }
    provider.force_flush().expect("spans flushed");
    provider.shutdown().expect("provider shut down");
    trace_ids
}

/// `spanflow server --store clickhouse` as a process of its own; killed when dropped.
struct ServerProcess {
    child: std::process::Child,
    ingest: SocketAddr,
    query: SocketAddr,
}

impl ServerProcess {
    /// Starts a server on free ports; when another process takes a port between its choice
    /// and the server's bind (tests run side by side), the server exits and is started again
    /// on others.
    async fn start(clickhouse_url: &str) -> ServerProcess {
        for _ in 0..5 {
            let ingest: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let query: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_spanflow"))
                .args([
                    "server",
                    "--store",
                    "clickhouse",
                    "--clickhouse-url",
                    clickhouse_url,
                ])
                .args(["--ingest-listen", &ingest.to_string()])
                .args(["--query-listen", &query.to_string(), "--log", "warn"])
                .spawn()
                .expect("spanflow server starts");
            let started = Instant::now();
            loop {
                if child.try_wait().expect("the server's status").is_some() {
                    break;
                }
                if reqwest::get(format!("http://{query}/healthz"))
                    .await
                    .is_ok()
                {
                    return ServerProcess {
                        child,
                        ingest,
                        query,
                    };
                }
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "server not healthy"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("the server exited at each of five starts");
    }

    async fn metric(&self, name: &str) -> f64 {
        let metrics = reqwest::get(format!("http://{}/metrics", self.query))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in\n{metrics}"))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_write_to_one_clickhouse_without_loss_or_duplicates() {
    let clickhouse_server = TestServer::start();
    let url = clickhouse_server.url();
    let servers = [
        ServerProcess::start(&url).await,
        ServerProcess::start(&url).await,
    ];
    let mut agents = Vec::new();
    for server in &servers {
        let mut settings = test_settings();
        settings.server_url = Some(format!("http://{}", server.ingest));
        agents.push(start(Role::Agent, settings).await);
    }

    const TRACES: usize = 500;
    let senders: Vec<_> = agents
        .iter()
        .zip(["west", "east"])
        .map(|(agent, service)| {
            let endpoint = format!("http://{}/v1/traces", agent.agent_otlp_http.unwrap());
            tokio::task::spawn_blocking(move || send_with_sdk(endpoint, service, TRACES))
        })
        .collect();
    let mut trace_ids = Vec::new();
    for sender in senders {
        trace_ids.extend(sender.await.unwrap());
    }
    assert_eq!(trace_ids.len(), 2 * TRACES);

    let expected = trace_ids.len() as u64 * 2;
    let all = "SELECT count() FROM flow_log.l7_flow_log";
    assert_eq!(wait_for_count(&url, all, expected).await, expected);
    assert_eq!(
        count(
            &url,
            "SELECT count() FROM (SELECT DISTINCT trace_id, span_id FROM flow_log.l7_flow_log)"
        )
        .await,
        expected,
        "no span twice"
    );
    for server in &servers {
        // Each server wrote its agent's spans...
        assert_eq!(
            server
                .metric("spanflow_clickhouse_rows_inserted_total")
                .await,
            2.0 * TRACES as f64
        );
        // ...and reads what the other wrote.
        assert_traces_whole(server.query, &trace_ids[..20], 2).await;
        assert_traces_whole(server.query, &trace_ids[TRACES..TRACES + 20], 2).await;
    }
    for agent in agents {
        agent.stop().await.unwrap();
    }
}

/// The load generator's probe ends with its run on ClickHouse too, where each probe waits
/// about a second for its insert: behind its schedule, it sends the next at once instead of
/// once for every interval it missed (which kept a three-second run probing for half a minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generators_probe_ends_with_its_run_on_a_store_slow_to_acknowledge() {
    let clickhouse_server = TestServer::start();
    let spanflow = start(
        Role::Server,
        clickhouse_settings(&[clickhouse_server.url()], None),
    )
    .await;
    let run = Duration::from_secs(3);
    let config = spanflow_loadgen::Config {
        endpoint: format!("http://{}/ingest/v1/batch", spanflow.server_ingest.unwrap()),
        protocol: spanflow_loadgen::Protocol::Batch,
        connections: 1,
        rate: Some(200.0),
        duration: run,
        distinct_requests: 20,
        probe: Some(format!("http://{}", spanflow.server_query.unwrap())),
        probe_interval: Duration::from_millis(100),
        ..Default::default()
    };
    let started = Instant::now();
    let report = spanflow_loadgen::run(config).await.unwrap();
    let took = started.elapsed();
    let queryable = report.queryable.expect("a probe ran");
    assert!(
        took < run + Duration::from_secs(4),
        "the run took {took:?}, its probes {}",
        queryable.probes
    );
    assert!(
        (1..=6).contains(&queryable.probes),
        "{} probes in {run:?}, each acknowledged about a second after it was sent",
        queryable.probes
    );
    assert_eq!(queryable.not_found, 0);
}
