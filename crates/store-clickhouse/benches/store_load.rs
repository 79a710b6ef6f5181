//! A load run of the ClickHouse store: writes a realistic corpus of span rows through the
//! `SpanStore` write path (RowBinary encoding, batched inserts acknowledged once ClickHouse
//! accepts them), then measures spans/s, the CPU of this process and of ClickHouse together,
//! bytes per span in `system.parts`, and trace-by-id and search latency over what was stored.
//!
//! `cargo bench -p spanflow-store-clickhouse --bench store_load -- [--spans N] [--batch N] [--writers N]
//! [--batch-rows N] [--minutes N] [--compression] [--hold]`
//!
//! The spans end over the last `--minutes` (360): over six hours they fill six partitions,
//! each of which ClickHouse merges little within the run; over a few minutes they all land in
//! the current hour's, as live traffic does, and the run pays for the merges of its parts.
//!
//! It starts its own `clickhouse-server` (Debian's 18.16 here) on loopback ports.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spanflow_loadgen::corpus::Random;
use spanflow_loadgen::rows::trace;
use spanflow_store::SpanStore;
use spanflow_store_clickhouse::test_server::TestServer;
use spanflow_store_clickhouse::{ClickHouseConfig, ClickHouseStore, WireCompression};

/// The allocator the `spanflow` binary runs with.
#[global_allocator]
static ALLOCATOR: spanflow_store::allocator::Allocator = spanflow_store::allocator::Allocator;

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

/// Nanoseconds the calling thread has run on a CPU, from /proc (the scheduler's count, which a
/// busy machine does not inflate as it does wall time).
fn thread_cpu_ns() -> usize {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|stat| stat.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds (user + system) process `pid` has used, from /proc.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|arg| arg == name)
        .and_then(|i| args.get(i + 1))
        .map(|value| value.parse().ok().unwrap_or_else(|| panic!("{name} N")))
        .unwrap_or(default)
}

type Parts = Vec<(String, u64, u64, u64)>;

/// Rows, parts and bytes per span of each table, and of both together.
fn report(when: &str, tables: Parts) {
    let spans = tables
        .iter()
        .find(|table| table.0 == "l7_flow_log")
        .map_or(1, |table| table.1);
    let total: u64 = tables.iter().map(|table| table.2).sum();
    for (table, rows, bytes, parts) in &tables {
        println!(
            "{when:<20} {table}: {rows} rows, {parts} parts, {:.1} bytes per span",
            *bytes as f64 / spans as f64
        );
    }
    println!(
        "{when:<20} all tables: {:.1} bytes per span",
        total as f64 / spans as f64
    );
}

