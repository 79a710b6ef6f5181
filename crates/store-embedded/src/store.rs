//! [`EmbeddedStore`]: the write path (WAL, buffer, flush), reads that merge the buffer with the
//! files, and upkeep (flush by age, retention, disk limit, compaction) on a background task.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use spanflow_model::{metric_names, SpanRow, TraceId};
use spanflow_store::{MemoryStore, SpanQuery, SpanStore, StoreError};

use crate::manifest::{FileEntry, Manifest};
use crate::trace_index::TraceIndex;
use crate::wal::{Wal, WalConfig};
use crate::{files, query, schema, EmbeddedError};

#[derive(Clone, Debug)]
pub struct EmbeddedConfig {
    pub data_dir: PathBuf,
    /// Width of a time partition (by span end time); retention drops whole partitions.
    pub partition_seconds: i64,
    /// The buffer is flushed to Parquet once it holds this many rows...
    pub flush_rows: usize,
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
    /// Memory a query may use; past it the query fails with an error saying so.
    pub query_memory_bytes: usize,
    pub upkeep_interval: Duration,
}

impl EmbeddedConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> EmbeddedConfig {
        EmbeddedConfig {
            data_dir: data_dir.into(),
            partition_seconds: 3600,
            flush_rows: 64 * 1024,
            flush_interval: Duration::from_secs(30),
            retention: Duration::from_secs(72 * 3600),
            max_disk_bytes: None,
            compaction_min_files: 8,
            compaction_max_rows: 256 * 1024,
            query_memory_bytes: 512 << 20,
            upkeep_interval: Duration::from_secs(1),
        }
    }
}

/// Rows written since the last flush, with the WAL entries they came from.
struct Buffer {
    rows: MemoryStore,
    max_seq: AtomicU64,
    created: Instant,
}

impl Buffer {
    fn new() -> Arc<Buffer> {
        Arc::new(Buffer {
            rows: MemoryStore::new(usize::MAX),
            max_seq: AtomicU64::new(0),
            created: Instant::now(),
        })
    }
}

struct State {
    active: Arc<Buffer>,
    /// Buffers being flushed: still read, no longer written.
    frozen: Vec<Arc<Buffer>>,
    manifest: Manifest,
    indexes: HashMap<u64, Arc<TraceIndex>>,
}

