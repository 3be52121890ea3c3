//! What the workspace's test suites share, included by path (`#[path]`) as
//! `crate::support::common` by each suite's support module (tests/testsuite, crates/store/tests,
//! crates/tui/tests): the instant the tests pretend it is, the shipped plans.toml, the plans
//! under tests/fixtures/plans/, a dump of a SQLite database's rows, and the contract tests
//! once per engine (`engine_tests!`).

// Each suite uses its part of this module.
#![allow(dead_code, unused_macros)]

use std::path::{Path, PathBuf};

use rusqlite::types::ValueRef;

/// The store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// `engine_tests!(a, b)`: `#[test] sqlite::a`, `#[test] postgres::a`, … calling `a(Engine)`.
macro_rules! engine_tests {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(#[test]
            fn $name() {
                super::$name($crate::support::common::Engine::Sqlite)
            })+
        }
        mod postgres {
            $(#[test]
            fn $name() {
                super::$name($crate::support::common::Engine::Postgres)
            })+
        }
    };
}
#[allow(unused_imports)]
pub(crate) use engine_tests;

/// The instant the tests pretend it is (`METERLINE_NOW` for the binary).
pub const NOW: &str = "2026-11-27T18:00:00Z";

/// An AI API as the dashboard shows it (tests/fixtures/plans/ai.toml).
pub const AI_PLANS: &str = include_str!("../fixtures/plans/ai.toml");

/// An AI API with small caps, for the HTTP and SDK tests (tests/fixtures/plans/ai_capped.toml).
pub const AI_CAPPED_PLANS: &str = include_str!("../fixtures/plans/ai_capped.toml");

/// An AI API whose `completion` event feeds three meters, tokens priced per model, for the
/// reads with money per group (tests/fixtures/plans/ai_priced.toml).
#[allow(dead_code)]
pub const AI_PRICED_PLANS: &str = include_str!("../fixtures/plans/ai_priced.toml");

/// The repository's root, whichever crate's tests run: the folder holding Cargo.lock.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .expect("the tests run inside the repository")
}

/// The plans.toml shipped at the repository root.
pub fn repo_plans() -> PathBuf {
    repo_root().join("plans.toml")
}

/// Every row of every meterline table, as text, in a stable order.
#[derive(Debug, PartialEq, Eq)]
pub struct Dump(pub Vec<(String, Vec<String>)>);

/// The tables a [`Dump`] holds.
pub const TABLES: [&str; 4] = [
    "customers",
    "usage_events",
    "usage_records",
    "usage_members",
];

/// The [`Dump`] of a SQLite database, read behind meterline's back.
pub fn dump(conn: &rusqlite::Connection) -> Dump {
    let mut tables = Vec::new();
    for table in TABLES {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY 1, 2, 3"))
            .expect("prepare dump");
        let columns = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                (0..columns)
                    .map(|i| {
                        Ok(match r.get_ref(i)? {
                            ValueRef::Null => "NULL".to_string(),
                            ValueRef::Integer(n) => n.to_string(),
                            ValueRef::Real(f) => f.to_string(),
                            ValueRef::Text(t) => format!("'{}'", String::from_utf8_lossy(t)),
                            ValueRef::Blob(b) => format!("x{b:02x?}"),
                        })
                    })
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map(|cells| cells.join("|"))
            })
            .expect("query dump")
            .collect::<rusqlite::Result<Vec<_>>>()
            .expect("read dump");
        tables.push((table.to_string(), rows));
    }
    Dump(tables)
}
