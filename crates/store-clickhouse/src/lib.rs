//! The ClickHouse backend, for users who outgrow one machine: [`ClickHouseStore`] keeps span
//! rows in `flow_log.l7_flow_log` on one server or across the shards of a cluster, any number
//! of spanflow servers writing at once.
//!
//! One schema serves every server version spanflow meets: the 18.16 that Debian ships, which
//! has no `DateTime64`, TTL, codecs or skip indexes, and current servers, where the same
//! columns use them ([`schema::Flavor`]). The server's version decides at start.
//!
//! Invariant: knows rows and ClickHouse, never OTLP or HTTP requests of its own callers.

pub mod read;
pub mod rowbinary;
pub mod schema;
mod store;
#[cfg(feature = "test-server")]
pub mod test_server;

pub use store::{ClickHouseConfig, ClickHouseStore, WireCompression};
