//! Writes the seed inputs of every fuzz target to `fuzz/seeds/<target>/`: real requests (the
//! load generator's corpus, OTLP/JSON as the query API prints it), batches, SQL and TraceQL, so
//! that the fuzzers start deep in each decoder.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example write_seeds`

use std::io::Write;
use std::path::{Path, PathBuf};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value::Value, AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use spanflow_api::otlp_json::{self, Style};
use spanflow_otlp::map::map_request;
use spanflow_transport::{AgentBatch, Encoding, Payload, VERSION};

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let corpus = spanflow_loadgen::corpus::build(2, 3, 7);
    let realistic: Vec<Vec<u8>> = corpus
        .iter()
        .map(|payload| payload.protobuf.to_vec())
        .collect();
    let full = full_request().encode_to_vec();
    let with_bad_ids = bad_ids_request().encode_to_vec();

    let dir = seeds_dir(&root, "otlp_protobuf")?;
    for (index, request) in realistic.iter().enumerate() {
        write(&dir, &format!("loadgen-{index}"), request)?;
    }
    write(&dir, "every-field", &full)?;
    write(&dir, "bad-ids", &with_bad_ids)?;
    write(&dir, "empty", b"")?;

    let dir = seeds_dir(&root, "otlp_json")?;
    for (index, request) in realistic.iter().enumerate() {
        let decoded = ExportTraceServiceRequest::decode(&request[..]).expect("loadgen's corpus");
        let rows = map_request(decoded, &spanflow_fuzz::sender()).rows;
        for style in [Style::Otlp, Style::Tempo] {
            let json = serde_json::json!({
                "resourceSpans": otlp_json::resource_spans(&rows, style),
            });
            write(
                &dir,
                &format!("loadgen-{index}-{style:?}").to_lowercase(),
                json.to_string().as_bytes(),
            )?;
        }
    }
    write(&dir, "spec-example", SPEC_EXAMPLE.as_bytes())?;
    write(&dir, "snake-case-and-oddities", ODDITIES.as_bytes())?;

    let dir = seeds_dir(&root, "decompress")?;
    // Byte 0: even for gzip, odd for zstd; byte 1: the cap in 16-byte units.
    write(&dir, "gzip", &[&[0, 255][..], &gzip(&full)].concat())?;
    write(
        &dir,
        "gzip-two-members",
        &[&[0, 4][..], &gzip(b"first member "), &gzip(b"second")].concat(),
    )?;
    write(
        &dir,
        "gzip-bomb",
        &[&[0, 1][..], &gzip(&[0; 100_000])].concat(),
    )?;
    write(&dir, "zstd", &[&[1, 255][..], &zstd(&full)].concat())?;
    write(
        &dir,
        "zstd-two-frames",
        &[&[1, 4][..], &zstd(b"first frame "), &zstd(b"second")].concat(),
    )?;
    write(
        &dir,
        "zstd-bomb",
        &[&[1, 1][..], &zstd(&[0; 100_000])].concat(),
    )?;

    let dir = seeds_dir(&root, "agent_batch")?;
    let payload = |otlp: Vec<u8>, encoding: Encoding| Payload {
        peer_ip: "10.0.0.9".into(),
        n_spans: 3,
        otlp: otlp.into(),
        encoding: encoding as i32,
        ..Payload::default()
    };
    let batch = |version: u32, payloads: Vec<Payload>| AgentBatch {
        version,
        agent_id: "node-a".into(),
        agent_host_name: "node-a".into(),
        agent_host_ip: "10.0.0.1".into(),
        batch_seq: 7,
        payloads,
        ..AgentBatch::default()
    };
    write(
        &dir,
        "every-encoding",
        &batch(
            VERSION,
            vec![
                payload(realistic[0].clone(), Encoding::Identity),
                payload(gzip(&realistic[1]), Encoding::Gzip),
                Payload {
                    org_id: "tenant-a".into(),
                    ..payload(zstd(&full), Encoding::Zstd)
                },
            ],
        )
        .encode_body(),
    )?;
    // Within the target's span limits but for the resource, which has one attribute too many.
    let mut busy_resource = bad_ids_request();
    busy_resource.resource_spans[0].resource = Some(Resource {
        attributes: [
            "service.name",
            "host.name",
            "k8s.pod.name",
            "os.type",
            "app.host.ip",
        ]
        .into_iter()
        .map(|key| text(key, "10.0.0.2"))
        .collect(),
        ..Resource::default()
    });
    busy_resource.resource_spans[0].scope_spans[0]
        .spans
        .truncate(1);
    busy_resource.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .truncate(1);
    write(
        &dir,
        "resource-past-the-limits",
        &batch(
            VERSION,
            vec![payload(busy_resource.encode_to_vec(), Encoding::Identity)],
        )
        .encode_body(),
    )?;
    write(
        &dir,
        "identity",
        &batch(VERSION, vec![payload(full.clone(), Encoding::Identity)]).encode_body(),
    )?;
    // A payload whose `n_spans` is a 5-byte varint (3, padded): one byte from any count.
    let mut wide = Payload {
        n_spans: 0,
        ..payload(realistic[0].clone(), Encoding::Identity)
    }
    .encode_to_vec();
    wide.extend_from_slice(&[0x10, 0x83, 0x80, 0x80, 0x80, 0x00]);
    let mut body = batch(VERSION, vec![]).encode_body();
    body.push(0x32);
    prost::encoding::encode_varint(wide.len() as u64, &mut body);
    body.extend_from_slice(&wide);
    write(&dir, "wide-n-spans", &body)?;
    write(
        &dir,
        "version-1",
        &batch(1, vec![payload(with_bad_ids.clone(), Encoding::Identity)]).encode_v1_body(1),
    )?;

    let dir = seeds_dir(&root, "sql")?;
    for (index, sql) in SQL.iter().enumerate() {
        write(&dir, &format!("query-{index}"), sql.as_bytes())?;
    }

    let dir = seeds_dir(&root, "query_params")?;
    for (index, text) in QUERY_PARAMS.iter().enumerate() {
        write(&dir, &format!("param-{index}"), text.as_bytes())?;
    }
    Ok(())
}

