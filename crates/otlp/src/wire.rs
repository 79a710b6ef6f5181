//! Mapping OTLP/protobuf payloads to span rows straight from their bytes.
//!
//! prost would build the whole message tree first: a `String` for every name, key and value, a
//! `KeyValue` and an `AnyValue` around each attribute, vectors grown by doubling, and all of it
//! moved into rows and freed. This walk reads each span's fields in place, builds only what a
//! row keeps (its attributes, read into the row, and its events and links, as
//! [`map::SpanFields`] holds them) and hands the span to [`map::map_span_into`]. Rows come from
//! a [`RowPool`]: mapped payload after payload, a span's text goes into the buffers the row's
//! last span left, so the mapping of a batch allocates little past its first payload.
//!
//! It accepts exactly what prost accepts, through the cursor of [`crate::scan`] (varints, keys,
//! wire types, lengths, UTF-8, the recursion limit, unknown fields and groups skipped), and
//! decodes what it accepts as prost would: the last value wins for a scalar field that repeats,
//! a message field that repeats merges into the one before (a second `resource` adds its
//! attributes to the first's), and `AnyValue`'s one-of takes the last value, a second array or
//! key-value list continuing the first. A resource's fields are read before its spans, and a
//! scope's before its spans, wherever they lie in the message.

use spanflow_model::{AttrValue, Attribute, Event, Link, SpanRow};

use crate::map::{self, Rejected, ResourceContext, ScopeFields, Sender, SpanFields};
use crate::scan::{self, Cur, Fail, ScanError, RECURSION_LIMIT};

/// Maps every span of an `ExportTraceServiceRequest` payload onto the end of `rows`. Spans with
/// unusable ids are counted in the result, as [`map::map_request`] counts them. A payload prost
/// would refuse is refused whole: `rows` is left as it was, and the error says what is wrong
/// and where.
pub fn map_payload_into(
    payload: &[u8],
    sender: &Sender,
    rows: &mut Vec<SpanRow>,
) -> Result<Rejected, ScanError> {
    let mut pool = RowPool::default();
    let rejected = map_payload(payload, sender, &mut pool)?;
    rows.extend(pool.take());
    Ok(rejected)
}

/// Maps every span of a payload into `pool`, in place of what it held: its rows are the
/// payload's spans, mapped into the text buffers the rows of earlier payloads left, so that a
/// pool used for payload after payload allocates little once it has seen one like it. Spans
/// with unusable ids are counted in the result; a payload prost would refuse is refused whole,
/// and `pool` is left holding no rows.
pub fn map_payload(
    payload: &[u8],
    sender: &Sender,
    pool: &mut RowPool,
) -> Result<Rejected, ScanError> {
    pool.clear();
    let mut walk = Walk {
        sender,
        pool,
        rejected: Rejected::default(),
    };
    match walk.request(Cur::new(payload, 0, RECURSION_LIMIT)) {
        Ok(()) => Ok(walk.rejected.finish()),
        Err(failure) => {
            pool.clear();
            Err(failure.to_error())
        }
    }
}

/// Rows that payload after payload are mapped into, their text buffers used again. It holds
/// what the largest of its payloads needed, as a vector of the rows would have: keep one for a
/// batch's payloads, not longer.
#[derive(Default)]
pub struct RowPool {
    rows: Vec<SpanRow>,
    /// How many of `rows` hold the last payload's spans; the rest are spare.
    len: usize,
}

impl RowPool {
    /// The last payload's rows.
    pub fn rows(&self) -> &[SpanRow] {
        &self.rows[..self.len]
    }

    pub fn rows_mut(&mut self) -> &mut [SpanRow] {
        &mut self.rows[..self.len]
    }

    /// The last payload's rows, moved out; the pool keeps spares in their place.
    pub fn take(&mut self) -> impl Iterator<Item = SpanRow> + '_ {
        let len = std::mem::take(&mut self.len);
        self.rows[..len].iter_mut().map(std::mem::take)
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    /// The row the next span is mapped into: a spare, or a new one.
    fn next(&mut self) -> &mut SpanRow {
        if self.len == self.rows.len() {
            self.rows.push(SpanRow::default());
        }
        &mut self.rows[self.len]
    }

    /// Keeps the row [`RowPool::next`] gave.
    fn keep(&mut self) {
        self.len += 1;
    }
}

fn empty_attribute() -> Attribute {
    Attribute {
        key: String::new(),
        value: AttrValue::Empty,
    }
}

