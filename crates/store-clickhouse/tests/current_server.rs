//! The schema for current servers (20.3 and later) on a current ClickHouse engine: chDB, run by
//! `tests/python/run_on_chdb.py`. The tables are created from the DDL spanflow sends, filled
//! with the `RowBinary` bytes spanflow sends, and asked the queries spanflow asks.
//!
//! The interpreter comes from `scripts/setup-python` (run by `scripts/test`), through
//! `SPANFLOW_PY_CHDB`, or from the repository's `.venv/chdb` when that is unset.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use spanflow_model::{AttrValue, Attribute, ResponseStatus, SpanRow};
use spanflow_store::analytics::{MapBy, RedQuery};
use spanflow_store::conformance::{full_row, row};
use spanflow_store::TimeRange;
use spanflow_store::{AttributeFilter, SpanQuery};
use spanflow_store_clickhouse::read::{self, Hit, Placement, SearchSql};
use spanflow_store_clickhouse::rowbinary::WriteBuilder;
use spanflow_store_clickhouse::schema::{
    resource_columns, shared_join, Flavor, Layout, COLUMNS, INDEX_COLUMNS,
};

fn repository_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `statements` on chDB and returns each one's TabSeparated answer.
fn run_on_chdb(statements: &[String]) -> Vec<String> {
    let python = std::env::var_os("SPANFLOW_PY_CHDB")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository_root().join(".venv/chdb/bin/python"));
    assert!(
        python.exists(),
        "{} not found (SPANFLOW_PY_CHDB unset or wrong): run scripts/test, which installs chDB, \
         or scripts/setup-python",
        python.display()
    );
    let mut child = Command::new(python)
        .arg(repository_root().join("tests/python/run_on_chdb.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&serde_json::to_vec(statements).unwrap())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "chDB failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The query text spanflow sends, with its bound values in place and `?fields` spelled out.
fn sql(query: clickhouse::query::Query) -> String {
    let columns: Vec<String> = COLUMNS
        .iter()
        .map(|(name, ..)| format!("`{name}`"))
        .collect();
    query
        .sql_display()
        .to_string()
        .replace("?fields", &columns.join(", "))
}

/// The rows a query returns, as `trace_id:span_id` in hex, one per line.
fn keys_of(query: &str) -> String {
    format!("SELECT concat(lower(hex(trace_id)), ':', lower(hex(span_id))) FROM ({query})")
}

fn key(row: &SpanRow) -> String {
    format!("{}:{}", row.trace_id.to_hex(), row.span_id.to_hex())
}

/// What a search must return, by the reference semantics of `SpanQuery::matches`.
fn expected(rows: &[SpanRow], query: &SpanQuery) -> String {
    let mut matching: Vec<&SpanRow> = rows.iter().filter(|row| query.matches(row)).collect();
    matching.sort_by_key(|row| std::cmp::Reverse(row.start_time));
    matching
        .iter()
        .take(query.limit)
        .map(|row| key(row) + "\n")
        .collect()
}

#[test]
fn the_current_schema_takes_spanflow_rows_and_answers_its_queries() {
    let dir = tempfile::tempdir().unwrap();
    let full = full_row();
    let mut slow = row(1, 1, "checkout", "GET /orders", 1_700_000_010_000_000);
    slow.response_duration = 900_000;
    slow.response_status = ResponseStatus::ServerError;
    slow.attributes = vec![Attribute::new(
        "http.response.status_code",
        AttrValue::Int(500),
    )];
    let mut fast = row(1, 2, "checkout", "GET /cart", 1_700_000_020_000_000);
    fast.response_duration = 3_000;
    let other = row(2, 1, "payments", "charge", 1_700_000_030_000_000);
    let rows = vec![full.clone(), slow, fast, other];

    let mut write = WriteBuilder::new(rows.len());
    for row in &rows {
        write.append(row);
    }
    let write = write.finish();
    let resources_file = dir.path().join("resources.bin");
    std::fs::write(&resources_file, &write.resources.bytes).unwrap();
    // The index rows an insert sends: one of each, in the write's index bytes.
    let index: Vec<u8> = write
        .index_keys
        .iter()
        .flat_map(|key| key.row(&write.index))
        .copied()
        .collect();
    let spans_file = dir.path().join("spans.bin");
    let index_file = dir.path().join("index.bin");
    std::fs::write(&spans_file, &write.spans).unwrap();
    std::fs::write(&index_file, index).unwrap();

    let layout = Layout {
        database: "flow_log".into(),
        cluster: None,
    };
    // The rows are from 2023: a retention of 72 hours would drop them as they arrive.
    let mut statements = layout.create_statements(Flavor::Modern, 24 * 365 * 20);
    let n_ddl = statements.len();
    let structure: Vec<String> = COLUMNS
        .iter()
        .map(|(name, _, modern)| format!("{name} {}", modern.split(" CODEC").next().unwrap()))
        .collect();
    statements.push(format!(
        "INSERT INTO flow_log.l7_flow_log SELECT * FROM file('{}', 'RowBinary', '{}')",
        spans_file.display(),
        structure.join(", ")
    ));
    let index_structure: Vec<String> = INDEX_COLUMNS
        .iter()
        .map(|(name, _, modern)| format!("{name} {modern}"))
        .collect();
    statements.push(format!(
        "INSERT INTO flow_log.l7_trace_index SELECT * FROM file('{}', 'RowBinary', '{}')",
        index_file.display(),
        index_structure.join(", ")
    ));
    let resource_structure: Vec<String> = resource_columns()
        .iter()
        .map(|(name, _, modern)| format!("{name} {}", modern.split(" CODEC").next().unwrap()))
        .collect();
    statements.push(format!(
        "INSERT INTO flow_log.l7_resource SELECT * FROM file('{}', 'RowBinary', '{}')",
        resources_file.display(),
        resource_structure.join(", ")
    ));
    let client = clickhouse::Client::default();
    let index_table = "flow_log.l7_trace_index";
    let spans_table = "flow_log.l7_flow_log";
    let resource_table = "flow_log.l7_resource";

    // The full row, column by column where the encoding could slip: the first, the typed, the
    // nullable, the arrays and JSON, and the last; its resource's attributes and tags, and its
    // scope, through the joins that SQL naming them reads.
    statements.push(format!(
        "SELECT toUnixTimestamp(time), toUnixTimestamp64Micro(start_time), toUnixTimestamp64Micro(end_time), \
         lower(hex(parent_span_id)), observation_point, response_code, ip_1, k8s_pod_name, \
         scope_name, attribute_types, resource_attribute_values, links != '', dropped_links_count \
         FROM {} WHERE trace_id = unhex('{}')",
        shared_join(spans_table, resource_table, true, true),
        full.trace_id.to_hex()
    ));
    // The trace lookup: the index first, then the spans it places.
    statements.push(read::placements_sql(&full.trace_id, index_table));
    let placements = vec![Placement {
        app_service: full.app_service.clone(),
        endpoint: full.endpoint.clone(),
        time_min: full.time as u32,
        time_max: full.time as u32,
    }];
    let trace = read::trace_sql(&full.trace_id, &placements, spans_table);
    statements.push(keys_of(&sql(read::bind_placements(
        client.query(&trace),
        &placements,
    ))));
    let searches = [
        SpanQuery::default(),
        SpanQuery {
            service: Some("checkout".into()),
            ..SpanQuery::default()
        },
        SpanQuery {
            min_duration_us: Some(100_000),
            max_duration_us: Some(800_000),
            ..SpanQuery::default()
        },
        SpanQuery {
            start_time_min_us: Some(1_700_000_015_000_000),
            start_time_max_us: Some(1_700_000_025_000_000),
            ..SpanQuery::default()
        },
        SpanQuery {
            response_status: Some(ResponseStatus::ServerError),
            ..SpanQuery::default()
        },
        SpanQuery {
            attributes: vec![AttributeFilter {
                key: "http.response.status_code".into(),
                value: "500".into(),
            }],
            ..SpanQuery::default()
        },
        SpanQuery {
            attributes: vec![AttributeFilter {
                key: "app.host.ip".into(),
                value: "10.1.2.3".into(),
            }],
            ..SpanQuery::default()
        },
        SpanQuery {
            limit: 2,
            ..SpanQuery::default()
        },
    ];
    for search in &searches {
        let search = SearchSql::new(search, Flavor::Modern, spans_table, resource_table);
        statements.push(keys_of(&sql(search.bind(client.query(&search.exact)))));
    }
    // The second step of a search: the spans it found, whole.
    let hits: Vec<Hit> = rows
        .iter()
        .map(|row| Hit {
            trace_id: row.trace_id.0,
            span_id: row.span_id.0,
            app_service: row.app_service.clone(),
            endpoint: row.endpoint.clone(),
            time: row.time as u32,
        })
        .collect();
    let fetch = read::fetch_hits_sql(&hits, spans_table);
    statements.push(format!(
        "{} ORDER BY 1",
        keys_of(&sql(read::bind_hits(client.query(&fetch), &hits)))
    ));
    // The resources of the spans read: the full row's, by its key.
    // Beside the rows' key sets, one resource row: the only one with values.
    let resources_rows: Vec<_> = write
        .resources
        .keys
        .iter()
        .filter(|key| {
            write.resources.bytes[key.row.start as usize..key.row.end as usize]
                .windows(b"10.1.2.3".len())
                .any(|window| window == b"10.1.2.3")
        })
        .collect();
    assert_eq!(resources_rows.len(), 1, "the rows share one resource");
    let resource = resources_rows[0];
    statements.push(format!(
        "SELECT resource_id, resource_attribute_values FROM ({})",
        read::sets_sql(&[resource.id, 12345], resource_table)
    ));

    // The listings and the aggregates.
    let n_before_aggregates = statements.len();
    statements.push(read::services_sql(
        TimeRange::ALL,
        Flavor::Modern,
        spans_table,
    ));
    statements.push(sql(client
        .query(&read::operations_sql(
            TimeRange::new(Some(1_700_000_000_000_000), None),
            Flavor::Modern,
            spans_table,
        ))
        .bind("checkout")));
    for by in [MapBy::Service, MapBy::Workload] {
        statements.push(read::service_map_sql(
            TimeRange::new(Some(1_600_000_000_000_000), Some(1_800_000_000_000_000)),
            by,
            Flavor::Modern,
            spans_table,
        ));
    }
    statements.push(read::red_sql(
        &RedQuery {
            service: "checkout".into(),
            range: TimeRange::new(Some(1_700_000_000_000_000), None),
            step_us: 60_000_000,
            by_operation: false,
        },
        Flavor::Modern,
        spans_table,
    ));

    let answers = run_on_chdb(&statements);
    let aggregates = answers[n_before_aggregates..].to_vec();
    assert_eq!(aggregates[0], "checkout\npayments\n");
    assert_eq!(
        aggregates[1],
        "GET /cart\t2\nGET /orders\t2\nSELECT orders\t3\n"
    );
    // By service, the database is the system its caller names; by workload, the Kubernetes
    // service its address belongs to. The full row's client end is the workload `checkout`.
    for (map, callee) in aggregates[2..4]
        .iter()
        .zip([&full.l7_protocol_str, &full.place_1.auto_service])
    {
        assert_eq!(
            map,
            &format!(
                "{}\t{callee}\t1\t1\t{}\t[{d},{d},{d}]\n",
                full.place_0.auto_service,
                u8::from(spanflow_store::analytics::failed(&full)),
                d = full.response_duration
            )
        );
    }
    assert_eq!(full.app_service, full.place_0.auto_service);
    assert_eq!(full.place_1.auto_service, "orders-db");
    assert_eq!(
        aggregates[4],
        "1699999980000000\t\t2\t1\t[451500,855150,891030]\n"
    );
    let answers = &answers[n_ddl + 3..];
    assert_eq!(
        answers[0],
        "1700000001\t1700000000250000\t1700000001000000\tcd00000000000001\tc-app\t-1\tfd00::7\t\
         checkout-7d9f8-abcde\tsqlalchemy\t[0,2,3,1,4,5,6,7]\t['checkout','10.1.2.3']\t1\t5\n"
    );
    assert_eq!(
        answers[1],
        format!(
            "{}\t{}\t{}\t{}\n",
            full.app_service, full.endpoint, full.time, full.time
        )
    );
    assert_eq!(answers[2], key(&full) + "\n");
    for (search, answer) in searches.iter().zip(&answers[3..]) {
        assert_eq!(answer, &expected(&rows, search), "{search:?}");
    }
    let mut all: Vec<String> = rows.iter().map(|row| key(row) + "\n").collect();
    all.sort();
    assert_eq!(answers[3 + searches.len()], all.concat());
    assert_eq!(
        answers[4 + searches.len()],
        format!("{}\t['checkout','10.1.2.3']\n", resource.id)
    );
}
