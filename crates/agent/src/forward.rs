//! The forwarder: cuts batches from the queue, sends them to the server, and keeps each batch
//! until the server acknowledges it as stored. A batch that fails to send is sent again with
//! backoff, for as long as it takes; only a batch the server refuses as malformed (which no
//! resend can fix) is dropped, and counted.

use std::sync::Arc;
use std::time::Duration;

use spanflow_model::metric_names;
use spanflow_transport::{AgentBatch, HostReport, CONTENT_TYPE, INGEST_PATH, VERSION};
use tokio_util::sync::CancellationToken;

use crate::places::{PlaceBook, FULL_EVERY};
use crate::queue::{Batch, ForwardQueue};

/// How often the spool's new records are fsynced.
const SPOOL_SYNC_INTERVAL: Duration = Duration::from_secs(1);

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
    /// PEM certificates of the authorities that sign the servers' TLS certificates, beside
    /// the public roots (for `https://` server URLs).
    pub ca_pem: Option<Vec<u8>>,
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
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
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
            ca_pem: None,
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
    /// Once shutdown starts: when the grace period to deliver what is held ends.
    stop_by: Option<tokio::time::Instant>,
    places: Option<Places>,
}

/// What the forwarder tells the server of addresses, and how far the server has heard it.
struct Places {
    book: Arc<PlaceBook>,
    host: Option<HostReport>,
    /// The book's version the server acknowledged; 0 when a server has to hear everything.
    acknowledged: u64,
    /// When everything goes out again, even to a server that heard it.
    full_due: tokio::time::Instant,
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
    ) -> Result<Forwarder, reqwest::Error> {
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
        let mut client = reqwest::Client::builder().timeout(config.request_timeout);
        if let Some(pem) = &config.ca_pem {
            for certificate in reqwest::Certificate::from_pem_bundle(pem)? {
                client = client.add_root_certificate(certificate);
            }
        }
        let client = client.build()?;
        Ok(Forwarder {
            queue,
            config,
            identity,
            client,
            urls,
            current: 0,
            next_seq: 0,
            stop_by: None,
            places: None,
        })
    }

    /// Sends what `book` knows of addresses with the batches, and `host` (the agent's own
    /// host, when it is not a pod) with every full list.
    pub fn with_places(mut self, book: Arc<PlaceBook>, host: Option<HostReport>) -> Forwarder {
        self.places = Some(Places {
            book,
            host,
            acknowledged: 0,
            full_due: tokio::time::Instant::now(),
        });
        self
    }

    /// Runs until `shutdown`, then sends what is queued for up to the shutdown grace period;
    /// with a spool, what is still undelivered then stays on disk for the next start.
    pub async fn run(mut self, shutdown: CancellationToken) {
        tracing::info!(
            servers = self.urls.join(", "),
            agent_id = self.identity.agent_id,
            spooled = self.queue.is_spooled(),
            "forwarding to the server"
        );
        let syncing = self.queue.is_spooled().then(|| {
            let queue = self.queue.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(SPOOL_SYNC_INTERVAL);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    queue.sync_spool().await;
                }
            })
        });
        let mut delivered = true;
        loop {
            let batch = tokio::select! {
                batch = self.queue.next_batch(self.config.max_batch_bytes, self.config.flush_interval) => batch,
                _ = shutdown.cancelled() => break,
            };
            if !self.deliver(batch, &shutdown).await {
                delivered = false;
                break;
            }
        }
        self.stop_by
            .get_or_insert(tokio::time::Instant::now() + self.config.shutdown_grace);
        while delivered {
            let batch = self.queue.take_all().await;
            if batch.payloads.is_empty() {
                self.queue.release(batch.receipt);
                break;
            }
            delivered = self.deliver(batch, &shutdown).await;
        }
        if let Some(syncing) = syncing {
            syncing.abort();
            self.queue.sync_spool().await;
        }
        if !delivered {
            if self.queue.is_spooled() {
                tracing::warn!(
                    spooled_bytes = self.queue.spooled_bytes(),
                    "shutdown grace period over; what is undelivered stays in the spool for the next start"
                );
            } else {
                tracing::error!(
                    queued_bytes = self.queue.queued_bytes(),
                    "shutdown grace period over; queued spans were not delivered"
                );
            }
        }
    }

    /// Sends one batch until it is acknowledged or refused; false if shutdown's grace period
    /// ran out first.
    async fn deliver(&mut self, batch: Batch, shutdown: &CancellationToken) -> bool {
        let Batch { payloads, receipt } = batch;
        let mut batch = AgentBatch {
            version: VERSION,
            agent_id: self.identity.agent_id.clone(),
            agent_host_name: self.identity.host_name.clone(),
            agent_host_ip: self.identity.host_ip.clone(),
            batch_seq: self.next_seq,
            payloads,
            ..AgentBatch::default()
        };
        let built_for = self.current;
        let places_version = self.places.as_ref().map(|places| {
            let full = tokio::time::Instant::now() >= places.full_due;
            let changes = places.book.changes_since(places.acknowledged, full);
            batch.places = changes.records;
            batch.places_full = changes.full;
            if changes.full {
                batch.host = places.host.clone();
            }
            (changes.version, changes.full)
        });
        self.next_seq += 1;
        let n_spans = batch.n_spans();
        let body = bytes::Bytes::from(batch.encode_body());
        drop(batch);
        let mut backoff = self.config.min_backoff;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let sent = match self.stop_by {
                None => self.send(body.clone()).await,
                Some(stop_by) => {
                    match tokio::time::timeout_at(stop_by, self.send(body.clone())).await {
                        Ok(sent) => sent,
                        Err(_) => return false,
                    }
                }
            };
            match sent {
                Sent::Acknowledged => {
                    if let (Some(places), Some((version, full))) =
                        (self.places.as_mut(), places_version)
                    {
                        // A delta that reached another server than the one it was cut for
                        // leaves that server short: the next batch tells everything.
                        places.acknowledged = if full || self.current == built_for {
                            version
                        } else {
                            0
                        };
                        if full {
                            places.full_due = tokio::time::Instant::now() + FULL_EVERY;
                        }
                    }
                    metrics::counter!(metric_names::AGENT_BATCHES_ACKED).increment(1);
                    metrics::counter!(metric_names::AGENT_SPANS_FORWARDED).increment(n_spans);
                    self.queue.release(receipt);
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
                    self.queue.release(receipt);
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
                    let now = tokio::time::Instant::now();
                    if shutdown.is_cancelled() {
                        let stop_by = *self.stop_by.get_or_insert(now + self.config.shutdown_grace);
                        if now + wait > stop_by {
                            return false;
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        // A shutdown starts the grace period at once.
                        _ = shutdown.cancelled(), if self.stop_by.is_none() => {}
                    }
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
