//! The embedded store against the conformance suite, and what only a durable store must do:
//! keep everything across restarts, compact without losing or duplicating, drop whole
//! partitions by age and by disk use, and answer SQL.

use std::time::Duration;

use arrow::array::{Array, Int64Array, StringArray};
use spanflow_model::SpanRow;
use spanflow_store::conformance::{self, row, trace_id};
use spanflow_store::{SpanQuery, SpanStore};
use spanflow_store_embedded::{EmbeddedConfig, EmbeddedStore};

fn config(dir: &std::path::Path) -> EmbeddedConfig {
    EmbeddedConfig {
        // Upkeep runs only when a test asks for it.
        upkeep_interval: Duration::from_secs(3600),
        flush_interval: Duration::from_secs(3600),
        ..EmbeddedConfig::new(dir)
    }
}

const HOUR_US: i64 = 3_600_000_000;

/// Now, rounded down to the hour, in µs: recent enough that retention keeps it.
fn this_hour_us() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    now - now % HOUR_US
}

#[tokio::test]
async fn conformance_suite_on_the_buffer() {
    let dirs: std::sync::Mutex<Vec<tempfile::TempDir>> = Default::default();
    conformance::run_all(|| async {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(config(dir.path())).await.unwrap();
        dirs.lock().unwrap().push(dir);
        store
    })
    .await;
}

/// A store whose every write is flushed to Parquet at once, so the suite reads from files.
struct FlushingStore(EmbeddedStore);

#[async_trait::async_trait]
impl SpanStore for FlushingStore {
    async fn write(&self, rows: Vec<SpanRow>) -> Result<(), spanflow_store::StoreError> {
        self.0.write(rows).await?;
        self.0.flush().await.map_err(Into::into)
    }
    async fn trace(
        &self,
        id: spanflow_model::TraceId,
    ) -> Result<Vec<SpanRow>, spanflow_store::StoreError> {
        self.0.trace(id).await
    }
    async fn search(&self, query: &SpanQuery) -> Result<Vec<SpanRow>, spanflow_store::StoreError> {
        self.0.search(query).await
    }
    async fn services(
        &self,
        range: spanflow_store::TimeRange,
    ) -> Result<Vec<String>, spanflow_store::StoreError> {
        self.0.services(range).await
    }
    async fn operations(
        &self,
        service: &str,
        range: spanflow_store::TimeRange,
    ) -> Result<Vec<spanflow_store::Operation>, spanflow_store::StoreError> {
        self.0.operations(service, range).await
    }
    async fn service_map(
        &self,
        range: spanflow_store::TimeRange,
        by: spanflow_store::analytics::MapBy,
    ) -> Result<Vec<spanflow_store::analytics::Edge>, spanflow_store::StoreError> {
        self.0.service_map(range, by).await
    }
    async fn red(
        &self,
        query: &spanflow_store::analytics::RedQuery,
    ) -> Result<Vec<spanflow_store::analytics::RedPoint>, spanflow_store::StoreError> {
        self.0.red(query).await
    }
    fn backend(&self) -> &'static str {
        "embedded (flushed)"
    }
}

#[tokio::test]
async fn conformance_suite_on_parquet_files() {
    let dirs: std::sync::Mutex<Vec<tempfile::TempDir>> = Default::default();
    conformance::run_all(|| async {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(config(dir.path())).await.unwrap();
        dirs.lock().unwrap().push(dir);
        FlushingStore(store)
    })
    .await;
}

#[tokio::test]
async fn durable_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    conformance::run_durable(dir.path(), |location| async move {
        EmbeddedStore::open(config(&location)).await.unwrap()
    })
    .await;
}

