//! Watch events into the place book: what the agent keeps between events (its node's pods,
//! the services' selectors, the workload owners, the node) and the records rebuilt from it
//! whenever any of it changes. The book ignores a record equal to the one it holds.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::Event;
use spanflow_agent::places::PlaceBook;

use crate::records::{
    self, node_key, pod_key, service_key, Context, NodeFacts, OwnerRef, PodFacts, Resolved,
    ServiceFacts, NODE_PREFIX, POD_PREFIX, SERVICE_PREFIX,
};
use crate::K8sConfig;

/// A namespaced object's (namespace, name).
type ObjectName = (String, String);

/// ReplicaSets or Jobs by name, each with its controller.
type Owners = HashMap<ObjectName, Option<OwnerRef>>;

/// What each kind's relist has named so far; `None` outside a relist.
#[derive(Default)]
struct Relists {
    pods: Option<HashSet<String>>,
    services: Option<HashSet<ObjectName>>,
    nodes: Option<HashSet<String>>,
    replica_sets: Option<HashSet<ObjectName>>,
    jobs: Option<HashSet<ObjectName>>,
}

/// A step of a relist, or a change to one object.
enum Step<T> {
    Start,
    Listed(T),
    Done,
    Applied(T),
    Deleted(T),
}

impl<T> Step<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Step<U> {
        match self {
            Step::Start => Step::Start,
            Step::Listed(object) => Step::Listed(f(object)),
            Step::Done => Step::Done,
            Step::Applied(object) => Step::Applied(f(object)),
            Step::Deleted(object) => Step::Deleted(f(object)),
        }
    }
}

fn step<K>(event: Event<K>) -> Step<K> {
    match event {
        Event::Init => Step::Start,
        Event::InitApply(object) => Step::Listed(object),
        Event::InitDone => Step::Done,
        Event::Apply(object) => Step::Applied(object),
        Event::Delete(object) => Step::Deleted(object),
    }
}

pub(crate) struct Tracker {
    config: K8sConfig,
    book: Arc<PlaceBook>,
    /// The live pods on the node that do not use the host's network, by uid.
    pods: HashMap<String, PodFacts>,
    /// By namespace, then name: the first service that selects a pod is the first by name.
    services: BTreeMap<String, BTreeMap<String, ServiceFacts>>,
    node: Option<NodeFacts>,
    replica_sets: Owners,
    jobs: Owners,
    relists: Relists,
}

impl Tracker {
    pub(crate) fn new(config: K8sConfig, book: Arc<PlaceBook>) -> Tracker {
        Tracker {
            config,
            book,
            pods: HashMap::new(),
            services: BTreeMap::new(),
            node: None,
            replica_sets: HashMap::new(),
            jobs: HashMap::new(),
            relists: Relists::default(),
        }
    }

    pub(crate) fn pod_event(&mut self, event: Event<Pod>) {
        match step(event) {
            Step::Start => self.relists.pods = Some(HashSet::new()),
            Step::Listed(pod) => {
                let Some(facts) = PodFacts::from_pod(&pod) else {
                    return;
                };
                if let Some(named) = &mut self.relists.pods {
                    named.insert(facts.uid.clone());
                }
                self.apply_pod(facts);
            }
            Step::Done => {
                let named = self.relists.pods.take().unwrap_or_default();
                self.pods.retain(|uid, _| named.contains(uid));
                for key in self.book.live_keys(POD_PREFIX) {
                    if !named.contains(&key[POD_PREFIX.len()..]) {
                        self.book.end(&key, 0);
                    }
                }
            }
            Step::Applied(pod) => {
                if let Some(facts) = PodFacts::from_pod(&pod) {
                    self.apply_pod(facts);
                }
            }
            Step::Deleted(pod) => {
                if let Some(facts) = PodFacts::from_pod(&pod) {
                    self.pods.remove(&facts.uid);
                    self.book
                        .end(&pod_key(&facts.uid), facts.until_us(records::now_us()));
                }
            }
        }
    }

