//! Rows as Arrow record batches between the write and the file: one copy of each span, split by
//! time partition and sorted for the file, without going back to [`SpanRow`]s.
//!
//! [`SpanRow`]: spanflow_model::SpanRow

use std::collections::{HashMap, HashSet};

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, DictionaryArray, Int32Array, StringArray,
    TimestampMicrosecondArray, TimestampSecondArray, UInt32Array,
};
use arrow::buffer::{BooleanBuffer, NullBuffer, ScalarBuffer};
use arrow::datatypes::Int32Type;
use arrow::record_batch::RecordBatch;
use spanflow_model::TraceId;

use crate::{schema, EmbeddedError};

/// The columns the ordering reads, of one batch.
struct Keys<'a> {
    time: &'a TimestampSecondArray,
    service: &'a StringArray,
    endpoint: &'a StringArray,
    start_time: &'a TimestampMicrosecondArray,
    trace_id: &'a BinaryArray,
    span_id: &'a BinaryArray,
}

impl<'a> Keys<'a> {
    fn of(batch: &'a RecordBatch) -> Result<Keys<'a>, EmbeddedError> {
        fn get<'b, T: Array + 'static>(
            batch: &'b RecordBatch,
            name: &str,
        ) -> Result<&'b T, EmbeddedError> {
            schema::column(batch, name).map_err(|error| EmbeddedError::corrupt(error.0))
        }
        Ok(Keys {
            time: get(batch, "time")?,
            service: get(batch, "app_service")?,
            endpoint: get(batch, "endpoint")?,
            start_time: get(batch, "start_time")?,
            trace_id: get(batch, "trace_id")?,
            span_id: get(batch, "span_id")?,
        })
    }
}

/// Calls `each(batch, row, last)` for every row of the batches of `keys` (oldest first), newest
/// first, with `last` true for the last written copy of its span (same trace and span id) and
/// false for every earlier copy.
fn last_copies(keys: &[Keys], mut each: impl FnMut(usize, usize, bool)) {
    let n_rows: usize = keys.iter().map(|key| key.time.len()).sum();
    // Newest first, so the first copy seen of a span is the last written.
    let mut seen: HashSet<([u8; 16], [u8; 8]), foldhash::fast::RandomState> =
        HashSet::with_capacity_and_hasher(n_rows, foldhash::fast::RandomState::default());
    for (batch, key) in keys.iter().enumerate().rev() {
        for row in (0..key.time.len()).rev() {
            let span = (
                key.trace_id.value(row).try_into().unwrap_or_default(),
                key.span_id.value(row).try_into().unwrap_or_default(),
            );
            each(batch, row, seen.insert(span));
        }
    }
}

/// The rows of `batches` (oldest first) as one batch per time partition (`partition_of` a row's
/// `time`, in seconds), each sorted by service, endpoint and start time, so that searches by
/// them read little. Of several rows of one span (same trace and span id) only the last written
/// is kept. The batches may be of any one schema with the ordering's columns (as the buffer or
/// files hold rows). Blocking.
pub fn by_partition(
    batches: &[RecordBatch],
    partition_of: impl Fn(i64) -> i64,
) -> Result<Vec<(i64, RecordBatch)>, EmbeddedError> {
    let keys = batches
        .iter()
        .map(Keys::of)
        .collect::<Result<Vec<_>, _>>()?;
    let n_rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut kept: Vec<(i64, usize, usize)> = Vec::with_capacity(n_rows);
    last_copies(&keys, |batch, row, last| {
        if last {
            kept.push((partition_of(keys[batch].time.value(row)), batch, row));
        }
    });
    let order = sorted_positions(&keys, kept);
    let mut out = Vec::new();
    for run in order.chunk_by(|a, b| a.0 == b.0) {
        let positions: Vec<(usize, usize)> = run
            .iter()
            .map(|&(.., batch, row)| (batch as usize, row as usize))
            .collect();
        out.push((run[0].0, interleave(batches, &positions)?));
    }
    Ok(out)
}