#[tokio::test]
async fn everything_written_is_there_after_a_restart_flushed_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let base = this_hour_us();
    {
        let store = EmbeddedStore::open(config(dir.path())).await.unwrap();
        store
            .write(vec![
                row(1, 1, "a", "flushed", base),
                row(1, 2, "a", "flushed too", base + 5),
            ])
            .await
            .unwrap();
        store.flush().await.unwrap();
        store
            .write(vec![row(1, 3, "a", "only in the wal", base + 10)])
            .await
            .unwrap();
        // Dropped without a flush or close, as a crash would leave it.
    }
    let store = EmbeddedStore::open(config(dir.path())).await.unwrap();
    let names: Vec<String> = store
        .trace(trace_id(1))
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.endpoint)
        .collect();
    assert_eq!(names, ["flushed", "flushed too", "only in the wal"]);
    assert_eq!(
        store.n_buffered_rows(),
        1,
        "only the unflushed row is replayed"
    );
    store.flush().await.unwrap();
    drop(store);
    let store = EmbeddedStore::open(config(dir.path())).await.unwrap();
    assert_eq!(
        store.n_buffered_rows(),
        0,
        "a flushed WAL entry is not replayed again"
    );
    assert_eq!(store.trace(trace_id(1)).await.unwrap().len(), 3);
    let total: u64 = store.files().iter().map(|file| file.n_rows).sum();
    assert_eq!(total, 3, "no row is in the files twice");
}

#[tokio::test]
async fn compaction_merges_files_without_losing_or_duplicating_spans() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(EmbeddedConfig {
        compaction_min_files: 3,
        ..config(dir.path())
    })
    .await
    .unwrap();
    let base = this_hour_us();
    for n in 0..4u8 {
        store
            .write(vec![
                row(n, 1, "svc", "op", base + i64::from(n)),
                row(n, 2, "svc", "op", base + i64::from(n)),
            ])
            .await
            .unwrap();
        store.flush().await.unwrap();
    }
    // The same span again (a resend), in its own file.
    store
        .write(vec![row(0, 1, "svc", "op", base)])
        .await
        .unwrap();
    store.flush().await.unwrap();
    assert_eq!(store.files().len(), 5);
    store.upkeep_now().await.unwrap();
    let files = store.files();
    assert_eq!(files.len(), 1, "one partition, compacted into one file");
    assert_eq!(
        files[0].n_rows, 8,
        "4 traces of 2 spans, the resent span once"
    );
    for n in 0..4u8 {
        assert_eq!(store.trace(trace_id(n)).await.unwrap().len(), 2);
    }
    let parquet_files = walk(dir.path())
        .into_iter()
        .filter(|path| path.ends_with(".parquet"))
        .count();
    assert_eq!(parquet_files, 1, "the merged files are gone from disk");
}

#[tokio::test]
async fn compaction_leaves_large_files_alone_and_caps_what_it_merges() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(EmbeddedConfig {
        compaction_min_files: 2,
        compaction_max_rows: 5,
        ..config(dir.path())
    })
    .await
    .unwrap();
    let base = this_hour_us();
    // One file already at the cap, then four files of two rows.
    store
        .write(
            (0..5u8)
                .map(|n| row(100 + n, 1, "svc", "big", base))
                .collect(),
        )
        .await
        .unwrap();
    store.flush().await.unwrap();
    for n in 0..4u8 {
        store
            .write(vec![
                row(n, 1, "svc", "op", base),
                row(n, 2, "svc", "op", base),
            ])
            .await
            .unwrap();
        store.flush().await.unwrap();
    }
    store.upkeep_now().await.unwrap();
    let mut sizes: Vec<u64> = store.files().iter().map(|file| file.n_rows).collect();
    sizes.sort();
    // The full file stays; the small ones merge two at a time (2 + 2 <= 5 < 2 + 2 + 2).
    assert_eq!(sizes, [2, 2, 4, 5]);
    let total: u64 = sizes.iter().sum();
    assert_eq!(total, 13);
}

#[tokio::test]
async fn a_full_buffer_refuses_writes_as_retryable_until_it_is_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(EmbeddedConfig {
        max_buffered_rows: 3,
        write_wait: Duration::ZERO,
        ..config(dir.path())
    })
    .await
    .unwrap();
    let base = this_hour_us();
    store
        .write((1..=3u8).map(|n| row(n, 1, "svc", "op", base)).collect())
        .await
        .unwrap();
    let error = store
        .write(vec![row(4, 1, "svc", "op", base)])
        .await
        .unwrap_err();
    assert_eq!(error.kind, spanflow_store::ErrorKind::Retryable, "{error}");
    assert!(error.message.contains("retry later"), "{error}");
    // The refusal asked the flusher to run; once it has, writes go through again.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.n_buffered_rows() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the full buffer was never flushed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store
        .write(vec![row(4, 1, "svc", "op", base)])
        .await
        .unwrap();
    assert_eq!(store.trace(trace_id(4)).await.unwrap().len(), 1);
    assert_eq!(store.trace(trace_id(1)).await.unwrap().len(), 1);
}

