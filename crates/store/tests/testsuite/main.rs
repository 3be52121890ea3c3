//! meterline-store's integration tests: one test binary over the library alone (the root
//! suite, tests/testsuite, drives the binary). The contract tests run once per engine
//! (`engine_tests!`): on a temp-file SQLite database and on a fresh database of the test
//! PostgreSQL server (tests/testsuite/support/postgres.rs); the others on SQLite.
//!
//! - `credits`: the credit ledger under random grants and voids (a property test), on both
//!   engines;
//! - `store`: migrations, record and its hard cap, periods, plan changes, history, status;
//! - `record_batch`: many events in one transaction;
//! - `reservation_rounds`: serve's rounds of reservation calls, decided in one pass, against
//!   the same calls one at a time (a property test), on both engines and both plan shapes;
//! - `dashboard`: the dashboard's read paths (full load, refreshes by change marks);
//! - `dashboard_credits`: the overview's credits column and the detail's credits, on both
//!   engines;
//! - `dashboard_meters`: the same with several meters (rows per meter, groups, per-day usage),
//!   on both engines;
//! - `dashboard_priced`: events of a type (one line each) and groups with their money, on both
//!   engines;
//! - `dashboard_windows`: each limited meter's rolling windows in the detail and the fullest
//!   in the overview, on both engines;
//! - `windows`: rolling-window limits against brute force over random event streams (a
//!   property test), on both engines;
//! - `outbox`: the Stripe outbox of either unit (events, reports), on both engines;
//! - `support`: tests/common (the shipped plans and tests/fixtures/plans/, the pinned instant,
//!   database dumps, `engine_tests!`), a fresh database on either engine.
//!
//! Tests run in parallel threads of this one process: none changes its environment.

mod credits;
mod dashboard;
mod dashboard_credits;
mod dashboard_meters;
mod dashboard_priced;
mod dashboard_windows;
mod outbox;
mod record_batch;
mod reservation_rounds;
mod store;
mod windows;

mod support;

/// The PostgreSQL half (the `postgres::` tests here, and the library's own PostgreSQL unit
/// tests) needs the crate's `postgres` feature, which the store's dev-dependency on itself
/// turns on however the tests are started. Without it they would be left out in silence.
#[test]
fn the_postgres_half_is_built() {
    #[cfg(not(feature = "postgres"))]
    panic!(
        "meterline-store's tests need its `postgres` feature: keep the crate's dev-dependency \
         on itself with features = [\"postgres\"] (crates/store/Cargo.toml), or run \
         `cargo test -p meterline-store --features postgres`"
    );
}
