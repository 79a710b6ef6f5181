//! The spanflow server's ingest path: an agent's batch is decoded, every span mapped to a row
//! and tagged with where it ran, the rows written to the store, and the batch acknowledged only
//! once the store holds them.
//!
//! Invariant: the server knows the [`SpanStore`] trait, never a concrete backend.

mod ingest;
pub mod places;
mod tenants;

pub use ingest::{ingest_router, IngestConfig};
pub use places::{Inventory, PlaceMap};
pub use spanflow_store::SpanStore;
pub use tenants::{OpenStore, Tenants};
