//! `spanflow loadgen`: an OTLP load generator.
//!
//! The corpus ([`corpus`]) is built, encoded and compressed before the run, so the generator
//! spends its time sending. Each connection is one worker with one request in flight. In a
//! closed loop the workers send back to back (saturation). In an open loop at a fixed rate,
//! request `i` is due at `start + i * period`. When its connection is still busy with an
//! earlier request at that time, its latency is measured from that intended time, not from when
//! it was sent, so a server that stalls is charged for the requests it kept waiting (no
//! coordinated omission); when the connection is free, from when it was sent, so the
//! generator's own timer (a millisecond coarse) is not charged to the server. Responses are counted as accepted (2xx, gRPC OK), refused
//! (429/503, gRPC UNAVAILABLE or RESOURCE_EXHAUSTED: the receiver asked the client to retry)
//! or failed (anything else, transport errors included).
//!
//! Two more measures ride along. A probe ([`Config::probe`]) sends, a few times a second, one
//! span of a trace of its own and times how long after its acknowledgement the query API
//! returns it. [`ceiling`] times the decode of the same corpus on one core: the floor under
//! what any receiver that decodes can cost. [`rows`] makes span rows of the same services for
//! the store benchmarks.

pub mod ceiling;
pub mod corpus;
pub mod rows;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::{BufMut, Bytes, BytesMut};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

pub use corpus::Payload;

/// The gRPC method OTLP trace exporters call.
pub const GRPC_EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// OTLP/HTTP protobuf, POSTed to the endpoint URL as given.
    Http,
    /// OTLP/gRPC over HTTP/2 without TLS, to the endpoint's host and port.
    Grpc,
    /// What a spanflow agent sends its server: `AgentBatch`es of
    /// [`Config::payloads_per_batch`] OTLP requests each, gzip'd as their senders sent them
    /// (or not at all without gzip), POSTed to the server's ingest URL
    /// (`http://host:30033/ingest/v1/batch`). Drives a server with no agent in front of it.
    Batch,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// For HTTP the full URL (`http://host:4318/v1/traces`); for gRPC `http://host:4317`.
    pub endpoint: String,
    pub protocol: Protocol,
    pub spans_per_request: usize,
    pub gzip: bool,
    pub connections: usize,
    /// Spans per second in an open loop; `None` sends back to back.
    pub rate: Option<f64>,
    /// The run ends after this long, or after `max_spans`, whichever comes first.
    pub duration: Duration,
    pub max_spans: Option<u64>,
    /// Distinct requests in the corpus; a longer run sends them again, ids and all.
    pub distinct_requests: usize,
    pub seed: u64,
    /// Extra request headers, such as `authorization`.
    pub headers: Vec<(String, String)>,
    /// Draw a progress bar on the terminal.
    pub progress: bool,
    /// OTLP requests per agent batch ([`Protocol::Batch`] only).
    pub payloads_per_batch: usize,
    /// The base URL of a spanflow query API (`http://host:20416`): when set, a probe measures
    /// the time from a span's acknowledgement until `GET /api/v1/traces/{id}` finds it.
    pub probe: Option<String>,
    /// How often the probe sends a span.
    pub probe_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoint: "http://127.0.0.1:4318/v1/traces".into(),
            protocol: Protocol::Http,
            spans_per_request: 100,
            gzip: true,
            connections: 4,
            rate: None,
            duration: Duration::from_secs(10),
            max_spans: None,
            distinct_requests: 2_000,
            seed: 1,
            headers: Vec::new(),
            progress: false,
            payloads_per_batch: 10,
            probe: None,
            probe_interval: Duration::from_millis(250),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub accepted: u64,
    pub refused: u64,
    pub failed: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// Time from a probe span's acknowledgement until the query API returned its trace.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Queryable {
    /// Probe spans acknowledged (they are counted in [`Report::spans`] too).
    pub probes: u64,
    /// Acknowledged probes whose trace the query API had not returned after
    /// [`PROBE_TIMEOUT`]; not in the quantiles.
    pub not_found: u64,
    /// The API is asked every [`PROBE_POLL`], so each time is late by up to that much.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// How long a probe waits for its trace to become queryable.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a probe asks the query API for its trace.
