//! A write as received: the payloads its rows were mapped from, with everything else their
//! mapping read (the sender of each, the agent, the span limits in force, and the answer of
//! every place lookup), so that mapping the record again gives the same rows. A store that logs
//! its writes can log a record instead of the rows: the payloads stay compressed as they came
//! (a few dozen bytes a span), where the rows take several times that even compressed, and
//! cost an encoding and a compression of every write.
//!
//! A record, all numbers little-endian, lengths `u32`:
//! - the magic `SFREC\0\0\x01`, the number of rows it maps to (`u64`) and where its tail
//!   begins (`u64`, from the record's start);
//! - the payloads: the sender's address, the encoding (`0` none, `1` gzip, `2` zstd), the length
//!   decompressed, the bytes as received;
//! - the tail: the agent's id; the four span limits (`u64` each); the places lookups answered
//!   with (each text field, the two auto types, the labels), and the lookups in the order they
//!   were made: address, time (`i64`), the index of the answer in the places, or `u32::MAX` for
//!   none.
//!
//! The payloads come first so that a record is built where its payloads are added, and the
//! tail, known only once the last is mapped, is appended without copying them.
//!
//! An address is a byte (`0` none, `4`, `6`) and sixteen bytes (an IPv4 address mapped).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use spanflow_model::{AutoType, Place, SpanRow};

use crate::decompress::{decompress, Encoding};
use crate::limits::{Checked, SpanLimits};
use crate::map::Sender;
use crate::places::Places;
use crate::wire::{map_payload, RowPool};

const MAGIC: [u8; 8] = *b"SFREC\0\0\x01";
/// The magic, the number of rows and where the tail begins.
const HEADER_BYTES: usize = MAGIC.len() + 16;

/// A lookup: the address, the time it was asked of, and the answer.
type Lookup = (IpAddr, i64, Option<Arc<Place>>);
/// The answers of a record's lookups by what was asked.
type Answers = HashMap<(IpAddr, i64), Vec<Option<Arc<Place>>>>;
const NO_PLACE: u32 = u32::MAX;

