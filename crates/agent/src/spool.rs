//! The spool: every payload the agent accepts is appended here before the client hears
//! "accepted", and stays until a server acknowledges it. A killed agent finds on its next
//! start every payload it acknowledged and no server stored, and sends them first, oldest
//! first; while no server answers, the spool lets the agent keep accepting up to its byte
//! bound, far past what it could hold in memory.
//!
//! Layout: a directory of segment files `<id>.seg`, ids increasing, each a run of records
//! `[u32 length][u32 crc32 of the bytes][length bytes: a protobuf Payload]`, little-endian;
//! and a file `acked` naming how far the server has acknowledged (`<segment> <offset>`).
//! A record is written with one `write` before the client is answered, so a killed process
//! loses nothing; the forwarder fsyncs new records every second, so a machine that loses power
//! loses at most the last second. The acknowledged mark is written
//! after every acknowledgement but not fsynced: after a power loss a few delivered payloads
//! may be sent again, which the stores absorb (a resend never makes a second row).
//!
//! Invariant: records are acknowledged in the order they were appended (the forwarder sends
//! batches one after another), so the mark only moves forward and every segment before the
//! mark's can be deleted.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use prost::Message;
use spanflow_model::metric_names;
use spanflow_transport::Payload;

const HEADER_BYTES: u64 = 8;
const ACKED_FILE: &str = "acked";
const LOCK_FILE: &str = "lock";
/// A record longer than this is damage, not a payload (bodies are capped far below it).
const MAX_RECORD_BYTES: u32 = 1 << 30;

#[derive(Clone, Debug)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// Bytes of payloads not yet acknowledged; past it, clients are told to retry later.
    pub max_bytes: u64,
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
}

impl SpoolConfig {
    /// A spool in `dir` bounded at `max_bytes`, with segments of an eighth of it (between
    /// 1 MiB and 64 MiB).
    pub fn new(dir: impl Into<PathBuf>, max_bytes: u64) -> SpoolConfig {
        SpoolConfig {
            dir: dir.into(),
            max_bytes,
            segment_bytes: (max_bytes / 8).clamp(1 << 20, 64 << 20),
        }
    }
}

/// Where a record lives: its segment and the offset of its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
}

impl Location {
    /// Bytes the record takes on disk.
    pub fn record_bytes(&self) -> u64 {
        HEADER_BYTES + u64::from(self.len)
    }

    fn end(&self) -> (u64, u64) {
        (self.segment, self.offset + self.record_bytes())
    }
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    current: File,
    current_id: u64,
    current_len: u64,
    /// Whether the current segment has appends not yet fsynced.
    dirty: bool,
    /// Closed segments waiting for their fsync.
    to_sync: Vec<File>,
    /// The acknowledged mark not yet written, and the segments it frees, not yet deleted:
    /// both wait for [`Spool::take_upkeep`], so that the task that took a request makes no
    /// file system call but the append (and, once a segment is full, the next one's creation).
    acked: Option<(u64, u64)>,
    to_remove: Vec<PathBuf>,
    /// Record bytes appended and not yet acknowledged.
    held_bytes: u64,
    /// The oldest segment still on disk.
    oldest_id: u64,
    /// Held open for the lock on the directory.
    _lock: File,
}

