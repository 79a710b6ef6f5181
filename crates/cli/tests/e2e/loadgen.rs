//! `spanflow loadgen` against a whole spanflow: every protocol and loop it offers, with every
//! span it reports as accepted found in the store afterwards.

use crate::common;

use std::time::Duration;

use arrow::array::{Array, Int64Array};
use spanflow_loadgen::{Config, Protocol, Report};
use spanflow_store_embedded::{EmbeddedConfig, EmbeddedStore};

fn clean(report: &Report) {
    assert_eq!(report.requests.failed, 0, "failures: {:?}", report.failures);
    assert_eq!(report.requests.refused, 0);
    assert!(!report.ids_repeated);
    assert!(report.latency.p50_ms > 0.0 && report.latency.p50_ms <= report.latency.max_ms);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_span_the_load_generator_counts_as_accepted_is_stored() {
    let spanflow = common::start_up().await;
    let otlp_http = spanflow.agent_otlp_http.unwrap();
    let otlp_grpc = spanflow.agent_otlp_grpc.unwrap();
    let deepflow_http = spanflow.agent_http.unwrap();

    // Closed loop, OTLP/HTTP, gzip.
    let http = spanflow_loadgen::run(Config {
        endpoint: format!("http://{otlp_http}/v1/traces"),
        max_spans: Some(3_000),
        duration: Duration::from_secs(60),
        distinct_requests: 60,
        seed: 1,
        ..Config::default()
    })
    .await
    .unwrap();
    clean(&http);
    assert_eq!(http.mode, "closed");
    assert_eq!(http.spans.accepted, 3_000);
    assert!(http.corpus_bytes_per_span > 400.0 && http.corpus_bytes_per_span < 650.0);

    // Closed loop, OTLP/gRPC, gzip, 50 spans a request.
    let grpc = spanflow_loadgen::run(Config {
        endpoint: format!("http://{otlp_grpc}"),
        protocol: Protocol::Grpc,
        spans_per_request: 50,
        max_spans: Some(2_000),
        duration: Duration::from_secs(60),
        connections: 2,
        distinct_requests: 40,
        seed: 2,
        ..Config::default()
    })
    .await
    .unwrap();
    clean(&grpc);
    assert_eq!(grpc.spans.accepted, 2_000);

    // Open loop at 5,000 spans/s for one second, uncompressed, on DeepFlow's path: requests
    // are due every 20 ms, so 50 of them fall in the second.
    let open = spanflow_loadgen::run(Config {
        endpoint: format!("http://{deepflow_http}/api/v1/otel/trace"),
        gzip: false,
        rate: Some(5_000.0),
        duration: Duration::from_secs(1),
        distinct_requests: 100,
        seed: 3,
        ..Config::default()
    })
    .await
    .unwrap();
    clean(&open);
    assert_eq!(open.mode, "open");
    assert_eq!(open.requests.accepted, 50);

    // A receiver that is not there: every request fails, and says why.
    let nowhere = spanflow_loadgen::run(Config {
        endpoint: "http://127.0.0.1:9/v1/traces".into(),
        max_spans: Some(200),
        distinct_requests: 2,
        ..Config::default()
    })
    .await
    .unwrap();
    assert_eq!(nowhere.requests.failed, 2);
    assert!(!nowhere.failures.is_empty());

    let data_dir = spanflow.stop_keeping_data().await;
    let store = EmbeddedStore::open(EmbeddedConfig::new(data_dir.path()))
        .await
        .unwrap();
    let batches = store
        .sql("SELECT count(*) AS n, count(DISTINCT span_id) AS distinct_spans FROM l7_flow_log")
        .await
        .unwrap();
    let count = |column: usize| {
        batches[0]
            .column(column)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .value(0)
    };
    assert_eq!(count(0), 10_000);
    assert_eq!(count(1), 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_of_spanflow_up_stores_what_the_agent_still_held() {
    // The agent holds what it accepted for a minute before it would send it; the stop must
    // deliver it to the server of the same process before that server stops.
    let settings = spanflow_cli::settings::Settings {
        flush_interval_ms: Some(60_000),
        batch_max_bytes: Some(1 << 30),
        ..common::test_settings()
    };
    let spanflow = common::start(spanflow_cli::serve::Role::Both, settings).await;
    let report = spanflow_loadgen::run(Config {
        endpoint: format!("http://{}/v1/traces", spanflow.agent_otlp_http.unwrap()),
        max_spans: Some(1_000),
        distinct_requests: 10,
        seed: 4,
        ..Config::default()
    })
    .await
    .unwrap();
    clean(&report);
    assert_eq!(report.spans.accepted, 1_000);

    let data_dir = spanflow.stop_keeping_data().await;
    let store = EmbeddedStore::open(EmbeddedConfig::new(data_dir.path()))
        .await
        .unwrap();
    let batches = store.sql("SELECT count(*) FROM l7_flow_log").await.unwrap();
    let n = batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(n, 1_000);
}
