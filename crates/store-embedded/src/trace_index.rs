//! The trace-id index of one Parquet file: the sorted set of 64-bit digests of the trace ids in
//! it. Trace by id asks every file's index (a binary search each, in memory) and opens only the
//! files that may hold the trace, so a lookup needs no time range and reads little.

use arrow::array::{Array, BinaryArray};
use spanflow_model::TraceId;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceIndex {
    digests: Box<[u64]>,
}

/// Folds the two halves together, so that 64-bit trace ids (zero in their high half) still
/// spread over the whole range.
fn digest(id: &[u8]) -> u64 {
    let mut bytes = [0u8; 16];
    let n = id.len().min(16);
    bytes[..n].copy_from_slice(&id[..n]);
    let high = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
    let low = u64::from_be_bytes(bytes[8..].try_into().expect("8 bytes"));
    high ^ low.rotate_left(29)
}

impl TraceIndex {
    /// The index of the trace ids in a file's `trace_id` columns.
    pub fn build<'a>(columns: impl IntoIterator<Item = &'a BinaryArray>) -> TraceIndex {
        let mut digests: Vec<u64> = columns
            .into_iter()
            .flat_map(|ids| (0..ids.len()).map(|row| digest(ids.value(row))))
            .collect();
        digests.sort_unstable();
        digests.dedup();
        TraceIndex {
            digests: digests.into_boxed_slice(),
        }
    }

    /// False means the trace is certainly not in the file.
    pub fn may_contain(&self, trace_id: &TraceId) -> bool {
        self.digests
            .binary_search(&digest(trace_id.as_bytes()))
            .is_ok()
    }

    pub fn n_traces(&self) -> usize {
        self.digests.len()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.digests
            .iter()
            .flat_map(|digest| digest.to_le_bytes())
            .collect()
    }

    /// Reads an index written by [`TraceIndex::to_bytes`]; `None` if it is not one.
    pub fn from_bytes(bytes: &[u8]) -> Option<TraceIndex> {
        if !bytes.len().is_multiple_of(8) {
            return None;
        }
        let digests: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|chunk| u64::from_le_bytes(chunk.try_into().expect("8 bytes")))
            .collect();
        digests
            .windows(2)
            .all(|pair| pair[0] < pair[1])
            .then(|| TraceIndex {
                digests: digests.into_boxed_slice(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use spanflow_model::SpanRow;
    use spanflow_store::conformance;

    #[test]
    fn finds_what_it_holds_and_round_trips() {
        let rows: Vec<SpanRow> = [1u8, 2, 2, 7]
            .iter()
            .map(|n| conformance::row(*n, 1, "s", "o", 0))
            .collect();
        let batch = crate::schema::rows_to_batch(&rows);
        let index =
            TraceIndex::build([batch.column_by_name("trace_id").unwrap().as_binary::<i32>()]);
        assert_eq!(index.n_traces(), 3);
        assert!(index.may_contain(&conformance::trace_id(2)));
        assert!(!index.may_contain(&conformance::trace_id(3)));
        assert_eq!(TraceIndex::from_bytes(&index.to_bytes()), Some(index));
        assert_eq!(TraceIndex::from_bytes(&[1, 2, 3]), None);
    }
}
