//! [`ClickHouseStore`]: writes batched into few large inserts and acknowledged only once
//! ClickHouse has accepted them, reads through the trace index, and retention.
//!
//! ```text
//! write(rows) -- encode RowBinary, wait for room in the buffer --> queue
//!   queue --(batch_rows; the oldest waited batch_wait; or a quarter of batch_rows and no
//!            write for QUIET)--> insert task
//!   insert task: INSERT l7_resource (the rows ClickHouse lacks), INSERT l7_trace_index,
//!     INSERT l7_flow_log, retried with backoff
//!   --> every write in the insert returns Ok
//! ```
//!
//! A write that ClickHouse has not accepted within `write_timeout` returns a retryable error,
//! so the agent keeps the batch and sends it again; an insert is given up only once every
//! write in it has returned so. A span can thus reach ClickHouse twice (an insert that
//! succeeded but whose answer was lost, or a resend racing a late insert): the tables are
//! `ReplacingMergeTree`s keyed by the span, and every read takes one row per span.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clickhouse::Client;
use spanflow_model::{metric_names, SpanKind, SpanRow, TraceId};
use spanflow_store::analytics::{Edge, MapBy, RedPoint, RedQuery};
use spanflow_store::sql::{SqlDialect, SqlLimits, SqlResult};
use spanflow_store::{
    ErrorKind, Operation, PreparedWrite, RowEncoder, SpanQuery, SpanStore, StoreError, TimeRange,
};

/// The most a SQL answer may weigh, as ClickHouse sends it.
const MAX_SQL_ANSWER_BYTES: usize = 256 << 20;
use tokio::sync::{oneshot, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::read::{self, Hit, Placement, SearchSql, SharedSet, StoredSpan};
use crate::rowbinary::{self, Encoded, WriteBuilder};
use crate::schema::{Flavor, Layout, RESOURCE_TABLE, SPANS_TABLE, TRACE_INDEX_TABLE};

/// Resource rows a process remembers ClickHouse has accepted, so as not to send them again;
/// past this many it forgets them all and sends each once more (ClickHouse merges the copies).
const MAX_KNOWN_RESOURCE_ROWS: usize = 1 << 20;

/// `l7_resource` rows (resources and key sets) a process keeps for reads, by key; past this
/// many it forgets them.
const MAX_CACHED_SETS: usize = 1 << 16;

/// `l7_resource` keys asked for in one query.
const SETS_PER_FETCH: usize = 1000;

#[derive(Clone, Debug)]
pub struct ClickHouseConfig {
    /// HTTP URLs of the ClickHouse servers, e.g. `http://127.0.0.1:8123`. Writes and reads go
    /// to the first, and to the next when one stops answering; with a cluster, list a node of
    /// every shard: the tables are created, and old partitions dropped, on each.
    pub urls: Vec<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub database: String,
    /// A cluster from the servers' `<remote_servers>`; see [`Layout::cluster`].
    pub cluster: Option<String>,
    /// Spans whose end is older than this are dropped.
    pub retention: Duration,
    /// An insert starts once this many rows wait...
    pub batch_rows: usize,
    /// ...or once the oldest waiting write has waited this long (or a quarter of `batch_rows`
    /// waits and no write has come for [`QUIET`]).
    pub batch_wait: Duration,
    /// Encoded bytes that may wait for ClickHouse; past it, writes wait for room...
    pub max_buffered_bytes: usize,
    /// ...for at most this long, then fail as retryable.
    pub write_wait: Duration,
    /// A write ClickHouse has not accepted within this long fails as retryable. Keep it below
    /// the agents' request timeout (30 s), so that they hear the answer.
    pub write_timeout: Duration,
    /// Inserts running at once.
    pub max_concurrent_inserts: usize,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// The longest one request to ClickHouse may take.
    pub request_timeout: Duration,
    /// How long opening waits for ClickHouse to answer.
    pub connect_timeout: Duration,
    /// How often retention runs.
    pub upkeep_interval: Duration,
    /// Which servers inserts and answers are LZ4-compressed to.
    pub compression: WireCompression,
}

/// Which servers inserts and answers travel to LZ4-compressed: a fifth of the bytes on the
/// wire, for CPU at both ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireCompression {
    /// Servers on other hosts; a server on this host (a loopback address or `localhost`) is
    /// sent plain bytes, which cost nothing to carry there. The default.
    Remote,
    /// Every server.
    Always,
    /// None.
    Never,
}

impl WireCompression {
    fn for_url(self, url: &str) -> clickhouse::Compression {
        let lz4 = match self {
            WireCompression::Remote => !on_this_host(url),
            WireCompression::Always => true,
            WireCompression::Never => false,
        };
        if lz4 {
            clickhouse::Compression::Lz4
        } else {
            clickhouse::Compression::None
        }
    }
}

impl ClickHouseConfig {
    pub fn new(url: impl Into<String>) -> ClickHouseConfig {
        ClickHouseConfig {
            urls: vec![url.into()],
            user: None,
            password: None,
            database: "flow_log".to_string(),
            cluster: None,
            retention: Duration::from_secs(72 * 3600),
            batch_rows: 200_000,
            batch_wait: Duration::from_secs(1),
            max_buffered_bytes: 256 << 20,
            write_wait: Duration::from_secs(5),
            write_timeout: Duration::from_secs(20),
            max_concurrent_inserts: 2,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(30),
            upkeep_interval: Duration::from_secs(300),
            compression: WireCompression::Remote,
        }
    }
}

