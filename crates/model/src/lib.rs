//! The span row and its ids: one wide row per span, modelled on DeepFlow's `l7_flow_log`.
//!
//! Invariant: this crate knows no wire format and does no IO. OTLP, JSON and storage encodings
//! live in the crates that speak them.

mod ids;
mod ip_text;
pub mod metric_names;
mod place;
mod row;
pub mod tenant;

pub use ids::{AgentId, IdError, SpanId, TraceId};
pub use ip_text::IpText;
pub use place::{AutoType, Place, PlaceField};
pub use row::{
    AttrValue, Attribute, Event, L7Protocol, Link, ObservationPoint, ResourceTag, ResourceTags,
    ResponseStatus, SpanKind, SpanRow, SIGNAL_SOURCE_OTEL,
};