pub const PROBE_POLL: Duration = Duration::from_millis(5);

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub protocol: Protocol,
    pub endpoint: String,
    pub gzip: bool,
    pub spans_per_request: usize,
    pub connections: usize,
    /// `closed` (back to back) or `open` (at `target_spans_per_second`).
    pub mode: &'static str,
    pub target_spans_per_second: Option<f64>,
    pub elapsed_seconds: f64,
    pub requests: Counts,
    pub spans: Counts,
    /// Accepted spans per second of the run.
    pub spans_per_second: f64,
    pub bytes_sent: u64,
    /// From each request's intended send time (open loop) or its send time (closed loop) to
    /// its response, accepted or not.
    pub latency: Latency,
    /// With [`Config::probe`] set.
    pub queryable: Option<Queryable>,
    /// A few of the failures, for a first look.
    pub failures: Vec<String>,
    pub corpus_requests: usize,
    pub corpus_bytes_per_span: f64,
    pub corpus_gzip_bytes_per_span: f64,
    /// True when the run sent more requests than the corpus holds, so ids were sent again.
    pub ids_repeated: bool,
}

enum Answer {
    Accepted,
    Refused,
    Failed(String),
}

/// One request body, ready to send.
struct Body {
    bytes: Bytes,
    n_spans: u64,
}

struct Shared {
    config: Config,
    bodies: Vec<Body>,
    uri: http::Uri,
    next: AtomicU64,
    max_requests: u64,
    started: Instant,
    deadline: Instant,
    progress: indicatif::ProgressBar,
    failures: Mutex<Vec<String>>,
}

