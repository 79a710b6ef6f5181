//! The watches against a scripted Kubernetes API server: kube-rs sends its real list and watch
//! requests over HTTP, and the server answers with recorded responses (`tests/fixtures/`),
//! phase by phase as the test advances the script.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use spanflow_agent::places::PlaceBook;
use spanflow_k8s::K8sConfig;
use spanflow_transport::{Label, PlaceRecord};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

const NODE: &str = "node-a";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}"))
        .unwrap_or_else(|error| panic!("fixture {name}: {error}"))
}

/// What the server answers for one collection, by phase.
struct Collection {
    path: &'static str,
    /// The field selector kube must send, if any.
    field_selector: Option<String>,
    /// Metadata-only lists and watches (`Accept: ...;as=PartialObjectMetadataList...`).
    metadata_only: bool,
    /// (from phase, list fixture): each list request gets the latest one whose phase has come.
    lists: Vec<(u32, &'static str)>,
    /// (phase, event): each watch gets the events whose phase has come, after the resource
    /// version it asked to watch from.
    events: Vec<(u32, u64, String)>,
    /// (from phase, resource version): from that phase on, open watches end and a watch from
    /// an older resource version gets a 410 Expired, as after the API server's compaction.
    expired: Option<(u32, u64)>,
}

impl Collection {
    fn new(path: &'static str, list: &'static str) -> Collection {
        Collection {
            path,
            field_selector: None,
            metadata_only: false,
            lists: vec![(1, list)],
            events: Vec::new(),
            expired: None,
        }
    }

