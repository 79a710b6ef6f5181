//! The write-ahead log: every batch of rows (opaque bytes, an Arrow IPC stream) is appended here
//! and acknowledged only once it is fsynced; the rows then wait in memory for a flush to Parquet,
//! after which the log is trimmed up to the flushed sequence number. After a crash (SIGKILL at
//! any moment, mid-write included), [`Wal::open`] replays every acknowledged entry that was not
//! flushed yet, exactly once.
//!
//! # Files
//!
//! Segments `wal-<first seq, 20 digits>.log` in one directory. A segment holds consecutive
//! sequence numbers starting at the one in its name, so the names alone say which segments a
//! trim may delete, and the newest name keeps the next sequence number even when every entry has
//! been trimmed (trimming everything leaves one empty segment named after the next seq).
//!
//! Entry framing, little-endian:
//!
//! ```text
//! [u32 payload length][u32 crc32 (IEEE, crc32fast) of seq bytes + payload][u64 seq][payload]
//! ```
//!
//! # Durability
//!
//! * One writer thread (plain blocking IO, never on the tokio reactor) takes everything waiting
//!   in the queue (group commit, up to 64 MiB), writes it, calls `fdatasync` once and only then
//!   answers each appender with its sequence number.
//! * A new segment is created with `O_EXCL` and the directory is fsynced before anything is
//!   written to it; the previous segment is fsynced before the switch, so only the newest
//!   segment can ever end in a torn write.
//! * Truncating a torn tail is followed by an fsync of the file; deleting trimmed segments by an
//!   fsync of the directory (segments that come back after a crash are harmless: their entries
//!   are at or below the flushed sequence number and are skipped).
//! * A failed write or fsync poisons the log: every waiting appender gets the error, so do all
//!   later appends, until the log is reopened (after a failed fsync the kernel may have dropped
//!   the dirty pages and reported the error once, so nothing written since can be trusted).
//!
//! # Replay
//!
//! Every entry's length, checksum and sequence number (the next one expected in its segment) is
//! verified. A bad entry in the newest segment with nothing valid after it is a torn write: the
//! file is truncated there and appends continue after it. Any other bad entry is corruption: it
//! is logged as an error and counted, the rest of that segment is skipped, later segments are
//! still replayed (and if the newest segment is the corrupt one, it is left as it is and a new
//! segment is started). Opening never fails because of bad data, only because of IO errors.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use spanflow_model::metric_names;
use tokio::sync::{mpsc, oneshot};

/// Default size at which a segment is closed and a new one started.
pub const DEFAULT_SEGMENT_MAX_BYTES: u64 = 64 << 20;
/// Default largest payload of one entry.
pub const DEFAULT_MAX_ENTRY_BYTES: usize = 256 << 20;

/// Length, checksum and sequence number in front of every payload.
const HEADER_LEN: usize = 16;
/// Appends waiting for the writer before `append` itself waits.
const QUEUE_CAPACITY: usize = 1024;
/// The writer stops gathering a group once it holds this many bytes.
const MAX_GROUP_BYTES: usize = 64 << 20;
/// The writer's buffer is given back to the allocator when a group made it larger than this.
const KEEP_BUFFER_BYTES: usize = 8 << 20;
/// How many payload bytes replay may checksum while looking for valid entries after a bad one
/// in the newest segment; past it, the bad entry is taken for corruption (which keeps the bytes).
const TAIL_SCAN_BUDGET_BYTES: usize = 1 << 30;

const SEGMENT_PREFIX: &str = "wal-";
const SEGMENT_SUFFIX: &str = ".log";

#[derive(Clone, Debug)]
pub struct WalConfig {
    /// Directory of the segment files; created if missing.
    pub dir: PathBuf,
    /// A segment is closed once the next entry would take it past this size (a single entry
    /// larger than this gets a segment of its own).
    pub segment_max_bytes: u64,
    /// Largest payload `append` accepts; on replay, a longer entry is corruption. Capped at
    /// `u32::MAX`, the largest length the framing can hold.
    pub max_entry_bytes: usize,
}

impl WalConfig {
    pub fn new(dir: impl Into<PathBuf>) -> WalConfig {
        WalConfig {
            dir: dir.into(),
            segment_max_bytes: DEFAULT_SEGMENT_MAX_BYTES,
            max_entry_bytes: DEFAULT_MAX_ENTRY_BYTES,
        }
    }
}

/// What [`Wal::open`] found in the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Every valid entry above `after_seq`, oldest first: (seq, payload).
    pub entries: Vec<(u64, Vec<u8>)>,
    /// Bytes cut off the end of the newest segment: a write that was under way at the crash
    /// (never acknowledged).
    pub n_torn_bytes: u64,
    /// Bad entries before the end of the log; each one made replay skip the rest of its
    /// segment. Each is also logged as an error.
    pub n_corrupt_entries: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("entry of {len} bytes is larger than max_entry_bytes ({max}) of the log in {}", dir.display())]
    TooLarge {
        len: usize,
        max: usize,
        dir: PathBuf,
    },
    #[error("the write-ahead log is closed")]
    Closed,
}

fn io_error(op: &'static str, path: &Path, source: io::Error) -> WalError {
    WalError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The write-ahead log. Cloning is cheap and every clone appends to the same log; `close` on any
/// clone stops the writer for all of them (later calls get [`WalError::Closed`]). Dropping every
/// clone stops the writer too, after it has finished what was queued.
#[derive(Clone)]
pub struct Wal {
    shared: Arc<Shared>,
}

struct Shared {
    tx: mpsc::Sender<Command>,
    dir: PathBuf,
    max_entry_bytes: usize,
    state: Arc<WriterState>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What the writer thread publishes to the handles.
#[derive(Default)]
struct WriterState {
    disk_bytes: AtomicU64,
    /// fdatasync calls so far (one per group commit, plus one per segment switch mid-group).
    n_syncs: AtomicU64,
    /// Bytes written since open: entries with their frames.
    n_bytes_written: AtomicU64,
    /// Set once by the first failed write or fsync; from then on every append fails.
    failure: OnceLock<Failure>,
}

/// A failed write or fsync, kept to answer every later append with.
#[derive(Debug)]
struct Failure {
    op: &'static str,
    path: PathBuf,
    kind: io::ErrorKind,
    message: String,
}

impl Failure {
    fn to_error(&self) -> WalError {
        WalError::Io {
            op: self.op,
            path: self.path.clone(),
            source: io::Error::new(
                self.kind,
                format!(
                    "{} (the log takes no more writes after a failed write or fsync; reopen it)",
                    self.message
                ),
            ),
        }
    }
}

enum Command {
    Append {
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<u64, WalError>>,
    },
    Trim {
        seq: u64,
        reply: oneshot::Sender<Result<(), WalError>>,
    },
    Close {
        reply: oneshot::Sender<Result<(), WalError>>,
    },
    /// Tests: the writer says it holds, then waits for the release, so appends pile up.
    #[cfg(test)]
    Hold {
        holding: oneshot::Sender<()>,
        release: std::sync::mpsc::Receiver<()>,
    },
}

impl fmt::Debug for Wal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.shared.dir)
            .field("disk_bytes", &self.disk_bytes())
            .finish_non_exhaustive()
    }
}

