//! Span rows as ClickHouse's `RowBinary` input, in the column order of [`crate::schema`].
//!
//! A write is encoded once, on the task that wrote it, and the bytes are kept until ClickHouse
//! accepts them: a retried insert sends the same bytes again instead of encoding the rows anew,
//! and the inserter only concatenates. `RowBinary` is what the server parses cheapest: numbers
//! little-endian, strings and arrays prefixed by their length as LEB128, `FixedString` as its
//! bytes, `Nullable` as a 1 (null) or a 0 followed by the value. `DateTime64(6)` is an `Int64`
//! and `LowCardinality(String)` a `String` in this format, so one encoding serves both schema
//! flavors. (The `clickhouse` crate's own row serializer is private to its `Insert`, which
//! cannot resend what it sent.)

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;

use spanflow_model::{AttrValue, Attribute, IpText, Place, ResourceTags, SpanRow};
use spanflow_store::text;

use crate::schema::RESOURCE_PERIOD_S;

/// Hash maps over keys that come from this process's own rows, for which a fast hash is safe.
type FastHash = foldhash::fast::RandomState;

/// Appends `RowBinary` values to a buffer.
pub struct RowBinary<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> RowBinary<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> RowBinary<'a> {
        RowBinary { out }
    }

    fn length(&mut self, mut n: usize) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.out.push(byte);
                return;
            }
            self.out.push(byte | 0x80);
        }
    }

    pub fn string(&mut self, text: &str) {
        self.length(text.len());
        self.out.extend_from_slice(text.as_bytes());
    }

    /// Writes a string; returns where its bytes lie in the buffer.
    fn string_at(&mut self, text: &str) -> Range<u32> {
        self.length(text.len());
        let start = self.out.len();
        self.out.extend_from_slice(text.as_bytes());
        offset(start)..offset(self.out.len())
    }

    pub fn fixed(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    pub fn u8(&mut self, value: u8) {
        self.out.push(value);
    }

    pub fn u16(&mut self, value: u16) {
        self.out.extend_from_slice(&value.to_le_bytes());
    }

    pub fn u32(&mut self, value: u32) {
        self.out.extend_from_slice(&value.to_le_bytes());
    }

    pub fn u64(&mut self, value: u64) {
        self.out.extend_from_slice(&value.to_le_bytes());
    }

    pub fn i32(&mut self, value: i32) {
        self.out.extend_from_slice(&value.to_le_bytes());
    }

    pub fn i64(&mut self, value: i64) {
        self.out.extend_from_slice(&value.to_le_bytes());
    }

    /// A `DateTime`: seconds since the epoch as `UInt32`, clamped to the type's range.
    pub fn date_time(&mut self, seconds: i64) {
        self.u32(date_time(seconds));
    }

    pub fn nullable<T>(&mut self, value: Option<T>, write: impl FnOnce(&mut Self, T)) {
        match value {
            None => self.u8(1),
            Some(value) => {
                self.u8(0);
                write(self, value);
            }
        }
    }
}

/// A `DateTime` value: seconds since the epoch, clamped to the type's range (1970 to 2106).
pub fn date_time(seconds: i64) -> u32 {
    seconds.clamp(0, i64::from(u32::MAX)) as u32
}

/// Scratch space reused across rows.
#[derive(Default)]
pub struct Encoder {
    text: String,
    json: Vec<u8>,
    /// The resources of the rows being encoded, by the addresses of their shared attributes
    /// and tags (rows of one OTLP resource share them): the key, and the row's columns after
    /// the key in `resource_arrays`.
    resources: HashMap<(usize, usize), (u64, Range<u32>), FastHash>,
    resource_arrays: Vec<u8>,
    /// A span's key set as `l7_resource` columns, being encoded.
    key_arrays: Vec<u8>,
    /// The (time, key) pairs of the resource rows written.
    resource_rows: HashSet<(u32, u64), FastHash>,
    /// The shared attributes and tags `resources` knows by address, held so that no address
    /// is freed and given to another resource while the write is encoded.
    held: Vec<(Arc<[Attribute]>, Arc<ResourceTags>)>,
}

/// A write's rows as an insert sends them: the `l7_flow_log` rows, the `l7_resource` rows
/// they need and the `l7_trace_index` rows, each with the keys an insert sorts them by.
pub struct Encoded {
    pub spans: Vec<u8>,
    pub span_keys: Vec<SpanKey>,
    pub resources: Resources,
    pub index: Vec<u8>,
    pub index_keys: Vec<IndexKey>,
}

impl Encoded {
    /// What it holds in memory, near enough: what it takes of the store's room.
    pub fn n_bytes(&self) -> usize {
        self.spans.len()
            + self.index.len()
            + self.resources.bytes.len()
            + self.span_keys.len() * std::mem::size_of::<SpanKey>()
            + self.index_keys.len() * std::mem::size_of::<IndexKey>()
    }
}

