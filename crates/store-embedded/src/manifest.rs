//! The manifest: which Parquet files make up the store, and up to which write-ahead-log
//! sequence number their rows reach. It is replaced atomically (write, fsync, rename, fsync the
//! directory), so after a crash it names either the old set of files or the new one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::EmbeddedError;

pub const MANIFEST_FILE: &str = "manifest.json";

/// The layout of files and WAL entries this version writes and reads. Version 1 stored ids as
/// hex text; version 2 stored them as bytes; version 3 stores a span's end as its offset from
/// the start plus the duration; version 4 adds the place columns of both ends of a call;
/// version 5 stores most text columns' empty values as null; version 6 packs a span's resource
/// attributes into one value; version 7 packs a span's attribute names and types into one key
/// set beside the values' list; version 8 stores the zeros of six number columns that are
/// nearly always zero as null, and eight one-byte codes as one number; version 9 packs the
/// thirteen texts of each end's place into one value. This version reads 4 to 9, and records
/// each file's format in its entry.
pub const FORMAT: u32 = 9;

/// The formats this version reads: 4's files are 5's with no nulls in their text.
const READS: [u32; 6] = [4, 5, 6, 7, 8, FORMAT];

fn format_1() -> u32 {
    1
}

/// Entries written before files recorded their format: 4's and 5's files, read alike.
fn format_5() -> u32 {
    5
}

/// One Parquet file of the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Unique, increasing; names the file.
    pub id: u64,
    /// Start of the file's time partition, seconds since the epoch.
    pub partition: i64,
    pub n_rows: u64,
    pub n_bytes: u64,
    /// Smallest and largest `start_time` in the file, µs.
    pub min_start_time: i64,
    pub max_start_time: i64,
    /// The storage format the file was written in (see [`FORMAT`]).
    #[serde(default = "format_5")]
    pub format: u32,
}

impl FileEntry {
    /// `parts/<partition>/<id>.parquet`, relative to the data directory.
    pub fn relative_path(&self) -> PathBuf {
        PathBuf::from("parts")
            .join(self.partition.to_string())
            .join(format!("{:020}.parquet", self.id))
    }

    /// The trace-id index beside the file.
    pub fn relative_index_path(&self) -> PathBuf {
        self.relative_path().with_extension("tids")
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Absent in manifests of version 1.
    #[serde(default = "format_1")]
    pub format: u32,
    /// Every WAL entry with a sequence number at or below this is in the files.
    pub flushed_seq: u64,
    pub next_file_id: u64,
    pub files: Vec<FileEntry>,
}

impl Default for Manifest {
    fn default() -> Manifest {
        Manifest {
            format: FORMAT,
            flushed_seq: 0,
            next_file_id: 0,
            files: Vec::new(),
        }
    }
}

impl Manifest {
    /// The manifest of `data_dir`, or an empty one; fails on a manifest of another format.
    pub fn load(data_dir: &Path) -> Result<Manifest, EmbeddedError> {
        let path = data_dir.join(MANIFEST_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let mut manifest: Manifest = serde_json::from_slice(&bytes).map_err(|error| {
                    EmbeddedError::corrupt(format!(
                        "manifest {} is not valid: {error}",
                        path.display()
                    ))
                })?;
                if !READS.contains(&manifest.format) {
                    return Err(EmbeddedError::corrupt(format!(
                        "{} holds data in storage format {}; this version of spanflow reads \
                         formats {} to {FORMAT} only. Move the directory aside (or point \
                         data_dir elsewhere) to start an empty store",
                        data_dir.display(),
                        manifest.format,
                        READS[0],
                    )));
                }
                // Stored as this version's format from the next change on.
                manifest.format = FORMAT;
                Ok(manifest)
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
            Err(error) => Err(EmbeddedError::io(
                format!("reading {}", path.display()),
                error,
            )),
        }
    }

    pub fn store(&self, data_dir: &Path) -> Result<(), EmbeddedError> {
        let path = data_dir.join(MANIFEST_FILE);
        let temporary = data_dir.join(format!("{MANIFEST_FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(self).expect("a manifest always serializes");
        write_durably(&temporary, &bytes)?;
        std::fs::rename(&temporary, &path).map_err(|error| {
            EmbeddedError::io(format!("renaming {}", temporary.display()), error)
        })?;
        sync_dir(data_dir)
    }

    pub fn disk_bytes(&self) -> u64 {
        self.files.iter().map(|file| file.n_bytes).sum()
    }
}

/// Writes a file and fsyncs it.
pub fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), EmbeddedError> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)
        .map_err(|error| EmbeddedError::io(format!("creating {}", path.display()), error))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|error| EmbeddedError::io(format!("writing {}", path.display()), error))
}

/// Makes the creation, renaming or removal of entries in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), EmbeddedError> {
    std::fs::File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|error| EmbeddedError::io(format!("syncing directory {}", dir.display()), error))
}
