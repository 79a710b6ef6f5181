//! The DDL against a real ClickHouse server (Debian's 18.16 in CI).

use spanflow_store_clickhouse::schema::{self, Flavor, Layout};
use spanflow_store_clickhouse::test_server::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tables_are_created_once_with_every_column() {
    let server = TestServer::start();
    let client = clickhouse::Client::default()
        .with_url(server.url())
        .with_validation(false);
    let version: String = client.query("SELECT version()").fetch_one().await.unwrap();
    let flavor = Flavor::of_version(&version);
    // Twice: creating what exists is a no-op, as on every start.
    for _ in 0..2 {
        let layout = Layout {
            database: "flow_log".into(),
            cluster: None,
        };
        for statement in layout.create_statements(flavor, 72) {
            client
                .query(&statement)
                .execute()
                .await
                .unwrap_or_else(|error| panic!("{error}:\n{statement}"));
        }
    }
    let columns: Vec<(String, String)> = client
        .query(
            "SELECT name, type FROM system.columns \
             WHERE database = 'flow_log' AND table = 'l7_flow_log'",
        )
        .fetch_all()
        .await
        .unwrap();
    let expected: Vec<(String, String)> = schema::COLUMNS
        .iter()
        .map(|(name, legacy, modern)| {
            let kind = match flavor {
                Flavor::Legacy => legacy.to_string(),
                // What the server reports is the type without its codec.
                Flavor::Modern => modern.split(" CODEC").next().unwrap().to_string(),
            };
            (name.to_string(), kind)
        })
        .collect();
    assert_eq!(columns, expected, "server {version}");
    let index: Vec<String> = client
        .query(
            "SELECT name FROM system.columns \
             WHERE database = 'flow_log' AND table = 'l7_trace_index'",
        )
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(index, ["trace_id", "time", "app_service", "endpoint"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_an_older_version_made_gains_the_missing_columns_and_keeps_its_rows() {
    use spanflow_store::{conformance, SpanStore};
    use spanflow_store_clickhouse::{ClickHouseConfig, ClickHouseStore};

    let server = TestServer::start();
    let client = clickhouse::Client::default()
        .with_url(server.url())
        .with_validation(false);
    let version: String = client.query("SELECT version()").fetch_one().await.unwrap();
    let flavor = Flavor::of_version(&version);
    let layout = Layout {
        database: "older".into(),
        cluster: None,
    };
    // The table as it was before the place columns and the key sets: every statement with
    // them cut out.
    let is_place = |line: &str| {
        line.contains("`attribute_keys_id`")
            || ["_0`", "_1`"]
                .iter()
                .any(|suffix| line.contains(suffix) && !line.contains("`ip_"))
    };
    for statement in layout.create_statements(flavor, 72) {
        let older: Vec<&str> = statement.lines().filter(|line| !is_place(line)).collect();
        client.query(&older.join("\n")).execute().await.unwrap();
    }
    client
        .query("INSERT INTO older.l7_flow_log (trace_id, span_id, observation_point) VALUES ('0123456789abcdef', '01234567', 'app')")
        .execute()
        .await
        .unwrap();

    let store = ClickHouseStore::open(ClickHouseConfig {
        database: "older".into(),
        ..ClickHouseConfig::new(server.url())
    })
    .await
    .unwrap();
    let columns: Vec<String> = client
        .query("SELECT name FROM system.columns WHERE database = 'older' AND table = 'l7_flow_log'")
        .fetch_all()
        .await
        .unwrap();
    let expected: Vec<String> = schema::COLUMNS
        .iter()
        .map(|(name, ..)| name.to_string())
        .collect();
    assert_eq!(columns, expected, "every column, in order");
    let n_old: u64 = client
        .query("SELECT count() FROM older.l7_flow_log WHERE pod_0 = ''")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(n_old, 1, "the older row reads with empty places");

    let row = conformance::full_row();
    store.write(vec![row.clone()]).await.unwrap();
    let trace = store.trace(row.trace_id).await.unwrap();
    assert_eq!(trace.len(), 1);
    assert_eq!(trace[0].place_0, row.place_0);
    assert_eq!(trace[0].place_1, row.place_1);
    assert_eq!(trace[0].attributes, row.attributes);
}