struct Walk<'s, 'r> {
    sender: &'s Sender,
    pool: &'r mut RowPool,
    rejected: Rejected,
}

impl Walk<'_, '_> {
    fn request(&mut self, mut c: Cur<'_>) -> Result<(), Fail> {
        const M: &str = "ExportTraceServiceRequest";
        let mut index = 0;
        while c.more() {
            let (tag, wt) = c.key(M)?;
            match tag {
                1 => {
                    let message = c.message(wt, "ExportTraceServiceRequest.resource_spans")?;
                    self.resource_spans(message, index)?;
                    index += 1;
                }
                _ => c.skip(wt, tag, M)?,
            }
        }
        Ok(())
    }

    fn resource_spans(&mut self, c: Cur<'_>, resource_index: usize) -> Result<(), Fail> {
        const M: &str = "ResourceSpans";
        // First the resource, from every `resource` field, and the start of its first span.
        let mut attributes = Vec::new();
        let mut first_start = None;
        let mut head = c;
        while head.more() {
            let (tag, wt) = head.key(M)?;
            match tag {
                1 => resource(head.message(wt, "ResourceSpans.resource")?, &mut attributes)?,
                2 if first_start.is_none() => {
                    first_start = first_span_start(head.message(wt, "ResourceSpans.scope_spans")?)?;
                }
                _ => head.skip(wt, tag, M)?,
            }
        }
        let start_us = map::saturating_i64(first_start.unwrap_or(0) / 1000);
        let context = ResourceContext::new_at(attributes, self.sender, start_us);
        // Then the spans.
        let mut c = c;
        let mut scope_index = 0;
        while c.more() {
            let (tag, wt) = c.key(M)?;
            match tag {
                2 => {
                    let message = c.message(wt, "ResourceSpans.scope_spans")?;
                    self.scope_spans(message, &context, [resource_index, scope_index, 0])?;
                    scope_index += 1;
                }
                3 => c.string(wt, "ResourceSpans.schema_url")?,
                // The resource was read above.
                _ => c.skip(wt, tag, M)?,
            }
        }
        Ok(())
    }

    fn scope_spans(
        &mut self,
        c: Cur<'_>,
        context: &ResourceContext,
        mut at: [usize; 3],
    ) -> Result<(), Fail> {
        const M: &str = "ScopeSpans";
        let mut scope = ScopeFields::default();
        let mut head = c;
        while head.more() {
            let (tag, wt) = head.key(M)?;
            match tag {
                1 => read_scope(head.message(wt, "ScopeSpans.scope")?, &mut scope)?,
                _ => head.skip(wt, tag, M)?,
            }
        }
        let mut c = c;
        while c.more() {
            let (tag, wt) = c.key(M)?;
            match tag {
                2 => {
                    let row = self.pool.next();
                    let span = read_span(c.message(wt, "ScopeSpans.spans")?, row)?;
                    match map::map_span_into(context, scope, span, row) {
                        Ok(()) => self.pool.keep(),
                        Err(reason) => self.rejected.reject(at, &reason),
                    }
                    at[2] += 1;
                }
                3 => c.string(wt, "ScopeSpans.schema_url")?,
                // The scope was read above.
                _ => c.skip(wt, tag, M)?,
            }
        }
        Ok(())
    }
}