/// Whether `url` names a server on this host: `localhost` or a loopback address. A URL that
/// does not parse is taken as another host's.
fn on_this_host(url: &str) -> bool {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return false;
    };
    let Some(host) = uri.host() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// A write's rows encoded as they are mapped, or from rows held whole.
struct WriteEncoder(rowbinary::WriteBuilder);

impl RowEncoder for WriteEncoder {
    fn append(&mut self, row: &SpanRow) {
        self.0.append(row);
    }

    fn finish(self: Box<Self>) -> Result<PreparedWrite, StoreError> {
        let encoded = self.0.finish();
        Ok(PreparedWrite::new(encoded.span_keys.len(), encoded))
    }
}

/// One write waiting for ClickHouse.
struct Pending {
    encoded: Encoded,
    n_rows: usize,
    enqueued: Instant,
    done: oneshot::Sender<()>,
    _room: OwnedSemaphorePermit,
}

/// Bytes handed to the HTTP body at a time.
const INSERT_CHUNK_BYTES: usize = 1 << 20;

/// The servers, and which one takes requests now.
struct Servers {
    clients: Vec<Client>,
    current: AtomicUsize,
}

impl Servers {
    fn current(&self) -> (usize, &Client) {
        let i = self.current.load(Ordering::Relaxed) % self.clients.len();
        (i, &self.clients[i])
    }