/// Whether `bytes` is a record (as opposed to anything else a log may hold).
pub fn is_record(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

/// The number of rows a record says it maps to; `None` for bytes that are not a record.
pub fn n_rows(bytes: &[u8]) -> Option<u64> {
    let n = bytes.strip_prefix(&MAGIC)?.first_chunk::<8>()?;
    Some(u64::from_le_bytes(*n))
}

/// The place lookups of a mapping, recorded as the places it wraps answer them.
#[derive(Debug)]
pub struct RecordingPlaces {
    inner: Arc<dyn Places>,
    lookups: Mutex<Vec<Lookup>>,
}

impl RecordingPlaces {
    pub fn new(inner: Arc<dyn Places>) -> RecordingPlaces {
        RecordingPlaces {
            inner,
            lookups: Mutex::new(Vec::new()),
        }
    }
}

impl Places for RecordingPlaces {
    fn lookup(&self, ip: IpAddr, time_us: i64) -> Option<Arc<Place>> {
        let answer = self.inner.lookup(ip, time_us);
        self.lookups
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push((ip, time_us, answer.clone()));
        answer
    }

    fn learn(&self, ip: IpAddr, place: &Place, time_us: i64) {
        self.inner.learn(ip, place, time_us);
    }
}

/// A record being built, payload by payload.
#[derive(Debug)]
pub struct RecordBuilder {
    agent_id: String,
    limits: SpanLimits,
    n_rows: u64,
    /// The record so far: its header, the number of rows and the tail's place left to fill,
    /// then the payloads.
    out: Vec<u8>,
}

impl RecordBuilder {
    /// A record of payloads of about `n_bytes` together, as received.
    pub fn new(agent_id: &str, limits: SpanLimits, n_bytes: usize) -> RecordBuilder {
        let mut out = Vec::with_capacity(HEADER_BYTES + n_bytes);
        out.extend_from_slice(&MAGIC);
        out.resize(HEADER_BYTES, 0);
        RecordBuilder {
            agent_id: agent_id.to_owned(),
            limits,
            n_rows: 0,
            out,
        }
    }

    /// Adds a payload as received (`body`, in `encoding`, `n_bytes` long decompressed), which
    /// the sender at `peer_ip` sent and which mapped to `n_rows` rows.
    pub fn payload(
        &mut self,
        peer_ip: Option<IpAddr>,
        encoding: Encoding,
        body: &[u8],
        n_bytes: usize,
        n_rows: usize,
    ) {
        put_ip(&mut self.out, peer_ip);
        self.out.push(match encoding {
            Encoding::Identity => 0,
            Encoding::Gzip => 1,
            Encoding::Zstd => 2,
        });
        put_len(&mut self.out, n_bytes);
        put_bytes(&mut self.out, body);
        self.n_rows += n_rows as u64;
    }

    /// The rows the payloads so far map to.
    pub fn n_rows(&self) -> u64 {
        self.n_rows
    }

    /// The record, with the lookups `places` recorded (`None`: the payloads were mapped
    /// without places).
    pub fn finish(self, places: Option<&RecordingPlaces>) -> Vec<u8> {
        let lookups = places.map(|places| {
            places
                .lookups
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        });
        let lookups = lookups.as_deref().map_or(&[][..], Vec::as_slice);
        let mut out = self.out;
        let tail = out.len() as u64;
        out[MAGIC.len()..MAGIC.len() + 8].copy_from_slice(&self.n_rows.to_le_bytes());
        out[MAGIC.len() + 8..HEADER_BYTES].copy_from_slice(&tail.to_le_bytes());
        put_bytes(&mut out, self.agent_id.as_bytes());
        for limit in [
            self.limits.max_attributes,
            self.limits.max_events,
            self.limits.max_links,
            self.limits.max_string_bytes,
        ] {
            out.extend_from_slice(&(limit as u64).to_le_bytes());
        }
        // Each answer once, however many lookups gave it.
        let mut indexes: HashMap<*const Place, u32> = HashMap::new();
        let mut answers: Vec<&Arc<Place>> = Vec::new();
        for (.., answer) in lookups.iter() {
            if let Some(place) = answer {
                indexes.entry(Arc::as_ptr(place)).or_insert_with(|| {
                    answers.push(place);
                    answers.len() as u32 - 1
                });
            }
        }
        put_len(&mut out, answers.len());
        for place in answers {
            put_place(&mut out, place);
        }
        put_len(&mut out, lookups.len());
        for (ip, time_us, answer) in lookups.iter() {
            put_ip(&mut out, Some(*ip));
            out.extend_from_slice(&time_us.to_le_bytes());
            let index = answer
                .as_ref()
                .map_or(NO_PLACE, |place| indexes[&Arc::as_ptr(place)]);
            out.extend_from_slice(&index.to_le_bytes());
        }
        out
    }
}

/// What a record did not hold as it says.
#[derive(Debug, thiserror::Error)]
#[error("a record of received payloads: {0}")]
pub struct RecordError(String);

/// What mapping a record again came to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Rows mapped.
    pub n_rows: u64,
    /// Rows the record says its payloads mapped to when it was made.
    pub n_rows_recorded: u64,
}