/// Reads a span's fields, its attributes into `row.attributes` in place of what they held.
fn read_span<'a>(mut c: Cur<'a>, row: &mut SpanRow) -> Result<SpanFields<'a>, Fail> {
    const M: &str = "Span";
    let mut span = SpanFields::default();
    let attributes = &mut row.attributes;
    let mut n_attributes = 0;
    while c.more() {
        let (tag, wt) = c.key(M)?;
        match tag {
            1 => span.trace_id = c.bytes(wt, "Span.trace_id")?,
            2 => span.span_id = c.bytes(wt, "Span.span_id")?,
            3 => span.trace_state = c.str(wt, "Span.trace_state")?,
            4 => span.parent_span_id = c.bytes(wt, "Span.parent_span_id")?,
            5 => span.name = c.str(wt, "Span.name")?,
            6 => span.kind = c.int_value(wt, "Span.kind")? as i32,
            7 => span.start_time_unix_nano = c.fixed64_value(wt, "Span.start_time_unix_nano")?,
            8 => span.end_time_unix_nano = c.fixed64_value(wt, "Span.end_time_unix_nano")?,
            9 => {
                if n_attributes == attributes.len() {
                    attributes.push(empty_attribute());
                }
                let slot = &mut attributes[n_attributes];
                key_value_into(c.message(wt, "Span.attributes")?, slot)?;
                n_attributes += 1;
            }
            10 => {
                span.dropped_attributes_count =
                    c.int_value(wt, "Span.dropped_attributes_count")? as u32;
            }
            11 => span.events.push(event(c.message(wt, "Span.events")?)?),
            12 => {
                span.dropped_events_count = c.int_value(wt, "Span.dropped_events_count")? as u32;
            }
            13 => match link(c.message(wt, "Span.links")?)? {
                Some(link) => span.links.push(link),
                None => span.n_bad_links = span.n_bad_links.saturating_add(1),
            },
            14 => {
                span.dropped_links_count = c.int_value(wt, "Span.dropped_links_count")? as u32;
            }
            15 => {
                let status = span.status.get_or_insert((0, ""));
                read_status(c.message(wt, "Span.status")?, status)?;
            }
            16 => span.flags = c.fixed32_value(wt, "Span.flags")?,
            _ => c.skip(wt, tag, M)?,
        }
    }
    attributes.truncate(n_attributes);
    Ok(span)
}

/// Adds a `Resource`'s attributes to `attributes`.
fn resource(mut c: Cur<'_>, attributes: &mut Vec<Attribute>) -> Result<(), Fail> {
    const M: &str = "Resource";
    while c.more() {
        let (tag, wt) = c.key(M)?;
        match tag {
            1 => attributes.push(key_value(c.message(wt, "Resource.attributes")?)?),
            2 => c.int(wt, "Resource.dropped_attributes_count")?,
            3 => scan::walk_entity_ref(c.message(wt, "Resource.entity_refs")?)?,
            _ => c.skip(wt, tag, M)?,
        }
    }
    Ok(())
}

/// The start of the first span of a `ScopeSpans`, if it has one.
fn first_span_start(mut c: Cur<'_>) -> Result<Option<u64>, Fail> {
    const M: &str = "ScopeSpans";
    while c.more() {
        let (tag, wt) = c.key(M)?;
        if tag != 2 {
            c.skip(wt, tag, M)?;
            continue;
        }
        let mut span = c.message(wt, "ScopeSpans.spans")?;
        let mut start = 0;
        while span.more() {
            let (tag, wt) = span.key("Span")?;
            match tag {
                7 => start = span.fixed64_value(wt, "Span.start_time_unix_nano")?,
                _ => span.skip(wt, tag, "Span")?,
            }
        }
        return Ok(Some(start));
    }
    Ok(None)
}

fn read_scope<'a>(mut c: Cur<'a>, scope: &mut ScopeFields<'a>) -> Result<(), Fail> {
    const M: &str = "InstrumentationScope";
    while c.more() {
        let (tag, wt) = c.key(M)?;
        match tag {
            1 => scope.name = c.str(wt, "InstrumentationScope.name")?,
            2 => scope.version = c.str(wt, "InstrumentationScope.version")?,
            3 => scan::walk_key_value(c.message(wt, "InstrumentationScope.attributes")?)?,
            4 => c.int(wt, "InstrumentationScope.dropped_attributes_count")?,
            _ => c.skip(wt, tag, M)?,
        }
    }
    Ok(())
}

fn read_status<'a>(mut c: Cur<'a>, status: &mut (i32, &'a str)) -> Result<(), Fail> {
    const M: &str = "Status";
    while c.more() {
        let (tag, wt) = c.key(M)?;
        match tag {
            2 => status.1 = c.str(wt, "Status.message")?,
            3 => status.0 = c.int_value(wt, "Status.code")? as i32,
            _ => c.skip(wt, tag, M)?,
        }
    }
    Ok(())
}

fn event(mut c: Cur<'_>) -> Result<Event, Fail> {
    const M: &str = "Span.Event";
    let mut event = Event::default();
    let mut name = "";
    while c.more() {
        let (tag, wt) = c.key(M)?;
        match tag {
            1 => {
                let time_ns = c.fixed64_value(wt, "Span.Event.time_unix_nano")?;
                event.time_us = map::saturating_i64(time_ns / 1000);
            }
            2 => name = c.str(wt, "Span.Event.name")?,
            3 => {
                let attribute = key_value(c.message(wt, "Span.Event.attributes")?)?;
                event.attributes.push(attribute);
            }
            4 => {
                event.dropped_attributes_count =
                    c.int_value(wt, "Span.Event.dropped_attributes_count")? as u32;
            }
            _ => c.skip(wt, tag, M)?,
        }
    }
    event.name = name.to_string();
    Ok(event)
}