/// The rows at `kept` (partition, batch, row) of the batches of `keys`, in file order:
/// (partition, rank of (service, endpoint), start time, batch, row), sorted.
fn sorted_positions(
    keys: &[Keys],
    kept: Vec<(i64, usize, usize)>,
) -> Vec<(i64, u32, i64, u32, u32)> {
    // Each row's (service, endpoint) as its rank among the distinct pairs, so that the sort
    // compares numbers: a batch holds few pairs, and a string comparison per step of the sort
    // cost more than the rest of it.
    let mut pairs: HashMap<(&str, &str), u32, foldhash::fast::RandomState> =
        HashMap::with_hasher(foldhash::fast::RandomState::default());
    let pair_of: Vec<u32> = kept
        .iter()
        .map(|&(_, batch, row)| {
            let key = &keys[batch];
            let pair = (key.service.value(row), key.endpoint.value(row));
            let next = pairs.len() as u32;
            *pairs.entry(pair).or_insert(next)
        })
        .collect();
    let mut distinct: Vec<((&str, &str), u32)> = pairs.into_iter().collect();
    distinct.sort_unstable();
    let mut rank = vec![0u32; distinct.len()];
    for (position, &(_, pair)) in distinct.iter().enumerate() {
        rank[pair as usize] = position as u32;
    }
    let mut order: Vec<(i64, u32, i64, u32, u32)> = kept
        .iter()
        .zip(&pair_of)
        .map(|(&(partition, batch, row), &pair)| {
            let start_time = keys[batch].start_time.value(row);
            (
                partition,
                rank[pair as usize],
                start_time,
                batch as u32,
                row as u32,
            )
        })
        .collect();
    order.sort_unstable();
    order
}

/// `batch` in file order: by time partition (`partition_of` a row's `time`), then service,
/// endpoint and start time. The write path sorts each batch so (a gather of ten thousand rows
/// that are in cache), and a flush then writes the batches of a partition one after another as
/// runs ([`runs_by_partition`]) instead of gathering all of them into one sorted copy.
pub fn sort_batch(
    batch: RecordBatch,
    partition_of: impl Fn(i64) -> i64,
) -> Result<RecordBatch, EmbeddedError> {
    let keys = [Keys::of(&batch)?];
    if in_file_order(&keys[0], &partition_of) {
        return Ok(batch);
    }
    let kept = (0..batch.num_rows())
        .map(|row| (partition_of(keys[0].time.value(row)), 0, row))
        .collect();
    let rows = UInt32Array::from_iter_values(
        sorted_positions(&keys, kept)
            .into_iter()
            .map(|(.., row)| row),
    );
    take_rows(&batch, &rows)
        .map_err(|error| EmbeddedError::corrupt(format!("sorting rows: {error}")))
}

