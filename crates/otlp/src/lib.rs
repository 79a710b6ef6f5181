//! OTLP on the wire: decompression under a cap, protobuf and JSON decoding, cheap validation of
//! protobuf payloads without a full decode, and the mapping of spans to [`spanflow_model::SpanRow`]
//! (from protobuf bytes directly, in [`wire`]).
//!
//! Invariant: this crate does no network IO; receivers hand it bytes and get bytes or rows back.

pub mod decompress;
pub mod json;
pub mod limits;
pub mod map;
pub mod places;
pub mod record;
pub mod scan;
pub mod status;
pub mod validate;
pub mod wire;

pub use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
