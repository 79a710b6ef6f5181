//! The text forms of attribute values, events and links, shared by the backends that keep a span
//! as columns of text: the embedded store's Arrow/Parquet files and ClickHouse.
//!
//! ## Attributes
//!
//! Span and resource attributes are three parallel lists each, DeepFlow style:
//! `attribute_names`, `attribute_values` (the value as text) and `attribute_types` (the value's
//! type code). Same for `resource_attribute_*`.
//!
//! | type | variant        | text in `*_values`                                            |
//! |------|----------------|---------------------------------------------------------------|
//! | 0    | `String`       | the string as it is                                           |
//! | 1    | `Bool`         | `true` / `false`                                              |
//! | 2    | `Int`          | decimal                                                       |
//! | 3    | `Double`       | Rust `{}` formatting (shortest text that parses back to the same `f64`; `NaN`, `inf`, `-inf`, `-0`) |
//! | 4    | `Bytes`        | base64, standard alphabet, padded                             |
//! | 5    | `Array`        | JSON array of tagged values (below)                           |
//! | 6    | `KeyValueList` | JSON array of `[key, tagged value]` pairs (below)             |
//! | 7    | `Empty`        | empty string                                                  |
//!
//! ## The JSON encoding of composites
//!
//! Inside arrays, key/value lists, events and links, a value is a JSON object with exactly one
//! key, its type tag, so that types survive exactly:
//! `{"s":"text"}`, `{"b":true}`, `{"i":-3}` (a JSON integer, read back exactly as `i64`),
//! `{"d":"0.25"}` (a string in the Rust formatting above, since JSON numbers cannot carry NaN or
//! infinities and are not read back bit-exactly), `{"y":"AP8H"}` (base64 bytes),
//! `{"a":[...values]}`, `{"k":[["key",value],...]}`, `{"e":null}` (empty).
//! A key/value list is a JSON array of pairs, not an object, so key order and duplicate keys are
//! kept. Example: the array `["a", 2]` is `[{"s":"a"},{"i":2}]`; the list `{inner: true}` is
//! `[["inner",{"b":true}]]`.
//!
//! `events` and `links` are JSON strings (DeepFlow keeps events as JSON text), `[]` when there
//! are none:
//! `[{"time_us":1700000000500000,"name":"exception","attributes":[["k",{"s":"v"}]],"dropped_attributes_count":1}]`
//! and
//! `[{"trace_id":"ab..c9","span_id":"cd..09","trace_state":"other=2","attributes":[...],"dropped_attributes_count":2,"flags":1}]`.
//!
//! Nesting is limited by the JSON reader's recursion limit (128): about 60 levels of arrays or 40
//! of key/value lists, more than OTLP's protobuf decoder lets through.

use std::fmt::Display;

use base64::display::Base64Display;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize, Serializer};

use spanflow_model::{AttrValue, Attribute, Event, Link};

pub const TYPE_STRING: u8 = 0;
pub const TYPE_BOOL: u8 = 1;
pub const TYPE_INT: u8 = 2;
pub const TYPE_DOUBLE: u8 = 3;
pub const TYPE_BYTES: u8 = 4;
pub const TYPE_ARRAY: u8 = 5;
pub const TYPE_KVLIST: u8 = 6;
pub const TYPE_EMPTY: u8 = 7;

/// Writes the text form of `value` to `out` (`json` is scratch space); returns its type code.
pub fn write_value_text(
    out: &mut impl std::fmt::Write,
    value: &AttrValue,
    json: &mut Vec<u8>,
) -> u8 {
    let written = match value {
        AttrValue::String(text) => out.write_str(text),
        AttrValue::Bool(value) => out.write_str(if *value { "true" } else { "false" }),
        AttrValue::Int(value) => out.write_str(itoa::Buffer::new().format(*value)),
        AttrValue::Double(value) => write!(out, "{value}"),
        AttrValue::Bytes(bytes) => write!(out, "{}", Base64Display::new(bytes, &STANDARD)),
        AttrValue::Array(items) => {
            json.clear();
            serde_json::to_writer(&mut *json, &ArrayJson(items)).expect("writes to a Vec");
            out.write_str(std::str::from_utf8(json).expect("JSON is UTF-8"))
        }
        AttrValue::KeyValueList(attributes) => {
            json.clear();
            serde_json::to_writer(&mut *json, &AttrsJson(attributes)).expect("writes to a Vec");
            out.write_str(std::str::from_utf8(json).expect("JSON is UTF-8"))
        }
        AttrValue::Empty => Ok(()),
    };
    written.expect("writing text to memory cannot fail");
    value_code(value)
}

/// The type code of `value`, as [`write_value_text`] returns it.
pub fn value_code(value: &AttrValue) -> u8 {
    match value {
        AttrValue::String(_) => TYPE_STRING,
        AttrValue::Bool(_) => TYPE_BOOL,
        AttrValue::Int(_) => TYPE_INT,
        AttrValue::Double(_) => TYPE_DOUBLE,
        AttrValue::Bytes(_) => TYPE_BYTES,
        AttrValue::Array(_) => TYPE_ARRAY,
        AttrValue::KeyValueList(_) => TYPE_KVLIST,
        AttrValue::Empty => TYPE_EMPTY,
    }
}

