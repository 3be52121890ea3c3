//! What the integration tests share (`crate::support::…`):
//! - `cli`: a scratch directory, the real binary with a pinned clock, database dumps;
//! - `stripe`: a database with known events, the fake Stripe server, key-leak checks;
//! - `fake_stripe`: the fake Stripe server itself;
//! - `serve`: the real `meterline serve` and a small blocking client;
//! - `meters`: a multi-meter plans.toml and reads of the meter tables;
//! - `alerts`: a loopback webhook receiver;
//! - `tmux`: the real binary on a real terminal;
//! - `engine`: the contract tests once per engine (`engine_tests!`), and plain-SQL reads of either
//!   (`inspect`, tests/common/inspect.rs, shared with the store's suite);
//! - `shapes`: the command-level tests once per engine × plans.toml shape (`shape_tests!`);
//! - `postgres`: the real PostgreSQL server the Postgres half runs on;
//! - `pgbouncer`: PgBouncer in transaction mode in front of it;
//! - `common` (tests/common, shared with the crates' suites): the pinned instant, the shipped
//!   plans and tests/fixtures/plans/, SQLite dumps.

pub mod alerts;
pub mod cli;
#[path = "../../common/mod.rs"]
pub mod common;
pub mod engine;
pub mod fake_stripe;
#[path = "../../common/inspect.rs"]
pub mod inspect;
pub mod meters;
pub mod pgbouncer;
pub mod postgres;
pub mod serve;
pub mod shapes;
pub mod stripe;
pub mod tmux;
