//! `spanflow loadgen`: an OTLP load generator.
//!
//! The corpus ([`corpus`]) is built, encoded and compressed before the run, so the generator
//! spends its time sending. Each connection is one worker with one request in flight. In a
//! closed loop the workers send back to back (saturation). In an open loop at a fixed rate,
//! request `i` is due at `start + i * period` and its latency is measured from that intended
//! time, not from when it was sent, so a server that stalls is charged for the requests it kept
//! waiting (no coordinated omission). Responses are counted as accepted (2xx, gRPC OK), refused
//! (429/503, gRPC UNAVAILABLE or RESOURCE_EXHAUSTED: the receiver asked the client to retry)
//! or failed (anything else, transport errors included).

pub mod corpus;

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

struct Shared {
    config: Config,
    corpus: Vec<Payload>,
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
        Protocol::Http => config.endpoint.parse(),
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
    let n_distinct = config.distinct_requests.max(1);
    let (spans_per_request, seed) = (config.spans_per_request, config.seed);
    let corpus =
        tokio::task::spawn_blocking(move || corpus::build(n_distinct, spans_per_request, seed))
            .await?;
    let max_requests = config
        .max_spans
        .map(|spans| spans.div_ceil(config.spans_per_request as u64))
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
        corpus,
        config,
    });
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
    let mut latencies =
        Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
    let mut bytes_sent = 0;
    for worker in workers {
        let done = worker.await?;
        requests.accepted += done.requests.accepted;
        requests.refused += done.requests.refused;
        requests.failed += done.requests.failed;
        bytes_sent += done.bytes_sent;
        latencies.add(&done.latencies).expect("same bounds");
    }
    let elapsed = shared.started.elapsed().as_secs_f64();
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    shared.progress.finish_and_clear();
    let per_request = shared.config.spans_per_request as u64;
    let quantile = |q: f64| latencies.value_at_quantile(q) as f64 / 1000.0;
    let n_spans_corpus: usize = shared.corpus.iter().map(|payload| payload.n_spans).sum();
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
        spans: Counts {
            accepted: requests.accepted * per_request,
            refused: requests.refused * per_request,
            failed: requests.failed * per_request,
        },
        spans_per_second: (requests.accepted * per_request) as f64 / elapsed.max(1e-9),
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
        failures,
        corpus_requests: shared.corpus.len(),
        corpus_bytes_per_span: shared
            .corpus
            .iter()
            .map(|p| p.protobuf.len())
            .sum::<usize>() as f64
            / n_spans_corpus.max(1) as f64,
        corpus_gzip_bytes_per_span: shared.corpus.iter().map(|p| p.gzip.len()).sum::<usize>()
            as f64
            / n_spans_corpus.max(1) as f64,
        ids_repeated: sent > shared.corpus.len() as u64,
    })
}

struct WorkerResult {
    requests: Counts,
    bytes_sent: u64,
    latencies: Histogram<u64>,
}

async fn worker(shared: Arc<Shared>) -> WorkerResult {
    let config = &shared.config;
    let mut builder = Client::builder(TokioExecutor::new());
    builder.pool_max_idle_per_host(1);
    if config.protocol == Protocol::Grpc {
        builder.http2_only(true);
    }
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Full<Bytes>> = builder.build(connector);
    let mut result = WorkerResult {
        requests: Counts::default(),
        bytes_sent: 0,
        latencies: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
    };
    let period = config
        .rate
        .map(|rate| Duration::from_secs_f64(config.spans_per_request as f64 / rate));
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
                tokio::time::sleep_until(due.into()).await;
                due
            }
            None => {
                let now = Instant::now();
                if now >= shared.deadline {
                    break;
                }
                now
            }
        };
        let payload = &shared.corpus[(index % shared.corpus.len() as u64) as usize];
        let (request, n_bytes) = request(config, &shared.uri, payload);
        let answer = send(&client, config.protocol, request).await;
        let latency = intended.elapsed().as_micros().max(1) as u64;
        result.latencies.saturating_record(latency);
        result.bytes_sent += n_bytes as u64;
        match answer {
            Answer::Accepted => result.requests.accepted += 1,
            Answer::Refused => result.requests.refused += 1,
            Answer::Failed(message) => {
                result.requests.failed += 1;
                let mut failures = shared.failures.lock().expect("failures lock");
                if failures.len() < 5 {
                    failures.push(message);
                }
            }
        }
        if config.max_spans.is_some() {
            shared.progress.inc(payload.n_spans as u64);
        }
    }
    result
}

fn request(
    config: &Config,
    uri: &http::Uri,
    payload: &Payload,
) -> (http::Request<Full<Bytes>>, usize) {
    let message = if config.gzip {
        &payload.gzip
    } else {
        &payload.protobuf
    };
    let mut builder = http::Request::post(uri.clone());
    for (name, value) in &config.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let body = match config.protocol {
        Protocol::Http => {
            builder = builder.header(http::header::CONTENT_TYPE, "application/x-protobuf");
            if config.gzip {
                builder = builder.header(http::header::CONTENT_ENCODING, "gzip");
            }
            message.clone()
        }
        Protocol::Grpc => {
            builder = builder
                .header(http::header::CONTENT_TYPE, "application/grpc")
                .header(http::header::TE, "trailers");
            if config.gzip {
                builder = builder.header("grpc-encoding", "gzip");
            }
            // The length-prefixed message: a compressed flag, four bytes of length, the message.
            let mut framed = BytesMut::with_capacity(5 + message.len());
            framed.put_u8(u8::from(config.gzip));
            framed.put_u32(message.len() as u32);
            framed.put_slice(message);
            framed.freeze()
        }
    };
    let n_bytes = body.len();
    (
        builder.body(Full::new(body)).expect("a valid request"),
        n_bytes,
    )
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
        Protocol::Http => match status.as_u16() {
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
