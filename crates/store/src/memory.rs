//! A bounded in-memory store: at most `max_spans` rows, the oldest dropped and counted when a
//! write goes past the bound (as Jaeger's all-in-one memory store does). Nothing survives a
//! restart.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;

use spanflow_model::{metric_names, SpanId, SpanRow, TraceId};

use crate::analytics::{self, Edge, MapBy, RedPoint, RedQuery};
use crate::{Operation, SpanQuery, SpanStore, StoreError, TimeRange};

pub struct MemoryStore {
    max_spans: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Rows in arrival order; `rows[i]` has sequence number `first_seq + i`.
    rows: VecDeque<SpanRow>,
    first_seq: u64,
    /// Each trace's rows: span id to sequence number.
    by_trace: HashMap<TraceId, HashMap<SpanId, u64>>,
    n_evicted: u64,
}

impl MemoryStore {
    pub fn new(max_spans: usize) -> MemoryStore {
        MemoryStore {
            max_spans: max_spans.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Rows dropped so far to stay within the bound.
    pub fn n_evicted(&self) -> u64 {
        self.lock().n_evicted
    }

    pub fn len(&self) -> usize {
        self.lock().rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data behind (every mutation below
        // completes before it could panic), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inner {
    fn position_of(&self, trace_id: &TraceId, span_id: &SpanId) -> Option<usize> {
        let seq = self.by_trace.get(trace_id)?.get(span_id)?;
        Some((seq - self.first_seq) as usize)
    }

    fn insert(&mut self, row: SpanRow) {
        if let Some(position) = self.position_of(&row.trace_id, &row.span_id) {
            self.rows[position] = row;
            return;
        }
        let seq = self.first_seq + self.rows.len() as u64;
        self.by_trace
            .entry(row.trace_id)
            .or_default()
            .insert(row.span_id, seq);
        self.rows.push_back(row);
    }

    fn evict_oldest(&mut self) {
        let Some(row) = self.rows.pop_front() else {
            return;
        };
        let seq = self.first_seq;
        self.first_seq += 1;
        self.n_evicted += 1;
        if let Some(seqs) = self.by_trace.get_mut(&row.trace_id) {
            if seqs.get(&row.span_id) == Some(&seq) {
                seqs.remove(&row.span_id);
            }
            if seqs.is_empty() {
                self.by_trace.remove(&row.trace_id);
            }
        }
    }
}

#[async_trait::async_trait]
impl SpanStore for MemoryStore {
    async fn write(&self, rows: Vec<SpanRow>) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let before = inner.n_evicted;
        for row in rows {
            inner.insert(row);
        }
        while inner.rows.len() > self.max_spans {
            inner.evict_oldest();
        }
        let n_evicted = inner.n_evicted - before;
        let n_spans = inner.rows.len();
        drop(inner);
        if n_evicted > 0 {
            metrics::counter!(metric_names::STORE_SPANS_EVICTED).increment(n_evicted);
        }
        metrics::gauge!(metric_names::STORE_SPANS).set(n_spans as f64);
        Ok(())
    }

    async fn trace(&self, trace_id: TraceId) -> Result<Vec<SpanRow>, StoreError> {
        let inner = self.lock();
        let mut rows: Vec<SpanRow> = inner
            .by_trace
            .get(&trace_id)
            .into_iter()
            .flat_map(HashMap::values)
            .map(|seq| inner.rows[(seq - inner.first_seq) as usize].clone())
            .collect();
        drop(inner);
        rows.sort_by_key(|row| (row.start_time, row.span_id));
        Ok(rows)
    }

    async fn search(&self, query: &SpanQuery) -> Result<Vec<SpanRow>, StoreError> {
        let inner = self.lock();
        let mut rows: Vec<SpanRow> = inner
            .rows
            .iter()
            .filter(|row| query.matches(row))
            .cloned()
            .collect();
        drop(inner);
        rows.sort_by_key(|row| std::cmp::Reverse(row.start_time));
        rows.truncate(query.limit);
        Ok(rows)
    }

    async fn services(&self, range: TimeRange) -> Result<Vec<String>, StoreError> {
        let inner = self.lock();
        let services: BTreeSet<String> = inner
            .rows
            .iter()
            .filter(|row| range.contains(row.start_time))
            .map(|row| row.app_service.clone())
            .collect();
        Ok(services.into_iter().collect())
    }

    async fn operations(
        &self,
        service: &str,
        range: TimeRange,
    ) -> Result<Vec<Operation>, StoreError> {
        let inner = self.lock();
        let operations: BTreeSet<Operation> = inner
            .rows
            .iter()
            .filter(|row| row.app_service == service && range.contains(row.start_time))
            .map(|row| Operation {
                name: row.endpoint.clone(),
                span_kind: row.span_kind,
            })
            .collect();
        Ok(operations.into_iter().collect())
    }

    async fn service_map(&self, range: TimeRange, by: MapBy) -> Result<Vec<Edge>, StoreError> {
        let inner = self.lock();
        let rows: Vec<&SpanRow> = inner.rows.iter().collect();
        Ok(analytics::service_map(&rows, range, by))
    }

    async fn red(&self, query: &RedQuery) -> Result<Vec<RedPoint>, StoreError> {
        let inner = self.lock();
        let rows: Vec<&SpanRow> = inner.rows.iter().collect();
        Ok(analytics::red(&rows, query))
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;

    #[tokio::test]
    async fn conformance_suite() {
        conformance::run_all(|| async { MemoryStore::new(1_000_000) }).await;
    }

    #[tokio::test]
    async fn a_write_prepared_by_another_store_is_refused_as_internal() {
        let store = MemoryStore::new(10);
        let foreign = crate::PreparedWrite::new(1, vec![0u8; 8]);
        let error = store.write_prepared(foreign).await.unwrap_err();
        assert_eq!(error.kind, crate::ErrorKind::Internal);
        assert!(error.message.contains("memory store"), "{}", error.message);
        assert_eq!(store.len(), 0);
    }

    #[tokio::test]
    async fn the_oldest_spans_are_dropped_and_counted_past_the_bound() {
        let store = MemoryStore::new(3);
        let rows: Vec<SpanRow> = (1..=5u8)
            .map(|n| conformance::row(n, n, "svc", "op", i64::from(n) * 1_000_000))
            .collect();
        store.write(rows).await.unwrap();
        assert_eq!(store.len(), 3);
        assert_eq!(store.n_evicted(), 2);
        assert!(store
            .trace(conformance::trace_id(1))
            .await
            .unwrap()
            .is_empty());
        assert!(store
            .trace(conformance::trace_id(2))
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            store.trace(conformance::trace_id(5)).await.unwrap().len(),
            1
        );
        // A rewrite of a stored span replaces it and evicts nothing.
        store
            .write(vec![conformance::row(5, 5, "svc", "op", 5_000_000)])
            .await
            .unwrap();
        assert_eq!((store.len(), store.n_evicted()), (3, 2));
    }
}
