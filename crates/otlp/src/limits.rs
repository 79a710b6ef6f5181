//! Limits on what one span may hold: attributes, events and links per span, and the bytes of
//! any one string (an attribute's key or value, a name, a URL, a message). What goes past a
//! limit is never silently cut: dropped attributes, events and links are counted in the
//! row's `dropped_*_count` fields, as OTLP counts them, and a span whose strings were
//! shortened carries the attribute `spanflow.truncated` naming what was shortened. A row has no
//! count for its resource's attributes, so attributes dropped from the resource are named
//! there too, as `resource.dropped_attributes_count=<n>`.

use std::sync::Arc;

use spanflow_model::{AttrValue, Attribute, SpanRow};

/// The attribute that names what was shortened (or dropped from the resource), e.g.
/// `attributes.http.url,endpoint`.
pub const TRUNCATED_ATTRIBUTE: &str = "spanflow.truncated";

/// At most this many names are listed in [`TRUNCATED_ATTRIBUTE`]...
const MAX_NAMES_LISTED: usize = 16;
/// ...each at most this long.
const MAX_NAME_BYTES: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanLimits {
    /// Attributes per span, per event and per link.
    pub max_attributes: usize,
    pub max_events: usize,
    pub max_links: usize,
    /// Bytes of any one string; a longer one is cut at a character boundary.
    pub max_string_bytes: usize,
}

impl Default for SpanLimits {
    /// Generous: a span past these is a bug or an attack, not an application's intent.
    fn default() -> Self {
        SpanLimits {
            max_attributes: 1024,
            max_events: 1024,
            max_links: 1024,
            max_string_bytes: 64 << 10,
        }
    }
}

