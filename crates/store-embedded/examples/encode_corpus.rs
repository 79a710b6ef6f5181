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
//! `prepare` or `parquet`, runs only that half.

use spanflow_store_embedded::schema;

#[path = "../benches/corpus_rows/mod.rs"]
mod corpus_rows;

/// The allocator the `spanflow` binary runs with.
#[global_allocator]
static ALLOCATOR: spanflow_store::allocator::Allocator = spanflow_store::allocator::Allocator;

fn main() {
    let rows = corpus_rows::rows();
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(3, |n| n.parse().expect("a number of rounds"));
    let only = std::env::args().nth(2).unwrap_or_default();
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
