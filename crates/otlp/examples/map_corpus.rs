//! The server's mapping of payloads to rows, on the load generator's corpus (64 requests of 100
//! spans), repeated a given number of rounds: a fixed amount of work whose instructions
//! cachegrind counts, where timings on a shared machine move by a tenth between runs.
//!
//! ```sh
//! cargo build --release -p spanflow-otlp --example map_corpus
//! valgrind --tool=cachegrind --cache-sim=no target/release/examples/map_corpus 0
//! valgrind --tool=cachegrind --cache-sim=no target/release/examples/map_corpus 10
//! ```
//!
//! The difference of the two counts over 64,000 is the instructions a span.

use spanflow_otlp::map::Sender;
use spanflow_otlp::wire::map_payload_into;

/// The allocator the `spanflow` binary runs with.
#[global_allocator]
static ALLOCATOR: spanflow_store::allocator::Allocator = spanflow_store::allocator::Allocator;

fn main() {
    let corpus = spanflow_loadgen::corpus::build(64, 100, 1);
    let sender = Sender {
        peer_ip: Some("10.0.0.1".parse().unwrap()),
        agent_id: "bench".into(),
        places: None,
    };
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(10, |n| n.parse().expect("a number of rounds"));
    for _ in 0..rounds {
        for payload in &corpus {
            let mut rows = Vec::with_capacity(payload.n_spans);
            map_payload_into(&payload.protobuf, &sender, &mut rows).unwrap();
            std::hint::black_box(rows);
        }
    }
}
