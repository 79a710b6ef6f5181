//! The server's map from IP addresses to where they are: what agents report (their node's pods,
//! services' cluster IPs, their node, their host), what spans say of themselves (a resource
//! with `app.host.ip` and `k8s.pod.name`), and a static inventory of hosts by IP and CIDR.
//!
//! An address has a history: a pod's IP is freed when the pod goes and may be given to the next
//! pod at once, so each entry holds the time it began and, once over, ended, and a span is
//! tagged with the entry that held the address when the span started. Ended entries are kept
//! for [`ENDED_KEPT`] so that late spans still find them; entries learnt from spans expire
//! [`LEARNT_KEPT`] after they were last seen.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;
use spanflow_model::{metric_names, Place};
use spanflow_otlp::places::Places;
use spanflow_transport::{HostReport, PlaceRecord};

/// How long an entry is kept after it ended.
pub const ENDED_KEPT: Duration = Duration::from_secs(3600);
/// How long an entry learnt from spans is kept after a span last said it.
pub const LEARNT_KEPT: Duration = Duration::from_secs(3600);
/// A span that starts this long before its address's first entry began still gets it
/// (clocks of nodes differ; a pod serves before the agent reports it).
const EARLY_GRACE_US: i64 = 300_000_000;
/// A span that starts this long after its address's entry ended still gets it (a pod that
/// is terminating still serves).
const LATE_GRACE_US: i64 = 30_000_000;
/// Entries the map holds at most; past it, new addresses are not learnt and are counted.
pub const MAX_ENTRIES: usize = 1_000_000;
/// Entries one address holds at most; the oldest ended ones go first.
const MAX_PER_ADDRESS: usize = 8;
/// How often expired entries are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Who said what an entry says.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Source {
    /// An agent, of one of its resources (`pod/<uid>`, `host`, ...).
    Agent { agent: String, key: String },
    /// A span's resource.
    Span,
}

#[derive(Clone, Debug)]
struct Entry {
    source: Source,
    /// µs since the epoch; 0 when unknown (then it began before anything else).
    since_us: i64,
    /// µs since the epoch; `None` while the address is held.
    until_us: Option<i64>,
    place: Arc<Place>,
    /// When a span last said it (entries learnt from spans), or when it ended.
    touched: Instant,
}

impl Entry {
    fn holds_at(&self, time_us: i64) -> bool {
        self.since_us <= time_us && self.until_us.is_none_or(|until| time_us < until)
    }
}

#[derive(Default)]
struct Addresses {
    by_ip: HashMap<IpAddr, Vec<Entry>>,
    n_entries: usize,
    last_sweep: Option<Instant>,
}

/// The IP-to-place map; shared by the ingest path (which feeds and reads it) and the server.
#[derive(Default)]
pub struct PlaceMap {
    addresses: RwLock<Addresses>,
    inventory: RwLock<Arc<Inventory>>,
    /// What each agent last reported of its host, to skip unchanged reports.
    hosts: Mutex<HashMap<String, HostReport>>,
}

impl std::fmt::Debug for PlaceMap {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addresses = self.addresses.read().expect("place map lock");
        formatter
            .debug_struct("PlaceMap")
            .field("n_addresses", &addresses.by_ip.len())
            .field("n_entries", &addresses.n_entries)
            .finish()
    }
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_micros() as i64)
        .unwrap_or_default()
}

fn parse_ip(text: &str) -> Option<IpAddr> {
    text.trim()
        .parse::<IpAddr>()
        .ok()
        .map(|ip| ip.to_canonical())
}

fn place_of_record(record: &PlaceRecord) -> Place {
    let mut labels: Vec<(String, String)> = record
        .labels
        .iter()
        .map(|label| (label.key.clone(), label.value.clone()))
        .collect();
    labels.sort();
    labels.dedup_by(|a, b| a.0 == b.0);
    Place {
        pod: record.pod.clone(),
        pod_ns: record.pod_ns.clone(),
        pod_group: record.pod_group.clone(),
        pod_group_type: record.pod_group_type.clone(),
        pod_node: record.pod_node.clone(),
        pod_cluster: record.pod_cluster.clone(),
        service: record.service.clone(),
        host: record.host.clone(),
        region: record.region.clone(),
        az: record.az.clone(),
        labels,
        ..Place::default()
    }
}

impl PlaceMap {
    pub fn new() -> PlaceMap {
        PlaceMap::default()
    }