#[tokio::test]
async fn retention_drops_whole_old_partitions_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(EmbeddedConfig {
        retention: Duration::from_secs(72 * 3600),
        ..config(dir.path())
    })
    .await
    .unwrap();
    let now = this_hour_us();
    store
        .write(vec![
            row(1, 1, "svc", "four days old", now - 96 * HOUR_US),
            row(
                2,
                1,
                "svc",
                "three days and an hour old",
                now - 73 * HOUR_US,
            ),
            row(3, 1, "svc", "two days old", now - 48 * HOUR_US),
            row(4, 1, "svc", "new", now),
        ])
        .await
        .unwrap();
    store.flush().await.unwrap();
    assert_eq!(store.files().len(), 4, "one file per hourly partition");
    store.upkeep_now().await.unwrap();
    let kept: Vec<i64> = store
        .files()
        .iter()
        .map(|file| file.n_rows as i64)
        .collect();
    assert_eq!(kept.len(), 2);
    assert!(store.trace(trace_id(1)).await.unwrap().is_empty());
    assert!(store.trace(trace_id(2)).await.unwrap().is_empty());
    assert_eq!(store.trace(trace_id(3)).await.unwrap().len(), 1);
    assert_eq!(store.trace(trace_id(4)).await.unwrap().len(), 1);
    let parquet_files = walk(dir.path())
        .into_iter()
        .filter(|path| path.ends_with(".parquet"))
        .count();
    assert_eq!(parquet_files, 2, "dropped partitions are gone from disk");
}

#[tokio::test]
async fn the_disk_limit_drops_the_oldest_partitions_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(config(dir.path())).await.unwrap();
    let now = this_hour_us();
    for hours_ago in [3i64, 2, 1, 0] {
        let rows: Vec<SpanRow> = (0..50u8)
            .map(|n| row(n, hours_ago as u8, "svc", "op", now - hours_ago * HOUR_US))
            .collect();
        store.write(rows).await.unwrap();
        store.flush().await.unwrap();
    }
    let sizes: Vec<u64> = store.files().iter().map(|file| file.n_bytes).collect();
    let newest_two: u64 = sizes[2] + sizes[3];
    drop(store);
    let store = EmbeddedStore::open(EmbeddedConfig {
        max_disk_bytes: Some(newest_two + 100),
        ..config(dir.path())
    })
    .await
    .unwrap();
    store.upkeep_now().await.unwrap();
    let partitions: Vec<i64> = store.files().iter().map(|file| file.partition).collect();
    assert_eq!(
        partitions,
        [(now - HOUR_US) / 1_000_000, now / 1_000_000],
        "the two newest partitions remain"
    );
}

