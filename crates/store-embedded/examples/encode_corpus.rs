//! A write's work before its log and a flush's Parquet encoding, on 10,000 rows mapped from the
//! load generator's corpus, repeated a given number of rounds: a fixed amount of work whose
//! instructions cachegrind counts, where timings on a shared machine move by a tenth between
//! runs. Each round prepares a write of the rows (built as the buffer holds them, sorted,
//! encoded for the write-ahead log, freed) and writes them as a Parquet file in memory.
//!
//! ```sh
//! cargo build --release -p spanflow-store-embedded --example encode_corpus
//! valgrind --tool=cachegrind --cache-sim=no target/release/examples/encode_corpus 0
//! valgrind --tool=cachegrind --cache-sim=no target/release/examples/encode_corpus 3
//! ```
//!
//! The difference of the two counts over 30,000 is the instructions a span. A second argument,
//! `prepare` or `parquet`, runs only that half; `ingest` maps the corpus's payloads and
//! prepares their write as the server does (each payload's spans mapped into the rows the one
//! before left and held to the span limits, each row appended to the write's builders, the payloads as received kept as the
//! write's log entry), `ingest-logging-rows` the same with the rows encoded for the log instead,
//! and `ingest-rows` the same with every row mapped into a vector of rows first and the write
//! prepared from it, its rows encoded for the log.

use spanflow_store_embedded::schema;

#[path = "../benches/corpus_rows/mod.rs"]
mod corpus_rows;

/// The allocator the `spanflow` binary runs with.
#[global_allocator]
static ALLOCATOR: spanflow_store::allocator::Allocator = spanflow_store::allocator::Allocator;

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(3, |n| n.parse().expect("a number of rounds"));
    let only = std::env::args().nth(2).unwrap_or_default();
    if only.starts_with("ingest") {
        return ingest(rounds, only == "ingest-rows", only == "ingest-logging-rows");
    }
    let rows = corpus_rows::rows();
    for _ in 0..rounds {
        if only != "parquet" {
            let prepared =
                spanflow_store_embedded::prepare_batch(rows.clone(), |time| time.div_euclid(3600))
                    .unwrap();
            std::hint::black_box(prepared);
        }
        if only != "prepare" {
            let batch = schema::rows_to_buffer(&rows);
            std::hint::black_box(spanflow_store_embedded::parquet_bytes(&batch).unwrap());
        }
    }
}

/// Maps the corpus's payloads and prepares their write, `rounds` times.
fn ingest(rounds: usize, whole_rows: bool, log_rows: bool) {
    use spanflow_otlp::decompress::Encoding;
    use spanflow_otlp::limits::{Checked, SpanLimits};
    use spanflow_otlp::record::RecordBuilder;
    use spanflow_otlp::wire::{map_payload, map_payload_into, RowPool};

    let payloads = spanflow_loadgen::corpus::build(100, 100, 1);
    let sender = corpus_rows::sender();
    let partition_of = |time: i64| time.div_euclid(3600);
    let sizes = schema::TextSizes::default();
    for _ in 0..rounds {
        let prepared = if whole_rows {
            let mut rows = Vec::with_capacity(10_000);
            for payload in &payloads {
                map_payload_into(&payload.protobuf, &sender, &mut rows).unwrap();
            }
            spanflow_store_embedded::prepare_batch(rows, partition_of).unwrap()
        } else {
            let mut pool = RowPool::default();
            let mut builder = schema::BufferBuilder::expecting(10_000, &sizes);
            let limits = SpanLimits::default();
            let mut checked = Checked::default();
            let n_bytes = payloads.iter().map(|payload| payload.gzip.len() + 32).sum();
            let mut record = RecordBuilder::new("bench", limits, n_bytes);
            for payload in &payloads {
                map_payload(&payload.protobuf, &sender, &mut pool).unwrap();
                for row in pool.rows_mut() {
                    limits.apply_checked(row, &mut checked);
                }
                for row in pool.rows() {
                    builder.append(row);
                }
                let n_bytes = payload.protobuf.len();
                let n_rows = pool.rows().len();
                record.payload(
                    sender.peer_ip,
                    Encoding::Gzip,
                    &payload.gzip,
                    n_bytes,
                    n_rows,
                );
            }
            let batch = builder.finish_noting(&sizes);
            if log_rows {
                spanflow_store_embedded::prepare_buffer(batch, partition_of).unwrap()
            } else {
                let record = record.finish(None);
                spanflow_store_embedded::prepare_recorded(batch, record, partition_of).unwrap()
            }
        };
        std::hint::black_box(prepared);
    }
}
