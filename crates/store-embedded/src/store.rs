//! [`EmbeddedStore`]: the write path (WAL, buffer, flush), reads that merge the buffer with the
//! files, and upkeep (flush by age, retention, disk limit, compaction) on a background task.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use arrow::array::{Array, StringArray, UInt8Array};
use arrow::record_batch::RecordBatch;
use spanflow_model::{metric_names, SpanKind, SpanRow, TraceId};
use spanflow_store::analytics::{Edge, MapBy, NodeKind, RedPoint, RedQuery, FAILED_SQL};
use spanflow_store::sql::{SqlDialect, SqlLimits, SqlResult};
use spanflow_store::{
    ErrorKind, Operation, PreparedWrite, RowEncoder, SpanQuery, SpanStore, StoreError, TimeRange,
};

use crate::manifest::{FileEntry, Manifest};
use crate::trace_index::TraceIndex;
use crate::wal::{Wal, WalConfig};
use crate::{batches, files, query, schema, EmbeddedError};

#[derive(Clone, Debug)]
pub struct EmbeddedConfig {
    pub data_dir: PathBuf,
    /// Width of a time partition (by span end time); retention drops whole partitions.
    pub partition_seconds: i64,
    /// The buffer is flushed to Parquet once it holds this many rows...
    pub flush_rows: usize,
    /// Past this many rows waiting for a flush, writes wait, and after `write_wait` fail as
    /// retryable: memory stays bounded when files cannot be written as fast as rows arrive.
    pub max_buffered_rows: usize,
    pub write_wait: Duration,
    /// ...or once its oldest row has waited this long.
    pub flush_interval: Duration,
    /// Partitions whose end is older than this are dropped.
    pub retention: Duration,
    /// When set, the oldest partitions are dropped while files and WAL take more than this.
    pub max_disk_bytes: Option<u64>,
    /// A partition with at least this many small files has them merged...
    pub compaction_min_files: usize,
    /// ...into files of at most this many rows; files this large are left alone. This bounds
    /// the memory a merge takes and keeps compaction from rewriting the same rows again.
    pub compaction_max_rows: u64,
    /// Memory the store's queries may hold together; past it a query spills to disk where it
    /// can, or fails with an error saying so.
    pub query_memory_bytes: usize,
    pub upkeep_interval: Duration,
}

impl EmbeddedConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> EmbeddedConfig {
        EmbeddedConfig {
            data_dir: data_dir.into(),
            partition_seconds: 3600,
            flush_rows: 64 * 1024,
            max_buffered_rows: 256 * 1024,
            write_wait: Duration::from_secs(5),
            flush_interval: Duration::from_secs(30),
            retention: Duration::from_secs(72 * 3600),
            max_disk_bytes: None,
            compaction_min_files: 8,
            compaction_max_rows: 256 * 1024,
            query_memory_bytes: 512 << 20,
            upkeep_interval: Duration::from_secs(1),
        }
    }

    /// The partition of a span ending at `time` (seconds): the start of its partition.
    fn partition_of(&self) -> impl Fn(i64) -> i64 + Copy + Send + 'static {
        let width = self.partition_seconds;
        move |time: i64| time.div_euclid(width) * width
    }
}

/// Rows written since the last flush, as the record batches they were written in (the same
/// batches the WAL holds), with the WAL entries they came from.
struct Buffer {
    batches: RwLock<Vec<RecordBatch>>,
    n_rows: AtomicUsize,
    max_seq: AtomicU64,
    created: Instant,
}

impl Buffer {
    fn new() -> Arc<Buffer> {
        Arc::new(Buffer {
            batches: RwLock::new(Vec::new()),
            n_rows: AtomicUsize::new(0),
            max_seq: AtomicU64::new(0),
            created: Instant::now(),
        })
    }

    fn push(&self, batch: RecordBatch) {
        let n_rows = batch.num_rows();
        self.batches
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(batch);
        self.n_rows.fetch_add(n_rows, Ordering::SeqCst);
    }

    fn len(&self) -> usize {
        self.n_rows.load(Ordering::SeqCst)
    }