fn main() {
    // As the `spanflow` binary's server has it.
    spanflow_store::allocator::hold_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n_spans: usize = arg(&args, "--spans", 1_000_000);
    let batch: usize = arg(&args, "--batch", 10_000);
    let writers: usize = arg(&args, "--writers", 8);
    let span_us: i64 = arg(&args, "--minutes", 360i64).max(1) * 60_000_000;
    let server = TestServer::start();
    let server_pid = server.pid().expect("running").to_string();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let defaults = ClickHouseConfig::new(server.url());
        let store = ClickHouseStore::open(ClickHouseConfig {
            batch_rows: arg(&args, "--batch-rows", defaults.batch_rows),
            // The server is on this host: LZ4 only when asked for, as a remote one gets it.
            compression: if args.iter().any(|arg| arg == "--compression") {
                WireCompression::Always
            } else {
                WireCompression::Remote
            },
            ..defaults
        })
        .await
        .unwrap();
        let client = clickhouse::Client::default()
            .with_url(server.url())
            .with_validation(false);
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64;
        let next = Arc::new(AtomicUsize::new(0));
        let generate_ns = Arc::new(AtomicUsize::new(0));
        let cpu_before = (cpu_seconds("self"), cpu_seconds(&server_pid));
        let started = Instant::now();
        // Several writers, as several agents' batches arrive at once: a write returns once its
        // insert is accepted, so one writer alone would wait out every batching interval.
        let tasks: Vec<_> = (0..writers)
            .map(|writer| {
                let (store, next, generate_ns) = (store.clone(), next.clone(), generate_ns.clone());
                tokio::spawn(async move {
                    let mut random = Random::new(42 + writer as u64);
                    let mut samples = Vec::new();
                    loop {
                        let first = next.fetch_add(batch, Ordering::SeqCst);
                        if first >= n_spans {
                            return samples;
                        }
                        // No await until the rows are made: one thread makes them.
                        let generating = thread_cpu_ns();
                        let mut rows = Vec::with_capacity(batch + 16);
                        while rows.len() < batch {
                            // Spread over the last `--minutes`.
                            let at = (first + rows.len()) as i64;
                            let start = now_us - span_us + at * (span_us / n_spans.max(1) as i64);
                            trace(&mut random, start, &mut rows);
                        }
                        if samples.len() < 200 {
                            samples.push(rows[0].trace_id);
                        }
                        generate_ns.fetch_add(
                            thread_cpu_ns().saturating_sub(generating),
                            Ordering::Relaxed,
                        );
                        store
                            .write(rows)
                            .await
                            .expect("ClickHouse accepts the rows");
                    }
                })
            })
            .collect();
        let mut samples = Vec::new();
        for task in tasks {
            samples.extend(task.await.unwrap());
        }
        let elapsed = started.elapsed();
        let cpu = cpu_seconds("self") - cpu_before.0;
        let server_cpu = cpu_seconds(&server_pid) - cpu_before.1;
        let generate = generate_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let written: u64 = client
            .query("SELECT count() FROM flow_log.l7_flow_log")
            .fetch_one()
            .await
            .unwrap();
        let per_million = |seconds: f64| seconds / written as f64 * 1e6;
        println!("spans written        {written}");
        println!(
            "write wall time      {:.2} s ({:.0} spans/s)",
            elapsed.as_secs_f64(),
            written as f64 / elapsed.as_secs_f64()
        );
        println!(
            "CPU-s per M spans    spanflow {:.2} (not counting {:.2} s making rows), \
             ClickHouse {:.2}, together {:.2}",
            per_million(cpu - generate),
            generate,
            per_million(server_cpu),
            per_million(cpu - generate + server_cpu)
        );
        let sorted: Vec<(String, u64)> = client
            .query(
                "SELECT event, value FROM system.events \
                 WHERE event LIKE 'MergeTreeDataWriterBlocks%' ORDER BY event",
            )
            .fetch_all()
            .await
            .unwrap();
        println!("blocks written       {sorted:?}");
        let parts = "SELECT table, toUInt64(sum(rows)), toUInt64(sum(bytes_on_disk)), \
                     toUInt64(count()) FROM system.parts \
                     WHERE database = 'flow_log' AND active GROUP BY table ORDER BY table";
        report(
            "as inserted",
            client.query(parts).fetch_all().await.unwrap(),
        );
        let merging = Instant::now();
        for table in ["l7_flow_log", "l7_trace_index"] {
            client
                .query(&format!("OPTIMIZE TABLE flow_log.{table} FINAL"))
                .execute()
                .await
                .unwrap();
        }
        report("merged", client.query(parts).fetch_all().await.unwrap());
        println!(
            "final merge          {:.1} s",
            merging.elapsed().as_secs_f64()
        );

        let mut latencies = Vec::new();
        for trace_id in &samples {
            let started = Instant::now();
            let rows = store.trace(*trace_id).await.unwrap();
            latencies.push(started.elapsed());
            assert!(!rows.is_empty());
        }
        latencies.sort();
        println!(
            "trace by id          p50 {:?} p99 {:?} max {:?} ({} lookups)",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            latencies.last().unwrap(),
            latencies.len()
        );
        for timing in spanflow_store::workload::run(&store, now_us, span_us, 5).await {
            println!(
                "{:<40} median {:?} max {:?}",
                timing.name, timing.median, timing.max
            );
        }
        if args.iter().any(|arg| arg == "--hold") {
            // Keeps ClickHouse up for a look at what was stored.
            println!("holding {} for 10 minutes", server.url());
            tokio::time::sleep(Duration::from_secs(600)).await;
        }
        drop(server);
    });
}
