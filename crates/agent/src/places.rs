//! What the agent knows of addresses, for the server to tag spans with: its node's pods, the
//! services' cluster IPs, its node, each as [`PlaceRecord`]s under a resource key.
//!
//! The book is versioned: every change gets the next version number, so that the forwarder
//! sends the server only what changed since the last batch it acknowledged, and everything at
//! its first batch, after a failover and every [`FULL_EVERY`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use spanflow_transport::{HostReport, PlaceRecord};

/// How often the whole book goes out even when the server acknowledged everything: a server
/// that restarted learns it again within this time.
pub const FULL_EVERY: Duration = Duration::from_secs(300);

/// Ended records are kept this long, so that a delta still tells the server they ended.
const ENDED_KEPT: Duration = Duration::from_secs(600);

#[derive(Default)]
struct Inner {
    version: u64,
    /// Live and recently ended records by (key, ip), with the version that last changed them.
    records: BTreeMap<(String, String), (u64, PlaceRecord)>,
    /// When each ended record ended, to forget it after [`ENDED_KEPT`].
    ended_at: HashMap<(String, String), Instant>,
    /// The newest version of a record already forgotten.
    forgotten_through: u64,
}

/// The agent's places; shared by whoever watches (Kubernetes, the host) and the forwarder.
#[derive(Default)]
pub struct PlaceBook {
    inner: Mutex<Inner>,
}

/// What the forwarder attaches to a batch.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PlaceChanges {
    /// The book's version these records bring the server to.
    pub version: u64,
    pub records: Vec<PlaceRecord>,
    /// `records` is every live record.
    pub full: bool,
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_micros() as i64)
        .unwrap_or_default()
}

impl PlaceBook {
    pub fn new() -> PlaceBook {
        PlaceBook::default()
    }

    /// Sets what is known of the resource `key` (`pod/<uid>`, `service/<ns>/<name>`, ...): one
    /// record per address. Addresses the resource had before and no longer has end now. A
    /// record equal to the one held changes nothing.
    pub fn set(&self, key: &str, records: Vec<PlaceRecord>) {
        let mut inner = self.inner.lock().expect("place book lock");
        let now = now_us();
        let mut keep = Vec::with_capacity(records.len());
        for mut record in records {
            record.key = key.to_owned();
            let id = (record.key.clone(), record.ip.clone());
            keep.push(id.clone());
            if inner
                .records
                .get(&id)
                .is_some_and(|(_, held)| *held == record)
            {
                continue;
            }
            inner.version += 1;
            let version = inner.version;
            inner.ended_at.remove(&id);
            inner.records.insert(id, (version, record));
        }
        let gone: Vec<_> = inner
            .records
            .range((key.to_owned(), String::new())..)
            .take_while(|((held_key, _), _)| held_key == key)
            .filter(|(id, (_, record))| record.until_us == 0 && !keep.contains(id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            end_record(&mut inner, &id, now);
        }
    }

    /// The resource `key` is gone: its records end at `until_us` (now when 0).
    pub fn end(&self, key: &str, until_us: i64) {
        let mut inner = self.inner.lock().expect("place book lock");
        let until = if until_us == 0 { now_us() } else { until_us };
        let ids: Vec<_> = inner
            .records
            .range((key.to_owned(), String::new())..)
            .take_while(|((held_key, _), _)| held_key == key)
            .filter(|(_, (_, record))| record.until_us == 0)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            end_record(&mut inner, &id, until);
        }
    }

    /// The keys of live resources that start with `prefix`: after a relist, those the list
    /// did not name are ended.
    pub fn live_keys(&self, prefix: &str) -> Vec<String> {
        let inner = self.inner.lock().expect("place book lock");
        let mut keys: Vec<String> = inner
            .records
            .range((prefix.to_owned(), String::new())..)
            .take_while(|((key, _), _)| key.starts_with(prefix))
            .filter(|(_, (_, record))| record.until_us == 0)
            .map(|((key, _), _)| key.clone())
            .collect();
        keys.dedup();
        keys
    }

    /// Every live record.
    pub fn live(&self) -> Vec<PlaceRecord> {
        let inner = self.inner.lock().expect("place book lock");
        inner
            .records
            .values()
            .filter(|(_, record)| record.until_us == 0)
            .map(|(_, record)| record.clone())
            .collect()
    }

    pub fn version(&self) -> u64 {
        self.inner.lock().expect("place book lock").version
    }

    /// What changed after `acknowledged`, or every live record when `full` (or when a change
    /// the server has not seen was already forgotten).
    pub fn changes_since(&self, acknowledged: u64, full: bool) -> PlaceChanges {
        let mut inner = self.inner.lock().expect("place book lock");
        forget_ended(&mut inner);
        let version = inner.version;
        if version == acknowledged && !full {
            return PlaceChanges {
                version,
                ..PlaceChanges::default()
            };
        }
        // An ended record forgotten before the server heard of its end cannot be told in a
        // delta; its absence from a full list tells it instead.
        let full = full || acknowledged == 0 || acknowledged < inner.forgotten_through;
        let records = inner
            .records
            .values()
            .filter(|(changed, record)| {
                if full {
                    record.until_us == 0
                } else {
                    *changed > acknowledged
                }
            })
            .map(|(_, record)| record.clone())
            .collect();
        PlaceChanges {
            version,
            records,
            full,
        }
    }
}

