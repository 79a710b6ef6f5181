//! A load run of the embedded store: writes a realistic corpus of span rows through the
//! `SpanStore` write path (WAL with fsync, buffer, Parquet flushes), then measures bytes on disk
//! per span, ingest rows/s, and trace-by-id and search latency over what was stored.
//!
//! `cargo bench -p spanflow-store-embedded --bench store_load -- [--spans N] [--batch N] [--dir PATH] [--reopen]`
//!
//! `--reopen` skips the writes and measures lookups and searches over the store an earlier run
//! left in `--dir`.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use spanflow_loadgen::corpus::{Random, SERVICES};
use spanflow_model::{
    AttrValue, Attribute, L7Protocol, ObservationPoint, ResourceTags, ResponseStatus, SpanId,
    SpanKind, SpanRow, TraceId,
};
use spanflow_store::{AttributeFilter, SpanQuery, SpanStore};
use spanflow_store_embedded::{EmbeddedConfig, EmbeddedStore};

/// The allocator the `spanflow` binary runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Each service runs this many pods, with fixed names, nodes and addresses, as in a cluster.
const PODS_PER_SERVICE: u64 = 3;

struct Pod {
    name: String,
    node: String,
    ip: IpAddr,
}

impl Pod {
    fn of(service: usize, replica: usize) -> Pod {
        Pod {
            name: format!(
                "{}-7d9f8b{}-{:05x}",
                SERVICES[service],
                service % 10,
                (service * 7919 + replica * 104_729) % 0xfffff
            ),
            node: format!("node-{}", (service + replica) % 6),
            ip: IpAddr::V4(Ipv4Addr::new(10, 0, service as u8, 10 + replica as u8)),
        }
    }
}

fn string(key: &str, value: impl Into<String>) -> Attribute {
    Attribute::new(key, AttrValue::String(value.into()))
}