    fn apply_pod(&mut self, mut facts: PodFacts) {
        let key = pod_key(&facts.uid);
        if facts.host_network {
            // Its IP is the node's; `hostNetwork` cannot change, so it never had records.
            self.pods.remove(&facts.uid);
            return;
        }
        if facts.finished {
            self.pods.remove(&facts.uid);
            self.book.end(&key, facts.until_us(records::now_us()));
            return;
        }
        if let Some(held) = self.pods.get(&facts.uid) {
            if held.controller == facts.controller {
                facts.workload = held.workload.clone();
            }
        }
        let uid = facts.uid.clone();
        self.pods.insert(uid.clone(), facts);
        self.write_pod(&uid);
    }

    /// Builds the pod's records from what is known now and sets them.
    fn write_pod(&mut self, uid: &str) {
        let Some(pod) = self.pods.get_mut(uid) else {
            return;
        };
        let namespace = pod.namespace.clone();
        let replica_sets = &self.replica_sets;
        let jobs = &self.jobs;
        let resolved = records::resolve_workload(pod, |kind, name| {
            let owners = if kind == "Job" { jobs } else { replica_sets };
            owners.get(&(namespace.clone(), name.to_owned())).cloned()
        });
        let workload = match resolved {
            Resolved::Known(workload) => {
                pod.workload = Some(workload.clone());
                workload
            }
            Resolved::Guessed(guess) => pod.workload.clone().unwrap_or(guess),
        };
        let service = self
            .services
            .get(&pod.namespace)
            .and_then(|services| records::service_of(&pod.labels, services.values()))
            .map(|service| service.name.as_str())
            .unwrap_or_default();
        let context = Context {
            cluster_name: &self.config.cluster_name,
            label_keys: &self.config.labels,
            node: self.node.as_ref(),
        };
        let records = records::pod_records(pod, &workload, service, &context);
        self.book.set(&pod_key(uid), records);
    }

    /// Rebuilds the records of the pods in `namespace` (every pod when `None`) that `filter`
    /// picks.
    fn write_pods(&mut self, namespace: Option<&str>, filter: impl Fn(&PodFacts) -> bool) {
        let uids: Vec<String> = self
            .pods
            .values()
            .filter(|pod| namespace.is_none_or(|namespace| pod.namespace == namespace))
            .filter(|pod| filter(pod))
            .map(|pod| pod.uid.clone())
            .collect();
        for uid in uids {
            self.write_pod(&uid);
        }
    }

    pub(crate) fn service_event(&mut self, event: Event<Service>) {
        match step(event) {
            Step::Start => self.relists.services = Some(HashSet::new()),
            Step::Listed(service) => {
                let facts = ServiceFacts::from_service(&service);
                if let Some(named) = &mut self.relists.services {
                    named.insert((facts.namespace.clone(), facts.name.clone()));
                }
                self.apply_service(facts);
            }
            Step::Done => {
                let named = self.relists.services.take().unwrap_or_default();
                for services in self.services.values_mut() {
                    services.retain(|_, service| {
                        named.contains(&(service.namespace.clone(), service.name.clone()))
                    });
                }
                self.services.retain(|_, services| !services.is_empty());
                let named_keys: HashSet<String> = named
                    .iter()
                    .map(|(namespace, name)| service_key(namespace, name))
                    .collect();
                for key in self.book.live_keys(SERVICE_PREFIX) {
                    if !named_keys.contains(&key) {
                        self.book.end(&key, 0);
                    }
                }
                self.write_pods(None, |_| true);
            }
            Step::Applied(service) => self.apply_service(ServiceFacts::from_service(&service)),
            Step::Deleted(service) => {
                let facts = ServiceFacts::from_service(&service);
                if let Some(services) = self.services.get_mut(&facts.namespace) {
                    services.remove(&facts.name);
                    if services.is_empty() {
                        self.services.remove(&facts.namespace);
                    }
                }
                self.book.end(&facts.key(), 0);
                self.write_pods(Some(&facts.namespace), |_| true);
            }
        }
    }