fn seeds_dir(root: &Path, target: &str) -> std::io::Result<PathBuf> {
    let dir = root.join(target);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(dir.join(name), bytes)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("gzip to memory");
    encoder.finish().expect("gzip to memory")
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(bytes, 1).expect("zstd to memory")
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        key_strindex: 0,
    }
}

fn text(key: &str, value: &str) -> KeyValue {
    kv(key, Value::StringValue(value.into()))
}

/// One span with every field of every message set, values nested.
fn full_request() -> ExportTraceServiceRequest {
    let nested = Value::KvlistValue(KeyValueList {
        values: vec![
            text("inner", "v"),
            kv(
                "array",
                Value::ArrayValue(ArrayValue {
                    values: [
                        Value::IntValue(-5),
                        Value::DoubleValue(1.5),
                        Value::BoolValue(true),
                        Value::BytesValue(vec![1, 2, 3]),
                    ]
                    .into_iter()
                    .map(|value| AnyValue { value: Some(value) })
                    .collect(),
                }),
            ),
        ],
    });
    let span = Span {
        trace_id: vec![7; 16],
        span_id: vec![9; 8],
        trace_state: "k=v".into(),
        parent_span_id: vec![3; 8],
        flags: 0x301,
        name: "GET /users/{id}".into(),
        kind: span::SpanKind::Client as i32,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_250_000_000,
        attributes: vec![
            text("http.request.method", "GET"),
            text("url.full", "https://api.example.com/users/7?q=1"),
            text("server.address", "api.example.com"),
            kv("server.port", Value::IntValue(443)),
            kv("http.response.status_code", Value::IntValue(503)),
            text("network.protocol.version", "1.1"),
            text("net.peer.ip", "10.0.0.7"),
            kv("nested", nested),
            kv("strindex", Value::StringValueStrindex(4)),
        ],
        dropped_attributes_count: 1,
        events: vec![span::Event {
            time_unix_nano: 1_700_000_000_100_000_000,
            name: "exception".into(),
            attributes: vec![
                text("exception.type", "Timeout"),
                text("exception.message", "é"),
            ],
            dropped_attributes_count: 2,
        }],
        dropped_events_count: 3,
        links: vec![span::Link {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            trace_state: "ts".into(),
            attributes: vec![text("l", "x")],
            dropped_attributes_count: 4,
            flags: 1,
        }],
        dropped_links_count: 5,
        status: Some(Status {
            message: "upstream unavailable".into(),
            code: 2,
        }),
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    text("service.name", "frontend"),
                    text("service.instance.id", "frontend-1"),
                    text("app.host.ip", "192.168.1.2"),
                    text("k8s.pod.name", "frontend-7d9"),
                    text("host.name", "node-1"),
                ],
                dropped_attributes_count: 0,
                entity_refs: vec![EntityRef {
                    schema_url: String::new(),
                    r#type: "service".into(),
                    id_keys: vec!["service.name".into()],
                    description_keys: vec!["service.instance.id".into()],
                }],
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "io.opentelemetry.http".into(),
                    version: "1.0".into(),
                    attributes: vec![text("scope.attr", "s")],
                    dropped_attributes_count: 1,
                }),
                spans: vec![span],
                schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// Spans with each kind of bad id between good ones.