/// Maps the payloads of `record` again, as they were when it was made, and hands each row to
/// `each` in the order they were mapped then.
pub fn replay(
    record: bytes::Bytes,
    each: &mut dyn FnMut(&SpanRow),
) -> Result<Replayed, RecordError> {
    let mut header = Cursor {
        bytes: &record,
        at: 0,
    };
    if header.take(MAGIC.len())? != MAGIC {
        return Err(RecordError("no record's magic".into()));
    }
    let n_rows_recorded = header.u64()?;
    let tail = usize::try_from(header.u64()?)
        .ok()
        .filter(|tail| (HEADER_BYTES..=record.len()).contains(tail))
        .ok_or_else(|| RecordError("its tail is not within it".into()))?;
    let mut cursor = Cursor {
        bytes: &record,
        at: tail,
    };
    let agent_id = cursor.text()?.to_owned();
    let mut limit = || cursor.u64().map(|limit| limit as usize);
    let limits = SpanLimits {
        max_attributes: limit()?,
        max_events: limit()?,
        max_links: limit()?,
        max_string_bytes: limit()?,
    };
    let n_places = cursor.len()?;
    let mut places = Vec::with_capacity(n_places.min(cursor.left() / 14));
    for _ in 0..n_places {
        places.push(Arc::new(cursor.place()?));
    }
    let n_lookups = cursor.len()?;
    let mut answers: Answers = HashMap::new();
    for _ in 0..n_lookups {
        let ip = cursor
            .ip()?
            .ok_or_else(|| RecordError("a lookup without an address".into()))?;
        let time_us = cursor.u64()? as i64;
        let index = cursor.u32()?;
        let answer = match index {
            NO_PLACE => None,
            index => Some(
                places
                    .get(index as usize)
                    .ok_or_else(|| RecordError(format!("a lookup answered by place {index}")))?
                    .clone(),
            ),
        };
        answers.entry((ip, time_us)).or_default().push(answer);
    }
    // Answers are handed out in the order they were given, the last one again to any lookup
    // past them.
    for answers in answers.values_mut() {
        answers.reverse();
    }
    if cursor.left() > 0 {
        return Err(RecordError(format!(
            "{} bytes past its last lookup",
            cursor.left()
        )));
    }
    let recorded: Arc<dyn Places> = Arc::new(Recorded {
        answers: Mutex::new(answers),
    });
    // The payloads lie between the header and the tail.
    let mut cursor = Cursor {
        bytes: &record[..tail],
        at: HEADER_BYTES,
    };
    let mut pool = RowPool::default();
    let mut checked = Checked::default();
    let mut replayed = Replayed {
        n_rows: 0,
        n_rows_recorded,
    };
    while cursor.left() > 0 {
        let peer_ip = cursor.ip()?;
        let encoding = match cursor.byte()? {
            0 => Encoding::Identity,
            1 => Encoding::Gzip,
            2 => Encoding::Zstd,
            other => return Err(RecordError(format!("encoding {other}"))),
        };
        let n_bytes = cursor.len()?;
        let n = cursor.len()?;
        let start = cursor.at;
        cursor.take(n)?;
        let body = record.slice(start..start + n);
        let otlp = decompress(body, encoding, n_bytes)
            .map_err(|error| RecordError(format!("a payload: {error}")))?;
        let sender = Sender {
            peer_ip,
            agent_id: agent_id.clone(),
            places: Some(recorded.clone()),
        };
        map_payload(&otlp, &sender, &mut pool)
            .map_err(|error| RecordError(format!("a payload: {error}")))?;
        for row in pool.rows_mut() {
            limits.apply_checked(row, &mut checked);
            each(row);
            replayed.n_rows += 1;
        }
    }
    Ok(replayed)
}

/// Places that answer as a record says they did.
#[derive(Debug)]
struct Recorded {
    /// The answers to each lookup not given yet, the next one last.
    answers: Mutex<Answers>,
}

impl Places for Recorded {
    fn lookup(&self, ip: IpAddr, time_us: i64) -> Option<Arc<Place>> {
        let mut answers = self
            .answers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let answers = answers.get_mut(&(ip, time_us))?;
        if answers.len() > 1 {
            answers.pop().flatten()
        } else {
            answers.last().cloned().flatten()
        }
    }