impl Wal {
    /// Opens (creating the dir), replays every entry with seq > `after_seq` (entries at or below
    /// it are already durable elsewhere and skipped), truncates a torn tail (a partly written
    /// last entry) and starts a writer task. Returns the WAL and what it replayed, oldest first.
    ///
    /// Sequence numbers continue after the highest one the log ever held and after `after_seq`.
    pub async fn open(config: WalConfig, after_seq: u64) -> Result<(Wal, Replayed), WalError> {
        let dir = config.dir.clone();
        let max_entry_bytes = config.max_entry_bytes.min(u32::MAX as usize);
        let state = Arc::new(WriterState::default());
        let writer_state = state.clone();
        let (writer, replayed) =
            tokio::task::spawn_blocking(move || open_blocking(config, after_seq, writer_state))
                .await
                .map_err(|error| io_error("open", &dir, io::Error::other(error.to_string())))??;
        tracing::info!(
            dir = %dir.display(),
            n_segments = writer.segments.len(),
            n_replayed = replayed.entries.len(),
            n_torn_bytes = replayed.n_torn_bytes,
            n_corrupt_entries = replayed.n_corrupt_entries,
            next_seq = writer.next_seq,
            "write-ahead log open"
        );
        let wal = start(writer, dir, max_entry_bytes, state)?;
        Ok((wal, replayed))
    }

    /// Appends one payload; resolves once it is fsynced; returns its sequence number (strictly
    /// increasing, also across restarts and trims).
    ///
    /// An error means the entry may or may not be in the log (a failed fsync does not say which
    /// bytes made it): it may come back on replay.
    pub async fn append(&self, payload: Vec<u8>) -> Result<u64, WalError> {
        if payload.len() > self.shared.max_entry_bytes {
            return Err(WalError::TooLarge {
                len: payload.len(),
                max: self.shared.max_entry_bytes,
                dir: self.shared.dir.clone(),
            });
        }
        if let Some(failure) = self.shared.state.failure.get() {
            return Err(failure.to_error());
        }
        let (reply, answer) = oneshot::channel();
        self.shared
            .tx
            .send(Command::Append { payload, reply })
            .await
            .map_err(|_| WalError::Closed)?;
        answer.await.map_err(|_| WalError::Closed)?
    }

    /// Deletes whole segments whose entries all have seq <= `seq` (they are durable elsewhere).
    /// The active segment is rotated first if it only holds such entries.
    pub async fn trim_through(&self, seq: u64) -> Result<(), WalError> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .tx
            .send(Command::Trim { seq, reply })
            .await
            .map_err(|_| WalError::Closed)?;
        answer.await.map_err(|_| WalError::Closed)?
    }

    /// Bytes written and fsynced since the log opened.
    pub fn bytes_written(&self) -> u64 {
        self.shared.state.n_bytes_written.load(Ordering::Relaxed)
    }

    /// Bytes of all segment files.
    pub fn disk_bytes(&self) -> u64 {
        self.shared.state.disk_bytes.load(Ordering::Relaxed)
    }

    /// Waits for everything queued to be written and fsynced, then stops the writer. Returns the
    /// error that poisoned the log, if one did.
    pub async fn close(self) -> Result<(), WalError> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .tx
            .send(Command::Close { reply })
            .await
            .map_err(|_| WalError::Closed)?;
        let result = answer.await.map_err(|_| WalError::Closed)?;
        let thread = self
            .shared
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(thread) = thread {
            // The writer has answered and only returns now; joining is quick but blocking.
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        result
    }
}

fn start(
    writer: Writer,
    dir: PathBuf,
    max_entry_bytes: usize,
    state: Arc<WriterState>,
) -> Result<Wal, WalError> {
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    let thread = std::thread::Builder::new()
        .name("spanflow-wal".to_string())
        .spawn(move || writer.run(rx))
        .map_err(|error| io_error("start the writer thread of", &dir, error))?;
    Ok(Wal {
        shared: Arc::new(Shared {
            tx,
            dir,
            max_entry_bytes,
            state,
            thread: Mutex::new(Some(thread)),
        }),
    })
}

// ---------------------------------------------------------------------------------------------
// The writer thread.

struct Segment {
    first_seq: u64,
    path: PathBuf,
    bytes: u64,
}

struct Writer {
    dir: PathBuf,
    segment_max_bytes: u64,
    /// Oldest first; the last one is active (never empty).
    segments: Vec<Segment>,
    /// The active segment, opened for appending.
    file: File,
    next_seq: u64,
    buffer: Vec<u8>,
    state: Arc<WriterState>,
}

