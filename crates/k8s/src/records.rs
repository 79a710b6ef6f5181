//! From Kubernetes objects to place records: the little the agent keeps of each object, the
//! workload that owns a pod, the service that selects it, and the records themselves.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use spanflow_transport::{Label, PlaceRecord};

pub(crate) const POD_PREFIX: &str = "pod/";
pub(crate) const SERVICE_PREFIX: &str = "service/";
pub(crate) const NODE_PREFIX: &str = "node/";

const REGION_LABEL: &str = "topology.kubernetes.io/region";
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// The label the Deployment controller puts on the pods of each of its ReplicaSets, whose
/// names it makes as `<deployment>-<hash>`.
const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

pub(crate) fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_micros() as i64)
        .unwrap_or_default()
}

fn time_us(time: &Time) -> i64 {
    time.0.as_microsecond()
}

/// The controller of an object, from its owner references.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OwnerRef {
    pub kind: String,
    pub name: String,
}

impl OwnerRef {
    pub(crate) fn controller_of(metadata: &ObjectMeta) -> Option<OwnerRef> {
        metadata
            .owner_references
            .iter()
            .flatten()
            .find(|owner: &&OwnerReference| owner.controller == Some(true))
            .map(|owner| OwnerRef {
                kind: owner.kind.clone(),
                name: owner.name.clone(),
            })
    }
}

/// A pod's workload: what `pod_group` and `pod_group_type` say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Workload {
    pub name: String,
    /// `deployment`, `statefulset`, `daemonset`, `replicaset`, `job`, `cronjob`, `pod`, or
    /// the lowercased kind of another controller.
    pub kind: String,
}

impl Workload {
    fn new(name: &str, kind: &str) -> Workload {
        Workload {
            name: name.to_owned(),
            kind: kind.to_ascii_lowercase(),
        }
    }
}

/// What a pod's workload is, and whether it was read from the owner objects themselves or
/// only guessed while they are not known yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Resolved {
    Known(Workload),
    Guessed(Workload),
}

/// What the agent keeps of a pod on its node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PodFacts {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub node_name: String,
    pub labels: BTreeMap<String, String>,
    pub ips: Vec<String>,
    pub since_us: i64,
    pub controller: Option<OwnerRef>,
    /// Its IP is the node's, which the node's records hold.
    pub host_network: bool,
    /// Succeeded or Failed: the pod let its IP go.
    pub finished: bool,
    pub deletion_us: Option<i64>,
    /// The workload once read from the owner objects: kept while the pod's controller stays
    /// the same, so that an owner deleted before its pods does not change their records.
    pub workload: Option<Workload>,
}

impl PodFacts {
    pub(crate) fn from_pod(pod: &Pod) -> Option<PodFacts> {
        let metadata = &pod.metadata;
        let uid = metadata.uid.clone().filter(|uid| !uid.is_empty())?;
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let mut ips: Vec<String> = Vec::new();
        let listed = status.and_then(|status| status.pod_ips.as_ref());
        for ip in listed.into_iter().flatten().map(|pod_ip| &pod_ip.ip) {
            push_address(&mut ips, ip);
        }
        if ips.is_empty() {
            if let Some(ip) = status.and_then(|status| status.pod_ip.as_ref()) {
                push_address(&mut ips, ip);
            }
        }
        let phase = status.and_then(|status| status.phase.as_deref());
        let since_us = status
            .and_then(|status| status.start_time.as_ref())
            .or(metadata.creation_timestamp.as_ref())
            .map(time_us)
            .unwrap_or_default();
        Some(PodFacts {
            uid,
            name: metadata.name.clone().unwrap_or_default(),
            namespace: metadata.namespace.clone().unwrap_or_default(),
            node_name: spec
                .and_then(|spec| spec.node_name.clone())
                .unwrap_or_default(),
            labels: metadata.labels.clone().unwrap_or_default(),
            ips,
            since_us,
            controller: OwnerRef::controller_of(metadata),
            host_network: spec.and_then(|spec| spec.host_network) == Some(true),
            finished: matches!(phase, Some("Succeeded" | "Failed")),
            deletion_us: metadata.deletion_timestamp.as_ref().map(time_us),
            workload: None,
        })
    }