/// A write encoded a row at a time ([`Encoded`]), as the rows are mapped or from rows held
/// whole.
pub struct WriteBuilder {
    encoder: Encoder,
    encoded: Encoded,
    /// The rows expected, for sizing the buffers once the first rows tell their size.
    expected: usize,
}

impl WriteBuilder {
    pub fn new(expected: usize) -> WriteBuilder {
        let encoded = Encoded {
            spans: Vec::new(),
            span_keys: Vec::with_capacity(expected),
            resources: Resources::default(),
            index: Vec::new(),
            index_keys: Vec::with_capacity(expected),
        };
        let mut encoder = Encoder::default();
        encoder.begin(&encoded.resources);
        WriteBuilder {
            encoder,
            encoded,
            expected,
        }
    }

    pub fn append(&mut self, row: &SpanRow) {
        let encoded = &mut self.encoded;
        let key = self
            .encoder
            .span(row, &mut encoded.spans, &mut encoded.resources);
        encoded.span_keys.push(key);
        encoded
            .index_keys
            .push(Encoder::index_row(row, &mut encoded.index));
        // Sized from the first rows: the bytes then grow once, not by doubling.
        if encoded.span_keys.len() == SIZING_ROWS && self.expected > SIZING_ROWS {
            let more = self.expected - SIZING_ROWS;
            reserve_like(&mut encoded.spans, SIZING_ROWS, more);
            reserve_like(&mut encoded.index, SIZING_ROWS, more);
        }
    }

    /// The write. Its trace index holds a row for every span; an insert sends each distinct
    /// one once ([`index_order`]).
    pub fn finish(self) -> Encoded {
        self.encoded
    }
}

/// The `l7_resource` rows a write needs: one per resource and quarter hour of its spans.
#[derive(Default)]
pub struct Resources {
    pub bytes: Vec<u8>,
    pub keys: Vec<ResourceKey>,
}

/// An `l7_resource` row in [`Resources::bytes`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceKey {
    /// The last second of the quarter hour the row stands for (its `time`).
    pub time: u32,
    pub id: u64,
    pub row: Range<u32>,
}

impl Resources {
    /// Adds a row: its time and key, and `columns`, the rest of it.
    fn add(&mut self, time: u32, id: u64, columns: &[u8]) {
        let start = self.bytes.len();
        let mut w = RowBinary::new(&mut self.bytes);
        w.u32(time);
        w.u64(id);
        w.fixed(columns);
        self.keys.push(ResourceKey {
            time,
            id,
            row: offset(start)..offset(self.bytes.len()),
        });
    }
}

/// The `time` of the resource row for a span ending in second `time`: the last second of its
/// quarter hour.
pub fn resource_time(time: u32) -> u32 {
    time - time % RESOURCE_PERIOD_S + (RESOURCE_PERIOD_S - 1)
}

impl Encoder {
    /// Appends `rows` as `l7_flow_log` rows, and the `l7_resource` rows they need to
    /// `resources`; returns each span row's sort key.
    #[cfg(test)]
    pub fn spans(
        &mut self,
        rows: &[SpanRow],
        out: &mut Vec<u8>,
        resources: &mut Resources,
    ) -> Vec<SpanKey> {
        self.begin(resources);
        rows.iter()
            .map(|row| self.span(row, out, resources))
            .collect()
    }

    /// Starts a write whose `l7_resource` rows go to `resources`, forgetting the resources of
    /// the writes before: rows are then added with [`Encoder::span`].
    pub fn begin(&mut self, resources: &Resources) {
        self.resources.clear();
        self.held.clear();
        self.resource_arrays.clear();
        self.resource_rows = resources
            .keys
            .iter()
            .map(|key| (key.time, key.id))
            .collect();
    }

    /// The key of a row's resource, its row encoded once per write: its attributes, no
    /// scope, and its tags. 0 for a resource without attributes, which needs no row (its span
    /// rows hold its tags, which are empty unless the rows were made otherwise than from OTLP).
    fn resource(&mut self, row: &SpanRow, resources: &mut Resources) -> u64 {
        let attributes = &row.resource_attributes;
        if attributes.is_empty() {
            return 0;
        }
        let address = (
            std::sync::Arc::as_ptr(attributes) as *const Attribute as usize,
            std::sync::Arc::as_ptr(&row.resource) as usize,
        );
        let (id, arrays) = match self.resources.get(&address) {
            Some(known) => known.clone(),
            None => {
                let start = self.resource_arrays.len();
                let mut arrays = std::mem::take(&mut self.resource_arrays);
                let mut w = RowBinary::new(&mut arrays);
                self.attributes(&mut w, attributes);
                w.fixed(&NO_SCOPE);
                for (_, tag) in ResourceTags::COLUMNS {
                    w.string(tag(&row.resource));
                }
                self.resource_arrays = arrays;
                let range = offset(start)..offset(self.resource_arrays.len());
                // 0 stands for no resource.
                let id = resource_id(slice(&self.resource_arrays, &range)).max(1);
                self.resources.insert(address, (id, range.clone()));
                self.held
                    .push((row.resource_attributes.clone(), row.resource.clone()));
                (id, range)
            }
        };
        let time = resource_time(date_time(row.time));
        if self.resource_rows.insert((time, id)) {
            resources.add(time, id, slice(&self.resource_arrays, &arrays));
        }
        id
    }