    /// Takes what an agent's batch says of addresses. With `full`, the records are all the
    /// agent knows: what it said before and left out has ended now.
    pub fn apply_agent(
        &self,
        agent: &str,
        records: &[PlaceRecord],
        full: bool,
        host: Option<&HostReport>,
    ) {
        let host_changed = host.is_some_and(|host| {
            let mut hosts = self.hosts.lock().expect("host reports lock");
            let changed = hosts.get(agent) != Some(host);
            if changed {
                hosts.insert(agent.to_owned(), host.clone());
            }
            changed
        });
        if records.is_empty() && !full && !host_changed {
            return;
        }
        let now = now_us();
        let mut addresses = self.addresses.write().expect("place map lock");
        let mut told: std::collections::HashSet<(IpAddr, &str)> = Default::default();
        for record in records {
            let Some(ip) = parse_ip(&record.ip) else {
                metrics::counter!(metric_names::SERVER_PLACES_REFUSED).increment(1);
                continue;
            };
            told.insert((ip, record.key.as_str()));
            let source = Source::Agent {
                agent: agent.to_owned(),
                key: record.key.clone(),
            };
            let until = (record.until_us != 0).then_some(record.until_us);
            let mut place = place_of_record(record);
            place.decide_auto(Some(ip));
            addresses.put(ip, source, record.since_us, until, Arc::new(place));
        }
        if let (true, Some(host)) = (host_changed, host) {
            self.put_host(&mut addresses, agent, host);
        }
        if full {
            for (ip, entries) in addresses.by_ip.iter_mut() {
                for entry in entries.iter_mut() {
                    if let Source::Agent { agent: of, key } = &entry.source {
                        if of == agent
                            && key != HOST_KEY
                            && entry.until_us.is_none()
                            && !told.contains(&(*ip, key.as_str()))
                        {
                            entry.until_us = Some(now.max(entry.since_us));
                            entry.touched = Instant::now();
                        }
                    }
                }
            }
        }
        addresses.sweep();
        metrics::gauge!(metric_names::SERVER_PLACES).set(addresses.n_entries as f64);
    }

    /// The agent's host, by each of its addresses; what it reported before is replaced.
    fn put_host(&self, addresses: &mut Addresses, agent: &str, host: &HostReport) {
        let source = Source::Agent {
            agent: agent.to_owned(),
            key: HOST_KEY.to_owned(),
        };
        addresses.remove_source(&source);
        for ip in host.ips.iter().filter_map(|ip| parse_ip(ip)) {
            if ip.is_loopback() || ip.is_unspecified() {
                continue;
            }
            let mut place = Place {
                host: host.name.clone(),
                ..Place::default()
            };
            if !host.os.is_empty() {
                place.labels.push(("os".to_owned(), host.os.clone()));
            }
            place.decide_auto(Some(ip));
            addresses.put(ip, source.clone(), 0, None, Arc::new(place));
        }
    }

    /// Replaces the static inventory.
    pub fn set_inventory(&self, inventory: Inventory) {
        *self.inventory.write().expect("inventory lock") = Arc::new(inventory);
    }

    fn entry_at(&self, ip: IpAddr, time_us: i64) -> Option<Arc<Place>> {
        let addresses = self.addresses.read().expect("place map lock");
        let entries = addresses.by_ip.get(&ip)?;
        let time = if time_us == 0 { now_us() } else { time_us };
        let agents = || {
            entries
                .iter()
                .filter(|entry| matches!(entry.source, Source::Agent { .. }))
        };
        // What held the address then, the latest to begin first; else what began soon after
        // (clocks differ), else what ended just before.
        agents()
            .filter(|entry| entry.holds_at(time))
            .max_by_key(|entry| entry.since_us)
            .or_else(|| {
                agents()
                    .filter(|entry| {
                        entry.since_us > time && entry.since_us - time <= EARLY_GRACE_US
                    })
                    .min_by_key(|entry| entry.since_us)
            })
            .or_else(|| {
                agents()
                    .filter(|entry| {
                        entry
                            .until_us
                            .is_some_and(|until| until <= time && time - until <= LATE_GRACE_US)
                    })
                    .max_by_key(|entry| entry.until_us)
            })
            .or_else(|| {
                entries
                    .iter()
                    .filter(|entry| entry.source == Source::Span)
                    .max_by_key(|entry| entry.touched)
            })
            .map(|entry| entry.place.clone())
    }
}

/// The key of an agent's host entries.
const HOST_KEY: &str = "host";