/// The text form of `value` and its type code.
pub fn value_text(value: &AttrValue) -> (String, u8) {
    let mut text = String::new();
    let code = write_value_text(&mut text, value, &mut Vec::new());
    (text, code)
}

/// Appends the JSON form of `events` to `out`; false, writing nothing, when there are none.
pub fn write_events_json(events: &[Event], out: &mut Vec<u8>) -> bool {
    if events.is_empty() {
        return false;
    }
    serde_json::to_writer(out, &EventsJson(events)).expect("writes to a Vec");
    true
}

/// Appends the JSON form of `links` to `out`; false, writing nothing, when there are none.
pub fn write_links_json(links: &[Link], out: &mut Vec<u8>) -> bool {
    if links.is_empty() {
        return false;
    }
    serde_json::to_writer(out, &LinksJson(links)).expect("writes to a Vec");
    true
}

// ---------------------------------------------------------------------------------------------
// JSON out: borrowed views serialized without copying the row.

/// Serializes through `Display`, as a JSON string.
struct AsText<T>(T);

impl<T: Display> Serialize for AsText<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// An id as lowercase hex.
struct HexJson<'a>(&'a [u8]);

impl Serialize for HexJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buffer = [0u8; 32];
        let hex = &mut buffer[..self.0.len() * 2];
        hex::encode_to_slice(self.0, hex).expect("the buffer fits the id");
        serializer.serialize_str(std::str::from_utf8(hex).expect("hex is ASCII"))
    }
}

/// One value as a one-key object, its type tag.
struct ValueJson<'a>(&'a AttrValue);

impl Serialize for ValueJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        const NAME: &str = "Value";
        match self.0 {
            AttrValue::String(text) => serializer.serialize_newtype_variant(NAME, 0, "s", text),
            AttrValue::Bool(value) => serializer.serialize_newtype_variant(NAME, 1, "b", value),
            AttrValue::Int(value) => serializer.serialize_newtype_variant(NAME, 2, "i", value),
            AttrValue::Double(value) => {
                serializer.serialize_newtype_variant(NAME, 3, "d", &AsText(value))
            }
            AttrValue::Bytes(bytes) => serializer.serialize_newtype_variant(
                NAME,
                4,
                "y",
                &AsText(Base64Display::new(bytes, &STANDARD)),
            ),
            AttrValue::Array(items) => {
                serializer.serialize_newtype_variant(NAME, 5, "a", &ArrayJson(items))
            }
            AttrValue::KeyValueList(attributes) => {
                serializer.serialize_newtype_variant(NAME, 6, "k", &AttrsJson(attributes))
            }
            AttrValue::Empty => serializer.serialize_newtype_variant(NAME, 7, "e", &()),
        }
    }
}

struct ArrayJson<'a>(&'a [AttrValue]);

impl Serialize for ArrayJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(ValueJson))
    }
}

/// Attributes as `[[key, value], ...]`: order and duplicate keys kept.
struct AttrsJson<'a>(&'a [Attribute]);

impl Serialize for AttrsJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(
            self.0
                .iter()
                .map(|attribute| (attribute.key.as_str(), ValueJson(&attribute.value))),
        )
    }
}

#[derive(Serialize)]
struct EventJson<'a> {
    time_us: i64,
    name: &'a str,
    attributes: AttrsJson<'a>,
    dropped_attributes_count: u32,
}

struct EventsJson<'a>(&'a [Event]);

impl Serialize for EventsJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|event| EventJson {
            time_us: event.time_us,
            name: &event.name,
            attributes: AttrsJson(&event.attributes),
            dropped_attributes_count: event.dropped_attributes_count,
        }))
    }
}

#[derive(Serialize)]
struct LinkJson<'a> {
    trace_id: HexJson<'a>,
    span_id: HexJson<'a>,
    trace_state: &'a str,
    attributes: AttrsJson<'a>,
    dropped_attributes_count: u32,
    flags: u32,
}

struct LinksJson<'a>(&'a [Link]);