/// The rows of `batch` at `rows`, as `take_record_batch` gathers them, but with one gather of
/// each key buffer and each null buffer that dictionary columns share: the buffer's forty-odd
/// dictionary columns (both ends' places, the resource's tags, the runs) share eight key
/// buffers and fewer null buffers, and the gathered batch shares them too, where a gather a
/// column held buffers of its own.
fn take_rows(
    batch: &RecordBatch,
    rows: &UInt32Array,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut gathered: Vec<(ScalarBuffer<i32>, ScalarBuffer<i32>)> = Vec::new();
    // Columns that share keys mostly share their null buffer too (`schema::KeyNulls`).
    let mut gathered_nulls: Vec<(NullBuffer, Option<NullBuffer>)> = Vec::new();
    let columns = batch
        .columns()
        .iter()
        .map(|column| {
            let Some(dictionary) = column.as_dictionary_opt::<Int32Type>() else {
                return arrow::compute::take(column, rows, None);
            };
            let keys = dictionary.keys();
            let source = keys.values();
            let shared = gathered
                .iter()
                .find(|(from, _)| from.as_ptr() == source.as_ptr() && from.len() == source.len());
            let values = match shared {
                Some((_, taken)) => taken.clone(),
                None => {
                    let taken: ScalarBuffer<i32> = rows
                        .values()
                        .iter()
                        .map(|&row| source[row as usize])
                        .collect();
                    gathered.push((source.clone(), taken.clone()));
                    taken
                }
            };
            let nulls = keys.nulls().and_then(|nulls| {
                let shared = gathered_nulls.iter().find(|(from, _)| {
                    from.buffer().as_ptr() == nulls.buffer().as_ptr()
                        && from.offset() == nulls.offset()
                        && from.len() == nulls.len()
                });
                if let Some((_, taken)) = shared {
                    return taken.clone();
                }
                let taken = NullBuffer::new(BooleanBuffer::collect_bool(rows.len(), |row| {
                    nulls.is_valid(rows.value(row) as usize)
                }));
                let taken = Some(taken).filter(|taken| taken.null_count() > 0);
                gathered_nulls.push((nulls.clone(), taken.clone()));
                taken
            });
            let keys = Int32Array::new(values, nulls);
            // SAFETY: each key, or its being null, is one of `dictionary`'s, over the same
            // values.
            let taken = unsafe {
                DictionaryArray::<Int32Type>::new_unchecked(keys, dictionary.values().clone())
            };
            Ok(Arc::new(taken) as ArrayRef)
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(batch.schema(), columns)
}

/// Whether the rows of one batch are in file order (see [`sort_batch`]).
fn in_file_order(key: &Keys, partition_of: &impl Fn(i64) -> i64) -> bool {
    (1..key.time.len()).all(|row| {
        let (a, b) = (row - 1, row);
        partition_of(key.time.value(a))
            .cmp(&partition_of(key.time.value(b)))
            .then_with(|| key.service.value(a).cmp(key.service.value(b)))
            .then_with(|| key.endpoint.value(a).cmp(key.endpoint.value(b)))
            .then_with(|| key.start_time.value(a).cmp(&key.start_time.value(b)))
            .is_le()
    })
}

/// The rows of `batches` (oldest first, each in file order: [`sort_batch`]) as runs per time
/// partition (`partition_of` a row's `time`, in seconds), the runs of a partition in the order
/// of their batches. Each batch is sliced where its partition changes, without a copy; only a
/// batch that holds an earlier copy of a span written again later is filtered first, since of
/// several rows of one span (same trace and span id) only the last written is kept. Blocking.
pub fn runs_by_partition(
    batches: &[RecordBatch],
    partition_of: impl Fn(i64) -> i64,
) -> Result<Vec<(i64, Vec<RecordBatch>)>, EmbeddedError> {
    let keys = batches
        .iter()
        .map(Keys::of)
        .collect::<Result<Vec<_>, _>>()?;
    let mut dropped: Vec<Vec<usize>> = vec![Vec::new(); batches.len()];
    last_copies(&keys, |batch, row, last| {
        if !last {
            dropped[batch].push(row);
        }
    });
    let mut runs: std::collections::BTreeMap<i64, Vec<RecordBatch>> = Default::default();
    for (batch, dropped) in batches.iter().zip(&dropped) {
        let batch = if dropped.is_empty() {
            batch.clone()
        } else {
            let mut kept = arrow::array::BooleanBufferBuilder::new(batch.num_rows());
            kept.append_n(batch.num_rows(), true);
            for &row in dropped {
                kept.set_bit(row, false);
            }
            let kept = arrow::array::BooleanArray::new(kept.finish(), None);
            arrow::compute::filter_record_batch(batch, &kept).map_err(|error| {
                EmbeddedError::corrupt(format!("dropping earlier copies: {error}"))
            })?
        };
        let times = Keys::of(&batch)?.time;
        let mut start = 0;
        while start < batch.num_rows() {
            let partition = partition_of(times.value(start));
            let end = (start + 1..batch.num_rows())
                .find(|&row| partition_of(times.value(row)) != partition)
                .unwrap_or(batch.num_rows());
            runs.entry(partition)
                .or_default()
                .push(batch.slice(start, end - start));
            start = end;
        }
    }
    Ok(runs.into_iter().collect())
}

/// The rows at `positions` (batch, row) of `batches`, as one batch.
pub fn interleave(
    batches: &[RecordBatch],
    positions: &[(usize, usize)],
) -> Result<RecordBatch, EmbeddedError> {
    let merging =
        |error: arrow::error::ArrowError| EmbeddedError::corrupt(format!("merging rows: {error}"));
    if let [one] = batches {
        let rows = UInt32Array::from_iter_values(positions.iter().map(|&(_, row)| row as u32));
        return take_rows(one, &rows).map_err(merging);
    }
    // Several batches are gathered column by column, without first copying them into one:
    // the files a compaction merges can be large.
    let Some(schema) = batches.first().map(RecordBatch::schema) else {
        return Ok(RecordBatch::new_empty(schema::schema()));
    };
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for column in 0..schema.fields().len() {
        let arrays: Vec<&dyn Array> = batches
            .iter()
            .map(|batch| batch.column(column).as_ref())
            .collect();
        columns.push(arrow::compute::interleave(&arrays, positions).map_err(merging)?);
    }
    RecordBatch::try_new(schema, columns).map_err(merging)
}

/// The rows of one trace in `batch`, if any.
pub fn trace_rows(batch: &RecordBatch, trace_id: &TraceId) -> Option<RecordBatch> {
    let ids = batch.column_by_name("trace_id")?.as_binary::<i32>();
    let wanted = trace_id.as_bytes();
    let matches: Vec<u32> = (0..ids.len())
        .filter(|&row| ids.value(row) == wanted)
        .map(|row| row as u32)
        .collect();
    if matches.is_empty() {
        return None;
    }
    arrow::compute::take_record_batch(batch, &UInt32Array::from(matches)).ok()
}

/// Whether `batch` has the columns of `expected`, by name and type, in its order.
pub fn has_schema(batch: &RecordBatch, expected: &arrow::datatypes::Schema) -> bool {
    let actual = batch.schema();
    actual.fields().len() == expected.fields().len()
        && actual
            .fields()
            .iter()
            .zip(expected.fields())
            .all(|(a, e)| a.name() == e.name() && a.data_type() == e.data_type())
}

/// Checks that a batch read back (from the WAL or a file) has the store's schema.
pub fn check_schema(batch: &RecordBatch, origin: &str) -> Result<(), EmbeddedError> {
    if has_schema(batch, &schema::schema()) {
        Ok(())
    } else {
        Err(EmbeddedError::corrupt(format!(
            "{origin} does not hold rows of this version's schema"
        )))
    }
}

/// Orders rows as files hold them; for tests.
#[cfg(test)]
fn file_order(batch: &RecordBatch, a: usize, b: usize) -> std::cmp::Ordering {
    let keys = Keys::of(batch).unwrap();
    keys.service
        .value(a)
        .cmp(keys.service.value(b))
        .then_with(|| keys.endpoint.value(a).cmp(keys.endpoint.value(b)))
        .then_with(|| keys.start_time.value(a).cmp(&keys.start_time.value(b)))
}

#[cfg(test)]
mod tests {
    use spanflow_model::SpanRow;
    use spanflow_store::conformance::{row, trace_id};

    use super::*;

    #[test]
    fn splits_by_partition_sorts_and_keeps_the_last_copy() {
        let hour = 3_600_000_000i64;
        let mut first = vec![
            row(1, 1, "b", "GET /", 5 * hour + 10),
            row(1, 2, "a", "GET /", 5 * hour + 20),
            row(2, 1, "a", "GET /", 6 * hour + 5),
        ];
        first[0].endpoint = "old".into();
        let second = vec![
            row(1, 1, "b", "GET /", 5 * hour + 10),
            row(3, 1, "a", "DELETE /", 5 * hour + 30),
        ];
        let batches = [
            schema::rows_to_batch(&first),
            schema::rows_to_batch(&second),
        ];
        let parts = by_partition(&batches, |time| time.div_euclid(3600) * 3600).unwrap();
        assert_eq!(
            parts
                .iter()
                .map(|(partition, _)| *partition)
                .collect::<Vec<_>>(),
            [5 * 3600, 6 * 3600]
        );
        let rows: Vec<SpanRow> = schema::batch_to_rows(&parts[0].1).unwrap();
        let keys: Vec<(&str, &str, u8)> = rows
            .iter()
            .map(|row| {
                (
                    row.app_service.as_str(),
                    row.endpoint.as_str(),
                    row.span_id.0[7],
                )
            })
            .collect();
        assert_eq!(
            keys,
            [("a", "DELETE /", 1), ("a", "GET /", 2), ("b", "GET /", 1)]
        );
        for pair in 0..parts[0].1.num_rows() - 1 {
            assert_ne!(
                file_order(&parts[0].1, pair, pair + 1),
                std::cmp::Ordering::Greater
            );
        }
        assert_eq!(schema::batch_to_rows(&parts[1].1).unwrap().len(), 1);
    }

    fn keys_of(batch: &RecordBatch) -> Vec<(String, String, u8, u8)> {
        schema::batch_to_rows(batch)
            .unwrap()
            .into_iter()
            .map(|row| {
                (
                    row.app_service,
                    row.endpoint,
                    row.trace_id.0[15],
                    row.span_id.0[7],
                )
            })
            .collect()
    }

    #[test]
    fn sorts_a_batch_into_file_order() {
        let hour = 3_600_000_000i64;
        let rows = vec![
            row(1, 1, "b", "GET /", 5 * hour + 10),
            row(1, 2, "a", "GET /", 6 * hour + 20),
            row(2, 1, "a", "GET /", 5 * hour + 30),
            row(2, 2, "a", "DELETE /", 5 * hour + 40),
            row(3, 1, "a", "GET /", 5 * hour + 5),
        ];
        // A pod at one client end: the place columns of that end hold values and nulls.
        let mut rows = rows;
        rows[2].place_0 = Arc::new(spanflow_model::Place {
            pod: "web-0".into(),
            host: "node-1".into(),
            ..Default::default()
        });
        let hours = |time: i64| time.div_euclid(3600);
        let batch = sort_batch(schema::rows_to_buffer(&rows), hours).unwrap();
        let order: Vec<(u8, u8)> =
            keys_of(&schema::from_file(&schema::from_buffer(&batch).unwrap()).unwrap())
                .into_iter()
                .map(|(.., trace, span)| (trace, span))
                .collect();
        assert_eq!(order, [(2, 2), (3, 1), (2, 1), (1, 1), (1, 2)]);
        assert!(in_file_order(&Keys::of(&batch).unwrap(), &hours));
        // The columns are those a gather of each gives, and the dictionary columns that
        // shared their keys share them still.
        let built = schema::rows_to_buffer(&rows);
        let positions = UInt32Array::from(vec![3, 4, 2, 0, 1]);
        assert_eq!(
            batch,
            arrow::compute::take_record_batch(&built, &positions).unwrap()
        );
        let keys = |name: &str| {
            let column = batch.column_by_name(name).unwrap();
            column.as_dictionary::<Int32Type>().keys().values().as_ptr()
        };
        assert_eq!(keys("pod_0"), keys("host_0"));
        assert_eq!(keys("host_name"), keys("k8s_pod_name"));
        assert_ne!(keys("pod_0"), keys("pod_1"));
        // And so do those that shared their nulls.
        let nulls = |name: &str| {
            let column = batch.column_by_name(name).unwrap();
            let nulls = column.as_dictionary::<Int32Type>().keys().nulls().unwrap();
            (nulls.null_count(), nulls.buffer().as_ptr())
        };
        assert_eq!(nulls("pod_0").0, 4);
        assert_eq!(nulls("pod_0"), nulls("host_0"));
        // A sorted batch is kept as it is.
        let again = sort_batch(batch.clone(), hours).unwrap();
        assert_eq!(
            again.column(0).to_data().buffers()[0].as_ptr(),
            batch.column(0).to_data().buffers()[0].as_ptr()
        );
    }

    #[test]
    fn runs_are_slices_of_sorted_batches_split_by_partition() {
        let hour = 3_600_000_000i64;
        let hours = |time: i64| time.div_euclid(3600) * 3600;
        let first = vec![
            row(1, 1, "b", "GET /", 5 * hour + 10),
            row(1, 2, "a", "GET /", 6 * hour + 20),
            row(2, 1, "a", "GET /", 5 * hour + 30),
        ];
        let second = vec![
            row(3, 1, "c", "GET /", 5 * hour + 10),
            row(3, 2, "a", "GET /", 5 * hour + 20),
        ];
        let batches = [
            sort_batch(schema::rows_to_batch(&first), hours).unwrap(),
            sort_batch(schema::rows_to_batch(&second), hours).unwrap(),
        ];
        let parts = runs_by_partition(&batches, hours).unwrap();
        assert_eq!(
            parts
                .iter()
                .map(|(partition, runs)| (*partition, runs.len()))
                .collect::<Vec<_>>(),
            [(5 * 3600, 2), (6 * 3600, 1)]
        );
        let five = &parts[0].1;
        assert_eq!(
            keys_of(&five[0]),
            [
                ("a".into(), "GET /".into(), 2, 1),
                ("b".into(), "GET /".into(), 1, 1)
            ]
        );
        assert_eq!(
            keys_of(&five[1]),
            [
                ("a".into(), "GET /".into(), 3, 2),
                ("c".into(), "GET /".into(), 3, 1)
            ]
        );
        assert_eq!(
            keys_of(&parts[1].1[0]),
            [("a".into(), "GET /".into(), 1, 2)]
        );
        // Slices of the batches, not copies.
        assert_eq!(
            five[0].column(0).to_data().buffers()[0].as_ptr(),
            batches[0].column(0).to_data().buffers()[0].as_ptr()
        );
    }

    #[test]
    fn runs_keep_the_last_copy_of_a_span() {
        let hour = 3_600_000_000i64;
        let hours = |time: i64| time.div_euclid(3600) * 3600;
        let mut first = vec![
            row(1, 1, "b", "GET /", 5 * hour + 10),
            row(1, 2, "a", "GET /", 5 * hour + 20),
        ];
        first[0].endpoint = "old".into();
        let second = vec![row(1, 1, "b", "GET /", 5 * hour + 10)];
        let batches = [
            sort_batch(schema::rows_to_batch(&first), hours).unwrap(),
            sort_batch(schema::rows_to_batch(&second), hours).unwrap(),
        ];
        let parts = runs_by_partition(&batches, hours).unwrap();
        assert_eq!(parts.len(), 1);
        let runs = &parts[0].1;
        assert_eq!(
            runs.iter().map(keys_of).collect::<Vec<_>>(),
            [
                vec![("a".to_string(), "GET /".to_string(), 1, 2)],
                vec![("b".to_string(), "GET /".to_string(), 1, 1)],
            ]
        );
    }

    #[test]
    fn finds_a_trace_in_a_batch() {
        let batch = schema::rows_to_batch(&[
            row(1, 1, "a", "x", 0),
            row(2, 1, "a", "x", 0),
            row(1, 2, "a", "x", 0),
        ]);
        let found = trace_rows(&batch, &trace_id(1)).unwrap();
        assert_eq!(found.num_rows(), 2);
        assert!(trace_rows(&batch, &trace_id(9)).is_none());
    }
}
