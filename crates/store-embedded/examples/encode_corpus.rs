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

use prost::Message;
use spanflow_otlp::map::{map_request, Sender};
use spanflow_otlp::ExportTraceServiceRequest;
use spanflow_store_embedded::schema;

/// The allocator the `spanflow` binary runs with.
#[global_allocator]
static ALLOCATOR: spanflow_store::allocator::Allocator = spanflow_store::allocator::Allocator;

fn main() {
    let corpus = spanflow_loadgen::corpus::build(100, 100, 1);
    let sender = Sender {
        peer_ip: Some("10.0.0.1".parse().unwrap()),
        agent_id: "bench".into(),
        places: None,
    };
    let rows: Vec<_> = corpus
        .iter()
        .flat_map(|payload| {
            let request = ExportTraceServiceRequest::decode(payload.protobuf.clone()).unwrap();
            map_request(request, &sender).rows
        })
        .collect();
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
