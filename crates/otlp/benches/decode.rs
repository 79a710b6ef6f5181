//! The ceilings and the server's per-span work on the load generator's corpus (requests of 100
//! spans of about 520 bytes): a full prost decode, gunzip plus decode, the agent's zero-copy
//! walk, and the server's mapping of a payload's bytes to rows.
//!
//! `cargo bench -p spanflow-otlp --bench decode`

use std::io::Read;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prost::Message;
use spanflow_otlp::decompress::{decompress, Encoding};
use spanflow_otlp::map::Sender;
use spanflow_otlp::wire::map_payload_into;
use spanflow_otlp::{scan, ExportTraceServiceRequest};

/// The allocator the `spanflow` binary runs with.
#[global_allocator]
static ALLOCATOR: spanflow_store::allocator::Allocator = spanflow_store::allocator::Allocator;

fn decode(c: &mut Criterion) {
    let corpus = spanflow_loadgen::corpus::build(64, 100, 1);
    let n_spans: usize = corpus.iter().map(|payload| payload.n_spans).sum();
    let mut group = c.benchmark_group("otlp");
    group.throughput(Throughput::Elements(n_spans as u64));
    group.bench_function("prost_decode", |b| {
        b.iter(|| {
            for payload in &corpus {
                let request = ExportTraceServiceRequest::decode(payload.protobuf.clone()).unwrap();
                std::hint::black_box(request);
            }
        })
    });
    // The server's whole per-request work before the store: map the payload's bytes to rows,
    // and free the rows.
    group.bench_function("decode_and_map", |b| {
        let sender = Sender {
            peer_ip: Some("10.0.0.1".parse().unwrap()),
            agent_id: "bench".into(),
            places: None,
        };
        b.iter(|| {
            for payload in &corpus {
                let mut rows = Vec::with_capacity(payload.n_spans);
                map_payload_into(&payload.protobuf, &sender, &mut rows).unwrap();
                std::hint::black_box(rows);
            }
        })
    });
    group.bench_function("gunzip_and_prost_decode", |b| {
        let mut buffer = Vec::new();
        b.iter(|| {
            for payload in &corpus {
                buffer.clear();
                flate2::read::GzDecoder::new(&payload.gzip[..])
                    .read_to_end(&mut buffer)
                    .unwrap();
                let request = ExportTraceServiceRequest::decode(&buffer[..]).unwrap();
                std::hint::black_box(request);
            }
        })
    });
    // Gunzip as the server does it: each body into a buffer of the size its trailer states.
    group.bench_function("server_gunzip", |b| {
        b.iter(|| {
            for payload in &corpus {
                let otlp = decompress(payload.gzip.clone(), Encoding::Gzip, 64 << 20).unwrap();
                std::hint::black_box(otlp);
            }
        })
    });
    group.bench_function("scan_walk", |b| {
        b.iter(|| {
            for payload in &corpus {
                std::hint::black_box(scan::scan_request(&payload.protobuf).unwrap());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