    /// The batches, oldest first; cheap (they are shared, not copied).
    fn batches(&self) -> Vec<RecordBatch> {
        self.batches
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

struct State {
    active: Arc<Buffer>,
    /// Buffers being flushed: still read, no longer written.
    frozen: Vec<Arc<Buffer>>,
    manifest: Manifest,
    indexes: HashMap<u64, Arc<TraceIndex>>,
}

/// Parsed file footers kept for trace lookups: about 130 KB a file of 67,000 rows, so this
/// holds those of about 500 files, some 30 million spans.
const LOOKUP_CACHE_BYTES: usize = 64 << 20;

struct Inner {
    config: EmbeddedConfig,
    wal: Wal,
    state: RwLock<State>,
    /// Writers hold it shared from WAL append to buffer insert; a flush takes it exclusively to
    /// swap buffers, so every WAL entry at or below the frozen buffer's `max_seq` is in it.
    write_gate: tokio::sync::RwLock<()>,
    /// One flush at a time, so that `flushed_seq` only grows.
    flush_lock: tokio::sync::Mutex<()>,
    /// One retention and compaction pass at a time; flushes go on meanwhile.
    maintain_lock: tokio::sync::Mutex<()>,
    /// Held only while a new manifest is written and swapped in.
    manifest_lock: tokio::sync::Mutex<()>,
    next_file_id: AtomicU64,
    flush_wanted: Arc<tokio::sync::Notify>,
    lookup_cache: files::LookupCache,
    /// The memory pool and spill directory every query shares.
    queries: query::QueryRuntime,
    /// What the rows of recent writes held a row, for sizing the next write's builders.
    text_sizes: Arc<schema::TextSizes>,
}

/// The embedded store. Cloning shares it.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

impl EmbeddedStore {
    /// Opens the store in `config.data_dir`, replaying what the WAL holds beyond the files, and
    /// starts its upkeep task.
    pub async fn open(config: EmbeddedConfig) -> Result<EmbeddedStore, EmbeddedError> {
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|error| {
            EmbeddedError::io(format!("creating {}", data_dir.display()), error)
        })?;
        let manifest = Manifest::load(&data_dir)?;
        let (manifest, indexes) = tokio::task::spawn_blocking(move || {
            let mut indexes = HashMap::new();
            for entry in &manifest.files {
                indexes.insert(entry.id, Arc::new(files::load_index(&data_dir, entry)?));
            }
            Ok::<_, EmbeddedError>((manifest, indexes))
        })
        .await
        .map_err(|error| EmbeddedError::corrupt(format!("loading indexes: {error}")))??;
        let wal_config = WalConfig {
            dir: config.data_dir.join("wal"),
            ..WalConfig::new(config.data_dir.join("wal"))
        };
        let (wal, replayed) = Wal::open(wal_config, manifest.flushed_seq).await?;
        let active = Buffer::new();
        let mut n_replayed = 0usize;
        let partition_of = config.partition_of();
        let text_sizes: Arc<schema::TextSizes> = Default::default();
        for (seq, payload) in replayed.entries {
            for batch in replay_entry(payload, &text_sizes)? {
                n_replayed += batch.num_rows();
                // Every buffered batch is in file order (a record's rows come in the order they
                // were received, and earlier versions logged rows unsorted).
                active.push(batches::sort_batch(batch, partition_of)?);
            }
            active.max_seq.fetch_max(seq, Ordering::SeqCst);
        }
        tracing::info!(
            data_dir = %config.data_dir.display(),
            n_files = manifest.files.len(),
            n_rows_in_files = manifest.files.iter().map(|file| file.n_rows).sum::<u64>(),
            n_rows_replayed = n_replayed,
            n_torn_bytes = replayed.n_torn_bytes,
            "embedded store open"
        );
        let next_file_id = manifest.next_file_id;
        let queries = query::QueryRuntime::new(&config)?;
        let inner = Arc::new(Inner {
            config,
            queries,
            wal,
            state: RwLock::new(State {
                active,
                frozen: Vec::new(),
                manifest,
                indexes,
            }),
            write_gate: tokio::sync::RwLock::new(()),
            flush_lock: tokio::sync::Mutex::new(()),
            maintain_lock: tokio::sync::Mutex::new(()),
            manifest_lock: tokio::sync::Mutex::new(()),
            next_file_id: AtomicU64::new(next_file_id),
            flush_wanted: Arc::new(tokio::sync::Notify::new()),
            lookup_cache: files::LookupCache::new(LOOKUP_CACHE_BYTES),
            text_sizes,
        });
        tokio::spawn(flusher(Arc::downgrade(&inner)));
        tokio::spawn(maintainer(Arc::downgrade(&inner)));
        Ok(EmbeddedStore { inner })
    }

    fn state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.inner
            .state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes everything buffered to Parquet now.
    pub async fn flush(&self) -> Result<(), EmbeddedError> {
        flush(&self.inner).await
    }

    /// Runs retention, the disk limit and compaction now.
    pub async fn upkeep_now(&self) -> Result<(), EmbeddedError> {
        maintain(&self.inner).await
    }

    /// The files the store holds, oldest partition first.
    pub fn files(&self) -> Vec<FileEntry> {
        self.state().manifest.files.clone()
    }

    /// Bytes of parsed file footers kept for trace lookups.
    pub fn lookup_cache_bytes(&self) -> usize {
        self.inner.lookup_cache.n_bytes()
    }

    /// Rows waiting in memory (and the WAL) for a flush.
    pub fn n_buffered_rows(&self) -> usize {
        let state = self.state();
        state.active.len()
            + state
                .frozen
                .iter()
                .map(|buffer| buffer.len())
                .sum::<usize>()
    }

    /// Bytes the write-ahead log has written since the store opened, fsynced.
    pub fn wal_bytes_written(&self) -> u64 {
        self.inner.wal.bytes_written()
    }

    /// Bytes on disk: Parquet files and WAL.
    pub fn disk_bytes(&self) -> u64 {
        self.state().manifest.disk_bytes() + self.inner.wal.disk_bytes()
    }

    /// Runs read-only SQL over the table `l7_flow_log`.
    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>, EmbeddedError> {
        let (entries, buffers) = self.snapshot(|_, _| true);
        let paths = self.paths(&entries);
        query::sql(
            &self.inner.queries,
            paths,
            buffered_batches(&buffers),
            sql,
            None,
        )
        .await
    }

    /// The files that pass `keep`, and the buffers, newest first: what one read sees.
    fn snapshot(
        &self,
        keep: impl Fn(&FileEntry, Option<&TraceIndex>) -> bool,
    ) -> (Vec<FileEntry>, Vec<Arc<Buffer>>) {
        let state = self.state();
        let entries = state
            .manifest
            .files
            .iter()
            .filter(|entry| keep(entry, state.indexes.get(&entry.id).map(Arc::as_ref)))
            .cloned()
            .collect();
        let buffers = std::iter::once(state.active.clone())
            .chain(state.frozen.iter().rev().cloned())
            .collect();
        (entries, buffers)
    }

    /// Runs an aggregate over the files and buffers that may hold rows in `range`.
    async fn aggregate(
        &self,
        range: TimeRange,
        service: Option<&str>,
        sql: &str,
    ) -> Result<SqlResult, EmbeddedError> {
        let (entries, buffers) = self.snapshot(|entry, _| {
            range.end_us.is_none_or(|end| entry.min_start_time <= end)
                && range
                    .start_us
                    .is_none_or(|start| entry.max_start_time >= start)
        });
        query::aggregate(
            &self.inner.queries,
            self.paths(&entries),
            buffered_batches(&buffers),
            range,
            service,
            sql,
        )
        .await
    }

    /// The distinct values of `columns` over the files and buffers that may hold rows in
    /// `range`, of `service` when given.
    async fn distinct(
        &self,
        range: TimeRange,
        service: Option<&str>,
        columns: &[&str],
    ) -> Result<Vec<RecordBatch>, EmbeddedError> {
        let (entries, buffers) = self.snapshot(|entry, _| {
            range.end_us.is_none_or(|end| entry.min_start_time <= end)
                && range
                    .start_us
                    .is_none_or(|start| entry.max_start_time >= start)
        });
        query::distinct(
            &self.inner.queries,
            self.paths(&entries),
            buffered_batches(&buffers),
            range,
            service,
            columns,
        )
        .await
    }

    fn paths(&self, entries: &[FileEntry]) -> Vec<query::FilePath> {
        entries
            .iter()
            .map(|entry| query::FilePath {
                path: self
                    .inner
                    .config
                    .data_dir
                    .join(entry.relative_path())
                    .display()
                    .to_string(),
                format: entry.format,
            })
            .collect()
    }

    /// Stops accepting writes and flushes the buffer, so that a restart replays nothing.
    pub async fn close(self) -> Result<(), EmbeddedError> {
        self.flush().await
    }
}

#[async_trait::async_trait]
impl SpanStore for EmbeddedStore {
    async fn write(&self, rows: Vec<SpanRow>) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let partition_of = self.inner.config.partition_of();
        let prepared = tokio::task::spawn_blocking(move || prepare(rows, partition_of))
            .await
            .map_err(|error| {
                StoreError::new(spanflow_store::ErrorKind::Internal, error.to_string())
            })??;
        self.write_prepared(prepared).await
    }

    fn prepare(&self, rows: Vec<SpanRow>) -> Result<PreparedWrite, StoreError> {
        Ok(prepare(rows, self.inner.config.partition_of())?)
    }

