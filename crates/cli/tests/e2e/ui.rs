//! The web UI in a real browser: a real `spanflow up` in-process, known traces sent as OTLP,
//! then `ui/tests/browser.mjs` drives Debian's Chromium (playwright-core) through every page
//! and reports what it saw, which is checked here against the data. Screenshots of each page
//! land in `target/ui-screenshots/`.
//!
//! Needs `node`, `/usr/bin/chromium` and `ui/node_modules`; `scripts/test` installs them.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde_json::Value;
use spanflow_cli::auth::Secret;
use spanflow_cli::serve::Role;

const MS: u64 = 1_000_000;
const BIG_TRACE_SPANS: usize = 10_000;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn screenshot_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
        .join("ui-screenshots")
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|directory| directory.join(program))
        .find(|candidate| candidate.is_file())
}

/// Node, Chromium and playwright-core, or a failure that says how to get them.
fn browser_tools() -> (PathBuf, PathBuf) {
    let fix = "run scripts/test, which installs them (Debian's chromium, `npm ci` in ui/)";
    let node = on_path("node").unwrap_or_else(|| {
        panic!("the UI test needs `node` on PATH (Debian: apt-get install nodejs npm); {fix}")
    });
    let chromium = std::env::var_os("SPANFLOW_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        chromium.is_file(),
        "the UI test needs Chromium at {} (or SPANFLOW_CHROMIUM); {fix}",
        chromium.display()
    );
    let playwright = workspace().join("ui/node_modules/playwright-core/package.json");
    assert!(
        playwright.is_file(),
        "the UI test needs ui/node_modules (playwright-core is missing); {fix}"
    );
    (node, chromium)
}

fn attribute(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn double(key: &str, value: f64) -> KeyValue {
    attribute(key, any_value::Value::DoubleValue(value))
}

fn boolean(key: &str, value: bool) -> KeyValue {
    attribute(key, any_value::Value::BoolValue(value))
}

struct Spec {
    trace_id: [u8; 16],
    span_id: u64,
    parent: Option<u64>,
    service: &'static str,
    name: String,
    kind: SpanKind,
    /// ns since the epoch.
    start: u64,
    end: u64,
    attributes: Vec<KeyValue>,
    events: Vec<Event>,
    links: Vec<Link>,
    error: Option<&'static str>,
}

impl Spec {
    #[allow(clippy::too_many_arguments)]
    fn new(
        trace_id: [u8; 16],
        span_id: u64,
        parent: Option<u64>,
        service: &'static str,
        name: impl Into<String>,
        kind: SpanKind,
        start: u64,
        end: u64,
    ) -> Spec {
        Spec {
            trace_id,
            span_id,
            parent,
            service,
            name: name.into(),
            kind,
            start,
            end,
            attributes: Vec::new(),
            events: Vec::new(),
            links: Vec::new(),
            error: None,
        }
    }

    fn with(mut self, attributes: Vec<KeyValue>) -> Spec {
        self.attributes = attributes;
        self
    }

    fn failed(mut self, message: &'static str) -> Spec {
        self.error = Some(message);
        self
    }

    fn span(self) -> Span {
        Span {
            trace_id: self.trace_id.to_vec(),
            span_id: self.span_id.to_be_bytes().to_vec(),
            parent_span_id: self
                .parent
                .map(|parent| parent.to_be_bytes().to_vec())
                .unwrap_or_default(),
            name: self.name,
            kind: self.kind as i32,
            start_time_unix_nano: self.start,
            end_time_unix_nano: self.end,
            attributes: self.attributes,
            events: self.events,
            links: self.links,
            status: Some(match self.error {
                Some(message) => Status {
                    code: status::StatusCode::Error as i32,
                    message: message.into(),
                },
                None => Status {
                    code: status::StatusCode::Unset as i32,
                    message: String::new(),
                },
            }),
            ..Default::default()
        }
    }
}

/// Each service's address: its resource's `app.host.ip`, and the peer address its callers'
/// spans name, by which the server tags the callers' spans with where the service runs.
const SERVICE_IPS: [(&str, &str); 8] = [
    ("frontend", "10.1.0.1"),
    ("payments", "10.1.0.2"),
    ("inventory", "10.1.0.3"),
    ("bulk-api", "10.1.0.4"),
    ("worker-a", "10.1.0.5"),
    ("worker-b", "10.1.0.6"),
    ("worker-c", "10.1.0.7"),
    ("storage", "10.1.0.8"),
];

fn service_ip(service: &str) -> &'static str {
    SERVICE_IPS
        .iter()
        .find(|(name, _)| *name == service)
        .map(|(_, ip)| *ip)
        .unwrap_or_else(|| panic!("no address for {service}"))
}

