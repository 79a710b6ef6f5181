//! The forwarder: cuts batches from the queue, sends them to the server, and keeps each batch
//! until the server acknowledges it as stored. A batch that fails to send is sent again with
//! backoff, for as long as it takes; only a batch the server refuses as malformed (which no
//! resend can fix) is dropped, and counted.

use std::sync::Arc;
use std::time::Duration;

use spanflow_model::metric_names;
use spanflow_transport::{AgentBatch, Payload, CONTENT_TYPE, INGEST_PATH, VERSION};
use tokio_util::sync::CancellationToken;

use crate::queue::ForwardQueue;

/// Who the agent is, sent with every batch.
#[derive(Clone, Debug, Default)]
pub struct AgentIdentity {
    pub agent_id: String,
    pub host_name: String,
    pub host_ip: String,
}

#[derive(Clone)]
pub struct ForwardConfig {
    /// Base URL of the server's ingest port, e.g. `http://127.0.0.1:30033`, or several,
    /// comma-separated: a batch that fails on one is sent to the next.
    pub server_url: String,
    pub max_batch_bytes: usize,
    pub flush_interval: Duration,
    pub request_timeout: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// How long to keep trying to send what is queued once shutdown starts.
    pub shutdown_grace: Duration,
    /// The bearer token the server's ingest port wants, if it wants one.
    pub token: Option<String>,
}

impl std::fmt::Debug for ForwardConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardConfig")
            .field("server_url", &self.server_url)
            .field("max_batch_bytes", &self.max_batch_bytes)
            .field("flush_interval", &self.flush_interval)
            .field("request_timeout", &self.request_timeout)
            .field("min_backoff", &self.min_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl Default for ForwardConfig {
    fn default() -> Self {
        ForwardConfig {
            server_url: "http://127.0.0.1:30033".to_string(),
            max_batch_bytes: 1 << 20,
            flush_interval: Duration::from_millis(200),
            request_timeout: Duration::from_secs(30),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(10),
            token: None,
        }
    }
}

pub struct Forwarder {
    queue: Arc<ForwardQueue>,
    config: ForwardConfig,
    identity: AgentIdentity,
    client: reqwest::Client,
    /// The ingest URL of each server, and the one batches go to now.
    urls: Vec<String>,
    current: usize,
    next_seq: u64,
}

/// What became of one send attempt.
enum Sent {
    Acknowledged,
    /// The server says the batch itself is wrong; a resend would get the same answer.
    Refused(String),
    /// Try again, after at least this long if the server said so.
    Failed(String, Option<Duration>),
}

impl Forwarder {
    pub fn new(
        queue: Arc<ForwardQueue>,
        config: ForwardConfig,
        identity: AgentIdentity,
    ) -> Forwarder {
        let mut urls: Vec<String> = config
            .server_url
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(|url| format!("{}{}", url.trim_end_matches('/'), INGEST_PATH))
            .collect();
        if urls.is_empty() {
            urls.push(format!(
                "{}{}",
                ForwardConfig::default().server_url,
                INGEST_PATH
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .build()
            .expect("an HTTP client without TLS always builds");
        Forwarder {
            queue,
            config,
            identity,
            client,
            urls,
            current: 0,
            next_seq: 0,
        }
    }

    /// Runs until `shutdown`, then sends what is queued for up to the shutdown grace period.
    pub async fn run(mut self, shutdown: CancellationToken) {
        tracing::info!(
            servers = self.urls.join(", "),
            agent_id = self.identity.agent_id,
            "forwarding to the server"
        );
        loop {
            let payloads = tokio::select! {
                payloads = self.queue.next_batch(self.config.max_batch_bytes, self.config.flush_interval) => payloads,
                _ = shutdown.cancelled() => break,
            };
            self.deliver(payloads, None).await;
        }
        let deadline = tokio::time::Instant::now() + self.config.shutdown_grace;
        loop {
            let payloads = self.queue.take_all();
            if payloads.is_empty() {
                return;
            }
            if !self.deliver(payloads, Some(deadline)).await {
                let lost = self.queue.queued_bytes();
                tracing::error!(
                    queued_bytes = lost,
                    "shutdown grace period over; queued spans were not delivered"
                );
                return;
            }
        }
    }

    /// Sends one batch until it is acknowledged or refused (or the deadline passes: false).
    async fn deliver(
        &mut self,
        payloads: Vec<Payload>,
        deadline: Option<tokio::time::Instant>,
    ) -> bool {
        let n_bytes: usize = payloads.iter().map(|payload| payload.otlp.len()).sum();
        let batch = AgentBatch {
            version: VERSION,
            agent_id: self.identity.agent_id.clone(),
            agent_host_name: self.identity.host_name.clone(),
            agent_host_ip: self.identity.host_ip.clone(),
            batch_seq: self.next_seq,
            payloads,
        };
        self.next_seq += 1;
        let n_spans = batch.n_spans();
        let body = bytes::Bytes::from(batch.encode_body());
        drop(batch);
        let mut backoff = self.config.min_backoff;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.send(body.clone()).await {
                Sent::Acknowledged => {
                    metrics::counter!(metric_names::AGENT_BATCHES_ACKED).increment(1);
                    metrics::counter!(metric_names::AGENT_SPANS_FORWARDED).increment(n_spans);
                    self.queue.release(n_bytes);
                    return true;
                }
                Sent::Refused(reason) => {
                    metrics::counter!(metric_names::AGENT_BATCHES_REFUSED).increment(1);
                    metrics::counter!(metric_names::AGENT_SPANS_REFUSED).increment(n_spans);
                    tracing::error!(
                        n_spans,
                        reason,
                        "server refused a batch as malformed; its spans are lost"
                    );
                    self.queue.release(n_bytes);
                    return true;
                }
                Sent::Failed(reason, retry_after) => {
                    metrics::counter!(metric_names::AGENT_FORWARD_RETRIES).increment(1);
                    let failed_server = self.urls[self.current].clone();
                    if self.urls.len() > 1 {
                        // The next try goes to the next server; with all of them failing, the
                        // backoff below still spaces the tries.
                        self.current = (self.current + 1) % self.urls.len();
                    }
                    let wait = retry_after.unwrap_or(backoff).min(self.config.max_backoff);
                    if attempt == 1 || attempt.is_multiple_of(10) {
                        tracing::warn!(
                            attempt,
                            n_spans,
                            reason,
                            server = failed_server,
                            next_server = self.urls[self.current],
                            wait_ms = wait.as_millis() as u64,
                            "sending a batch failed; it is kept and sent again"
                        );
                    }
                    if deadline
                        .is_some_and(|deadline| tokio::time::Instant::now() + wait > deadline)
                    {
                        return false;
                    }
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
            }
        }
    }

    async fn send(&self, body: bytes::Bytes) -> Sent {
        let mut request = self
            .client
            .post(&self.urls[self.current])
            .header(http::header::CONTENT_TYPE, CONTENT_TYPE);
        if let Some(token) = &self.config.token {
            request = request.bearer_auth(token);
        }
        let response = request.body(body).send().await;
        let response = match response {
            Ok(response) => response,
            Err(error) => return Sent::Failed(error.to_string(), None),
        };
        let status = response.status();
        if status.is_success() {
            return Sent::Acknowledged;
        }
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.text().await.unwrap_or_default();
        let reason = format!("{status}: {}", text.chars().take(500).collect::<String>());
        match status.as_u16() {
            400 | 413 | 415 => Sent::Refused(reason),
            _ => Sent::Failed(reason, retry_after),
        }
    }
}
