//! The ClickHouse backend, for users who outgrow one machine. So far it is its schema; the
//! [`SpanStore`](spanflow_store::SpanStore) that writes and reads through it comes next.
//!
//! One schema serves every server version spanflow meets: the 18.16 that Debian ships, which
//! has no `DateTime64`, TTL, codecs or skip indexes, and current servers, where the same
//! columns use them ([`schema::Flavor`]). The server's version decides at start.
//!
//! Invariant: knows rows and ClickHouse, never OTLP or HTTP requests of its own callers.

pub mod schema;
