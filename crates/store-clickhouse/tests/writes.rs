//! When writes go in, and writes while ClickHouse is away: they wait, then fail as retryable (so
//! agents keep their batches and send them again), and succeed once it is back.

use std::time::{Duration, Instant};

use spanflow_store::conformance::{row, trace_id};
use spanflow_store::{ErrorKind, SpanStore};
use spanflow_store_clickhouse::test_server::{TestServer, PASSWORD, USER};
use spanflow_store_clickhouse::{ClickHouseConfig, ClickHouseStore};

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// The start of the quarter hour a minute ago, in microseconds.
fn quarter_a_minute_ago() -> i64 {
    (now_us() / 1_000_000 - 60) / 900 * 900 * 1_000_000
}

/// A store on `server` whose inserts wait 10 ms for more writes, not a second.
async fn inserting_at_once(server: &TestServer) -> ClickHouseStore {
    ClickHouseStore::open(ClickHouseConfig {
        batch_wait: Duration::from_millis(10),
        ..ClickHouseConfig::new(server.url())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarter_of_an_insert_goes_in_once_no_write_follows_and_less_waits_out_the_wait() {
    let server = TestServer::start();
    let store = ClickHouseStore::open(ClickHouseConfig {
        batch_rows: 8,
        batch_wait: Duration::from_secs(3),
        ..ClickHouseConfig::new(server.url())
    })
    .await
    .unwrap();
    let now = now_us();
    // Two rows, a quarter of an insert, with no write after them: in without the wait.
    let started = Instant::now();
    store
        .write(vec![row(1, 1, "a", "x", now), row(1, 2, "a", "y", now)])
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(store.trace(trace_id(1)).await.unwrap().len(), 2);
    // One row waits for more until the oldest has waited `batch_wait`.
    let started = Instant::now();
    store.write(vec![row(2, 1, "a", "x", now)]).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert_eq!(store.trace(trace_id(2)).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_clickhouse_does_not_accept_in_time_fails_as_retryable_and_a_resend_lands_once() {
    let mut server = TestServer::start();
    let store = ClickHouseStore::open(ClickHouseConfig {
        batch_wait: Duration::from_millis(10),
        write_timeout: Duration::from_secs(2),
        max_backoff: Duration::from_millis(200),
        ..ClickHouseConfig::new(server.url())
    })
    .await
    .unwrap();
    let now = now_us();
    store.write(vec![row(1, 1, "a", "x", now)]).await.unwrap();

    server.kill();
    let started = Instant::now();
    let batch = vec![row(2, 1, "a", "x", now), row(2, 2, "a", "y", now)];
    let error = store.write(batch.clone()).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Retryable, "{error}");
    assert!(
        error
            .message
            .contains("has not accepted the spans within 2 s"),
        "{error}"
    );
    assert!(started.elapsed() >= Duration::from_secs(2));
    let error = store.trace(trace_id(1)).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Unavailable, "{error}");

    server.restart();
    // The sender sends the batch again, as an agent does after a 503.
    store.write(batch).await.unwrap();
    assert_eq!(store.trace(trace_id(2)).await.unwrap().len(), 2);
    assert_eq!(store.trace(trace_id(1)).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_refuses_writes_as_retryable_until_clickhouse_takes_them() {
    let mut server = TestServer::start();
    let store = ClickHouseStore::open(ClickHouseConfig {
        batch_wait: Duration::from_millis(10),
        // About one row's encoding: a second write finds no room while the first waits.
        max_buffered_bytes: 300,
        write_wait: Duration::from_millis(300),
        write_timeout: Duration::from_secs(30),
        max_backoff: Duration::from_millis(200),
        ..ClickHouseConfig::new(server.url())
    })
    .await
    .unwrap();
    let now = now_us();
    server.kill();
    let first = {
        let store = store.clone();
        tokio::spawn(async move { store.write(vec![row(1, 1, "a", "x", now)]).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let error = store
        .write(vec![row(2, 1, "a", "x", now)])
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Retryable, "{error}");
    assert!(
        error.message.contains("the most the store buffers"),
        "{error}"
    );

    server.restart();
    first.await.unwrap().unwrap();
    store.write(vec![row(2, 1, "a", "x", now)]).await.unwrap();
    assert_eq!(store.trace(trace_id(1)).await.unwrap().len(), 1);
    assert_eq!(store.trace(trace_id(2)).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_without_a_server_fails_with_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let error = ClickHouseStore::open(ClickHouseConfig {
        connect_timeout: Duration::from_millis(500),
        ..ClickHouseConfig::new(format!("http://127.0.0.1:{port}"))
    })
    .await
    .err()
    .expect("no server there");
    assert_eq!(error.kind, ErrorKind::Unavailable);
    assert!(
        error.message.contains(&format!(
            "ClickHouse at http://127.0.0.1:{port} did not answer"
        )),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_with_a_password_logs_in_and_a_wrong_password_is_a_clear_error() {
    let server = TestServer::start();
    let store = ClickHouseStore::open(ClickHouseConfig {
        user: Some(USER.into()),
        password: Some(PASSWORD.into()),
        batch_wait: Duration::from_millis(10),
        ..ClickHouseConfig::new(server.url())
    })
    .await
    .unwrap();
    store
        .write(vec![row(1, 1, "a", "x", now_us())])
        .await
        .unwrap();
    assert_eq!(store.trace(trace_id(1)).await.unwrap().len(), 1);

    let started = Instant::now();
    let error = ClickHouseStore::open(ClickHouseConfig {
        user: Some(USER.into()),
        password: Some("wrong".into()),
        ..ClickHouseConfig::new(server.url())
    })
    .await
    .err()
    .expect("a wrong password is refused");
    assert_eq!(error.kind, ErrorKind::Unavailable);
    assert!(
        error.message.contains("refused") && error.message.contains("password"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a refusal is not waited out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_is_stored_once_for_the_spans_of_many_writes_and_read_back_with_each() {
    use spanflow_model::{AttrValue, Attribute};
    let server = TestServer::start();
    let store = inserting_at_once(&server).await;
    // Every span below ends in this quarter hour.
    let quarter = quarter_a_minute_ago();
    let resource = |pod: &str| -> std::sync::Arc<[Attribute]> {
        vec![
            Attribute::new("service.name", AttrValue::String("checkout".into())),
            Attribute::new("k8s.pod.name", AttrValue::String(pod.into())),
        ]
        .into()
    };
    let tags = |pod: &str| {
        std::sync::Arc::new(spanflow_model::ResourceTags {
            k8s_pod_name: pod.into(),
            service_namespace: "shop".into(),
            ..Default::default()
        })
    };
    for write in 0..5u8 {
        // Each write as a new request brings it: the same attributes, another allocation.
        let rows = (0..3u8)
            .map(|n| {
                let mut span = row(10 + write, n + 1, "checkout", "x", quarter + 1_000);
                let pod = if n == 2 { "pod-b" } else { "pod-a" };
                span.resource_attributes = resource(pod);
                span.resource = tags(pod);
                span.scope_name = "lib".into();
                span
            })
            .collect();
        store.write(rows).await.unwrap();
    }
    let client = clickhouse::Client::default()
        .with_url(server.url())
        .with_validation(false);
    let stored: Vec<(String, u64)> = client
        .query(
            "SELECT resource_attribute_values[2], toUInt64(count()) FROM flow_log.l7_resource \
             WHERE resource_attribute_values[1] != '' \
             GROUP BY resource_attribute_values[2] ORDER BY 1",
        )
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(stored, [("pod-a".to_string(), 1), ("pod-b".to_string(), 1)]);
    let tagged: Vec<(String, String)> = client
        .query(
            "SELECT k8s_pod_name, service_namespace FROM flow_log.l7_resource \
             WHERE k8s_pod_name != '' ORDER BY k8s_pod_name",
        )
        .fetch_all()
        .await
        .unwrap();
    let pair = |pod: &str| (pod.to_string(), "shop".to_string());
    assert_eq!(
        tagged,
        [pair("pod-a"), pair("pod-b")],
        "tags beside attributes"
    );
    let scopes: Vec<String> = client
        .query("SELECT scope_name FROM flow_log.l7_resource WHERE scope_name != ''")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(scopes, ["lib"], "the scope in the spans' one key set");
    let arrays: u64 = client
        .query(
            "SELECT count() FROM flow_log.l7_flow_log WHERE notEmpty(resource_attribute_names) \
             OR k8s_pod_name != '' OR service_namespace != '' OR scope_name != ''",
        )
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(
        arrays, 0,
        "span rows hold the keys, not the attributes, tags or scope"
    );
    for write in 0..5u8 {
        let trace = store.trace(trace_id(10 + write)).await.unwrap();
        assert_eq!(trace.len(), 3);
        for span in trace {
            let pod = if span.span_id.0[7] == 3 {
                "pod-b"
            } else {
                "pod-a"
            };
            assert_eq!(
                &*span.resource_attributes,
                &*resource(pod),
                "{:?}",
                span.span_id
            );
            assert_eq!(span.resource, tags(pod), "{:?}", span.span_id);
            assert_eq!(span.scope_name, "lib");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_set_is_stored_once_and_spans_of_either_form_read_search_and_answer_sql_alike() {
    use serde_json::json;
    use spanflow_model::{AttrValue, Attribute};
    use spanflow_store::sql::SqlLimits;
    use spanflow_store::{AttributeFilter, SpanQuery};
    let server = TestServer::start();
    let store = inserting_at_once(&server).await;
    let quarter = quarter_a_minute_ago();
    let http = |method: &str, code: i64| {
        vec![
            Attribute::new("http.request.method", AttrValue::String(method.into())),
            Attribute::new("http.response.status_code", AttrValue::Int(code)),
        ]
    };
    // Two writes of spans with the same keys, and one span with other keys.
    let mut written = Vec::new();
    for write in 0..2u8 {
        let rows: Vec<_> = (0..2u8)
            .map(|n| {
                let mut span = row(20 + write, n + 1, "checkout", "GET /cart", quarter + 1_000);
                span.attributes = http(if n == 0 { "GET" } else { "PUT" }, 200 + i64::from(n));
                span
            })
            .collect();
        written.extend(rows.clone());
        store.write(rows).await.unwrap();
    }
    let mut other = row(22, 1, "checkout", "send", quarter + 2_000);
    other.attributes = vec![Attribute::new(
        "messaging.destination.name",
        AttrValue::String("GET".into()),
    )];
    written.push(other.clone());
    store.write(vec![other]).await.unwrap();

    let client = clickhouse::Client::default()
        .with_url(server.url())
        .with_validation(false);
    let key_sets: Vec<(String, String)> = client
        .query(
            "SELECT arrayStringConcat(resource_attribute_names, ',') AS names, \
             arrayStringConcat(arrayMap(t -> toString(t), resource_attribute_types), ',') \
             FROM flow_log.l7_resource \
             WHERE arrayAll(v -> v = '', resource_attribute_values) ORDER BY names",
        )
        .fetch_all()
        .await
        .unwrap();
    let pair = |names: &str, types: &str| (names.to_string(), types.to_string());
    assert_eq!(
        key_sets,
        [
            pair("http.request.method,http.response.status_code", "0,2"),
            pair("messaging.destination.name", "0"),
        ],
        "each key set once"
    );
    let with_names: u64 = client
        .query("SELECT count() FROM flow_log.l7_flow_log WHERE notEmpty(attribute_names) OR notEmpty(attribute_types) OR attribute_keys_id = 0")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(
        with_names, 0,
        "span rows hold the key set's key and the values"
    );
    // A row as a version before key sets wrote it: its own names and types, and the key 0.
    client
        .query(
            "INSERT INTO flow_log.l7_flow_log (time, start_time, trace_id, span_id, \
             observation_point, app_service, endpoint, attribute_names, attribute_values, \
             attribute_types) VALUES (?, ?, '0123456789abcdef', '01234567', 'app', 'checkout', \
             'old', ['http.request.method'], ['GET'], [0])",
        )
        .bind(quarter / 1_000_000 + 1)
        .bind(quarter)
        .execute()
        .await
        .unwrap();

    for span in &written {
        let trace = store.trace(span.trace_id).await.unwrap();
        let read = trace
            .iter()
            .find(|read| read.span_id == span.span_id)
            .unwrap();
        assert_eq!(read.attributes, span.attributes, "{:?}", span.span_id);
    }
    let search = |key: &str, value: &str| SpanQuery {
        attributes: vec![AttributeFilter {
            key: key.into(),
            value: value.into(),
        }],
        limit: 20,
        ..SpanQuery::default()
    };
    let found = |rows: Vec<spanflow_model::SpanRow>| {
        let mut found: Vec<(String, String)> = rows
            .iter()
            .map(|row| {
                let value = row
                    .attributes
                    .iter()
                    .map(|attribute| {
                        format!(
                            "{}={}",
                            attribute.key,
                            attribute.value.to_text().unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(",");
                (row.endpoint.clone(), value)
            })
            .collect();
        found.sort();
        found
    };
    assert_eq!(
        found(
            store
                .search(&search("http.request.method", "GET"))
                .await
                .unwrap()
        ),
        [
            (
                "GET /cart".to_string(),
                "http.request.method=GET,http.response.status_code=200".to_string()
            ),
            (
                "GET /cart".to_string(),
                "http.request.method=GET,http.response.status_code=200".to_string()
            ),
            ("old".to_string(), "http.request.method=GET".to_string()),
        ],
        "the key's value in either form, not another key's"
    );
    assert_eq!(
        store
            .search(&search("http.response.status_code", "201"))
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(store
        .search(&search("http.request.method", ""))
        .await
        .unwrap()
        .is_empty());
    // From a time on: the sets of then on, and the spans that start then.
    let since = |start: i64| SpanQuery {
        start_time_min_us: Some(start),
        ..search("http.request.method", "GET")
    };
    assert_eq!(store.search(&since(quarter)).await.unwrap().len(), 3);
    assert!(store
        .search(&since(quarter + 10_000_000))
        .await
        .unwrap()
        .is_empty());

    let answer = store
        .sql(
            "SELECT endpoint, attribute_names, attribute_types, \
             attribute.http.request.method AS method FROM l7_flow_log \
             WHERE endpoint != 'send' ORDER BY endpoint, method",
            &SqlLimits::default(),
        )
        .await
        .unwrap();
    let keys = json!(["http.request.method", "http.response.status_code"]);
    assert_eq!(
        answer.values,
        [
            vec![
                json!("GET /cart"),
                keys.clone(),
                json!([0, 2]),
                json!("GET")
            ],
            vec![
                json!("GET /cart"),
                keys.clone(),
                json!([0, 2]),
                json!("GET")
            ],
            vec![
                json!("GET /cart"),
                keys.clone(),
                json!([0, 2]),
                json!("PUT")
            ],
            vec![json!("GET /cart"), keys, json!([0, 2]), json!("PUT")],
            vec![
                json!("old"),
                json!(["http.request.method"]),
                json!([0]),
                json!("GET")
            ],
        ]
    );
}