/// A link, or `None` when its ids are unusable (the link is dropped, not the span).
fn link(mut c: Cur<'_>) -> Result<Option<Link>, Fail> {
    const M: &str = "Span.Link";
    let (mut trace_id, mut span_id, mut trace_state): (&[u8], &[u8], &str) = (&[], &[], "");
    let mut link = Link::default();
    while c.more() {
        let (tag, wt) = c.key(M)?;
        match tag {
            1 => trace_id = c.bytes(wt, "Span.Link.trace_id")?,
            2 => span_id = c.bytes(wt, "Span.Link.span_id")?,
            3 => trace_state = c.str(wt, "Span.Link.trace_state")?,
            4 => {
                let attribute = key_value(c.message(wt, "Span.Link.attributes")?)?;
                link.attributes.push(attribute);
            }
            5 => {
                link.dropped_attributes_count =
                    c.int_value(wt, "Span.Link.dropped_attributes_count")? as u32;
            }
            6 => link.flags = c.fixed32_value(wt, "Span.Link.flags")?,
            _ => c.skip(wt, tag, M)?,
        }
    }
    let (Ok(trace_id), Ok(span_id)) = (map::trace_id_of(trace_id), map::span_id_of(span_id)) else {
        return Ok(None);
    };
    link.trace_id = trace_id;
    link.span_id = span_id;
    link.trace_state = trace_state.to_string();
    Ok(Some(link))
}

fn key_value(c: Cur<'_>) -> Result<Attribute, Fail> {
    let mut attribute = empty_attribute();
    key_value_into(c, &mut attribute)?;
    Ok(attribute)
}

/// Reads a `KeyValue` into `attribute`, in the buffers it holds.
fn key_value_into(mut c: Cur<'_>, attribute: &mut Attribute) -> Result<(), Fail> {
    const M: &str = "KeyValue";
    let mut key = "";
    let mut value = Value::None;
    while c.more() {
        let (tag, wt) = c.key(M)?;
        match tag {
            1 => key = c.str(wt, "KeyValue.key")?,
            // A second value merges into the first, as a repeated message field does.
            2 => any_value(c.message(wt, "KeyValue.value")?, &mut value)?,
            3 => c.int(wt, "KeyValue.key_strindex")?,
            _ => c.skip(wt, tag, M)?,
        }
    }
    attribute.key.clear();
    attribute.key.push_str(key);
    match (value, &mut attribute.value) {
        (Value::String(text), AttrValue::String(held)) => {
            held.clear();
            held.push_str(text);
        }
        (value, held) => *held = value.into_attr(),
    }
    Ok(())
}

/// `AnyValue`'s one-of as it is read: text stays borrowed until the value is whole.
enum Value<'a> {
    /// No value, or a string-table reference, which means nothing in traces: stored as empty.
    None,
    String(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(&'a [u8]),
    Array(Vec<AttrValue>),
    KeyValueList(Vec<Attribute>),
}

impl Value<'_> {
    fn into_attr(self) -> AttrValue {
        match self {
            Value::None => AttrValue::Empty,
            Value::String(text) => AttrValue::String(text.to_string()),
            Value::Bool(flag) => AttrValue::Bool(flag),
            Value::Int(number) => AttrValue::Int(number),
            Value::Double(number) => AttrValue::Double(number),
            Value::Bytes(bytes) => AttrValue::Bytes(bytes.to_vec()),
            Value::Array(items) => AttrValue::Array(items),
            Value::KeyValueList(items) => AttrValue::KeyValueList(items),
        }
    }
}

