//! A corpus of malformed, hostile and oversized requests sent to every receiver: each gets a
//! clear answer, the good request after it is still stored, and the process's memory stays
//! bounded.

use crate::common;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;
use spanflow_cli::serve::Role;

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// The process's resident memory, in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .unwrap_or_default()
        * 1024
}

fn good(seed: u8) -> (String, ExportTraceServiceRequest) {
    let trace_id = unique_trace_id(seed);
    (
        hex::encode(trace_id),
        request(
            vec![string("service.name", "corpus")],
            vec![server_span(trace_id, [seed; 8], "good")],
        ),
    )
}

/// A length-delimited field: key, length, bytes.
fn field(number: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 12);
    prost::encoding::encode_key(number, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

/// A request whose one span has an attribute nested `depth` arrays deep, written byte by byte
/// (building it as messages would need as deep a stack to encode and drop as it takes to
/// decode).
fn deep_request(depth: usize) -> Vec<u8> {
    // AnyValue { string_value = "b" }
    let mut value = field(1, b"b");
    for _ in 0..depth {
        // AnyValue { array_value = ArrayValue { values = [value] } }
        value = field(5, &field(1, &value));
    }
    let key_value = [field(1, b"deep"), field(2, &value)].concat();
    let (_, request) = good(9);
    let span = &request.resource_spans[0].scope_spans[0].spans[0];
    let span = [span.encode_to_vec(), field(9, &key_value)].concat();
    field(1, &field(2, &field(2, &span)))
}

fn with_attributes(seed: u8, attributes: Vec<KeyValue>) -> ExportTraceServiceRequest {
    let (_, mut request) = good(seed);
    request.resource_spans[0].scope_spans[0].spans[0].attributes = attributes;
    request
}

struct Case {
    name: &'static str,
    content_type: &'static str,
    encoding: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
}

fn corpus() -> Vec<Case> {
    let (_, valid) = good(1);
    let valid = valid.encode_to_vec();
    let mut invalid_utf8 = good(2).1;
    invalid_utf8.resource_spans[0].scope_spans[0].spans[0].name = "name".into();
    let mut invalid_utf8 = invalid_utf8.encode_to_vec();
    let at = invalid_utf8
        .windows(4)
        .position(|window| window == b"name")
        .unwrap();
    invalid_utf8[at] = 0xff;
    let mut zero_ids = good(3).1;
    zero_ids.resource_spans[0].scope_spans[0].spans[0].trace_id = vec![0; 16];
    let mut short_ids = good(4).1;
    short_ids.resource_spans[0].scope_spans[0].spans[0].span_id = vec![1, 2];
    let mut absurd_times = good(5).1;
    let span = &mut absurd_times.resource_spans[0].scope_spans[0].spans[0];
    span.start_time_unix_nano = u64::MAX;
    span.end_time_unix_nano = 1;
    let megabyte = with_attributes(6, vec![string("blob", &"x".repeat(1 << 20))]);
    let long_key = with_attributes(7, vec![string(&"k".repeat(1 << 20), "v")]);
    let many: Vec<KeyValue> = (0..1_000_000).map(|n| int(&format!("a{n}"), n)).collect();
    let many = with_attributes(8, many);
    let json_deep = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"x","attributes":[{{"key":"deep","value":{}"x"{}}}]}}]}}]}}]}}"#,
        r#"{"arrayValue":{"values":["#.repeat(5_000),
        "]}}".repeat(5_000)
    );
    vec![
        Case {
            name: "truncated protobuf",
            content_type: PROTOBUF,
            encoding: None,
            body: valid[..valid.len() / 2].to_vec(),
            status: 400,
        },
        Case {
            name: "wrong wire type",
            content_type: PROTOBUF,
            encoding: None,
            body: vec![0x08, 0x01],
            status: 400,
        },
        Case {
            name: "huge length",
            content_type: PROTOBUF,
            encoding: None,
            body: vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
            status: 400,
        },
        Case {
            name: "overlong varint",
            content_type: PROTOBUF,
            encoding: None,
            body: vec![
                0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
            status: 400,
        },
        Case {
            name: "AnyValue nested 10,000 deep",
            content_type: PROTOBUF,
            encoding: None,
            body: deep_request(10_000),
            status: 400,
        },
        Case {
            name: "invalid UTF-8",
            content_type: PROTOBUF,
            encoding: None,
            body: invalid_utf8,
            status: 400,
        },
        Case {
            name: "zero trace id (partial success)",
            content_type: PROTOBUF,
            encoding: None,
            body: zero_ids.encode_to_vec(),
            status: 200,
        },
        Case {
            name: "short span id (partial success)",
            content_type: PROTOBUF,
            encoding: None,
            body: short_ids.encode_to_vec(),
            status: 200,
        },
        Case {
            name: "absurd timestamps",
            content_type: PROTOBUF,
            encoding: None,
            body: absurd_times.encode_to_vec(),
            status: 200,
        },
        Case {
            name: "megabyte attribute value",
            content_type: PROTOBUF,
            encoding: None,
            body: megabyte.encode_to_vec(),
            status: 200,
        },
        Case {
            name: "megabyte attribute name",
            content_type: PROTOBUF,
            encoding: None,
            body: long_key.encode_to_vec(),
            status: 200,
        },
        Case {
            name: "a million attributes",
            content_type: PROTOBUF,
            encoding: None,
            body: many.encode_to_vec(),
            status: 200,
        },
        Case {
            name: "gzip bomb",
            content_type: PROTOBUF,
            encoding: Some("gzip"),
            body: spanflow_otlp::decompress::gzip(&vec![0u8; 256 << 20]),
            status: 413,
        },
        Case {
            name: "zstd bomb",
            content_type: PROTOBUF,
            encoding: Some("zstd"),
            body: zstd::encode_all(&vec![0u8; 256 << 20][..], 3).unwrap(),
            status: 413,
        },
        Case {
            name: "corrupt zstd",
            content_type: PROTOBUF,
            encoding: Some("zstd"),
            body: b"\x28\xb5\x2f\xfdgarbage".to_vec(),
            status: 400,
        },
        Case {
            name: "malformed JSON",
            content_type: JSON,
            encoding: None,
            body: b"{\"resourceSpans\": [".to_vec(),
            status: 400,
        },
        Case {
            name: "JSON nested 5,000 deep",
            content_type: JSON,
            encoding: None,
            body: json_deep.into_bytes(),
            status: 400,
        },
        Case {
            name: "JSON with invalid UTF-8",
            content_type: JSON,
            encoding: None,
            body: b"{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"name\":\"\xff\"}]}]}]}"
                .to_vec(),
            status: 400,
        },
    ]
}