impl Serialize for LinksJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|link| LinkJson {
            trace_id: HexJson(&link.trace_id.0),
            span_id: HexJson(&link.span_id.0),
            trace_state: &link.trace_state,
            attributes: AttrsJson(&link.attributes),
            dropped_attributes_count: link.dropped_attributes_count,
            flags: link.flags,
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// JSON in.

#[derive(Deserialize)]
enum ValueIn {
    #[serde(rename = "s")]
    String(String),
    #[serde(rename = "b")]
    Bool(bool),
    #[serde(rename = "i")]
    Int(i64),
    #[serde(rename = "d")]
    Double(String),
    #[serde(rename = "y")]
    Bytes(String),
    #[serde(rename = "a")]
    Array(Vec<ValueIn>),
    #[serde(rename = "k")]
    KeyValueList(Vec<(String, ValueIn)>),
    #[serde(rename = "e")]
    Empty(()),
}

impl ValueIn {
    fn into_value(self) -> Result<AttrValue, String> {
        Ok(match self {
            ValueIn::String(text) => AttrValue::String(text),
            ValueIn::Bool(value) => AttrValue::Bool(value),
            ValueIn::Int(value) => AttrValue::Int(value),
            ValueIn::Double(text) => AttrValue::Double(parse_double(&text)?),
            ValueIn::Bytes(text) => AttrValue::Bytes(decode_base64(&text)?),
            ValueIn::Array(items) => AttrValue::Array(
                items
                    .into_iter()
                    .map(ValueIn::into_value)
                    .collect::<Result<_, _>>()?,
            ),
            ValueIn::KeyValueList(pairs) => AttrValue::KeyValueList(attributes_in(pairs)?),
            ValueIn::Empty(()) => AttrValue::Empty,
        })
    }
}

fn attributes_in(pairs: Vec<(String, ValueIn)>) -> Result<Vec<Attribute>, String> {
    pairs
        .into_iter()
        .map(|(key, value)| {
            Ok(Attribute {
                key,
                value: value.into_value()?,
            })
        })
        .collect()
}

#[derive(Deserialize)]
struct EventIn {
    time_us: i64,
    name: String,
    #[serde(default)]
    attributes: Vec<(String, ValueIn)>,
    #[serde(default)]
    dropped_attributes_count: u32,
}

#[derive(Deserialize)]
struct LinkIn {
    trace_id: String,
    span_id: String,
    #[serde(default)]
    trace_state: String,
    #[serde(default)]
    attributes: Vec<(String, ValueIn)>,
    #[serde(default)]
    dropped_attributes_count: u32,
    #[serde(default)]
    flags: u32,
}

fn parse_double(text: &str) -> Result<f64, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not a double"))
}

fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    STANDARD
        .decode(text)
        .map_err(|error| format!("`{text}` is not base64: {error}"))
}

pub fn parse_events(text: &str) -> Result<Vec<Event>, String> {
    if text.is_empty() || text == "[]" {
        return Ok(Vec::new());
    }
    let events: Vec<EventIn> = serde_json::from_str(text).map_err(|error| error.to_string())?;
    events
        .into_iter()
        .map(|event| {
            Ok(Event {
                time_us: event.time_us,
                name: event.name,
                attributes: attributes_in(event.attributes)?,
                dropped_attributes_count: event.dropped_attributes_count,
            })
        })
        .collect()
}

pub fn parse_links(text: &str) -> Result<Vec<Link>, String> {
    if text.is_empty() || text == "[]" {
        return Ok(Vec::new());
    }
    let links: Vec<LinkIn> = serde_json::from_str(text).map_err(|error| error.to_string())?;
    links
        .into_iter()
        .map(|link| {
            Ok(Link {
                trace_id: link
                    .trace_id
                    .parse()
                    .map_err(|error| format!("link trace id `{}`: {error}", link.trace_id))?,
                span_id: link
                    .span_id
                    .parse()
                    .map_err(|error| format!("link span id `{}`: {error}", link.span_id))?,
                trace_state: link.trace_state,
                attributes: attributes_in(link.attributes)?,
                dropped_attributes_count: link.dropped_attributes_count,
                flags: link.flags,
            })
        })
        .collect()
}

/// A top-level attribute value from its text and type code (the table above).
pub fn parse_value(text: &str, code: u8) -> Result<AttrValue, String> {
    Ok(match code {
        TYPE_STRING => AttrValue::String(text.to_owned()),
        TYPE_BOOL => match text {
            "true" => AttrValue::Bool(true),
            "false" => AttrValue::Bool(false),
            _ => return Err(format!("`{text}` is not a bool")),
        },
        TYPE_INT => AttrValue::Int(
            text.parse()
                .map_err(|_| format!("`{text}` is not an integer"))?,
        ),
        TYPE_DOUBLE => AttrValue::Double(parse_double(text)?),
        TYPE_BYTES => AttrValue::Bytes(decode_base64(text)?),
        TYPE_ARRAY => {
            let items: Vec<ValueIn> =
                serde_json::from_str(text).map_err(|error| format!("array: {error}"))?;
            AttrValue::Array(
                items
                    .into_iter()
                    .map(ValueIn::into_value)
                    .collect::<Result<_, _>>()?,
            )
        }
        TYPE_KVLIST => {
            let pairs: Vec<(String, ValueIn)> =
                serde_json::from_str(text).map_err(|error| format!("key/value list: {error}"))?;
            AttrValue::KeyValueList(attributes_in(pairs)?)
        }
        TYPE_EMPTY => AttrValue::Empty,
        other => return Err(format!("unknown attribute type {other}")),
    })
}