    /// Moves on from server `failed`, unless another request has already.
    fn fail_over(&self, failed: usize) {
        if self.clients.len() > 1 {
            let _ = self.current.compare_exchange(
                failed,
                (failed + 1) % self.clients.len(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }
}

struct Inner {
    config: ClickHouseConfig,
    layout: Layout,
    flavor: Flavor,
    servers: Servers,
    queue: Mutex<VecDeque<Pending>>,
    queued_rows: AtomicUsize,
    queued: Notify,
    room: Arc<Semaphore>,
    room_bytes: u32,
    last_error: Mutex<String>,
    /// The `l7_resource` rows ClickHouse has accepted, as (time, key).
    resources_stored: Mutex<HashSet<(u32, u64)>>,
    /// `l7_resource` rows by key, for reads: a key always stands for the same arrays.
    set_cache: Mutex<HashMap<u64, Arc<SharedSet>>>,
}

/// The ClickHouse store. Cloning shares it; the background tasks stop when the last clone is
/// dropped.
#[derive(Clone)]
pub struct ClickHouseStore {
    inner: Arc<Inner>,
    _stop: Arc<DropGuard>,
}

/// A ClickHouse error as a store error: lost connections and timeouts are `Unavailable`, so
/// that callers try again later.
fn store_error(context: &str, error: clickhouse::error::Error) -> StoreError {
    let kind = match &error {
        clickhouse::error::Error::Network(_) | clickhouse::error::Error::TimedOut => {
            ErrorKind::Unavailable
        }
        clickhouse::error::Error::BadResponse(text) if transient(text) => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    };
    StoreError::new(kind, format!("{context}: {error}")).with_source(error)
}

/// Whether a server exception is about the server's state rather than the request: too many
/// parts, memory, timeouts, too many queries, a table not there (yet).
fn transient(text: &str) -> bool {
    [
        "Code: 252,",
        "Code: 241,",
        "Code: 159,",
        "Code: 202,",
        "Code: 209,",
        "Code: 210,",
        "Code: 60,",
        "Code: 81,",
    ]
    .iter()
    .any(|code| text.contains(code))
}

impl ClickHouseStore {
    /// Connects, creates the database and tables where missing, and starts the inserter and
    /// retention. Waits up to `connect_timeout` for the servers to answer.
    pub async fn open(config: ClickHouseConfig) -> Result<ClickHouseStore, StoreError> {
        if config.urls.is_empty() {
            return Err(StoreError::new(
                ErrorKind::Unavailable,
                "no ClickHouse URL configured",
            ));
        }
        let layout = Layout {
            database: config.database.clone(),
            cluster: config.cluster.clone(),
        };
        let mut clients = Vec::new();
        let mut flavor = Flavor::Modern;
        for url in &config.urls {
            let mut client = Client::default()
                .with_url(url)
                .with_validation(false)
                .with_compression(config.compression.for_url(url));
            if let Some(user) = &config.user {
                client = client.with_user(user);
            }
            if let Some(password) = &config.password {
                client = client.with_password(password);
            }
            let version = version(&client, url, config.connect_timeout).await?;
            let server_flavor = Flavor::of_version(&version);
            if server_flavor == Flavor::Legacy {
                flavor = Flavor::Legacy;
            }
            let retention_hours = u32::try_from(config.retention.as_secs().div_ceil(3600))
                .unwrap_or(u32::MAX)
                .max(1);
            for statement in layout.create_statements(server_flavor, retention_hours) {
                client.query(&statement).execute().await.map_err(|error| {
                    store_error(
                        &format!("creating the tables on ClickHouse at {url}"),
                        error,
                    )
                })?;
            }
            upgrade(&client, &layout, server_flavor, url).await?;
            tracing::info!(
                url,
                version,
                flavor = ?server_flavor,
                database = config.database,
                cluster = config.cluster.as_deref().unwrap_or(""),
                "ClickHouse tables ready"
            );
            clients.push(client.with_database(&config.database));
        }
        let stop = CancellationToken::new();
        let room_bytes = u32::try_from(config.max_buffered_bytes.max(1)).unwrap_or(u32::MAX);
        let inner = Arc::new(Inner {
            layout,
            flavor,
            servers: Servers {
                clients,
                current: AtomicUsize::new(0),
            },
            queue: Mutex::new(VecDeque::new()),
            queued_rows: AtomicUsize::new(0),
            queued: Notify::new(),
            room: Arc::new(Semaphore::new(room_bytes as usize)),
            room_bytes,
            last_error: Mutex::new(String::new()),
            resources_stored: Mutex::new(HashSet::new()),
            set_cache: Mutex::new(HashMap::new()),
            config,
        });
        tokio::spawn(batch_loop(inner.clone(), stop.clone()));
        tokio::spawn(upkeep_loop(inner.clone(), stop.clone()));
        Ok(ClickHouseStore {
            inner,
            _stop: Arc::new(stop.drop_guard()),
        })
    }

    /// The schema flavor in use: legacy when any server is older than 20.3.
    pub fn flavor(&self) -> Flavor {
        self.inner.flavor
    }

    /// Drops the partitions past retention on every server; returns how many it dropped.
    pub async fn drop_expired_partitions(&self) -> Result<usize, StoreError> {
        self.inner.drop_expired_partitions().await
    }
}

/// The server's version, asking until it answers or `patience` runs out.
async fn version(client: &Client, url: &str, patience: Duration) -> Result<String, StoreError> {
    let started = Instant::now();
    let mut wait = Duration::from_millis(100);
    loop {
        match client.query("SELECT version()").fetch_one::<String>().await {
            Ok(version) => return Ok(version),
            // Not answering may pass; an answer that refuses (a wrong password) will not.
            Err(
                error @ (clickhouse::error::Error::Network(_) | clickhouse::error::Error::TimedOut),
            ) if started.elapsed() + wait < patience => {
                tracing::warn!(url, %error, "ClickHouse does not answer yet; asking again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(
                error @ (clickhouse::error::Error::Network(_) | clickhouse::error::Error::TimedOut),
            ) => {
                return Err(store_error(
                    &format!(
                        "ClickHouse at {url} did not answer within {} s",
                        patience.as_secs()
                    ),
                    error,
                ))
            }
            Err(error) => {
                let mut error = store_error(&format!("ClickHouse at {url} refused"), error);
                error.kind = ErrorKind::Unavailable;
                return Err(error);
            }
        }
    }
}

impl Inner {
    fn set_last_error(&self, error: String) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = error;
    }

    fn last_error(&self) -> String {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn buffered_bytes(&self) -> usize {
        self.room_bytes as usize - self.room.available_permits()
    }

    /// Sends the rows of `writes` in `order` as one `INSERT` into `table`.
    async fn insert(
        &self,
        table: &str,
        writes: &[&[u8]],
        order: &[(u32, std::ops::Range<u32>)],
    ) -> Result<(), String> {
        let (server, client) = self.servers.current();
        let mut insert = client
            .insert_formatted_with(format!(
                "INSERT INTO `{table}` ({}) FORMAT RowBinary",
                crate::schema::insert_columns(table)
            ))
            .with_timeouts(
                Some(self.config.request_timeout),
                Some(self.config.request_timeout),
            );
        if self.layout.cluster.is_some() {
            // Acknowledged only once every shard has its rows, not when they are spooled.
            insert = insert.with_setting("insert_distributed_sync", "1");
        }
        let sent = async {
            // In chunks, each compressed as it goes out.
            for chunk in rowbinary::chunks(writes, order, INSERT_CHUNK_BYTES) {
                insert.send(Bytes::from(chunk)).await?;
            }
            insert.end().await
        }
        .await;
        sent.map_err(|error| {
            if matches!(
                error,
                clickhouse::error::Error::Network(_) | clickhouse::error::Error::TimedOut
            ) {
                self.servers.fail_over(server);
            }
            format!(
                "inserting into {table} on {}: {error}",
                self.config.urls[server]
            )
        })
    }

    /// Inserts one batch until ClickHouse accepts it, then tells its writers; gives up once
    /// every writer has stopped waiting.
    async fn insert_batch(&self, batch: Vec<Pending>) {
        let n_rows: usize = batch.iter().map(|pending| pending.n_rows).sum();
        // Decided once, kept for the retries: the order to send every write's rows in, the
        // table's.
        let (span_order, index_order) =
            rowbinary::insert_order(batch.iter().map(|pending| &pending.encoded));
        let spans: Vec<&[u8]> = batch
            .iter()
            .map(|pending| &pending.encoded.spans[..])
            .collect();
        let index: Vec<&[u8]> = batch
            .iter()
            .map(|pending| &pending.encoded.index[..])
            .collect();
        // The resource rows ClickHouse does not have yet, once each.
        let resources: Vec<&[u8]> = batch
            .iter()
            .map(|pending| &pending.encoded.resources.bytes[..])
            .collect();
        let mut new_resources = Vec::new();
        let mut resource_order = Vec::new();
        {
            let stored = self
                .resources_stored
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let mut seen = HashSet::new();
            for (write, pending) in batch.iter().enumerate() {
                for key in &pending.encoded.resources.keys {
                    let pair = (key.time, key.id);
                    if !stored.contains(&pair) && seen.insert(pair) {
                        new_resources.push(pair);
                        resource_order.push((write as u32, key.row.clone()));
                    }
                }
            }
        }
        let mut resources_done = resource_order.is_empty();
        let mut index_done = false;
        let mut backoff = self.config.min_backoff;
        let mut attempt = 0u32;
        let started = Instant::now();
        loop {
            if batch.iter().all(|pending| pending.done.is_closed()) {
                metrics::counter!(metric_names::CLICKHOUSE_INSERTS_ABANDONED).increment(1);
                tracing::warn!(
                    n_rows,
                    attempts = attempt,
                    "every write in an insert stopped waiting; its senders send the spans again"
                );
                return;
            }
            attempt += 1;
            // The resources and the index first: a resource or an index row without its span
            // is harmless, a span without them would lack its resource's attributes or could
            // not be found by trace id.
            let result = async {
                if !resources_done {
                    self.insert(RESOURCE_TABLE, &resources, &resource_order)
                        .await?;
                    resources_done = true;
                    let mut stored = self
                        .resources_stored
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    if stored.len() + new_resources.len() > MAX_KNOWN_RESOURCE_ROWS {
                        stored.clear();
                    }
                    stored.extend(new_resources.iter().copied());
                }
                if !index_done {
                    self.insert(TRACE_INDEX_TABLE, &index, &index_order).await?;
                    index_done = true;
                }
                self.insert(SPANS_TABLE, &spans, &span_order).await
            }
            .await;
            match result {
                Ok(()) => {
                    metrics::counter!(metric_names::CLICKHOUSE_ROWS_INSERTED)
                        .increment(n_rows as u64);
                    tracing::debug!(
                        n_rows,
                        n_writes = batch.len(),
                        waited_ms =
                            batch
                                .first()
                                .map_or(0, |pending| pending.enqueued.elapsed().as_millis() as u64),
                        insert_ms = started.elapsed().as_millis() as u64,
                        "ClickHouse accepted an insert"
                    );
                    if attempt > 1 {
                        tracing::info!(
                            n_rows,
                            attempts = attempt,
                            seconds = started.elapsed().as_secs_f64(),
                            "ClickHouse accepted an insert after retries"
                        );
                    }
                    for pending in batch {
                        let _ = pending.done.send(());
                    }
                    return;
                }
                Err(error) => {
                    metrics::counter!(metric_names::CLICKHOUSE_INSERT_FAILURES).increment(1);
                    if attempt == 1 || attempt.is_multiple_of(10) {
                        tracing::warn!(
                            n_rows,
                            attempt,
                            %error,
                            "ClickHouse did not accept an insert; it is tried again"
                        );
                    }
                    self.set_last_error(error);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
            }
        }
    }

    /// Takes whole writes, oldest first, until `batch_rows` rows; skips writes whose writer
    /// stopped waiting.
    fn take_batch(&self) -> Vec<Pending> {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = Vec::new();
        let mut n_rows = 0;
        while let Some(pending) = queue.pop_front() {
            self.queued_rows.fetch_sub(pending.n_rows, Ordering::SeqCst);
            if pending.done.is_closed() {
                continue;
            }
            n_rows += pending.n_rows;
            batch.push(pending);
            if n_rows >= self.config.batch_rows {
                break;
            }
        }
        batch
    }

    async fn drop_expired_partitions(&self) -> Result<usize, StoreError> {
        let retention_s = self.config.retention.as_secs();
        let mut dropped = 0;
        for (url, client) in self.config.urls.iter().zip(&self.servers.clients) {
            // The resources last: a span's resource is never dropped before the span.
            for table in [SPANS_TABLE, TRACE_INDEX_TABLE, RESOURCE_TABLE] {
                let table = self.layout.storage_table(table);
                let expired: Vec<(String, u64)> = client
                    .query(
                        "SELECT partition_id, sum(rows) FROM system.parts \
                         WHERE database = ? AND table = ? AND active \
                         GROUP BY partition_id \
                         HAVING max(max_time) < now() - toIntervalSecond(?)",
                    )
                    .bind(self.layout.database.as_str())
                    .bind(table.as_str())
                    .bind(retention_s)
                    .fetch_all()
                    .await
                    .map_err(|error| store_error(&format!("listing partitions on {url}"), error))?;
                for (partition, n_rows) in expired {
                    client
                        .query(&format!(
                            "ALTER TABLE `{table}` DROP PARTITION ID '{partition}'"
                        ))
                        .execute()
                        .await
                        .map_err(|error| {
                            store_error(&format!("dropping partition {partition} on {url}"), error)
                        })?;
                    if table.starts_with(SPANS_TABLE) {
                        metrics::counter!(metric_names::STORE_ROWS_EXPIRED).increment(n_rows);
                    }
                    tracing::info!(
                        url,
                        table,
                        partition,
                        n_rows,
                        "dropped a partition past retention"
                    );
                    dropped += 1;
                }
            }
        }
        // Each resource is sent again once after every round: a late span of a dropped hour
        // needs its resource row anew, and so would every span after a table emptied by hand.
        self.resources_stored
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        Ok(dropped)
    }

    /// Runs a query whose answer is any table, as `JSONCompact`; what ClickHouse refuses
    /// (bad SQL, a limit reached) is the caller's error, with ClickHouse's message.
    async fn json(
        &self,
        what: &str,
        text: &str,
        settings: &[(&str, String)],
    ) -> Result<SqlResult, StoreError> {
        let answer = self
            .read(what, |client| {
                let mut query = client
                    .query(text)
                    .with_setting("output_format_json_quote_64bit_integers", "0");
                for (name, value) in settings {
                    query = query.with_setting(*name, value.clone());
                }
                async move {
                    let mut cursor = match query.fetch_bytes("JSONCompact") {
                        Ok(cursor) => cursor,
                        Err(clickhouse::error::Error::BadResponse(message)) => {
                            return Ok(Err(message))
                        }
                        Err(error) => return Err(error),
                    };
                    let mut body = Vec::new();
                    loop {
                        match cursor.next().await {
                            Ok(Some(chunk)) => {
                                if body.len() + chunk.len() > MAX_SQL_ANSWER_BYTES {
                                    return Ok(Err(format!(
                                        "the answer is larger than {} MiB; select fewer \
                                         columns or rows",
                                        MAX_SQL_ANSWER_BYTES >> 20
                                    )));
                                }
                                body.extend_from_slice(&chunk);
                            }
                            Ok(None) => return Ok(Ok(body)),
                            Err(clickhouse::error::Error::BadResponse(message)) => {
                                return Ok(Err(message))
                            }
                            Err(error) => return Err(error),
                        }
                    }
                }
            })
            .await?;
        let body = answer.map_err(|message| {
            StoreError::new(
                ErrorKind::BadRequest,
                format!("ClickHouse refused the query: {message}"),
            )
        })?;
        read::sql_result(&body).map_err(|error| {
            StoreError::new(
                ErrorKind::Internal,
                format!("ClickHouse answered with JSON spanflow cannot read: {error}"),
            )
        })
    }

    /// Runs a read on the current server, and on the next when it does not answer.
    async fn read<T, F, Fut>(&self, what: &str, run: F) -> Result<T, StoreError>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, clickhouse::error::Error>>,
    {
        let mut tried = 0;
        loop {
            let (server, client) = self.servers.current();
            tried += 1;
            match run(client.clone()).await {
                Ok(value) => return Ok(value),
                Err(
                    error @ (clickhouse::error::Error::Network(_)
                    | clickhouse::error::Error::TimedOut),
                ) if tried < self.servers.clients.len() => {
                    tracing::warn!(url = self.config.urls[server], %error, "ClickHouse read failed; trying the next server");
                    self.servers.fail_over(server);
                }
                Err(error) => {
                    return Err(store_error(
                        &format!("{what} on ClickHouse at {}", self.config.urls[server]),
                        error,
                    ))
                }
            }
        }
    }
}

/// How long a queue of a quarter of an insert or more waits for another write before its
/// insert starts.
pub const QUIET: Duration = Duration::from_millis(50);

/// Starts an insert once enough rows wait, the oldest write has waited long enough, or a
/// quarter of an insert waits and no write has come for [`QUIET`]; at most
/// `max_concurrent_inserts` at once.
async fn batch_loop(store: Arc<Inner>, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(store.config.max_concurrent_inserts.max(1)));
    loop {
        let queued = store.queued.notified();
        let (oldest, newest) = {
            let queue = store.queue.lock().unwrap_or_else(|p| p.into_inner());
            (
                queue.front().map(|pending| pending.enqueued),
                queue.back().map(|pending| pending.enqueued),
            )
        };
        let (Some(oldest), Some(newest)) = (oldest, newest) else {
            tokio::select! {
                () = queued => continue,
                () = stop.cancelled() => return,
            }
        };
        let due = tokio::time::Instant::from_std(oldest + store.config.batch_wait);
        let queued_rows = store.queued_rows.load(Ordering::SeqCst);
        // Past a quarter of an insert, a queue no write has joined for a while holds all that
        // its writers have in flight: they wait for this insert, and waiting longer only
        // delays them.
        let due = if queued_rows >= (store.config.batch_rows / 4).max(1) {
            due.min(tokio::time::Instant::from_std(newest + QUIET))
        } else {
            due
        };
        if queued_rows < store.config.batch_rows && tokio::time::Instant::now() < due {
            tokio::select! {
                () = queued => {}
                () = tokio::time::sleep_until(due) => {}
                () = stop.cancelled() => return,
            }
            continue;
        }
        drop(queued);
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("never closed"),
            () = stop.cancelled() => return,
        };
        let batch = store.take_batch();
        if batch.is_empty() {
            continue;
        }
        let store = store.clone();
        tokio::spawn(async move {
            store.insert_batch(batch).await;
            drop(slot);
        });
    }
}

async fn upkeep_loop(store: Arc<Inner>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(store.config.upkeep_interval) => {}
            () = stop.cancelled() => return,
        }
        if let Err(error) = store.drop_expired_partitions().await {
            tracing::warn!(%error, "dropping partitions past retention failed; tried again later");
        }
    }
}

#[async_trait::async_trait]
impl SpanStore for ClickHouseStore {
    async fn write(&self, rows: Vec<SpanRow>) -> Result<(), StoreError> {
        let prepared = self.prepare(rows)?;
        self.write_prepared(prepared).await
    }