/// What a start found in the spool.
pub struct Recovered {
    pub records: Vec<Location>,
    pub damaged: u64,
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

fn segment_ids(dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(id) = name
            .strip_suffix(".seg")
            .and_then(|id| id.parse::<u64>().ok())
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

fn read_acked(dir: &Path) -> (u64, u64) {
    std::fs::read_to_string(dir.join(ACKED_FILE))
        .ok()
        .and_then(|text| {
            let mut fields = text.split_whitespace().map(|field| field.parse::<u64>());
            match (fields.next(), fields.next()) {
                (Some(Ok(segment)), Some(Ok(offset))) => Some((segment, offset)),
                _ => None,
            }
        })
        .unwrap_or((0, 0))
}

fn checksum(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

impl Spool {
    /// Opens (or creates) the spool in `config.dir`, taking its lock, and lists the records
    /// not yet acknowledged, oldest first. Damaged records (a torn last write, a bad
    /// checksum) end their segment's replay and are counted.
    pub fn open(config: &SpoolConfig) -> io::Result<(Spool, Recovered)> {
        std::fs::create_dir_all(&config.dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(config.dir.join(LOCK_FILE))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "the spool {} is in use by another agent",
                        config.dir.display()
                    ),
                ))
            }
            Err(std::fs::TryLockError::Error(error)) => return Err(error),
        }
        let (acked_segment, acked_offset) = read_acked(&config.dir);
        let mut records = Vec::new();
        let mut damaged = 0;
        let ids = segment_ids(&config.dir)?;
        for &id in &ids {
            let path = segment_path(&config.dir, id);
            if id < acked_segment {
                std::fs::remove_file(&path)?;
                continue;
            }
            let data = std::fs::read(&path)?;
            let mut offset = if id == acked_segment { acked_offset } else { 0 };
            while offset < data.len() as u64 {
                match Self::record_at(&data, offset) {
                    Some(len) => {
                        records.push(Location {
                            segment: id,
                            offset,
                            len,
                        });
                        offset += HEADER_BYTES + u64::from(len);
                    }
                    None => {
                        damaged += 1;
                        tracing::warn!(
                            segment = %path.display(),
                            offset,
                            "damaged record in the spool; the rest of this segment is skipped"
                        );
                        break;
                    }
                }
            }
        }
        let held_bytes = records.iter().map(Location::record_bytes).sum();
        // New records always go to a new segment, after any torn tail.
        let current_id = ids.last().map_or(acked_segment.max(1), |last| last + 1);
        let current = Self::create_segment(&config.dir, current_id)?;
        // The new name must survive a power loss for the records in it to.
        File::open(&config.dir)?.sync_all()?;
        let spool = Spool {
            dir: config.dir.clone(),
            max_bytes: config.max_bytes,
            segment_bytes: config.segment_bytes.max(1),
            current,
            current_id,
            current_len: 0,
            dirty: false,
            to_sync: Vec::new(),
            acked: None,
            to_remove: Vec::new(),
            held_bytes,
            oldest_id: ids
                .iter()
                .copied()
                .find(|&id| id >= acked_segment)
                .unwrap_or(current_id),
            _lock: lock,
        };
        metrics::gauge!(metric_names::AGENT_SPOOL_BYTES).set(held_bytes as f64);
        Ok((spool, Recovered { records, damaged }))
    }

    fn create_segment(dir: &Path, id: u64) -> io::Result<File> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(segment_path(dir, id))
    }

    /// The length of the valid record at `offset`, if one is there.
    fn record_at(data: &[u8], offset: u64) -> Option<u32> {
        let start = usize::try_from(offset).ok()?;
        let header = data.get(start..start.checked_add(HEADER_BYTES as usize)?)?;
        let len = u32::from_le_bytes(header[0..4].try_into().ok()?);
        let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
        if len > MAX_RECORD_BYTES {
            return None;
        }
        let body_start = start + HEADER_BYTES as usize;
        let body = data.get(body_start..body_start.checked_add(len as usize)?)?;
        (checksum(body) == crc).then_some(len)
    }

    pub fn held_bytes(&self) -> u64 {
        self.held_bytes
    }

    /// Whether a record of `n_bytes` would take the spool past its bound. An empty spool
    /// takes anything, so a bound below the body cap cannot refuse a request forever.
    pub fn is_full_for(&self, n_bytes: u64) -> bool {
        self.held_bytes > 0 && self.held_bytes + HEADER_BYTES + n_bytes > self.max_bytes
    }

    /// Appends a payload; once this returns, a killed process keeps it.
    pub fn append(&mut self, payload: &Payload) -> io::Result<Location> {
        let len = payload.encoded_len();
        let record_bytes = HEADER_BYTES + len as u64;
        if self.current_len > 0 && self.current_len + record_bytes > self.segment_bytes {
            let next = Self::create_segment(&self.dir, self.current_id + 1)?;
            let closed = std::mem::replace(&mut self.current, next);
            // Its records, and with them the new segment's name in the directory, at the next
            // fsync.
            self.to_sync.push(closed);
            self.current_id += 1;
            self.current_len = 0;
        }
        let mut record = Vec::with_capacity(record_bytes as usize);
        record.extend_from_slice(&[0; HEADER_BYTES as usize]);
        payload
            .encode(&mut record)
            .expect("a Vec grows to take any message");
        let crc = checksum(&record[HEADER_BYTES as usize..]);
        let len = u32::try_from(len).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "payload too large to spool")
        })?;
        record[0..4].copy_from_slice(&len.to_le_bytes());
        record[4..8].copy_from_slice(&crc.to_le_bytes());
        if let Err(error) = self.current.write_all(&record) {
            // A partial record would hide everything after it at the next start: truncate
            // back, and start a fresh segment if even that fails.
            if self.current.set_len(self.current_len).is_err() {
                self.current_len = self.segment_bytes;
            }
            return Err(error);
        }
        let location = Location {
            segment: self.current_id,
            offset: self.current_len,
            len,
        };
        self.current_len += record_bytes;
        self.held_bytes += record_bytes;
        self.dirty = true;
        metrics::gauge!(metric_names::AGENT_SPOOL_BYTES).set(self.held_bytes as f64);
        Ok(location)
    }

    /// Marks everything up to and including `last` acknowledged, `n_bytes` of records in
    /// all. The mark is written, and the segments wholly before it deleted, by the next
    /// [`Spool::take_upkeep`]: a mark lost to a crash before then only has those records sent
    /// again, which the server stores once.
    pub fn acknowledge(&mut self, last: Location, n_bytes: u64) {
        self.held_bytes = self.held_bytes.saturating_sub(n_bytes);
        metrics::gauge!(metric_names::AGENT_SPOOL_BYTES).set(self.held_bytes as f64);
        let (segment, offset) = last.end();
        self.acked = Some((segment, offset));
        while self.oldest_id < segment {
            self.to_remove.push(segment_path(&self.dir, self.oldest_id));
            self.oldest_id += 1;
        }
    }

    /// The file system work the spool owes, to be done without holding it: the fsync of what
    /// was appended (the current segment if it has new records, closed segments, and the
    /// directory once new segments were named), the acknowledged mark, and the deletion of
    /// the segments it frees.
    pub fn take_upkeep(&mut self) -> io::Result<Upkeep> {
        let mut files = std::mem::take(&mut self.to_sync);
        // A segment closed since the last upkeep means one was created.
        let sync_dir = !files.is_empty();
        if self.dirty {
            files.push(self.current.try_clone()?);
            self.dirty = false;
        }
        Ok(Upkeep {
            dir: self.dir.clone(),
            files,
            sync_dir,
            acked: self.acked.take(),
            remove: std::mem::take(&mut self.to_remove),
        })
    }
}

