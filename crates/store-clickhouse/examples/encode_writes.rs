//! The ClickHouse store's share of the server's work on a write, on 10,000 spans of the load
//! generator's corpus, repeated a given number of rounds: a fixed amount of work whose
//! instructions cachegrind counts, where timings on a shared machine move by a tenth between
//! runs. Each round maps the corpus's payloads as the server does (each payload's spans mapped
//! into the rows the one before left and held to the span limits), appends each row to the
//! write as the store's encoder does, and finishes the write; every fifth round, the last five
//! writes are put in the order an insert sends them.
//!
//! ```sh
//! cargo build --release -p spanflow-store-clickhouse --example encode_writes
//! valgrind --tool=cachegrind --cache-sim=no target/release/examples/encode_writes 0
//! valgrind --tool=cachegrind --cache-sim=no target/release/examples/encode_writes 5
//! ```
//!
//! The difference of the two counts over 50,000 is the instructions a span. A second argument,
//! `map`, maps the payloads only, so that the difference of the two runs is the store's.

use spanflow_otlp::limits::{Checked, SpanLimits};
use spanflow_otlp::map::Sender;
use spanflow_otlp::wire::{map_payload, RowPool};
use spanflow_store_clickhouse::rowbinary::{insert_order, Encoded, WriteBuilder};

/// The allocator the `spanflow` binary runs with.
#[global_allocator]
static ALLOCATOR: spanflow_store::allocator::Allocator = spanflow_store::allocator::Allocator;

/// Writes an insert gathers, about what one holds under load.
const WRITES_AN_INSERT: usize = 5;

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(5, |n| n.parse().expect("a number of rounds"));
    let map_only = std::env::args().nth(2).is_some_and(|only| only == "map");
    let payloads = spanflow_loadgen::corpus::build(100, 100, 1);
    let sender = Sender {
        peer_ip: Some("10.0.0.1".parse().expect("an address")),
        agent_id: "bench".into(),
        places: None,
    };
    let limits = SpanLimits::default();
    let mut pool = RowPool::default();
    let mut writes: Vec<Encoded> = Vec::new();
    for _ in 0..rounds {
        let mut write = WriteBuilder::new(10_000);
        let mut checked = Checked::default();
        for payload in &payloads {
            map_payload(&payload.protobuf, &sender, &mut pool).expect("the corpus maps");
            for row in pool.rows_mut() {
                limits.apply_checked(row, &mut checked);
            }
            if !map_only {
                for row in pool.rows() {
                    write.append(row);
                }
            }
        }
        if map_only {
            continue;
        }
        writes.push(write.finish());
        if writes.len() == WRITES_AN_INSERT {
            std::hint::black_box(insert_order(writes.iter()));
            writes.clear();
        }
    }
    std::hint::black_box(writes);
}
