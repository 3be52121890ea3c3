//! What the store's tests share: the main suite's common part (tests/common: the instant
//! they pretend it is, the shipped plans, tests/fixtures/plans/, database dumps, the contract
//! tests once per engine), its PostgreSQL server, a fresh database on either engine, and reads
//! of a SQLite database behind the library's back.

use std::path::PathBuf;

use meterline_store::Store;
use tempfile::TempDir;

#[path = "../../../../tests/common/mod.rs"]
pub mod common;
pub(crate) use common::engine_tests;
pub use common::{AI_PLANS, Engine, NOW, dump, repo_plans};

/// The main suite's PostgreSQL server (tests/testsuite/support/postgres.rs); the store's tests
/// use a part of it.
#[allow(dead_code)]
#[path = "../../../../tests/testsuite/support/postgres.rs"]
mod postgres;

/// A fresh database on `engine`: a file in a temp dir, or a new database on the test
/// PostgreSQL server. Open it as many times as a test needs connections.
pub struct TestDb {
    // Holds the SQLite file until the test ends.
    _dir: TempDir,
    path: PathBuf,
}

impl TestDb {
    pub fn on(engine: Engine) -> TestDb {
        let dir = TempDir::new().unwrap();
        let path = match engine {
            Engine::Sqlite => dir.path().join("m.db"),
            Engine::Postgres => postgres::server().fresh_database().into(),
        };
        TestDb { _dir: dir, path }
    }

    /// A new connection.
    pub fn open(&self) -> Store {
        Store::open(&self.path).unwrap()
    }
}

/// `used` of one customer's counter row for the period starting at `period_start`.
pub fn used_in(conn: &rusqlite::Connection, customer: &str, period_start: &str) -> i64 {
    conn.query_row(
        "SELECT used FROM usage_records WHERE customer_id = ?1 AND period_start = ?2",
        [customer, period_start],
        |r| r.get(0),
    )
    .expect("counter row")
}

/// (number of events, sum of their quantities) for one customer.
pub fn events_of(conn: &rusqlite::Connection, customer: &str) -> (i64, i64) {
    conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(quantity), 0) FROM usage_events WHERE customer_id = ?1",
        [customer],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .expect("count events")
}
