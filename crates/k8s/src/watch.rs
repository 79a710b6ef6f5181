//! The watches: one kube-rs watcher per kind (pods on the node, services, the node,
//! ReplicaSets' and Jobs' metadata), merged into one task that owns the [`Tracker`], so that
//! events apply one at a time and in the order each watch delivers them.

use std::sync::Arc;

use futures::stream::{BoxStream, SelectAll};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use spanflow_agent::places::PlaceBook;
use tokio_util::sync::CancellationToken;

use crate::apply::Tracker;
use spanflow_model::metric_names::{AGENT_K8S_EVENTS, AGENT_K8S_WATCH_ERRORS};

use crate::K8sConfig;

/// One watch event, of any kind (boxed: objects are large, and errors small).
enum Change {
    Pod(Box<Event<Pod>>),
    Service(Box<Event<Service>>),
    Node(Box<Event<Node>>),
    ReplicaSet(Box<Event<PartialObjectMeta<ReplicaSet>>>),
    Job(Box<Event<PartialObjectMeta<Job>>>),
    Failed {
        kind: &'static str,
        error: watcher::Error,
    },
}

pub(crate) async fn run(
    client: kube::Client,
    config: K8sConfig,
    book: Arc<PlaceBook>,
    shutdown: CancellationToken,
) {
    let mut changes = changes(&client, &config);
    let mut tracker = Tracker::new(config, book);
    loop {
        let change = tokio::select! {
            _ = shutdown.cancelled() => return,
            change = changes.next() => change,
        };
        // The watchers retry for ever; their streams do not end.
        let Some(change) = change else { return };
        apply(&mut tracker, change);
    }
}

fn apply(tracker: &mut Tracker, change: Change) {
    match change {
        Change::Pod(event) => {
            count("pod", &event);
            tracker.pod_event(*event);
        }
        Change::Service(event) => {
            count("service", &event);
            tracker.service_event(*event);
        }
        Change::Node(event) => {
            count("node", &event);
            tracker.node_event(*event);
        }
        Change::ReplicaSet(event) => {
            count("replicaset", &event);
            tracker.replica_set_event(*event);
        }
        Change::Job(event) => {
            count("job", &event);
            tracker.job_event(*event);
        }
        Change::Failed { kind, error } => {
            metrics::counter!(AGENT_K8S_WATCH_ERRORS, "kind" => kind).increment(1);
            if matches!(&error, watcher::Error::WatchError(status) if status.code == 410) {
                // The API server no longer holds the version the watch resumed from, as
                // happens after a long disconnection: the watcher lists again.
                tracing::info!(kind, %error, "kubernetes watch expired, listing again");
            } else {
                tracing::warn!(kind, %error, "kubernetes watch failed, retrying");
            }
        }
    }
}

fn count<K>(kind: &'static str, event: &Event<K>) {
    if matches!(
        event,
        Event::Apply(_) | Event::Delete(_) | Event::InitApply(_)
    ) {
        metrics::counter!(AGENT_K8S_EVENTS, "kind" => kind).increment(1);
    }
}

fn changes(client: &kube::Client, config: &K8sConfig) -> SelectAll<BoxStream<'static, Change>> {
    // Lists are served from the API server's cache (resourceVersion=0), in one page (kube
    // sends no resourceVersion with a page size), as the kubelet's are: every node runs an
    // agent, and their relists after an API server restart must not all reach etcd.
    let mut watch_config = watcher::Config::default().any_semantic();
    watch_config.page_size = None;
    let on_node = watch_config
        .clone()
        .fields(&format!("spec.nodeName={}", config.node_name));
    let the_node = watch_config
        .clone()
        .fields(&format!("metadata.name={}", config.node_name));
    let mut changes = SelectAll::new();
    changes.push(watch(
        Api::<Pod>::all(client.clone()),
        on_node,
        "pod",
        Change::Pod,
    ));
    changes.push(watch(
        Api::<Service>::all(client.clone()),
        watch_config.clone(),
        "service",
        Change::Service,
    ));
    changes.push(watch(
        Api::<Node>::all(client.clone()),
        the_node,
        "node",
        Change::Node,
    ));
    changes.push(watch(
        Api::<PartialObjectMeta<ReplicaSet>>::all(client.clone()),
        watch_config.clone(),
        "replicaset",
        Change::ReplicaSet,
    ));
    changes.push(watch(
        Api::<PartialObjectMeta<Job>>::all(client.clone()),
        watch_config,
        "job",
        Change::Job,
    ));
    changes
}

fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
    kind: &'static str,
    change: fn(Box<Event<K>>) -> Change,
) -> BoxStream<'static, Change>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher::watcher(api, config)
        .default_backoff()
        .map(move |event| match event {
            Ok(event) => change(Box::new(event)),
            Err(error) => Change::Failed { kind, error },
        })
        .boxed()
}