fn bad_ids_request() -> ExportTraceServiceRequest {
    let span = |trace_id: Vec<u8>, span_id: Vec<u8>, parent_span_id: Vec<u8>| Span {
        trace_id,
        span_id,
        parent_span_id,
        name: "op".into(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_001_000_000,
        attributes: vec![text("db.system", "mysql"), text("db.statement", "SELECT 1")],
        ..Span::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![text("service.name", "db-client")],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![
                    span(vec![1; 16], vec![1; 8], vec![]),
                    span(vec![1; 5], vec![2; 8], vec![]),
                    span(vec![0; 16], vec![3; 8], vec![1; 8]),
                    span(vec![1; 16], vec![0; 8], vec![]),
                    span(vec![1; 16], vec![5; 9], vec![]),
                    span(vec![1; 16], vec![6; 8], vec![0; 8]),
                ],
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

/// The example request of the OTLP specification (`examples/trace.json`).
const SPEC_EXAMPLE: &str = r#"{
  "resourceSpans": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
    "scopeSpans": [{
      "scope": {"name": "my.library", "version": "1.0.0",
        "attributes": [{"key": "my.scope.attribute", "value": {"stringValue": "some scope attribute"}}]},
      "spans": [{
        "traceId": "5B8EFFF798038103D269B633813FC60C",
        "spanId": "EEE19B7EC3C1B174",
        "parentSpanId": "EEE19B7EC3C1B173",
        "name": "I'm a server span",
        "startTimeUnixNano": "1544712660000000000",
        "endTimeUnixNano": "1544712661000000000",
        "kind": 2,
        "attributes": [{"key": "my.span.attr", "value": {"stringValue": "some value"}}]
      }]
    }]
  }]
}"#;