    fn encoder(&self, n_rows: usize) -> Option<Box<dyn RowEncoder>> {
        let sizes = &self.inner.text_sizes;
        Some(Box::new(Encoder::new(
            n_rows,
            self.inner.config.partition_seconds,
            sizes,
        )))
    }

    async fn write_prepared(&self, prepared: PreparedWrite) -> Result<(), StoreError> {
        if prepared.n_rows() == 0 {
            return Ok(());
        }
        let Prepared { batch, payload } = prepared.into_form(self.backend())?;
        let deadline = Instant::now() + self.inner.config.write_wait;
        while self.n_buffered_rows() >= self.inner.config.max_buffered_rows {
            self.inner.flush_wanted.notify_one();
            if Instant::now() >= deadline {
                metrics::counter!(metric_names::STORE_WRITES_THROTTLED).increment(1);
                return Err(StoreError::new(
                    spanflow_store::ErrorKind::Retryable,
                    format!(
                        "the store is behind writing files ({} rows wait for a flush); retry later",
                        self.n_buffered_rows()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let gate = self.inner.write_gate.read().await;
        let seq = self
            .inner
            .wal
            .append(payload)
            .await
            .map_err(EmbeddedError::from)?;
        let active = self.state().active.clone();
        active.max_seq.fetch_max(seq, Ordering::SeqCst);
        active.push(batch);
        drop(gate);
        if active.len() >= self.inner.config.flush_rows {
            self.inner.flush_wanted.notify_one();
        }
        Ok(())
    }

    async fn trace(&self, trace_id: TraceId) -> Result<Vec<SpanRow>, StoreError> {
        let (entries, buffers) =
            self.snapshot(|_, index| index.is_none_or(|index| index.may_contain(&trace_id)));
        let mut rows = if entries.is_empty() {
            Vec::new()
        } else {
            let store = self.clone();
            blocking(move || {
                let data_dir = &store.inner.config.data_dir;
                let mut rows = Vec::new();
                // Files in id order, so a later copy of a span replaces an earlier one below.
                for entry in &entries {
                    for batch in files::read_trace(
                        data_dir,
                        entry,
                        trace_id.as_bytes(),
                        &store.inner.lookup_cache,
                    )? {
                        rows.extend(rows_of(&batch)?);
                    }
                }
                Ok(rows)
            })
            .await?
        };
        for batch in buffered_batches(&buffers) {
            if let Some(found) = batches::trace_rows(&batch, &trace_id) {
                let found = schema::from_buffer(&found)
                    .and_then(|found| schema::from_file(&found))
                    .map_err(|error| EmbeddedError::corrupt(error.to_string()))?;
                rows.extend(rows_of(&found)?);
            }
        }
        // Later rows win: a span written again after a flush replaces the flushed copy.
        let mut by_span = HashMap::with_capacity(rows.len());
        for row in rows {
            by_span.insert(row.span_id, row);
        }
        let mut rows: Vec<SpanRow> = by_span.into_values().collect();
        rows.sort_by_key(|row| (row.start_time, row.span_id));
        Ok(rows)
    }

    async fn search(&self, span_query: &SpanQuery) -> Result<Vec<SpanRow>, StoreError> {
        let (mut entries, buffers) = self.snapshot(|entry, _| {
            span_query
                .start_time_min_us
                .is_none_or(|min| entry.max_start_time >= min)
                && span_query
                    .start_time_max_us
                    .is_none_or(|max| entry.min_start_time <= max)
        });
        let limit = span_query.limit;
        if limit == 0 {
            return Ok(Vec::new());
        }
        // The buffer first (its rows win over a flushed copy of the same span), then the files
        // newest first, until the files left cannot hold a row newer than the newest `limit`
        // found: a search for recent spans reads the recent files only.
        let mut found = query::search_rows(
            &self.inner.queries,
            Vec::new(),
            buffered_batches(&buffers),
            span_query,
        )
        .await?;
        entries.sort_by_key(|entry| (std::cmp::Reverse(entry.max_start_time), entry.id));
        let mut remaining = entries.as_slice();
        while !remaining.is_empty() {
            if found.len() >= limit
                && found
                    .get(limit.saturating_sub(1))
                    .is_some_and(|last| remaining[0].max_start_time < last.start_time)
            {
                break;
            }
            let (chunk, rest) = remaining.split_at(remaining.len().min(SEARCH_FILES_PER_QUERY));
            remaining = rest;
            let rows = query::search_rows(
                &self.inner.queries,
                self.paths(chunk),
                Vec::new(),
                span_query,
            )
            .await?;
            found.extend(rows);
            found = newest_distinct(found, limit);
        }
        Ok(newest_distinct(found, limit))
    }

    async fn services(&self, range: TimeRange) -> Result<Vec<String>, StoreError> {
        let batches = self.distinct(range, None, &["app_service"]).await?;
        let mut services = BTreeSet::new();
        for batch in &batches {
            let names = column::<StringArray>(batch, "app_service")?;
            services.extend(names.iter().flatten().map(str::to_string));
        }
        Ok(services.into_iter().collect())
    }

    async fn operations(
        &self,
        service: &str,
        range: TimeRange,
    ) -> Result<Vec<Operation>, StoreError> {
        let batches = self
            .distinct(range, Some(service), &["endpoint", "span_kind"])
            .await?;
        let mut operations = BTreeSet::new();
        for batch in &batches {
            let names = column::<StringArray>(batch, "endpoint")?;
            let kinds = column::<UInt8Array>(batch, "span_kind")?;
            for (name, kind) in names.iter().zip(kinds.iter()) {
                operations.insert(Operation {
                    name: name.unwrap_or_default().to_string(),
                    span_kind: SpanKind::from_i32(i32::from(kind.unwrap_or_default())),
                });
            }
        }
        Ok(operations.into_iter().collect())
    }

    async fn service_map(&self, range: TimeRange, by: MapBy) -> Result<Vec<Edge>, StoreError> {
        let (caller_node, callee_node) = (by.node_sql(0), by.node_sql(1));
        let system_node = by.node_or_sql(1, "l7_protocol_str");
        let percentiles = percentile_sql("duration");
        let own_percentiles = percentile_sql("response_duration");
        // A call is a client (or producer) span and the server (or consumer) span whose
        // parent it is. Grouping both sides by (trace id, the caller's span id) pairs them
        // where a hash join would hold one side in memory whole: an aggregate can spill.
        let sql = format!(
            "WITH sides AS ( \
                 SELECT trace_id, span_id AS link, {caller_node} AS node, 0 AS side, \
                     CAST(0 AS BIGINT UNSIGNED) AS response_duration, 0 AS failed \
                 FROM spans WHERE span_kind IN (3, 4) \
                 UNION ALL \
                 SELECT trace_id, parent_span_id AS link, {callee_node} AS node, 1 AS side, \
                     response_duration, CASE WHEN {FAILED_SQL} THEN 1 ELSE 0 END AS failed \
                 FROM spans WHERE span_kind IN (2, 5) AND parent_span_id IS NOT NULL), \
             calls AS ( \
                 SELECT max(CASE WHEN side = 0 THEN node END) AS caller, \
                     max(CASE WHEN side = 1 THEN node END) AS callee, \
                     max(CASE WHEN side = 1 THEN response_duration END) AS duration, \
                     sum(side) AS n, sum(failed) AS failed \
                 FROM sides GROUP BY trace_id, link) \
             SELECT caller, callee, 0 AS kind, sum(n) AS calls, sum(failed) AS errors, {percentiles} \
             FROM calls WHERE caller IS NOT NULL AND callee IS NOT NULL AND caller <> callee \
             GROUP BY caller, callee \
             UNION ALL \
             SELECT {caller_node} AS caller, {system_node} AS callee, \
                 CASE WHEN l7_protocol >= 100 THEN 2 ELSE 1 END AS kind, count(*) AS calls, \
                 sum(CASE WHEN {FAILED_SQL} THEN 1 ELSE 0 END) AS errors, {own_percentiles} \
             FROM spans WHERE span_kind IN (3, 4) AND l7_protocol_str <> '' \
                 AND (l7_protocol BETWEEN 60 AND 82 OR l7_protocol BETWEEN 100 AND 107) \
             GROUP BY {caller_node}, {system_node}, CASE WHEN l7_protocol >= 100 THEN 2 ELSE 1 END"
        );
        let result = self.aggregate(range, None, &sql).await?;
        edges(&result)
    }

    async fn red(&self, red: &RedQuery) -> Result<Vec<RedPoint>, StoreError> {
        let step = red.step_us.max(1);
        let operation = if red.by_operation { "endpoint" } else { "''" };
        let sql = format!(
            "SELECT CAST(start_time AS BIGINT) / {step} * {step} AS bucket, \
                 {operation} AS operation, count(*) AS calls, \
                 sum(CASE WHEN {FAILED_SQL} THEN 1 ELSE 0 END) AS errors, {} \
             FROM spans WHERE span_kind IN (2, 5) GROUP BY 1, 2",
            percentile_sql("response_duration")
        );
        let result = self.aggregate(red.range, Some(&red.service), &sql).await?;
        red_points(&result, red.by_operation)
    }

    async fn sql(&self, sql: &str, limits: &SqlLimits) -> Result<SqlResult, StoreError> {
        let prepared = spanflow_store::sql::prepare(sql, SqlDialect::DataFusion)?;
        let (entries, buffers) = self.snapshot(|_, _| true);
        let paths = self.paths(&entries);
        let run = query::sql(
            &self.inner.queries,
            paths,
            buffered_batches(&buffers),
            &prepared,
            Some(limits.max_rows.saturating_add(1)),
        );
        let batches = tokio::time::timeout(limits.timeout, run)
            .await
            .map_err(|_| {
                StoreError::new(
                    ErrorKind::BadRequest,
                    format!(
                        "the query ran past its time limit of {} s; narrow it with a time range \
                         or a LIMIT",
                        limits.timeout.as_secs_f64()
                    ),
                )
            })??;
        let result = query::to_json(&batches)?;
        if result.values.len() > limits.max_rows {
            return Err(spanflow_store::sql::too_many_rows(limits.max_rows));
        }
        Ok(result)
    }

    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn maintain(&self) -> Result<(), StoreError> {
        self.flush().await?;
        self.upkeep_now().await.map_err(Into::into)
    }
}

/// Files one search query reads at a time: enough to keep both query threads busy, few enough
/// that a search for recent spans stops early.
const SEARCH_FILES_PER_QUERY: usize = 2;

/// A write's batch, built, sorted into file order (so that a flush writes it as it is), and
/// encoded for the WAL.
struct Prepared {
    batch: RecordBatch,
    payload: Vec<u8>,
}

fn prepare(
    rows: Vec<SpanRow>,
    partition_of: impl Fn(i64) -> i64,
) -> Result<PreparedWrite, EmbeddedError> {
    let n_rows = rows.len();
    let (batch, payload) = prepare_batch(rows, partition_of)?;
    Ok(PreparedWrite::new(n_rows, Prepared { batch, payload }))
}

/// The batch a write buffers for `rows`, in file order, and the write-ahead-log entry it
/// appends: all of a write's work before the log.
pub fn prepare_batch(
    rows: Vec<SpanRow>,
    partition_of: impl Fn(i64) -> i64,
) -> Result<(RecordBatch, Vec<u8>), EmbeddedError> {
    let batch = schema::rows_to_buffer(&rows);
    drop(rows);
    prepare_buffer(batch, partition_of)
}

/// The batch a write buffers for a buffer built from its rows, and the write-ahead-log entry it
/// appends.
pub fn prepare_buffer(
    batch: RecordBatch,
    partition_of: impl Fn(i64) -> i64,
) -> Result<(RecordBatch, Vec<u8>), EmbeddedError> {
    let batch = batches::sort_batch(batch, partition_of)?;
    let payload = encode_batch(&batch);
    Ok((batch, payload))
}

/// The batch a write buffers for a buffer built from rows mapped from `record`
/// ([`spanflow_otlp::record`]), and the write-ahead-log entry it appends: the record itself, so
/// that neither an encoding of the rows nor its compression is needed. The record must map to
/// the batch's rows.
pub fn prepare_recorded(
    batch: RecordBatch,
    record: Vec<u8>,
    partition_of: impl Fn(i64) -> i64,
) -> Result<(RecordBatch, Vec<u8>), EmbeddedError> {
    Ok((batches::sort_batch(batch, partition_of)?, record))
}

/// A write built as its rows are mapped ([`SpanStore::encoder`]): each row appended to the
/// buffer's builders while it is in cache, then sorted, and logged as the record of payloads
/// the rows were mapped from where there is one ([`prepare_recorded`]), else encoded as
/// [`prepare_batch`] does.
struct Encoder {
    builder: schema::BufferBuilder,
    partition_seconds: i64,
    sizes: Arc<schema::TextSizes>,
    record: Option<Vec<u8>>,
}

impl Encoder {
    fn new(n_rows: usize, partition_seconds: i64, sizes: &Arc<schema::TextSizes>) -> Encoder {
        Encoder {
            builder: schema::BufferBuilder::expecting(n_rows, sizes),
            partition_seconds,
            sizes: sizes.clone(),
            record: None,
        }
    }

    fn finish_batch(self) -> Result<(usize, RecordBatch, Vec<u8>), EmbeddedError> {
        let n_rows = self.builder.len();
        let batch = self.builder.finish_noting(&self.sizes);
        let width = self.partition_seconds;
        let partition_of = move |time: i64| time.div_euclid(width) * width;
        let record = self.record.filter(|record| {
            let n = spanflow_otlp::record::n_rows(record);
            let agrees = n == Some(n_rows as u64);
            debug_assert!(agrees, "a record of {n:?} rows for {n_rows}");
            if !agrees {
                tracing::error!(
                    n_rows,
                    n_recorded = ?n,
                    "a write's record of payloads does not map to its rows; its rows are logged"
                );
            }
            agrees
        });
        let (batch, payload) = match record {
            Some(record) => prepare_recorded(batch, record, partition_of)?,
            None => prepare_buffer(batch, partition_of)?,
        };
        Ok((n_rows, batch, payload))
    }
}

impl RowEncoder for Encoder {
    fn append(&mut self, row: &SpanRow) {
        self.builder.append(row);
    }

    fn mapped_from(&mut self, record: Vec<u8>) {
        self.record = Some(record);
    }

    fn takes_record(&self) -> bool {
        true
    }

    fn finish(self: Box<Self>) -> Result<PreparedWrite, StoreError> {
        let (n_rows, batch, payload) = self.finish_batch()?;
        Ok(PreparedWrite::new(n_rows, Prepared { batch, payload }))
    }
}

/// The rows a WAL entry holds, as the buffer holds them (not yet sorted): decoded, or mapped
/// again from the record of payloads the entry is.
fn replay_entry(
    payload: Vec<u8>,
    sizes: &schema::TextSizes,
) -> Result<Vec<RecordBatch>, EmbeddedError> {
    if !spanflow_otlp::record::is_record(&payload) {
        return decode_batches(&payload);
    }
    let mut builder = schema::BufferBuilder::expecting(0, sizes);
    let replayed = spanflow_otlp::record::replay(payload.into(), &mut |row| builder.append(row))
        .map_err(|error| EmbeddedError::corrupt(format!("WAL entry: {error}")))?;
    if replayed.n_rows != replayed.n_rows_recorded {
        tracing::warn!(
            n_rows = replayed.n_rows,
            n_rows_recorded = replayed.n_rows_recorded,
            "a WAL entry of received payloads mapped to another number of rows than when it was written"
        );
    }
    Ok(vec![builder.finish_noting(sizes)])
}

/// The newest `limit` rows, newest first, one per span: of several copies the first in `rows`.
fn newest_distinct(rows: Vec<SpanRow>, limit: usize) -> Vec<SpanRow> {
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    let mut rows: Vec<SpanRow> = rows
        .into_iter()
        .filter(|row| seen.insert((row.trace_id, row.span_id)))
        .collect();
    rows.sort_by_key(|row| (std::cmp::Reverse(row.start_time), row.trace_id, row.span_id));
    rows.truncate(limit);
    rows
}

/// The buffers' batches, oldest first. `buffers` is newest first, as [`EmbeddedStore::snapshot`]
/// returns them.
/// The three latency percentiles of `column`, as DataFusion writes them.
fn percentile_sql(column: &str) -> String {
    [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)]
        .map(|(name, q)| {
            format!("approx_percentile_cont({q}) WITHIN GROUP (ORDER BY {column}) AS {name}")
        })
        .join(", ")
}

fn number(value: &serde_json::Value) -> f64 {
    value.as_f64().unwrap_or_default()
}

fn edges(result: &SqlResult) -> Result<Vec<Edge>, StoreError> {
    let mut edges: Vec<Edge> = result
        .values
        .iter()
        .map(|row| Edge {
            caller: row[0].as_str().unwrap_or_default().to_string(),
            callee: row[1].as_str().unwrap_or_default().to_string(),
            callee_kind: match row[2].as_i64() {
                Some(1) => NodeKind::Database,
                Some(2) => NodeKind::Messaging,
                _ => NodeKind::Service,
            },
            calls: row[3].as_u64().unwrap_or_default(),
            errors: row[4].as_u64().unwrap_or_default(),
            p50_us: number(&row[5]),
            p95_us: number(&row[6]),
            p99_us: number(&row[7]),
        })
        .collect();
    edges.sort_by(|a, b| {
        (&a.caller, &a.callee, a.callee_kind).cmp(&(&b.caller, &b.callee, b.callee_kind))
    });
    Ok(edges)
}

fn red_points(result: &SqlResult, by_operation: bool) -> Result<Vec<RedPoint>, StoreError> {
    let mut points: Vec<RedPoint> = result
        .values
        .iter()
        .map(|row| RedPoint {
            time_us: row[0].as_i64().unwrap_or_default(),
            operation: by_operation.then(|| row[1].as_str().unwrap_or_default().to_string()),
            calls: row[2].as_u64().unwrap_or_default(),
            errors: row[3].as_u64().unwrap_or_default(),
            p50_us: number(&row[4]),
            p95_us: number(&row[5]),
            p99_us: number(&row[6]),
        })
        .collect();
    points.sort_by(|a, b| (a.time_us, &a.operation).cmp(&(b.time_us, &b.operation)));
    Ok(points)
}

/// A column of a query's result by name.
fn column<'a, T: Array + 'static>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a T, EmbeddedError> {
    schema::column(batch, name).map_err(|error| EmbeddedError::corrupt(error.to_string()))
}

fn buffered_batches(buffers: &[Arc<Buffer>]) -> Vec<RecordBatch> {
    buffers
        .iter()
        .rev()
        .flat_map(|buffer| buffer.batches())
        .collect()
}

fn rows_of(batch: &RecordBatch) -> Result<Vec<SpanRow>, EmbeddedError> {
    schema::batch_to_rows(batch).map_err(|error| EmbeddedError::corrupt(error.to_string()))
}

/// The first bytes of a WAL payload of this version: the length of an Arrow IPC stream
/// (little-endian `u32`) follows, then the stream as one LZ4 block. Payloads without it are
/// IPC streams compressed buffer by buffer, as earlier versions logged them and as a stream
/// longer than [`MAX_IPC_BYTES`] is logged (an IPC stream starts with `0xFFFFFFFF`).
const LZ4_IPC: [u8; 4] = *b"SFW1";

/// The longest IPC stream a one-block payload may say it holds, so that a damaged length does
/// not ask a replay for more memory than a write could have needed.
const MAX_IPC_BYTES: usize = 1 << 30;

/// A batch as the WAL's payload: an Arrow IPC stream, compressed whole as one LZ4 block. One
/// block instead of a frame per buffer (Arrow's own IPC compression) spares each buffer an
/// encoder, its tables and their fresh pages.
fn encode_batch(batch: &RecordBatch) -> Vec<u8> {
    encode_batch_within(batch, MAX_IPC_BYTES)
}

/// [`encode_batch`], but a stream longer than `max_ipc_bytes`, which a replay would refuse as
/// one block, is logged as earlier versions logged it: compressed buffer by buffer.
fn encode_batch_within(batch: &RecordBatch, max_ipc_bytes: usize) -> Vec<u8> {
    thread_local! {
        // The stream before compression, kept for the thread's next batch: a buffer of a few
        // MiB allocated afresh each time costs the kernel's zeroing of its pages.
        static IPC: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        /// The compressed stream, kept likewise.
        static OUT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    IPC.with(|ipc| {
        let mut ipc = ipc.borrow_mut();
        ipc.clear();
        write_stream(&mut ipc, batch, Default::default());
        if ipc.len() > max_ipc_bytes {
            *ipc = Vec::new();
            return frame_compressed(batch);
        }
        let header = LZ4_IPC.len() + 4;
        let payload = OUT.with(|out| {
            let mut out = out.borrow_mut();
            // Zeroed once, when it grows: compressing into a fresh buffer of the worst case's
            // size cost the zeroing of its pages at every write.
            let worst = header + lz4_flex::block::get_maximum_output_size(ipc.len());
            if out.len() < worst {
                out.resize(worst, 0);
            }
            out[..LZ4_IPC.len()].copy_from_slice(&LZ4_IPC);
            out[LZ4_IPC.len()..header].copy_from_slice(&(ipc.len() as u32).to_le_bytes());
            let n = lz4_flex::block::compress_into(&ipc, &mut out[header..worst])
                .expect("the output is sized for the worst case");
            let payload = out[..header + n].to_vec();
            if out.capacity() > 64 << 20 {
                *out = Vec::new();
            }
            payload
        });
        if ipc.capacity() > 64 << 20 {
            *ipc = Vec::new();
        }
        payload
    })
}

/// A batch as an IPC stream compressed buffer by buffer (Arrow's LZ4 frames).
fn frame_compressed(batch: &RecordBatch) -> Vec<u8> {
    let mut bytes = Vec::new();
    let options = arrow::ipc::writer::IpcWriteOptions::default()
        .try_with_compression(Some(arrow::ipc::CompressionType::LZ4_FRAME))
        .expect("LZ4 is built in");
    write_stream(&mut bytes, batch, options);
    bytes
}

/// Appends `batch` to `out` as one IPC stream.
fn write_stream(
    out: &mut Vec<u8>,
    batch: &RecordBatch,
    options: arrow::ipc::writer::IpcWriteOptions,
) {
    let mut writer =
        arrow::ipc::writer::StreamWriter::try_new_with_options(out, &batch.schema(), options)
            .expect("writing IPC to memory cannot fail");
    writer
        .write(batch)
        .expect("writing IPC to memory cannot fail");
    writer.finish().expect("writing IPC to memory cannot fail");
}

fn decode_batches(payload: &[u8]) -> Result<Vec<RecordBatch>, EmbeddedError> {
    let decompressed;
    let ipc = match payload.strip_prefix(&LZ4_IPC) {
        Some(rest) => {
            let (length, block) = rest
                .split_first_chunk::<4>()
                .ok_or_else(|| EmbeddedError::corrupt("WAL entry: cut short before its length"))?;
            let length = u32::from_le_bytes(*length) as usize;
            if length > MAX_IPC_BYTES {
                return Err(EmbeddedError::corrupt(format!(
                    "WAL entry: says it holds {length} bytes, more than {MAX_IPC_BYTES}"
                )));
            }
            let mut out = vec![0; length];
            let n = lz4_flex::block::decompress_into(block, &mut out)
                .map_err(|error| EmbeddedError::corrupt(format!("WAL entry: {error}")))?;
            if n != length {
                return Err(EmbeddedError::corrupt(format!(
                    "WAL entry: {n} bytes where it says {length}"
                )));
            }
            decompressed = out;
            &decompressed[..]
        }
        None => payload,
    };
    let reader = arrow::ipc::reader::StreamReader::try_new(ipc, None)
        .map_err(|error| EmbeddedError::corrupt(format!("WAL entry is not Arrow IPC: {error}")))?;
    let mut batches = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|error| EmbeddedError::corrupt(format!("WAL entry: {error}")))?;
        if batches::has_schema(&batch, &schema::buffer_schema()) {
            batches.push(batch);
            continue;
        }
        if let Some(batch) = schema::recast_to_buffer(&batch) {
            let batch =
                batch.map_err(|error| EmbeddedError::corrupt(format!("WAL entry: {error}")))?;
            batches.push(batch);
            continue;
        }
        // Rows logged by versions that buffered them as the row schema has them.
        batches::check_schema(&batch, "a WAL entry")?;
        let batch = schema::to_buffer(&batch)
            .map_err(|error| EmbeddedError::corrupt(format!("WAL entry: {error}")))?;
        batches.push(batch);
    }
    Ok(batches)
}

/// Writes a new manifest made from the current one by `change`, and swaps it in: the only place
/// the manifest changes. Indexes of new files go in before the manifest names them.
async fn update_manifest(
    inner: &Arc<Inner>,
    new_indexes: Vec<(u64, TraceIndex)>,
    change: impl FnOnce(&mut Manifest),
) -> Result<(), EmbeddedError> {
    let _manifest = inner.manifest_lock.lock().await;
    let mut manifest = inner
        .state
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .manifest
        .clone();
    change(&mut manifest);
    manifest.next_file_id = manifest
        .next_file_id
        .max(inner.next_file_id.load(Ordering::SeqCst));
    let data_dir = inner.config.data_dir.clone();
    let to_store = manifest.clone();
    tokio::task::spawn_blocking(move || to_store.store(&data_dir))
        .await
        .map_err(|error| EmbeddedError::corrupt(format!("manifest task failed: {error}")))??;
    let mut state = inner
        .state
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for (id, index) in new_indexes {
        state.indexes.insert(id, Arc::new(index));
    }
    state
        .indexes
        .retain(|id, _| manifest.files.iter().any(|entry| entry.id == *id));
    state.manifest = manifest;
    let n_spans = state
        .manifest
        .files
        .iter()
        .map(|entry| entry.n_rows)
        .sum::<u64>() as usize
        + state.active.len()
        + state
            .frozen
            .iter()
            .map(|buffer| buffer.len())
            .sum::<usize>();
    drop(state);
    metrics::gauge!(metric_names::STORE_SPANS).set(n_spans as f64);
    Ok(())
}

/// Runs a blocking job on the blocking pool.
async fn blocking<T: Send + 'static>(
    job: impl FnOnce() -> Result<T, EmbeddedError> + Send + 'static,
) -> Result<T, EmbeddedError> {
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|error| EmbeddedError::corrupt(format!("background task failed: {error}")))?
}

/// Freezes the active buffer and writes every frozen buffer to one file per partition. A
/// failed flush leaves its buffers frozen (still read, still in the WAL) for the next one.
async fn flush(inner: &Arc<Inner>) -> Result<(), EmbeddedError> {
    let _flush = inner.flush_lock.lock().await;
    let frozen: Vec<Arc<Buffer>> = {
        let _gate = inner.write_gate.write().await;
        let mut state = inner
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.active.len() > 0 {
            let active = std::mem::replace(&mut state.active, Buffer::new());
            state.frozen.push(active);
        }
        state.frozen.clone()
    };
    if frozen.is_empty() {
        return Ok(());
    }
    let flushed_seq = frozen
        .iter()
        .map(|buffer| buffer.max_seq.load(Ordering::SeqCst))
        .max()
        .unwrap_or(0);
    // Oldest buffer first, so that a span written again later wins.
    let buffered: Vec<RecordBatch> = frozen.iter().flat_map(|buffer| buffer.batches()).collect();
    let data_dir = inner.config.data_dir.clone();
    let partition_of = inner.config.partition_of();
    let next_file_id = Arc::clone(inner);
    let (written, n_rows) = blocking(move || {
        let parts = batches::runs_by_partition(&buffered, partition_of)?;
        drop(buffered);
        let n_rows: usize = parts
            .iter()
            .flat_map(|(_, runs)| runs)
            .map(RecordBatch::num_rows)
            .sum();
        let first_id = next_file_id
            .next_file_id
            .fetch_add(parts.len() as u64, Ordering::SeqCst);
        let mut written = Vec::new();
        for (offset, (partition, runs)) in parts.iter().enumerate() {
            written.push(files::write_file(
                &data_dir,
                first_id + offset as u64,
                *partition,
                runs,
                |run| {
                    schema::buffer_to_file(run)
                        .map_err(|error| EmbeddedError::corrupt(format!("buffered rows: {error}")))
                },
            )?);
        }
        Ok((written, n_rows))
    })
    .await?;
    let entries: Vec<FileEntry> = written.iter().map(|(entry, _)| entry.clone()).collect();
    let indexes = written
        .into_iter()
        .map(|(entry, index)| (entry.id, index))
        .collect();
    update_manifest(inner, indexes, |manifest| {
        manifest.flushed_seq = manifest.flushed_seq.max(flushed_seq);
        manifest.files.extend(entries);
    })
    .await?;
    inner
        .state
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .frozen
        .retain(|buffer| !frozen.iter().any(|flushed| Arc::ptr_eq(buffer, flushed)));
    inner.wal.trim_through(flushed_seq).await?;
    metrics::counter!(metric_names::STORE_ROWS_FLUSHED).increment(n_rows as u64);
    tracing::debug!(n_rows, flushed_seq, "buffer flushed to parquet");
    Ok(())
}

/// Retention, then the disk limit, then compaction.
async fn maintain(inner: &Arc<Inner>) -> Result<(), EmbeddedError> {
    let _maintain = inner.maintain_lock.lock().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0);
    let oldest_kept = now - inner.config.retention.as_secs() as i64;
    let partition_seconds = inner.config.partition_seconds;
    let expired = files_where(inner, |entry| {
        entry.partition + partition_seconds <= oldest_kept
    });
    if !expired.is_empty() {
        let n_rows: u64 = expired.iter().map(|entry| entry.n_rows).sum();
        drop_files(inner, &expired).await?;
        metrics::counter!(metric_names::STORE_ROWS_EXPIRED).increment(n_rows);
        tracing::info!(
            n_files = expired.len(),
            n_rows,
            "partitions past retention dropped"
        );
    }
    if let Some(max_disk_bytes) = inner.config.max_disk_bytes {
        loop {
            let all = files_where(inner, |_| true);
            let disk_bytes =
                all.iter().map(|entry| entry.n_bytes).sum::<u64>() + inner.wal.disk_bytes();
            let Some(oldest) = all
                .iter()
                .map(|entry| entry.partition)
                .min()
                .filter(|_| disk_bytes > max_disk_bytes)
            else {
                break;
            };
            let victims: Vec<FileEntry> = all
                .into_iter()
                .filter(|entry| entry.partition == oldest)
                .collect();
            let n_rows: u64 = victims.iter().map(|entry| entry.n_rows).sum();
            drop_files(inner, &victims).await?;
            metrics::counter!(metric_names::STORE_SPANS_EVICTED).increment(n_rows);
            tracing::warn!(
                partition = oldest,
                n_rows,
                disk_bytes,
                max_disk_bytes,
                "oldest partition dropped to stay under the disk limit"
            );
        }
    }
    compact(inner).await
}

