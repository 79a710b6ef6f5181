//! The store conformance suite on a real ClickHouse server (Debian's 18.16 in CI).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use spanflow_store::conformance;
use spanflow_store_clickhouse::test_server::{TestServer, CLUSTER};
use spanflow_store_clickhouse::{ClickHouseConfig, ClickHouseStore, WireCompression};

fn config(url: String, database: String) -> ClickHouseConfig {
    ClickHouseConfig {
        database,
        // The suite's writes are small; a short wait keeps it quick.
        batch_wait: Duration::from_millis(20),
        // Retention runs only when the suite asks, through `maintain`.
        upkeep_interval: Duration::from_secs(3600),
        ..ClickHouseConfig::new(url)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let server = TestServer::start();
    let n = AtomicUsize::new(0);
    conformance::run_all(|| async {
        let database = format!("suite_{}", n.fetch_add(1, Ordering::SeqCst));
        ClickHouseStore::open(config(server.url(), database))
            .await
            .unwrap()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_conformance_suite() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    conformance::run_durable(dir.path(), |location| {
        let database = location.file_name().unwrap().to_string_lossy().into_owned();
        let url = server.url();
        async move { ClickHouseStore::open(config(url, database)).await.unwrap() }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_on_a_two_shard_cluster() {
    let shards = TestServer::cluster(2);
    let n = AtomicUsize::new(0);
    conformance::run_all(|| async {
        let database = format!("suite_{}", n.fetch_add(1, Ordering::SeqCst));
        let config = ClickHouseConfig {
            urls: shards.iter().map(TestServer::url).collect(),
            cluster: Some(CLUSTER.to_string()),
            // As a cluster on other hosts is written to: LZ4 both ways.
            compression: WireCompression::Always,
            ..config(String::new(), database)
        };
        ClickHouseStore::open(config).await.unwrap()
    })
    .await;
}
