//! The ceilings and the server's per-span work on the load generator's corpus (requests of 100
//! spans of about 520 bytes): a full prost decode, gunzip plus decode, the agent's zero-copy
//! walk, the mapping of decoded spans to rows, and decode and mapping together.
//!
//! `cargo bench -p spanflow-otlp --bench decode`

use std::io::Read;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use prost::Message;
use spanflow_otlp::decompress::{decompress, Encoding};
use spanflow_otlp::map::{map_request, Sender};
use spanflow_otlp::{scan, ExportTraceServiceRequest};

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
    // The server's whole per-request work before the store: decode, map (consuming the
    // request), and free the rows.
    group.bench_function("decode_and_map", |b| {
        let sender = Sender {
            peer_ip: Some("10.0.0.1".parse().unwrap()),
            agent_id: "bench".into(),
            places: None,
        };
        b.iter(|| {
            for payload in &corpus {
                let request = ExportTraceServiceRequest::decode(payload.protobuf.clone()).unwrap();
                let rows = map_request(request, &sender).rows;
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
    let decoded: Vec<ExportTraceServiceRequest> = corpus
        .iter()
        .map(|payload| ExportTraceServiceRequest::decode(payload.protobuf.clone()).unwrap())
        .collect();
    let sender = Sender {
        peer_ip: Some("10.0.0.1".parse().unwrap()),
        agent_id: "bench".into(),
        places: None,
    };
    group.bench_function("map_to_rows", |b| {
        b.iter_batched(
            || decoded.clone(),
            |decoded| {
                let rows: Vec<_> = decoded
                    .into_iter()
                    .map(|request| map_request(request, &sender).rows)
                    .collect();
                rows
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
