//! Where one end of a call ran: DeepFlow's universal tags, as names rather than ids.
//!
//! A span row has two: `_0` for the client side of the call and `_1` for the server side, each
//! found by that side's IP. The span's own side (`_0` for client and producer spans, `_1` for
//! the others) also takes what the span's resource says of itself.

use std::sync::{Arc, OnceLock};

/// What a side's `auto_instance` or `auto_service` is, with DeepFlow's numbers
/// (`auto_instance_type`, `auto_service_type`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, PartialOrd, Ord)]
pub enum AutoType {
    /// Nothing known but the address.
    #[default]
    Ip = 255,
    /// A host from the agent's own report or the static inventory.
    Host = 6,
    Pod = 10,
    /// A Kubernetes service (by its cluster IP, or the service that selects a pod).
    PodService = 11,
    /// A Kubernetes node.
    PodNode = 14,
    /// A workload: Deployment, StatefulSet, DaemonSet, Job, CronJob, or a bare ReplicaSet.
    PodGroup = 101,
    PodCluster = 103,
}

impl AutoType {
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    pub fn from_u8(value: u8) -> AutoType {
        match value {
            6 => AutoType::Host,
            10 => AutoType::Pod,
            11 => AutoType::PodService,
            14 => AutoType::PodNode,
            101 => AutoType::PodGroup,
            103 => AutoType::PodCluster,
            _ => AutoType::Ip,
        }
    }

    /// The name DeepFlow's querier shows (`auto_service_type` as text).
    pub fn as_str(self) -> &'static str {
        match self {
            AutoType::Ip => "ip",
            AutoType::Host => "host",
            AutoType::Pod => "pod",
            AutoType::PodService => "pod_service",
            AutoType::PodNode => "pod_node",
            AutoType::PodGroup => "pod_group",
            AutoType::PodCluster => "pod_cluster",
        }
    }

    pub fn parse(text: &str) -> Option<AutoType> {
        [
            AutoType::Ip,
            AutoType::Host,
            AutoType::Pod,
            AutoType::PodService,
            AutoType::PodNode,
            AutoType::PodGroup,
            AutoType::PodCluster,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }
}

/// Where one end of a call ran. Empty strings are unknown.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Place {
    pub pod: String,
    pub pod_ns: String,
    /// The workload's name.
    pub pod_group: String,
    /// `deployment`, `statefulset`, `daemonset`, `replicaset`, `job`, `cronjob`, or `pod` for
    /// a pod that no controller owns.
    pub pod_group_type: String,
    pub pod_node: String,
    pub pod_cluster: String,
    /// The Kubernetes service behind a cluster IP, or the one that selects the pod.
    pub service: String,
    pub host: String,
    pub region: String,
    pub az: String,
    /// The finest thing known: the pod, else the node, the service, the host. Empty (of type
    /// `ip`) where nothing but the address is known: the row's `ip_0` / `ip_1` hold it.
    pub auto_instance: String,
    pub auto_instance_type: AutoType,
    /// The coarsest: the Kubernetes service, else the workload, the cluster (for a node), the
    /// host; empty where nothing but the address is known.
    pub auto_service: String,
    pub auto_service_type: AutoType,
    /// Labels chosen by configuration (Kubernetes labels, an inventory's custom labels),
    /// sorted by key.
    pub labels: Vec<(String, String)>,
}

/// A place's text field.
pub type PlaceField = fn(&Place) -> &String;