/// Cuts `text` to at most `max_bytes` at a character boundary; whether it cut.
fn cut(text: &mut String, max_bytes: usize) -> bool {
    if text.len() <= max_bytes {
        return false;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    true
}

struct Marks {
    names: Vec<String>,
    n_cut: usize,
}

impl Marks {
    fn add(&mut self, name: impl FnOnce() -> String) {
        self.n_cut += 1;
        if self.names.len() < MAX_NAMES_LISTED {
            let mut name = name();
            cut(&mut name, MAX_NAME_BYTES);
            self.names.push(name);
        }
    }
}

/// Resource attributes found within the limits: the spans of a resource share its attributes,
/// which [`SpanLimits::apply_checked`] then checks once, not at every span. It holds them, so
/// that their address is not another's while it is kept.
#[derive(Debug, Default)]
pub struct Checked {
    resource: Option<Arc<[Attribute]>>,
}

impl SpanLimits {
    /// Applies the limits to `row`; whether anything was dropped or shortened.
    pub fn apply(&self, row: &mut SpanRow) -> bool {
        self.apply_checked(row, &mut Checked::default())
    }

    /// [`SpanLimits::apply`], for rows one after another, noting in `checked` the resource
    /// attributes found within the limits.
    pub fn apply_checked(&self, row: &mut SpanRow, checked: &mut Checked) -> bool {
        let mut marks = Marks {
            names: Vec::new(),
            n_cut: 0,
        };
        let mut dropped = false;
        let max = self.max_string_bytes;
        for (name, field) in [
            ("endpoint", &mut row.endpoint),
            ("request_resource", &mut row.request_resource),
            ("request_domain", &mut row.request_domain),
            ("request_type", &mut row.request_type),
            ("status_message", &mut row.status_message),
            ("response_exception", &mut row.response_exception),
            ("trace_state", &mut row.trace_state),
            ("app_service", &mut row.app_service),
            ("app_instance", &mut row.app_instance),
            ("scope_name", &mut row.scope_name),
            ("scope_version", &mut row.scope_version),
            ("l7_protocol_str", &mut row.l7_protocol_str),
            ("version", &mut row.version),
        ] {
            if cut(field, max) {
                marks.add(|| name.to_string());
            }
        }
        let n_dropped = self.attributes(&mut row.attributes, "attributes", &mut marks);
        row.dropped_attributes_count = row
            .dropped_attributes_count
            .saturating_add(u32::try_from(n_dropped).unwrap_or(u32::MAX));
        dropped |= n_dropped > 0;
        if row.events.len() > self.max_events {
            let n = row.events.len() - self.max_events;
            row.events.truncate(self.max_events);
            row.dropped_events_count = row
                .dropped_events_count
                .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
            dropped = true;
        }
        for event in &mut row.events {
            if cut(&mut event.name, max) {
                marks.add(|| "events.name".to_string());
            }
            let n = self.attributes(&mut event.attributes, "events.attributes", &mut marks);
            event.dropped_attributes_count = event
                .dropped_attributes_count
                .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
            dropped |= n > 0;
        }
        if row.links.len() > self.max_links {
            let n = row.links.len() - self.max_links;
            row.links.truncate(self.max_links);
            row.dropped_links_count = row
                .dropped_links_count
                .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
            dropped = true;
        }
        for link in &mut row.links {
            if cut(&mut link.trace_state, max) {
                marks.add(|| "links.trace_state".to_string());
            }
            let n = self.attributes(&mut link.attributes, "links.attributes", &mut marks);
            link.dropped_attributes_count = link
                .dropped_attributes_count
                .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
            dropped |= n > 0;
        }
        // Shared by a resource's spans: copied only when something in it must change.
        let known_within = checked
            .resource
            .as_ref()
            .is_some_and(|within| Arc::ptr_eq(within, &row.resource_attributes));
        if !known_within {
            if self.resource_needs_limits(&row.resource_attributes) {
                let mut resource_attributes = row.resource_attributes.to_vec();
                let n = self.attributes(&mut resource_attributes, "resource", &mut marks);
                if n > 0 {
                    marks.add(|| format!("resource.dropped_attributes_count={n}"));
                    dropped = true;
                }
                row.resource_attributes = Arc::from(resource_attributes);
            } else {
                checked.resource = Some(row.resource_attributes.clone());
            }
        }
        if marks.n_cut > 0 {
            let mut names = marks.names.join(",");
            if marks.n_cut > marks.names.len() {
                names.push_str(&format!(",+{}", marks.n_cut - marks.names.len()));
            }
            row.attributes.push(Attribute::new(
                TRUNCATED_ATTRIBUTE,
                AttrValue::String(names),
            ));
        }
        dropped || marks.n_cut > 0
    }

    fn resource_needs_limits(&self, attributes: &[Attribute]) -> bool {
        attributes.len() > self.max_attributes
            || attributes.iter().any(|attribute| {
                attribute.key.len() > self.max_string_bytes
                    || self.value_needs_limits(&attribute.value)
            })
    }

    fn value_needs_limits(&self, value: &AttrValue) -> bool {
        match value {
            AttrValue::String(text) => text.len() > self.max_string_bytes,
            AttrValue::Bytes(bytes) => bytes.len() > self.max_string_bytes,
            AttrValue::Array(values) => {
                values.len() > self.max_attributes
                    || values.iter().any(|value| self.value_needs_limits(value))
            }
            AttrValue::KeyValueList(attributes) => self.resource_needs_limits(attributes),
            _ => false,
        }
    }

    /// Drops attributes past the count, shortens long keys and values; the number dropped.
    fn attributes(&self, attributes: &mut Vec<Attribute>, what: &str, marks: &mut Marks) -> usize {
        let n_dropped = attributes.len().saturating_sub(self.max_attributes);
        attributes.truncate(self.max_attributes);
        let max = self.max_string_bytes;
        for attribute in attributes.iter_mut() {
            // Nearly every attribute is a short key of a short text or a number: checked
            // without a call.
            let value_within = match &attribute.value {
                AttrValue::String(text) => text.len() <= max,
                AttrValue::Array(_) | AttrValue::KeyValueList(_) | AttrValue::Bytes(_) => false,
                _ => true,
            };
            if value_within && attribute.key.len() <= max {
                continue;
            }
            // Named by the key as sent (the list cuts it short).
            let sent_key = (attribute.key.len() > self.max_string_bytes).then(|| {
                let mut key = attribute.key.clone();
                cut(&mut key, MAX_NAME_BYTES);
                key
            });
            let key_cut = cut(&mut attribute.key, self.max_string_bytes);
            if self.value(&mut attribute.value) || key_cut {
                let key = sent_key.as_deref().unwrap_or(&attribute.key);
                marks.add(|| format!("{what}.{key}"));
            }
        }
        n_dropped
    }

    /// Shortens a value in place; whether anything in it changed.
    fn value(&self, value: &mut AttrValue) -> bool {
        match value {
            AttrValue::String(text) => cut(text, self.max_string_bytes),
            AttrValue::Bytes(bytes) if bytes.len() > self.max_string_bytes => {
                bytes.truncate(self.max_string_bytes);
                true
            }
            AttrValue::Array(values) => {
                let mut changed = values.len() > self.max_attributes;
                values.truncate(self.max_attributes);
                for value in values.iter_mut() {
                    changed |= self.value(value);
                }
                changed
            }
            AttrValue::KeyValueList(attributes) => {
                let mut changed = attributes.len() > self.max_attributes;
                attributes.truncate(self.max_attributes);
                for attribute in attributes.iter_mut() {
                    changed |= cut(&mut attribute.key, self.max_string_bytes);
                    changed |= self.value(&mut attribute.value);
                }
                changed
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use spanflow_model::Event;

    use super::*;

    fn limits() -> SpanLimits {
        SpanLimits {
            max_attributes: 3,
            max_events: 2,
            max_links: 1,
            max_string_bytes: 8,
        }
    }

    fn text(value: &str) -> AttrValue {
        AttrValue::String(value.to_string())
    }

    #[test]
    fn a_span_within_the_limits_is_untouched() {
        let mut row = SpanRow {
            endpoint: "GET /".into(),
            attributes: vec![Attribute::new("a", text("short"))],
            ..SpanRow::default()
        };
        let before = row.clone();
        assert!(!limits().apply(&mut row));
        assert_eq!(row, before);
    }

    #[test]
    fn what_goes_past_a_limit_is_counted_or_marked() {
        let mut row = SpanRow {
            endpoint: "GET /a-very-long-path".into(),
            request_domain: "aññññ".into(),
            attributes: vec![
                Attribute::new("a", text("ünïcödé-text")),
                Attribute::new("b", AttrValue::Array(vec![text("0123456789")])),
                Attribute::new("c-long-key", AttrValue::Int(1)),
                Attribute::new("d", AttrValue::Int(2)),
                Attribute::new("e", AttrValue::Int(3)),
            ],
            events: vec![Event::default(), Event::default(), Event::default()],
            dropped_attributes_count: 1,
            resource_attributes: Arc::from(vec![Attribute::new(
                "service.name",
                text("a-service-name-too-long"),
            )]),
            ..SpanRow::default()
        };
        assert!(limits().apply(&mut row));
        assert_eq!(row.endpoint, "GET /a-v");
        // Byte 8 falls inside the fourth "ñ": the cut backs off to the boundary before it.
        assert_eq!(row.request_domain, "añññ");
        // Cut at a character boundary: "ünïcö" is 8 bytes.
        assert_eq!(row.attributes[0].value, text("ünïcö"));
        assert_eq!(
            row.attributes[1].value,
            AttrValue::Array(vec![text("01234567")])
        );
        // A key too long is cut whatever its value.
        assert_eq!(row.attributes[2].key, "c-long-k");
        assert_eq!(row.attributes[2].value, AttrValue::Int(1));
        assert_eq!(row.dropped_attributes_count, 3, "1 sent dropped + 2 here");
        assert_eq!(row.events.len(), 2);
        assert_eq!(row.dropped_events_count, 1);
        assert_eq!(row.resource_attributes[0].value, text("a-servic"));
        assert_eq!(
            row.attribute(TRUNCATED_ATTRIBUTE),
            Some(&text(
                "endpoint,request_domain,attributes.a,attributes.b,attributes.c-long-key,\
                 resource.service.name"
            ))
        );
    }

    /// Found by the `agent_batch` fuzz target: attributes dropped from the resource alone went
    /// uncounted, and `apply` said the span was untouched.
    #[test]
    fn attributes_dropped_from_the_resource_alone_are_named() {
        let resource: Vec<Attribute> = ["a", "b", "c", "d", "e"]
            .into_iter()
            .map(|key| Attribute::new(key, AttrValue::Int(1)))
            .collect();
        let mut row = SpanRow {
            endpoint: "GET /".into(),
            resource_attributes: Arc::from(resource),
            ..SpanRow::default()
        };
        assert!(limits().apply(&mut row));
        let kept: Vec<&str> = row
            .resource_attributes
            .iter()
            .map(|attribute| attribute.key.as_str())
            .collect();
        assert_eq!(kept, ["a", "b", "c"]);
        assert_eq!(row.dropped_attributes_count, 0, "the span's own count");
        assert_eq!(
            row.attribute(TRUNCATED_ATTRIBUTE),
            Some(&text("resource.dropped_attributes_count=2"))
        );
    }

    /// Rows one after another: a resource within the limits is checked once for its spans,
    /// and one past them is still cut at each of its spans, after or before the other.
    #[test]
    fn the_resources_of_rows_in_turn_are_checked_as_each_row_alone() {
        let attributes = |n: usize| -> Arc<[Attribute]> {
            (0..n)
                .map(|i| Attribute::new(format!("k{i}"), AttrValue::Int(1)))
                .collect::<Vec<_>>()
                .into()
        };
        let (within, past) = (attributes(2), attributes(5));
        let row = |resource: &Arc<[Attribute]>| SpanRow {
            endpoint: "GET /".into(),
            resource_attributes: resource.clone(),
            ..SpanRow::default()
        };
        let mut checked = Checked::default();
        for resource in [&within, &within, &past, &within, &past] {
            let (mut alone, mut in_turn) = (row(resource), row(resource));
            let cut = limits().apply(&mut alone);
            assert_eq!(limits().apply_checked(&mut in_turn, &mut checked), cut);
            assert_eq!(in_turn, alone);
            assert_eq!(in_turn.resource_attributes.len(), if cut { 3 } else { 2 });
        }
        assert!(checked
            .resource
            .is_some_and(|resource| Arc::ptr_eq(&resource, &within)));
    }
}
