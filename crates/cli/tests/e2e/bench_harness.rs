//! The benchmark harness, `bench/run`, run for a second of tiny load per phase so that it
//! cannot rot: every scenario starts the processes it measures, drives them with
//! `spanflow loadgen`, and finds every span it sent where it should be, ClickHouse's included.

use std::path::Path;
use std::process::Command;

/// Runs `bench/run` with `args` and `--out out`, asserts that it succeeded, and returns its
/// standard output.
fn run_harness(args: &[&str], out: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = Command::new(root.join("bench/run"))
        .args(args)
        .arg("--out")
        .arg(out)
        .env_remove("SPANFLOW_LOG")
        .output()
        .expect("bench/run starts");
    assert!(
        output.status.success(),
        "bench/run failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The JSON file `name` that a run wrote in `out`.
fn report(out: &Path, name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join(name)).unwrap()).unwrap()
}

#[test]
fn the_harness_smoke_run_finds_every_span_it_sends_in_every_scenario() {
    let out = tempfile::tempdir().unwrap();
    run_harness(
        &["--smoke", "--bin", env!("CARGO_BIN_EXE_spanflow")],
        out.path(),
    );
    let summary = report(out.path(), "summary.json");
    for scenario in ["agent", "server", "end-to-end", "clickhouse"] {
        let figures = &summary[scenario];
        assert_eq!(figures["spans_lost"], 0, "{scenario}: {figures}");
        assert_eq!(figures["requests_failed"], 0, "{scenario}: {figures}");
        assert_eq!(
            figures["spans_stored"], figures["spans_accepted"],
            "{scenario}: {figures}"
        );
        // The saturation phase sends up to 20,000 spans in its second (fewer on a busy
        // machine with a debug build), the half load phase a second's worth.
        assert!(
            figures["spans_stored"].as_u64().unwrap() > 2_000,
            "{scenario}: {figures}"
        );
        assert!(
            figures["cpu_seconds_per_million_spans"].as_f64().unwrap() > 0.0,
            "{scenario}: {figures}"
        );
        assert!(
            figures["peak_rss_mib"].as_f64().unwrap() > 1.0,
            "{scenario}: {figures}"
        );
        assert!(
            figures["half_load_latency_p99_ms"].as_f64().unwrap() > 0.0,
            "{scenario}: {figures}"
        );
        for report in ["saturation", "half"] {
            let path = out.path().join(format!("{scenario}-{report}.json"));
            assert!(path.exists(), "{} missing", path.display());
        }
    }
    // The probe found every trace it sent once it was acknowledged.
    for scenario in ["server", "end-to-end", "clickhouse"] {
        let figures = &summary[scenario];
        assert_eq!(figures["ack_to_queryable_not_found"], 0, "{figures}");
        assert!(
            figures["ack_to_queryable_p50_ms"].as_f64().unwrap() > 0.0,
            "{figures}"
        );
    }
    assert!(summary["agent"].get("ack_to_queryable_p50_ms").is_none());
    // On ClickHouse, what the rows take on disk and a trace lookup through the query API.
    let clickhouse = &summary["clickhouse"];
    assert!(
        clickhouse["bytes_per_span"].as_f64().unwrap() > 10.0,
        "{clickhouse}"
    );
    assert!(
        clickhouse["trace_by_id_p50_ms"].as_f64().unwrap() > 0.0,
        "{clickhouse}"
    );
    assert!(
        clickhouse["clickhouse_rows_per_insert"].as_f64().unwrap() >= 1.0,
        "{clickhouse}"
    );
    // Table by table, from ClickHouse's part log: the span table's inserts made parts of
    // spans, and the smoke run's spans are all there.
    let spans_table = &clickhouse["clickhouse_tables"]["l7_flow_log"];
    let parts = spans_table["parts_inserted"].as_u64().unwrap();
    let rows_per_part = spans_table["rows_per_part_inserted"].as_f64().unwrap();
    assert!(parts >= 1, "{clickhouse}");
    assert!(
        parts as f64 * rows_per_part >= 20_000.0,
        "every span in a part: {clickhouse}"
    );
    assert_eq!(
        clickhouse["clickhouse_spans_per_part_inserted"].as_f64(),
        Some(rows_per_part)
    );
    assert!(
        clickhouse["clickhouse_tables"]["l7_trace_index"]["parts_inserted"].as_u64() >= Some(1)
    );
    assert!(summary["empty"]["requests_per_second"].as_f64().unwrap() > 0.0);
    for ceiling in ["decode", "gunzip_decode", "gunzip"] {
        assert!(
            summary["ceilings"][ceiling]["spans_per_second"]
                .as_f64()
                .unwrap()
                > 0.0,
            "{}",
            summary["ceilings"]
        );
    }
}

#[test]
fn the_soak_smoke_run_reports_every_minute_and_loses_nothing() {
    let out = tempfile::tempdir().unwrap();
    run_harness(
        &[
            "--smoke",
            "--only",
            "soak",
            "--bin",
            env!("CARGO_BIN_EXE_spanflow"),
        ],
        out.path(),
    );
    let summary = report(out.path(), "summary.json");
    let soak = &summary["soak"];
    assert_eq!(soak["spans_lost"], 0, "{soak}");
    assert_eq!(soak["requests_failed"], 0, "{soak}");
    let minutes = soak["minutes"].as_array().unwrap();
    assert_eq!(minutes.len(), 2, "{soak}");
    for minute in minutes {
        assert!(minute["rss_mib"].as_f64().unwrap() > 1.0, "{minute}");
        assert!(minute["latency_p99_ms"].as_f64().unwrap() > 0.0, "{minute}");
    }
}

#[test]
fn a_comparison_runs_both_builds_in_turn_and_reports_every_run() {
    let out = tempfile::tempdir().unwrap();
    let binary = env!("CARGO_BIN_EXE_spanflow");
    let stdout = run_harness(
        &[
            "--smoke",
            "--bin",
            binary,
            "--against",
            binary,
            "--pairs",
            "2",
        ],
        out.path(),
    );
    let compared = report(out.path(), "compare.json");
    let runs = compared["runs"]["server"].as_array().unwrap();
    // A B, then B A: a drift of the machine's speed weighs on both builds alike.
    let builds: Vec<&str> = runs
        .iter()
        .map(|run| run["build"].as_str().unwrap())
        .collect();
    assert_eq!(builds, ["this", "other", "other", "this"], "{compared}");
    for run in runs {
        assert_eq!(run["spans_lost"], 0, "{run}");
        assert!(run["spans_stored"].as_u64().unwrap() > 2_000, "{run}");
        assert!(
            run["cpu_seconds_per_million_spans"].as_f64().unwrap() > 0.0,
            "{run}"
        );
    }
    assert!(stdout.contains("median   this"), "{stdout}");
    assert!(stdout.contains("median  other"), "{stdout}");
    assert!(
        stdout.contains("this build's CPU per span against the other's"),
        "{stdout}"
    );
    // A scenario it cannot compare is refused before anything runs.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let refused = Command::new(root.join("bench/run"))
        .args([
            "--smoke",
            "--bin",
            binary,
            "--against",
            binary,
            "--only",
            "soak",
        ])
        .output()
        .expect("bench/run starts");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--against compares"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