impl Addresses {
    /// Sets an entry: the one from the same source replaces, others stay.
    fn put(
        &mut self,
        ip: IpAddr,
        source: Source,
        since_us: i64,
        until_us: Option<i64>,
        place: Arc<Place>,
    ) {
        if self.n_entries >= MAX_ENTRIES && !self.by_ip.contains_key(&ip) {
            metrics::counter!(metric_names::SERVER_PLACES_REFUSED).increment(1);
            return;
        }
        let entries = self.by_ip.entry(ip).or_default();
        let touched = Instant::now();
        if let Some(entry) = entries.iter_mut().find(|entry| entry.source == source) {
            if source == Source::Span && *entry.place == *place {
                entry.touched = touched;
                return;
            }
            entry.since_us = since_us;
            entry.until_us = until_us;
            entry.place = place;
            entry.touched = touched;
            return;
        }
        entries.push(Entry {
            source,
            since_us,
            until_us,
            place,
            touched,
        });
        self.n_entries += 1;
        if entries.len() > MAX_PER_ADDRESS {
            // The oldest ended entry, else the entry learnt from spans longest ago.
            let victim = entries
                .iter()
                .enumerate()
                .filter(|(_, entry)| entry.until_us.is_some())
                .min_by_key(|(_, entry)| entry.until_us)
                .or_else(|| {
                    entries
                        .iter()
                        .enumerate()
                        .filter(|(_, entry)| entry.source == Source::Span)
                        .min_by_key(|(_, entry)| entry.touched)
                })
                .map(|(index, _)| index)
                .unwrap_or(0);
            entries.remove(victim);
            self.n_entries -= 1;
        }
    }

    fn remove_source(&mut self, source: &Source) {
        let mut removed = 0;
        self.by_ip.retain(|_, entries| {
            let before = entries.len();
            entries.retain(|entry| &entry.source != source);
            removed += before - entries.len();
            !entries.is_empty()
        });
        self.n_entries -= removed;
    }

    fn sweep(&mut self) {
        let now = Instant::now();
        if self
            .last_sweep
            .is_some_and(|last| now.duration_since(last) < SWEEP_EVERY)
        {
            return;
        }
        self.last_sweep = Some(now);
        let mut removed = 0;
        self.by_ip.retain(|_, entries| {
            let before = entries.len();
            entries.retain(|entry| {
                let age = now.duration_since(entry.touched);
                match (&entry.source, entry.until_us) {
                    (_, Some(_)) => age < ENDED_KEPT,
                    (Source::Span, None) => age < LEARNT_KEPT,
                    (Source::Agent { .. }, None) => true,
                }
            });
            removed += before - entries.len();
            !entries.is_empty()
        });
        self.n_entries -= removed;
    }
}

impl Places for PlaceMap {
    fn lookup(&self, ip: IpAddr, time_us: i64) -> Option<Arc<Place>> {
        let known = self.entry_at(ip, time_us);
        let inventory = self.inventory.read().expect("inventory lock").clone();
        let Some(host) = inventory.find(ip) else {
            return known;
        };
        let mut place = known.as_deref().cloned().unwrap_or_default();
        place.fill_from(host);
        place.decide_auto(Some(ip));
        Some(Arc::new(place))
    }

    fn learn(&self, ip: IpAddr, place: &Place, time_us: i64) {
        let mut learnt = place.clone();
        learnt.decide_auto(Some(ip));
        let mut addresses = self.addresses.write().expect("place map lock");
        addresses.put(
            ip,
            Source::Span,
            time_us.min(now_us()),
            None,
            Arc::new(learnt),
        );
        addresses.sweep();
    }
}

// ---------------------------------------------------------------------------------------------
// The static inventory