    /// When the pod let its IP go, for one deleted or finished at `now_us`: its deletion time
    /// when that is earlier (the deletion time of a graceful delete lies ahead).
    pub(crate) fn until_us(&self, now_us: i64) -> i64 {
        self.deletion_us
            .map_or(now_us, |deletion| deletion.min(now_us))
    }
}

/// What the agent keeps of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServiceFacts {
    pub name: String,
    pub namespace: String,
    pub selector: BTreeMap<String, String>,
    pub cluster_ips: Vec<String>,
    pub since_us: i64,
}

impl ServiceFacts {
    pub(crate) fn from_service(service: &Service) -> ServiceFacts {
        let metadata = &service.metadata;
        let spec = service.spec.as_ref();
        let mut cluster_ips = Vec::new();
        let listed = spec.and_then(|spec| spec.cluster_ips.as_ref());
        for ip in listed.into_iter().flatten() {
            push_address(&mut cluster_ips, ip);
        }
        if cluster_ips.is_empty() {
            if let Some(ip) = spec.and_then(|spec| spec.cluster_ip.as_ref()) {
                push_address(&mut cluster_ips, ip);
            }
        }
        ServiceFacts {
            name: metadata.name.clone().unwrap_or_default(),
            namespace: metadata.namespace.clone().unwrap_or_default(),
            selector: spec
                .and_then(|spec| spec.selector.clone())
                .unwrap_or_default(),
            cluster_ips,
            since_us: metadata
                .creation_timestamp
                .as_ref()
                .map(time_us)
                .unwrap_or_default(),
        }
    }

    pub(crate) fn key(&self) -> String {
        service_key(&self.namespace, &self.name)
    }
}

pub(crate) fn service_key(namespace: &str, name: &str) -> String {
    format!("{SERVICE_PREFIX}{namespace}/{name}")
}

pub(crate) fn pod_key(uid: &str) -> String {
    format!("{POD_PREFIX}{uid}")
}

pub(crate) fn node_key(name: &str) -> String {
    format!("{NODE_PREFIX}{name}")
}

/// What the agent keeps of its node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NodeFacts {
    pub name: String,
    pub region: String,
    pub az: String,
    /// The configured label keys present on the node, sorted by key.
    pub labels: Vec<Label>,
    /// InternalIP and ExternalIP addresses.
    pub addresses: Vec<String>,
    pub since_us: i64,
}

impl NodeFacts {
    pub(crate) fn from_node(node: &Node, label_keys: &[String]) -> NodeFacts {
        let metadata = &node.metadata;
        let no_labels = BTreeMap::new();
        let labels = metadata.labels.as_ref().unwrap_or(&no_labels);
        let mut addresses = Vec::new();
        let listed = node
            .status
            .as_ref()
            .and_then(|status| status.addresses.as_ref());
        for address in listed.into_iter().flatten() {
            if matches!(address.type_.as_str(), "InternalIP" | "ExternalIP") {
                push_address(&mut addresses, &address.address);
            }
        }
        NodeFacts {
            name: metadata.name.clone().unwrap_or_default(),
            region: labels.get(REGION_LABEL).cloned().unwrap_or_default(),
            az: labels.get(ZONE_LABEL).cloned().unwrap_or_default(),
            labels: chosen_labels(labels, label_keys),
            addresses,
            since_us: metadata
                .creation_timestamp
                .as_ref()
                .map(time_us)
                .unwrap_or_default(),
        }
    }
}

/// Adds an address once, leaving out the empty one and the `None` of headless services.
fn push_address(addresses: &mut Vec<String>, address: &str) {
    let address = address.trim();
    if address.is_empty() || address == "None" || addresses.iter().any(|held| held == address) {
        return;
    }
    addresses.push(address.to_owned());
}