/// Builds the corpus and runs the load; the report counts every request sent.
pub async fn run(config: Config) -> anyhow::Result<Report> {
    anyhow::ensure!(config.connections > 0, "connections must be at least 1");
    anyhow::ensure!(
        config.spans_per_request > 0,
        "spans per request must be at least 1"
    );
    if let Some(rate) = config.rate {
        anyhow::ensure!(
            rate.is_finite() && rate > 0.0,
            "the rate must be a positive number of spans per second"
        );
    }
    let uri: http::Uri = match config.protocol {
        Protocol::Http | Protocol::Batch => config.endpoint.parse(),
        Protocol::Grpc => format!(
            "{}{GRPC_EXPORT_PATH}",
            config.endpoint.trim_end_matches('/')
        )
        .parse(),
    }
    .with_context(|| format!("endpoint `{}` is not a URL", config.endpoint))?;
    anyhow::ensure!(
        uri.scheme_str() == Some("http"),
        "endpoint `{}` must start with http:// (TLS is not supported)",
        config.endpoint
    );
    anyhow::ensure!(
        config.payloads_per_batch > 0,
        "payloads per batch must be at least 1"
    );
    let probe_uri = match &config.probe {
        None => None,
        Some(base) => {
            let uri: http::Uri = base
                .parse()
                .with_context(|| format!("probe URL `{base}` is not a URL"))?;
            anyhow::ensure!(
                uri.scheme_str() == Some("http") && uri.authority().is_some(),
                "probe URL `{base}` must be http://host:port"
            );
            Some(base.trim_end_matches('/').to_string())
        }
    };
    let n_distinct = config.distinct_requests.max(1);
    let (spans_per_request, seed) = (config.spans_per_request, config.seed);
    let (protocol, gzip, per_batch) = (config.protocol, config.gzip, config.payloads_per_batch);
    let (bodies, corpus_bytes, corpus_gzip_bytes) = tokio::task::spawn_blocking(move || {
        let corpus = corpus::build(n_distinct, spans_per_request, seed);
        let bytes = corpus.iter().map(|p| p.protobuf.len()).sum::<usize>();
        let gzip_bytes = corpus.iter().map(|p| p.gzip.len()).sum::<usize>();
        (
            bodies(&corpus, protocol, gzip, per_batch),
            bytes,
            gzip_bytes,
        )
    })
    .await?;
    let n_spans_corpus = (n_distinct * spans_per_request) as f64;
    let spans_per_body = bodies[0].n_spans;
    let max_requests = config
        .max_spans
        .map(|spans| spans.div_ceil(spans_per_body))
        .unwrap_or(u64::MAX);
    let progress = if config.progress {
        let bar = indicatif::ProgressBar::new(match config.max_spans {
            Some(spans) => spans,
            None => config.duration.as_secs().max(1),
        });
        let template = if config.max_spans.is_some() {
            "{elapsed_precise} [{wide_bar}] {human_pos}/{human_len} spans ({per_sec}) {msg}"
        } else {
            "{elapsed_precise} [{wide_bar}] {pos}/{len} s {msg}"
        };
        bar.set_style(indicatif::ProgressStyle::with_template(template).expect("a valid template"));
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let started = Instant::now();
    let shared = Arc::new(Shared {
        uri,
        next: AtomicU64::new(0),
        max_requests,
        started,
        deadline: started + config.duration,
        progress,
        failures: Mutex::new(Vec::new()),
        bodies,
        config,
    });
    let prober = probe_uri.map(|query| tokio::spawn(probe(shared.clone(), query)));
    let ticker = (shared.config.max_spans.is_none()).then(|| {
        let shared = shared.clone();
        tokio::spawn(async move {
            while Instant::now() < shared.deadline {
                shared
                    .progress
                    .set_position(shared.started.elapsed().as_secs());
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    });
    let workers: Vec<_> = (0..shared.config.connections)
        .map(|_| tokio::spawn(worker(shared.clone())))
        .collect();
    let mut requests = Counts::default();
    let mut spans = Counts::default();
    let mut latencies =
        Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
    let mut bytes_sent = 0;
    for worker in workers {
        let done = worker.await?;
        requests.add(&done.requests);
        spans.add(&done.spans);
        bytes_sent += done.bytes_sent;
        latencies.add(&done.latencies).expect("same bounds");
    }
    let elapsed = shared.started.elapsed().as_secs_f64();
    let queryable = match prober {
        None => None,
        Some(prober) => {
            let done = prober.await?;
            requests.add(&done.requests);
            spans.add(&done.requests);
            Some(done.queryable)
        }
    };
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    shared.progress.finish_and_clear();
    let quantile = |q: f64| latencies.value_at_quantile(q) as f64 / 1000.0;
    let config = &shared.config;
    let sent = requests.accepted + requests.refused + requests.failed;
    let failures = shared.failures.lock().expect("failures lock").clone();
    Ok(Report {
        protocol: config.protocol,
        endpoint: config.endpoint.clone(),
        gzip: config.gzip,
        spans_per_request: config.spans_per_request,
        connections: config.connections,
        mode: if config.rate.is_some() {
            "open"
        } else {
            "closed"
        },
        target_spans_per_second: config.rate,
        elapsed_seconds: elapsed,
        spans_per_second: spans.accepted as f64 / elapsed.max(1e-9),
        spans,
        requests,
        bytes_sent,
        latency: if latencies.is_empty() {
            Latency::default()
        } else {
            Latency {
                p50_ms: quantile(0.5),
                p90_ms: quantile(0.9),
                p99_ms: quantile(0.99),
                p999_ms: quantile(0.999),
                max_ms: latencies.max() as f64 / 1000.0,
                mean_ms: latencies.mean() / 1000.0,
            }
        },
        queryable,
        failures,
        corpus_requests: n_distinct,
        corpus_bytes_per_span: corpus_bytes as f64 / n_spans_corpus,
        corpus_gzip_bytes_per_span: corpus_gzip_bytes as f64 / n_spans_corpus,
        ids_repeated: sent > shared.bodies.len() as u64,
    })
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.accepted += other.accepted;
        self.refused += other.refused;
        self.failed += other.failed;
    }

    fn count(&mut self, answer: &Answer, n: u64) {
        match answer {
            Answer::Accepted => self.accepted += n,
            Answer::Refused => self.refused += n,
            Answer::Failed(_) => self.failed += n,
        }
    }
}

/// The bodies the protocol sends: the corpus requests as they are, or gzip'd, or (for
/// [`Protocol::Batch`]) gathered into agent batches.
fn bodies(corpus: &[Payload], protocol: Protocol, gzip: bool, per_batch: usize) -> Vec<Body> {
    match protocol {
        Protocol::Http | Protocol::Grpc => corpus
            .iter()
            .map(|payload| Body {
                bytes: message_body(protocol, gzip, payload),
                n_spans: payload.n_spans as u64,
            })
            .collect(),
        Protocol::Batch => corpus
            .chunks(per_batch)
            .enumerate()
            .map(|(seq, payloads)| batch_body(seq as u64, payloads, gzip))
            .collect(),
    }
}

fn message_body(protocol: Protocol, gzip: bool, payload: &Payload) -> Bytes {
    let message = if gzip {
        &payload.gzip
    } else {
        &payload.protobuf
    };
    match protocol {
        Protocol::Grpc => {
            // The length-prefixed message: a compressed flag, four bytes of length, the message.
            let mut framed = BytesMut::with_capacity(5 + message.len());
            framed.put_u8(u8::from(gzip));
            framed.put_u32(message.len() as u32);
            framed.put_slice(message);
            framed.freeze()
        }
        Protocol::Http | Protocol::Batch => message.clone(),
    }
}

/// A batch as an agent sends it: each request in the bytes its sender compressed.
fn batch_body(seq: u64, payloads: &[Payload], gzip: bool) -> Body {
    let batch = spanflow_transport::AgentBatch {
        version: spanflow_transport::VERSION,
        agent_id: "spanflow-loadgen".into(),
        agent_host_name: "loadgen".into(),
        agent_host_ip: "127.0.0.1".into(),
        batch_seq: seq,
        payloads: payloads
            .iter()
            .map(|payload| spanflow_transport::Payload {
                peer_ip: "127.0.0.1".into(),
                n_spans: payload.n_spans as u32,
                otlp: if gzip {
                    payload.gzip.clone()
                } else {
                    payload.protobuf.clone()
                },
                encoding: if gzip {
                    spanflow_transport::Encoding::Gzip
                } else {
                    spanflow_transport::Encoding::Identity
                } as i32,
                org_id: String::new(),
            })
            .collect(),
        ..Default::default()
    };
    Body {
        n_spans: batch.n_spans(),
        bytes: batch.encode_body().into(),
    }
}

struct WorkerResult {
    requests: Counts,
    spans: Counts,
    bytes_sent: u64,
    latencies: Histogram<u64>,
}

async fn worker(shared: Arc<Shared>) -> WorkerResult {
    let config = &shared.config;
    let client = client(config.protocol);
    let mut result = WorkerResult {
        requests: Counts::default(),
        spans: Counts::default(),
        bytes_sent: 0,
        latencies: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
    };
    let period = config
        .rate
        .map(|rate| Duration::from_secs_f64(shared.bodies[0].n_spans as f64 / rate));
    loop {
        let index = shared.next.fetch_add(1, Ordering::Relaxed);
        if index >= shared.max_requests {
            break;
        }
        let intended = match period {
            Some(period) => {
                let due = shared.started + period.mul_f64(index as f64);
                if due >= shared.deadline {
                    break;
                }
                if Instant::now() < due {
                    // The connection is free before the request is due, so the server kept
                    // nobody waiting: count from the moment the request goes out. The timer
                    // wakes up to a millisecond late, and that is the generator's doing.
                    tokio::time::sleep_until(due.into()).await;
                    Instant::now()
                } else {
                    // The connection was still busy when the request fell due: the wait since
                    // is the server's doing, and counted.
                    due
                }
            }
            None => {
                let now = Instant::now();
                if now >= shared.deadline {
                    break;
                }
                now
            }
        };
        let body = &shared.bodies[(index % shared.bodies.len() as u64) as usize];
        let answer = send(&client, config.protocol, request(config, &shared.uri, body)).await;
        let latency = intended.elapsed().as_micros().max(1) as u64;
        result.latencies.saturating_record(latency);
        result.bytes_sent += body.bytes.len() as u64;
        result.requests.count(&answer, 1);
        result.spans.count(&answer, body.n_spans);
        if let Answer::Failed(message) = answer {
            shared.failed(message);
        }
        if config.max_spans.is_some() {
            shared.progress.inc(body.n_spans);
        }
    }
    result
}

impl Shared {
    fn failed(&self, message: String) {
        let mut failures = self.failures.lock().expect("failures lock");
        if failures.len() < 5 {
            failures.push(message);
        }
    }
}

fn client(protocol: Protocol) -> Client<HttpConnector, Full<Bytes>> {
    let mut builder = Client::builder(TokioExecutor::new());
    builder.pool_max_idle_per_host(1);
    if protocol == Protocol::Grpc {
        builder.http2_only(true);
    }
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    builder.build(connector)
}

struct ProbeResult {
    requests: Counts,
    queryable: Queryable,
}

/// Every [`Config::probe_interval`] until the run's deadline: sends one span of a new trace
/// and, once it is acknowledged, asks `{query}/api/v1/traces/{id}` for it every
/// [`PROBE_POLL`] until it is there. A probe that took longer than the interval (a store that
/// acknowledges once its insert is accepted, a second later) is followed at once by the next,
/// not by one for every interval it missed, so the probes end with the run.
async fn probe(shared: Arc<Shared>, query: String) -> ProbeResult {
    let config = &shared.config;
    let sender = client(config.protocol);
    let asker = client(Protocol::Http);
    let mut result = ProbeResult {
        requests: Counts::default(),
        queryable: Queryable::default(),
    };
    let mut times = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
    let mut next = Instant::now() + config.probe_interval;
    for n in 0u64.. {
        next = next.max(Instant::now());
        if next >= shared.deadline {
            break;
        }
        tokio::time::sleep_until(next.into()).await;
        next += config.probe_interval;
        // Ids of their own: `fe` then the seed and a count, never drawn by the corpus's
        // generator in practice.
        let mut trace_id = [0u8; 16];
        trace_id[0] = 0xfe;
        trace_id[1..8].copy_from_slice(&config.seed.to_be_bytes()[1..]);
        trace_id[8..].copy_from_slice(&(n + 1).to_be_bytes());
        let payload = corpus::probe(trace_id);
        let body = match config.protocol {
            Protocol::Batch => {
                batch_body(u64::MAX - n, std::slice::from_ref(&payload), config.gzip)
            }
            protocol => Body {
                bytes: message_body(protocol, config.gzip, &payload),
                n_spans: 1,
            },
        };
        let answer = send(
            &sender,
            config.protocol,
            request(config, &shared.uri, &body),
        )
        .await;
        result.requests.count(&answer, 1);
        match answer {
            Answer::Accepted => {}
            Answer::Refused => continue,
            Answer::Failed(message) => {
                shared.failed(format!("probe: {message}"));
                continue;
            }
        }
        let acknowledged = Instant::now();
        let uri: http::Uri = format!("{query}/api/v1/traces/{}", hex(&trace_id))
            .parse()
            .expect("a valid URL");
        loop {
            let found = match asker.get(uri.clone()).await {
                Ok(response) => {
                    let status = response.status();
                    let _ = response.into_body().collect().await;
                    status.is_success()
                }
                Err(_) => false,
            };
            if found {
                times.saturating_record(acknowledged.elapsed().as_micros().max(1) as u64);
                break;
            }
            if acknowledged.elapsed() > PROBE_TIMEOUT {
                result.queryable.not_found += 1;
                break;
            }
            tokio::time::sleep(PROBE_POLL).await;
        }
    }
    result.queryable.probes = result.requests.accepted;
    if !times.is_empty() {
        result.queryable.p50_ms = times.value_at_quantile(0.5) as f64 / 1000.0;
        result.queryable.p99_ms = times.value_at_quantile(0.99) as f64 / 1000.0;
        result.queryable.max_ms = times.max() as f64 / 1000.0;
    }
    result
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn request(config: &Config, uri: &http::Uri, body: &Body) -> http::Request<Full<Bytes>> {
    let mut builder = http::Request::post(uri.clone());
    for (name, value) in &config.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    match config.protocol {
        Protocol::Http => {
            builder = builder.header(http::header::CONTENT_TYPE, "application/x-protobuf");
            if config.gzip {
                builder = builder.header(http::header::CONTENT_ENCODING, "gzip");
            }
        }
        Protocol::Grpc => {
            builder = builder
                .header(http::header::CONTENT_TYPE, "application/grpc")
                .header(http::header::TE, "trailers");
            if config.gzip {
                builder = builder.header("grpc-encoding", "gzip");
            }
        }
        Protocol::Batch => {
            builder = builder.header(http::header::CONTENT_TYPE, spanflow_transport::CONTENT_TYPE);
        }
    }
    builder
        .body(Full::new(body.bytes.clone()))
        .expect("a valid request")
}

async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    protocol: Protocol,
    request: http::Request<Full<Bytes>>,
) -> Answer {
    let response = match client.request(request).await {
        Ok(response) => response,
        Err(error) => return Answer::Failed(format!("sending: {error:?}")),
    };
    let status = response.status();
    let header_status = grpc_status(response.headers());
    let collected = match response.into_body().collect().await {
        Ok(collected) => collected,
        Err(error) => return Answer::Failed(format!("reading the response: {error}")),
    };
    match protocol {
        Protocol::Http | Protocol::Batch => match status.as_u16() {
            200..=299 => Answer::Accepted,
            429 | 503 => Answer::Refused,
            _ => Answer::Failed(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&collected.to_bytes()[..])
                    .chars()
                    .take(200)
                    .collect::<String>()
            )),
        },
        Protocol::Grpc => {
            let code = collected.trailers().and_then(grpc_status).or(header_status);
            match code {
                Some(0) => Answer::Accepted,
                // UNAVAILABLE and RESOURCE_EXHAUSTED: retry later.
                Some(14) | Some(8) => Answer::Refused,
                Some(code) => Answer::Failed(format!("gRPC status {code} (HTTP {status})")),
                None => Answer::Failed(format!("no grpc-status in the answer (HTTP {status})")),
            }
        }
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<u32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}