/// Reads an `AnyValue` into `value`, which holds what earlier occurrences of the same field
/// gave. How deep values nest is bounded by the recursion limit of the cursor.
fn any_value<'a>(mut c: Cur<'a>, value: &mut Value<'a>) -> Result<(), Fail> {
    const M: &str = "AnyValue";
    while c.more() {
        let (tag, wt) = c.key(M)?;
        match tag {
            1 => *value = Value::String(c.str(wt, "AnyValue.string_value")?),
            2 => *value = Value::Bool(c.int_value(wt, "AnyValue.bool_value")? != 0),
            3 => *value = Value::Int(c.int_value(wt, "AnyValue.int_value")? as i64),
            4 => {
                let bits = c.fixed64_value(wt, "AnyValue.double_value")?;
                *value = Value::Double(f64::from_bits(bits));
            }
            // A second array (or list) continues the first; any other value before it is
            // replaced.
            5 => {
                let array = c.message(wt, "AnyValue.array_value")?;
                let mut items = match std::mem::replace(value, Value::None) {
                    Value::Array(items) => items,
                    _ => Vec::new(),
                };
                array_value(array, &mut items)?;
                *value = Value::Array(items);
            }
            6 => {
                let list = c.message(wt, "AnyValue.kvlist_value")?;
                let mut items = match std::mem::replace(value, Value::None) {
                    Value::KeyValueList(items) => items,
                    _ => Vec::new(),
                };
                key_value_list(list, &mut items)?;
                *value = Value::KeyValueList(items);
            }
            7 => *value = Value::Bytes(c.bytes(wt, "AnyValue.bytes_value")?),
            8 => {
                c.int(wt, "AnyValue.string_value_strindex")?;
                *value = Value::None;
            }
            _ => c.skip(wt, tag, M)?,
        }
    }
    Ok(())
}

/// Adds an `ArrayValue`'s items to `items`.
fn array_value(mut c: Cur<'_>, items: &mut Vec<AttrValue>) -> Result<(), Fail> {
    const M: &str = "ArrayValue";
    while c.more() {
        let (tag, wt) = c.key(M)?;
        match tag {
            1 => {
                let mut item = Value::None;
                any_value(c.message(wt, "ArrayValue.values")?, &mut item)?;
                items.push(item.into_attr());
            }
            _ => c.skip(wt, tag, M)?,
        }
    }
    Ok(())
}