async fn post(url: &str, case_type: &str, encoding: Option<&str>, body: Vec<u8>) -> u16 {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", case_type)
        .body(body);
    if let Some(encoding) = encoding {
        request = request.header("content-encoding", encoding);
    }
    request
        .send()
        .await
        .expect("the receiver answers")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_receiver_answers_hostile_input_and_stays_up_with_bounded_memory() {
    let spanflow = start(Role::Both, test_settings()).await;
    let query = spanflow.server_query.unwrap();
    let http = [
        format!("http://{}/v1/traces", spanflow.agent_otlp_http.unwrap()),
        format!("http://{}/api/v1/otel/trace", spanflow.agent_http.unwrap()),
    ];
    let mut seed = 100u8;
    for case in corpus() {
        for url in &http {
            let status = post(url, case.content_type, case.encoding, case.body.clone()).await;
            assert_eq!(status, case.status, "{} to {url}", case.name);
            seed = seed.wrapping_add(1);
            let (trace_id, next) = good(seed);
            let status = post(url, PROTOBUF, None, next.encode_to_vec()).await;
            assert_eq!(status, 200, "the request after {} to {url}", case.name);
            fetch_trace(query, &trace_id, 1).await;
        }
    }
    // gRPC takes the protobuf cases.
    let grpc = format!("http://{}", spanflow.agent_otlp_grpc.unwrap());
    let mut client = TraceServiceClient::connect(grpc).await.unwrap();
    for case in corpus()
        .into_iter()
        .filter(|case| case.content_type == PROTOBUF && case.encoding.is_none())
    {
        let decoded = ExportTraceServiceRequest::decode(case.body.as_slice());
        let answer = match decoded {
            Ok(request) => client
                .export(request)
                .await
                .map(|_| ())
                .map_err(|status| status.code()),
            // What prost cannot decode, tonic's own client cannot send either; the HTTP
            // receivers above and the raw-bytes gRPC tests cover it.
            Err(_) => continue,
        };
        let expected = if case.status == 200 {
            Ok(())
        } else {
            Err(tonic::Code::InvalidArgument)
        };
        assert_eq!(answer, expected, "{} over gRPC", case.name);
    }
    seed = seed.wrapping_add(1);
    let (trace_id, next) = good(seed);
    client.export(next).await.unwrap();
    fetch_trace(query, &trace_id, 1).await;
    // Everything above, the test's own copies of the corpus included, in 1 GiB (about a third
    // of it is used).
    let rss = rss_bytes();
    assert!(rss < 1 << 30, "resident memory {} MiB", rss >> 20);
    eprintln!("resident memory after the corpus: {} MiB", rss >> 20);
    spanflow.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_body_gets_408_and_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let spanflow = start(
        Role::Both,
        spanflow_cli::settings::Settings {
            body_timeout_ms: Some(300),
            ..test_settings()
        },
    )
    .await;
    let address = spanflow.agent_otlp_http.unwrap();
    let mut slow = tokio::net::TcpStream::connect(address).await.unwrap();
    slow.write_all(
        b"POST /v1/traces HTTP/1.1\r\nHost: agent\r\nContent-Type: application/x-protobuf\r\n\
          Content-Length: 1000\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    // Meanwhile another client is served.
    let (trace_id, next) = good(200);
    let status = post(
        &format!("http://{address}/v1/traces"),
        PROTOBUF,
        None,
        next.encode_to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    fetch_trace(spanflow.server_query.unwrap(), &trace_id, 1).await;
    let mut answer = vec![0u8; 64];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), slow.read(&mut answer))
        .await
        .expect("the agent answers the slow client within its body timeout")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    spanflow.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let spanflow = start(
        Role::Both,
        spanflow_cli::settings::Settings {
            header_read_timeout_ms: Some(300),
            ..test_settings()
        },
    )
    .await;
    for address in [
        spanflow.agent_otlp_http.unwrap(),
        spanflow.agent_http.unwrap(),
        spanflow.server_query.unwrap(),
        spanflow.server_ingest.unwrap(),
    ] {
        let mut slow = tokio::net::TcpStream::connect(address).await.unwrap();
        slow.write_all(b"POST /v1/traces HTTP/1.1\r\nHost: agent\r\nX-Slow: ")
            .await
            .unwrap();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            slow.read_to_end(&mut rest),
        )
        .await;
        assert!(
            closed.is_ok(),
            "{address}: a client stuck in its headers is disconnected"
        );
    }
    spanflow.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_limit_a_client_is_told_to_retry_and_others_are_served_after() {
    use tokio::io::AsyncReadExt;
    let spanflow = start(
        Role::Both,
        spanflow_cli::settings::Settings {
            max_connections: Some(3),
            ..test_settings()
        },
    )
    .await;
    let address = spanflow.agent_otlp_http.unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tokio::net::TcpStream::connect(address).await.unwrap());
    }
    let mut refused = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        refused.read_to_end(&mut answer),
    )
    .await
    .expect("the refused connection is answered and closed")
    .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    drop(held);
    let (trace_id, next) = good(201);
    // The server frees a connection's room once it reads the close: until then a new one may
    // still meet the limit (a 503 before the request is even sent).
    let mut status = None;
    for _ in 0..50 {
        status = reqwest::Client::new()
            .post(format!("http://{address}/v1/traces"))
            .header("content-type", PROTOBUF)
            .body(next.encode_to_vec())
            .send()
            .await
            .ok()
            .map(|response| response.status().as_u16());
        if status == Some(200) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, Some(200), "room again once connections close");
    fetch_trace(spanflow.server_query.unwrap(), &trace_id, 1).await;
    let metrics = reqwest::get(format!("http://{}/metrics", spanflow.server_query.unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let refused = metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix("spanflow_connections_refused_total{port=\"agent OTLP/HTTP\"} ")
        })
        .and_then(|value| value.parse::<f64>().ok());
    assert!(refused >= Some(1.0), "{metrics}");
    spanflow.stop().await.unwrap();
}