    fn apply_service(&mut self, facts: ServiceFacts) {
        self.book.set(
            &facts.key(),
            records::service_records(&facts, &self.config.cluster_name),
        );
        let namespace = facts.namespace.clone();
        let held = self
            .services
            .entry(namespace.clone())
            .or_default()
            .insert(facts.name.clone(), facts.clone());
        if held.is_none_or(|held| held.selector != facts.selector) {
            self.write_pods(Some(&namespace), |_| true);
        }
    }

    pub(crate) fn node_event(&mut self, event: Event<Node>) {
        match step(event) {
            Step::Start => self.relists.nodes = Some(HashSet::new()),
            Step::Listed(node) => {
                let facts = NodeFacts::from_node(&node, &self.config.labels);
                if let Some(named) = &mut self.relists.nodes {
                    named.insert(facts.name.clone());
                }
                self.apply_node(facts);
            }
            Step::Done => {
                let named = self.relists.nodes.take().unwrap_or_default();
                for key in self.book.live_keys(NODE_PREFIX) {
                    if !named.contains(&key[NODE_PREFIX.len()..]) {
                        self.book.end(&key, 0);
                    }
                }
            }
            Step::Applied(node) => {
                let facts = NodeFacts::from_node(&node, &self.config.labels);
                self.apply_node(facts);
            }
            Step::Deleted(node) => {
                // The pods keep the region and zone they were in.
                let name = node.metadata.name.unwrap_or_default();
                self.book.end(&node_key(&name), 0);
            }
        }
    }

    fn apply_node(&mut self, facts: NodeFacts) {
        if facts.name != self.config.node_name {
            return;
        }
        self.book.set(
            &node_key(&facts.name),
            records::node_records(&facts, &self.config.cluster_name),
        );
        let moved = self
            .node
            .as_ref()
            .is_none_or(|held| (&held.region, &held.az) != (&facts.region, &facts.az));
        self.node = Some(facts);
        if moved {
            self.write_pods(None, |_| true);
        }
    }

    pub(crate) fn replica_set_event(&mut self, event: Event<PartialObjectMeta<ReplicaSet>>) {
        self.owner_event("ReplicaSet", step(event).map(Owner::from_metadata));
    }

    pub(crate) fn job_event(&mut self, event: Event<PartialObjectMeta<Job>>) {
        self.owner_event("Job", step(event).map(Owner::from_metadata));
    }

    /// A ReplicaSet or a Job, which only the pods it controls care about.
    fn owner_event(&mut self, kind: &'static str, step: Step<Owner>) {
        let (owners, relist) = if kind == "Job" {
            (&mut self.jobs, &mut self.relists.jobs)
        } else {
            (&mut self.replica_sets, &mut self.relists.replica_sets)
        };
        let changed = match step {
            Step::Start => {
                *relist = Some(HashSet::new());
                return;
            }
            Step::Listed(owner) => {
                if let Some(named) = relist {
                    named.insert(owner.name.clone());
                }
                let held = owners.insert(owner.name.clone(), owner.controller.clone());
                (held != Some(owner.controller)).then_some(owner.name)
            }
            Step::Done => {
                let named = relist.take().unwrap_or_default();
                owners.retain(|name, _| named.contains(name));
                self.write_pods(None, |_| true);
                return;
            }
            Step::Applied(owner) => {
                let held = owners.insert(owner.name.clone(), owner.controller.clone());
                (held != Some(owner.controller)).then_some(owner.name)
            }
            Step::Deleted(owner) => {
                // Its pods keep the workload they were given.
                owners.remove(&owner.name);
                None
            }
        };
        if let Some((namespace, name)) = changed {
            self.write_pods(Some(&namespace), |pod| {
                pod.controller
                    .as_ref()
                    .is_some_and(|controller| controller.kind == kind && controller.name == name)
            });
        }
    }
}