    /// The key of a span's attribute key set: its names and types, with every value empty,
    /// and its scope's name and version, as an `l7_resource` row of their own; 0 for a span
    /// without attributes or scope.
    fn key_set(&mut self, row: &SpanRow, resources: &mut Resources) -> u64 {
        let attributes = &row.attributes;
        if attributes.is_empty() && row.scope_name.is_empty() && row.scope_version.is_empty() {
            return 0;
        }
        let mut arrays = std::mem::take(&mut self.key_arrays);
        arrays.clear();
        let mut w = RowBinary::new(&mut arrays);
        names(&mut w, attributes);
        // As many empty strings: a length of 0 each.
        w.length(attributes.len());
        for _ in attributes {
            w.length(0);
        }
        types(&mut w, attributes);
        w.string(&row.scope_name);
        w.string(&row.scope_version);
        w.fixed(&NO_TAGS);
        let id = resource_id(&arrays).max(1);
        let time = resource_time(date_time(row.time));
        if self.resource_rows.insert((time, id)) {
            resources.add(time, id, &arrays);
        }
        self.key_arrays = arrays;
        id
    }

    /// Appends a row as an `l7_flow_log` row, and the `l7_resource` rows it needs that the
    /// write's rows before it did not to `resources`; returns its sort key.
    pub fn span(&mut self, row: &SpanRow, out: &mut Vec<u8>, resources: &mut Resources) -> SpanKey {
        let resource_id = self.resource(row, resources);
        let key_set_id = self.key_set(row, resources);
        let start = out.len();
        let mut w = RowBinary::new(out);
        let time = date_time(row.time);
        w.u32(time);
        w.i64(row.start_time);
        w.i64(row.end_time);
        w.fixed(row.trace_id.as_bytes());
        w.fixed(row.span_id.as_bytes());
        w.nullable(row.parent_span_id, |w, id| w.fixed(id.as_bytes()));
        w.u8(row.span_kind.as_u8());
        w.string(row.observation_point.as_str());
        w.string(&row.trace_state);
        w.u32(row.flags);
        let endpoint = w.string_at(&row.endpoint);
        let service = w.string_at(&row.app_service);
        w.string(&row.app_instance);
        w.u16(row.signal_source);
        w.string(&row.agent_id);
        w.u8(row.l7_protocol.as_u8());
        w.string(&row.l7_protocol_str);
        w.string(&row.version);
        w.u8(u8::from(row.is_tls));
        w.u8(row.protocol);
        w.string(&row.request_type);
        w.string(&row.request_domain);
        w.string(&row.request_resource);
        w.nullable(row.request_length, RowBinary::i64);
        w.nullable(row.response_length, RowBinary::i64);
        w.nullable(row.response_code, RowBinary::i32);
        w.u8(row.response_status.as_u8());
        w.string(&row.response_exception);
        w.u8(row.status_code);
        w.string(&row.status_message);
        w.u64(row.response_duration);
        self.ip(&mut w, row.ip_0);
        self.ip(&mut w, row.ip_1);
        w.u16(row.client_port);
        w.u16(row.server_port);
        for place in [&row.place_0, &row.place_1] {
            for (_, field) in Place::TEXT_COLUMNS {
                w.string(field(place));
            }
            w.u8(place.auto_instance_type.as_u8());
            w.u8(place.auto_service_type.as_u8());
            if place.labels.is_empty() {
                w.string("");
            } else {
                w.string(&place.labels_json());
            }
        }
        // The scope is in the key set's `l7_resource` row, and the tags in the resource's.
        if key_set_id == 0 {
            w.string(&row.scope_name);
            w.string(&row.scope_version);
        } else {
            w.fixed(&NO_SCOPE);
        }
        if resource_id == 0 {
            for (_, tag) in ResourceTags::COLUMNS {
                w.string(tag(&row.resource));
            }
        } else {
            w.fixed(&NO_TAGS);
        }
        // The names and types are in the key set's `l7_resource` row: the values alone.
        w.length(0);
        self.values(&mut w, &row.attributes);
        w.length(0);
        // The resource's attributes are in `l7_resource`: three empty arrays, and the key.
        w.fixed(&[0, 0, 0]);
        w.u64(resource_id);
        w.u64(key_set_id);
        self.json(&mut w, |json| text::write_events_json(&row.events, json));
        self.json(&mut w, |json| text::write_links_json(&row.links, json));
        w.u32(row.dropped_attributes_count);
        w.u32(row.dropped_events_count);
        w.u32(row.dropped_links_count);
        SpanKey {
            service,
            endpoint,
            time,
            trace_id: *row.trace_id.as_bytes(),
            span_id: *row.span_id.as_bytes(),
            row: offset(start)..offset(out.len()),
        }
    }

