//! The embedded store's encodings on rows mapped from the load generator's corpus: rows to an
//! Arrow record batch as the store buffers them; a write's work before its log (that batch
//! built, sorted into file order and encoded for the write-ahead log, rows freed); and that batch to a
//! Parquet file as the store writes it (sorted by service, endpoint and start time; zstd,
//! dictionaries, page statistics, the `trace_id` bloom filter).
//!
//! `cargo bench -p spanflow-store-embedded --bench encode`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use spanflow_store_embedded::schema;

mod corpus_rows;

fn encode(c: &mut Criterion) {
    let rows = corpus_rows::rows();
    let mut group = c.benchmark_group("embedded_store");
    group.throughput(Throughput::Elements(rows.len() as u64));
    group.sample_size(20);
    group.bench_function("rows_to_arrow", |b| {
        b.iter(|| std::hint::black_box(schema::rows_to_buffer(&rows)))
    });
    group.bench_function("prepare_write", |b| {
        b.iter_batched(
            || rows.clone(),
            |rows| {
                std::hint::black_box(
                    spanflow_store_embedded::prepare_batch(rows, |time| time.div_euclid(3600))
                        .unwrap(),
                )
            },
            criterion::BatchSize::LargeInput,
        )
    });
    let batch = schema::rows_to_buffer(&rows);
    group.bench_function("arrow_to_parquet", |b| {
        b.iter(|| std::hint::black_box(spanflow_store_embedded::parquet_bytes(&batch).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