/// The file system work [`Spool::take_upkeep`] hands out. Blocking.
pub struct Upkeep {
    dir: PathBuf,
    files: Vec<File>,
    sync_dir: bool,
    acked: Option<(u64, u64)>,
    remove: Vec<PathBuf>,
}

impl Upkeep {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && !self.sync_dir && self.acked.is_none() && self.remove.is_empty()
    }

    pub fn run(self) -> io::Result<()> {
        self.files.iter().try_for_each(File::sync_data)?;
        if self.sync_dir {
            File::open(&self.dir)?.sync_all()?;
        }
        if let Some((segment, offset)) = self.acked {
            let tmp = self.dir.join(format!("{ACKED_FILE}.tmp"));
            std::fs::write(&tmp, format!("{segment} {offset}\n"))?;
            std::fs::rename(&tmp, self.dir.join(ACKED_FILE))?;
        }
        // After the mark: a segment deleted before it would only be deleted again at start.
        for path in &self.remove {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

/// Reads one record back. The segment stays until the record is acknowledged, so it is there.
pub fn read(dir: &Path, location: Location) -> io::Result<Payload> {
    let file = File::open(segment_path(dir, location.segment))?;
    let mut record = vec![0; location.record_bytes() as usize];
    file.read_exact_at(&mut record, location.offset)?;
    if Spool::record_at(&record, 0) != Some(location.len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "record at {} of segment {} is damaged",
                location.offset, location.segment
            ),
        ));
    }
    Payload::decode(&record[HEADER_BYTES as usize..])
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(n: u8, n_bytes: usize) -> Payload {
        Payload {
            peer_ip: format!("10.0.0.{n}"),
            n_spans: u32::from(n),
            otlp: vec![n; n_bytes].into(),
            encoding: 2,
            org_id: String::new(),
        }
    }

    fn config(dir: &Path, max_bytes: u64, segment_bytes: u64) -> SpoolConfig {
        SpoolConfig {
            segment_bytes,
            ..SpoolConfig::new(dir, max_bytes)
        }
    }

    #[test]
    fn records_come_back_in_order_after_a_restart_less_what_was_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), 1 << 20, 300);
        let locations: Vec<Location> = {
            let (mut spool, recovered) = Spool::open(&config).unwrap();
            assert!(recovered.records.is_empty());
            let locations: Vec<Location> = (1..=6)
                .map(|n| spool.append(&payload(n, 100)).unwrap())
                .collect();
            assert!(
                locations.iter().map(|l| l.segment).max() > Some(locations[0].segment),
                "records spread over segments: {locations:?}"
            );
            let acked: u64 = locations[..3].iter().map(Location::record_bytes).sum();
            spool.acknowledge(locations[2], acked);
            spool.take_upkeep().unwrap().run().unwrap();
            assert!(
                !segment_path(dir.path(), locations[0].segment).exists(),
                "a wholly acknowledged segment is deleted by the upkeep"
            );
            assert_eq!(
                spool.held_bytes(),
                locations[3..]
                    .iter()
                    .map(Location::record_bytes)
                    .sum::<u64>()
            );
            locations
        };
        let (_spool, recovered) = Spool::open(&config).unwrap();
        assert_eq!(recovered.records, locations[3..].to_vec());
        assert_eq!(recovered.damaged, 0);
        let read_back: Vec<Payload> = recovered
            .records
            .iter()
            .map(|location| read(dir.path(), *location).unwrap())
            .collect();
        assert_eq!(
            read_back,
            (4..=6).map(|n| payload(n, 100)).collect::<Vec<_>>()
        );
        assert!(
            !segment_path(dir.path(), locations[0].segment).exists(),
            "a wholly acknowledged segment is deleted"
        );
    }

    #[test]
    fn a_torn_last_record_is_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), 1 << 20, 1 << 20);
        let first = {
            let (mut spool, _) = Spool::open(&config).unwrap();
            let first = spool.append(&payload(1, 50)).unwrap();
            spool.append(&payload(2, 50)).unwrap();
            first
        };
        let path = segment_path(dir.path(), first.segment);
        let len = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 10)
            .unwrap();
        let (mut spool, recovered) = Spool::open(&config).unwrap();
        assert_eq!(recovered.records, vec![first]);
        assert_eq!(recovered.damaged, 1);
        // New records go after the damage, in a segment of their own.
        let next = spool.append(&payload(3, 50)).unwrap();
        assert!(next.segment > first.segment);
        drop(spool);
        let (_, recovered) = Spool::open(&config).unwrap();
        assert_eq!(recovered.records, vec![first, next]);
    }

    #[test]
    fn a_spool_is_bounded_and_locked() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), 250, 1 << 20);
        let (mut spool, _) = Spool::open(&config).unwrap();
        assert!(!spool.is_full_for(1000), "an empty spool takes anything");
        spool.append(&payload(1, 100)).unwrap();
        assert!(!spool.is_full_for(100));
        assert!(spool.is_full_for(200));
        let error = Spool::open(&config)
            .err()
            .expect("a second opener is refused");
        assert!(error.to_string().contains("in use"), "{error}");
    }
}
