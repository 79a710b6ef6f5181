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
    let resources: Vec<String> = client
        .query(
            "SELECT name FROM system.columns \
             WHERE database = 'flow_log' AND table = 'l7_resource'",
        )
        .fetch_all()
        .await
        .unwrap();
    let expected: Vec<String> = schema::resource_columns()
        .iter()
        .map(|(name, ..)| name.to_string())
        .collect();
    assert_eq!(resources, expected);
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
    // The tables as they were before the place columns, the key sets, and the resource rows'
    // scope and tags: every statement with them cut out.
    let is_place = |line: &str| {
        line.contains("`attribute_keys_id`")
            || ["_0`", "_1`"]
                .iter()
                .any(|suffix| line.contains(suffix) && !line.contains("`ip_"))
    };
    let is_shared_text = |line: &str| {
        schema::SCOPE_COLUMNS
            .iter()
            .chain(&schema::TAG_COLUMNS)
            .any(|name| line.contains(&format!("`{name}`")))
    };
    for statement in layout.create_statements(flavor, 72) {
        let resources = statement.contains("`l7_resource`");
        let older: Vec<&str> = statement
            .lines()
            .filter(|line| !(is_place(line) || resources && is_shared_text(line)))
            .collect();
        let older = older.join("\n").replace(",\n)", "\n)");
        client.query(&older).execute().await.unwrap();
    }
    // A resource row of then: its attributes alone.
    client
        .query(
            "INSERT INTO older.l7_resource (time, resource_id, resource_attribute_names, \
             resource_attribute_values, resource_attribute_types) \
             VALUES (now(), 77, ['service.name'], ['legacy'], [0])",
        )
        .execute()
        .await
        .unwrap();
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
    let resource_columns: Vec<String> = client
        .query("SELECT name FROM system.columns WHERE database = 'older' AND table = 'l7_resource'")
        .fetch_all()
        .await
        .unwrap();
    let expected: Vec<String> = schema::resource_columns()
        .iter()
        .map(|(name, ..)| name.to_string())
        .collect();
    assert_eq!(
        resource_columns, expected,
        "every resource column, in order"
    );
    let n_old: u64 = client
        .query("SELECT count() FROM older.l7_flow_log WHERE pod_0 = ''")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(n_old, 1, "the older row reads with empty places");

    // A column this version does not know, as a newer spanflow sharing the database would
    // add: this one's inserts name their columns and leave it to its default.
    for table in ["l7_flow_log", "l7_resource", "l7_trace_index"] {
        client
            .query(&format!(
                "ALTER TABLE older.{table} ADD COLUMN newer_column String"
            ))
            .execute()
            .await
            .unwrap();
    }
    let row = conformance::full_row();
    store.write(vec![row.clone()]).await.unwrap();
    let trace = store.trace(row.trace_id).await.unwrap();
    assert_eq!(trace.len(), 1);
    assert_eq!(trace[0].place_0, row.place_0);
    assert_eq!(trace[0].place_1, row.place_1);
    assert_eq!(trace[0].attributes, row.attributes);
    assert_eq!(trace[0].resource, row.resource);
    assert_eq!(trace[0].scope_name, row.scope_name);

    // A span row of the version before this one: its own scope and tags, beside keys of a
    // resource and a key set whose rows have neither.
    client
        .query(
            "INSERT INTO older.l7_resource (time, resource_id, resource_attribute_names, \
             resource_attribute_values, resource_attribute_types) \
             VALUES (now(), 78, ['http.request.method'], [''], [0])",
        )
        .execute()
        .await
        .unwrap();
    client
        .query(
            "INSERT INTO older.l7_flow_log (time, start_time, trace_id, span_id, \
             observation_point, app_service, endpoint, scope_name, k8s_pod_name, \
             attribute_values, resource_id, attribute_keys_id) \
             VALUES (now(), toUInt64(now()) * 1000000, 'fedcba9876543210', '76543210', 'app', \
             'legacy', 'GET /', 'old-lib', 'old-pod', ['GET'], 77, 78)",
        )
        .execute()
        .await
        .unwrap();
    let found = store
        .search(&spanflow_store::SpanQuery {
            service: Some("legacy".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].scope_name, "old-lib");
    assert_eq!(found[0].resource.k8s_pod_name, "old-pod");
    assert_eq!(
        found[0]
            .resource_attribute("service.name")
            .unwrap()
            .to_text(),
        Some("legacy".into())
    );
    assert_eq!(
        found[0].attribute("http.request.method").unwrap().to_text(),
        Some("GET".into())
    );
    // SQL naming the shared columns: each row's, wherever it keeps them.
    let answer = store
        .sql(
            "SELECT app_service, scope_name, k8s_pod_name, resource_attribute_values \
             FROM l7_flow_log WHERE app_service IN ('legacy', 'checkout') ORDER BY app_service",
            &spanflow_store::sql::SqlLimits::default(),
        )
        .await
        .unwrap();
    assert_eq!(answer.values.len(), 2, "{:?}", answer.values);
    assert_eq!(
        answer.values[0][..3],
        [
            serde_json::json!(row.app_service),
            serde_json::json!(row.scope_name),
            serde_json::json!(row.resource.k8s_pod_name)
        ]
    );
    assert_eq!(
        answer.values[1][..3],
        [
            serde_json::json!("legacy"),
            serde_json::json!("old-lib"),
            serde_json::json!("old-pod")
        ]
    );
    assert_eq!(answer.values[1][3], serde_json::json!(["legacy"]));
}
