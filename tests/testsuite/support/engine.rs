//! The contract tests run once per engine: `engine_tests!` turns each `fn name(engine: Engine)`
//! into `sqlite::name` and `postgres::name`, and [`Inspect`] reads either database the same
//! way, with plain SQL, without going through the code under test.

use super::cli::Scratch;

// The store a test runs on, `engine_tests!` (tests/common) and `Inspect`
// (tests/common/inspect.rs), shared with the store's suite.
pub use super::common::Engine;
pub(crate) use super::common::engine_tests;
pub use super::inspect::Inspect;

impl Scratch {
    /// A scratch directory whose database is on `engine`: the file, or a fresh database on
    /// the test PostgreSQL server.
    pub fn on(engine: Engine) -> Scratch {
        let mut scratch = Scratch::new();
        if engine == Engine::Postgres {
            scratch.db = super::postgres::server().fresh_database().into();
        }
        scratch
    }

    /// Plain SQL on this database, whichever the engine.
    pub fn inspect(&self) -> Inspect<'_> {
        Inspect::of(&self.db)
    }

    /// Take the writers' lock from outside meterline, as another writer would hold it: every
    /// write waits until the guard is dropped.
    pub fn hold_write_lock(&self) -> WriteLock {
        let db = self.db.to_string_lossy();
        if meterline::store::is_postgres_url(&db) {
            let mut client = postgres::Client::connect(&db, postgres::NoTls).expect("connect");
            client
                .batch_execute(&format!(
                    "BEGIN; SELECT pg_advisory_xact_lock({POSTGRES_WRITER_LOCK})"
                ))
                .expect("take the writers' lock");
            return WriteLock::Postgres(client);
        }
        let conn = rusqlite::Connection::open(&self.db).expect("open the test database");
        conn.execute_batch("BEGIN IMMEDIATE")
            .expect("take the write lock");
        WriteLock::Sqlite(conn)
    }
}

/// The advisory lock key every meterline write transaction takes on PostgreSQL
/// (`WRITER_LOCK` in crates/store/src/db/postgres/mod.rs).
const POSTGRES_WRITER_LOCK: i64 = 0x6d65_7465_726c_0001;

/// The writers' lock held from outside (see [`Scratch::hold_write_lock`]); released on drop.
pub enum WriteLock {
    Sqlite(rusqlite::Connection),
    Postgres(postgres::Client),
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        let _ = match self {
            WriteLock::Sqlite(conn) => conn.execute_batch("COMMIT").map_err(|e| e.to_string()),
            WriteLock::Postgres(client) => {
                client.batch_execute("COMMIT").map_err(|e| e.to_string())
            }
        };
    }
}