#[tokio::test]
async fn sql_over_l7_flow_log_sees_files_and_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(config(dir.path())).await.unwrap();
    let base = this_hour_us();
    let mut slow = row(1, 1, "checkout", "GET /orders", base);
    slow.response_duration = 900_000;
    store
        .write(vec![slow, row(1, 2, "checkout", "SELECT", base + 1)])
        .await
        .unwrap();
    store.flush().await.unwrap();
    store
        .write(vec![row(2, 1, "payments", "charge", base + 2)])
        .await
        .unwrap();

    let batches = store
        .sql("SELECT app_service, count(*) AS n FROM l7_flow_log GROUP BY app_service ORDER BY app_service")
        .await
        .unwrap();
    let batch = &batches[0];
    let services = batch
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    let counts = batch
        .column(1)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    assert_eq!((services.value(0), counts.value(0)), ("checkout", 2));
    assert_eq!((services.value(1), counts.value(1)), ("payments", 1));

    let batches = store
        .sql(&format!(
            "SELECT endpoint FROM l7_flow_log WHERE trace_id = '{}' AND response_duration > 500000",
            trace_id(1)
        ))
        .await
        .unwrap();
    let endpoints = batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints.value(0), "GET /orders");

    let mut slow_attribute = row(3, 1, "checkout", "with attribute", base + 3);
    slow_attribute.attributes = vec![spanflow_model::Attribute::new(
        "http.route",
        spanflow_model::AttrValue::String("/orders/{id}".into()),
    )];
    store.write(vec![slow_attribute]).await.unwrap();
    let batches = store
        .sql("SELECT endpoint FROM l7_flow_log WHERE attribute_values[array_position(attribute_names, 'http.route')] = '/orders/{id}'")
        .await
        .unwrap();
    let endpoints = batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!((endpoints.len(), endpoints.value(0)), (1, "with attribute"));

    for statement in [
        "DROP TABLE l7_flow_log",
        "INSERT INTO l7_flow_log SELECT * FROM l7_flow_log",
        "CREATE TABLE x AS SELECT 1",
    ] {
        let error = store.sql(statement).await.unwrap_err();
        let error: spanflow_store::StoreError = error.into();
        assert_eq!(
            error.kind,
            spanflow_store::ErrorKind::BadRequest,
            "{statement}: {error}"
        );
    }
}

#[tokio::test]
async fn a_query_over_its_memory_budget_fails_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(EmbeddedConfig {
        query_memory_bytes: 64 * 1024,
        ..config(dir.path())
    })
    .await
    .unwrap();
    let base = this_hour_us();
    let rows: Vec<SpanRow> = (0..20_000u32)
        .map(|n| {
            let mut row = row(
                (n % 250) as u8,
                (n % 200) as u8,
                "svc",
                &format!("operation {n}"),
                base + i64::from(n),
            );
            row.trace_id.0[1..5].copy_from_slice(&n.to_be_bytes());
            row
        })
        .collect();
    store.write(rows).await.unwrap();
    store.flush().await.unwrap();
    let error = store
        .sql("SELECT endpoint, count(*) FROM l7_flow_log GROUP BY endpoint ORDER BY endpoint")
        .await
        .unwrap_err();
    let error: spanflow_store::StoreError = error.into();
    assert!(error.message.contains("more memory"), "{error}");
    assert_eq!(error.kind, spanflow_store::ErrorKind::BadRequest);
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path.display().to_string());
        }
    }
    found
}

#[tokio::test]
async fn a_store_of_an_older_format_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(config(dir.path())).await.unwrap();
    store
        .write(vec![row(1, 1, "a", "GET /", this_hour_us())])
        .await
        .unwrap();
    store.close().await.unwrap();
    let path = dir.path().join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(manifest["format"], 9);
    manifest.as_object_mut().unwrap().remove("format");
    std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();

    let error = match EmbeddedStore::open(config(dir.path())).await {
        Ok(_) => panic!("a format-1 store opened"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("storage format 1"), "{error}");
    assert!(error.contains("Move the directory aside"), "{error}");
}

/// Rewrites every file of `dir` as `format` (4 to 8) wrote them and marks the manifest so:
/// format 4's files hold the row schema as it is (attribute lists, empty text as `''`, never
/// null) and its entries no format; format 6's pack the resource attributes only.
fn rewrite_as_format(dir: &std::path::Path, format: u32) {
    use spanflow_store_embedded::schema;
    for path in walk(dir) {
        if !path.ends_with(".parquet") {
            continue;
        }
        let file = std::fs::File::open(&path).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<_> = reader
            .map(|batch| {
                let rows = schema::from_file(&batch.unwrap()).unwrap();
                match format {
                    4 => rows,
                    _ => schema::to_file_of(&rows, format).unwrap(),
                }
            })
            .collect();
        let file_schema = match format {
            4 => schema::schema(),
            _ => schema::file_schema_of(format),
        };
        let mut writer = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&path).unwrap(),
            file_schema,
            None,
        )
        .unwrap();
        for batch in &batches {
            writer.write(batch).unwrap();
        }
        writer.close().unwrap();
    }
    let path = dir.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    manifest["format"] = format.into();
    for file in manifest["files"].as_array_mut().unwrap() {
        match format {
            // Entries did not record their file's format then.
            4 => drop(file.as_object_mut().unwrap().remove("format")),
            _ => file["format"] = format.into(),
        }
    }
    std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
}