/// The configured keys present in `labels`, sorted by key.
pub(crate) fn chosen_labels(labels: &BTreeMap<String, String>, keys: &[String]) -> Vec<Label> {
    let mut chosen: Vec<Label> = keys
        .iter()
        .filter_map(|key| {
            labels.get(key).map(|value| Label {
                key: key.clone(),
                value: value.clone(),
            })
        })
        .collect();
    chosen.sort_by(|a, b| a.key.cmp(&b.key));
    chosen.dedup_by(|a, b| a.key == b.key);
    chosen
}

/// The workload of `pod`. `owner_of(kind, name)` tells what is known of a ReplicaSet or Job in
/// the pod's namespace: `None` when the object is not known (yet), `Some(None)` when it has no
/// controller, else its controller.
pub(crate) fn resolve_workload(
    pod: &PodFacts,
    owner_of: impl Fn(&str, &str) -> Option<Option<OwnerRef>>,
) -> Resolved {
    let Some(controller) = &pod.controller else {
        return Resolved::Known(Workload::new(&pod.name, "pod"));
    };
    match controller.kind.as_str() {
        // A static pod's mirror is owned by its node, which is no workload.
        "Node" => Resolved::Known(Workload::new(&pod.name, "pod")),
        "ReplicaSet" | "Job" => match owner_of(&controller.kind, &controller.name) {
            Some(Some(owner)) => Resolved::Known(Workload::new(&owner.name, &owner.kind)),
            Some(None) => Resolved::Known(Workload::new(&controller.name, &controller.kind)),
            None => Resolved::Guessed(guess_workload(pod, controller)),
        },
        _ => Resolved::Known(Workload::new(&controller.name, &controller.kind)),
    }
}

/// The workload of a pod whose ReplicaSet or Job is not known yet: the Deployment whose name
/// the ReplicaSet's carries, when the pod has the Deployment controller's hash label that ends
/// that name; else the owner itself.
fn guess_workload(pod: &PodFacts, controller: &OwnerRef) -> Workload {
    if controller.kind == "ReplicaSet" {
        let deployment = pod
            .labels
            .get(POD_TEMPLATE_HASH_LABEL)
            .filter(|hash| !hash.is_empty())
            .and_then(|hash| controller.name.strip_suffix(hash.as_str()))
            .and_then(|prefix| prefix.strip_suffix('-'))
            .filter(|name| !name.is_empty());
        if let Some(deployment) = deployment {
            return Workload::new(deployment, "deployment");
        }
    }
    Workload::new(&controller.name, &controller.kind)
}

/// A service's selector selects a pod when it names at least one label and the pod has every
/// label it names.
pub(crate) fn selects(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    !selector.is_empty()
        && selector
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
}

/// The first service, by name, of those in the pod's namespace that select it.
pub(crate) fn service_of<'a>(
    pod_labels: &BTreeMap<String, String>,
    services_in_namespace: impl IntoIterator<Item = &'a ServiceFacts>,
) -> Option<&'a ServiceFacts> {
    services_in_namespace
        .into_iter()
        .filter(|service| selects(&service.selector, pod_labels))
        .min_by(|a, b| a.name.cmp(&b.name))
}

/// What the records of every place share.
pub(crate) struct Context<'a> {
    pub cluster_name: &'a str,
    pub label_keys: &'a [String],
    pub node: Option<&'a NodeFacts>,
}

pub(crate) fn pod_records(
    pod: &PodFacts,
    workload: &Workload,
    service: &str,
    context: &Context<'_>,
) -> Vec<PlaceRecord> {
    let labels = chosen_labels(&pod.labels, context.label_keys);
    pod.ips
        .iter()
        .map(|ip| PlaceRecord {
            key: pod_key(&pod.uid),
            ip: ip.clone(),
            since_us: pod.since_us,
            until_us: 0,
            pod: pod.name.clone(),
            pod_ns: pod.namespace.clone(),
            pod_group: workload.name.clone(),
            pod_group_type: workload.kind.clone(),
            pod_node: pod.node_name.clone(),
            pod_cluster: context.cluster_name.to_owned(),
            service: service.to_owned(),
            host: String::new(),
            region: context
                .node
                .map(|node| node.region.clone())
                .unwrap_or_default(),
            az: context.node.map(|node| node.az.clone()).unwrap_or_default(),
            labels: labels.clone(),
        })
        .collect()
}