    /// The rows encoded as `RowBinary`, with the keys an insert sorts them by.
    fn prepare(&self, rows: Vec<SpanRow>) -> Result<PreparedWrite, StoreError> {
        let mut encoder = WriteEncoder(WriteBuilder::new(rows.len()));
        for row in &rows {
            encoder.append(row);
        }
        drop(rows);
        Box::new(encoder).finish()
    }

    fn encoder(&self, n_rows: usize) -> Option<Box<dyn RowEncoder>> {
        Some(Box::new(WriteEncoder(WriteBuilder::new(n_rows))))
    }

    async fn write_prepared(&self, prepared: PreparedWrite) -> Result<(), StoreError> {
        let n_rows = prepared.n_rows();
        if n_rows == 0 {
            return Ok(());
        }
        let encoded: Encoded = prepared.into_form(self.backend())?;
        let inner = &self.inner;
        let wanted = u32::try_from(encoded.n_bytes())
            .unwrap_or(u32::MAX)
            .min(inner.room_bytes);
        let room = match tokio::time::timeout(
            inner.config.write_wait,
            inner.room.clone().acquire_many_owned(wanted),
        )
        .await
        {
            Ok(room) => room.expect("never closed"),
            Err(_) => {
                metrics::counter!(metric_names::STORE_WRITES_THROTTLED).increment(1);
                return Err(StoreError::new(
                    ErrorKind::Retryable,
                    format!(
                        "{} MiB wait for ClickHouse, the most the store buffers; ClickHouse is \
                         slow or down (last error: {})",
                        inner.buffered_bytes() >> 20,
                        inner.last_error()
                    ),
                ));
            }
        };
        metrics::gauge!(metric_names::CLICKHOUSE_BUFFER_BYTES).set(inner.buffered_bytes() as f64);
        let (done, accepted) = oneshot::channel();
        {
            let mut queue = inner.queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.push_back(Pending {
                encoded,
                n_rows,
                enqueued: Instant::now(),
                done,
                _room: room,
            });
            inner.queued_rows.fetch_add(n_rows, Ordering::SeqCst);
        }
        inner.queued.notify_one();
        let result = tokio::time::timeout(inner.config.write_timeout, accepted).await;
        metrics::gauge!(metric_names::CLICKHOUSE_BUFFER_BYTES).set(inner.buffered_bytes() as f64);
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(StoreError::new(
                ErrorKind::Unavailable,
                "the ClickHouse inserter stopped",
            )),
            Err(_) => {
                metrics::counter!(metric_names::CLICKHOUSE_WRITES_TIMED_OUT).increment(1);
                Err(StoreError::new(
                    ErrorKind::Retryable,
                    format!(
                        "ClickHouse has not accepted the spans within {} s (last error: {})",
                        inner.config.write_timeout.as_secs(),
                        inner.last_error()
                    ),
                ))
            }
        }
    }