/// An agent batch holding `payloads`.
fn batch_body(version: u32, payloads: Vec<spanflow_transport::Payload>) -> Vec<u8> {
    spanflow_transport::AgentBatch {
        version,
        agent_id: "corpus".into(),
        agent_host_name: "corpus".into(),
        agent_host_ip: "127.0.0.1".into(),
        batch_seq: 1,
        payloads,
        ..Default::default()
    }
    .encode_body()
}

fn payload(otlp: Vec<u8>, encoding: i32) -> spanflow_transport::Payload {
    spanflow_transport::Payload {
        peer_ip: "10.0.0.1".into(),
        n_spans: 1,
        otlp: otlp.into(),
        encoding,
        org_id: String::new(),
    }
}

/// `n_bytes` of zeros, compressed: a bomb.
fn bomb(n_bytes: usize, gzip: bool) -> Vec<u8> {
    let zeros = vec![0u8; n_bytes];
    if gzip {
        spanflow_otlp::decompress::gzip(&zeros)
    } else {
        zstd::encode_all(&zeros[..], 3).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_answers_hostile_batches_and_queries_and_stays_up() {
    let spanflow = start(Role::Server, test_settings()).await;
    let ingest = format!(
        "http://{}{}",
        spanflow.server_ingest.unwrap(),
        spanflow_transport::INGEST_PATH
    );
    let query = spanflow.server_query.unwrap();
    let (_, good_request) = good(1);
    let good_otlp = good_request.encode_to_vec();
    let valid = batch_body(
        spanflow_transport::VERSION,
        vec![payload(good_otlp.clone(), 0)],
    );
    let mut huge_length = Vec::new();
    prost::encoding::encode_key(
        6,
        prost::encoding::WireType::LengthDelimited,
        &mut huge_length,
    );
    prost::encoding::encode_varint(1 << 62, &mut huge_length);
    let batches: Vec<(&str, Vec<u8>, u16)> = vec![
        ("garbage", b"not a batch at all".to_vec(), 400),
        ("empty", Vec::new(), 400),
        ("truncated", valid[..valid.len() / 2].to_vec(), 400),
        ("a huge length", huge_length, 400),
        (
            "an unknown version",
            batch_body(99, vec![payload(good_otlp.clone(), 0)]),
            400,
        ),
        (
            "an unknown payload encoding",
            batch_body(
                spanflow_transport::VERSION,
                vec![payload(good_otlp.clone(), 7)],
            ),
            400,
        ),
        (
            "a zstd bomb of a version 1 body",
            bomb(300 << 20, false),
            413,
        ),
        (
            "a gzip bomb in a payload",
            batch_body(
                spanflow_transport::VERSION,
                vec![payload(bomb(300 << 20, true), 1)],
            ),
            413,
        ),
        (
            // Skipped and counted; the rest of the batch is kept.
            "a payload that is not OTLP",
            batch_body(
                spanflow_transport::VERSION,
                vec![payload(b"\xff\xff\xff".to_vec(), 0)],
            ),
            200,
        ),
    ];
    let mut seed = 150u8;
    let mut known = String::new();
    for (name, body, expected) in batches {
        let status = post(&ingest, spanflow_transport::CONTENT_TYPE, None, body).await;
        assert_eq!(status, expected, "{name}");
        seed += 1;
        let (trace_id, next) = good(seed);
        let body = batch_body(
            spanflow_transport::VERSION,
            vec![payload(next.encode_to_vec(), 0)],
        );
        let status = post(&ingest, spanflow_transport::CONTENT_TYPE, None, body).await;
        assert_eq!(status, 200, "the batch after {name}");
        fetch_trace(query, &trace_id, 1).await;
        known = trace_id;
    }

    // The query API: every malformed question is a 4xx with a reason, never a 5xx.
    let long_sql = format!("SELECT {} 1 FROM l7_flow_log", "1 + ".repeat(20_000));
    let gets = [
        "/api/v1/traces/not-hex".to_string(),
        format!("/api/traces/{}", "a".repeat(33)),
        "/api/v1/traces?limit=-1".to_string(),
        "/api/v1/traces?min_duration=fast".to_string(),
        "/api/traces?service=x&start=yesterday".to_string(),
        "/api/traces?service=x&minDuration=1parsec".to_string(),
        "/api/search?q=%7B%20.a%20%3D".to_string(),
        "/api/search?tags=%3D%3D%3D&limit=99999999999999999999".to_string(),
        format!("/api/v2/traces/{}", "0".repeat(32)),
        "/api/v1/red?service=x&step=0".to_string(),
    ];
    let client = reqwest::Client::new();
    for path in &gets {
        let response = client
            .get(format!("http://{query}{path}"))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        assert!(
            (400..500).contains(&status),
            "{path}: {status} {}",
            response.text().await.unwrap()
        );
    }
    for sql in [
        "DROP TABLE l7_flow_log",
        "SELECT * FROM system.tables",
        "SELECT 1; SELECT 2",
        "SELECT * FROM l7_flow_log INTO OUTFILE '/tmp/x'",
        long_sql.as_str(),
        "SELEC",
    ] {
        let response = client
            .post(format!("http://{query}/v1/query/"))
            .form(&[("sql", sql)])
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        assert!(
            (400..500).contains(&status),
            "{}: {status}",
            &sql[..sql.len().min(60)]
        );
    }
    fetch_trace(query, &known, 1).await;
    let rss = rss_bytes();
    assert!(rss < 1 << 30, "resident memory {} MiB", rss >> 20);
    spanflow.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_span_holds_past_the_limits_is_dropped_and_counted_or_cut_and_marked() {
    let spanflow = start(
        Role::Both,
        spanflow_cli::settings::Settings {
            max_span_attributes: Some(10),
            max_string_bytes: Some(1000),
            ..test_settings()
        },
    )
    .await;
    let trace_id = unique_trace_id(230);
    let mut span = server_span(trace_id, [9; 8], &"/long".repeat(400));
    span.attributes = (0..25)
        .map(|n| {
            string(
                &format!("key.{n:02}"),
                &"v".repeat(if n == 3 { 5000 } else { 10 }),
            )
        })
        .collect();
    let body = request(vec![string("service.name", "limits")], vec![span]).encode_to_vec();
    let url = format!("http://{}/v1/traces", spanflow.agent_otlp_http.unwrap());
    assert_eq!(post(&url, PROTOBUF, None, body).await, 200);
    let trace = fetch_trace(spanflow.server_query.unwrap(), &hex::encode(trace_id), 1).await;
    let stored = &trace["spans"][0];
    let attributes = stored["attributes"].as_object().unwrap();
    assert_eq!(
        attributes.len(),
        11,
        "ten kept, and the mark: {attributes:?}"
    );
    assert_eq!(stored["dropped_attributes_count"], 15);
    assert_eq!(attributes["key.03"].as_str().unwrap().len(), 1000);
    assert_eq!(stored["endpoint"].as_str().unwrap().len(), 1000);
    let mark = attributes["spanflow.truncated"].as_str().unwrap();
    let named: Vec<&str> = mark.split(',').collect();
    assert!(
        named.contains(&"endpoint") && named.contains(&"attributes.key.03"),
        "what was cut is named: {mark}"
    );
    spanflow.stop().await.unwrap();
}
