//! The SQLite side of [`super::Connection`]: opening the file (`open`), its schema
//! (`schema`), its errors as meterline's (`error`); rusqlite takes the parameters as they are.

pub(crate) mod error;
pub(super) mod ops;
pub(crate) mod schema;

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use super::Param;
use crate::{Error, OpenOptions, Result};
pub(crate) use error::from_sqlite;

/// Open the file at `db` (or a SQLite URI filename, `file:…`) as `options` say, and bring its
/// schema up to date.
pub(crate) fn open(db: &Path, options: OpenOptions) -> Result<Connection> {
    let is_uri = db.to_str().is_some_and(|p| p.starts_with("file:"));
    if !options.create && !is_uri && !db.exists() {
        return Err(Error::NoDatabase);
    }
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if options.create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    setup(
        Connection::open_with_flags(db, flags).map_err(from_sqlite)?,
        options,
    )
}

/// A private in-memory database.
pub(crate) fn open_in_memory() -> Result<Connection> {
    setup(
        Connection::open_in_memory().map_err(from_sqlite)?,
        OpenOptions::default(),
    )
}

fn setup(mut conn: Connection, options: OpenOptions) -> Result<Connection> {
    conn.busy_timeout(options.busy_timeout)
        .map_err(from_sqlite)?;
    // rusqlite keeps 16 statements by default; a batch on several meters with alerts
    // runs about as many, the transaction statements and the reads more, and a round of
    // serve's writer writes its rows with one statement per row count (1 to its size): a
    // statement pushed out is parsed again (tens of thousands of instructions) on its next
    // use.
    conn.set_prepared_statement_cache_capacity(256);
    // The bundled SQLite is built with STAT4, which makes a statement whose plan could
    // depend on a bound value (a range, an ORDER BY ... LIMIT) prepare itself again whenever
    // that value changes: a window's read ran its parser on every check. With the query
    // planner stability guarantee a statement keeps the plan it was prepared with.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map_err(from_sqlite)?;
    // Settings of this connection only; the file is not touched. WAL + NORMAL survives a
    // killed process without losing a committed transaction; only a power loss can lose
    // the last few.
    // temp_store = MEMORY keeps statement journals (an INSERT into a table with unique
    // indexes opens one) off the disk: otherwise a temporary file, one syscall per page.
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
    )
    .map_err(from_sqlite)?;
    // A brand-new file is set up by whichever process gets there first; the others can
    // see SQLITE_BUSY without their busy handler being asked (the switch to WAL, WAL
    // recovery). Every step is idempotent, so they retry until the busy timeout.
    let deadline = Instant::now() + options.busy_timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        match schema::prepare(&mut conn, options) {
            Err(Error::Locked) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
            Ok(()) => return Ok(conn),
        }
    }
}

/// The parameters in the form rusqlite binds.
pub(super) fn bind<'a>(params: &'a [&'a dyn Param]) -> impl rusqlite::Params + 'a {
    rusqlite::params_from_iter(params.iter().copied())
}

/// A statement without parameters or rows (`BEGIN`, `COMMIT`, `ROLLBACK`), from the
/// statement cache: run on every transaction, so parsed once.
pub(super) fn run_cached(conn: &Connection, sql: &str) -> Result<()> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute([]))
        .map(drop)
        .map_err(from_sqlite)
}