/// The host the agent runs on: its name, every address of its interfaces but loopback, and
/// its operating system as `/etc/os-release` names it.
pub fn host_report(name: &str) -> HostReport {
    let mut ips: Vec<String> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|interface| !interface.is_loopback())
        .map(|interface| interface.ip().to_string())
        .collect();
    ips.sort();
    ips.dedup();
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| os_name(&text))
        .unwrap_or_else(|| std::env::consts::OS.to_owned());
    HostReport {
        name: name.to_owned(),
        ips,
        os,
    }
}

/// `PRETTY_NAME` of an os-release file, unquoted.
fn os_name(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|line| {
        let value = line.strip_prefix("PRETTY_NAME=")?;
        Some(value.trim().trim_matches('"').trim_matches('\'').to_owned())
    })
}

fn end_record(inner: &mut Inner, id: &(String, String), until_us: i64) {
    inner.version += 1;
    let version = inner.version;
    if let Some((changed, record)) = inner.records.get_mut(id) {
        *changed = version;
        record.until_us = until_us.max(record.since_us);
        inner.ended_at.insert(id.clone(), Instant::now());
    }
}

fn forget_ended(inner: &mut Inner) {
    let now = Instant::now();
    let old: Vec<_> = inner
        .ended_at
        .iter()
        .filter(|(_, at)| now.duration_since(**at) > ENDED_KEPT)
        .map(|(id, _)| id.clone())
        .collect();
    for id in old {
        inner.ended_at.remove(&id);
        if let Some((changed, _)) = inner.records.remove(&id) {
            inner.forgotten_through = inner.forgotten_through.max(changed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ip: &str, name: &str) -> PlaceRecord {
        PlaceRecord {
            ip: ip.into(),
            pod: name.into(),
            since_us: 10,
            ..PlaceRecord::default()
        }
    }

    #[test]
    fn changes_are_sent_once_acknowledged_and_everything_when_full() {
        let book = PlaceBook::new();
        book.set("pod/a", vec![pod("10.0.0.1", "a")]);
        book.set("pod/b", vec![pod("10.0.0.2", "b")]);
        let first = book.changes_since(0, false);
        assert!(
            first.full,
            "a server that acknowledged nothing gets everything"
        );
        assert_eq!(first.records.len(), 2);

        let unchanged = book.changes_since(first.version, false);
        assert!(unchanged.records.is_empty());
        book.set("pod/a", vec![pod("10.0.0.1", "a")]);
        assert_eq!(
            book.version(),
            first.version,
            "an equal record changes nothing"
        );

        book.end("pod/a", 50);
        book.set("pod/c", vec![pod("10.0.0.1", "c")]);
        let delta = book.changes_since(first.version, false);
        assert!(!delta.full);
        let mut seen: Vec<_> = delta
            .records
            .iter()
            .map(|record| (record.key.as_str(), record.until_us))
            .collect();
        seen.sort();
        assert_eq!(seen, vec![("pod/a", 50), ("pod/c", 0)]);

        let full = book.changes_since(delta.version, true);
        let mut live: Vec<_> = full.records.iter().map(|r| r.key.as_str()).collect();
        live.sort();
        assert_eq!(
            live,
            vec!["pod/b", "pod/c"],
            "a full list holds the live records only"
        );
        assert_eq!(book.live_keys("pod/"), vec!["pod/b", "pod/c"]);
    }

    #[test]
    fn the_host_reports_its_name_addresses_and_system() {
        let report = host_report("node-a");
        assert_eq!(report.name, "node-a");
        assert!(report
            .ips
            .iter()
            .all(|ip| ip.parse::<std::net::IpAddr>().is_ok()));
        assert!(!report.ips.iter().any(|ip| ip == "127.0.0.1"));
        assert!(!report.os.is_empty());
        assert_eq!(
            os_name("NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n")
                .as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
    }

    #[test]
    fn an_address_a_resource_no_longer_has_ends() {
        let book = PlaceBook::new();
        book.set(
            "service/shop/web",
            vec![pod("10.96.0.1", ""), pod("fd00::1", "")],
        );
        let before = book.version();
        book.set("service/shop/web", vec![pod("10.96.0.1", "")]);
        let delta = book.changes_since(before, false);
        assert_eq!(delta.records.len(), 1);
        assert_eq!(delta.records[0].ip, "fd00::1");
        assert_ne!(delta.records[0].until_us, 0);
        assert_eq!(book.live().len(), 1);
    }
}
