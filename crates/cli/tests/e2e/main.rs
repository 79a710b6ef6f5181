//! The end-to-end tests: whole spanflow processes on loopback ports, driven by real
//! OpenTelemetry SDKs, ClickHouse, Chromium and the command line. One test binary, so the
//! workspace links spanflow once for all of them; nextest still runs each test in its own
//! process.

mod common;

mod access;
mod bad_input;
mod bench_harness;
mod clickhouse;
mod deploy;
mod durability;
mod failover;
mod grpc;
mod loadgen;
mod places;
mod python_sdk;
mod receivers;
mod rust_sdk;
mod spool;
mod terminal;
mod ui;
