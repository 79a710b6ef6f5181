//! Where span rows live: the [`SpanStore`] trait the server writes through and the query layer
//! reads through, a bounded in-memory store, and the conformance suite every backend runs.
//!
//! Invariant: a store knows rows, never OTLP or HTTP.

pub mod allocator;
pub mod analytics;
pub mod conformance;
mod error;
mod find;
mod memory;
mod query;
pub mod sql;
pub mod text;
pub mod workload;

pub use error::{ErrorKind, StoreError};
pub use find::{find_traces, FoundTraces};
pub use memory::MemoryStore;
pub use query::{AttributeFilter, Operation, PlaceFilter, SpanQuery, TimeRange};

use analytics::{Edge, MapBy, RedPoint, RedQuery};
use spanflow_model::{SpanRow, TraceId};
use sql::{SqlLimits, SqlResult};

/// Rows a backend has made ready to write, in a form only that backend knows.
pub struct PreparedWrite {
    n_rows: usize,
    form: Box<dyn std::any::Any + Send>,
}

impl PreparedWrite {
    pub fn new<T: std::any::Any + Send>(n_rows: usize, form: T) -> PreparedWrite {
        PreparedWrite {
            n_rows,
            form: Box::new(form),
        }
    }

    /// How many span rows it holds.
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// The backend's form back; an internal error when another backend prepared it.
    pub fn into_form<T: std::any::Any>(self, backend: &str) -> Result<T, StoreError> {
        self.form.downcast::<T>().map(|form| *form).map_err(|_| {
            StoreError::new(
                ErrorKind::Internal,
                format!("a write prepared by another store was given to the {backend} store"),
            )
        })
    }
}

impl std::fmt::Debug for PreparedWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedWrite")
            .field("n_rows", &self.n_rows)
            .finish_non_exhaustive()
    }
}

/// A write built a row at a time, as the rows are mapped, for a backend whose write form is
/// built so: the rows need not be held until the write is whole. See [`SpanStore::encoder`].
pub trait RowEncoder {
    /// Adds a row to the write.
    fn append(&mut self, row: &SpanRow);

    /// Says what the rows appended were mapped from: a record of the payloads as received
    /// (`spanflow_otlp::record`), which maps again to exactly those rows, in that order. A
    /// backend that logs its writes may log the record instead of the rows; one that does not
    /// ignores it.
    fn mapped_from(&mut self, _record: Vec<u8>) {}

    /// Whether this write uses what [`RowEncoder::mapped_from`] says; a caller need not build
    /// a record for one that does not.
    fn takes_record(&self) -> bool {
        false
    }

    /// The write, as [`SpanStore::prepare`] of the same rows would have made it.
    fn finish(self: Box<Self>) -> Result<PreparedWrite, StoreError>;
}

/// A backend that keeps span rows.
///
/// Rows are keyed by (trace id, span id): writing a row whose key is already stored replaces
/// it, so an agent that sends a batch again after a lost acknowledgement stores nothing twice.
#[async_trait::async_trait]
pub trait SpanStore: Send + Sync + 'static {
    /// Stores the rows; returns once they are as durable as this backend makes them.
    async fn write(&self, rows: Vec<SpanRow>) -> Result<(), StoreError>;

    /// The part of a write that needs no I/O (encoding, sorting), done on the calling thread;
    /// [`SpanStore::write_prepared`] does the rest. `write` is the two in turn.
    ///
    /// The server calls it on the thread that decoded and mapped the rows, so that the rows
    /// are built and freed on one thread: freeing memory another thread allocated costs the
    /// allocator more. It blocks for as long as the encoding takes, so call it where blocking
    /// is allowed. Backends with nothing to prepare keep the rows as they are.
    fn prepare(&self, rows: Vec<SpanRow>) -> Result<PreparedWrite, StoreError> {
        Ok(PreparedWrite::new(rows.len(), rows))
    }

    /// A write to build a row at a time, for about `n_rows` rows, where the backend builds its
    /// write form so; `None` where it takes the rows whole ([`SpanStore::prepare`]). Like
    /// `prepare`, its work is done on the calling thread.
    fn encoder(&self, _n_rows: usize) -> Option<Box<dyn RowEncoder>> {
        None
    }

    /// Stores what [`SpanStore::prepare`] of this same store made, as `write` does.
    async fn write_prepared(&self, prepared: PreparedWrite) -> Result<(), StoreError> {
        let rows: Vec<SpanRow> = prepared.into_form(self.backend())?;
        self.write(rows).await
    }

    /// Every stored span of a trace, ordered by start time; empty when the trace is unknown.
    /// No time range is needed: a trace id is found however old it is.
    async fn trace(&self, trace_id: TraceId) -> Result<Vec<SpanRow>, StoreError>;

    /// Spans matching the query, newest start first, at most `query.limit`.
    async fn search(&self, query: &SpanQuery) -> Result<Vec<SpanRow>, StoreError>;

    /// The services with a span starting in `range`, sorted by name.
    async fn services(&self, range: TimeRange) -> Result<Vec<String>, StoreError>;

    /// The distinct span names of a service's spans starting in `range`, each with its kind,
    /// sorted by name, then kind.
    async fn operations(
        &self,
        service: &str,
        range: TimeRange,
    ) -> Result<Vec<Operation>, StoreError>;

    /// Calls between services (client or producer span to the server or consumer span under
    /// it, in another service) and from services to databases and queues, in `range`, sorted
    /// by caller, callee and kind. See [`analytics::service_map`] for the reference.
    async fn service_map(&self, range: TimeRange, by: MapBy) -> Result<Vec<Edge>, StoreError>;

    /// Request rate, errors and duration percentiles of a service's entry spans over time,
    /// sorted by bucket, then operation. See [`analytics::red`] for the reference.
    async fn red(&self, query: &RedQuery) -> Result<Vec<RedPoint>, StoreError>;

    /// Runs one read-only `SELECT` over `l7_flow_log` in the backend's SQL dialect, within
    /// `limits` (see [`sql::prepare`] for what gets through).
    async fn sql(&self, _sql: &str, _limits: &SqlLimits) -> Result<SqlResult, StoreError> {
        Err(StoreError::new(
            ErrorKind::BadRequest,
            format!(
                "the {} store does not answer SQL; use the embedded or the ClickHouse store",
                self.backend()
            ),
        ))
    }

    /// A short backend name for logs and `/healthz` (`memory`, `embedded`, `clickhouse`).
    fn backend(&self) -> &'static str;

    /// Runs the backend's upkeep now (flushing, retention, compaction), instead of waiting for
    /// its schedule. Backends without upkeep do nothing.
    async fn maintain(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
