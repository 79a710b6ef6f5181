//! The `spanflow` binary's library half: settings and serving, so that tests can start a whole
//! spanflow in-process.

pub mod auth;
pub mod client;
pub mod listen;
pub mod serve;
pub mod settings;
pub mod sink;
pub mod tenants;