impl Place {
    /// The text columns, without the side's suffix, in column order.
    pub const TEXT_COLUMNS: [(&'static str, PlaceField); 12] = [
        ("pod", |place| &place.pod),
        ("pod_ns", |place| &place.pod_ns),
        ("pod_group", |place| &place.pod_group),
        ("pod_group_type", |place| &place.pod_group_type),
        ("pod_node", |place| &place.pod_node),
        ("pod_cluster", |place| &place.pod_cluster),
        ("service", |place| &place.service),
        ("host", |place| &place.host),
        ("region", |place| &place.region),
        ("az", |place| &place.az),
        ("auto_instance", |place| &place.auto_instance),
        ("auto_service", |place| &place.auto_service),
    ];

    /// The shared empty place, so that rows with nothing known allocate nothing.
    pub fn unknown() -> Arc<Place> {
        static UNKNOWN: OnceLock<Arc<Place>> = OnceLock::new();
        UNKNOWN.get_or_init(|| Arc::new(Place::default())).clone()
    }

    pub fn is_unknown(&self) -> bool {
        self == &Place::default()
    }

    /// A text field by its column name without the suffix (`pod`, `pod_ns`, ...).
    pub fn text(&self, column: &str) -> Option<&str> {
        Self::TEXT_COLUMNS
            .iter()
            .find(|(name, _)| *name == column)
            .map(|(_, field)| field(self).as_str())
    }

    /// A text field to set by its column name without the suffix.
    pub fn text_mut(&mut self, column: &str) -> Option<&mut String> {
        Some(match column {
            "pod" => &mut self.pod,
            "pod_ns" => &mut self.pod_ns,
            "pod_group" => &mut self.pod_group,
            "pod_group_type" => &mut self.pod_group_type,
            "pod_node" => &mut self.pod_node,
            "pod_cluster" => &mut self.pod_cluster,
            "service" => &mut self.service,
            "host" => &mut self.host,
            "region" => &mut self.region,
            "az" => &mut self.az,
            "auto_instance" => &mut self.auto_instance,
            "auto_service" => &mut self.auto_service,
            _ => return None,
        })
    }

    /// Fills every empty field of `self` from `other`, and adds the labels `self` lacks.
    pub fn fill_from(&mut self, other: &Place) {
        for (column, field) in Self::TEXT_COLUMNS {
            let mine = self
                .text_mut(column)
                .expect("every text column is settable");
            if mine.is_empty() {
                mine.clone_from(field(other));
            }
        }
        for (key, value) in &other.labels {
            if !self.labels.iter().any(|(mine, _)| mine == key) {
                self.labels.push((key.clone(), value.clone()));
            }
        }
        self.labels.sort();
    }

    /// Sets `auto_instance` and `auto_service` (and their types) from the other fields, as
    /// DeepFlow ranks them; `ip` names a side nothing is known of.
    pub fn decide_auto(&mut self, ip: Option<std::net::IpAddr>) {
        let ip_text = || ip.map(|ip| ip.to_string()).unwrap_or_default();
        let (instance_type, instance) = if !self.pod.is_empty() {
            (AutoType::Pod, self.pod.clone())
        } else if !self.pod_node.is_empty() {
            (AutoType::PodNode, self.pod_node.clone())
        } else if !self.service.is_empty() {
            (AutoType::PodService, self.service.clone())
        } else if !self.host.is_empty() {
            (AutoType::Host, self.host.clone())
        } else {
            (AutoType::Ip, ip_text())
        };
        let (service_type, service) = if !self.service.is_empty() {
            (AutoType::PodService, self.service.clone())
        } else if !self.pod_group.is_empty() {
            (AutoType::PodGroup, self.pod_group.clone())
        } else if !self.pod.is_empty() {
            (AutoType::Pod, self.pod.clone())
        } else if !self.pod_node.is_empty() && !self.pod_cluster.is_empty() {
            (AutoType::PodCluster, self.pod_cluster.clone())
        } else if !self.pod_node.is_empty() {
            (AutoType::PodNode, self.pod_node.clone())
        } else if !self.host.is_empty() {
            (AutoType::Host, self.host.clone())
        } else {
            (AutoType::Ip, ip_text())
        };
        self.auto_instance = instance;
        self.auto_instance_type = instance_type;
        self.auto_service = service;
        self.auto_service_type = service_type;
    }

    /// The labels as one JSON object (`{"app":"web"}`), or an empty string when there are
    /// none: how the stores keep them, so that a label is found with a substring match on
    /// [`Place::label_needle`].
    pub fn labels_json(&self) -> String {
        if self.labels.is_empty() {
            return String::new();
        }
        let mut json = String::from("{");
        for (index, (key, value)) in self.labels.iter().enumerate() {
            if index > 0 {
                json.push(',');
            }
            push_json_string(&mut json, key);
            json.push(':');
            push_json_string(&mut json, value);
        }
        json.push('}');
        json
    }

    /// Reads [`Place::labels_json`]'s output back; anything else gives no labels.
    pub fn parse_labels_json(text: &str) -> Vec<(String, String)> {
        let mut labels = Vec::new();
        let Some(mut rest) = text.strip_prefix('{') else {
            return labels;
        };
        while let Some((key, after)) = read_json_string(rest) {
            let Some((value, after)) = after.strip_prefix(':').and_then(read_json_string) else {
                break;
            };
            labels.push((key, value));
            match after.strip_prefix(',') {
                Some(next) => rest = next,
                None => break,
            }
        }
        labels
    }

    /// The text a label's `key: value` pair is stored as inside [`Place::labels_json`].
    pub fn label_needle(key: &str, value: &str) -> String {
        let mut needle = String::new();
        push_json_string(&mut needle, key);
        needle.push(':');
        push_json_string(&mut needle, value);
        needle
    }
}

fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ch if (ch as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", ch as u32)),
            ch => out.push(ch),
        }
    }
    out.push('"');
}