/// A service's workload: a Deployment of the service's name and `-v1`.
fn workload(service: &str) -> String {
    format!("{service}-v1")
}

/// One request, a resource per service, each saying where it runs as a collector's
/// `k8sattributes` processor would.
fn export_request(specs: Vec<Spec>) -> ExportTraceServiceRequest {
    let mut by_service: BTreeMap<&'static str, Vec<Span>> = BTreeMap::new();
    for spec in specs {
        by_service
            .entry(spec.service)
            .or_default()
            .push(spec.span());
    }
    ExportTraceServiceRequest {
        resource_spans: by_service
            .into_iter()
            .map(|(service, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        string("service.name", service),
                        string("k8s.namespace.name", "shop"),
                        string("k8s.deployment.name", &workload(service)),
                        string("k8s.pod.name", &format!("{}-7d9f", workload(service))),
                        string("k8s.pod.labels.app", service),
                        string("host.name", "node-1"),
                        string("app.host.ip", service_ip(service)),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "ui-test".into(),
                        ..Default::default()
                    }),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

async fn send(endpoint: &str, specs: Vec<Spec>) {
    let response = reqwest::Client::new()
        .post(endpoint)
        .header("content-type", "application/x-protobuf")
        .body(export_request(specs).encode_to_vec())
        .send()
        .await
        .expect("the agent answers");
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

/// A checkout: frontend calls payments (which queries PostgreSQL) and inventory, publishes to
/// Kafka and renders a receipt while the publish runs (which puts the publish off the critical
/// path): 8 spans, listed in waterfall order.
fn checkout(trace_id: [u8; 16], start: u64, inventory_fails: bool, linked: [u8; 16]) -> Vec<Spec> {
    let at = |offset_ms: u64| start + offset_ms * MS;
    let mut payments = Spec::new(
        trace_id,
        3,
        Some(2),
        "payments",
        "POST /charge",
        SpanKind::Server,
        at(8),
        at(60),
    )
    .with(vec![
        string("http.request.method", "POST"),
        string("http.route", "/charge"),
        string("client.address", service_ip("frontend")),
        int("http.response.status_code", 200),
        int("payment.amount", 4200),
        string("payment.currency", "EUR"),
        double("payment.ratio", 0.25),
        boolean("payment.retry", false),
    ]);
    payments.events = vec![Event {
        time_unix_nano: at(30),
        name: "charge authorized".into(),
        attributes: vec![string("auth.code", "A1")],
        ..Default::default()
    }];
    payments.links = vec![Link {
        trace_id: linked.to_vec(),
        span_id: 1u64.to_be_bytes().to_vec(),
        attributes: vec![string("link.reason", "batch import")],
        ..Default::default()
    }];
    let mut inventory = Spec::new(
        trace_id,
        6,
        Some(5),
        "inventory",
        "GET /stock",
        SpanKind::Server,
        at(72),
        at(98),
    )
    .with(vec![
        string("http.request.method", "GET"),
        string("http.route", "/stock"),
        string("client.address", service_ip("frontend")),
    ]);
    if inventory_fails {
        inventory = inventory.failed("out of stock");
    }
    vec![
        Spec::new(
            trace_id,
            1,
            None,
            "frontend",
            "GET /checkout",
            SpanKind::Server,
            at(0),
            at(120),
        )
        .with(vec![
            string("http.request.method", "GET"),
            string("http.route", "/checkout"),
            int("http.response.status_code", 200),
        ]),
        Spec::new(
            trace_id,
            2,
            Some(1),
            "frontend",
            "POST /charge",
            SpanKind::Client,
            at(5),
            at(65),
        )
        .with(vec![
            string("http.request.method", "POST"),
            string("server.address", "payments"),
            string("network.peer.address", service_ip("payments")),
        ]),
        payments,
        Spec::new(
            trace_id,
            4,
            Some(3),
            "payments",
            "SELECT orders",
            SpanKind::Client,
            at(15),
            at(45),
        )
        .with(vec![
            string("db.system", "postgresql"),
            string("db.statement", "SELECT * FROM orders WHERE id = $1"),
        ]),
        Spec::new(
            trace_id,
            5,
            Some(1),
            "frontend",
            "GET /stock",
            SpanKind::Client,
            at(70),
            at(100),
        )
        .with(vec![
            string("http.request.method", "GET"),
            string("server.address", "inventory"),
            string("network.peer.address", service_ip("inventory")),
        ]),
        inventory,
        Spec::new(
            trace_id,
            7,
            Some(1),
            "frontend",
            "publish order",
            SpanKind::Producer,
            at(101),
            at(110),
        )
        .with(vec![
            string("messaging.system", "kafka"),
            string("messaging.destination.name", "orders"),
        ]),
        Spec::new(
            trace_id,
            8,
            Some(1),
            "frontend",
            "render receipt",
            SpanKind::Internal,
            at(104),
            at(118),
        ),
    ]
}

/// The checkout's rows as the waterfall must show them: service, operation, tree level.
const CHECKOUT_ROWS: [(&str, &str, u64); 8] = [
    ("frontend", "GET /checkout", 1),
    ("frontend", "POST /charge", 2),
    ("payments", "POST /charge", 3),
    ("payments", "SELECT orders", 4),
    ("frontend", "GET /stock", 2),
    ("inventory", "GET /stock", 3),
    ("frontend", "publish order", 2),
    ("frontend", "render receipt", 2),
];

/// An import of 10,000 spans: a root, 99 chunks under it, 100 row writes under each.
fn big_trace(trace_id: [u8; 16], start: u64) -> Vec<Spec> {
    const WORKERS: [&str; 3] = ["worker-a", "worker-b", "worker-c"];
    let mut specs = vec![Spec::new(
        trace_id,
        1,
        None,
        "bulk-api",
        "POST /import",
        SpanKind::Server,
        start,
        start + 2_000 * MS,
    )];
    let mut next_id = 2;
    for chunk in 0..99u64 {
        let chunk_start = start + MS / 10 + chunk * 20 * MS;
        let chunk_id = next_id;
        next_id += 1;
        specs.push(Spec::new(
            trace_id,
            chunk_id,
            Some(1),
            WORKERS[chunk as usize % WORKERS.len()],
            format!("import chunk {chunk}"),
            SpanKind::Internal,
            chunk_start,
            chunk_start + 19 * MS,
        ));
        for row in 0..100u64 {
            let row_start = chunk_start + row * 180_000;
            let mut write = Spec::new(
                trace_id,
                next_id,
                Some(chunk_id),
                "storage",
                "write row",
                SpanKind::Internal,
                row_start,
                row_start + 150_000,
            )
            .with(vec![int("row.number", (chunk * 100 + row) as i64)]);
            if (chunk * 100 + row) % 997 == 0 {
                write = write.failed("constraint violated");
            }
            specs.push(write);
            next_id += 1;
        }
    }
    assert_eq!(specs.len(), BIG_TRACE_SPANS);
    specs
}

/// Polls until a search for `service` finds `count` traces (10 s at most).
async fn wait_for_search(query: std::net::SocketAddr, service: &str, count: usize) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer: Value = client
            .get(format!(
                "http://{query}/api/v1/traces?service={service}&limit=100"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let found = answer["traces"].as_array().map(Vec::len).unwrap_or(0);
        if found >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{service}: {found} of {count} traces searchable after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `ui/tests/browser.mjs` and returns its report.
async fn run_browser(base: &str, known: &Value) -> Value {
    let (node, chromium) = browser_tools();
    let screenshots = screenshot_dir();
    println!("screenshots: {}", screenshots.display());
    // Output to files, so that neither pipe can fill while the run is waited on.
    let output_dir = tempfile::tempdir().unwrap();
    let stdout_path = output_dir.path().join("stdout");
    let stderr_path = output_dir.path().join("stderr");
    let mut child = std::process::Command::new(node)
        .arg(workspace().join("ui/tests/browser.mjs"))
        .arg(base)
        .arg(&screenshots)
        .arg(known.to_string())
        .env("SPANFLOW_CHROMIUM", chromium)
        .current_dir(workspace().join("ui"))
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("node starts");
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!(
                "the browser run took more than 3 minutes; stderr: {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(
        status.success(),
        "browser run failed: {status}\nstdout: {stdout}\nstderr: {stderr}"
    );
    let report = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(report)
        .unwrap_or_else(|error| panic!("a JSON report ({error}): {stdout}\nstderr: {stderr}"))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|item| item.as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_searches_draws_traces_and_the_service_map() {
    // Before anything starts: without the tools this test cannot run, and says so.
    browser_tools();
    let spanflow_up = start_up().await;
    let endpoint = format!("http://{}/v1/traces", spanflow_up.agent_otlp_http.unwrap());
    let query = spanflow_up.server_query.unwrap();
    let base = format!("http://{query}");

    let now = recent_ns();
    let big = unique_trace_id(9);
    let checkouts: Vec<[u8; 16]> = (1..=3).map(unique_trace_id).collect();
    // The oldest first: its resources teach the server which service each address is, so
    // that the later checkouts' calls are tagged at both ends.
    for (n, trace_id) in checkouts.iter().enumerate().rev() {
        send(
            &endpoint,
            checkout(
                *trace_id,
                now - 1_000 * MS - n as u64 * 15_000 * MS,
                n == 0,
                big,
            ),
        )
        .await;
    }
    let mut specs = big_trace(big, now - 40_000 * MS);
    while !specs.is_empty() {
        let rest = specs.split_off(specs.len().min(1_000));
        send(&endpoint, specs).await;
        specs = rest;
    }
    let checkout_id = hex::encode(checkouts[0]);
    let big_id = hex::encode(big);
    let checkout_json = fetch_trace(query, &checkout_id, 8).await;
    for trace_id in &checkouts[1..] {
        fetch_trace(query, &hex::encode(trace_id), 8).await;
    }
    wait_for_search(query, "frontend", 3).await;
    let big_json = fetch_trace(query, &big_id, BIG_TRACE_SPANS).await;
    assert_eq!(big_json["truncated"], false);

    // Both ends of the charge, tagged by the server from what each resource said of itself.
    let call = &checkout_json["spans"][1];
    assert_eq!(call["endpoint"], "POST /charge");
    assert_eq!(call["place_0"]["pod_group"], "frontend-v1", "{call}");
    assert_eq!(call["place_1"]["pod_group"], "payments-v1", "{call}");
    assert_eq!(call["place_1"]["pod"], "payments-v1-7d9f", "{call}");

    let known = serde_json::json!({
        "checkout": checkout_id,
        "big": big_id,
        "detail_span": "payments POST /charge",
        "workload": "payments-v1",
        "failing_workload": "inventory-v1",
        "pod": "payments-v1-7d9f",
    });
    let report = run_browser(&base, &known).await;
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    let steps = &report["steps"];
    assert_eq!(report["failures"], serde_json::json!([]), "steps failed");
    // The one error a page may log: the 404 of the trace that is not there.
    let console_errors: Vec<&Value> = report["console_errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|error| {
            !(error["step"] == "not_found"
                && error["text"].as_str().unwrap_or_default().contains("404"))
        })
        .collect();
    assert!(
        console_errors.is_empty(),
        "the page logged errors: {console_errors:?}"
    );
    assert_eq!(
        report["external_requests"],
        serde_json::json!([]),
        "the UI fetched from elsewhere"
    );

    // Search: every checkout, as a row and as a dot; a dot opens its trace.
    let search = &steps["search"];
    let results = search["results"].as_array().unwrap();
    for (n, trace_id) in checkouts.iter().enumerate() {
        let id = hex::encode(trace_id);
        let row = results
            .iter()
            .find(|row| row["trace_id"] == id.as_str())
            .unwrap_or_else(|| panic!("trace {id} not in the results: {results:?}"));
        assert_eq!(row["title"], "frontend: GET /checkout");
        assert_eq!(row["spans"], "8 spans");
        assert_eq!(row["errors"], if n == 0 { "1 error" } else { "0 errors" });
        assert_eq!(row["duration"], "120ms");
        assert!(strings(&search["dots"]).contains(&id), "no dot for {id}");
    }
    assert_eq!(search["dot_opened"], format!("/trace/{checkout_id}"));

    // The form: the failed inventory call alone, and the URL brings it back.
    let form = &steps["search_form"];
    assert_eq!(strings(&form["results"]), vec![checkout_id.clone()]);
    assert_eq!(form["reloaded"], form["results"]);
    assert_eq!(form["query"]["service"], "inventory");
    assert_eq!(form["query"]["status"], "error");
    assert_eq!(form["service_after_reload"], "inventory");

    // Where spans ran: a workload and the status in the form, a namespace and a pod in the URL.
    let places = &steps["search_places"];
    assert_eq!(strings(&places["by_workload"]), vec![checkout_id.clone()]);
    assert_eq!(places["query"]["workload"], "inventory-v1");
    let mut by_pod = strings(&places["by_pod"]);
    by_pod.sort();
    let mut all_checkouts: Vec<String> = checkouts.iter().map(hex::encode).collect();
    all_checkouts.sort();
    assert_eq!(by_pod, all_checkouts);
    assert_eq!(places["form"]["namespace"], "");
    assert_eq!(places["form"]["node"], "nowhere");
    assert!(
        places["nowhere"]
            .as_str()
            .unwrap()
            .contains("No traces found"),
        "{places}"
    );

    // The waterfall: 8 bars in tree order, the error marked, the critical path as the API has it.
    let trace = &steps["trace"];
    let rows = trace["rows"].as_array().unwrap();
    let shown: Vec<(String, String, u64)> = rows
        .iter()
        .map(|row| {
            (
                row["service"].as_str().unwrap().to_string(),
                row["operation"].as_str().unwrap().to_string(),
                row["level"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, String, u64)> = CHECKOUT_ROWS
        .iter()
        .map(|(service, operation, level)| (service.to_string(), operation.to_string(), *level))
        .collect();
    assert_eq!(shown, expected);
    // Each span's workload beside its service.
    for row in rows {
        let service = row["service"].as_str().unwrap();
        assert_eq!(row["place"], workload(service), "{row}");
    }
    assert!(
        rows.iter().all(|row| row["bar"] == true),
        "every row has a bar"
    );
    let errors: Vec<bool> = rows
        .iter()
        .map(|row| row["error"].as_bool().unwrap())
        .collect();
    assert_eq!(
        errors,
        [false, false, false, false, false, true, false, false]
    );
    let api_spans = checkout_json["spans"].as_array().unwrap();
    for (row, span) in rows.iter().zip(api_spans) {
        assert_eq!(row["span_id"], span["span_id"]);
        assert_eq!(
            row["critical"], span["on_critical_path"],
            "critical path mark of {row}"
        );
        if span["on_critical_path"] == true {
            assert!(
                row["critical_marks"].as_u64().unwrap() > 0,
                "a critical span's bar is marked: {row}"
            );
        }
    }
    assert_eq!(
        rows[0]["critical"], true,
        "the root is on the critical path"
    );
    assert_eq!(trace["title"], "frontend:GET /checkout");
    assert_eq!(trace["span_count"], "8");
    assert!(trace["open_ms"].as_u64().unwrap() < 5_000);

    // The detail pane of the charge: fields, attributes by type, resource, event, link.
    let detail = trace["detail_text"].as_str().unwrap();
    for expected in [
        "POST /charge",
        "payments",
        "payment.amount",
        "4200",
        "payment.currency",
        "EUR",
        "k8s.namespace.name",
        "shop",
        "charge authorized",
        "auth.code",
        big_id.as_str(),
        "Self time",
    ] {
        assert!(
            detail.contains(expected),
            "the detail pane lacks {expected:?}: {detail}"
        );
    }
    // Where the charge's two ends ran: the frontend's pod called the payments' pod, which is
    // the span's own end.
    let place_ends = trace["places"].as_array().unwrap();
    assert_eq!(place_ends.len(), 2, "{place_ends:?}");
    for (end, own, service) in [("client", false, "frontend"), ("server", true, "payments")] {
        let shown = place_ends
            .iter()
            .find(|shown| shown["end"] == end)
            .unwrap_or_else(|| panic!("no {end} end in {place_ends:?}"));
        assert_eq!(shown["own"], own, "{shown}");
        let fields = &shown["fields"];
        assert_eq!(fields["pod_group"], workload(service), "{shown}");
        assert_eq!(
            fields["pod"],
            format!("{}-7d9f", workload(service)),
            "{shown}"
        );
        assert_eq!(fields["pod_ns"], "shop", "{shown}");
        assert_eq!(fields["host"], "node-1", "{shown}");
        assert_eq!(
            shown["labels"],
            serde_json::json!([format!("app={service}")]),
            "{shown}"
        );
    }
    assert!(detail.contains("Where it ran"), "{detail}");
    let types = &trace["attribute_types"];
    assert!(
        strings(&types["int"]).contains(&"payment.amount".to_string()),
        "{types}"
    );
    assert!(
        strings(&types["double"]).contains(&"payment.ratio".to_string()),
        "{types}"
    );
    assert!(
        strings(&types["bool"]).contains(&"payment.retry".to_string()),
        "{types}"
    );
    assert!(
        strings(&types["string"]).contains(&"payment.currency".to_string()),
        "{types}"
    );
    let charge_id = api_spans[2]["span_id"].as_str().unwrap();
    assert_eq!(trace["selected_in_url"], charge_id);
    // Zoomed to the charge (8 ms to 60 ms into the trace), then back to the whole 120 ms.
    assert_eq!(
        trace["zoom_ticks"],
        serde_json::json!(["8ms", "21ms", "34ms", "47ms", "60ms"])
    );
    assert_eq!(
        trace["unzoomed_ticks"],
        serde_json::json!(["0", "30ms", "60ms", "90ms", "120ms"])
    );

    // State in the URL: selection, folding; the keyboard; find.
    let state = &steps["trace_state"];
    assert_eq!(state["after_reload"], charge_id);
    assert_eq!(state["after_arrow"], api_spans[3]["span_id"]);
    assert_eq!(state["folded_parent"], api_spans[1]["span_id"]);
    assert_eq!(state["folded_rows"], 6);
    assert_eq!(state["folded_url"]["toggle"], api_spans[1]["span_id"]);
    assert_eq!(state["folded_after_reload"], 6);
    assert_eq!(state["find_count"], "1 of 2");
    assert_eq!(state["find_selected"], "frontend");
    // Rows shown (the charge and its query are folded away) that are off the critical path.
    let off_path = api_spans
        .iter()
        .enumerate()
        .filter(|(index, span)| *index != 2 && *index != 3 && span["on_critical_path"] == false)
        .count();
    assert!(
        off_path > 0,
        "the publish overlaps the render, off the critical path"
    );
    assert_eq!(
        state["dimmed"], off_path,
        "rows off the critical path are dimmed"
    );

    // The flame graph draws every span; a click selects one.
    let flame = &steps["flame"];
    assert_eq!(flame["drawn"], 8);
    assert_eq!(flame["selected"], "GET /checkout");

    // A trace id typed in the box opens it; a bad one is refused there.
    let typed = &steps["trace_id_box"];
    assert_eq!(typed["path"], format!("/trace/{checkout_id}"));
    assert_eq!(typed["rows"], 8);
    assert!(!typed["invalid_hint"]
        .as_str()
        .unwrap_or_default()
        .is_empty());
    assert!(steps["not_found"]["message"]
        .as_str()
        .unwrap()
        .contains("Trace not found"));

    // The service map: the known edges, with their counts; RED charts for a service.
    let map = &steps["map"];
    let edges = map_edges(map);
    for expected in [
        ("frontend", "inventory", "service", 3, 1),
        ("frontend", "payments", "service", 3, 0),
        ("frontend", "kafka", "messaging", 3, 0),
        ("payments", "postgresql", "database", 3, 0),
    ] {
        let expected = (
            expected.0.to_string(),
            expected.1.to_string(),
            expected.2.to_string(),
            expected.3,
            expected.4,
        );
        assert!(
            edges.contains(&expected),
            "edge {expected:?} not in {edges:?}"
        );
    }
    assert_eq!(edges.len(), 4, "{edges:?}");
    let labels = strings(&map["labels"]);
    assert_eq!(labels.len(), 4);
    assert!(
        labels
            .iter()
            .any(|label| label.contains("33.3% errors") && label.contains("p95 26ms")),
        "{labels:?}"
    );
    let nodes = map["nodes"].as_array().unwrap();
    for (name, kind) in [
        ("frontend", "service"),
        ("payments", "service"),
        ("inventory", "service"),
        ("postgresql", "database"),
        ("kafka", "messaging"),
        ("bulk-api", "service"),
        ("storage", "service"),
    ] {
        assert!(
            nodes
                .iter()
                .any(|node| node["name"] == name && node["kind"] == kind),
            "node {name} ({kind}) not in {nodes:?}"
        );
    }
    let charts = map["charts"].as_array().unwrap();
    let titles: Vec<&str> = charts
        .iter()
        .map(|chart| chart["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Request rate", "Error rate", "Duration"]);
    let series: Vec<u64> = charts
        .iter()
        .map(|chart| chart["series"].as_u64().unwrap())
        .collect();
    assert_eq!(series, [1, 1, 3], "{charts:?}");
    assert!(
        charts[0]["points"].as_u64().unwrap() > 0,
        "the calls show: {charts:?}"
    );
    assert!(
        charts[2]["points"].as_u64().unwrap() > 0,
        "the latencies show: {charts:?}"
    );
    assert!(
        map["operations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|row| row[0] == "POST /charge" && row[1] == "3"),
        "{}",
        map["operations"]
    );
    assert!(map["operation_scope"]
        .as_str()
        .unwrap()
        .contains("POST /charge"));

    // The map by workload: a node per Deployment, the same calls between them; and back.
    let by_workload = &steps["map_by_workload"];
    assert_eq!(
        by_workload["pressed_before"],
        serde_json::json!(["service"])
    );
    assert_eq!(
        by_workload["pressed_after"],
        serde_json::json!(["workload"])
    );
    let edges = map_edges(by_workload);
    let mut expected_edges: Vec<(String, String, String, u64, u64)> = [
        ("frontend-v1", "inventory-v1", "service", 3, 1),
        ("frontend-v1", "kafka", "messaging", 3, 0),
        ("frontend-v1", "payments-v1", "service", 3, 0),
        ("payments-v1", "postgresql", "database", 3, 0),
    ]
    .iter()
    .map(|(caller, callee, kind, calls, errors)| {
        (
            caller.to_string(),
            callee.to_string(),
            kind.to_string(),
            *calls,
            *errors,
        )
    })
    .collect();
    let mut sorted_edges = edges.clone();
    sorted_edges.sort();
    expected_edges.sort();
    assert_eq!(sorted_edges, expected_edges);
    let mut labels: Vec<(String, String)> = by_workload["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| {
            (
                node["label"].as_str().unwrap().to_string(),
                node["title"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    labels.sort();
    assert_eq!(
        labels,
        [
            ("frontend-v1", "workload frontend-v1"),
            ("inventory-v1", "workload inventory-v1"),
            ("kafka", "queue kafka"),
            ("payments-v1", "workload payments-v1"),
            ("postgresql", "database postgresql"),
        ]
        .map(|(label, title)| (label.to_string(), title.to_string()))
    );
    assert_eq!(
        strings(&by_workload["calls"]),
        ["postgresql", "frontend-v1"],
        "payments-v1 calls PostgreSQL and is called by the frontend"
    );
    assert_eq!(by_workload["url"]["by"], "workload");
    assert_eq!(by_workload["url"]["service"], "payments-v1");
    let by_service = strings(&by_workload["nodes_by_service"]);
    for name in ["frontend", "payments", "inventory", "bulk-api"] {
        assert!(by_service.contains(&name.to_string()), "{by_service:?}");
    }

    // 10,000 spans: open in a few seconds, only a screenful of rows in the DOM, scroll to the end.
    let large = &steps["big_trace"];
    let open_ms = large["open_ms"].as_u64().unwrap();
    println!(
        "10,000-span trace: opened in {open_ms} ms (fetch and parse {} ms: {}; model {} ms); scrolling: median frame {} ms, p95 {} ms; flame graph in {} ms",
        large["timings"]["fetchMs"], large["timings"]["api"], large["timings"]["buildMs"], large["scrolling"]["median_frame_ms"],
        large["scrolling"]["p95_frame_ms"], large["flame_ms"],
    );
    // The page's own share (the body's transfer, parsing, the model, the first rows) apart
    // from the API's time to answer, which in this debug build is most of the total (a release
    // build answers the same 16 MB in well under a second).
    let api_first_byte = large["timings"]["api"]["first_byte_ms"]
        .as_u64()
        .expect("the trace's request is in the page's resource timings");
    let page_ms = open_ms.saturating_sub(api_first_byte);
    assert!(
        page_ms < 2_000,
        "the page took {page_ms} ms of the {open_ms} ms to draw the 10,000-span trace"
    );
    assert!(
        open_ms < 10_000,
        "the 10,000-span trace took {open_ms} ms to open"
    );
    assert_eq!(large["row_count"], BIG_TRACE_SPANS);
    assert!(
        large["dom_rows"].as_u64().unwrap() < 200,
        "rows are virtualised: {}",
        large["dom_rows"]
    );
    assert_eq!(large["scrolling"]["last_row"], BIG_TRACE_SPANS - 1);
    assert!(large["scrolling"]["dom_rows"].as_u64().unwrap() < 200);
    assert!(large["flame_drawn"].as_u64().unwrap() > 0);
    assert!(large["flame_ms"].as_u64().unwrap() < 3_000);

    let cut = &steps["big_trace_cut"];
    assert_eq!(cut["row_count"], 5_000);
    let banner = cut["banner"].as_str().unwrap();
    assert!(
        banner.contains("10,000 spans") && banner.contains("upper 5,000"),
        "{banner}"
    );
    assert_eq!(cut["all_rows"], BIG_TRACE_SPANS);
    assert_eq!(cut["banner_after"], false);

    spanflow_up.stop().await.unwrap();
}

/// The UI's pages hold no data: they load without the query token, which the API still wants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_loads_without_the_token_the_api_wants() {
    let spanflow = start(
        Role::Both,
        spanflow_cli::settings::Settings {
            query_tokens: Some(Secret::new("readers")),
            ..test_settings()
        },
    )
    .await;
    let base = format!("http://{}", spanflow.server_query.unwrap());
    let client = reqwest::Client::new();
    for path in [
        "/",
        "/search",
        "/trace/5b8efff798038103d269b633813fc60c",
        "/map",
    ] {
        let response = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "text/html; charset=utf-8"
        );
        let page = response.text().await.unwrap();
        let script = page
            .split('"')
            .find(|part| part.starts_with("/assets/") && part.ends_with(".js"))
            .unwrap_or_else(|| panic!("index.html names its script: {page}"));
        let asset = client.get(format!("{base}{script}")).send().await.unwrap();
        assert_eq!(asset.status(), 200);
        assert_eq!(
            asset.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
    }
    let api = client
        .get(format!("{base}/api/v1/services"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401);
    let api = client
        .get(format!("{base}/api/v1/services"))
        .bearer_auth("readers")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 200);
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    // In a browser: the UI asks for the token, then searches with it.
    let report = run_browser(&base, &serde_json::json!({ "token": "readers" })).await;
    assert_eq!(report["failures"], serde_json::json!([]), "{report}");
    let token = &report["steps"]["token"];
    assert!(
        token["asked"].as_str().unwrap().contains("wants a token"),
        "{token}"
    );
    assert!(
        token["answered"]
            .as_str()
            .unwrap()
            .contains("No traces found"),
        "{token}"
    );
    let unknown = client
        .get(format!("{base}/api/v1/nothing"))
        .bearer_auth("readers")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    spanflow.stop().await.unwrap();
}

/// The edges a service-map step saw: (caller, callee, kind, calls, errors).
fn map_edges(step: &serde_json::Value) -> Vec<(String, String, String, u64, u64)> {
    step["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| {
            (
                edge["caller"].as_str().unwrap().to_string(),
                edge["callee"].as_str().unwrap().to_string(),
                edge["kind"].as_str().unwrap().to_string(),
                edge["calls"].as_u64().unwrap(),
                edge["errors"].as_u64().unwrap(),
            )
        })
        .collect()
}