/// The deviations real senders make: snake_case, the pre-1.0 names, base64 ids, enum names,
/// numbers as strings, nested values, a BOM.
const ODDITIES: &str = "\u{feff}{\"resource_spans\":[{\"resource\":{\"attributes\":[\
    {\"key\":\"service.name\",\"value\":{\"string_value\":\"svc\"}},\
    {\"key\":\"app.host.ip\",\"value\":{\"stringValue\":\"::ffff:10.0.0.1\"}}]},\
    \"instrumentationLibrarySpans\":[{\"instrumentationLibrary\":{\"name\":\"lib\"},\
    \"spans\":[{\"trace_id\":\"W47/95gDgQPSabYzgT/GDA==\",\"span_id\":\"7uGbfsPBsXQ\",\
    \"name\":\"SELECT users\",\"kind\":\"SPAN_KIND_CLIENT\",\
    \"start_time_unix_nano\":1544712660000000000,\"endTimeUnixNano\":\"1544712660000001000\",\
    \"status\":{\"code\":\"STATUS_CODE_ERROR\",\"message\":\"boom\"},\
    \"attributes\":[{\"key\":\"db.system\",\"value\":{\"stringValue\":\"postgresql\"}},\
    {\"key\":\"n\",\"value\":{\"intValue\":\"-42\"}},\
    {\"key\":\"d\",\"value\":{\"doubleValue\":\"NaN\"}},\
    {\"key\":\"b\",\"value\":{\"bytesValue\":\"AQID\"}},\
    {\"key\":\"l\",\"value\":{\"arrayValue\":{\"values\":[{\"boolValue\":true},\
    {\"kvlistValue\":{\"values\":[{\"key\":\"k\",\"value\":{\"intValue\":1}}]}}]}}}],\
    \"events\":[{\"timeUnixNano\":\"1\",\"name\":\"e\"}],\
    \"links\":[{\"traceId\":\"5b8efff798038103d269b633813fc60c\",\"spanId\":\"eee19b7ec3c1b173\"}]},\
    {\"traceId\":\"00000000000000000000000000000000\",\"spanId\":\"eee19b7ec3c1b1\"}]}]}]}";

const SQL: &[&str] = &[
    "SELECT app_service, count(*) AS n FROM l7_flow_log WHERE attribute.http.route = '/a' \
     GROUP BY app_service ORDER BY n DESC LIMIT 5",
    "SELECT `attribute.k8s-pod`, \"attribute.x\" FROM flow_log.l7_flow_log",
    "SELECT * FROM (SELECT trace_id FROM l7_flow_log) AS t \
     WHERE trace_id IN (SELECT trace_id FROM l7_flow_log LIMIT 1)",
    "WITH x AS (SELECT * FROM l7_flow_log) SELECT trace_id FROM x",
    "SELECT * FROM url('http://169.254.169.254/', CSV, 'a String')",
    "SELECT * FROM l7_flow_log SETTINGS max_memory_usage = 0 FORMAT TabSeparated",
    "SELECT toStartOfMinute(time) AS t, quantile(0.99)(response_duration) FROM l7_flow_log \
     WHERE time > now() - INTERVAL 1 HOUR AND response_status IN (3, 4) GROUP BY t",
    "SELECT CASE WHEN a BETWEEN 1 AND 2 THEN 'x''y' ELSE NULL END, CAST(b AS String) \
     FROM l7_flow_log l JOIN l7_flow_log r ON l.trace_id = r.trace_id \
     WHERE l.endpoint LIKE '%users%' UNION ALL SELECT 1, 2 FROM l7_flow_log",
];

const QUERY_PARAMS: &[&str] = &[
    "1h30m",
    "1.5s",
    "250ms",
    "10µs",
    "2026-11-24T11:00:00.5+01:00",
    "1700000000",
    "{}",
    "{ name = \"GET /users\" && duration > 1.5ms }",
    "{ resource.service.name = \"frontend\" && span.http.status_code >= 500 }",
    "{ (.http.method =~ \"GE.*\" || status = error) && kind != server }",
    "{ span.\"http.route\" !~ `/api/.*` && statusMessage != \"\" && duration <= 1h30m }",
    "{ .a = 1.5 || .a = true || .a = -2 || .x < 9007199254740993 }",
    "{ duration = 1500us } | count() > 2",
];