/// Adds a `KeyValueList`'s items to `items`.
fn key_value_list(mut c: Cur<'_>, items: &mut Vec<Attribute>) -> Result<(), Fail> {
    const M: &str = "KeyValueList";
    while c.more() {
        let (tag, wt) = c.key(M)?;
        match tag {
            1 => items.push(key_value(c.message(wt, "KeyValueList.values")?)?),
            _ => c.skip(wt, tag, M)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use spanflow_model::{AttrValue, SpanRow};

    use super::*;
    use crate::ExportTraceServiceRequest;

    fn varint(mut value: u64, out: &mut Vec<u8>) {
        while value >= 0x80 {
            out.push(value as u8 | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    /// A length-delimited field.
    fn ld(tag: u32, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        varint(u64::from(tag) << 3 | 2, &mut out);
        varint(body.len() as u64, &mut out);
        out.extend_from_slice(body);
        out
    }

    fn int(tag: u32, value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        varint(u64::from(tag) << 3, &mut out);
        varint(value, &mut out);
        out
    }

    fn fixed64(tag: u32, value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        varint(u64::from(tag) << 3 | 1, &mut out);
        out.extend_from_slice(&value.to_le_bytes());
        out
    }

    fn text(tag: u32, value: &str) -> Vec<u8> {
        ld(tag, value.as_bytes())
    }

    fn key_value(key: &str, values: &[Vec<u8>]) -> Vec<u8> {
        let mut body = text(1, key);
        for value in values {
            body.extend(ld(2, value));
        }
        body
    }

    /// A span with good ids and the given extra fields.
    fn span(extra: &[Vec<u8>]) -> Vec<u8> {
        let mut body = ld(1, &[0x5b; 16]);
        body.extend(ld(2, &[0x11; 8]));
        body.extend(fixed64(7, 1_704_067_201_000_000_000));
        body.extend(fixed64(8, 1_704_067_201_500_000_000));
        for field in extra {
            body.extend_from_slice(field);
        }
        body
    }

    fn rows(payload: &[u8]) -> Vec<SpanRow> {
        let mut rows = Vec::new();
        let rejected = map_payload_into(payload, &Sender::default(), &mut rows).unwrap();
        assert_eq!(rejected.n_rejected, 0);
        rows
    }

    /// Maps `payload` from its bytes and from prost's decoding of it, and checks both agree.
    fn agree(payload: &[u8]) -> Vec<SpanRow> {
        let wired = rows(payload);
        let request = ExportTraceServiceRequest::decode(payload).unwrap();
        let mapped = map::map_request(request, &Sender::default());
        assert_eq!(format!("{wired:?}"), format!("{:?}", mapped.rows));
        wired
    }

    #[test]
    fn repeated_messages_merge_and_the_last_scalar_wins() {
        let string = text(1, "first");
        let number = int(3, 7);
        let array_a = ld(5, &ld(1, &int(3, 1)));
        let array_b = ld(5, &ld(1, &int(3, 2)));
        let status_code = ld(15, &int(3, 2));
        let status_message = ld(15, &text(2, "broken"));
        let span = span(&[
            text(5, "old name"),
            text(5, "GET /"),
            ld(9, &key_value("switched", &[string, number])),
            ld(9, &key_value("joined", &[array_a, array_b])),
            status_code,
            status_message,
        ]);
        // The scope after the spans, the resource in two parts, one after the spans.
        let scope_spans = [ld(2, &span), ld(1, &text(1, "lib"))].concat();
        let resource_a = ld(1, &ld(1, &key_value("service.name", &[text(1, "cart")])));
        let resource_b = ld(1, &ld(1, &key_value("k8s.pod.name", &[text(1, "cart-0")])));
        let resource_spans = [resource_a, ld(2, &scope_spans), resource_b].concat();
        let payload = ld(1, &resource_spans);

        let rows = agree(&payload);
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!(row.endpoint, "GET /");
        assert_eq!(row.attribute("switched"), Some(&AttrValue::Int(7)));
        assert_eq!(
            row.attribute("joined"),
            Some(&AttrValue::Array(vec![
                AttrValue::Int(1),
                AttrValue::Int(2)
            ]))
        );
        assert_eq!(
            (row.status_code, row.status_message.as_str()),
            (2, "broken")
        );
        assert_eq!(row.scope_name, "lib");
        assert_eq!(row.app_service, "cart");
        assert_eq!(row.resource.k8s_pod_name, "cart-0");
    }

    /// A field key alone.
    fn key(tag: u32, wire_type: u8) -> Vec<u8> {
        let mut out = Vec::new();
        varint(u64::from(tag) << 3 | u64::from(wire_type), &mut out);
        out
    }

    #[test]
    fn unknown_fields_and_groups_are_skipped() {
        let group = [key(30, 3), int(1, 5), ld(2, b"in a group"), key(30, 4)].concat();
        let span = span(&[int(31, 1), ld(32, b"x"), group, text(5, "op")]);
        let scope_spans = [ld(2, &span), int(9, 1)].concat();
        let payload = ld(1, &ld(2, &scope_spans));
        let rows = agree(&payload);
        assert_eq!(rows[0].endpoint, "op");
        // A group whose start and end tags differ is refused, as prost refuses it.
        let mismatched = [key(30, 3), key(31, 4)].concat();
        let bad = ld(1, &ld(2, &ld(2, &self::span(&[mismatched]))));
        assert!(ExportTraceServiceRequest::decode(&bad[..]).is_err());
        let error = map_payload_into(&bad, &Sender::default(), &mut Vec::new()).unwrap_err();
        assert!(error.message.contains("end-group"), "{}", error.message);
    }

    #[test]
    fn a_refused_payload_leaves_the_rows_as_they_were() {
        let good = ld(1, &ld(2, &ld(2, &span(&[text(5, "kept")]))));
        let mut rows = Vec::new();
        map_payload_into(&good, &Sender::default(), &mut rows).unwrap();
        // Two good spans, then a string that is not UTF-8.
        let spans = [
            ld(2, &span(&[])),
            ld(2, &span(&[])),
            ld(2, &span(&[ld(5, &[0xc3])])),
        ]
        .concat();
        let bad = ld(1, &ld(2, &spans));
        let error = map_payload_into(&bad, &Sender::default(), &mut rows).unwrap_err();
        assert!(error.message.contains("Span.name"), "{}", error.message);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].endpoint, "kept");
    }

    #[test]
    fn rejected_spans_are_counted_with_their_place() {
        let zero = [ld(1, &[0; 16]), ld(2, &[1; 8])].concat();
        let spans = [ld(2, &span(&[])), ld(2, &zero), ld(2, &zero)].concat();
        let payload = [ld(1, &ld(2, b"")), ld(1, &ld(2, &spans))].concat();
        let mut rows = Vec::new();
        let rejected = map_payload_into(&payload, &Sender::default(), &mut rows).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rejected.n_rejected, 2);
        assert_eq!(
            rejected.message.as_deref(),
            Some("resource 1, scope 0, span 1: trace_id is all zero (and 1 more rejected spans)")
        );
    }
}