    fn learn(&self, _ip: IpAddr, _place: &Place, _time_us: i64) {}
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    let len = u32::try_from(len).expect("a record's part is under 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn put_ip(out: &mut Vec<u8>, ip: Option<IpAddr>) {
    let (kind, address) = match ip {
        None => (0, Ipv6Addr::UNSPECIFIED),
        Some(IpAddr::V4(ip)) => (4, ip.to_ipv6_mapped()),
        Some(IpAddr::V6(ip)) => (6, ip),
    };
    out.push(kind);
    out.extend_from_slice(&address.octets());
}

fn put_place(out: &mut Vec<u8>, place: &Place) {
    for (_, field) in Place::TEXT_COLUMNS {
        put_bytes(out, field(place).as_bytes());
    }
    out.push(place.auto_instance_type.as_u8());
    out.push(place.auto_service_type.as_u8());
    put_len(out, place.labels.len());
    for (key, value) in &place.labels {
        put_bytes(out, key.as_bytes());
        put_bytes(out, value.as_bytes());
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        let taken = self
            .at
            .checked_add(n)
            .and_then(|end| self.bytes.get(self.at..end))
            .ok_or_else(|| RecordError(format!("cut short at byte {}", self.at)))?;
        self.at += n;
        Ok(taken)
    }

    fn byte(&mut self) -> Result<u8, RecordError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, RecordError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("four bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, RecordError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("eight bytes"),
        ))
    }

    fn len(&mut self) -> Result<usize, RecordError> {
        self.u32().map(|len| len as usize)
    }

    fn text(&mut self) -> Result<&'a str, RecordError> {
        let n = self.len()?;
        std::str::from_utf8(self.take(n)?)
            .map_err(|_| RecordError(format!("text that is not UTF-8 at byte {}", self.at)))
    }

    fn ip(&mut self) -> Result<Option<IpAddr>, RecordError> {
        let kind = self.byte()?;
        let address = Ipv6Addr::from(<[u8; 16]>::try_from(self.take(16)?).expect("16 bytes"));
        match kind {
            0 => Ok(None),
            4 => address
                .to_ipv4_mapped()
                .map(|ip| Some(IpAddr::V4(ip)))
                .ok_or_else(|| RecordError("an IPv4 address that is not one".into())),
            6 => Ok(Some(IpAddr::V6(address))),
            other => Err(RecordError(format!("an address of kind {other}"))),
        }
    }

    fn place(&mut self) -> Result<Place, RecordError> {
        let mut place = Place::default();
        for (column, _) in Place::TEXT_COLUMNS {
            let text = self.text()?.to_owned();
            *place
                .text_mut(column)
                .expect("every text column is settable") = text;
        }
        place.auto_instance_type = AutoType::from_u8(self.byte()?);
        place.auto_service_type = AutoType::from_u8(self.byte()?);
        let n_labels = self.len()?;
        for _ in 0..n_labels {
            let key = self.text()?.to_owned();
            let value = self.text()?.to_owned();
            place.labels.push((key, value));
        }
        Ok(place)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    use super::*;
    use crate::ExportTraceServiceRequest;

    /// Places whose every answer differs from the one before: a pod named after the count of
    /// lookups so far, or none at every third.
    #[derive(Debug, Default)]
    struct Changing {
        n_lookups: AtomicUsize,
    }

    impl Places for Changing {
        fn lookup(&self, ip: IpAddr, _time_us: i64) -> Option<Arc<Place>> {
            let n = self.n_lookups.fetch_add(1, Ordering::SeqCst);
            (n % 3 != 2).then(|| {
                Arc::new(Place {
                    pod: format!("pod-{n}"),
                    pod_ns: "shop".into(),
                    auto_instance_type: AutoType::Pod,
                    labels: vec![("app".into(), ip.to_string())],
                    ..Place::default()
                })
            })
        }

        fn learn(&self, _ip: IpAddr, _place: &Place, _time_us: i64) {}
    }

    fn text(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
            ..KeyValue::default()
        }
    }

    /// Two resources of client spans, each calling peers at two addresses at two times, one
    /// span's name longer than the limits let through.
    fn request(seed: u8) -> Vec<u8> {
        let resource = |service: &str, spans: Vec<Span>| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![text("service.name", service)],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        };
        let span = |n: u8, peer: &str| Span {
            trace_id: vec![seed; 16],
            span_id: vec![seed, n, 1, 1, 1, 1, 1, 1],
            name: if n == 0 {
                "x".repeat(300)
            } else {
                format!("call {n}")
            },
            kind: SpanKind::Client as i32,
            start_time_unix_nano: 1_700_000_000_000_000_000 + u64::from(n % 2) * 1_000_000_000,
            end_time_unix_nano: 1_700_000_001_000_000_000,
            attributes: vec![text("net.peer.ip", peer)],
            ..Span::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![
                resource(
                    "web",
                    (0..4)
                        .map(|n| span(n, ["10.0.0.1", "10.0.0.2"][n as usize % 2]))
                        .collect(),
                ),
                resource("db", vec![span(9, "10.0.0.1"), span(8, "fd00::7")]),
            ],
        }
        .encode_to_vec()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// A record of three payloads (gzip'd, zstd'd and as they are, from an IPv4 sender, an
    /// IPv6 one and none), made as the server makes one, and the rows mapped as it was made.
    fn recorded() -> (Vec<u8>, Vec<SpanRow>) {
        let limits = SpanLimits {
            max_string_bytes: 100,
            ..SpanLimits::default()
        };
        let places = Arc::new(RecordingPlaces::new(Arc::new(Changing::default())));
        let mut record = RecordBuilder::new("node-a", limits, 0);
        let mut rows = Vec::new();
        let mut pool = RowPool::default();
        let payloads = [
            (Some("10.1.2.3"), Encoding::Gzip, request(1)),
            (Some("fd00::1"), Encoding::Zstd, request(2)),
            (None, Encoding::Identity, request(3)),
        ];
        for (peer, encoding, otlp) in payloads {
            let body = match encoding {
                Encoding::Gzip => gzip(&otlp),
                Encoding::Zstd => zstd::bulk::compress(&otlp, 1).unwrap(),
                Encoding::Identity => otlp.clone(),
            };
            let sender = Sender {
                peer_ip: peer.map(|ip| ip.parse().unwrap()),
                agent_id: "node-a".into(),
                places: Some(places.clone()),
            };
            map_payload(&otlp, &sender, &mut pool).unwrap();
            for row in pool.rows_mut() {
                limits.apply(row);
            }
            rows.extend(pool.rows().iter().cloned());
            record.payload(
                sender.peer_ip,
                encoding,
                &body,
                otlp.len(),
                pool.rows().len(),
            );
        }
        assert_eq!(record.n_rows(), rows.len() as u64);
        (record.finish(Some(&places)), rows)
    }

    #[test]
    fn a_record_maps_again_to_the_rows_mapped_when_it_was_made() {
        let (record, expected) = recorded();
        assert!(is_record(&record));
        assert_eq!(n_rows(&record), Some(18));
        // What the mapping read differs from row to row, and came from the lookups.
        let pods: std::collections::HashSet<&str> = expected
            .iter()
            .map(|row| row.place_1.pod.as_str())
            .collect();
        assert!(pods.len() > 3, "{pods:?}");
        assert!(expected.iter().any(|row| row.place_1.pod.is_empty()));
        assert!(expected
            .iter()
            .any(|row| row.endpoint.len() < 300 && row.endpoint.starts_with("xx")));

        let mut rows = Vec::new();
        let replayed = replay(record.into(), &mut |row| rows.push(row.clone())).unwrap();
        assert_eq!(
            replayed,
            Replayed {
                n_rows: 18,
                n_rows_recorded: 18
            }
        );
        assert_eq!(rows, expected);
    }

    #[test]
    fn a_damaged_record_is_an_error_not_a_panic() {
        let (record, _) = recorded();
        let replay_of = |bytes: Vec<u8>| replay(bytes.into(), &mut |_| {});
        for cut in (0..record.len()).step_by(7) {
            assert!(replay_of(record[..cut].to_vec()).is_err(), "cut at {cut}");
        }
        let mut longer = record.clone();
        longer.push(0);
        assert!(replay_of(longer).is_err());
        // A byte of the last payload, which ends where the tail begins.
        let mut flipped = record.clone();
        let tail = u64::from_le_bytes(record[16..24].try_into().unwrap()) as usize;
        flipped[tail - 10] ^= 0xff;
        assert!(replay_of(flipped).is_err());
        assert!(!is_record(b"\xff\xff\xff\xff"));
        assert_eq!(n_rows(b"SFREC"), None);
    }
}