/// Hosts by address, from a YAML file:
///
/// ```yaml
/// hosts:
///   - name: db-1
///     ips: [10.20.0.5]
///     region: eu-west
///     zone: eu-west-1a
///     labels: {team: storage}
///   - cidr: 10.30.0.0/16
///     region: us-east
/// ```
///
/// An exact address beats a CIDR, and a longer prefix beats a shorter one.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Inventory {
    exact: HashMap<IpAddr, Place>,
    /// By prefix length, longest first.
    networks: Vec<(ipnet::IpNet, Place)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryFile {
    #[serde(default)]
    hosts: Vec<InventoryHost>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryHost {
    #[serde(default)]
    name: String,
    #[serde(default)]
    ips: Vec<String>,
    #[serde(default)]
    cidr: Option<String>,
    #[serde(default)]
    cidrs: Vec<String>,
    #[serde(default)]
    region: String,
    #[serde(default)]
    zone: String,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
}

impl Inventory {
    /// Reads an inventory; an error names the entry at fault.
    pub fn parse(text: &str) -> Result<Inventory, String> {
        let file: InventoryFile = serde_yaml::from_str(text).map_err(|error| error.to_string())?;
        let mut inventory = Inventory::default();
        for (index, host) in file.hosts.into_iter().enumerate() {
            let what = if host.name.is_empty() {
                format!("hosts[{index}]")
            } else {
                format!("hosts[{index}] ({})", host.name)
            };
            let place = Place {
                host: host.name.clone(),
                region: host.region.clone(),
                az: host.zone.clone(),
                labels: host.labels.into_iter().collect(),
                ..Place::default()
            };
            let networks: Vec<String> = host.cidr.into_iter().chain(host.cidrs).collect();
            if host.ips.is_empty() && networks.is_empty() {
                return Err(format!("{what} names no `ips` and no `cidr`"));
            }
            for ip in &host.ips {
                let parsed =
                    parse_ip(ip).ok_or_else(|| format!("{what}: `{ip}` is not an IP address"))?;
                inventory.exact.insert(parsed, place.clone());
            }
            for network in &networks {
                let parsed: ipnet::IpNet = network
                    .trim()
                    .parse()
                    .map_err(|_| format!("{what}: `{network}` is not a CIDR (like 10.0.0.0/16)"))?;
                inventory.networks.push((parsed.trunc(), place.clone()));
            }
        }
        inventory
            .networks
            .sort_by_key(|(network, _)| std::cmp::Reverse(network.prefix_len()));
        Ok(inventory)
    }

    pub fn load(path: &Path) -> Result<Inventory, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("reading {}: {error}", path.display()))?;
        Inventory::parse(&text).map_err(|error| format!("{}: {error}", path.display()))
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.networks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn find(&self, ip: IpAddr) -> Option<&Place> {
        if self.exact.is_empty() && self.networks.is_empty() {
            return None;
        }
        self.exact.get(&ip).or_else(|| {
            self.networks
                .iter()
                .find(|(network, _)| network.contains(&ip))
                .map(|(_, place)| place)
        })
    }
}