/// The one number a `SELECT count(*) ...` answers.
async fn count(store: &EmbeddedStore, sql: &str) -> i64 {
    let batches = store.sql(sql).await.unwrap();
    batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0)
}

#[tokio::test]
async fn a_store_of_format_4_reads_as_before_and_takes_new_rows() {
    an_older_store_reads_as_before_and_takes_new_rows(4).await;
}

#[tokio::test]
async fn a_store_of_format_6_reads_as_before_and_takes_new_rows() {
    an_older_store_reads_as_before_and_takes_new_rows(6).await;
}

#[tokio::test]
async fn a_store_of_format_7_reads_as_before_and_takes_new_rows() {
    an_older_store_reads_as_before_and_takes_new_rows(7).await;
}

#[tokio::test]
async fn a_store_of_format_8_reads_as_before_and_takes_new_rows() {
    an_older_store_reads_as_before_and_takes_new_rows(8).await;
}

async fn an_older_store_reads_as_before_and_takes_new_rows(format: u32) {
    let dir = tempfile::tempdir().unwrap();
    let base = this_hour_us();
    let mut full = conformance::full_row();
    full.start_time = base;
    full.end_time = base + 1_000;
    full.time = base / 1_000_000;
    let plain = row(2, 1, "checkout", "GET /orders", base + 1);
    let store = EmbeddedStore::open(config(dir.path())).await.unwrap();
    store
        .write(vec![full.clone(), plain.clone()])
        .await
        .unwrap();
    store.close().await.unwrap();
    rewrite_as_format(dir.path(), format);

    let store = EmbeddedStore::open(config(dir.path())).await.unwrap();
    assert_eq!(
        store.trace(full.trace_id).await.unwrap(),
        vec![full.clone()]
    );
    assert_eq!(
        store.trace(plain.trace_id).await.unwrap(),
        vec![plain.clone()]
    );
    let later = row(3, 1, "checkout", "GET /orders", base + 2);
    store.write(vec![later.clone()]).await.unwrap();
    store.flush().await.unwrap();
    assert_eq!(
        store.trace(later.trace_id).await.unwrap(),
        vec![later.clone()]
    );
    // Empty text reads as '' from either format's files.
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM l7_flow_log WHERE status_message = '' AND pod_1 = ''"
        )
        .await,
        2,
        "the two spans without a status message or peer pod"
    );
    // Attributes are found by SQL in files of either kind: the older format's and key sets.
    let mut packed = row(4, 1, "checkout", "GET /orders", base + 3);
    packed.attributes = full.attributes.clone();
    packed.resource_attributes = full.resource_attributes.clone();
    store.write(vec![packed.clone()]).await.unwrap();
    store.flush().await.unwrap();
    assert_eq!(
        store.trace(packed.trace_id).await.unwrap(),
        vec![packed.clone()]
    );
    let by_attributes = "SELECT count(*) FROM l7_flow_log \
         WHERE attribute_values[array_position(attribute_names, 'rows')] = '-3' \
         AND resource_attribute_values[array_position(resource_attribute_names, 'app.host.ip')] = '10.1.2.3' \
         AND attribute_types[array_position(attribute_names, 'rows')] = 2";
    assert_eq!(
        count(&store, by_attributes).await,
        2,
        "the full span in an older file and its copy in a new one"
    );
    // Zeros read as zeros from either format's files, where this version's hold them as null.
    let zeros = "SELECT count(*) FROM l7_flow_log WHERE client_port = 0 AND NOT is_tls \
         AND dropped_links_count = 0 AND CAST(end_time AS BIGINT) = CAST(start_time AS BIGINT) + CAST(response_duration AS BIGINT)";
    assert_eq!(count(&store, zeros).await, 3, "every span but the full one");
    // One-byte codes, which this version's files hold packed into one number, read apart.
    let by_codes = format!(
        "SELECT count(*) FROM l7_flow_log WHERE span_kind = {} AND l7_protocol = {} \
         AND protocol = {} AND status_code = {} AND auto_instance_type_0 = {} \
         AND auto_service_type_0 = {} AND auto_instance_type_1 = {} AND auto_service_type_1 = {}",
        full.span_kind as u8,
        full.l7_protocol as u8,
        full.protocol,
        full.status_code,
        full.place_0.auto_instance_type as u8,
        full.place_0.auto_service_type as u8,
        full.place_1.auto_instance_type as u8,
        full.place_1.auto_service_type as u8,
    );
    assert_eq!(count(&store, &by_codes).await, 1, "the full span");
    // Places, which this version's files hold packed a value an end, read text by text.
    let by_places = format!(
        "SELECT count(*) FROM l7_flow_log WHERE pod_0 = '{}' AND az_0 = '{}' \
         AND labels_0 = '{}' AND pod_1 = '' AND pod_ns_1 = '{}' AND auto_service_1 = '{}'",
        full.place_0.pod,
        full.place_0.az,
        full.place_0.labels_json(),
        full.place_1.pod_ns,
        full.place_1.auto_service,
    );
    assert_eq!(count(&store, &by_places).await, 1, "the full span");
    let no_place = "SELECT count(*) FROM l7_flow_log WHERE pod_0 = '' AND region_0 = '' \
         AND labels_0 = '' AND host_1 = ''";
    assert_eq!(
        count(&store, no_place).await,
        3,
        "every span but the full one"
    );
    store.close().await.unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["format"], 9,
        "stored as this version's format once written"
    );
    let formats: Vec<u64> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|file| file["format"].as_u64().unwrap_or(5))
        .collect();
    let old = if format == 4 { 5 } else { format as u64 };
    assert!(
        formats.contains(&old) && formats.contains(&9),
        "old files kept as they were beside new ones: {formats:?}"
    );

    // Compaction merges files of both formats into one of this version's, every field kept.
    let store = EmbeddedStore::open(EmbeddedConfig {
        compaction_min_files: 2,
        ..config(dir.path())
    })
    .await
    .unwrap();
    store.upkeep_now().await.unwrap();
    let files = store.files();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].format, 9);
    for span in [full, plain, later, packed] {
        assert_eq!(store.trace(span.trace_id).await.unwrap(), vec![span]);
    }
    assert_eq!(count(&store, by_attributes).await, 2);
    assert_eq!(count(&store, &by_codes).await, 1);
    assert_eq!(count(&store, &by_places).await, 1);
    assert_eq!(count(&store, no_place).await, 3);
    assert_eq!(count(&store, zeros).await, 3);
}

