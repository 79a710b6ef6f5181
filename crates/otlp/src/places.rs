//! Where each end of a span ran: what a resource says of itself (`k8s.*`, `host.name`,
//! `cloud.*`), joined with what a [`Places`] lookup knows of an address.
//!
//! The resource's own attributes win over the lookup, field by field: a collector's
//! `k8sattributes` processor has seen the pod itself. What the lookup adds is written back into
//! the resource attributes under the same semantic-convention names, so that every filter on
//! resource attributes finds spans by pod, namespace, workload and node whoever tagged them.

use std::net::IpAddr;
use std::sync::Arc;

use spanflow_model::{AttrValue, Attribute, Place};

/// Knows where addresses were; the server's place map.
pub trait Places: Send + Sync + std::fmt::Debug {
    /// What is known of `ip` at `time_us` (µs since the epoch), with `auto_*` decided.
    fn lookup(&self, ip: IpAddr, time_us: i64) -> Option<Arc<Place>>;

    /// A resource said where it runs, with its address: others' spans that name the address
    /// as their peer can be tagged with it.
    fn learn(&self, ip: IpAddr, place: &Place, time_us: i64);
}

/// Each workload attribute with its kind (`pod_group_type`, `k8s_workload_kind`), the
/// owner before what it owns: a Deployment's pods often name their ReplicaSet too.
pub(crate) const WORKLOADS: [(&str, &str); 6] = [
    ("k8s.deployment.name", "deployment"),
    ("k8s.statefulset.name", "statefulset"),
    ("k8s.daemonset.name", "daemonset"),
    ("k8s.replicaset.name", "replicaset"),
    ("k8s.cronjob.name", "cronjob"),
    ("k8s.job.name", "job"),
];

/// The prefix of the pod labels the collector's `k8sattributes` processor extracts.
pub const POD_LABEL_PREFIX: &str = "k8s.pod.labels.";

/// The place columns the resource attributes fill, with their key.
const TEXT_KEYS: [(&str, &str); 7] = [
    ("pod", "k8s.pod.name"),
    ("pod_ns", "k8s.namespace.name"),
    ("pod_node", "k8s.node.name"),
    ("pod_cluster", "k8s.cluster.name"),
    ("host", "host.name"),
    ("region", "cloud.region"),
    ("az", "cloud.availability_zone"),
];

fn text(value: &AttrValue) -> Option<&str> {
    value.as_str().filter(|text| !text.is_empty())
}

/// What a resource's attributes say of where it runs.
pub fn resource_place(attributes: &[Attribute]) -> Place {
    let mut place = Place::default();
    for attribute in attributes {
        let Some(value) = text(&attribute.value) else {
            continue;
        };
        if let Some((column, _)) = TEXT_KEYS.iter().find(|(_, key)| *key == attribute.key) {
            let field = place.text_mut(column).expect("a place column");
            if field.is_empty() {
                *field = value.to_owned();
            }
        } else if let Some((_, kind)) = WORKLOADS.iter().find(|(key, _)| *key == attribute.key) {
            // The first workload named wins; a Deployment's pods often carry the ReplicaSet
            // too, and the order above puts the Deployment first.
            let rank = |kind: &str| WORKLOADS.iter().position(|(_, k)| *k == kind);
            if place.pod_group.is_empty() || rank(kind) < rank(&place.pod_group_type) {
                place.pod_group = value.to_owned();
                place.pod_group_type = (*kind).to_owned();
            }
        } else if let Some(label) = attribute.key.strip_prefix(POD_LABEL_PREFIX) {
            if !label.is_empty() && !place.labels.iter().any(|(key, _)| key == label) {
                place.labels.push((label.to_owned(), value.to_owned()));
            }
        }
    }
    place.labels.sort();
    place
}

/// Adds to `attributes` what `place` knows and they do not say.
pub fn add_place_attributes(attributes: &mut Vec<Attribute>, place: &Place) {
    let has = |attributes: &[Attribute], key: &str| {
        attributes
            .iter()
            .any(|attribute| attribute.key == key && text(&attribute.value).is_some())
    };
    for (column, key) in TEXT_KEYS {
        let value = place.text(column).unwrap_or_default();
        if !value.is_empty() && !has(attributes, key) {
            attributes.push(Attribute::new(key, AttrValue::String(value.to_owned())));
        }
    }
    if !place.pod_group.is_empty() {
        if let Some((key, _)) = WORKLOADS
            .iter()
            .find(|(_, kind)| *kind == place.pod_group_type)
        {
            if !WORKLOADS.iter().any(|(key, _)| has(attributes, key)) {
                attributes.push(Attribute::new(
                    *key,
                    AttrValue::String(place.pod_group.clone()),
                ));
            }
        }
    }
    if !place.pod.is_empty() {
        for (label, value) in &place.labels {
            let key = format!("{POD_LABEL_PREFIX}{label}");
            if !has(attributes, &key) {
                attributes.push(Attribute::new(key, AttrValue::String(value.clone())));
            }
        }
    }
}