/// What the agent keeps of a ReplicaSet or Job.
struct Owner {
    name: ObjectName,
    controller: Option<OwnerRef>,
}

impl Owner {
    fn from_metadata<K>(object: PartialObjectMeta<K>) -> Owner {
        Owner {
            controller: OwnerRef::controller_of(&object.metadata),
            name: (
                object.metadata.namespace.unwrap_or_default(),
                object.metadata.name.unwrap_or_default(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use spanflow_transport::PlaceRecord;

    use super::*;

    fn tracker() -> (Tracker, Arc<PlaceBook>) {
        let book = Arc::new(PlaceBook::new());
        let config = K8sConfig {
            node_name: "node-a".into(),
            cluster_name: "prod".into(),
            labels: vec!["app".into()],
        };
        (Tracker::new(config, book.clone()), book)
    }

    fn object<K: serde::de::DeserializeOwned>(value: serde_json::Value) -> K {
        serde_json::from_value(value).expect("object json")
    }

    fn pod(uid: &str, ip: &str, labels: serde_json::Value, owner: Option<(&str, &str)>) -> Pod {
        let owners: Vec<_> = owner
            .into_iter()
            .map(|(kind, name)| json!({"apiVersion": "v1", "kind": kind, "name": name, "uid": "o", "controller": true}))
            .collect();
        object(json!({
            "metadata": {"name": format!("pod-{uid}"), "namespace": "shop", "uid": uid,
                         "labels": labels, "ownerReferences": owners},
            "spec": {"nodeName": "node-a", "containers": []},
            "status": {"phase": "Running", "podIP": ip}
        }))
    }

    fn service(name: &str, selector: serde_json::Value, ip: &str) -> Service {
        object(json!({
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"selector": selector, "clusterIP": ip}
        }))
    }

    fn owner_meta<K>(name: &str, controller: Option<(&str, &str)>) -> PartialObjectMeta<K> {
        let owners: Vec<_> = controller
            .into_iter()
            .map(|(kind, name)| json!({"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "d", "controller": true}))
            .collect();
        object(json!({
            "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"name": name, "namespace": "shop", "ownerReferences": owners}
        }))
    }

    fn record(book: &PlaceBook, ip: &str) -> Option<PlaceRecord> {
        book.live().into_iter().find(|record| record.ip == ip)
    }

    fn workload(book: &PlaceBook, ip: &str) -> (String, String) {
        let record = record(book, ip).expect("a live record");
        (record.pod_group, record.pod_group_type)
    }

    fn pair(name: &str, kind: &str) -> (String, String) {
        (name.to_owned(), kind.to_owned())
    }

    #[test]
    fn a_pod_takes_its_workload_once_its_owner_is_known_and_keeps_it() {
        let (mut tracker, book) = tracker();
        let the_pod = pod("u1", "10.1.0.1", json!({}), Some(("ReplicaSet", "web-abc")));
        tracker.pod_event(Event::Apply(the_pod.clone()));
        assert_eq!(workload(&book, "10.1.0.1"), pair("web-abc", "replicaset"));

        tracker.replica_set_event(Event::Apply(owner_meta(
            "web-abc",
            Some(("Deployment", "web")),
        )));
        assert_eq!(workload(&book, "10.1.0.1"), pair("web", "deployment"));

        tracker.replica_set_event(Event::Delete(owner_meta("web-abc", None)));
        tracker.pod_event(Event::Apply(the_pod));
        assert_eq!(
            workload(&book, "10.1.0.1"),
            pair("web", "deployment"),
            "an owner deleted before its pod changes nothing"
        );

        tracker.job_event(Event::Apply(owner_meta("batch-1", None)));
        tracker.pod_event(Event::Apply(pod(
            "u2",
            "10.1.0.2",
            json!({}),
            Some(("Job", "batch-1")),
        )));
        assert_eq!(workload(&book, "10.1.0.2"), pair("batch-1", "job"));
    }

    #[test]
    fn pods_follow_the_services_that_select_them() {
        let (mut tracker, book) = tracker();
        tracker.pod_event(Event::Apply(pod(
            "u1",
            "10.1.0.1",
            json!({"app": "web"}),
            None,
        )));
        assert_eq!(record(&book, "10.1.0.1").unwrap().service, "");

        tracker.service_event(Event::Apply(service(
            "web",
            json!({"app": "web"}),
            "10.96.0.5",
        )));
        assert_eq!(record(&book, "10.1.0.1").unwrap().service, "web");
        assert_eq!(record(&book, "10.96.0.5").unwrap().key, "service/shop/web");

        tracker.service_event(Event::Apply(service(
            "web",
            json!({"app": "api"}),
            "10.96.0.5",
        )));
        assert_eq!(record(&book, "10.1.0.1").unwrap().service, "");

        tracker.service_event(Event::Apply(service(
            "front",
            json!({"app": "web"}),
            "10.96.0.6",
        )));
        assert_eq!(record(&book, "10.1.0.1").unwrap().service, "front");
        tracker.service_event(Event::Delete(service(
            "front",
            json!({"app": "web"}),
            "10.96.0.6",
        )));
        assert_eq!(record(&book, "10.1.0.1").unwrap().service, "");
        assert_eq!(
            record(&book, "10.96.0.6"),
            None,
            "a deleted service's IP ends"
        );

        // A relist that no longer names `web` ends it.
        tracker.service_event(Event::Init);
        tracker.service_event(Event::InitApply(service(
            "db",
            json!({"app": "db"}),
            "10.96.0.7",
        )));
        tracker.service_event(Event::InitDone);
        assert_eq!(book.live_keys("service/"), vec!["service/shop/db"]);
    }

    #[test]
    fn the_node_gives_its_pods_their_region_and_zone() {
        let (mut tracker, book) = tracker();
        tracker.pod_event(Event::Apply(pod("u1", "10.1.0.1", json!({}), None)));
        let node = |zone: &str| -> Node {
            object(json!({
                "metadata": {"name": "node-a", "labels": {
                    "topology.kubernetes.io/region": "eu-west-1",
                    "topology.kubernetes.io/zone": zone, "app": "ignored-on-nodes-unless-configured"
                }},
                "status": {"addresses": [{"type": "InternalIP", "address": "192.168.0.1"}]}
            }))
        };
        tracker.node_event(Event::Apply(node("eu-west-1a")));
        let pod_record = record(&book, "10.1.0.1").unwrap();
        assert_eq!(
            (pod_record.region.as_str(), pod_record.az.as_str()),
            ("eu-west-1", "eu-west-1a")
        );
        tracker.node_event(Event::Apply(node("eu-west-1c")));
        assert_eq!(record(&book, "10.1.0.1").unwrap().az, "eu-west-1c");
        assert_eq!(record(&book, "192.168.0.1").unwrap().az, "eu-west-1c");

        let other: Node = object(json!({"metadata": {"name": "node-b"},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.168.0.2"}]}}));
        tracker.node_event(Event::Apply(other));
        assert_eq!(
            record(&book, "192.168.0.2"),
            None,
            "only the agent's own node"
        );
    }

    #[test]
    fn finished_pods_end_and_host_network_pods_have_no_record() {
        let (mut tracker, book) = tracker();
        let mut the_pod = pod("u1", "10.1.0.1", json!({}), None);
        tracker.pod_event(Event::Apply(the_pod.clone()));
        assert!(record(&book, "10.1.0.1").is_some());
        the_pod.status.as_mut().unwrap().phase = Some("Failed".into());
        tracker.pod_event(Event::Apply(the_pod));
        assert_eq!(record(&book, "10.1.0.1"), None);
        assert!(book.live_keys("pod/").is_empty());

        let mut host = pod("u2", "192.168.0.1", json!({}), None);
        host.spec.as_mut().unwrap().host_network = Some(true);
        tracker.pod_event(Event::Apply(host));
        assert!(book.live().is_empty());
    }
}