/// One JSON string at the start of `text` as [`push_json_string`] writes it, and what follows.
fn read_json_string(text: &str) -> Option<(String, &str)> {
    let body = text.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((index, ch)) = chars.next() {
        match ch {
            '"' => return Some((out, &body[index + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'u' => {
                    let hex: String = (0..4)
                        .filter_map(|_| chars.next().map(|(_, c)| c))
                        .collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => out.push(other),
            },
            ch => out.push(ch),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_survive_json_and_are_found_by_their_needle() {
        let place = Place {
            labels: vec![
                ("app".into(), "web \"front\"".into()),
                ("tier".into(), "a\\b\n".into()),
            ],
            ..Place::default()
        };
        let json = place.labels_json();
        assert_eq!(Place::parse_labels_json(&json), place.labels);
        assert!(json.contains(&Place::label_needle("app", "web \"front\"")));
        assert!(!json.contains(&Place::label_needle("app", "web")));
        assert_eq!(Place::default().labels_json(), "");
        assert!(Place::parse_labels_json("").is_empty());
    }

    #[test]
    fn auto_tags_rank_as_deepflow_does() {
        let mut pod = Place {
            pod: "web-7d9f-abcde".into(),
            pod_group: "web".into(),
            ..Place::default()
        };
        pod.decide_auto(None);
        assert_eq!(
            (pod.auto_instance_type, pod.auto_instance.as_str()),
            (AutoType::Pod, "web-7d9f-abcde")
        );
        assert_eq!(
            (pod.auto_service_type, pod.auto_service.as_str()),
            (AutoType::PodGroup, "web")
        );
        pod.service = "web-svc".into();
        pod.decide_auto(None);
        assert_eq!(pod.auto_service_type, AutoType::PodService);

        let mut nothing = Place::default();
        nothing.decide_auto(Some("10.1.2.3".parse().unwrap()));
        assert_eq!(nothing.auto_instance, "10.1.2.3");
        assert_eq!(nothing.auto_service_type, AutoType::Ip);
        assert_eq!(
            AutoType::from_u8(AutoType::PodGroup.as_u8()),
            AutoType::PodGroup
        );
        assert_eq!(AutoType::parse("pod_service"), Some(AutoType::PodService));
    }

    #[test]
    fn fill_from_keeps_what_is_known() {
        let mut mine = Place {
            pod: "a".into(),
            labels: vec![("app".into(), "x".into())],
            ..Place::default()
        };
        let other = Place {
            pod: "b".into(),
            pod_ns: "shop".into(),
            labels: vec![("app".into(), "y".into()), ("team".into(), "t".into())],
            ..Place::default()
        };
        mine.fill_from(&other);
        assert_eq!(mine.pod, "a");
        assert_eq!(mine.pod_ns, "shop");
        assert_eq!(
            mine.labels,
            vec![
                ("app".to_string(), "x".to_string()),
                ("team".to_string(), "t".to_string())
            ]
        );
    }
}
