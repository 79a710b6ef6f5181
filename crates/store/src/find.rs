//! Trace search on top of span search: the traces that hold a span matching a query and a
//! further predicate the backend cannot evaluate (a TraceQL comparison, say).

use std::collections::HashSet;

use spanflow_model::{SpanRow, TraceId};

use crate::{SpanQuery, SpanStore, StoreError};

/// What a trace search found.
#[derive(Debug, Default, PartialEq)]
pub struct FoundTraces {
    /// The traces, ordered by their newest matching span, newest first.
    pub trace_ids: Vec<TraceId>,
    /// The spans read to find them.
    pub spans_inspected: usize,
    /// False when the search stopped at `max_inspected` spans with fewer traces than asked
    /// for: older matches may exist.
    pub complete: bool,
}

/// The first span search reads this many spans per trace asked for; each next one four times
/// as many as the last.
const SPANS_PER_TRACE: usize = 8;

/// Up to `limit` traces holding a span that matches `query` and `keep`, newest first.
///
/// Spans come from `store.search(query)` (the store's pushed-down filters), newest first,
/// in growing reads, until `limit` distinct traces are found, the store has no more matches,
/// or `max_inspected` spans were read.
pub async fn find_traces(
    store: &dyn SpanStore,
    query: &SpanQuery,
    keep: &(dyn Fn(&SpanRow) -> bool + Sync),
    limit: usize,
    max_inspected: usize,
) -> Result<FoundTraces, StoreError> {
    let mut found = FoundTraces {
        complete: true,
        ..FoundTraces::default()
    };
    if limit == 0 {
        return Ok(found);
    }
    let max_inspected = max_inspected.max(1);
    let mut span_limit = limit
        .saturating_mul(SPANS_PER_TRACE)
        .max(256)
        .min(max_inspected);
    loop {
        let spans = store
            .search(&SpanQuery {
                limit: span_limit,
                ..query.clone()
            })
            .await?;
        found.spans_inspected = spans.len();
        let mut seen = HashSet::new();
        found.trace_ids.clear();
        for span in &spans {
            if found.trace_ids.len() == limit {
                break;
            }
            if keep(span) && seen.insert(span.trace_id) {
                found.trace_ids.push(span.trace_id);
            }
        }
        if found.trace_ids.len() == limit || spans.len() < span_limit {
            return Ok(found);
        }
        if span_limit >= max_inspected {
            found.complete = false;
            return Ok(found);
        }
        span_limit = span_limit.saturating_mul(4).min(max_inspected);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{conformance, MemoryStore};

    async fn store_of(traces: u8, spans_per_trace: u8) -> MemoryStore {
        let store = MemoryStore::new(1_000_000);
        let mut rows = Vec::new();
        for trace in 1..=traces {
            for span in 1..=spans_per_trace {
                let start = i64::from(trace) * 1_000_000 + i64::from(span);
                let operation = if span % 2 == 0 { "even" } else { "odd" };
                rows.push(conformance::row(trace, span, "svc", operation, start));
            }
        }
        store.write(rows).await.unwrap();
        store
    }

    #[tokio::test]
    async fn traces_come_newest_first_each_once() {
        let store = store_of(10, 50).await;
        let found = find_traces(&store, &SpanQuery::default(), &|_| true, 3, 100_000)
            .await
            .unwrap();
        let expected: Vec<TraceId> = [10, 9, 8].map(conformance::trace_id).to_vec();
        assert_eq!(found.trace_ids, expected);
        assert!(found.complete);
    }

    #[tokio::test]
    async fn a_predicate_the_store_cannot_apply_reads_further_until_enough_traces_match() {
        let store = store_of(40, 100).await;
        // Only the oldest two traces have a span the predicate keeps, so the first reads
        // (the newest spans) find nothing.
        let keep = |row: &SpanRow| row.trace_id <= conformance::trace_id(2);
        let found = find_traces(&store, &SpanQuery::default(), &keep, 5, 100_000)
            .await
            .unwrap();
        let expected: Vec<TraceId> = [2, 1].map(conformance::trace_id).to_vec();
        assert_eq!(found.trace_ids, expected);
        assert!(found.complete);
        assert_eq!(found.spans_inspected, 4_000);
    }

    #[tokio::test]
    async fn the_search_stops_at_its_budget_and_says_so() {
        let store = store_of(40, 100).await;
        let keep = |row: &SpanRow| row.trace_id <= conformance::trace_id(2);
        let found = find_traces(&store, &SpanQuery::default(), &keep, 5, 1_000)
            .await
            .unwrap();
        assert!(found.trace_ids.is_empty());
        assert!(!found.complete);
        assert_eq!(found.spans_inspected, 1_000);
    }

    #[tokio::test]
    async fn pushed_down_filters_still_apply() {
        let store = store_of(5, 4).await;
        let query = SpanQuery {
            operation: Some("even".into()),
            ..SpanQuery::default()
        };
        let found = find_traces(
            &store,
            &query,
            &|row| row.span_id == conformance::span_id(4),
            10,
            100,
        )
        .await
        .unwrap();
        assert_eq!(found.trace_ids.len(), 5);
    }
}