type AppendReply = oneshot::Sender<Result<u64, WalError>>;

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut pending: Option<Command> = None;
        loop {
            let command = match pending.take() {
                Some(command) => command,
                None => match rx.blocking_recv() {
                    Some(command) => command,
                    // Every handle is gone; everything answered is already fsynced.
                    None => return,
                },
            };
            match command {
                Command::Append { payload, reply } => {
                    let mut group_bytes = payload.len() + HEADER_LEN;
                    let mut group = vec![(payload, reply)];
                    while group_bytes < MAX_GROUP_BYTES {
                        match rx.try_recv() {
                            Ok(Command::Append { payload, reply }) => {
                                group_bytes += payload.len() + HEADER_LEN;
                                group.push((payload, reply));
                            }
                            Ok(other) => {
                                pending = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.commit(group);
                }
                Command::Trim { seq, reply } => {
                    let _ = reply.send(self.trim(seq));
                }
                Command::Close { reply } => {
                    let result = match self.state.failure.get() {
                        Some(failure) => Err(failure.to_error()),
                        None => Ok(()),
                    };
                    tracing::debug!(dir = %self.dir.display(), next_seq = self.next_seq, "write-ahead log closed");
                    let _ = reply.send(result);
                    return;
                }
                #[cfg(test)]
                Command::Hold { holding, release } => {
                    let _ = holding.send(());
                    let _ = release.recv();
                }
            }
        }
    }

    /// Writes a group of appends, fsyncs, and answers each appender.
    fn commit(&mut self, group: Vec<(Vec<u8>, AppendReply)>) {
        if let Some(failure) = self.state.failure.get() {
            for (_, reply) in group {
                let _ = reply.send(Err(failure.to_error()));
            }
            return;
        }
        let mut seqs = Vec::with_capacity(group.len());
        let mut n_durable = 0;
        let result = self.write_group(&group, &mut seqs, &mut n_durable);
        self.publish_disk_bytes();
        if self.buffer.capacity() > KEEP_BUFFER_BYTES {
            self.buffer = Vec::new();
        }
        match result {
            Ok(()) => {
                for ((_, reply), seq) in group.into_iter().zip(seqs) {
                    let _ = reply.send(Ok(seq));
                }
            }
            Err(error) => {
                let failure = self.fail(error);
                for (i, (_, reply)) in group.into_iter().enumerate() {
                    // Entries fsynced before a segment switch that then failed are durable.
                    let _ = reply.send(if i < n_durable {
                        Ok(seqs[i])
                    } else {
                        Err(failure.to_error())
                    });
                }
            }
        }
    }

    /// Frames the group into the buffer, switching segments where one fills up (after fsyncing
    /// it), then writes and fsyncs the rest. `n_durable` counts the entries known fsynced.
    fn write_group(
        &mut self,
        group: &[(Vec<u8>, AppendReply)],
        seqs: &mut Vec<u64>,
        n_durable: &mut usize,
    ) -> Result<(), WalError> {
        self.buffer.clear();
        for (payload, _) in group {
            let frame_len = (HEADER_LEN + payload.len()) as u64;
            let filled = self.active().bytes + self.buffer.len() as u64;
            if filled > 0 && filled + frame_len > self.segment_max_bytes {
                self.write_buffer_and_sync()?;
                *n_durable = seqs.len();
                self.roll()?;
            }
            let seq = self.next_seq;
            encode_frame(&mut self.buffer, seq, payload);
            self.next_seq += 1;
            seqs.push(seq);
        }
        self.write_buffer_and_sync()?;
        *n_durable = seqs.len();
        Ok(())
    }

    fn write_buffer_and_sync(&mut self) -> Result<(), WalError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let segment = self
            .segments
            .last_mut()
            .expect("the writer always has an active segment");
        let n_bytes = self.buffer.len();
        let written = self.file.write_all(&self.buffer);
        // On error the file holds an unknown part of the buffer; the count is only for display.
        segment.bytes += self.buffer.len() as u64;
        self.buffer.clear();
        written.map_err(|error| io_error("write", &segment.path, error))?;
        self.file
            .sync_data()
            .map_err(|error| io_error("fsync", &segment.path, error))?;
        self.state.n_syncs.fetch_add(1, Ordering::Relaxed);
        self.state
            .n_bytes_written
            .fetch_add(n_bytes as u64, Ordering::Relaxed);
        metrics::counter!(metric_names::STORE_WAL_SYNCS).increment(1);
        metrics::counter!(metric_names::STORE_WAL_BYTES).increment(n_bytes as u64);
        Ok(())
    }

    /// Starts a new active segment named after the next seq. The old one must be fsynced.
    fn roll(&mut self) -> Result<(), WalError> {
        let (file, segment) = create_segment(&self.dir, self.next_seq)?;
        tracing::debug!(path = %segment.path.display(), "new write-ahead log segment");
        self.file = file;
        self.segments.push(segment);
        Ok(())
    }

    fn trim(&mut self, seq: u64) -> Result<(), WalError> {
        if let Some(failure) = self.state.failure.get() {
            return Err(failure.to_error());
        }
        // The active segment holds [first_seq, next_seq); it has entries, all covered.
        let active_first = self.active().first_seq;
        if self.next_seq > active_first && self.next_seq - 1 <= seq {
            if let Err(error) = self.roll() {
                // The new segment may exist without its directory entry being durable.
                return Err(self.fail(error).to_error());
            }
        }
        // Segment i holds seqs below segment i+1's first, so it is covered when that first
        // seq is at most `seq + 1`. The active segment is never deleted.
        let mut n_deleted = 0;
        let mut result = Ok(());
        while self.segments.len() > 1 && self.segments[1].first_seq <= seq.saturating_add(1) {
            let path = &self.segments[0].path;
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => {
                    result = Err(io_error("delete", path, error));
                    break;
                }
            }
            self.segments.remove(0);
            n_deleted += 1;
        }
        if n_deleted > 0 {
            self.publish_disk_bytes();
            tracing::debug!(dir = %self.dir.display(), n_deleted, through_seq = seq, "write-ahead log trimmed");
            result = result.and(sync_dir(&self.dir));
        }
        result
    }

    /// Poisons the log with its first failure and returns that failure.
    fn fail(&self, error: WalError) -> &Failure {
        let failure = self.state.failure.get_or_init(|| match &error {
            WalError::Io { op, path, source } => Failure {
                op,
                path: path.clone(),
                kind: source.kind(),
                message: source.to_string(),
            },
            other => Failure {
                op: "write to",
                path: self.dir.clone(),
                kind: io::ErrorKind::Other,
                message: other.to_string(),
            },
        });
        tracing::error!(%error, "write-ahead log failed; it refuses writes until reopened");
        failure
    }

    fn active(&self) -> &Segment {
        self.segments
            .last()
            .expect("the writer always has an active segment")
    }

    fn publish_disk_bytes(&self) {
        let total = self.segments.iter().map(|segment| segment.bytes).sum();
        self.state.disk_bytes.store(total, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------------------------
// Files and framing.

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{SEGMENT_PREFIX}{first_seq:020}{SEGMENT_SUFFIX}"))
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name
        .strip_prefix(SEGMENT_PREFIX)?
        .strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Creates an empty segment and makes its existence durable.
fn create_segment(dir: &Path, first_seq: u64) -> Result<(File, Segment), WalError> {
    let path = segment_path(dir, first_seq);
    let file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(|error| io_error("create", &path, error))?;
    sync_dir(dir)?;
    Ok((
        file,
        Segment {
            first_seq,
            path,
            bytes: 0,
        },
    ))
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|error| io_error("fsync directory", dir, error))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), WalError> {
    Ok(())
}

fn checksum(seq: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

fn encode_frame(buffer: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("append checks the length against u32::MAX");
    buffer.reserve(HEADER_LEN + payload.len());
    buffer.extend_from_slice(&len.to_le_bytes());
    buffer.extend_from_slice(&checksum(seq, payload).to_le_bytes());
    buffer.extend_from_slice(&seq.to_le_bytes());
    buffer.extend_from_slice(payload);
}

fn read_u32(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes"))
}

fn read_u64(data: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"))
}

/// The entry at `offset`: its seq and payload range, or why it is not a valid entry.
fn parse_frame(data: &[u8], offset: usize, max_len: usize) -> Result<(u64, Range<usize>), String> {
    let left = data.len() - offset;
    if left < HEADER_LEN {
        return Err(format!(
            "{left} bytes left, fewer than an entry header ({HEADER_LEN})"
        ));
    }
    let len = read_u32(data, offset) as usize;
    let crc = read_u32(data, offset + 4);
    let seq = read_u64(data, offset + 8);
    if len > max_len {
        return Err(format!(
            "entry length {len} is larger than max_entry_bytes ({max_len})"
        ));
    }
    if left - HEADER_LEN < len {
        return Err(format!(
            "entry of {len} bytes but only {} bytes left",
            left - HEADER_LEN
        ));
    }
    let payload = offset + HEADER_LEN..offset + HEADER_LEN + len;
    if checksum(seq, &data[payload.clone()]) != crc {
        return Err(format!("checksum mismatch (sequence number field {seq})"));
    }
    Ok((seq, payload))
}

/// The valid entries at the start of a segment, and the first bad one.
struct SegmentScan {
    entries: Vec<(u64, Range<usize>)>,
    /// The seq the next entry would have: the last valid one + 1.
    next_seq: u64,
    /// Offset of the first bad entry and what is wrong with it.
    bad: Option<(usize, String)>,
}

/// Reads entries from the start of a segment named `first_seq` while they are valid and carry
/// consecutive sequence numbers below `seq_limit` (the next segment's first seq).
fn scan_segment(
    data: &[u8],
    first_seq: u64,
    seq_limit: Option<u64>,
    max_entry_bytes: usize,
) -> SegmentScan {
    let mut entries = Vec::new();
    let mut offset = 0;
    let mut expected = first_seq;
    let mut bad = None;
    while offset < data.len() {
        match parse_frame(data, offset, max_entry_bytes) {
            Ok((seq, _)) if seq != expected => {
                bad = Some((
                    offset,
                    format!("sequence number {seq} where {expected} was expected"),
                ));
                break;
            }
            Ok((seq, _)) if seq_limit.is_some_and(|limit| seq >= limit) => {
                bad = Some((
                    offset,
                    format!(
                        "sequence number {seq} is not below the next segment's first ({})",
                        seq_limit.unwrap_or_default()
                    ),
                ));
                break;
            }
            Ok((seq, payload)) => {
                offset = payload.end;
                entries.push((seq, payload));
                expected += 1;
            }
            Err(reason) => {
                bad = Some((offset, reason));
                break;
            }
        }
    }
    SegmentScan {
        entries,
        next_seq: expected,
        bad,
    }
}

/// What follows a bad entry in the newest segment.
enum Tail {
    /// Nothing valid: a write cut short by the crash.
    Torn,
    /// Valid entries follow (or the scan gave up): the bad entry is corruption. The highest seq
    /// seen after it, which new appends must stay above.
    Corrupt { max_seq: Option<u64> },
}

/// Looks for valid entries at or after `from` (the bad entry itself included, without the
/// `max_entry_bytes` limit: an entry too long for the current config is not a torn write).
/// Only sequence numbers an entry at that offset could have are checked: at least `expected`,
/// at most one more per header length of distance.
fn classify_tail(data: &[u8], from: usize, expected: u64) -> Tail {
    let mut budget = TAIL_SCAN_BUDGET_BYTES;
    let mut max_seq = None;
    let mut offset = from;
    while offset + HEADER_LEN <= data.len() {
        let len = read_u32(data, offset) as usize;
        let seq = read_u64(data, offset + 8);
        let highest_possible = expected.saturating_add(((offset - from) / HEADER_LEN) as u64);
        if (expected..=highest_possible).contains(&seq) && len <= data.len() - offset - HEADER_LEN {
            if len > budget {
                return Tail::Corrupt { max_seq };
            }
            budget -= len;
            if let Ok((seq, payload)) = parse_frame(data, offset, usize::MAX) {
                max_seq = max_seq.max(Some(seq));
                offset = payload.end;
                continue;
            }
        }
        offset += 1;
    }
    match max_seq {
        None => Tail::Torn,
        Some(_) => Tail::Corrupt { max_seq },
    }
}

/// Creates the directory if needed, and makes its creation durable.
fn ensure_dir(dir: &Path) -> Result<(), WalError> {
    match fs::metadata(dir) {
        Ok(metadata) if metadata.is_dir() => Ok(()),
        Ok(_) => Err(io_error(
            "open",
            dir,
            io::Error::new(io::ErrorKind::InvalidInput, "not a directory"),
        )),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(|error| io_error("create directory", dir, error))?;
            match dir.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
                _ => sync_dir(Path::new(".")),
            }
        }
        Err(error) => Err(io_error("open", dir, error)),
    }
}

