//! meterline-store's integration tests: one test binary over the library alone, on in-memory
//! and temp-file SQLite databases (the root suite, tests/testsuite, drives the binary).
//!
//! - `store`: migrations, record and its hard cap, periods, plan changes, history, status;
//! - `record_batch`: many events in one transaction;
//! - `dashboard`: the dashboard's read paths (full load, refreshes by change marks);
//! - `dashboard_meters`: the same with several meters (rows per meter, groups, per-day usage);
//! - `support`: the shipped plans, the pinned instant, database dumps.
//!
//! Tests run in parallel threads of this one process: none changes its environment.

mod dashboard;
mod dashboard_meters;
mod record_batch;
mod store;

mod support;