    async fn trace(&self, trace_id: TraceId) -> Result<Vec<SpanRow>, StoreError> {
        let inner = &self.inner;
        let sql = read::placements_sql(&trace_id, TRACE_INDEX_TABLE);
        let placements: Vec<Placement> = inner
            .read("reading the trace index", |client| {
                let sql = sql.clone();
                async move { client.query(&sql).fetch_all().await }
            })
            .await?;
        if placements.is_empty() {
            return Ok(Vec::new());
        }
        let sql = read::trace_sql(&trace_id, &placements, SPANS_TABLE);
        let spans: Vec<StoredSpan> = inner
            .read("reading a trace", |client| {
                let query = read::bind_placements(client.query(&sql), &placements);
                async move { query.fetch_all().await }
            })
            .await?;
        inner.rows(spans).await
    }

    async fn search(&self, query: &SpanQuery) -> Result<Vec<SpanRow>, StoreError> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let inner = &self.inner;
        let search = SearchSql::new(query, inner.flavor, SPANS_TABLE, RESOURCE_TABLE);
        let hits: Vec<Hit> = inner
            .read("searching spans", |client| {
                let query = search.bind(client.query(&search.sql));
                async move { query.fetch_all().await }
            })
            .await?;
        let hits = match SearchSql::distinct(hits, query.limit) {
            Some(hits) => hits,
            None => {
                inner
                    .read("searching spans", |client| {
                        let query = search.bind(client.query(&search.exact));
                        async move { query.fetch_all().await }
                    })
                    .await?
            }
        };
        let mut found: HashMap<([u8; 16], [u8; 8]), StoredSpan> = HashMap::new();
        for chunk in hits.chunks(read::HITS_PER_FETCH) {
            let sql = read::fetch_hits_sql(chunk, SPANS_TABLE);
            let spans: Vec<StoredSpan> = inner
                .read("reading the spans a search found", |client| {
                    let query = read::bind_hits(client.query(&sql), chunk);
                    async move { query.fetch_all().await }
                })
                .await?;
            found.extend(spans.into_iter().map(|span| (span.key(), span)));
        }
        // In the order the first step found them; a span dropped by retention in between is
        // left out.
        inner
            .rows(
                hits.iter()
                    .filter_map(|hit| found.remove(&(hit.trace_id, hit.span_id)))
                    .collect(),
            )
            .await
    }

    async fn services(&self, range: TimeRange) -> Result<Vec<String>, StoreError> {
        let sql = read::services_sql(range, self.inner.flavor, SPANS_TABLE);
        let services: Vec<read::ServiceName> = self
            .inner
            .read("listing services", |client| {
                let query = client.query(&sql);
                async move { query.fetch_all().await }
            })
            .await?;
        Ok(services.into_iter().map(|row| row.app_service).collect())
    }

    async fn operations(
        &self,
        service: &str,
        range: TimeRange,
    ) -> Result<Vec<Operation>, StoreError> {
        let sql = read::operations_sql(range, self.inner.flavor, SPANS_TABLE);
        let operations: Vec<read::OperationRow> = self
            .inner
            .read("listing operations", |client| {
                let query = client.query(&sql).bind(service);
                async move { query.fetch_all().await }
            })
            .await?;
        Ok(operations
            .into_iter()
            .map(|row| Operation {
                name: row.endpoint,
                span_kind: SpanKind::from_i32(i32::from(row.span_kind)),
            })
            .collect())
    }

    async fn service_map(&self, range: TimeRange, by: MapBy) -> Result<Vec<Edge>, StoreError> {
        let sql = read::service_map_sql(range, by, self.inner.flavor, SPANS_TABLE);
        let result = self
            .inner
            .json("building the service map", &sql, &[])
            .await?;
        read::edges(&result)
    }

    async fn red(&self, query: &RedQuery) -> Result<Vec<RedPoint>, StoreError> {
        let sql = read::red_sql(query, self.inner.flavor, SPANS_TABLE);
        let result = self.inner.json("computing a RED series", &sql, &[]).await?;
        read::red_points(&result, query.by_operation)
    }

    async fn sql(&self, sql: &str, limits: &SqlLimits) -> Result<SqlResult, StoreError> {
        let mut prepared = spanflow_store::sql::prepare(sql, SqlDialect::ClickHouse)?;
        let (resources, key_sets) = crate::schema::shared_arrays_read(&prepared);
        if resources || key_sets {
            // The resources' attributes and the key sets are in `l7_resource`.
            prepared = spanflow_store::sql::replace_table(
                &prepared,
                SqlDialect::ClickHouse,
                &crate::schema::shared_join(SPANS_TABLE, RESOURCE_TABLE, resources, key_sets),
            )?;
        }
        // The client reads `?` as a placeholder; `??` is a literal one.
        let text = prepared.replace('?', "??");
        let seconds = limits.timeout.as_secs().max(1);
        // Reads only, and the limits below cannot be lifted by the query (its SETTINGS clause
        // is refused before it gets here).
        let settings = [
            ("readonly", "2".to_string()),
            ("max_result_rows", (limits.max_rows + 1).to_string()),
            ("result_overflow_mode", "break".to_string()),
            ("max_execution_time", seconds.to_string()),
            ("max_memory_usage", limits.max_memory_bytes.to_string()),
        ];
        let result = self.inner.json("running SQL", &text, &settings).await?;
        if result.values.len() > limits.max_rows {
            return Err(spanflow_store::sql::too_many_rows(limits.max_rows));
        }
        Ok(result)
    }

    fn backend(&self) -> &'static str {
        "clickhouse"
    }

    async fn maintain(&self) -> Result<(), StoreError> {
        self.inner.drop_expired_partitions().await.map(|_| ())
    }
}