fn files_where(inner: &Arc<Inner>, keep: impl Fn(&FileEntry) -> bool) -> Vec<FileEntry> {
    inner
        .state
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .manifest
        .files
        .iter()
        .filter(|entry| keep(entry))
        .cloned()
        .collect()
}

/// Removes files from the manifest first, then from disk.
async fn drop_files(inner: &Arc<Inner>, victims: &[FileEntry]) -> Result<(), EmbeddedError> {
    let ids: Vec<u64> = victims.iter().map(|victim| victim.id).collect();
    update_manifest(inner, Vec::new(), |manifest| {
        manifest.files.retain(|entry| !ids.contains(&entry.id));
    })
    .await?;
    let data_dir = inner.config.data_dir.clone();
    let victims = victims.to_vec();
    blocking(move || {
        for victim in &victims {
            files::remove_file(&data_dir, victim)?;
        }
        Ok(())
    })
    .await
}

/// Merges each partition's small files, oldest first, into files of at most
/// `compaction_max_rows` rows, without duplicate spans.
async fn compact(inner: &Arc<Inner>) -> Result<(), EmbeddedError> {
    let mut by_partition: HashMap<i64, Vec<FileEntry>> = HashMap::new();
    for entry in files_where(inner, |entry| {
        entry.n_rows < inner.config.compaction_max_rows
    }) {
        by_partition.entry(entry.partition).or_default().push(entry);
    }
    for mut entries in by_partition.into_values() {
        entries.sort_by_key(|entry| entry.id);
        let mut group = Vec::new();
        let mut n_rows = 0;
        for entry in entries {
            if !group.is_empty() && n_rows + entry.n_rows > inner.config.compaction_max_rows {
                break;
            }
            n_rows += entry.n_rows;
            group.push(entry);
        }
        if group.len() < inner.config.compaction_min_files.max(2) {
            continue;
        }
        let id = inner.next_file_id.fetch_add(1, Ordering::SeqCst);
        let data_dir = inner.config.data_dir.clone();
        let sources = group.clone();
        let (entry, index) = blocking(move || {
            // In id order: a later file's copy of a span replaces an earlier one's.
            let mut read = Vec::new();
            for source in &sources {
                read.extend(files::read_file_for_rewrite(&data_dir, source)?);
            }
            let partition = sources[0].partition;
            let merged = batches::by_partition(&read, |_| partition)?
                .pop()
                .map(|(_, merged)| merged)
                .ok_or_else(|| EmbeddedError::corrupt("compacting files without rows"))?;
            drop(read);
            files::write_file(&data_dir, id, partition, &[merged], |batch| {
                Ok(batch.clone())
            })
        })
        .await?;
        let old_ids: Vec<u64> = group.iter().map(|old| old.id).collect();
        let mut replaced = false;
        update_manifest(inner, vec![(entry.id, index)], |manifest| {
            // Retention may have dropped the partition meanwhile; then the merge is moot.
            if old_ids
                .iter()
                .all(|id| manifest.files.iter().any(|file| file.id == *id))
            {
                manifest.files.retain(|file| !old_ids.contains(&file.id));
                manifest.files.push(entry.clone());
                replaced = true;
            }
        })
        .await?;
        let data_dir = inner.config.data_dir.clone();
        let n_sources = group.len();
        let obsolete = if replaced { group } else { vec![entry.clone()] };
        blocking(move || {
            for old in &obsolete {
                files::remove_file(&data_dir, old)?;
            }
            Ok(())
        })
        .await?;
        tracing::debug!(
            n_sources,
            n_rows = entry.n_rows,
            replaced,
            "partition compacted"
        );
    }
    Ok(())
}

