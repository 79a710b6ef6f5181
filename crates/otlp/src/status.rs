//! `google.rpc.Status`, the body of every OTLP/HTTP error response.

/// `google.rpc.Status` without `details` (OTLP lets receivers leave them out).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    /// A `google.rpc.Code` value; OTLP lets HTTP receivers leave it 0.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// Developer-facing English message.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// `google.rpc.Code` values spanflow answers with.
pub mod code {
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const INTERNAL: i32 = 13;
    pub const UNAVAILABLE: i32 = 14;
}
