//! Span search criteria shared by every backend.

use spanflow_model::{Place, ResponseStatus, SpanKind, SpanRow};

/// A window of span start times, µs since the epoch, both ends inclusive and optional.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub start_us: Option<i64>,
    pub end_us: Option<i64>,
}

impl TimeRange {
    /// Every time there is.
    pub const ALL: TimeRange = TimeRange {
        start_us: None,
        end_us: None,
    };

    pub fn new(start_us: Option<i64>, end_us: Option<i64>) -> TimeRange {
        TimeRange { start_us, end_us }
    }

    /// Whether a span starting at `start_time` µs lies in the window.
    pub fn contains(&self, start_time: i64) -> bool {
        self.start_us.is_none_or(|start| start_time >= start)
            && self.end_us.is_none_or(|end| start_time <= end)
    }
}

/// One operation of a service: a span name with the kind its spans have.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Operation {
    pub name: String,
    pub span_kind: SpanKind,
}

/// An equality filter on an attribute, span or resource, compared on the value's text form.
#[derive(Clone, Debug, PartialEq)]
pub struct AttributeFilter {
    pub key: String,
    pub value: String,
}

/// An equality filter on a place column of one end of the call: `pod_1`, `pod_group_0`,
/// `auto_service_1`, ... (see [`Place::TEXT_COLUMNS`]).
#[derive(Clone, Debug, PartialEq)]
pub struct PlaceFilter {
    column: &'static str,
    side: u8,
    pub value: String,
}

impl PlaceFilter {
    /// A filter on `column` (with its `_0` or `_1` suffix); `None` when no place column has
    /// that name.
    pub fn new(column: &str, value: impl Into<String>) -> Option<PlaceFilter> {
        let (name, side) = match column.rsplit_once('_')? {
            (name, "0") => (name, 0),
            (name, "1") => (name, 1),
            _ => return None,
        };
        let (name, _) = Place::TEXT_COLUMNS
            .iter()
            .find(|(known, _)| *known == name)?;
        Some(PlaceFilter {
            column: name,
            side,
            value: value.into(),
        })
    }

    /// The column without its suffix (`pod`).
    pub fn name(&self) -> &'static str {
        self.column
    }

    /// 0 for the client end, 1 for the server end.
    pub fn side(&self) -> u8 {
        self.side
    }

    /// The column as the stores name it (`pod_1`).
    pub fn column(&self) -> String {
        format!("{}_{}", self.column, self.side)
    }

    pub fn matches(&self, row: &SpanRow) -> bool {
        let place = if self.side == 0 {
            &row.place_0
        } else {
            &row.place_1
        };
        place.text(self.column) == Some(self.value.as_str())
    }
}

/// Which spans a search returns. Every field narrows; an empty query matches every span.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanQuery {
    pub service: Option<String>,
    /// The span name (`endpoint`).
    pub operation: Option<String>,
    pub attributes: Vec<AttributeFilter>,
    /// Where either end of the call ran.
    pub places: Vec<PlaceFilter>,
    pub min_duration_us: Option<u64>,
    pub max_duration_us: Option<u64>,
    /// Inclusive lower bound on the start time, µs since the epoch.
    pub start_time_min_us: Option<i64>,
    /// Inclusive upper bound on the start time, µs since the epoch.
    pub start_time_max_us: Option<i64>,
    pub response_status: Option<ResponseStatus>,
    pub limit: usize,
}

impl Default for SpanQuery {
    fn default() -> Self {
        SpanQuery {
            service: None,
            operation: None,
            attributes: Vec::new(),
            places: Vec::new(),
            min_duration_us: None,
            max_duration_us: None,
            start_time_min_us: None,
            start_time_max_us: None,
            response_status: None,
            limit: 100,
        }
    }
}

impl SpanQuery {
    /// The time window the query's start-time bounds make.
    pub fn time_range(&self) -> TimeRange {
        TimeRange::new(self.start_time_min_us, self.start_time_max_us)
    }

    /// Whether a row matches; the reference semantics every backend must agree with.
    pub fn matches(&self, row: &SpanRow) -> bool {
        if self
            .service
            .as_ref()
            .is_some_and(|service| &row.app_service != service)
        {
            return false;
        }
        if self
            .operation
            .as_ref()
            .is_some_and(|operation| &row.endpoint != operation)
        {
            return false;
        }
        if self
            .min_duration_us
            .is_some_and(|min| row.response_duration < min)
        {
            return false;
        }
        if self
            .max_duration_us
            .is_some_and(|max| row.response_duration > max)
        {
            return false;
        }
        if self
            .start_time_min_us
            .is_some_and(|min| row.start_time < min)
        {
            return false;
        }
        if self
            .start_time_max_us
            .is_some_and(|max| row.start_time > max)
        {
            return false;
        }
        if self
            .response_status
            .is_some_and(|status| row.response_status != status)
        {
            return false;
        }
        if !self.places.iter().all(|filter| filter.matches(row)) {
            return false;
        }
        self.attributes.iter().all(|filter| {
            row.attributes
                .iter()
                .chain(row.resource_attributes.iter())
                .any(|attribute| {
                    attribute.key == filter.key
                        && attribute.value.to_text().as_deref() == Some(filter.value.as_str())
                })
        })
    }
}