/// Flushes when the buffer is full or old, until the store is dropped.
async fn flusher(inner: Weak<Inner>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let interval = strong
            .config
            .upkeep_interval
            .min(strong.config.flush_interval);
        let flush_wanted = strong.flush_wanted.clone();
        drop(strong);
        let notified = flush_wanted.notified();
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(interval) => {}
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let due = {
            let state = inner
                .state
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let buffered = state.active.len();
            buffered >= inner.config.flush_rows.min(inner.config.max_buffered_rows)
                || !state.frozen.is_empty()
                || (buffered > 0 && state.active.created.elapsed() >= inner.config.flush_interval)
        };
        if due {
            if let Err(error) = flush(&inner).await {
                tracing::error!(%error, "flushing the buffer failed; the rows stay in the WAL and memory");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Runs retention, the disk limit and compaction every upkeep interval.
async fn maintainer(inner: Weak<Inner>) {
    loop {
        let Some(interval) = inner.upgrade().map(|inner| inner.config.upkeep_interval) else {
            return;
        };
        tokio::time::sleep(interval).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if let Err(error) = maintain(&inner).await {
            tracing::error!(%error, "store upkeep failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use spanflow_store::conformance::{full_row, row};

    use super::*;

    fn rows() -> Vec<SpanRow> {
        let mut rows = vec![
            full_row(),
            SpanRow::default(),
            row(7, 3, "cart", "GET /cart", 1),
        ];
        // A second span of the full row's resource and places, as the mapper shares them.
        let mut sibling = full_row();
        sibling.span_id = spanflow_model::SpanId([9; 8]);
        sibling.status_message.clear();
        rows.push(sibling);
        rows
    }

    fn read_back(payload: &[u8]) -> Vec<SpanRow> {
        let mut back = Vec::new();
        for batch in decode_batches(payload).unwrap() {
            assert_eq!(batch.schema(), schema::buffer_schema());
            let batch = schema::from_buffer(&batch)
                .and_then(|batch| schema::from_file(&batch))
                .unwrap();
            back.extend(rows_of(&batch).unwrap());
        }
        back
    }

    #[test]
    fn wal_entries_come_back_as_the_rows_written() {
        let rows = rows();
        assert_eq!(
            read_back(&encode_batch(&schema::rows_to_buffer(&rows))),
            rows
        );
    }

    /// A payload as earlier versions logged rows: an IPC stream of the row schema, compressed
    /// buffer by buffer.
    fn earlier_payload(rows: &[SpanRow]) -> Vec<u8> {
        frame_compressed(&schema::rows_to_batch(rows))
    }

    #[test]
    fn wal_entries_of_rows_logged_as_the_row_schema_are_replayed() {
        let rows = rows();
        assert_eq!(read_back(&earlier_payload(&rows)), rows);
    }

    #[test]
    fn wal_entries_logged_with_shared_text_held_plainly_are_replayed() {
        let rows = rows();
        let buffered = schema::rows_to_buffer(&rows);
        let (mut fields, mut columns) = (Vec::new(), Vec::new());
        for (field, column) in buffered.schema().fields().iter().zip(buffered.columns()) {
            match field.data_type() {
                arrow::datatypes::DataType::Dictionary(_, value)
                    if ["agent_id", "scope_name"].contains(&field.name().as_str()) =>
                {
                    fields.push(field.as_ref().clone().with_data_type(*value.clone()));
                    columns.push(arrow::compute::cast(column, value).unwrap());
                }
                _ => {
                    fields.push(field.as_ref().clone());
                    columns.push(column.clone());
                }
            }
        }
        let earlier = RecordBatch::try_new(
            std::sync::Arc::new(arrow::datatypes::Schema::new(fields)),
            columns,
        )
        .unwrap();
        assert!(!batches::has_schema(&earlier, &schema::buffer_schema()));
        assert_eq!(read_back(&encode_batch(&earlier)), rows);
    }

    #[test]
    fn a_batch_too_long_for_one_block_is_logged_buffer_by_buffer() {
        let rows = rows();
        let payload = encode_batch_within(&schema::rows_to_buffer(&rows), 1024);
        assert!(!payload.starts_with(&LZ4_IPC));
        assert_eq!(read_back(&payload), rows);
    }

    #[test]
    fn a_damaged_wal_entry_is_an_error_not_a_panic() {
        let payload = encode_batch(&schema::rows_to_buffer(&rows()));
        let mut cut = payload.clone();
        cut.truncate(payload.len() / 2);
        let mut too_long = payload.clone();
        too_long[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut wrong_length = payload.clone();
        wrong_length[4..8].copy_from_slice(&7u32.to_le_bytes());
        for (damaged, what) in [
            (&payload[..6], "cut short before its length"),
            (&cut[..], "WAL entry"),
            (&too_long[..], "more than"),
            (&wrong_length[..], "WAL entry"),
        ] {
            let error = decode_batches(damaged).unwrap_err().to_string();
            assert!(error.contains(what), "{error}");
        }
    }

    #[test]
    fn a_wal_entry_of_another_schema_is_refused() {
        let batch = schema::rows_to_batch(&rows());
        let payload = encode_batch(&batch.project(&[0, 1, 2]).unwrap());
        let error = decode_batches(&payload).unwrap_err();
        assert!(error.to_string().contains("schema"), "{error}");
    }
}