struct Inner {
    config: EmbeddedConfig,
    wal: Wal,
    state: RwLock<State>,
    /// Writers hold it shared from WAL append to buffer insert; a flush takes it exclusively to
    /// swap buffers, so every WAL entry at or below the frozen buffer's `max_seq` is in it.
    write_gate: tokio::sync::RwLock<()>,
    /// One flush, compaction or retention pass at a time.
    upkeep_lock: tokio::sync::Mutex<()>,
    flush_wanted: Arc<tokio::sync::Notify>,
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
        for (seq, payload) in replayed.entries {
            let rows = decode_rows(&payload)?;
            n_replayed += rows.len();
            active.max_seq.fetch_max(seq, Ordering::SeqCst);
            active
                .rows
                .write(rows)
                .await
                .map_err(|error| EmbeddedError::corrupt(error.to_string()))?;
        }
        tracing::info!(
            data_dir = %config.data_dir.display(),
            n_files = manifest.files.len(),
            n_rows_in_files = manifest.files.iter().map(|file| file.n_rows).sum::<u64>(),
            n_rows_replayed = n_replayed,
            n_torn_bytes = replayed.n_torn_bytes,
            "embedded store open"
        );
        let inner = Arc::new(Inner {
            config,
            wal,
            state: RwLock::new(State {
                active,
                frozen: Vec::new(),
                manifest,
                indexes,
            }),
            write_gate: tokio::sync::RwLock::new(()),
            upkeep_lock: tokio::sync::Mutex::new(()),
            flush_wanted: Arc::new(tokio::sync::Notify::new()),
        });
        tokio::spawn(upkeep(Arc::downgrade(&inner)));
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
        let _upkeep = self.inner.upkeep_lock.lock().await;
        flush(&self.inner).await
    }

    /// Runs retention, the disk limit and compaction now.
    pub async fn upkeep_now(&self) -> Result<(), EmbeddedError> {
        let _upkeep = self.inner.upkeep_lock.lock().await;
        maintain(&self.inner).await
    }

    /// The files the store holds, oldest partition first.
    pub fn files(&self) -> Vec<FileEntry> {
        self.state().manifest.files.clone()
    }

    /// Rows waiting in memory (and the WAL) for a flush.
    pub fn n_buffered_rows(&self) -> usize {
        let state = self.state();
        state.active.rows.len()
            + state
                .frozen
                .iter()
                .map(|buffer| buffer.rows.len())
                .sum::<usize>()
    }

    /// Bytes on disk: Parquet files and WAL.
    pub fn disk_bytes(&self) -> u64 {
        self.state().manifest.disk_bytes() + self.inner.wal.disk_bytes()
    }

    /// Runs read-only SQL over the table `l7_flow_log`.
    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>, EmbeddedError> {
        let (entries, buffers) = self.snapshot(|_, _| true);
        let paths = self.paths(&entries);
        // Oldest first, as the rows were written.
        let buffered: Vec<SpanRow> = buffers
            .iter()
            .rev()
            .flat_map(|buffer| buffer.rows.rows())
            .collect();
        query::sql(
            &self.inner.config,
            paths,
            schema::rows_to_batch(&buffered),
            sql,
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

    fn paths(&self, entries: &[FileEntry]) -> Vec<String> {
        entries
            .iter()
            .map(|entry| {
                self.inner
                    .config
                    .data_dir
                    .join(entry.relative_path())
                    .display()
                    .to_string()
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
        let (rows, payload) = tokio::task::spawn_blocking(move || {
            let payload = encode_rows(&rows);
            (rows, payload)
        })
        .await
        .map_err(|error| StoreError::new(spanflow_store::ErrorKind::Internal, error.to_string()))?;
        let gate = self.inner.write_gate.read().await;
        let seq = self
            .inner
            .wal
            .append(payload)
            .await
            .map_err(EmbeddedError::from)?;
        let active = self.state().active.clone();
        active.max_seq.fetch_max(seq, Ordering::SeqCst);
        active.rows.write(rows).await?;
        drop(gate);
        if active.rows.len() >= self.inner.config.flush_rows {
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
            let data_dir = self.inner.config.data_dir.clone();
            let hex = trace_id.to_hex();
            tokio::task::spawn_blocking(move || {
                let mut rows = Vec::new();
                // Files in id order, so a later copy of a span replaces an earlier one below.
                for entry in &entries {
                    rows.extend(files::read_trace(&data_dir, entry, &hex)?);
                }
                Ok::<_, EmbeddedError>(rows)
            })
            .await
            .map_err(|error| EmbeddedError::corrupt(format!("trace lookup failed: {error}")))??
        };
        for buffer in buffers.iter().rev() {
            rows.extend(buffer.rows.trace(trace_id).await?);
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
        let (entries, buffers) = self.snapshot(|entry, _| {
            span_query
                .start_time_min_us
                .is_none_or(|min| entry.max_start_time >= min)
                && span_query
                    .start_time_max_us
                    .is_none_or(|max| entry.min_start_time <= max)
        });
        let paths = self.paths(&entries);
        let mut rows = if paths.is_empty() {
            Vec::new()
        } else {
            query::search_rows(&self.inner.config, paths, span_query).await?
        };
        for buffer in buffers.iter().rev() {
            rows.extend(buffer.rows.search(span_query).await?);
        }
        let mut by_key = HashMap::with_capacity(rows.len());
        for row in rows {
            by_key.insert((row.trace_id, row.span_id), row);
        }
        let mut rows: Vec<SpanRow> = by_key.into_values().collect();
        rows.sort_by_key(|row| (std::cmp::Reverse(row.start_time), row.trace_id, row.span_id));
        rows.truncate(span_query.limit);
        Ok(rows)
    }

    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn maintain(&self) -> Result<(), StoreError> {
        self.flush().await?;
        self.upkeep_now().await.map_err(Into::into)
    }
}

/// Rows as an Arrow IPC stream, the WAL's payload.
fn encode_rows(rows: &[SpanRow]) -> Vec<u8> {
    let batch = schema::rows_to_batch(rows);
    let mut bytes = Vec::new();
    let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut bytes, &batch.schema())
        .expect("writing IPC to memory cannot fail");
    writer
        .write(&batch)
        .expect("writing IPC to memory cannot fail");
    writer.finish().expect("writing IPC to memory cannot fail");
    drop(writer);
    bytes
}

fn decode_rows(payload: &[u8]) -> Result<Vec<SpanRow>, EmbeddedError> {
    let reader = arrow::ipc::reader::StreamReader::try_new(payload, None)
        .map_err(|error| EmbeddedError::corrupt(format!("WAL entry is not Arrow IPC: {error}")))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|error| EmbeddedError::corrupt(format!("WAL entry: {error}")))?;
        rows.extend(
            schema::batch_to_rows(&batch)
                .map_err(|error| EmbeddedError::corrupt(format!("WAL entry: {error}")))?,
        );
    }
    Ok(rows)
}

fn partition_of(row: &SpanRow, partition_seconds: i64) -> i64 {
    row.time.div_euclid(partition_seconds) * partition_seconds
}

/// Freezes the active buffer and writes every frozen buffer to one file per partition. A
/// failed flush leaves its buffers frozen (still read, still in the WAL) for the next one.
async fn flush(inner: &Arc<Inner>) -> Result<(), EmbeddedError> {
    let frozen: Vec<Arc<Buffer>> = {
        let _gate = inner.write_gate.write().await;
        let mut state = inner
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !state.active.rows.is_empty() {
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
    let mut by_partition: HashMap<i64, Vec<SpanRow>> = HashMap::new();
    let mut n_rows = 0;
    // Oldest buffer first, so that a span written again later wins within a file.
    let mut by_key = HashMap::new();
    for buffer in &frozen {
        for row in buffer.rows.rows() {
            by_key.insert((row.trace_id, row.span_id), row);
        }
    }
    for row in by_key.into_values() {
        n_rows += 1;
        by_partition
            .entry(partition_of(&row, inner.config.partition_seconds))
            .or_default()
            .push(row);
    }
    let mut manifest = inner
        .state
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .manifest
        .clone();
    let data_dir = inner.config.data_dir.clone();
    let first_id = manifest.next_file_id;
    manifest.next_file_id += by_partition.len() as u64;
    let written = tokio::task::spawn_blocking(move || {
        let mut written = Vec::new();
        for (offset, (partition, rows)) in by_partition.into_iter().enumerate() {
            written.push(files::write_file(
                &data_dir,
                first_id + offset as u64,
                partition,
                rows,
            )?);
        }
        Ok::<_, EmbeddedError>(written)
    })
    .await
    .map_err(|error| EmbeddedError::corrupt(format!("flush task failed: {error}")))??;
    manifest.flushed_seq = manifest.flushed_seq.max(flushed_seq);
    for (entry, _) in &written {
        manifest.files.push(entry.clone());
    }
    let to_store = manifest.clone();
    let data_dir = inner.config.data_dir.clone();
    tokio::task::spawn_blocking(move || to_store.store(&data_dir))
        .await
        .map_err(|error| EmbeddedError::corrupt(format!("manifest task failed: {error}")))??;
    {
        let mut state = inner
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (entry, index) in written {
            state.indexes.insert(entry.id, Arc::new(index));
        }
        state.manifest = manifest;
        state
            .frozen
            .retain(|buffer| !frozen.iter().any(|flushed| Arc::ptr_eq(buffer, flushed)));
    }
    inner.wal.trim_through(flushed_seq).await?;
    metrics::counter!(metric_names::STORE_ROWS_FLUSHED).increment(n_rows as u64);
    tracing::debug!(n_rows, flushed_seq, "buffer flushed to parquet");
    Ok(())
}

/// Retention, then the disk limit, then compaction.
async fn maintain(inner: &Arc<Inner>) -> Result<(), EmbeddedError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0);
    let oldest_kept = now - inner.config.retention.as_secs() as i64;
    let partition_seconds = inner.config.partition_seconds;
    let expired: Vec<FileEntry> = {
        let state = inner
            .state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state
            .manifest
            .files
            .iter()
            .filter(|entry| entry.partition + partition_seconds <= oldest_kept)
            .cloned()
            .collect()
    };
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
            let (oldest, disk_bytes) = {
                let state = inner
                    .state
                    .read()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let oldest = state
                    .manifest
                    .files
                    .iter()
                    .map(|entry| entry.partition)
                    .min();
                (oldest, state.manifest.disk_bytes() + inner.wal.disk_bytes())
            };
            let Some(oldest) = oldest.filter(|_| disk_bytes > max_disk_bytes) else {
                break;
            };
            let victims: Vec<FileEntry> = {
                let state = inner
                    .state
                    .read()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                state
                    .manifest
                    .files
                    .iter()
                    .filter(|entry| entry.partition == oldest)
                    .cloned()
                    .collect()
            };
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

/// Removes files from the manifest first, then from disk.
async fn drop_files(inner: &Arc<Inner>, victims: &[FileEntry]) -> Result<(), EmbeddedError> {
    let manifest = {
        let state = inner
            .state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut manifest = state.manifest.clone();
        manifest
            .files
            .retain(|entry| !victims.iter().any(|victim| victim.id == entry.id));
        manifest
    };
    let data_dir = inner.config.data_dir.clone();
    let to_store = manifest.clone();
    tokio::task::spawn_blocking(move || to_store.store(&data_dir))
        .await
        .map_err(|error| EmbeddedError::corrupt(format!("manifest task failed: {error}")))??;
    {
        let mut state = inner
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for victim in victims {
            state.indexes.remove(&victim.id);
        }
        state.manifest = manifest;
    }
    let data_dir = inner.config.data_dir.clone();
    let victims = victims.to_vec();
    tokio::task::spawn_blocking(move || {
        for victim in &victims {
            files::remove_file(&data_dir, victim)?;
        }
        Ok::<_, EmbeddedError>(())
    })
    .await
    .map_err(|error| EmbeddedError::corrupt(format!("removal task failed: {error}")))?
}

/// Merges the files of each partition that has too many into one, without duplicate spans.
async fn compact(inner: &Arc<Inner>) -> Result<(), EmbeddedError> {
    let groups: Vec<Vec<FileEntry>> = {
        let state = inner
            .state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut by_partition: HashMap<i64, Vec<FileEntry>> = HashMap::new();
        for entry in &state.manifest.files {
            by_partition
                .entry(entry.partition)
                .or_default()
                .push(entry.clone());
        }
        let mut groups = Vec::new();
        for mut entries in by_partition.into_values() {
            entries.retain(|entry| entry.n_rows < inner.config.compaction_max_rows);
            entries.sort_by_key(|entry| entry.id);
            // Oldest small files first, up to the size of one merged file.
            let mut group = Vec::new();
            let mut n_rows = 0;
            for entry in entries {
                if !group.is_empty() && n_rows + entry.n_rows > inner.config.compaction_max_rows {
                    break;
                }
                n_rows += entry.n_rows;
                group.push(entry);
            }
            if group.len() >= inner.config.compaction_min_files.max(2) {
                groups.push(group);
            }
        }
        groups
    };
    for group in groups {
        let id = {
            let mut state = inner
                .state
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let id = state.manifest.next_file_id;
            state.manifest.next_file_id += 1;
            id
        };
        let data_dir = inner.config.data_dir.clone();
        let sources = group.clone();
        let (entry, index) = tokio::task::spawn_blocking(move || {
            let mut by_key = HashMap::new();
            // Files in id order: a later file's copy of a span replaces an earlier one's.
            let mut sources = sources;
            sources.sort_by_key(|entry| entry.id);
            for source in &sources {
                for row in files::read_file(&data_dir, source)? {
                    by_key.insert((row.trace_id, row.span_id), row);
                }
            }
            let rows: Vec<SpanRow> = by_key.into_values().collect();
            files::write_file(&data_dir, id, sources[0].partition, rows)
        })
        .await
        .map_err(|error| EmbeddedError::corrupt(format!("compaction task failed: {error}")))??;
        let manifest = {
            let state = inner
                .state
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut manifest = state.manifest.clone();
            manifest
                .files
                .retain(|file| !group.iter().any(|old| old.id == file.id));
            manifest.files.push(entry.clone());
            manifest
        };
        let data_dir = inner.config.data_dir.clone();
        let to_store = manifest.clone();
        tokio::task::spawn_blocking(move || to_store.store(&data_dir))
            .await
            .map_err(|error| EmbeddedError::corrupt(format!("manifest task failed: {error}")))??;
        {
            let mut state = inner
                .state
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for old in &group {
                state.indexes.remove(&old.id);
            }
            state.indexes.insert(entry.id, Arc::new(index));
            state.manifest = manifest;
        }
        let data_dir = inner.config.data_dir.clone();
        let n_sources = group.len();
        tokio::task::spawn_blocking(move || {
            for old in &group {
                files::remove_file(&data_dir, old)?;
            }
            Ok::<_, EmbeddedError>(())
        })
        .await
        .map_err(|error| EmbeddedError::corrupt(format!("removal task failed: {error}")))??;
        tracing::debug!(n_sources, n_rows = entry.n_rows, "partition compacted");
    }
    Ok(())
}

/// Flushes on size or age, and runs upkeep, until the store is dropped.
async fn upkeep(inner: Weak<Inner>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let interval = strong.config.upkeep_interval;
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
        let _upkeep = inner.upkeep_lock.lock().await;
        let due = {
            let state = inner
                .state
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let buffered = state.active.rows.len();
            buffered >= inner.config.flush_rows
                || (buffered > 0 && state.active.created.elapsed() >= inner.config.flush_interval)
        };
        if due {
            if let Err(error) = flush(&inner).await {
                tracing::error!(%error, "flushing the buffer failed; the rows stay in the WAL and memory");
            }
        }
        if let Err(error) = maintain(&inner).await {
            tracing::error!(%error, "store upkeep failed");
        }
    }
}