    /// An address as text; the empty string for none.
    fn ip(&mut self, w: &mut RowBinary<'_>, ip: Option<IpAddr>) {
        match ip {
            None => w.string(""),
            Some(ip) => w.string(IpText::new(ip).as_str()),
        }
    }

    /// Names, values as text, and type codes: three parallel arrays.
    fn attributes(&mut self, w: &mut RowBinary<'_>, attributes: &[Attribute]) {
        names(w, attributes);
        self.values(w, attributes);
        types(w, attributes);
    }

    /// The values as text: one array.
    fn values(&mut self, w: &mut RowBinary<'_>, attributes: &[Attribute]) {
        w.length(attributes.len());
        for attribute in attributes {
            match &attribute.value {
                // Most values: straight into the row.
                AttrValue::String(value) => w.string(value),
                value => {
                    self.text.clear();
                    text::write_value_text(&mut self.text, value, &mut self.json);
                    w.string(&self.text);
                }
            }
        }
    }

    /// A JSON column; the empty string when `write` has nothing to write.
    fn json(&mut self, w: &mut RowBinary<'_>, write: impl FnOnce(&mut Vec<u8>) -> bool) {
        self.json.clear();
        write(&mut self.json);
        w.length(self.json.len());
        w.fixed(&self.json);
    }

    /// Appends the `l7_trace_index` rows for `rows`, one a span. Returns each row's sort key.
    #[cfg(test)]
    pub fn index(rows: &[SpanRow], out: &mut Vec<u8>) -> Vec<IndexKey> {
        rows.iter()
            .map(|row| Encoder::index_row(row, out))
            .collect()
    }

    /// Appends a row's `l7_trace_index` row; returns its sort key. Several spans of a trace
    /// in one second, service and endpoint give the same row, which [`index_order`] sends
    /// once.
    pub fn index_row(row: &SpanRow, out: &mut Vec<u8>) -> IndexKey {
        let start = out.len();
        let mut w = RowBinary::new(out);
        let time = date_time(row.time);
        w.fixed(row.trace_id.as_bytes());
        w.u32(time);
        let service = w.string_at(&row.app_service);
        let endpoint = w.string_at(&row.endpoint);
        IndexKey {
            trace_id: *row.trace_id.as_bytes(),
            time,
            service,
            endpoint,
            row: offset(start)..offset(out.len()),
        }
    }
}

/// The attributes' names: one array.
fn names(w: &mut RowBinary<'_>, attributes: &[Attribute]) {
    w.length(attributes.len());
    for attribute in attributes {
        w.string(&attribute.key);
    }
}

/// The attributes' type codes: one array.
fn types(w: &mut RowBinary<'_>, attributes: &[Attribute]) {
    w.length(attributes.len());
    for attribute in attributes {
        w.u8(text::value_code(&attribute.value));
    }
}

/// The scope's name and version, empty, as `RowBinary`: a span row's, or a resource row's.
const NO_SCOPE: [u8; 2] = [0; 2];

/// The resource's tags, empty, as `RowBinary`: a span row's, or a key set's row's.
const NO_TAGS: [u8; ResourceTags::COLUMNS.len()] = [0; ResourceTags::COLUMNS.len()];

/// Rows encoded before the output is sized for the rest of a write.
const SIZING_ROWS: usize = 64;

/// Makes room in `out` for `more` rows like the `done` rows it holds, and a
/// sixteenth more: a write's bytes then grow once, where doubling would copy them into fresh
/// pages several times over.
fn reserve_like(out: &mut Vec<u8>, done: usize, more: usize) {
    let per_row = out.len().div_ceil(done.max(1));
    let room = per_row.saturating_mul(more);
    out.reserve(room.saturating_add(room / 16));
}

/// The key of an `l7_resource` row: the xxHash64 of its columns after the key as `RowBinary`,
/// the same for the same resource or key set in any spanflow process. Rows of versions that
/// held fewer columns there hashed fewer bytes, so their keys are never a newer row's.
pub fn resource_id(arrays: &[u8]) -> u64 {
    twox_hash::XxHash64::oneshot(0, arrays)
}

/// A position in a write's bytes; a write is far below 4 GiB (bodies are capped well below).
fn offset(position: usize) -> u32 {
    u32::try_from(position).expect("a write's rows encode to less than 4 GiB")
}

/// Where an `l7_flow_log` row lies in its write's bytes, and its `ORDER BY` key there.
#[derive(Clone, Debug)]
pub struct SpanKey {
    service: Range<u32>,
    endpoint: Range<u32>,
    time: u32,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    row: Range<u32>,
}

