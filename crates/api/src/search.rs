//! Trace search shared by every API: find the traces, read them whole, and summarise them.

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};
use spanflow_model::{SpanRow, TraceId};
use spanflow_store::{find_traces, SpanQuery, SpanStore, StoreError};

use crate::tree::is_error;
use crate::ApiConfig;

/// Traces read at once after a search.
const CONCURRENT_TRACE_READS: usize = 8;

/// What a trace search found.
pub(crate) struct Found {
    /// The traces, newest matching span first, each with its spans by start time.
    pub traces: Vec<Vec<SpanRow>>,
    pub spans_inspected: usize,
    /// False when the search stopped at its budget; older matches may exist.
    pub complete: bool,
}

/// Up to `limit` traces with a span matching `query` and `keep`, read whole.
pub(crate) async fn traces_matching(
    store: &dyn SpanStore,
    config: &ApiConfig,
    query: &SpanQuery,
    keep: &(dyn Fn(&SpanRow) -> bool + Sync),
    limit: usize,
) -> Result<Found, StoreError> {
    let found = find_traces(store, query, keep, limit, config.max_inspected_spans).await?;
    let traces = read_traces(store, &found.trace_ids).await?;
    Ok(Found {
        traces: traces
            .into_iter()
            .filter(|spans| !spans.is_empty())
            .collect(),
        spans_inspected: found.spans_inspected,
        complete: found.complete,
    })
}

/// The traces of `ids`, in that order, a few at a time.
pub(crate) async fn read_traces(
    store: &dyn SpanStore,
    ids: &[TraceId],
) -> Result<Vec<Vec<SpanRow>>, StoreError> {
    let reads: Vec<_> = ids.iter().map(|id| store.trace(*id)).collect();
    futures::stream::iter(reads)
        .buffered(CONCURRENT_TRACE_READS)
        .try_collect()
        .await
}

/// One service's share of a trace.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ServiceStats {
    pub span_count: usize,
    pub error_count: usize,
}

/// A trace in one line: what search results list.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Summary {
    pub trace_id: TraceId,
    pub root_service: String,
    pub root_operation: String,
    /// µs since the epoch.
    pub start: i64,
    pub end: i64,
    pub span_count: usize,
    pub error_count: usize,
    pub services: BTreeMap<String, ServiceStats>,
}

impl Summary {
    /// Summarises a trace's spans. The root is the earliest span without a parent; when the
    /// root is missing (not yet arrived, or cut by retention), the earliest span stands in.
    pub fn of(spans: &[SpanRow]) -> Option<Summary> {
        let first = spans.first()?;
        let root = spans
            .iter()
            .filter(|span| span.parent_span_id.is_none())
            .min_by_key(|span| span.start_time)
            .or_else(|| spans.iter().min_by_key(|span| span.start_time))
            .unwrap_or(first);
        let mut services: BTreeMap<String, ServiceStats> = BTreeMap::new();
        let mut error_count = 0;
        for span in spans {
            let stats = services.entry(span.app_service.clone()).or_default();
            stats.span_count += 1;
            if is_error(span) {
                stats.error_count += 1;
                error_count += 1;
            }
        }
        Some(Summary {
            trace_id: first.trace_id,
            root_service: root.app_service.clone(),
            root_operation: root.endpoint.clone(),
            start: spans
                .iter()
                .map(|span| span.start_time)
                .min()
                .unwrap_or_default(),
            end: spans
                .iter()
                .map(|span| span.end_time.max(span.start_time))
                .max()
                .unwrap_or_default(),
            span_count: spans.len(),
            error_count,
            services,
        })
    }

    pub fn duration_us(&self) -> i64 {
        self.end - self.start
    }
}