/// The place of an address: what `places` knows, under what the resource said of itself
/// (`own`, empty for a peer), with `auto_*` decided; the unknown place when neither knows
/// anything.
pub fn place_of(
    places: Option<&dyn Places>,
    ip: Option<IpAddr>,
    own: &Place,
    time_us: i64,
) -> Arc<Place> {
    let known = ip.and_then(|ip| places.and_then(|places| places.lookup(ip, time_us)));
    if own.is_unknown() {
        // Nothing known but the address, which the row holds already (`ip_0`, `ip_1`): the
        // shared empty place, so that most spans of most deployments allocate nothing here.
        return known.unwrap_or_else(Place::unknown);
    }
    let mut place = own.clone();
    if let Some(known) = &known {
        place.fill_from(known);
    }
    place.decide_auto(ip);
    Arc::new(place)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attribute(key: &str, value: &str) -> Attribute {
        Attribute::new(key, AttrValue::String(value.into()))
    }

    #[test]
    fn a_resource_says_where_it_runs_and_the_deployment_beats_its_replicaset() {
        let attributes = [
            attribute("k8s.replicaset.name", "web-7d9f"),
            attribute("k8s.deployment.name", "web"),
            attribute("k8s.pod.name", "web-7d9f-abcde"),
            attribute("k8s.namespace.name", "shop"),
            attribute("k8s.pod.labels.app", "web"),
            attribute("host.name", ""),
        ];
        let place = resource_place(&attributes);
        assert_eq!(place.pod, "web-7d9f-abcde");
        assert_eq!(place.pod_ns, "shop");
        assert_eq!(
            (place.pod_group.as_str(), place.pod_group_type.as_str()),
            ("web", "deployment")
        );
        assert_eq!(place.labels, vec![("app".to_string(), "web".to_string())]);
        assert_eq!(place.host, "", "an empty value says nothing");
    }

    #[test]
    fn what_a_lookup_adds_becomes_resource_attributes_and_nothing_said_is_replaced() {
        let place = Place {
            pod: "db-0".into(),
            pod_ns: "data".into(),
            pod_group: "db".into(),
            pod_group_type: "statefulset".into(),
            pod_node: "node-b".into(),
            labels: vec![("app".into(), "db".into())],
            ..Place::default()
        };
        let mut attributes = vec![attribute("k8s.namespace.name", "mine")];
        add_place_attributes(&mut attributes, &place);
        let get = |key: &str| {
            attributes
                .iter()
                .find(|attribute| attribute.key == key)
                .and_then(|attribute| attribute.value.as_str())
        };
        assert_eq!(get("k8s.namespace.name"), Some("mine"));
        assert_eq!(get("k8s.pod.name"), Some("db-0"));
        assert_eq!(get("k8s.statefulset.name"), Some("db"));
        assert_eq!(get("k8s.node.name"), Some("node-b"));
        assert_eq!(get("k8s.pod.labels.app"), Some("db"));
        assert_eq!(resource_place(&attributes).pod_group, "db");
    }

    #[derive(Debug)]
    struct One(IpAddr, Arc<Place>);

    impl Places for One {
        fn lookup(&self, ip: IpAddr, _: i64) -> Option<Arc<Place>> {
            (ip == self.0).then(|| self.1.clone())
        }
        fn learn(&self, _: IpAddr, _: &Place, _: i64) {}
    }

    #[test]
    fn the_resource_wins_field_by_field_and_an_unknown_peer_is_unknown() {
        let ip: IpAddr = "10.1.0.7".parse().unwrap();
        let mut known = Place {
            pod: "web-1".into(),
            pod_ns: "shop".into(),
            pod_group: "web".into(),
            pod_group_type: "deployment".into(),
            ..Place::default()
        };
        known.decide_auto(Some(ip));
        let places = One(ip, Arc::new(known.clone()));
        assert_eq!(
            *place_of(Some(&places), Some(ip), &Place::default(), 0),
            known
        );
        let own = Place {
            pod_ns: "staging".into(),
            ..Place::default()
        };
        let joined = place_of(Some(&places), Some(ip), &own, 0);
        assert_eq!(
            (joined.pod.as_str(), joined.pod_ns.as_str()),
            ("web-1", "staging")
        );

        let other: IpAddr = "192.0.2.1".parse().unwrap();
        let unknown = place_of(Some(&places), Some(other), &Place::default(), 0);
        assert!(
            unknown.is_unknown(),
            "the row's ip column holds the address already"
        );
        assert!(place_of(None, None, &Place::default(), 0).is_unknown());
    }
}