    fn events(mut self, phase: u32, jsonl: &str) -> Collection {
        for line in fixture(jsonl)
            .lines()
            .filter(|line| !line.trim().is_empty())
        {
            let event: serde_json::Value = serde_json::from_str(line).expect("watch event json");
            let version = event["object"]["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|version| version.parse().ok())
                .expect("watch event with a resource version");
            self.events.push((phase, version, line.to_owned()));
        }
        self
    }

    fn is_expired(&self, phase: u32, from_version: u64) -> bool {
        self.expired
            .is_some_and(|(since, compacted)| phase >= since && from_version < compacted)
    }
}

struct Server {
    collections: Vec<Collection>,
    phase: watch::Sender<u32>,
    /// Every request, as `path?query`.
    requests: Mutex<Vec<String>>,
    /// List requests of pods answered with a 500 before the real answer.
    pod_lists_failing: Mutex<u32>,
}

fn script() -> Vec<Collection> {
    let pods = Collection {
        field_selector: Some(format!("spec.nodeName={NODE}")),
        lists: vec![(1, "pods-list.json"), (4, "pods-relist.json")],
        expired: Some((4, 1850)),
        ..Collection::new("/api/v1/pods", "")
    }
    .events(2, "pods-watch-2.jsonl")
    .events(3, "pods-watch-3.jsonl");
    let services = Collection::new("/api/v1/services", "services-list.json")
        .events(2, "services-watch-2.jsonl");
    let nodes = Collection {
        field_selector: Some(format!("metadata.name={NODE}")),
        ..Collection::new("/api/v1/nodes", "nodes-list.json")
    };
    let replica_sets = Collection {
        metadata_only: true,
        ..Collection::new("/apis/apps/v1/replicasets", "replicasets-list.json")
    };
    let jobs = Collection {
        metadata_only: true,
        ..Collection::new("/apis/batch/v1/jobs", "jobs-list.json")
    };
    vec![pods, services, nodes, replica_sets, jobs]
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16()
    });
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn answer(
    State(server): State<Arc<Server>>,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    server.requests.lock().unwrap().push(uri.to_string());
    let Some(collection) = server
        .collections
        .iter()
        .position(|collection| collection.path == uri.path())
    else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    let wanted = &server.collections[collection];
    if query.get("fieldSelector") != wanted.field_selector.as_ref() {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "unexpected field selector",
        );
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .unwrap_or_default();
    if accept.contains("as=PartialObjectMetadata") != wanted.metadata_only {
        return status(
            StatusCode::NOT_ACCEPTABLE,
            "NotAcceptable",
            "unexpected accept header",
        );
    }
    let phase = *server.phase.borrow();
    if query.get("watch").map(String::as_str) != Some("true") {
        if query.get("resourceVersion").map(String::as_str) != Some("0") {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "a list not from the cache",
            );
        }
        if wanted.path == "/api/v1/pods" {
            let mut failing = server.pod_lists_failing.lock().unwrap();
            if *failing > 0 {
                *failing -= 1;
                return status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "etcdserver: request timed out",
                );
            }
        }
        let (_, list) = wanted
            .lists
            .iter()
            .rev()
            .find(|(since, _)| *since <= phase)
            .expect("a list for the phase");
        return ([(header::CONTENT_TYPE, "application/json")], fixture(list)).into_response();
    }
    if query.get("allowWatchBookmarks").map(String::as_str) != Some("true") {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "watch without bookmarks",
        );
    }
    let Some(from_version) = query
        .get("resourceVersion")
        .and_then(|version| version.parse::<u64>().ok())
    else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "watch without a resource version",
        );
    };
    let (sender, receiver) = mpsc::channel::<Bytes>(16);
    tokio::spawn(stream_events(
        server.clone(),
        collection,
        from_version,
        sender,
    ));
    let body = futures::stream::unfold(receiver, |mut receiver| async move {
        let line = receiver.recv().await?;
        Some((Ok::<_, Infallible>(line), receiver))
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response()
}

/// Sends a watch's events as phases come, one JSON object a line, as the API server does.
async fn stream_events(
    server: Arc<Server>,
    collection: usize,
    from_version: u64,
    sender: mpsc::Sender<Bytes>,
) {
    let collection = &server.collections[collection];
    let mut phases = server.phase.subscribe();
    let mut sent_through = from_version;
    loop {
        let phase = *phases.borrow_and_update();
        if collection.is_expired(phase, sent_through) {
            if sent_through == from_version {
                let expired = fixture("watch-expired.json").replace(['\n', ' '], "");
                let _ = sender.send(Bytes::from(expired + "\n")).await;
            }
            // An open watch ends; the watcher watches again from the last version it saw.
            return;
        }
        for (event_phase, version, line) in &collection.events {
            if *event_phase <= phase && *version > sent_through {
                if sender.send(Bytes::from(format!("{line}\n"))).await.is_err() {
                    return;
                }
                sent_through = *version;
            }
        }
        tokio::select! {
            changed = phases.changed() => if changed.is_err() { return },
            _ = sender.closed() => return,
        }
    }
}

struct Cluster {
    server: Arc<Server>,
    book: Arc<PlaceBook>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Cluster {
    async fn start(pod_lists_failing: u32) -> Cluster {
        let (phase, _) = watch::channel(1);
        let server = Arc::new(Server {
            collections: script(),
            phase,
            requests: Mutex::new(Vec::new()),
            pod_lists_failing: Mutex::new(pod_lists_failing),
        });
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(server.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });

        let config = kube::Config::new(format!("http://{address}").parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let book = Arc::new(PlaceBook::new());
        let shutdown = CancellationToken::new();
        let config = K8sConfig {
            node_name: NODE.into(),
            cluster_name: "prod-eu".into(),
            labels: vec!["app".into(), "version".into(), "pool".into()],
        };
        let task = spanflow_k8s::spawn(client, config, book.clone(), shutdown.clone());
        Cluster {
            server,
            book,
            shutdown,
            task,
        }
    }

    fn advance(&self, phase: u32) {
        self.server.phase.send_replace(phase);
    }

    /// The live record of `ip`, once `check` holds for it.
    async fn live(&self, ip: &str, check: impl Fn(&PlaceRecord) -> bool) -> PlaceRecord {
        self.eventually(&format!("a live record of {ip}"), |book| {
            book.live()
                .into_iter()
                .find(|record| record.ip == ip && check(record))
        })
        .await
    }

    async fn eventually<T>(&self, what: &str, found: impl Fn(&PlaceBook) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(found) = found(&self.book) {
                return found;
            }
            if Instant::now() > deadline {
                panic!(
                    "no {what} in time\nlive: {:#?}\nrequests: {:#?}",
                    self.book.live(),
                    self.server.requests.lock().unwrap()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The record of `key` and `ip`, changed since `version` and ended.
    async fn ended(&self, key: &str, ip: &str, version: u64) -> PlaceRecord {
        self.eventually(&format!("end of {key}"), |book| {
            book.changes_since(version, false)
                .records
                .into_iter()
                .find(|record| record.key == key && record.ip == ip && record.until_us != 0)
        })
        .await
    }

    fn live_ips(&self) -> Vec<String> {
        let mut ips: Vec<String> = self
            .book
            .live()
            .into_iter()
            .map(|record| record.ip)
            .collect();
        ips.sort();
        ips
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the watch task stops when cancelled")
            .unwrap();
    }
}

fn label(key: &str, value: &str) -> Label {
    Label {
        key: key.into(),
        value: value.into(),
    }
}

fn us(rfc3339: &str) -> i64 {
    let seconds = match rfc3339 {
        "2025-06-01T08:00:01Z" => 1_748_764_801,
        "2025-06-01T08:00:05Z" => 1_748_764_805,
        "2025-06-01T09:30:00Z" => 1_748_770_200,
        "2025-06-01T09:31:01Z" => 1_748_770_261,
        "2025-05-20T12:00:00Z" => 1_747_742_400,
        "2025-05-01T00:05:00Z" => 1_746_057_900,
        other => panic!("no time for {other}"),
    };
    seconds * 1_000_000
}

const WEB_UID: &str = "3f1c2a9e-8d4b-4e6f-9a7c-1b2d3e4f5a01";
const DB_UID: &str = "3f1c2a9e-8d4b-4e6f-9a7c-1b2d3e4f5a02";
const DEBUG_UID: &str = "3f1c2a9e-8d4b-4e6f-9a7c-1b2d3e4f5a03";
const DEBUG_2_UID: &str = "3f1c2a9e-8d4b-4e6f-9a7c-1b2d3e4f5a08";
const WEB_2_UID: &str = "3f1c2a9e-8d4b-4e6f-9a7c-1b2d3e4f5a09";

#[tokio::test]
async fn the_book_follows_lists_watches_ip_reuse_and_a_relist_after_410() {
    let cluster = Cluster::start(0).await;

    // 1. The lists: the node's pods with their workloads and services, the cluster IPs, the
    // node.
    let web = cluster
        .live("10.244.1.11", |record| record.service == "web")
        .await;
    assert_eq!(
        web,
        PlaceRecord {
            key: format!("pod/{WEB_UID}"),
            ip: "10.244.1.11".into(),
            since_us: us("2025-06-01T08:00:01Z"),
            until_us: 0,
            pod: "web-7c9d8f6b5-abcde".into(),
            pod_ns: "shop".into(),
            pod_group: "web".into(),
            pod_group_type: "deployment".into(),
            pod_node: NODE.into(),
            pod_cluster: "prod-eu".into(),
            service: "web".into(),
            host: String::new(),
            region: "eu-west-1".into(),
            az: "eu-west-1b".into(),
            labels: vec![label("app", "web"), label("version", "v1")],
        }
    );
    let web_v6 = cluster.live("fd00:10:244:1::11", |_| true).await;
    assert_eq!(web_v6.key, web.key, "one record per pod IP");

    let db = cluster
        .live("10.244.1.12", |record| record.service == "db")
        .await;
    assert_eq!(
        (
            db.pod.as_str(),
            db.pod_group.as_str(),
            db.pod_group_type.as_str()
        ),
        ("db-0", "db", "statefulset")
    );
    assert_eq!(db.labels, vec![label("app", "db")]);
    let debug = cluster.live("10.244.1.13", |_| true).await;
    assert_eq!(
        (
            debug.pod_group.as_str(),
            debug.pod_group_type.as_str(),
            debug.service.as_str()
        ),
        ("debug", "pod", "")
    );
    let report = cluster
        .live("10.244.1.14", |record| record.pod_group_type == "cronjob")
        .await;
    assert_eq!(report.pod_group, "report");

    let web_service = cluster.live("10.96.0.20", |_| true).await;
    assert_eq!(
        web_service,
        PlaceRecord {
            key: "service/shop/web".into(),
            ip: "10.96.0.20".into(),
            since_us: us("2025-05-20T12:00:00Z"),
            service: "web".into(),
            pod_ns: "shop".into(),
            pod_cluster: "prod-eu".into(),
            ..PlaceRecord::default()
        }
    );
    cluster.live("10.96.0.1", |_| true).await;
    let node = cluster
        .live("192.168.10.11", |record| record.key.starts_with("node/"))
        .await;
    assert_eq!(
        node,
        PlaceRecord {
            key: format!("node/{NODE}"),
            ip: "192.168.10.11".into(),
            since_us: us("2025-05-01T00:05:00Z"),
            pod_node: NODE.into(),
            pod_cluster: "prod-eu".into(),
            host: NODE.into(),
            region: "eu-west-1".into(),
            az: "eu-west-1b".into(),
            labels: vec![label("pool", "general")],
            ..PlaceRecord::default()
        }
    );
    assert_eq!(
        cluster.live_ips(),
        vec![
            "10.244.1.11",
            "10.244.1.12",
            "10.244.1.13",
            "10.244.1.14",
            "10.96.0.1",
            "10.96.0.20",
            "192.168.10.11",
            "fd00:10:244:1::11"
        ],
        "no record for the host-network pod, the pending one, the finished one, the headless \
         service"
    );

    // 2. Watch events between bookmarks: a pending pod gets its IP (and a service that selects
    // it appears), a pod is deleted.
    let before = cluster.book.version();
    cluster.advance(2);
    let api = cluster
        .live("10.244.1.15", |record| record.service == "api")
        .await;
    assert_eq!(
        (
            api.pod.as_str(),
            api.pod_group.as_str(),
            api.pod_group_type.as_str()
        ),
        ("api-5f6d7c8b9-qwert", "api", "deployment")
    );
    assert_eq!(api.since_us, us("2025-06-01T08:00:05Z"));
    cluster
        .live("10.96.0.30", |record| record.service == "api")
        .await;
    let deleted = cluster
        .ended(&format!("pod/{DEBUG_UID}"), "10.244.1.13", before)
        .await;
    assert_eq!(
        deleted.until_us,
        us("2025-06-01T09:30:00Z"),
        "its deletion time"
    );
    assert!(!cluster.live_ips().contains(&"10.244.1.13".to_string()));

    // 3. A new pod with the deleted pod's IP: a record under its own key.
    let before = cluster.book.version();
    cluster.advance(3);
    let reused = cluster
        .live("10.244.1.13", |record| record.pod == "debug-2")
        .await;
    assert_eq!(reused.key, format!("pod/{DEBUG_2_UID}"));
    assert_eq!(reused.since_us, us("2025-06-01T09:31:01Z"));
    let changes = cluster.book.changes_since(before, false);
    assert!(
        !changes
            .records
            .iter()
            .any(|record| record.key == format!("pod/{DEBUG_UID}")),
        "the old pod's record stays as it ended"
    );

    // 4. The watch is closed and can no longer resume (410 Gone): the watcher lists again. The
    // pod deleted meanwhile ends; the pod created meanwhile appears.
    let before = cluster.book.version();
    cluster.advance(4);
    let web_2 = cluster
        .live("10.244.1.16", |record| record.service == "web")
        .await;
    assert_eq!(web_2.key, format!("pod/{WEB_2_UID}"));
    assert_eq!(web_2.pod_group, "web");
    cluster
        .ended(&format!("pod/{DB_UID}"), "10.244.1.12", before)
        .await;
    assert_eq!(
        cluster.live_ips(),
        vec![
            "10.244.1.11",
            "10.244.1.13",
            "10.244.1.14",
            "10.244.1.15",
            "10.244.1.16",
            "10.96.0.1",
            "10.96.0.20",
            "10.96.0.30",
            "192.168.10.11",
            "fd00:10:244:1::11"
        ]
    );
    let live_pods = cluster.book.live_keys("pod/");
    assert!(live_pods.contains(&format!("pod/{WEB_UID}")));
    assert!(!live_pods.contains(&format!("pod/{DB_UID}")));

    let requests = cluster.server.requests.lock().unwrap().clone();
    let pod_lists: Vec<&String> = requests
        .iter()
        .filter(|request| request.starts_with("/api/v1/pods?") && !request.contains("watch=true"))
        .collect();
    assert_eq!(pod_lists.len(), 2, "one list, one relist: {requests:#?}");
    assert!(pod_lists[0].contains("fieldSelector=spec.nodeName%3Dnode-a"));
    assert!(
        requests
            .iter()
            .any(|request| request.starts_with("/api/v1/pods?")
                && request.contains("watch=true")
                && request.contains("resourceVersion=1202")),
        "the watch resumed from the last bookmark before it expired: {requests:#?}"
    );
    cluster.stop().await;
}

#[tokio::test]
async fn a_failing_list_is_retried() {
    let cluster = Cluster::start(2).await;
    let web = cluster.live("10.244.1.11", |_| true).await;
    assert_eq!(web.pod, "web-7c9d8f6b5-abcde");
    let requests = cluster.server.requests.lock().unwrap().clone();
    let pod_lists = requests
        .iter()
        .filter(|request| request.starts_with("/api/v1/pods?") && !request.contains("watch=true"))
        .count();
    assert_eq!(pod_lists, 3, "two failures, then the list");
    cluster.stop().await;
}
