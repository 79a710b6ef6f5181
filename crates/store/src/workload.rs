//! The reads every backend's load run times over the same corpus (`spanflow-loadgen`'s span
//! rows: services such as `checkout` and `payments`, spread over a window before `now`, six
//! hours unless the run says otherwise): searches, trace search, listings, the service map and
//! RED series.

use std::time::{Duration, Instant};

use crate::analytics::RedQuery;
use crate::{find_traces, AttributeFilter, SpanQuery, SpanStore, TimeRange};

/// How long one read took, over its rounds.
#[derive(Clone, Debug)]
pub struct Timing {
    pub name: String,
    pub median: Duration,
    pub max: Duration,
    /// The process's peak resident memory during the read's rounds, in bytes (Linux only).
    pub peak_rss_bytes: Option<u64>,
}

/// The process's peak resident memory since it started or since [`reset_peak_rss`], in bytes;
/// `None` where `/proc` does not say.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Starts the peak that [`peak_rss_bytes`] reports afresh from the present resident memory
/// (Linux's `clear_refs`). The kernel's own maximum, which `time -v` reports, is reset with it,
/// so a caller that wants the whole run's peak keeps the largest value it has read.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

const HOUR_US: i64 = 3_600_000_000;

async fn time<F, Fut>(name: &str, rounds: usize, mut read: F) -> Timing
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    reset_peak_rss();
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds.max(1) {
        let started = Instant::now();
        let found = read().await;
        times.push(started.elapsed());
        assert!(found > 0, "{name} found nothing");
    }
    times.sort();
    Timing {
        name: name.to_string(),
        median: times[times.len() / 2],
        max: times[times.len() - 1],
        peak_rss_bytes: peak_rss_bytes(),
    }
}

/// Runs each read `rounds` times and returns its median and worst time, over spans that end
/// in the `window_us` before `now_us`. Panics when a read finds nothing: the corpus has
/// something for each.
pub async fn run(store: &dyn SpanStore, now_us: i64, window_us: i64, rounds: usize) -> Vec<Timing> {
    // Ten minutes of six hours: the span starts a sixth of the window back, for a 36th of it.
    let range_start = now_us - window_us / 6;
    let searches = [
        (
            "search service",
            SpanQuery {
                service: Some("checkout".into()),
                ..SpanQuery::default()
            },
        ),
        (
            "search service+operation",
            SpanQuery {
                service: Some("payments".into()),
                operation: Some("SELECT orders".into()),
                ..SpanQuery::default()
            },
        ),
        (
            "search duration",
            SpanQuery {
                min_duration_us: Some(150_000),
                ..SpanQuery::default()
            },
        ),
        (
            "search attribute",
            SpanQuery {
                attributes: vec![AttributeFilter {
                    key: "messaging.destination.name".into(),
                    value: "emails".into(),
                }],
                ..SpanQuery::default()
            },
        ),
        (
            "search time range",
            SpanQuery {
                start_time_min_us: Some(range_start),
                start_time_max_us: Some(range_start + window_us / 36),
                ..SpanQuery::default()
            },
        ),
    ];
    let mut timings = Vec::new();
    for (name, query) in &searches {
        let query = SpanQuery {
            limit: 20,
            ..query.clone()
        };
        timings.push(
            time(name, rounds, || async {
                store.search(&query).await.expect("search").len()
            })
            .await,
        );
    }
    let service = SpanQuery {
        service: Some("checkout".into()),
        ..SpanQuery::default()
    };
    timings.push(
        time("trace search (20 traces, read whole)", rounds, || async {
            let found = find_traces(store, &service, &|_| true, 20, 50_000)
                .await
                .expect("trace search");
            let mut spans = 0;
            for trace_id in &found.trace_ids {
                spans += store.trace(*trace_id).await.expect("trace").len();
            }
            spans
        })
        .await,
    );
    timings.push(
        time("services", rounds, || async {
            store
                .services(TimeRange::ALL)
                .await
                .expect("services")
                .len()
        })
        .await,
    );
    timings.push(
        time("operations of a service", rounds, || async {
            store
                .operations("checkout", TimeRange::ALL)
                .await
                .expect("operations")
                .len()
        })
        .await,
    );
    let last_hour = TimeRange::new(Some(now_us - HOUR_US), Some(now_us));
    // By workload, each end's node is its place's service, read from both ends' place columns.
    for (name, by) in [
        ("service map, 1 hour", crate::analytics::MapBy::Service),
        (
            "service map by workload, 1 hour",
            crate::analytics::MapBy::Workload,
        ),
    ] {
        timings.push(
            time(name, rounds, || async move {
                store
                    .service_map(last_hour, by)
                    .await
                    .expect("service map")
                    .len()
            })
            .await,
        );
    }
    let six_hours = TimeRange::new(Some(now_us - 6 * HOUR_US), Some(now_us));
    timings.push(
        time("service map, 6 hours", rounds, || async {
            store
                .service_map(six_hours, crate::analytics::MapBy::Service)
                .await
                .expect("service map")
                .len()
        })
        .await,
    );
    let red = RedQuery {
        service: "checkout".into(),
        range: last_hour,
        step_us: 60_000_000,
        by_operation: true,
    };
    timings.push(
        time("RED, 1 hour by minute and operation", rounds, || async {
            store.red(&red).await.expect("RED").len()
        })
        .await,
    );
    timings
}
