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

use std::collections::HashSet;
use std::net::IpAddr;

use spanflow_model::{Attribute, ResourceTags, SpanRow, TraceId};
use spanflow_store::text;

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
        self.u32(seconds.clamp(0, i64::from(u32::MAX)) as u32);
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

/// Scratch space reused across rows.
#[derive(Default)]
pub struct Encoder {
    text: String,
    json: Vec<u8>,
}

impl Encoder {
    /// Appends `rows` as `l7_flow_log` rows.
    pub fn spans(&mut self, rows: &[SpanRow], out: &mut Vec<u8>) {
        for row in rows {
            self.span(row, out);
        }
    }

    fn span(&mut self, row: &SpanRow, out: &mut Vec<u8>) {
        let mut w = RowBinary::new(out);
        w.date_time(row.time);
        w.i64(row.start_time);
        w.i64(row.end_time);
        w.fixed(row.trace_id.as_bytes());
        w.fixed(row.span_id.as_bytes());
        w.nullable(row.parent_span_id, |w, id| w.fixed(id.as_bytes()));
        w.u8(row.span_kind.as_u8());
        w.string(row.observation_point.as_str());
        w.string(&row.trace_state);
        w.u32(row.flags);
        w.string(&row.endpoint);
        w.string(&row.app_service);
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
        w.string(&row.scope_name);
        w.string(&row.scope_version);
        for (_, tag) in ResourceTags::COLUMNS {
            w.string(tag(&row.resource));
        }
        self.attributes(&mut w, &row.attributes);
        self.attributes(&mut w, &row.resource_attributes);
        self.json(&mut w, |json| text::write_events_json(&row.events, json));
        self.json(&mut w, |json| text::write_links_json(&row.links, json));
        w.u32(row.dropped_attributes_count);
        w.u32(row.dropped_events_count);
        w.u32(row.dropped_links_count);
    }

    /// An address as text; the empty string for none.
    fn ip(&mut self, w: &mut RowBinary<'_>, ip: Option<IpAddr>) {
        use std::fmt::Write as _;
        self.text.clear();
        if let Some(ip) = ip {
            write!(self.text, "{ip}").expect("writes to a String");
        }
        w.string(&self.text);
    }

    /// Names, values as text, and type codes: three parallel arrays.
    fn attributes(&mut self, w: &mut RowBinary<'_>, attributes: &[Attribute]) {
        w.length(attributes.len());
        for attribute in attributes {
            w.string(&attribute.key);
        }
        w.length(attributes.len());
        let mut codes = Vec::with_capacity(attributes.len());
        for attribute in attributes {
            self.text.clear();
            codes.push(text::write_value_text(
                &mut self.text,
                &attribute.value,
                &mut self.json,
            ));
            w.string(&self.text);
        }
        w.length(codes.len());
        w.fixed(&codes);
    }

    /// A JSON column; the empty string when `write` has nothing to write.
    fn json(&mut self, w: &mut RowBinary<'_>, write: impl FnOnce(&mut Vec<u8>) -> bool) {
        self.json.clear();
        write(&mut self.json);
        w.length(self.json.len());
        w.fixed(&self.json);
    }

    /// Appends the `l7_trace_index` rows for `rows`: one per distinct trace id, end second,
    /// service and endpoint. Returns how many.
    pub fn index(rows: &[SpanRow], out: &mut Vec<u8>) -> usize {
        let mut seen: HashSet<(TraceId, i64, &str, &str)> = HashSet::with_capacity(rows.len());
        for row in rows {
            let key = (row.trace_id, row.time, &*row.app_service, &*row.endpoint);
            if seen.insert(key) {
                let mut w = RowBinary::new(out);
                w.fixed(row.trace_id.as_bytes());
                w.date_time(row.time);
                w.string(&row.app_service);
                w.string(&row.endpoint);
            }
        }
        seen.len()
    }
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
    fn the_index_has_one_row_per_trace_second_service_and_endpoint() {
        use spanflow_store::conformance::row;
        let rows = [
            row(1, 1, "a", "x", 1_000_000),
            row(1, 2, "a", "x", 1_000_100),
            row(1, 3, "a", "y", 1_000_200),
            row(2, 1, "a", "x", 1_000_000),
        ];
        let mut out = Vec::new();
        assert_eq!(Encoder::index(&rows, &mut out), 3);
        // 16 id bytes, 4 time bytes, then "a" and a one-letter endpoint, each with its length.
        assert_eq!(out.len(), 3 * (16 + 4 + 2 + 2));
    }
}