/// One trace of 4 to 12 spans across services: HTTP, gRPC, database and messaging calls, each
/// span with about 10 attributes and its resource with about 10 more.
fn trace(random: &mut Random, start_us: i64, out: &mut Vec<SpanRow>) {
    let trace_id =
        TraceId(((random.next_u64() as u128) << 64 | random.next_u64() as u128).to_be_bytes());
    let n_spans = 4 + random.below(9) as usize;
    let mut parent: Option<SpanId> = None;
    for index in 0..n_spans {
        let span_id = SpanId(random.next_u64().max(1).to_be_bytes());
        let service = SERVICES[random.below(SERVICES.len() as u64) as usize];
        let kind_pick = random.below(4);
        let service_index = SERVICES.iter().position(|name| *name == service).unwrap();
        let pod = Pod::of(service_index, random.below(PODS_PER_SERVICE) as usize);
        let peer = Pod::of(
            random.below(SERVICES.len() as u64) as usize,
            random.below(PODS_PER_SERVICE) as usize,
        );
        let (pod_ip, node) = (pod.ip, pod.node.clone());
        let pod = pod.name;
        let duration = 200 + random.below(50_000) * (1 + random.below(4));
        let start = start_us + index as i64 * 150 + random.below(100) as i64;
        let (kind, protocol, endpoint, request_type, resource, mut attributes) = match kind_pick {
            0 => {
                let route = format!(
                    "/api/{service}/{}",
                    ["list", "get", "update", "search"][random.below(4) as usize]
                );
                (
                    SpanKind::Server,
                    L7Protocol::Http1,
                    format!("GET {route}"),
                    "GET".to_string(),
                    route.clone(),
                    vec![
                        string("http.request.method", "GET"),
                        string("url.path", route.clone()),
                        string("url.scheme", "http"),
                        string("http.route", route),
                        Attribute::new("http.response.status_code", AttrValue::Int(200)),
                        string("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64)"),
                        string("client.address", peer.ip.to_string()),
                    ],
                )
            }
            1 => {
                let method =
                    ["GetProduct", "ListProducts", "Charge", "Convert"][random.below(4) as usize];
                (
                    SpanKind::Client,
                    L7Protocol::Grpc,
                    format!("oteldemo.{service}/{method}"),
                    method.to_string(),
                    format!("oteldemo.{service}/{method}"),
                    vec![
                        string("rpc.system", "grpc"),
                        string("rpc.service", format!("oteldemo.{service}")),
                        string("rpc.method", method),
                        Attribute::new("rpc.grpc.status_code", AttrValue::Int(0)),
                        string("server.address", format!("{service}.shop.svc")),
                        Attribute::new("server.port", AttrValue::Int(8080)),
                        string("network.peer.address", peer.ip.to_string()),
                    ],
                )
            }
            2 => {
                let table = ["orders", "carts", "products", "users"][random.below(4) as usize];
                let statement = format!("SELECT * FROM {table} WHERE id = $1");
                (
                    SpanKind::Client,
                    L7Protocol::PostgreSql,
                    format!("SELECT {table}"),
                    "SELECT".to_string(),
                    statement.clone(),
                    vec![
                        string("db.system.name", "postgresql"),
                        string("db.namespace", "shop"),
                        string("db.operation.name", "SELECT"),
                        string("db.query.text", statement),
                        string("db.collection.name", table),
                        string("server.address", "postgres.shop.svc"),
                        Attribute::new("server.port", AttrValue::Int(5432)),
                    ],
                )
            }
            _ => {
                let topic = ["orders", "payments", "emails"][random.below(3) as usize];
                (
                    SpanKind::Producer,
                    L7Protocol::Kafka,
                    format!("{topic} publish"),
                    "publish".to_string(),
                    topic.to_string(),
                    vec![
                        string("messaging.system", "kafka"),
                        string("messaging.destination.name", topic),
                        string("messaging.operation.type", "publish"),
                        Attribute::new(
                            "messaging.kafka.message.offset",
                            AttrValue::Int(random.below(1_000_000) as i64),
                        ),
                        string("messaging.client.id", format!("{service}-producer")),
                        string("server.address", "kafka.shop.svc"),
                        Attribute::new("server.port", AttrValue::Int(9092)),
                    ],
                )
            }
        };
        attributes.push(string(
            "thread.name",
            format!("worker-{}", random.below(16)),
        ));
        attributes.push(Attribute::new(
            "code.lineno",
            AttrValue::Int(random.below(2000) as i64),
        ));
        attributes.push(string(
            "code.function",
            format!("handle_{}", random.below(40)),
        ));
        let resource_attributes = vec![
            string("service.name", service),
            string("service.version", "2.0.1"),
            string("service.instance.id", pod.clone()),
            string("service.namespace", "shop"),
            string("k8s.namespace.name", "shop"),
            string("k8s.pod.name", pod.clone()),
            string("k8s.node.name", node.clone()),
            string("k8s.deployment.name", service),
            string("telemetry.sdk.language", "go"),
            string("telemetry.sdk.version", "1.38.0"),
            string("app.host.ip", pod_ip.to_string()),
        ];
        let error = random.below(50) == 0;
        out.push(SpanRow {
            time: (start + duration as i64) / 1_000_000,
            start_time: start,
            end_time: start + duration as i64,
            trace_id,
            span_id,
            parent_span_id: parent,
            span_kind: kind,
            observation_point: kind.observation_point(),
            endpoint,
            app_service: service.to_string(),
            app_instance: pod.clone(),
            signal_source: spanflow_model::SIGNAL_SOURCE_OTEL,
            agent_id: node.clone(),
            l7_protocol: protocol,
            l7_protocol_str: protocol.as_str().to_ascii_lowercase(),
            protocol: 6,
            request_type,
            request_domain: format!("{service}.shop.svc"),
            request_resource: resource,
            response_code: Some(if error { 500 } else { 200 }),
            response_status: if error {
                ResponseStatus::ServerError
            } else {
                ResponseStatus::Ok
            },
            status_code: if error { 2 } else { 0 },
            response_duration: duration,
            // The client's address first, as DeepFlow orders the two ends.
            ip_0: Some(if kind == SpanKind::Server {
                peer.ip
            } else {
                pod_ip
            }),
            ip_1: Some(if kind == SpanKind::Server {
                pod_ip
            } else {
                peer.ip
            }),
            server_port: 8080,
            scope_name: "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp".into(),
            scope_version: "0.63.0".into(),
            resource: ResourceTags {
                k8s_namespace_name: "shop".into(),
                k8s_pod_name: pod,
                k8s_node_name: node,
                k8s_workload_kind: "deployment".into(),
                k8s_workload_name: service.into(),
                service_namespace: "shop".into(),
                service_version: "2.0.1".into(),
                ..ResourceTags::default()
            }
            .into(),
            attributes,
            resource_attributes: resource_attributes.into(),
            ..SpanRow::default()
        });
        if kind == SpanKind::Server || parent.is_none() {
            parent = Some(span_id);
        }
    }
    let _ = ObservationPoint::App;
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut n_spans, mut batch, mut dir) =
        (1_000_000usize, 10_000usize, None::<std::path::PathBuf>);
    let mut lookup_rounds = 1usize;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--spans" => {
                n_spans = args
                    .next()
                    .and_then(|value| value.parse().ok())
                    .expect("--spans N")
            }
            "--batch" => {
                batch = args
                    .next()
                    .and_then(|value| value.parse().ok())
                    .expect("--batch N")
            }
            "--dir" => dir = args.next().map(Into::into),
            // Only the lookups and searches, over what an earlier run left in --dir.
            "--reopen" => n_spans = 0,
            // Repeats the lookups, for a profiler to watch.
            "--lookup-rounds" => {
                lookup_rounds = args
                    .next()
                    .and_then(|value| value.parse().ok())
                    .expect("--lookup-rounds N")
            }
            "--bench" => {}
            _ => {}
        }
    }
    let temporary = tempfile::tempdir().unwrap();
    let dir = dir.unwrap_or_else(|| temporary.path().to_path_buf());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = EmbeddedStore::open(EmbeddedConfig {
            upkeep_interval: Duration::from_secs(1),
            ..EmbeddedConfig::new(&dir)
        })
        .await
        .unwrap();
        let mut random = Random::new(42);
        let now_us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64;
        let mut sample_traces = Vec::new();
        let mut generated = Vec::with_capacity(batch + 16);
        let mut written = 0usize;
        let mut generate_time = Duration::ZERO;
        let mut write_time = Duration::ZERO;
        let mut n_refused = 0usize;
        let cpu_before = cpu_seconds();
        while written < n_spans {
            let started = Instant::now();
            generated.clear();
            while generated.len() < batch {
                // Spread over the last 6 hours, so several partitions fill.
                let start = now_us - 6 * 3_600_000_000 + (written + generated.len()) as i64 * (6 * 3_600_000_000 / n_spans.max(1) as i64);
                trace(&mut random, start, &mut generated);
            }
            if sample_traces.len() < 1000 && random.below(5) == 0 {
                sample_traces.push(generated[0].trace_id);
            }
            // A copy to send again if the write is refused, made outside the timed write.
            let mut copies = vec![generated.clone()];
            generate_time += started.elapsed();
            let started = Instant::now();
            written += generated.len();
            let mut batch_rows = std::mem::take(&mut generated);
            // Refused writes are retried, as the server's agents do.
            loop {
                let spare = copies.pop().unwrap_or_else(|| batch_rows.clone());
                match store.write(std::mem::replace(&mut batch_rows, spare)).await {
                    Ok(()) => break,
                    Err(error) if error.kind == spanflow_store::ErrorKind::Retryable => {
                        n_refused += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(error) => panic!("write failed: {error}"),
                }
            }
            write_time += started.elapsed();
            generated = Vec::with_capacity(batch + 16);
        }
        let started = Instant::now();
        store.flush().await.unwrap();
        store.upkeep_now().await.unwrap();
        let flush_time = started.elapsed();
        let cpu = cpu_seconds() - cpu_before;
        let files = store.files();
        let file_bytes: u64 = files.iter().map(|file| file.n_bytes).sum();
        let file_rows: u64 = files.iter().map(|file| file.n_rows).sum();
        println!("spans written        {written}");
        println!("files                {} ({} rows)", files.len(), file_rows);
        println!("bytes per span       {:.1}", file_bytes as f64 / file_rows as f64);
        println!("write wall time      {:.2} s ({:.0} spans/s, excluding generation)", write_time.as_secs_f64(), written as f64 / write_time.as_secs_f64());
        println!("final flush+compact  {:.2} s", flush_time.as_secs_f64());
        println!("writes refused       {n_refused} (buffer full; retried)");
        println!("process CPU          {:.2} s ({:.2} CPU-s per million spans, including generation {:.2} s)", cpu, cpu / written as f64 * 1e6, generate_time.as_secs_f64());

        if sample_traces.is_empty() {
            // Traces from all over the stored six hours.
            for step in 0..200i64 {
                let start = now_us - 6 * 3_600_000_000 + step * 108_000_000;
                let window = SpanQuery { start_time_min_us: Some(start), start_time_max_us: Some(start + 60_000_000), limit: 1, ..SpanQuery::default() };
                sample_traces.extend(store.search(&window).await.unwrap().iter().map(|row| row.trace_id));
            }
        }
        let mut latencies = Vec::new();
        for trace_id in std::iter::repeat_n(&sample_traces, lookup_rounds).flatten() {
            let started = Instant::now();
            let rows = store.trace(*trace_id).await.unwrap();
            latencies.push(started.elapsed());
            assert!(!rows.is_empty());
        }
        latencies.sort();
        println!("trace by id          p50 {:?} p99 {:?} max {:?} ({} lookups)", percentile(&latencies, 0.5), percentile(&latencies, 0.99), latencies.last().unwrap(), latencies.len());
        println!("lookup cache         {:.1} MiB of file footers", store.lookup_cache_bytes() as f64 / (1 << 20) as f64);

        let searches = [
            ("service", SpanQuery { service: Some("checkout".into()), limit: 20, ..SpanQuery::default() }),
            ("service+operation", SpanQuery { service: Some("payments".into()), operation: Some("SELECT orders".into()), limit: 20, ..SpanQuery::default() }),
            ("duration", SpanQuery { min_duration_us: Some(150_000), limit: 20, ..SpanQuery::default() }),
            ("attribute", SpanQuery { attributes: vec![AttributeFilter { key: "messaging.destination.name".into(), value: "emails".into() }], limit: 20, ..SpanQuery::default() }),
            ("time range", SpanQuery { start_time_min_us: Some(now_us - 3_600_000_000), start_time_max_us: Some(now_us - 3_000_000_000), limit: 20, ..SpanQuery::default() }),
        ];
        for (name, query) in searches {
            let mut times = Vec::new();
            for _ in 0..5 {
                let started = Instant::now();
                let found = store.search(&query).await.unwrap();
                times.push(started.elapsed());
                assert!(!found.is_empty(), "{name} found nothing");
            }
            times.sort();
            println!("search {name:<18} median {:?} max {:?}", percentile(&times, 0.5), times.last().unwrap());
        }
    });
}

/// CPU seconds this process has used (user + system), from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    ticks / 100.0
}