/// Segment files in `dir`, by first seq.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let mut segments = Vec::new();
    let entries = fs::read_dir(dir).map_err(|error| io_error("list", dir, error))?;
    for entry in entries {
        let entry = entry.map_err(|error| io_error("list", dir, error))?;
        let name = entry.file_name();
        match name.to_str().and_then(parse_segment_name) {
            Some(first_seq) => segments.push((first_seq, entry.path())),
            None => {
                tracing::debug!(path = %entry.path().display(), "not a write-ahead log segment; ignored")
            }
        }
    }
    segments.sort_unstable_by_key(|(first_seq, _)| *first_seq);
    Ok(segments)
}

/// Replays the directory and prepares the writer (without starting it).
fn open_blocking(
    config: WalConfig,
    after_seq: u64,
    state: Arc<WriterState>,
) -> Result<(Writer, Replayed), WalError> {
    let dir = config.dir;
    let max_entry_bytes = config.max_entry_bytes.min(u32::MAX as usize);
    ensure_dir(&dir)?;
    let names = list_segments(&dir)?;

    let mut replayed = Replayed::default();
    let mut segments = Vec::with_capacity(names.len() + 1);
    let mut next_seq = after_seq.saturating_add(1);
    // The newest segment: the seq its next entry would have, and whether it is corrupt.
    let mut newest: Option<(u64, bool)> = None;
    for (i, (first_seq, path)) in names.iter().enumerate() {
        let first_seq = *first_seq;
        let next_first = names.get(i + 1).map(|(first, _)| *first);
        let is_newest = next_first.is_none();
        next_seq = next_seq.max(first_seq);
        if next_first.is_some_and(|next_first| next_first <= after_seq.saturating_add(1)) {
            // Every entry here is below the next segment's first seq, so at or below
            // `after_seq`: not even read.
            let bytes = fs::metadata(path)
                .map_err(|error| io_error("read", path, error))?
                .len();
            segments.push(Segment {
                first_seq,
                path: path.clone(),
                bytes,
            });
            continue;
        }
        let data = fs::read(path).map_err(|error| io_error("read", path, error))?;
        let scan = scan_segment(&data, first_seq, next_first, max_entry_bytes);
        next_seq = next_seq.max(scan.next_seq);
        for (seq, payload) in &scan.entries {
            if *seq > after_seq {
                replayed
                    .entries
                    .push((*seq, data[payload.clone()].to_vec()));
            }
        }
        let mut bytes = data.len() as u64;
        let mut corrupt = false;
        if let Some((offset, reason)) = scan.bad {
            let tail = if is_newest {
                classify_tail(&data, offset, scan.next_seq)
            } else {
                Tail::Corrupt { max_seq: None }
            };
            match tail {
                Tail::Torn => {
                    let n_torn = data.len() - offset;
                    tracing::warn!(
                        path = %path.display(),
                        offset,
                        n_torn_bytes = n_torn,
                        reason = %reason,
                        "write-ahead log ends in a torn write (never acknowledged); truncating it"
                    );
                    let file = OpenOptions::new()
                        .write(true)
                        .open(path)
                        .map_err(|error| io_error("open", path, error))?;
                    file.set_len(offset as u64)
                        .map_err(|error| io_error("truncate", path, error))?;
                    file.sync_all()
                        .map_err(|error| io_error("fsync", path, error))?;
                    replayed.n_torn_bytes += n_torn as u64;
                    bytes = offset as u64;
                }
                Tail::Corrupt { max_seq } => {
                    tracing::error!(
                        path = %path.display(),
                        offset,
                        seq = scan.next_seq,
                        n_skipped_bytes = data.len() - offset,
                        reason = %reason,
                        "write-ahead log entry is corrupt; skipping the rest of its segment (entries in it are lost)"
                    );
                    replayed.n_corrupt_entries += 1;
                    corrupt = true;
                    if let Some(max_seq) = max_seq {
                        next_seq = next_seq.max(max_seq.saturating_add(1));
                    }
                }
            }
        }
        segments.push(Segment {
            first_seq,
            path: path.clone(),
            bytes,
        });
        if is_newest {
            newest = Some((scan.next_seq, corrupt));
        }
    }

    // Keep appending to the newest segment when its seqs continue without a gap; otherwise
    // (none, corrupt, or `after_seq` beyond it) start one named after the next seq.
    let file = match newest {
        Some((newest_next, false)) if newest_next == next_seq => {
            let path = &segments.last().expect("a newest segment").path;
            OpenOptions::new()
                .append(true)
                .open(path)
                .map_err(|error| io_error("open", path, error))?
        }
        _ => {
            let (file, segment) = create_segment(&dir, next_seq)?;
            segments.push(segment);
            file
        }
    };
    let writer = Writer {
        dir,
        segment_max_bytes: config.segment_max_bytes,
        segments,
        file,
        next_seq,
        buffer: Vec::new(),
        state,
    };
    writer.publish_disk_bytes();
    Ok((writer, replayed))
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::{BTreeMap, BTreeSet};
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};

    use proptest::prelude::*;

    fn payload(i: u64, len: usize) -> Vec<u8> {
        format!("payload {i};").bytes().cycle().take(len).collect()
    }

    fn config(dir: &Path) -> WalConfig {
        WalConfig::new(dir)
    }

    fn small_segments(dir: &Path, segment_max_bytes: u64) -> WalConfig {
        WalConfig {
            segment_max_bytes,
            ..WalConfig::new(dir)
        }
    }

    /// (first seq, size) of every segment file.
    fn segment_files(dir: &Path) -> Vec<(u64, u64)> {
        list_segments(dir)
            .unwrap()
            .into_iter()
            .map(|(first, path)| (first, fs::metadata(path).unwrap().len()))
            .collect()
    }

    fn seqs(replayed: &Replayed) -> Vec<u64> {
        replayed.entries.iter().map(|(seq, _)| *seq).collect()
    }

    async fn append_all(wal: &Wal, payloads: &[Vec<u8>]) -> Vec<u64> {
        let mut seqs = Vec::new();
        for payload in payloads {
            seqs.push(wal.append(payload.clone()).await.unwrap());
        }
        seqs
    }

    #[tokio::test]
    async fn appends_replay_after_reopen() {
        let cases: Vec<(&str, Vec<usize>, u64)> = vec![
            ("one entry", vec![100], DEFAULT_SEGMENT_MAX_BYTES),
            ("empty payloads", vec![0, 0, 0], DEFAULT_SEGMENT_MAX_BYTES),
            (
                "mixed sizes",
                vec![1, 0, 5000, 17, 300_000, 2],
                DEFAULT_SEGMENT_MAX_BYTES,
            ),
            ("one segment per entry", vec![10; 7], 1),
            ("segments of two", vec![10; 9], 2 * (HEADER_LEN as u64 + 10)),
            ("entry larger than a segment", vec![10, 5000, 10], 100),
        ];
        for (name, sizes, segment_max_bytes) in cases {
            let dir = tempfile::tempdir().unwrap();
            let payloads: Vec<Vec<u8>> = sizes
                .iter()
                .enumerate()
                .map(|(i, len)| payload(i as u64, *len))
                .collect();
            let (wal, replayed) = Wal::open(small_segments(dir.path(), segment_max_bytes), 0)
                .await
                .unwrap();
            assert_eq!(replayed, Replayed::default(), "{name}");
            let written = append_all(&wal, &payloads).await;
            assert_eq!(
                written,
                (1..=payloads.len() as u64).collect::<Vec<_>>(),
                "{name}"
            );
            let on_disk: u64 = segment_files(dir.path()).iter().map(|(_, len)| len).sum();
            assert_eq!(wal.disk_bytes(), on_disk, "{name}");
            assert_eq!(
                on_disk,
                payloads
                    .iter()
                    .map(|p| (HEADER_LEN + p.len()) as u64)
                    .sum::<u64>(),
                "{name}"
            );
            wal.close().await.unwrap();

            let (wal, replayed) = Wal::open(small_segments(dir.path(), segment_max_bytes), 0)
                .await
                .unwrap();
            let expected: Vec<(u64, Vec<u8>)> = written.into_iter().zip(payloads).collect();
            assert_eq!(replayed.entries, expected, "{name}");
            assert_eq!(
                (replayed.n_torn_bytes, replayed.n_corrupt_entries),
                (0, 0),
                "{name}"
            );
            wal.close().await.unwrap();
        }
    }

    #[tokio::test]
    async fn seqs_continue_across_reopen_and_after_trimming_everything() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(config(dir.path()), 0).await.unwrap();
        assert_eq!(
            append_all(&wal, &[payload(1, 10), payload(2, 10), payload(3, 10)]).await,
            [1, 2, 3]
        );
        wal.close().await.unwrap();

        let (wal, replayed) = Wal::open(config(dir.path()), 0).await.unwrap();
        assert_eq!(seqs(&replayed), [1, 2, 3]);
        assert_eq!(
            append_all(&wal, &[payload(4, 10), payload(5, 10)]).await,
            [4, 5]
        );
        wal.trim_through(5).await.unwrap();
        // Only the fresh, empty active segment is left; its name keeps the next seq.
        assert_eq!(segment_files(dir.path()), [(6, 0)]);
        assert_eq!(wal.disk_bytes(), 0);
        // Trimming again with nothing in the active segment keeps it.
        wal.trim_through(5).await.unwrap();
        assert_eq!(segment_files(dir.path()), [(6, 0)]);
        wal.close().await.unwrap();

        for after_seq in [0, 5] {
            let (wal, replayed) = Wal::open(config(dir.path()), after_seq).await.unwrap();
            assert_eq!(replayed, Replayed::default());
            wal.close().await.unwrap();
        }
        let (wal, _) = Wal::open(config(dir.path()), 0).await.unwrap();
        assert_eq!(wal.append(payload(6, 10)).await.unwrap(), 6);
        wal.close().await.unwrap();
        let (wal, replayed) = Wal::open(config(dir.path()), 5).await.unwrap();
        assert_eq!(replayed.entries, [(6, payload(6, 10))]);
        assert_eq!(wal.append(payload(7, 10)).await.unwrap(), 7);
        wal.close().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_share_fsyncs_and_all_replay() {
        // held: the writer is made to wait until all 100 appends are queued, so they must go
        // out as one group with one fsync; free: whatever grouping the timing gives.
        for held in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let (wal, _) = Wal::open(config(dir.path()), 0).await.unwrap();
            let release = if held {
                let (holding_tx, holding) = oneshot::channel();
                let (release, release_rx) = std::sync::mpsc::channel();
                wal.shared
                    .tx
                    .send(Command::Hold {
                        holding: holding_tx,
                        release: release_rx,
                    })
                    .await
                    .unwrap();
                holding.await.unwrap();
                Some(release)
            } else {
                None
            };
            let syncs_before = wal.shared.state.n_syncs.load(Ordering::Relaxed);
            let bytes_before = wal.bytes_written();
            let tasks: Vec<_> = (0..100u64)
                .map(|i| {
                    let wal = wal.clone();
                    tokio::spawn(async move { (wal.append(payload(i, 50)).await.unwrap(), i) })
                })
                .collect();
            if let Some(release) = release {
                let deadline = Instant::now() + Duration::from_secs(30);
                while wal.shared.tx.max_capacity() - wal.shared.tx.capacity() < 100 {
                    assert!(Instant::now() < deadline, "appends never queued");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                release.send(()).unwrap();
            }
            let mut by_seq = BTreeMap::new();
            for task in tasks {
                let (seq, i) = task.await.unwrap();
                assert!(by_seq.insert(seq, i).is_none(), "seq {seq} given twice");
            }
            assert_eq!(
                by_seq.keys().copied().collect::<Vec<_>>(),
                (1..=100).collect::<Vec<_>>()
            );
            let n_syncs = wal.shared.state.n_syncs.load(Ordering::Relaxed) - syncs_before;
            if held {
                assert_eq!(n_syncs, 1, "100 queued appends make one group");
            } else {
                assert!((1..=100).contains(&n_syncs));
            }
            let framed: u64 = (0..100u64)
                .map(|i| (HEADER_LEN + payload(i, 50).len()) as u64)
                .sum();
            assert_eq!(wal.bytes_written() - bytes_before, framed);
            wal.close().await.unwrap();

            let (wal, replayed) = Wal::open(config(dir.path()), 0).await.unwrap();
            let expected: Vec<(u64, Vec<u8>)> = by_seq
                .iter()
                .map(|(seq, i)| (*seq, payload(*i, 50)))
                .collect();
            assert_eq!(replayed.entries, expected);
            wal.close().await.unwrap();
        }
    }

    #[tokio::test]
    async fn open_skips_entries_at_or_below_after_seq() {
        // (segment_max_bytes, after_seq, seq of the next append)
        let cases = [
            (DEFAULT_SEGMENT_MAX_BYTES, 0, 11),
            (DEFAULT_SEGMENT_MAX_BYTES, 1, 11),
            (DEFAULT_SEGMENT_MAX_BYTES, 7, 11),
            (DEFAULT_SEGMENT_MAX_BYTES, 10, 11),
            (DEFAULT_SEGMENT_MAX_BYTES, 15, 16),
            (1, 0, 11),
            (1, 4, 11),
            (1, 10, 11),
            (1, 15, 16),
            (3 * (HEADER_LEN as u64 + 20), 5, 11),
            (3 * (HEADER_LEN as u64 + 20), 7, 11),
        ];
        for (segment_max_bytes, after_seq, next) in cases {
            let case = format!("segment_max_bytes {segment_max_bytes}, after_seq {after_seq}");
            let dir = tempfile::tempdir().unwrap();
            let payloads: Vec<Vec<u8>> = (1..=10).map(|i| payload(i, 20)).collect();
            let (wal, _) = Wal::open(small_segments(dir.path(), segment_max_bytes), 0)
                .await
                .unwrap();
            append_all(&wal, &payloads).await;
            wal.close().await.unwrap();

            let (wal, replayed) =
                Wal::open(small_segments(dir.path(), segment_max_bytes), after_seq)
                    .await
                    .unwrap();
            let expected: Vec<(u64, Vec<u8>)> = (after_seq + 1..=10)
                .map(|seq| (seq, payload(seq, 20)))
                .collect();
            assert_eq!(replayed.entries, expected, "{case}");
            assert_eq!(wal.append(payload(next, 20)).await.unwrap(), next, "{case}");
            wal.close().await.unwrap();

            // Nothing flushed after all: everything comes back, the gap included.
            let (wal, replayed) = Wal::open(small_segments(dir.path(), segment_max_bytes), 0)
                .await
                .unwrap();
            let mut all: Vec<u64> = (1..=10).collect();
            all.push(next);
            assert_eq!(seqs(&replayed), all, "{case}");
            assert_eq!(replayed.n_corrupt_entries, 0, "{case}");
            wal.close().await.unwrap();
        }
    }

    #[tokio::test]
    async fn trim_deletes_only_segments_it_fully_covers() {
        // Two entries per segment: 10 entries make segments 1, 3, 5, 7, 9.
        let segment_max_bytes = 2 * (HEADER_LEN as u64 + 10);
        // (trim through, first seqs of the segments left)
        let cases: [(u64, &[u64]); 8] = [
            (0, &[1, 3, 5, 7, 9]),
            (1, &[1, 3, 5, 7, 9]),
            (2, &[3, 5, 7, 9]),
            (3, &[3, 5, 7, 9]),
            (6, &[7, 9]),
            (9, &[9]),
            (10, &[11]),
            (100, &[11]),
        ];
        for (through, left) in cases {
            let dir = tempfile::tempdir().unwrap();
            let cfg = || small_segments(dir.path(), segment_max_bytes);
            let (wal, _) = Wal::open(cfg(), 0).await.unwrap();
            append_all(&wal, &(1..=10).map(|i| payload(i, 10)).collect::<Vec<_>>()).await;
            assert_eq!(
                segment_files(dir.path())
                    .iter()
                    .map(|(first, _)| *first)
                    .collect::<Vec<_>>(),
                [1, 3, 5, 7, 9]
            );
            wal.trim_through(through).await.unwrap();
            let files = segment_files(dir.path());
            assert_eq!(
                files.iter().map(|(first, _)| *first).collect::<Vec<_>>(),
                left,
                "trim through {through}"
            );
            assert_eq!(
                wal.disk_bytes(),
                files.iter().map(|(_, len)| len).sum::<u64>()
            );
            assert_eq!(wal.append(payload(11, 10)).await.unwrap(), 11);
            wal.close().await.unwrap();

            // What is left replays; with after_seq = the trim point, exactly what is above it.
            let (wal, replayed) = Wal::open(cfg(), through).await.unwrap();
            let expected: Vec<u64> = (through + 1..=11).collect();
            assert_eq!(seqs(&replayed), expected, "trim through {through}");
            wal.close().await.unwrap();
        }
    }

    /// How the end of the newest segment is damaged after a close.
    #[derive(Debug)]
    enum Tail {
        CutBytes(u64),
        Garbage(Vec<u8>),
        FlipLastPayloadByte,
    }

    #[tokio::test]
    async fn a_torn_tail_is_truncated_and_appends_continue() {
        const LEN: usize = 20;
        const FRAME: u64 = (HEADER_LEN + LEN) as u64;
        let mut bad_frame = Vec::new();
        encode_frame(&mut bad_frame, 6, &payload(6, LEN));
        *bad_frame.last_mut().unwrap() ^= 1;
        let mut huge_header = Vec::new();
        huge_header.extend_from_slice(&u32::MAX.to_le_bytes());
        huge_header.extend_from_slice(&[7; 12]);
        // (segment_max_bytes, damage, entries left, torn bytes)
        let cases = [
            (DEFAULT_SEGMENT_MAX_BYTES, Tail::CutBytes(1), 4, FRAME - 1),
            (DEFAULT_SEGMENT_MAX_BYTES, Tail::CutBytes(10), 4, FRAME - 10),
            (DEFAULT_SEGMENT_MAX_BYTES, Tail::CutBytes(30), 4, FRAME - 30),
            (
                DEFAULT_SEGMENT_MAX_BYTES,
                Tail::FlipLastPayloadByte,
                4,
                FRAME,
            ),
            (
                DEFAULT_SEGMENT_MAX_BYTES,
                Tail::Garbage(vec![0xab; 3]),
                5,
                3,
            ),
            (
                DEFAULT_SEGMENT_MAX_BYTES,
                Tail::Garbage(vec![0; 4096]),
                5,
                4096,
            ),
            (
                DEFAULT_SEGMENT_MAX_BYTES,
                Tail::Garbage(huge_header.clone()),
                5,
                16,
            ),
            (
                DEFAULT_SEGMENT_MAX_BYTES,
                Tail::Garbage(bad_frame.clone()),
                5,
                FRAME,
            ),
            (1, Tail::CutBytes(1), 4, FRAME - 1),
            (1, Tail::CutBytes(FRAME - 2), 4, 2),
            (1, Tail::Garbage(vec![0xff; 40]), 5, 40),
        ];
        for (segment_max_bytes, damage, n_left, n_torn) in cases {
            let case = format!("{damage:?}, segment_max_bytes {segment_max_bytes}");
            let dir = tempfile::tempdir().unwrap();
            let cfg = || small_segments(dir.path(), segment_max_bytes);
            let (wal, _) = Wal::open(cfg(), 0).await.unwrap();
            append_all(&wal, &(1..=5).map(|i| payload(i, LEN)).collect::<Vec<_>>()).await;
            wal.close().await.unwrap();

            let (_, newest) = list_segments(dir.path()).unwrap().pop().unwrap();
            let mut bytes = fs::read(&newest).unwrap();
            match &damage {
                Tail::CutBytes(n) => bytes.truncate(bytes.len() - *n as usize),
                Tail::Garbage(garbage) => bytes.extend_from_slice(garbage),
                Tail::FlipLastPayloadByte => *bytes.last_mut().unwrap() ^= 0x40,
            }
            fs::write(&newest, &bytes).unwrap();

            let (wal, replayed) = Wal::open(cfg(), 0).await.unwrap();
            let expected: Vec<(u64, Vec<u8>)> =
                (1..=n_left).map(|seq| (seq, payload(seq, LEN))).collect();
            assert_eq!(replayed.entries, expected, "{case}");
            assert_eq!(replayed.n_torn_bytes, n_torn, "{case}");
            assert_eq!(replayed.n_corrupt_entries, 0, "{case}");
            assert_eq!(
                fs::metadata(&newest).unwrap().len(),
                bytes.len() as u64 - n_torn,
                "{case}"
            );
            let more =
                append_all(&wal, &[payload(n_left + 1, LEN), payload(n_left + 2, LEN)]).await;
            assert_eq!(more, [n_left + 1, n_left + 2], "{case}");
            wal.close().await.unwrap();

            let (wal, replayed) = Wal::open(cfg(), 0).await.unwrap();
            let expected: Vec<(u64, Vec<u8>)> = (1..=n_left + 2)
                .map(|seq| (seq, payload(seq, LEN)))
                .collect();
            assert_eq!(replayed.entries, expected, "{case}");
            assert_eq!(
                (replayed.n_torn_bytes, replayed.n_corrupt_entries),
                (0, 0),
                "{case}"
            );
            wal.close().await.unwrap();
        }
    }

    /// Which bytes of an entry to flip.
    #[derive(Clone, Copy, Debug)]
    enum Flip {
        Payload,
        LengthLowBit,
        LengthHighBit,
        Checksum,
        Seq,
    }

    #[tokio::test]
    async fn corruption_before_the_end_is_counted_and_later_segments_still_replay() {
        const LEN: usize = 20;
        const FRAME: usize = HEADER_LEN + LEN;
        // (entries per segment, damaged seq, flip, seqs replayed, seq of the next append)
        let cases: Vec<(u64, u64, Flip, Vec<u64>, u64)> = vec![
            (1, 2, Flip::Payload, vec![1, 3, 4, 5, 6, 7, 8, 9], 10),
            (1, 1, Flip::Checksum, vec![2, 3, 4, 5, 6, 7, 8, 9], 10),
            (1, 5, Flip::LengthLowBit, vec![1, 2, 3, 4, 6, 7, 8, 9], 10),
            (1, 5, Flip::LengthHighBit, vec![1, 2, 3, 4, 6, 7, 8, 9], 10),
            (1, 8, Flip::Seq, vec![1, 2, 3, 4, 5, 6, 7, 9], 10),
            // The rest of the damaged segment is skipped.
            (3, 2, Flip::Payload, vec![1, 4, 5, 6, 7, 8, 9], 10),
            (3, 4, Flip::LengthHighBit, vec![1, 2, 3, 7, 8, 9], 10),
            (3, 6, Flip::Seq, vec![1, 2, 3, 4, 5, 7, 8, 9], 10),
            // In the newest segment but with valid entries after it: corruption, not a torn
            // tail; the segment is kept and appends go to a new one.
            (3, 7, Flip::Payload, vec![1, 2, 3, 4, 5, 6], 10),
            (3, 8, Flip::LengthLowBit, vec![1, 2, 3, 4, 5, 6, 7], 10),
            (9, 1, Flip::Payload, vec![], 10),
        ];
        for (per_segment, damaged, flip, expected, next) in cases {
            let case = format!("{per_segment} per segment, seq {damaged}, {flip:?}");
            let dir = tempfile::tempdir().unwrap();
            let cfg = || small_segments(dir.path(), per_segment * FRAME as u64);
            let (wal, _) = Wal::open(cfg(), 0).await.unwrap();
            append_all(&wal, &(1..=9).map(|i| payload(i, LEN)).collect::<Vec<_>>()).await;
            wal.close().await.unwrap();

            let segment_first = (damaged - 1) / per_segment * per_segment + 1;
            let path = segment_path(dir.path(), segment_first);
            let mut bytes = fs::read(&path).unwrap();
            let at = (damaged - segment_first) as usize * FRAME;
            match flip {
                Flip::Payload => bytes[at + HEADER_LEN + 3] ^= 0x10,
                Flip::LengthLowBit => bytes[at] ^= 0x01,
                Flip::LengthHighBit => bytes[at + 3] ^= 0x80,
                Flip::Checksum => bytes[at + 5] ^= 0x02,
                Flip::Seq => bytes[at + 8] ^= 0x20,
            }
            fs::write(&path, &bytes).unwrap();
            let files_before = segment_files(dir.path());

            let (wal, replayed) = Wal::open(cfg(), 0).await.unwrap();
            assert_eq!(seqs(&replayed), expected, "{case}");
            for (seq, data) in &replayed.entries {
                assert_eq!(*data, payload(*seq, LEN), "{case}");
            }
            assert_eq!(
                (replayed.n_corrupt_entries, replayed.n_torn_bytes),
                (1, 0),
                "{case}"
            );
            // Corrupt bytes are never truncated away.
            for (first, len) in &files_before {
                assert!(
                    segment_files(dir.path()).contains(&(*first, *len)),
                    "{case}"
                );
            }
            assert_eq!(
                wal.append(payload(next, LEN)).await.unwrap(),
                next,
                "{case}"
            );
            wal.close().await.unwrap();

            let (wal, replayed) = Wal::open(cfg(), 0).await.unwrap();
            let mut with_next = expected.clone();
            with_next.push(next);
            assert_eq!(seqs(&replayed), with_next, "{case}");
            assert_eq!(replayed.n_corrupt_entries, 1, "{case}");
            wal.close().await.unwrap();
        }
    }

    #[tokio::test]
    async fn an_entry_over_max_entry_bytes_is_refused_on_append_and_corrupt_on_replay() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = |max_entry_bytes| WalConfig {
            max_entry_bytes,
            ..WalConfig::new(dir.path())
        };
        let (wal, _) = Wal::open(cfg(100), 0).await.unwrap();
        match wal.append(vec![1; 101]).await {
            Err(WalError::TooLarge {
                len: 101, max: 100, ..
            }) => {}
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert_eq!(wal.append(vec![1; 100]).await.unwrap(), 1);
        assert_eq!(wal.append(Vec::new()).await.unwrap(), 2);
        wal.close().await.unwrap();

        // Lowering the limit turns the long entry into corruption: reported, never truncated
        // as if it were a torn write.
        let size_before = segment_files(dir.path());
        let (wal, replayed) = Wal::open(cfg(50), 0).await.unwrap();
        assert_eq!(replayed.entries, []);
        assert_eq!((replayed.n_corrupt_entries, replayed.n_torn_bytes), (1, 0));
        assert!(segment_files(dir.path()).contains(&size_before[0]));
        assert_eq!(wal.append(vec![2; 10]).await.unwrap(), 3);
        wal.close().await.unwrap();

        let (wal, replayed) = Wal::open(cfg(100), 0).await.unwrap();
        assert_eq!(
            replayed.entries,
            [(1, vec![1; 100]), (2, Vec::new()), (3, vec![2; 10])]
        );
        wal.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_closed_log_refuses_appends_and_trims() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(config(dir.path()), 0).await.unwrap();
        let other = wal.clone();
        wal.close().await.unwrap();
        assert!(matches!(other.append(vec![1]).await, Err(WalError::Closed)));
        assert!(matches!(other.trim_through(1).await, Err(WalError::Closed)));
        assert!(matches!(other.close().await, Err(WalError::Closed)));
    }

    #[tokio::test]
    async fn a_failed_write_fails_every_append_until_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(WriterState::default());
        let (mut writer, _) = open_blocking(config(dir.path()), 0, state.clone()).unwrap();
        // A read-only handle: the write fails like a full or broken disk would.
        writer.file = File::open(&writer.segments[0].path).unwrap();
        let wal = start(
            writer,
            dir.path().to_path_buf(),
            DEFAULT_MAX_ENTRY_BYTES,
            state,
        )
        .unwrap();

        let first = wal.append(vec![1; 10]).await.unwrap_err();
        assert!(matches!(first, WalError::Io { op: "write", .. }), "{first}");
        assert!(
            first.to_string().contains("wal-00000000000000000001.log"),
            "{first}"
        );
        let later = wal.append(vec![2; 10]).await.unwrap_err();
        assert!(later.to_string().contains("reopen"), "{later}");
        assert!(wal.trim_through(0).await.is_err());
        assert!(wal.close().await.is_err());

        let (wal, replayed) = Wal::open(config(dir.path()), 0).await.unwrap();
        assert_eq!(replayed, Replayed::default());
        assert_eq!(wal.append(vec![3; 10]).await.unwrap(), 1);
        wal.close().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn appends_survive_a_drop_without_close() {
        // forget: no destructor runs at all, the writer thread never learns (closest to a
        // crash in-process); drop: the handles go away without close.
        for forget in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let cfg = || small_segments(dir.path(), 4096);
            let (wal, _) = Wal::open(cfg(), 0).await.unwrap();
            let tasks: Vec<_> = (0..50u64)
                .map(|i| {
                    let wal = wal.clone();
                    tokio::spawn(async move { (wal.append(payload(i, 300)).await.unwrap(), i) })
                })
                .collect();
            let mut acked = BTreeMap::new();
            for task in tasks {
                let (seq, i) = task.await.unwrap();
                acked.insert(seq, payload(i, 300));
            }
            if forget {
                std::mem::forget(wal);
            } else {
                drop(wal);
            }
            let (wal, replayed) = Wal::open(cfg(), 0).await.unwrap();
            assert_eq!(
                replayed.entries,
                acked.into_iter().collect::<Vec<_>>(),
                "forget {forget}"
            );
            assert_eq!(wal.append(vec![1]).await.unwrap(), 51);
            wal.close().await.unwrap();
        }
    }

    const CRASH_CHILD_DIR: &str = "SPANFLOW_WAL_CRASH_CHILD_DIR";
    const CRASH_CHILD_TEST: &str = "wal::tests::crash_child_appends_until_killed";

    fn crash_payload(worker: u64, i: u64) -> Vec<u8> {
        payload(worker * 1_000_000 + i, (i as usize % 7) * 400 + 40)
    }

    /// Not a test on its own: the child process of `sigkill_mid_write_loses_no_acknowledged_entry`
    /// (does nothing unless that test started it).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn crash_child_appends_until_killed() {
        let Some(dir) = std::env::var_os(CRASH_CHILD_DIR) else {
            return;
        };
        let (wal, _) = Wal::open(small_segments(Path::new(&dir), 64 << 10), 0)
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let workers: Vec<_> = (0..8u64)
            .map(|worker| {
                let wal = wal.clone();
                tokio::spawn(async move {
                    let mut i = 0;
                    while Instant::now() < deadline {
                        let seq = wal.append(crash_payload(worker, i)).await.unwrap();
                        println!("ack {seq} {worker} {i}");
                        i += 1;
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.await.unwrap();
        }
    }

    #[test]
    fn sigkill_mid_write_loses_no_acknowledged_entry() {
        struct KillOnDrop(std::process::Child);
        impl Drop for KillOnDrop {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let mut child = KillOnDrop(
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    CRASH_CHILD_TEST,
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CRASH_CHILD_DIR, dir.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let stdout = child.0.stdout.take().unwrap();
        let (lines_tx, lines) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut acked: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        let mut take = |line: String| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if let ["ack", seq, worker, i] = fields[..] {
                let parsed = (seq.parse(), worker.parse(), i.parse());
                if let (Ok(seq), Ok(worker), Ok(i)) = parsed {
                    assert!(
                        acked.insert(seq, (worker, i)).is_none(),
                        "seq {seq} acked twice"
                    );
                }
            }
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut n_lines = 0;
        while n_lines < 3000 && Instant::now() < deadline {
            match lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    take(line);
                    n_lines += 1;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        // SIGKILL, in the middle of appends.
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        reader.join().unwrap();
        for line in lines.try_iter() {
            take(line);
        }
        assert!(
            acked.len() >= 10,
            "the child acknowledged only {} appends",
            acked.len()
        );

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let cfg = || small_segments(dir.path(), 64 << 10);
            let (wal, replayed) = Wal::open(cfg(), 0).await.unwrap();
            assert_eq!(replayed.n_corrupt_entries, 0);
            let replayed_seqs = seqs(&replayed);
            assert!(replayed_seqs.windows(2).all(|w| w[0] < w[1]));
            let by_seq: BTreeMap<u64, &Vec<u8>> = replayed
                .entries
                .iter()
                .map(|(seq, data)| (*seq, data))
                .collect();
            for (seq, (worker, i)) in &acked {
                let data = by_seq
                    .get(seq)
                    .unwrap_or_else(|| panic!("acknowledged seq {seq} lost"));
                assert_eq!(**data, crash_payload(*worker, *i), "seq {seq}");
            }
            // Exactly once: no payload twice.
            let distinct: BTreeSet<&Vec<u8>> = by_seq.values().copied().collect();
            assert_eq!(distinct.len(), by_seq.len());
            let last = replayed_seqs.last().copied().unwrap_or(0);
            let seq = wal.append(vec![1]).await.unwrap();
            assert!(seq > last);
            wal.close().await.unwrap();
            let (wal, again) = Wal::open(cfg(), 0).await.unwrap();
            assert_eq!(again.entries.len(), replayed.entries.len() + 1);
            assert_eq!((again.n_torn_bytes, again.n_corrupt_entries), (0, 0));
            wal.close().await.unwrap();
        });
    }

    /// Writes `sizes` as entries 1.. into one segment, returns the file and each entry's end.
    fn write_segment(dir: &Path, sizes: &[usize]) -> (PathBuf, Vec<usize>) {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for (i, len) in sizes.iter().enumerate() {
            encode_frame(&mut bytes, i as u64 + 1, &vec![i as u8; *len]);
            ends.push(bytes.len());
        }
        let path = segment_path(dir, 1);
        fs::write(&path, &bytes).unwrap();
        (path, ends)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_cut_keeps_exactly_the_whole_entries_before_it(
            sizes in proptest::collection::vec(0usize..300, 1..12),
            cut_at in 0.0f64..=1.0,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let (path, ends) = write_segment(dir.path(), &sizes);
            let total = *ends.last().unwrap();
            let cut = (total as f64 * cut_at) as usize;
            let file = OpenOptions::new().write(true).open(&path).unwrap();
            file.set_len(cut as u64).unwrap();
            drop(file);

            let (writer, replayed) = open_blocking(config(dir.path()), 0, Arc::default()).unwrap();
            let n_whole = ends.iter().filter(|end| **end <= cut).count();
            let kept = if n_whole == 0 { 0 } else { ends[n_whole - 1] };
            prop_assert_eq!(seqs(&replayed), (1..=n_whole as u64).collect::<Vec<_>>());
            for (seq, data) in &replayed.entries {
                prop_assert_eq!(data.len(), sizes[*seq as usize - 1]);
            }
            prop_assert_eq!(replayed.n_torn_bytes, (cut - kept) as u64);
            prop_assert_eq!(replayed.n_corrupt_entries, 0);
            prop_assert_eq!(fs::metadata(&path).unwrap().len(), kept as u64);
            prop_assert_eq!(writer.next_seq, n_whole as u64 + 1);
        }

        #[test]
        fn any_garbage_after_the_entries_is_a_torn_tail(
            sizes in proptest::collection::vec(0usize..300, 0..8),
            garbage in proptest::collection::vec(any::<u8>(), 1..600),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let (path, ends) = write_segment(dir.path(), &sizes);
            let total = ends.last().copied().unwrap_or(0);
            let mut bytes = fs::read(&path).unwrap();
            bytes.extend_from_slice(&garbage);
            fs::write(&path, &bytes).unwrap();

            let (_, replayed) = open_blocking(config(dir.path()), 0, Arc::default()).unwrap();
            prop_assert_eq!(seqs(&replayed), (1..=sizes.len() as u64).collect::<Vec<_>>());
            prop_assert_eq!(replayed.n_torn_bytes, garbage.len() as u64);
            prop_assert_eq!(replayed.n_corrupt_entries, 0);
            prop_assert_eq!(fs::metadata(&path).unwrap().len(), total as u64);
        }
    }

    #[test]
    fn segment_names_round_trip() {
        for seq in [0, 1, 42, u64::MAX] {
            let path = segment_path(Path::new("/x"), seq);
            let name = path.file_name().unwrap().to_str().unwrap();
            assert_eq!(name.len(), "wal-".len() + 20 + ".log".len());
            assert_eq!(parse_segment_name(name), Some(seq));
        }
        for name in [
            "wal-1.log",
            "wal-0000000000000000000a.log",
            "x-00000000000000000001.log",
            "wal-00000000000000000001.tmp",
        ] {
            assert_eq!(parse_segment_name(name), None, "{name}");
        }
    }
}