#[tokio::test]
async fn a_search_over_many_files_finds_what_a_full_scan_finds() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(config(dir.path())).await.unwrap();
    let reference = spanflow_store::MemoryStore::new(1 << 20);
    let base = this_hour_us();
    // Ten files whose time ranges overlap, and rows in the buffer, some of them newer than
    // every file and some older.
    for file in 0..11u8 {
        let rows: Vec<SpanRow> = (0..20u8)
            .map(|n| {
                let start = base + i64::from((n as u32 * 37 + file as u32 * 101) % 500) * 1_000;
                let mut span = row(
                    file * 20 + n + 1,
                    1,
                    ["a", "b"][n as usize % 2],
                    "GET /",
                    start,
                );
                span.response_duration = u64::from(n) * 100;
                span
            })
            .collect();
        store.write(rows.clone()).await.unwrap();
        reference.write(rows).await.unwrap();
        if file < 10 {
            store.flush().await.unwrap();
        }
    }
    assert!(store.files().len() >= 10);
    assert!(store.n_buffered_rows() > 0);
    let queries = [
        SpanQuery {
            limit: 7,
            ..SpanQuery::default()
        },
        SpanQuery {
            service: Some("b".into()),
            limit: 13,
            ..SpanQuery::default()
        },
        SpanQuery {
            min_duration_us: Some(1_500),
            limit: 30,
            ..SpanQuery::default()
        },
        SpanQuery {
            limit: 1000,
            ..SpanQuery::default()
        },
    ];
    for query in queries {
        let key = |rows: Vec<SpanRow>| -> Vec<(i64, u8)> {
            rows.iter()
                .map(|row| (row.start_time, row.trace_id.0[15]))
                .collect()
        };
        let expected = key(reference.search(&query).await.unwrap());
        assert_eq!(
            key(store.search(&query).await.unwrap()),
            expected,
            "{query:?}"
        );
        assert!(!expected.is_empty());
    }
}