fn not_as_written(error: String) -> StoreError {
    StoreError::new(
        ErrorKind::Internal,
        format!("a row in ClickHouse is not as spanflow writes it: {error}"),
    )
}

impl Inner {
    /// The span rows of `spans`, each with its resource's attributes and its attributes'
    /// names and types from `l7_resource` (through the cache); a span whose set is gone gets
    /// no attributes of it.
    async fn rows(&self, spans: Vec<StoredSpan>) -> Result<Vec<SpanRow>, StoreError> {
        let mut sets: HashMap<u64, Arc<SharedSet>> = HashMap::new();
        let mut missing = Vec::new();
        {
            let cache = self.set_cache.lock().unwrap_or_else(|p| p.into_inner());
            for span in &spans {
                for id in [span.resource_id(), span.attribute_keys_id()] {
                    if id != 0 && !sets.contains_key(&id) {
                        match cache.get(&id) {
                            Some(set) => {
                                sets.insert(id, set.clone());
                            }
                            None => missing.push(id),
                        }
                    }
                }
            }
        }
        missing.sort_unstable();
        missing.dedup();
        for chunk in missing.chunks(SETS_PER_FETCH) {
            let sql = read::sets_sql(chunk, RESOURCE_TABLE);
            let stored: Vec<read::StoredSet> = self
                .read("reading the spans' resources and key sets", |client| {
                    let query = client.query(&sql);
                    async move { query.fetch_all().await }
                })
                .await?;
            let mut cache = self.set_cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() + stored.len() > MAX_CACHED_SETS {
                cache.clear();
            }
            for set in stored {
                let (id, set) = set.into_shared();
                cache.insert(id, set.clone());
                sets.insert(id, set);
            }
        }
        spans
            .into_iter()
            .map(|span| {
                let resource = sets.get(&span.resource_id()).map(Arc::as_ref);
                let key_set = sets.get(&span.attribute_keys_id()).map(Arc::as_ref);
                span.into_row(resource, key_set)
            })
            .collect::<Result<_, _>>()
            .map_err(not_as_written)
    }
}