/// Where an `l7_trace_index` row lies in its write's bytes, and its `ORDER BY` key there.
#[derive(Clone, Debug)]
pub struct IndexKey {
    trace_id: [u8; 16],
    time: u32,
    service: Range<u32>,
    endpoint: Range<u32>,
    row: Range<u32>,
}

impl IndexKey {
    /// Its row, in the index bytes of its write.
    pub fn row<'a>(&self, index: &'a [u8]) -> &'a [u8] {
        slice(index, &self.row)
    }
}

fn slice<'a>(bytes: &'a [u8], range: &Range<u32>) -> &'a [u8] {
    &bytes[range.start as usize..range.end as usize]
}

/// The order to send the rows of several writes in: (write, the row's bytes in it).
pub type RowOrder = Vec<(u32, Range<u32>)>;

/// The rows of several writes, each `(bytes, keys)`, in the table's order
/// (`ORDER BY (app_service, endpoint, time, trace_id, span_id)`): ClickHouse checks whether an
/// inserted block is sorted already and, when it is, writes it without sorting it again,
/// which is a sixth of what an insert costs it. Strings compare as ClickHouse compares them,
/// byte by byte and then by length.
pub fn span_order(writes: &[(&[u8], &[SpanKey])]) -> RowOrder {
    // The (service, endpoint) pairs are few: rank them, then sort the rows by keys of fixed
    // size held inline (ids as big-endian integers compare as their bytes do), instead of
    // following each row's strings into the writes' bytes.
    let n_rows = writes.iter().map(|(_, keys)| keys.len()).sum();
    let mut pairs = PairRanks::default();
    let mut order: Vec<(u32, u32, u128, u64, u32, u32)> = Vec::with_capacity(n_rows);
    for (write, (bytes, keys)) in writes.iter().enumerate() {
        for (index, key) in keys.iter().enumerate() {
            let pair = (slice(bytes, &key.service), slice(bytes, &key.endpoint));
            order.push((
                pairs.number(pair),
                key.time,
                u128::from_be_bytes(key.trace_id),
                u64::from_be_bytes(key.span_id),
                write as u32,
                index as u32,
            ));
        }
    }
    let ranks = pairs.ranks();
    for (number, ..) in &mut order {
        *number = ranks[*number as usize];
    }
    order.sort_unstable();
    order
        .into_iter()
        .map(|(.., write, index)| (write, writes[write as usize].1[index as usize].row.clone()))
        .collect()
}

/// [`span_order`] for the index: `ORDER BY (trace_id, time, app_service, endpoint)`, each
/// distinct row once. Spans of one trace, second, service and endpoint give the same row;
/// sorted, the copies lie next to each other, in one write or in several.
pub fn index_order(writes: &[(&[u8], &[IndexKey])]) -> RowOrder {
    let n_rows = writes.iter().map(|(_, keys)| keys.len()).sum();
    let mut pairs = PairRanks::default();
    let mut order: Vec<(u128, u32, u32, u32, u32)> = Vec::with_capacity(n_rows);
    for (write, (bytes, keys)) in writes.iter().enumerate() {
        for (index, key) in keys.iter().enumerate() {
            let pair = (slice(bytes, &key.service), slice(bytes, &key.endpoint));
            order.push((
                u128::from_be_bytes(key.trace_id),
                key.time,
                pairs.number(pair),
                write as u32,
                index as u32,
            ));
        }
    }
    let ranks = pairs.ranks();
    for (_, _, number, ..) in &mut order {
        *number = ranks[*number as usize];
    }
    order.sort_unstable();
    order.dedup_by_key(|(trace_id, time, pair, ..)| (*trace_id, *time, *pair));
    order
        .into_iter()
        .map(|(.., write, index)| (write, writes[write as usize].1[index as usize].row.clone()))
        .collect()
}

/// The orders an insert of `writes` sends their span rows and their index rows in.
pub fn insert_order<'a>(writes: impl Iterator<Item = &'a Encoded> + Clone) -> (RowOrder, RowOrder) {
    let spans: Vec<_> = writes
        .clone()
        .map(|write| (&write.spans[..], &write.span_keys[..]))
        .collect();
    let index: Vec<_> = writes
        .map(|write| (&write.index[..], &write.index_keys[..]))
        .collect();
    (span_order(&spans), index_order(&index))
}

/// Numbers (service, endpoint) pairs as they are met, then ranks the numbers in the pairs'
/// order: strings compared byte by byte and then by length, as ClickHouse compares them.
#[derive(Default)]
struct PairRanks<'a> {
    numbers: HashMap<Pair<'a>, u32, FastHash>,
    pairs: Vec<Pair<'a>>,
    /// The last pair met and its number: rows of one pair come in runs.
    last: Option<(Pair<'a>, u32)>,
}

/// A row's service and endpoint, as bytes of its write.
type Pair<'a> = (&'a [u8], &'a [u8]);

