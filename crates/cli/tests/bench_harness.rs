//! The benchmark harness, `bench/run`, run for a second of tiny load so that it cannot rot:
//! it starts `spanflow up`, drives it with `spanflow loadgen`, and reports every span stored.

use std::path::Path;
use std::process::Command;

#[test]
fn the_harness_smoke_run_stores_every_span_it_sends() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(root.join("bench/run"))
        .args(["--smoke", "--bin", env!("CARGO_BIN_EXE_spanflow"), "--out"])
        .arg(out.path())
        .output()
        .expect("bench/run starts");
    assert!(
        output.status.success(),
        "bench/run failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["spans_lost"], 0, "{summary}");
    assert_eq!(summary["requests_failed"], 0, "{summary}");
    assert_eq!(
        summary["spans_stored"], summary["spans_accepted"],
        "{summary}"
    );
    assert!(
        summary["spans_stored"].as_u64().unwrap() >= 20_000,
        "{summary}"
    );
    assert!(summary["cpu_seconds_per_million_spans"].as_f64().unwrap() > 0.0);
    assert!(summary["peak_rss_mib"].as_f64().unwrap() > 1.0);
    for report in ["saturation.json", "half.json"] {
        assert!(out.path().join(report).exists(), "{report} missing");
    }
}
