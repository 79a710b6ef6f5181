//! The embedded store: every batch goes to a write-ahead log (fsynced before the write returns),
//! then to an in-memory buffer, then to Parquet files per time partition; DataFusion reads the
//! files and the buffer as one table, `l7_flow_log`.
//!
//! ```text
//! write -> wal (fsync) -> buffer --flush--> parts/<partition>/<id>.parquet (+ .tids index)
//!                                                   manifest.json names the files and the
//!                                                   last WAL entry they hold
//! ```
//!
//! Invariant: knows rows and files, never OTLP or HTTP.

mod batches;
mod files;
mod join;
mod manifest;
mod packed;
mod query;
pub mod schema;
mod store;
mod trace_index;
pub mod wal;

pub use store::{prepare_batch, prepare_buffer, prepare_recorded, EmbeddedConfig, EmbeddedStore};

/// The bytes of the Parquet file the store would write for `batch` (rows as the store buffers
/// them, [`schema::rows_to_buffer`]): sorted, deduplicated and encoded as a flush does it. For
/// benchmarks of the encoding; the store itself writes files through its flushes.
pub fn parquet_bytes(batch: &arrow::record_batch::RecordBatch) -> Result<Vec<u8>, EmbeddedError> {
    let mut bytes = Vec::new();
    for (_, sorted) in batches::by_partition(std::slice::from_ref(batch), |_| 0)? {
        let sorted =
            schema::buffer_to_file(&sorted).map_err(|error| EmbeddedError::corrupt(error.0))?;
        files::encode(&sorted, &mut bytes)?;
    }
    Ok(bytes)
}

use spanflow_store::{ErrorKind, StoreError};

/// Errors inside the embedded store, turned into [`StoreError`] at the trait boundary.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Corrupt(String),
    #[error("parquet file {path}: {source}")]
    Parquet {
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("writing parquet file {path}: {source}")]
    ParquetWrite {
        path: String,
        #[source]
        source: parquet_60::errors::ParquetError,
    },
    #[error("write-ahead log: {0}")]
    Wal(#[from] wal::WalError),
    #[error("query: {0}")]
    Query(#[from] datafusion::error::DataFusionError),
    #[error("{0}")]
    BadQuery(String),
}

impl EmbeddedError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> EmbeddedError {
        EmbeddedError::Io {
            context: context.into(),
            source,
        }
    }

    pub fn parquet_write(
        path: &std::path::Path,
        source: parquet_60::errors::ParquetError,
    ) -> EmbeddedError {
        EmbeddedError::ParquetWrite {
            path: path.display().to_string(),
            source,
        }
    }

    pub fn corrupt(message: impl Into<String>) -> EmbeddedError {
        EmbeddedError::Corrupt(message.into())
    }

    pub fn parquet(path: &std::path::Path, source: parquet::errors::ParquetError) -> EmbeddedError {
        EmbeddedError::Parquet {
            path: path.display().to_string(),
            source,
        }
    }
}

impl From<EmbeddedError> for StoreError {
    fn from(error: EmbeddedError) -> StoreError {
        let kind = match &error {
            EmbeddedError::BadQuery(_) => ErrorKind::BadRequest,
            // A query that names what does not exist, or asks for too much, is the caller's.
            EmbeddedError::Query(error)
                if matches!(
                    error.find_root(),
                    datafusion::error::DataFusionError::ResourcesExhausted(_)
                        | datafusion::error::DataFusionError::Plan(_)
                        | datafusion::error::DataFusionError::SQL(..)
                        | datafusion::error::DataFusionError::SchemaError(..)
                ) =>
            {
                ErrorKind::BadRequest
            }
            // Sending the same rows again would be refused again: the sender must split them.
            EmbeddedError::Wal(wal::WalError::TooLarge { .. }) => ErrorKind::BadRequest,
            EmbeddedError::Io { .. } | EmbeddedError::Wal(_) => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        };
        let message = match &error {
            EmbeddedError::Query(datafusion::error::DataFusionError::ResourcesExhausted(cause)) => {
                format!("the query needs more memory than the store allows for queries (query_memory_bytes): {cause}")
            }
            other => other.to_string(),
        };
        StoreError::new(kind, message).with_source(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_too_large_for_the_log_is_the_senders_to_split_and_a_failing_log_to_retry() {
        let too_large = StoreError::from(EmbeddedError::Wal(wal::WalError::TooLarge {
            len: 300 << 20,
            max: 256 << 20,
            dir: "/data/wal".into(),
        }));
        assert_eq!(too_large.kind, ErrorKind::BadRequest);
        assert_eq!(too_large.kind.http_status(), 400);
        assert!(
            too_large.message.contains("larger than max_entry_bytes"),
            "{}",
            too_large.message
        );
        let closed = StoreError::from(EmbeddedError::Wal(wal::WalError::Closed));
        assert_eq!(closed.kind, ErrorKind::Unavailable);
    }
}