/// Adds the columns that tables made by an older spanflow lack, to `l7_flow_log` and
/// `l7_resource`: each storage table first, then (in a cluster) the `Distributed` table over
/// it.
async fn upgrade(
    client: &Client,
    layout: &crate::schema::Layout,
    flavor: Flavor,
    url: &str,
) -> Result<(), StoreError> {
    let resource_columns = crate::schema::resource_columns();
    let mut tables = Vec::new();
    for (table, columns) in [
        (SPANS_TABLE, crate::schema::COLUMNS),
        (RESOURCE_TABLE, &resource_columns[..]),
    ] {
        tables.push((layout.storage_table(table), columns));
        if layout.cluster.is_some() {
            tables.push((table.to_string(), columns));
        }
    }
    for (table, columns) in tables {
        let existing: Vec<String> = client
            .query("SELECT name FROM system.columns WHERE database = ? AND table = ?")
            .bind(&layout.database)
            .bind(&table)
            .fetch_all()
            .await
            .map_err(|error| {
                store_error(&format!("reading the columns of {table} at {url}"), error)
            })?;
        for statement in layout.upgrade_statements(&table, columns, flavor, &existing) {
            tracing::info!(
                url,
                statement,
                "adding a column that an older spanflow did not have"
            );
            client.query(&statement).execute().await.map_err(|error| {
                store_error(&format!("adding a column to {table} at {url}"), error)
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write built as rows are mapped, each row's resource freed before the next is made
    /// (so an address may come back holding another resource), is the write `prepare` makes
    /// of the same rows held whole.
    #[test]
    fn a_write_built_row_by_row_is_the_write_of_the_rows_whole() {
        use spanflow_model::{AttrValue, Attribute};
        use spanflow_store::conformance::row;
        let make = |n: u8| {
            let mut span = row(n / 4 + 1, n % 4 + 1, "s", "x", 1_700_000_000_000_000);
            let pod = format!("pod-{}", n / 2);
            span.resource_attributes =
                vec![Attribute::new("k8s.pod.name", AttrValue::String(pod))].into();
            span
        };
        let mut encoder = WriteEncoder(WriteBuilder::new(100));
        for n in 0..100 {
            encoder.append(&make(n));
        }
        let built: Encoded = Box::new(encoder)
            .finish()
            .unwrap()
            .into_form("clickhouse")
            .unwrap();
        let rows: Vec<SpanRow> = (0..100).map(make).collect();
        let mut whole = WriteEncoder(WriteBuilder::new(rows.len()));
        for row in &rows {
            whole.append(row);
        }
        let whole: Encoded = Box::new(whole)
            .finish()
            .unwrap()
            .into_form("clickhouse")
            .unwrap();
        assert_eq!(built.resources.keys.len(), 50, "a row a pod");
        assert_eq!(built.resources.bytes, whole.resources.bytes);
        assert_eq!(built.resources.keys, whole.resources.keys);
        assert_eq!(built.spans, whole.spans);
        assert_eq!(
            format!("{:?}", built.span_keys),
            format!("{:?}", whole.span_keys)
        );
        let index_rows = rowbinary::index_order(&[(&built.index[..], &built.index_keys[..])]);
        assert_eq!(index_rows.len(), 25, "a row a trace");
    }

    #[test]
    fn servers_on_this_host_are_told_apart_from_others() {
        for url in [
            "http://127.0.0.1:8123",
            "http://127.0.0.2:8123/",
            "http://localhost:8123",
            "https://LOCALHOST",
            "http://[::1]:8123",
            "http://user:secret@127.0.0.1:8123",
        ] {
            assert!(on_this_host(url), "{url}");
        }
        for url in [
            "http://10.0.0.5:8123",
            "http://clickhouse.observability.svc:8123",
            "http://[2001:db8::1]:8123",
            "http://localhost.example.com:8123",
            "not a url",
        ] {
            assert!(!on_this_host(url), "{url}");
        }
    }
}
