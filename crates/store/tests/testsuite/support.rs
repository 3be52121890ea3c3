//! What the store's tests share: the main suite's common part (tests/common: the instant
//! they pretend it is, the shipped plans, tests/fixtures/plans/, database dumps, the contract
//! tests once per engine), its PostgreSQL server and plain-SQL reads of either engine
//! (`Inspect`), and a fresh database on either engine.

use std::path::PathBuf;

use meterline_store::Store;
use proptest::strategy::Strategy;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
use tempfile::TempDir;

#[path = "../../../../tests/common/mod.rs"]
pub mod common;
pub(crate) use common::engine_tests;
pub use common::{AI_PLANS, Engine, NOW, repo_plans};

/// The main suite's PostgreSQL server (tests/testsuite/support/postgres.rs); the store's tests
/// use a part of it.
#[allow(dead_code)]
#[path = "../../../../tests/testsuite/support/postgres.rs"]
mod postgres;

/// Plain-SQL reads of either engine's database (tests/common/inspect.rs).
#[allow(dead_code)]
#[path = "../../../../tests/common/inspect.rs"]
mod inspect;
pub use inspect::Inspect;

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

    /// Plain SQL on it, behind the library's back.
    pub fn inspect(&self) -> Inspect<'_> {
        Inspect::of(&self.path)
    }
}

/// A property test of `cases` cases on one store (or a few): a fresh PostgreSQL database per case would
/// cost more than the case, so each case gets its number (from 1) to keep to customers of its
/// own. Panics with the smallest failing input.
pub fn run_cases<T, S: Strategy>(
    store: T,
    cases: u32,
    strategy: S,
    case: impl Fn(&mut T, usize, S::Value) -> Result<(), TestCaseError>,
) {
    // `run` takes a `Fn`: the store and the case number through cells.
    let store = std::cell::RefCell::new(store);
    let number = std::cell::Cell::new(0);
    let mut runner = TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    runner
        .run(&strategy, |value| {
            number.set(number.get() + 1);
            case(&mut store.borrow_mut(), number.get(), value)
        })
        .unwrap();
}
