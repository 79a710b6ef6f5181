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
