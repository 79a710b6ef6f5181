//! The ClickHouse store's encoding of a write, as `SpanStore::prepare` does it: 10,000 span
//! rows of the load corpus as `l7_flow_log` rows (with the `l7_resource` rows they need) and
//! as `l7_trace_index` rows, in `RowBinary`; and the order an insert sends the rows of five
//! such writes in (`insert_order`).
//!
//! `cargo bench -p spanflow-store-clickhouse --bench encode`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use spanflow_loadgen::corpus::Random;
use spanflow_loadgen::rows::trace;
use spanflow_model::SpanRow;
use spanflow_store_clickhouse::rowbinary::{insert_order, Encoded, WriteBuilder};

/// The rows encoded as the store's `prepare` encodes them.
fn encode_write(rows: &[SpanRow]) -> Encoded {
    let mut write = WriteBuilder::new(rows.len());
    for row in rows {
        write.append(row);
    }
    write.finish()
}

fn encode(c: &mut Criterion) {
    let mut random = Random::new(42);
    let mut rows = Vec::new();
    while rows.len() < 10_000 {
        let start = 1_700_000_000_000_000 + rows.len() as i64 * 1_000;
        trace(&mut random, start, &mut rows);
    }
    {
        let write = encode_write(&rows);
        let index_bytes: usize = write
            .index_keys
            .iter()
            .map(|key| key.row(&write.index).len())
            .sum();
        eprintln!(
            "{} B a span row, {} B an index row",
            write.spans.len() / rows.len(),
            index_bytes / write.index_keys.len()
        );
    }
    let mut group = c.benchmark_group("clickhouse_store");
    group.throughput(Throughput::Elements(rows.len() as u64));
    group.sample_size(30);
    group.bench_function("encode_write", |b| {
        b.iter(|| std::hint::black_box(encode_write(&rows)))
    });
    // An insert of five writes of 10,000 spans, about what one gathers under load.
    let writes: Vec<Encoded> = (0..5).map(|_| encode_write(&rows)).collect();
    group.throughput(Throughput::Elements(5 * rows.len() as u64));
    group.bench_function("order_insert", |b| {
        b.iter(|| std::hint::black_box(insert_order(writes.iter())))
    });
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