pub(crate) fn service_records(service: &ServiceFacts, cluster_name: &str) -> Vec<PlaceRecord> {
    service
        .cluster_ips
        .iter()
        .map(|ip| PlaceRecord {
            key: service.key(),
            ip: ip.clone(),
            since_us: service.since_us,
            service: service.name.clone(),
            pod_ns: service.namespace.clone(),
            pod_cluster: cluster_name.to_owned(),
            ..PlaceRecord::default()
        })
        .collect()
}

pub(crate) fn node_records(node: &NodeFacts, cluster_name: &str) -> Vec<PlaceRecord> {
    node.addresses
        .iter()
        .map(|ip| PlaceRecord {
            key: node_key(&node.name),
            ip: ip.clone(),
            since_us: node.since_us,
            pod_node: node.name.clone(),
            host: node.name.clone(),
            pod_cluster: cluster_name.to_owned(),
            region: node.region.clone(),
            az: node.az.clone(),
            labels: node.labels.clone(),
            ..PlaceRecord::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    fn pod(json: serde_json::Value) -> PodFacts {
        let pod: Pod = serde_json::from_value(json).expect("pod json");
        PodFacts::from_pod(&pod).expect("pod facts")
    }

    fn owned_pod(kind: &str, name: &str, pod_labels: &[(&str, &str)]) -> PodFacts {
        pod(serde_json::json!({
            "metadata": {
                "name": "web-5d8f7c9b4-x2x7q", "namespace": "shop", "uid": "u1",
                "labels": labels(pod_labels),
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Ignored", "name": "other", "uid": "o0"},
                    {"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "o1",
                     "controller": true, "blockOwnerDeletion": true}
                ]
            }
        }))
    }

    type Owners = &'static [(
        &'static str,
        &'static str,
        Option<(&'static str, &'static str)>,
    )];

    /// `owners`: (kind, name, its controller's (kind, name)) of the owner objects known.
    fn check(pod: &PodFacts, owners: Owners, expected: Resolved) {
        let resolved = resolve_workload(pod, |kind, name| {
            owners
                .iter()
                .find(|(owner_kind, owner_name, _)| *owner_kind == kind && *owner_name == name)
                .map(|(_, _, controller)| {
                    controller.map(|(kind, name)| OwnerRef {
                        kind: kind.into(),
                        name: name.into(),
                    })
                })
        });
        assert_eq!(resolved, expected);
    }

    fn known(name: &str, kind: &str) -> Resolved {
        Resolved::Known(Workload::new(name, kind))
    }

    fn guessed(name: &str, kind: &str) -> Resolved {
        Resolved::Guessed(Workload::new(name, kind))
    }

    #[test]
    fn workloads_are_resolved_through_replica_sets_and_jobs() {
        let hash = [("pod-template-hash", "5d8f7c9b4")];
        let of_replica_set = owned_pod("ReplicaSet", "web-5d8f7c9b4", &hash);
        check(
            &of_replica_set,
            &[("ReplicaSet", "web-5d8f7c9b4", Some(("Deployment", "web")))],
            known("web", "deployment"),
        );
        check(
            &of_replica_set,
            &[("ReplicaSet", "web-5d8f7c9b4", None)],
            known("web-5d8f7c9b4", "replicaset"),
        );
        check(&of_replica_set, &[], guessed("web", "deployment"));
        check(
            &owned_pod("ReplicaSet", "web-5d8f7c9b4", &[]),
            &[],
            guessed("web-5d8f7c9b4", "replicaset"),
        );
        check(
            &owned_pod(
                "ReplicaSet",
                "web-5d8f7c9b4",
                &[("pod-template-hash", "other")],
            ),
            &[],
            guessed("web-5d8f7c9b4", "replicaset"),
        );

        let of_job = owned_pod("Job", "report-28999440", &[]);
        check(
            &of_job,
            &[("Job", "report-28999440", Some(("CronJob", "report")))],
            known("report", "cronjob"),
        );
        check(
            &of_job,
            &[("Job", "report-28999440", None)],
            known("report-28999440", "job"),
        );
        check(&of_job, &[], guessed("report-28999440", "job"));

        check(
            &owned_pod("StatefulSet", "db", &[]),
            &[],
            known("db", "statefulset"),
        );
        check(
            &owned_pod("DaemonSet", "logs", &[]),
            &[],
            known("logs", "daemonset"),
        );
        check(
            &owned_pod("Node", "node-a", &[]),
            &[],
            known("web-5d8f7c9b4-x2x7q", "pod"),
        );
        let bare = pod(serde_json::json!({"metadata": {"name": "debug", "uid": "u2"}}));
        check(&bare, &[], known("debug", "pod"));
    }

    #[test]
    fn a_selector_selects_pods_with_every_label_it_names() {
        let pod_labels = labels(&[("app", "web"), ("tier", "front")]);
        assert!(selects(&labels(&[("app", "web")]), &pod_labels));
        assert!(selects(
            &labels(&[("app", "web"), ("tier", "front")]),
            &pod_labels
        ));
        assert!(!selects(
            &labels(&[("app", "web"), ("tier", "back")]),
            &pod_labels
        ));
        assert!(!selects(&labels(&[("app", "db")]), &pod_labels));
        assert!(
            !selects(&labels(&[]), &pod_labels),
            "an empty selector selects nothing"
        );

        let service = |name: &str, selector: &[(&str, &str)]| ServiceFacts {
            name: name.into(),
            namespace: "shop".into(),
            selector: labels(selector),
            cluster_ips: vec![],
            since_us: 0,
        };
        let services = [
            service("web-b", &[("app", "web")]),
            service("db", &[("app", "db")]),
            service("web-a", &[("tier", "front")]),
            service("external", &[]),
        ];
        let found = service_of(&pod_labels, &services).map(|service| service.name.as_str());
        assert_eq!(found, Some("web-a"), "the first by name");
        assert_eq!(service_of(&labels(&[("app", "x")]), &services), None);
    }

    #[test]
    fn pod_records_have_one_record_per_ip() {
        let facts = pod(serde_json::json!({
            "metadata": {
                "name": "web-1", "namespace": "shop", "uid": "u1",
                "creationTimestamp": "2024-05-01T10:00:00Z",
                "labels": {"app": "web", "version": "v2", "pod-template-hash": "abc"}
            },
            "spec": {"nodeName": "node-a", "containers": []},
            "status": {
                "phase": "Running", "startTime": "2024-05-01T10:00:02Z",
                "podIP": "10.1.0.5",
                "podIPs": [{"ip": "10.1.0.5"}, {"ip": "fd00::5"}]
            }
        }));
        assert_eq!(facts.ips, vec!["10.1.0.5", "fd00::5"]);
        assert_eq!(facts.since_us, 1_714_557_602_000_000, "the start time");
        let node = NodeFacts {
            name: "node-a".into(),
            region: "eu-west-1".into(),
            az: "eu-west-1a".into(),
            labels: vec![],
            addresses: vec![],
            since_us: 0,
        };
        let keys = [
            "version".to_string(),
            "app".to_string(),
            "absent".to_string(),
        ];
        let context = Context {
            cluster_name: "prod",
            label_keys: &keys,
            node: Some(&node),
        };
        let records = pod_records(&facts, &Workload::new("web", "deployment"), "web", &context);
        assert_eq!(records.len(), 2);
        assert_eq!(
            records[0],
            PlaceRecord {
                key: "pod/u1".into(),
                ip: "10.1.0.5".into(),
                since_us: 1_714_557_602_000_000,
                until_us: 0,
                pod: "web-1".into(),
                pod_ns: "shop".into(),
                pod_group: "web".into(),
                pod_group_type: "deployment".into(),
                pod_node: "node-a".into(),
                pod_cluster: "prod".into(),
                service: "web".into(),
                host: String::new(),
                region: "eu-west-1".into(),
                az: "eu-west-1a".into(),
                labels: vec![
                    Label {
                        key: "app".into(),
                        value: "web".into()
                    },
                    Label {
                        key: "version".into(),
                        value: "v2".into()
                    },
                ],
            }
        );
        assert_eq!(records[1].ip, "fd00::5");
    }

    #[test]
    fn pod_facts_fall_back_and_tell_finished_and_host_network_pods() {
        let pending = pod(serde_json::json!({
            "metadata": {"name": "a", "uid": "u", "creationTimestamp": "1970-01-01T00:00:01Z"},
            "status": {"phase": "Pending", "podIP": "10.1.0.9"}
        }));
        assert_eq!(pending.ips, vec!["10.1.0.9"], "podIP when podIPs is absent");
        assert_eq!(
            pending.since_us, 1_000_000,
            "the creation time without a start"
        );
        assert!(!pending.finished && !pending.host_network);

        let done = pod(serde_json::json!({
            "metadata": {"name": "a", "uid": "u", "deletionTimestamp": "1970-01-01T00:00:30Z"},
            "spec": {"hostNetwork": true, "containers": []},
            "status": {"phase": "Succeeded"}
        }));
        assert!(done.finished && done.host_network);
        assert!(done.ips.is_empty());
        assert_eq!(
            done.until_us(20_000_000),
            20_000_000,
            "a graceful delete ends now"
        );
        assert_eq!(done.until_us(40_000_000), 30_000_000);

        let no_uid: Pod =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "a"}})).unwrap();
        assert_eq!(PodFacts::from_pod(&no_uid), None);
    }

    #[test]
    fn service_and_node_records() {
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop", "creationTimestamp": "1970-01-01T00:00:02Z"},
            "spec": {"selector": {"app": "web"}, "clusterIP": "10.96.0.10",
                     "clusterIPs": ["10.96.0.10", "fd00:96::10"]}
        }))
        .unwrap();
        let facts = ServiceFacts::from_service(&service);
        let records = service_records(&facts, "prod");
        let seen: Vec<_> = records
            .iter()
            .map(|record| {
                (
                    record.key.as_str(),
                    record.ip.as_str(),
                    record.service.as_str(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                ("service/shop/web", "10.96.0.10", "web"),
                ("service/shop/web", "fd00:96::10", "web")
            ]
        );
        assert_eq!(records[0].pod_ns, "shop");
        assert_eq!(records[0].pod_cluster, "prod");
        assert_eq!(records[0].since_us, 2_000_000);

        let headless: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db", "namespace": "shop"},
            "spec": {"clusterIP": "None", "clusterIPs": ["None"]}
        }))
        .unwrap();
        assert!(service_records(&ServiceFacts::from_service(&headless), "prod").is_empty());

        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "node-a", "labels": {
                "topology.kubernetes.io/region": "eu-west-1",
                "topology.kubernetes.io/zone": "eu-west-1a",
                "pool": "general"
            }},
            "status": {"addresses": [
                {"type": "InternalIP", "address": "192.168.1.10"},
                {"type": "Hostname", "address": "node-a"},
                {"type": "ExternalIP", "address": "203.0.113.10"}
            ]}
        }))
        .unwrap();
        let facts = NodeFacts::from_node(&node, &["pool".to_string()]);
        let records = node_records(&facts, "prod");
        let seen: Vec<_> = records.iter().map(|record| record.ip.as_str()).collect();
        assert_eq!(seen, vec!["192.168.1.10", "203.0.113.10"]);
        assert_eq!(records[0].key, "node/node-a");
        assert_eq!(records[0].host, "node-a");
        assert_eq!(records[0].pod_node, "node-a");
        assert_eq!(records[0].region, "eu-west-1");
        assert_eq!(records[0].az, "eu-west-1a");
        assert_eq!(
            records[0].labels,
            vec![Label {
                key: "pool".into(),
                value: "general".into()
            }]
        );
    }
}