#[tokio::test]
async fn sql_shows_each_span_end_as_written_even_when_it_is_not_start_plus_duration() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(config(dir.path())).await.unwrap();
    let base = this_hour_us();
    let plain = row(1, 1, "checkout", "GET /orders", base);
    // A span whose end lies before its start: the duration says 0, the end says otherwise.
    let mut reversed = row(1, 2, "checkout", "SELECT", base + 10);
    reversed.response_duration = 0;
    reversed.end_time = base - 5_000;
    // A span still open when it was sent: no end at all.
    let mut open = row(1, 3, "checkout", "publish", base + 20);
    open.response_duration = 0;
    open.end_time = 0;
    store
        .write(vec![plain.clone(), reversed.clone()])
        .await
        .unwrap();
    store.flush().await.unwrap();
    store.write(vec![open.clone()]).await.unwrap();

    let batches = store
        .sql("SELECT CAST(end_time AS BIGINT) AS end_us FROM l7_flow_log ORDER BY start_time")
        .await
        .unwrap();
    let ends: Vec<i64> = batches
        .iter()
        .flat_map(|batch| {
            let column = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            column.values().to_vec()
        })
        .collect();
    assert_eq!(ends, vec![plain.end_time, reversed.end_time, 0]);

    let batches = store
        .sql("SELECT * FROM l7_flow_log LIMIT 1")
        .await
        .unwrap();
    let schema = batches[0].schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(&names[..4], ["time", "start_time", "end_time", "trace_id"]);
    assert!(!names.contains(&"end_time_offset"));

    let mut rows = store.trace(trace_id(1)).await.unwrap();
    rows.sort_by_key(|row| row.span_id);
    assert_eq!(rows, vec![plain, reversed, open]);
}

#[tokio::test]
async fn sql_answers_attribute_lists_as_json_arrays_from_files_and_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(config(dir.path())).await.unwrap();
    let base = this_hour_us();
    let mut full = conformance::full_row();
    full.start_time = base;
    full.end_time = base + 1_000;
    full.time = base / 1_000_000;
    store.write(vec![full.clone()]).await.unwrap();
    store.flush().await.unwrap();
    let mut bare = row(2, 1, "checkout", "GET /orders", base + 1);
    bare.attributes.clear();
    store.write(vec![bare]).await.unwrap();

    let result = SpanStore::sql(
        &store,
        "SELECT attribute_names, attribute_types, resource_attribute_values FROM l7_flow_log \
         ORDER BY start_time",
        &spanflow_store::sql::SqlLimits::default(),
    )
    .await
    .unwrap();
    assert_eq!(result.values.len(), 2);
    let names: Vec<serde_json::Value> = full
        .attributes
        .iter()
        .map(|attribute| attribute.key.clone().into())
        .collect();
    let types: Vec<serde_json::Value> = full
        .attributes
        .iter()
        .map(|attribute| spanflow_store::text::value_code(&attribute.value).into())
        .collect();
    // From the file: the span's lists as arrays, of text and of numbers.
    assert_eq!(result.values[0][0], serde_json::Value::Array(names));
    assert_eq!(result.values[0][1], serde_json::Value::Array(types));
    assert!(
        result.values[0][2]
            .as_array()
            .is_some_and(|values| values.contains(&"10.1.2.3".into())),
        "{}",
        result.values[0][2]
    );
    // From the buffer: a span without attributes has empty arrays.
    assert_eq!(result.values[1][0], serde_json::json!([]));
    assert_eq!(result.values[1][1], serde_json::json!([]));
}
