//! A load run of the embedded store: writes a realistic corpus of span rows through the
//! `SpanStore` write path (WAL with fsync, buffer, Parquet flushes), then measures bytes on disk
//! per span, ingest rows/s, and trace-by-id and search latency over what was stored.
//!
//! `cargo bench -p spanflow-store-embedded --bench store_load -- [--spans N] [--batch N] [--dir PATH] [--reopen]`
//!
//! The rows are prepared for the store on the thread that built them, as the server does;
//! `--write` hands them to `SpanStore::write` instead.
//!
//! `--reopen` skips the writes and measures lookups and searches over the store an earlier run
//! left in `--dir`; `--lookup-rounds N` repeats the lookups and `--lookups-only` skips the
//! searches.

use std::time::{Duration, Instant};

use spanflow_loadgen::corpus::Random;
use spanflow_loadgen::rows::trace;
use spanflow_model::SpanRow;
use spanflow_store::{SpanQuery, SpanStore};
use spanflow_store_embedded::{EmbeddedConfig, EmbeddedStore};

/// The allocator the `spanflow` binary runs with.
#[global_allocator]
static ALLOCATOR: spanflow_store::allocator::Allocator = spanflow_store::allocator::Allocator;

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

fn main() {
    // As the `spanflow` binary's server has it.
    spanflow_store::allocator::hold_freed_memory();
    let mut args = std::env::args().skip(1);
    let (mut n_spans, mut batch, mut dir) =
        (1_000_000usize, 10_000usize, None::<std::path::PathBuf>);
    let mut lookup_rounds = 1usize;
    let mut lookups_only = false;
    let mut through_write = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--spans" => {
                n_spans = args
                    .next()
                    .and_then(|value| value.parse().ok())
                    .expect("--spans N")
            }
            "--batch" => {
                batch = args
                    .next()
                    .and_then(|value| value.parse().ok())
                    .expect("--batch N")
            }
            "--dir" => dir = args.next().map(Into::into),
            // Only the lookups and searches, over what an earlier run left in --dir.
            "--reopen" => n_spans = 0,
            // Repeats the lookups, for a profiler to watch.
            "--lookup-rounds" => {
                lookup_rounds = args
                    .next()
                    .and_then(|value| value.parse().ok())
                    .expect("--lookup-rounds N")
            }
            // No searches after the lookups, for a profiler to watch the lookups alone.
            "--lookups-only" => lookups_only = true,
            // Writes through `SpanStore::write`, which prepares the rows on the store's
            // blocking pool, instead of preparing them on the generator's thread.
            "--write" => through_write = true,
            "--bench" => {}
            _ => {}
        }
    }
    let temporary = tempfile::tempdir().unwrap();
    let dir = dir.unwrap_or_else(|| temporary.path().to_path_buf());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // As the `spanflow` binary caps them on two cores.
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = EmbeddedStore::open(EmbeddedConfig {
            upkeep_interval: Duration::from_secs(1),
            ..EmbeddedConfig::new(&dir)
        })
        .await
        .unwrap();
        let now_us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64;
        // One batch of the corpus, the spans spread over the last 6 hours, so several
        // partitions fill.
        let fill = |random: &mut Random, written: usize, generated: &mut Vec<SpanRow>| {
            generated.clear();
            while generated.len() < batch {
                let start = now_us - 6 * 3_600_000_000 + (written + generated.len()) as i64 * (6 * 3_600_000_000 / n_spans.max(1) as i64);
                trace(random, start, generated);
            }
        };
        // The generator alone first, over the same corpus, as the run below makes it (a batch,
        // its copy, both freed): the process's CPU for the run minus this is the write path's,
        // wherever the allocator charges work that one thread's frees leave for another.
        let generation_alone = {
            let mut random = Random::new(42);
            let (mut made, mut generated) = (0usize, Vec::with_capacity(batch + 16));
            let before = cpu_seconds();
            while made < n_spans {
                fill(&mut random, made, &mut generated);
                let _ = random.below(5);
                let copies = vec![generated.clone()];
                made += generated.len();
                drop(copies);
                generated = Vec::with_capacity(batch + 16);
            }
            cpu_seconds() - before
        };
        let mut random = Random::new(42);
        let mut sample_traces = Vec::new();
        let mut generated = Vec::with_capacity(batch + 16);
        let mut written = 0usize;
        let mut generate_time = Duration::ZERO;
        let mut write_time = Duration::ZERO;
        let mut n_refused = 0usize;
        let cpu_before = cpu_seconds();
        while written < n_spans {
            let started = Instant::now();
            fill(&mut random, written, &mut generated);
            if sample_traces.len() < 1000 && random.below(5) == 0 {
                sample_traces.push(generated[0].trace_id);
            }
            // A copy to send again if the write is refused, made outside the timed write.
            let mut copies = vec![generated.clone()];
            generate_time += started.elapsed();
            let started = Instant::now();
            written += generated.len();
            let mut batch_rows = std::mem::take(&mut generated);
            // Refused writes are retried, as the server's agents do. As in the server, the
            // rows are prepared on the thread that built them.
            loop {
                let spare = copies.pop().unwrap_or_else(|| batch_rows.clone());
                let rows = std::mem::replace(&mut batch_rows, spare);
                let written = if through_write {
                    store.write(rows).await
                } else {
                    store.write_prepared(store.prepare(rows).unwrap()).await
                };
                match written {
                    Ok(()) => break,
                    Err(error) if error.kind == spanflow_store::ErrorKind::Retryable => {
                        n_refused += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(error) => panic!("write failed: {error}"),
                }
            }
            write_time += started.elapsed();
            // The copy the store was not given is the benchmark's own, as is freeing it.
            let started = Instant::now();
            drop(batch_rows);
            generate_time += started.elapsed();
            generated = Vec::with_capacity(batch + 16);
        }
        let started = Instant::now();
        store.flush().await.unwrap();
        store.upkeep_now().await.unwrap();
        let flush_time = started.elapsed();
        let cpu = cpu_seconds() - cpu_before;
        let mut peak = Peak::default();
        peak.read("writes");
        let files = store.files();
        let file_bytes: u64 = files.iter().map(|file| file.n_bytes).sum();
        let file_rows: u64 = files.iter().map(|file| file.n_rows).sum();
        println!("spans written        {written}");
        println!("files                {} ({} rows)", files.len(), file_rows);
        println!("bytes per span       {:.1}", file_bytes as f64 / file_rows as f64);
        println!("WAL bytes per span   {:.0}", store.wal_bytes_written() as f64 / written.max(1) as f64);
        println!("write wall time      {:.2} s ({:.0} spans/s, excluding generation)", write_time.as_secs_f64(), written as f64 / write_time.as_secs_f64());
        println!("final flush+compact  {:.2} s", flush_time.as_secs_f64());
        println!("writes refused       {n_refused} (buffer full; retried)");
        println!("process CPU          {:.2} s ({:.2} CPU-s per million spans, including generation {:.2} s)", cpu, cpu / written as f64 * 1e6, generate_time.as_secs_f64());
        // The process's CPU minus the generator's when it ran alone: the store's whole cost,
        // including the work its frees leave for the generator's thread. (The generator
        // thread's own CPU clock would charge that work to the generator.)
        println!("write path CPU, whole {:.2} s ({:.2} CPU-s per million spans; generation alone {:.2} CPU-s)", cpu - generation_alone, (cpu - generation_alone) / written as f64 * 1e6, generation_alone);

        if sample_traces.is_empty() {
            // Traces from all over the stored six hours.
            for step in 0..200i64 {
                let start = now_us - 6 * 3_600_000_000 + step * 108_000_000;
                let window = SpanQuery { start_time_min_us: Some(start), start_time_max_us: Some(start + 60_000_000), limit: 1, ..SpanQuery::default() };
                sample_traces.extend(store.search(&window).await.unwrap().iter().map(|row| row.trace_id));
            }
        }
        spanflow_store::workload::reset_peak_rss();
        let mut latencies = Vec::new();
        for trace_id in std::iter::repeat_n(&sample_traces, lookup_rounds).flatten() {
            let started = Instant::now();
            let rows = store.trace(*trace_id).await.unwrap();
            latencies.push(started.elapsed());
            assert!(!rows.is_empty());
        }
        latencies.sort();
        println!("trace by id          p50 {:?} p99 {:?} max {:?} ({} lookups)", percentile(&latencies, 0.5), percentile(&latencies, 0.99), latencies.last().unwrap(), latencies.len());
        println!("lookup cache         {:.1} MiB of file footers", store.lookup_cache_bytes() as f64 / (1 << 20) as f64);
        peak.read("lookups");
        if lookups_only {
            return;
        }

        for timing in spanflow_store::workload::run(&store, now_us, 6 * 3_600_000_000, 5).await {
            println!(
                "{:<40} median {:?} max {:?} peak memory {:.0} MiB",
                timing.name, timing.median, timing.max, timing.peak_rss_bytes.unwrap_or(0) as f64 / (1 << 20) as f64
            );
            peak.max = peak.max.max(timing.peak_rss_bytes.unwrap_or(0));
        }
        println!("peak resident memory {:.0} MiB (the whole run)", peak.max as f64 / (1 << 20) as f64);
    });
}

/// The largest resident memory seen over the run's phases; each phase's peak is printed.
#[derive(Default)]
struct Peak {
    max: u64,
}

impl Peak {
    fn read(&mut self, phase: &str) {
        let bytes = spanflow_store::workload::peak_rss_bytes().unwrap_or(0);
        println!(
            "peak memory, {phase:<8}  {:.0} MiB",
            bytes as f64 / (1 << 20) as f64
        );
        self.max = self.max.max(bytes);
    }
}

/// CPU seconds this process has used (user + system), from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    ticks / 100.0
}