/// Loads the inventory at `path` into `map`, then again whenever the file changes (checked
/// every `every`); a file that does not parse keeps the inventory that was in force, and says
/// so in the log.
pub fn watch_inventory(
    map: Arc<PlaceMap>,
    path: PathBuf,
    every: Duration,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let inventory = Inventory::load(&path)?;
    tracing::info!(path = %path.display(), entries = inventory.len(), "host inventory loaded");
    map.set_inventory(inventory);
    let modified = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|meta| meta.modified())
            .ok()
    };
    let mut last = modified(&path);
    Ok(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let now = modified(&path);
            if now == last {
                continue;
            }
            last = now;
            match Inventory::load(&path) {
                Ok(inventory) => {
                    tracing::info!(path = %path.display(), entries = inventory.len(), "host inventory reloaded");
                    map.set_inventory(inventory);
                }
                Err(error) => {
                    tracing::error!(%error, "host inventory not reloaded; the one in force stays");
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use spanflow_model::AutoType;
    use spanflow_transport::Label;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn pod(key: &str, ip: &str, name: &str, since_us: i64) -> PlaceRecord {
        PlaceRecord {
            key: key.into(),
            ip: ip.into(),
            since_us,
            pod: name.into(),
            pod_ns: "shop".into(),
            pod_group: "web".into(),
            pod_group_type: "deployment".into(),
            pod_node: "node-a".into(),
            labels: vec![Label {
                key: "app".into(),
                value: "web".into(),
            }],
            ..PlaceRecord::default()
        }
    }

    #[test]
    fn a_reused_address_is_the_pod_that_held_it_when_the_span_started() {
        let map = PlaceMap::new();
        map.apply_agent(
            "node-a",
            &[pod("pod/1", "10.1.0.5", "web-1", 1_000)],
            false,
            None,
        );
        let mut gone = pod("pod/1", "10.1.0.5", "web-1", 1_000);
        gone.until_us = 5_000_000;
        map.apply_agent(
            "node-a",
            &[gone, pod("pod/2", "10.1.0.5", "web-2", 6_000_000)],
            false,
            None,
        );
        let at = |time| {
            map.lookup(ip("10.1.0.5"), time)
                .map(|place| place.pod.clone())
        };
        assert_eq!(at(2_000_000).as_deref(), Some("web-1"));
        assert_eq!(at(7_000_000).as_deref(), Some("web-2"));
        assert_eq!(at(0).as_deref(), Some("web-2"), "now");
        let place = map.lookup(ip("10.1.0.5"), 7_000_000).unwrap();
        assert_eq!(place.auto_instance_type, AutoType::Pod);
        assert_eq!(place.auto_service, "web");
        assert_eq!(place.labels, vec![("app".to_string(), "web".to_string())]);
    }

    #[test]
    fn a_full_report_ends_what_it_leaves_out_and_hosts_are_found_by_every_address() {
        let map = PlaceMap::new();
        map.apply_agent(
            "node-a",
            &[
                pod("pod/1", "10.1.0.5", "web-1", 1),
                pod("pod/2", "10.1.0.6", "web-2", 1),
            ],
            true,
            Some(&HostReport {
                name: "node-a".into(),
                ips: vec!["192.168.7.10".into(), "127.0.0.1".into()],
                os: "Debian GNU/Linux 12 (bookworm)".into(),
            }),
        );
        map.apply_agent(
            "node-a",
            &[pod("pod/2", "10.1.0.6", "web-2", 1)],
            true,
            None,
        );
        let later = now_us() + LATE_GRACE_US + 1;
        assert!(map.lookup(ip("10.1.0.5"), later).is_none(), "ended");
        assert_eq!(map.lookup(ip("10.1.0.6"), later).unwrap().pod, "web-2");
        let host = map.lookup(ip("192.168.7.10"), 0).unwrap();
        assert_eq!(host.host, "node-a");
        assert_eq!(host.auto_instance_type, AutoType::Host);
        assert_eq!(host.labels[0].0, "os");
        assert!(
            map.lookup(ip("127.0.0.1"), 0).is_none(),
            "loopback is everyone's"
        );
    }

    #[test]
    fn spans_teach_addresses_and_agents_win_over_them() {
        let map = PlaceMap::new();
        let learnt = Place {
            pod: "from-span".into(),
            ..Place::default()
        };
        map.learn(ip("10.1.0.9"), &learnt, 0);
        assert_eq!(map.lookup(ip("10.1.0.9"), 0).unwrap().pod, "from-span");
        map.apply_agent(
            "node-a",
            &[pod("pod/9", "10.1.0.9", "from-agent", 0)],
            false,
            None,
        );
        assert_eq!(map.lookup(ip("10.1.0.9"), 0).unwrap().pod, "from-agent");
    }

    #[test]
    fn the_inventory_names_hosts_by_address_and_network_and_fills_what_agents_leave() {
        let inventory = Inventory::parse(
            "hosts:\n\
             - name: db-1\n  ips: [10.20.0.5]\n  region: eu-west\n  zone: eu-west-1a\n  labels: {team: storage}\n\
             - cidr: 10.20.0.0/16\n  region: eu-west\n\
             - cidrs: [10.0.0.0/8]\n  region: somewhere\n",
        )
        .unwrap();
        let map = PlaceMap::new();
        map.set_inventory(inventory);
        let db = map.lookup(ip("10.20.0.5"), 0).unwrap();
        assert_eq!(
            (db.host.as_str(), db.region.as_str(), db.az.as_str()),
            ("db-1", "eu-west", "eu-west-1a")
        );
        assert_eq!(db.labels, vec![("team".to_string(), "storage".to_string())]);
        assert_eq!(db.auto_instance_type, AutoType::Host);
        let other = map.lookup(ip("10.20.9.9"), 0).unwrap();
        assert_eq!(
            (other.host.as_str(), other.region.as_str()),
            ("", "eu-west")
        );
        assert_eq!(other.auto_instance, "10.20.9.9");
        assert_eq!(map.lookup(ip("10.99.0.1"), 0).unwrap().region, "somewhere");
        assert!(map.lookup(ip("192.0.2.1"), 0).is_none());

        map.apply_agent(
            "node-a",
            &[pod("pod/1", "10.20.3.3", "web-1", 0)],
            false,
            None,
        );
        let both = map.lookup(ip("10.20.3.3"), 0).unwrap();
        assert_eq!(
            (both.pod.as_str(), both.region.as_str()),
            ("web-1", "eu-west")
        );

        for (text, error) in [
            ("hosts:\n- name: x\n", "names no `ips` and no `cidr`"),
            ("hosts:\n- ips: [nope]\n", "`nope` is not an IP address"),
            ("hosts:\n- cidr: 10.0.0.0/99\n", "is not a CIDR"),
            (
                "hosts:\n- ips: [10.0.0.1]\n  colour: red\n",
                "unknown field `colour`",
            ),
        ] {
            let got = Inventory::parse(text).unwrap_err();
            assert!(got.contains(error), "{text}: {got}");
        }
    }
}