impl<'a> PairRanks<'a> {
    fn number(&mut self, pair: Pair<'a>) -> u32 {
        if let Some((last, number)) = self.last {
            if last == pair {
                return number;
            }
        }
        let pairs = &mut self.pairs;
        let number = *self.numbers.entry(pair).or_insert_with(|| {
            pairs.push(pair);
            (pairs.len() - 1) as u32
        });
        self.last = Some((pair, number));
        number
    }

    /// Each number's rank.
    fn ranks(&self) -> Vec<u32> {
        let mut by_pair: Vec<u32> = (0..self.pairs.len() as u32).collect();
        by_pair.sort_unstable_by_key(|&number| self.pairs[number as usize]);
        let mut ranks = vec![0u32; self.pairs.len()];
        for (rank, number) in by_pair.into_iter().enumerate() {
            ranks[number as usize] = rank as u32;
        }
        ranks
    }
}

/// The rows in `order`, copied into buffers of about `chunk_bytes` each, ready to send.
pub fn chunks<'a>(
    writes: &'a [&'a [u8]],
    order: &'a [(u32, Range<u32>)],
    chunk_bytes: usize,
) -> impl Iterator<Item = Vec<u8>> + 'a {
    let mut next = 0;
    std::iter::from_fn(move || {
        if next == order.len() {
            return None;
        }
        let mut chunk = Vec::with_capacity(chunk_bytes + 4096);
        while next < order.len() && chunk.len() < chunk_bytes {
            let (write, row) = &order[next];
            chunk.extend_from_slice(slice(writes[*write as usize], row));
            next += 1;
        }
        Some(chunk)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_leb128() {
        let mut out = Vec::new();
        let mut w = RowBinary::new(&mut out);
        w.length(0);
        w.length(127);
        w.length(128);
        w.length(300);
        assert_eq!(out, [0, 0x7f, 0x80, 0x01, 0xac, 0x02]);
    }

    #[test]
    fn nullable_and_times_follow_the_format() {
        let mut out = Vec::new();
        let mut w = RowBinary::new(&mut out);
        w.nullable(None::<i32>, RowBinary::i32);
        w.nullable(Some(-2i32), RowBinary::i32);
        w.date_time(-5);
        w.date_time(i64::MAX);
        w.string("hé");
        assert_eq!(
            out,
            [
                1, 0, 0xfe, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 3, b'h', 0xc3,
                0xa9
            ]
        );
    }

    #[test]
    fn addresses_and_attribute_codes_are_written_as_text_and_types() {
        let mut encoder = Encoder::default();
        for text in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.100.9",
            "192.168.1.10",
            "fd00::7",
        ] {
            let mut out = Vec::new();
            encoder.ip(&mut RowBinary::new(&mut out), Some(text.parse().unwrap()));
            assert_eq!(out[0] as usize, text.len());
            assert_eq!(&out[1..], text.as_bytes());
        }
        // Values as text, then their types.
        let attributes: Vec<Attribute> = (0..70)
            .map(|i| {
                let value = if i % 2 == 0 {
                    AttrValue::Int(i)
                } else {
                    AttrValue::String(format!("v{i}"))
                };
                Attribute::new(format!("k{i}"), value)
            })
            .collect();
        let mut out = Vec::new();
        encoder.attributes(&mut RowBinary::new(&mut out), &attributes);
        let codes = &out[out.len() - 70..];
        assert_eq!(out[out.len() - 71], 70, "the codes' length");
        for (i, code) in codes.iter().enumerate() {
            let expected = if i % 2 == 0 {
                text::TYPE_INT
            } else {
                text::TYPE_STRING
            };
            assert_eq!(*code, expected, "attribute {i}");
        }
    }

    #[test]
    fn a_writes_bytes_are_sized_from_its_first_rows() {
        use spanflow_store::conformance::row;
        let rows: Vec<SpanRow> = (0..1000u32)
            .map(|n| {
                row(
                    (n / 8) as u8,
                    (n % 8) as u8 + 1,
                    "a",
                    "x",
                    1_000_000 + i64::from(n),
                )
            })
            .collect();
        let mut write = WriteBuilder::new(rows.len());
        for row in &rows {
            write.append(row);
        }
        let write = write.finish();
        for out in [&write.spans, &write.index] {
            // Alike rows: the room taken is what they needed and a sixteenth, not a doubling.
            assert!(out.capacity() >= out.len());
            assert!(
                out.capacity() <= out.len() + out.len() / 15,
                "{} bytes in {}",
                out.len(),
                out.capacity()
            );
        }
    }

    #[test]
    fn the_index_has_one_row_per_trace_second_service_and_endpoint() {
        use spanflow_store::conformance::row;
        let rows = [
            row(1, 1, "a", "x", 1_000_000),
            row(1, 2, "a", "x", 1_000_100),
            row(1, 3, "a", "y", 1_000_200),
            row(2, 1, "a", "x", 1_000_000),
        ];
        // In one write, and the first again in another.
        let (mut one, mut two) = (Vec::new(), Vec::new());
        let one_keys = Encoder::index(&rows, &mut one);
        let two_keys = Encoder::index(&rows[..1], &mut two);
        let order = index_order(&[(&one, &one_keys), (&two, &two_keys)]);
        assert_eq!(order.len(), 3);
        // 16 id bytes, 4 time bytes, then "a" and a one-letter endpoint, each with its length.
        let sent: Vec<u8> = chunks(&[&one, &two], &order, 1 << 20).flatten().collect();
        assert_eq!(sent.len(), 3 * (16 + 4 + 2 + 2));
    }

    #[test]
    fn a_resource_is_written_once_a_quarter_hour_under_a_key_of_its_attributes_and_tags() {
        use spanflow_model::AttrValue;
        use spanflow_store::conformance::row;
        let pod = |name: &str| -> std::sync::Arc<[Attribute]> {
            vec![Attribute::new(
                "k8s.pod.name",
                AttrValue::String(name.into()),
            )]
            .into()
        };
        let (a, b) = (pod("a"), pod("b"));
        let quarter = 1_700_000_100;
        let mut rows = Vec::new();
        for (i, (resource, second)) in [
            (&a, quarter),
            (&a, quarter + 10),
            (&b, quarter + 20),
            (&a, quarter + 900),
        ]
        .into_iter()
        .enumerate()
        {
            let mut span = row(1, i as u8, "s", "x", second * 1_000_000);
            span.resource_attributes = resource.clone();
            rows.push(span);
        }
        // The same attributes in another allocation, as another request would bring them.
        let mut again = row(2, 1, "s", "x", quarter * 1_000_000);
        again.resource_attributes = pod("a");
        rows.push(again);
        rows.push(row(3, 1, "s", "x", quarter * 1_000_000));

        let mut out = Vec::new();
        let mut resources = Resources::default();
        Encoder::default().spans(&rows, &mut out, &mut resources);
        let ends: Vec<(u32, u64)> = resources.keys.iter().map(|k| (k.time, k.id)).collect();
        let end = resource_time(quarter as u32 + 1);
        assert_eq!(end % 900, 899);
        assert!(end > quarter as u32 && end < quarter as u32 + 901);
        assert_eq!(ends.len(), 3, "{ends:?}");
        let (id_a, id_b) = (ends[0].1, ends[1].1);
        assert_ne!(id_a, id_b);
        assert_eq!(ends, [(end, id_a), (end, id_b), (end + 900, id_a)]);
        // Each row: time, key, then the arrays: one name, one value, one type code.
        let first = slice(&resources.bytes, &resources.keys[0].row);
        assert_eq!(&first[..4], &end.to_le_bytes());
        assert_eq!(&first[4..12], &id_a.to_le_bytes());
        assert_eq!(resource_id(&first[12..]), id_a);
        assert_eq!(&first[12..26], b"\x01\x0ck8s.pod.name");

        // Then the value and the type code, no scope, and the twelve tags (empty here).
        assert_eq!(&first[26..29], b"\x01\x01a");
        assert_eq!(&first[29..31], b"\x01\x00");
        assert_eq!(&first[31..], [0; 2 + 12]);

        // Another write of the same attributes finds the same key.
        let mut other = Resources::default();
        Encoder::default().spans(&rows[4..5], &mut Vec::new(), &mut other);
        assert_eq!(other.keys[0].id, id_a);

        // The same attributes with other tags are another row.
        let mut tagged = rows[4].clone();
        tagged.resource = std::sync::Arc::new(ResourceTags {
            k8s_pod_name: "a".into(),
            ..ResourceTags::default()
        });
        let mut other = Resources::default();
        Encoder::default().spans(&[tagged], &mut Vec::new(), &mut other);
        assert_ne!(other.keys[0].id, id_a);
        // The pod is the sixth tag, of twelve.
        let row = slice(&other.bytes, &other.keys[0].row);
        assert!(
            row.ends_with(b"\x00\x01a\x00\x00\x00\x00\x00\x00"),
            "{row:?}"
        );
    }

    #[test]
    fn rows_of_several_writes_are_sent_in_the_order_of_the_table() {
        use spanflow_store::conformance::row;
        let first = [
            row(1, 1, "b", "x", 3_000_000),
            row(2, 1, "a", "y", 1_000_000),
            row(3, 1, "ab", "x", 1_000_000),
        ];
        let second = [row(4, 1, "a", "y", 0), row(5, 1, "a", "x", 9_000_000)];
        let mut encoder = Encoder::default();
        let (mut one, mut two) = (Vec::new(), Vec::new());
        let mut resources = Resources::default();
        let one_keys = encoder.spans(&first, &mut one, &mut resources);
        let two_keys = encoder.spans(&second, &mut two, &mut resources);
        let order = span_order(&[(&one, &one_keys), (&two, &two_keys)]);
        // Small chunks: a chunk ends after the row that fills it.
        let sent: Vec<Vec<u8>> = chunks(&[&one, &two], &order, 10).collect();
        assert_eq!(sent.len(), 5, "one row a chunk");
        let mut alone = Vec::new();
        for row in [&second[1], &second[0], &first[1], &first[2], &first[0]] {
            encoder.spans(std::slice::from_ref(row), &mut alone, &mut resources);
        }
        assert_eq!(sent.concat(), alone);

        let (mut one, mut two) = (Vec::new(), Vec::new());
        let one_keys = Encoder::index(&first, &mut one);
        let two_keys = Encoder::index(&second, &mut two);
        let order = index_order(&[(&one, &one_keys), (&two, &two_keys)]);
        let sent: Vec<Vec<u8>> = chunks(&[&one, &two], &order, 1 << 20).collect();
        assert_eq!(sent.len(), 1);
        let mut alone = Vec::new();
        for row in [&first[0], &first[1], &first[2], &second[0], &second[1]] {
            Encoder::index(std::slice::from_ref(row), &mut alone);
        }
        assert_eq!(sent.concat(), alone, "by trace id first");
    }

    #[test]
    fn the_order_is_the_order_of_the_keys_bytes() {
        use spanflow_model::{SpanId, TraceId};
        use spanflow_store::conformance::row;
        // Few services, endpoints and seconds, so that ids decide often; ids that differ in
        // their first byte and in their last.
        let mut state = 7u64;
        let mut next = move |n: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % n
        };
        let writes: Vec<Vec<SpanRow>> = (0..3)
            .map(|_| {
                (0..200)
                    .map(|_| {
                        let service = ["a", "ab", "b", ""][next(4) as usize];
                        let endpoint = ["x", "xy", "y"][next(3) as usize];
                        let mut span = row(0, 0, service, endpoint, next(3) as i64 * 1_000_000);
                        let mut trace = [0u8; 16];
                        trace[0] = next(3) as u8;
                        trace[15] = next(3) as u8;
                        span.trace_id = TraceId(trace);
                        let mut id = [1u8; 8];
                        id[0] = next(2) as u8 + 1;
                        id[7] = next(4) as u8 + 1;
                        span.span_id = SpanId(id);
                        span
                    })
                    .collect()
            })
            .collect();
        let mut resources = Resources::default();
        // Each write's span rows and keys, and its index rows and keys.
        type Encoded = (Vec<u8>, Vec<SpanKey>, Vec<u8>, Vec<IndexKey>);
        let encoded: Vec<Encoded> = writes
            .iter()
            .map(|rows| {
                let mut spans = Vec::new();
                let span_keys = Encoder::default().spans(rows, &mut spans, &mut resources);
                let mut index = Vec::new();
                let index_keys = Encoder::index(rows, &mut index);
                (spans, span_keys, index, index_keys)
            })
            .collect();

        let spans: Vec<(&[u8], &[SpanKey])> = encoded
            .iter()
            .map(|(bytes, keys, ..)| (&bytes[..], &keys[..]))
            .collect();
        let key_of = |&(write, ref row): &(u32, Range<u32>)| {
            let (bytes, keys) = spans[write as usize];
            let key = keys.iter().find(|key| key.row == *row).unwrap();
            (
                slice(bytes, &key.service).to_vec(),
                slice(bytes, &key.endpoint).to_vec(),
                key.time,
                key.trace_id,
                key.span_id,
            )
        };
        let order = span_order(&spans);
        assert_eq!(order.len(), 600);
        let sorted: Vec<_> = order.iter().map(key_of).collect();
        assert!(sorted.windows(2).all(|pair| pair[0] <= pair[1]));

        let index: Vec<(&[u8], &[IndexKey])> = encoded
            .iter()
            .map(|(.., bytes, keys)| (&bytes[..], &keys[..]))
            .collect();
        let key_of = |&(write, ref row): &(u32, Range<u32>)| {
            let (bytes, keys) = index[write as usize];
            let key = keys.iter().find(|key| key.row == *row).unwrap();
            (
                key.trace_id,
                key.time,
                slice(bytes, &key.service).to_vec(),
                slice(bytes, &key.endpoint).to_vec(),
            )
        };
        let order = index_order(&index);
        // Each distinct row once, in order.
        let distinct: std::collections::BTreeSet<_> = index
            .iter()
            .enumerate()
            .flat_map(|(write, (_, keys))| {
                keys.iter().map(move |key| (write as u32, key.row.clone()))
            })
            .map(|place| key_of(&place))
            .collect();
        assert_eq!(order.len(), distinct.len());
        let sorted: Vec<_> = order.iter().map(key_of).collect();
        assert!(sorted.windows(2).all(|pair| pair[0] < pair[1]));
    }
}
