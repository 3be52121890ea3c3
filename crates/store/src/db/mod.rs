//! The one connection type the store's SQL runs on, over either engine: the embedded SQLite
//! file or, with the `postgres` feature, a PostgreSQL server.
//!
//! It has the shape of the part of rusqlite the store used (`query_row`, `prepare_cached`,
//! `params!`, transactions), so every statement is written once, in the SQL both engines
//! speak. Placeholders are SQLite's `?1`; the Postgres side rewrites them to `$1` and binds
//! each value with its type. What differs between the engines (opening, the schema
//! bookkeeping, errors, the change counter) is in `sqlite/` and `postgres/`, which mirror each
//! other; `migrations` holds both engines' migration files, and `open` picks the engine. The
//! operations the store asks for by what they do (a batch of rows, a session lock, a big sort,
//! the engine's own check) are `Connection` methods here, each with one body per engine in
//! `sqlite/ops.rs` and `postgres/ops.rs`, so no code outside `db/` asks which engine it is on,
//! but for an operation that exists on one engine only and says so in its name
//! ([`Connection::sqlite_only`]).

pub(crate) mod migrations;
mod open;
pub(crate) mod sqlite;
mod values;

#[cfg(feature = "postgres")]
pub(crate) mod postgres;

use std::ops::Deref;

use crate::{Error, Result};
pub(crate) use values::{Column, OwnedValue, Param};

/// Which engine a [`Connection`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// One open connection.
pub(crate) enum Connection {
    Sqlite(rusqlite::Connection),
    // Boxed: a Postgres client is several times the size of a SQLite handle.
    #[cfg(feature = "postgres")]
    Postgres(Box<postgres::PgConnection>),
}

/// How a transaction starts: `Immediate` takes the database's one writer lock at once (as
/// SQLite's `BEGIN IMMEDIATE`), so whatever it reads stays true until it commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Behavior {
    Deferred,
    Immediate,
    /// `Immediate` for a transaction whose every read is a lookup by key (the record batch):
    /// PostgreSQL is told to use its indexes (`SET LOCAL enable_seqscan = off`), because on a
    /// table without statistics yet (a fresh one ingesting at full speed) its default
    /// estimates plan a list of keys as a scan of the whole table, a scan that grows with it.
    ImmediateByKey,
}

/// `params![a, b]`: the values of a statement's `?1`, `?2`, ….
macro_rules! params {
    () => { &[] as &[&dyn $crate::db::Param] };
    ($($value:expr),+ $(,)?) => { &[$(&$value as &dyn $crate::db::Param),+] as &[&dyn $crate::db::Param] };
}
pub(crate) use params;

/// What a statement can take as its parameters.
pub(crate) trait Params {
    fn with<R>(self, f: impl FnOnce(&[&dyn Param]) -> R) -> R;
}

impl Params for &[&dyn Param] {
    fn with<R>(self, f: impl FnOnce(&[&dyn Param]) -> R) -> R {
        f(self)
    }
}

impl Params for [&dyn Param; 0] {
    fn with<R>(self, f: impl FnOnce(&[&dyn Param]) -> R) -> R {
        f(&[])
    }
}

macro_rules! array_params {
    ($($n:literal)+) => {$(
        impl<T: Param> Params for [T; $n] {
            fn with<R>(self, f: impl FnOnce(&[&dyn Param]) -> R) -> R {
                let refs: [&dyn Param; $n] = std::array::from_fn(|i| &self[i] as &dyn Param);
                f(&refs)
            }
        }
    )+};
}
array_params!(1 2 3 4 5 6 7 8);

impl Params for &Vec<OwnedValue> {
    fn with<R>(self, f: impl FnOnce(&[&dyn Param]) -> R) -> R {
        let refs: Vec<&dyn Param> = self.iter().map(|v| v as &dyn Param).collect();
        f(&refs)
    }
}

impl Params for &Vec<&dyn Param> {
    fn with<R>(self, f: impl FnOnce(&[&dyn Param]) -> R) -> R {
        f(self)
    }
}

/// The lengths of the `IN (…)` lists [`in_lists`] makes. PostgreSQL plans a long list as a
/// scan of the whole table unless told otherwise (`Behavior::ImmediateByKey`).
const IN_LIST_LENGTHS: [usize; 4] = [1, 8, 64, 512];

/// `values` as lists of bound parameters for `IN (…)`: at most 512 a list, each filled up
/// with its last value to one of a few fixed lengths, so a statement built on them has a
/// handful of texts (each kept in SQLite's statement cache) whatever the number of values,
/// and one round trip per list on PostgreSQL. Each list comes as its placeholders (`?,?,…`)
/// and its parameters; no values, no list (`IN ()` is not SQL).
pub(crate) fn in_lists<T: Param>(values: &[T]) -> impl Iterator<Item = (String, Vec<&dyn Param>)> {
    values
        .chunks(IN_LIST_LENGTHS[IN_LIST_LENGTHS.len() - 1])
        .filter_map(|chunk| {
            let last = chunk.last()?;
            let length = list_length(chunk.len());
            let params: Vec<&dyn Param> = chunk
                .iter()
                .chain(std::iter::repeat_n(last, length - chunk.len()))
                .map(|v| v as &dyn Param)
                .collect();
            Some((vec!["?"; length].join(","), params))
        })
}

/// The fixed length a list of `n` values (at most 512) is filled up to, repeating its last.
pub(crate) fn list_length(n: usize) -> usize {
    IN_LIST_LENGTHS
        .iter()
        .copied()
        .find(|&length| length >= n)
        .unwrap_or(n)
}

/// The sizes to cut a list of `n` items into for statements of a handful of texts: `most`
/// while as many are left, then the rest as powers of two, largest first (31: 16, 8, 4, 2,
/// 1). Each text is prepared once and kept in SQLite's statement cache; one text per count
/// (serve's rounds have any count) filled the cache, and serve's writer spent a twentieth of
/// its time preparing them. For lists that cannot be filled up as `in_lists` fills them
/// (rows to insert).
pub(crate) fn list_sizes(n: usize, most: usize) -> impl Iterator<Item = usize> {
    let mut left = n;
    std::iter::from_fn(move || {
        let size = match left {
            0 => return None,
            n if n >= most => most,
            n => 1 << n.ilog2(),
        };
        left -= size;
        Some(size)
    })
}

/// Rows a PostgreSQL cursor hands over at a time ([`Connection::for_each_row`]).
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
const ROWS_PER_FETCH: usize = 5_000;

/// `.optional()` on a `query_row`: no row is `None`, not an error.
pub(crate) trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(Error::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// What [`Connection::try_session_lock`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionLock {
    /// This connection holds it until it lets go or its session ends (its process or host
    /// died), so a lock row found beside it was left by a dead run.
    Taken,
    /// Another session holds it: its holder is alive.
    HeldElsewhere,
    /// The engine keeps none (SQLite: a file has no sessions another host could see end); the
    /// lock row and its heartbeat decide alone.
    NotKept,
}

/// The engine's own view of the database, for `doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EngineCheck {
    /// SQLite's `PRAGMA quick_check`: "ok" or its first complaint; "ok" from a server that
    /// answered (PostgreSQL checks its own pages).
    pub quick_check: String,
    /// A file's journal mode (SQLite's `wal`); `None` on a server, which keeps its own.
    pub journal_mode: Option<String>,
    /// The engine and its version: `SQLite 3.50.2`, `PostgreSQL 15.4`.
    pub engine: String,
}

/// While it lives, a sort too big for memory goes to disk ([`Connection::sorts_on_disk`]).
pub(crate) struct SortsOnDisk<'c> {
    _sqlite: Option<sqlite::ops::TempStoreOnFile<'c>>,
}

/// The operations each engine does its own way, asked for by what they do; the bodies are in
/// `sqlite/ops.rs` and `postgres/ops.rs`. A new engine implements each of them.
impl Connection {
    /// Insert rows into `table`: `values` holds them one after another, `columns.len()`
    /// values each. SQLite takes a few hundred rows a multi-row INSERT, PostgreSQL all of them
    /// in one INSERT of arrays (integer and text columns only: what a batch of events holds).
    pub(crate) fn insert_rows(
        &self,
        table: &str,
        columns: &[&str],
        values: &[&dyn Param],
    ) -> Result<()> {
        match self {
            Connection::Sqlite(c) => sqlite::ops::insert_rows(c, table, columns, values),
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => c.insert_rows(table, columns, values),
        }
    }

    /// Try to take the session lock `name`, one that the engine releases itself when its
    /// holder's process or host dies; [`SessionLock::NotKept`] where the engine has none.
    pub(crate) fn try_session_lock(&self, name: &str) -> Result<SessionLock> {
        match self {
            Connection::Sqlite(_) => Ok(sqlite::ops::try_session_lock(name)),
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => c.try_session_lock(name),
        }
    }

    /// Let go of the session lock `name` (nothing where none was taken).
    pub(crate) fn release_session_lock(&self, name: &str) -> Result<()> {
        match self {
            Connection::Sqlite(_) => sqlite::ops::release_session_lock(name),
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => c.release_session_lock(name),
        }
    }

    /// Keep what a big sort holds (an export's `ORDER BY` over every event) out of memory
    /// while the guard lives. SQLite's temp store goes to a file meanwhile; PostgreSQL spills
    /// past `work_mem` by itself.
    pub(crate) fn sorts_on_disk(&self) -> Result<SortsOnDisk<'_>> {
        Ok(SortsOnDisk {
            _sqlite: match self {
                Connection::Sqlite(c) => Some(sqlite::ops::TempStoreOnFile::new(c)?),
                #[cfg(feature = "postgres")]
                Connection::Postgres(_) => None,
            },
        })
    }

    /// The engine's own check of the database and its name and version (`doctor`).
    pub(crate) fn engine_check(&self) -> Result<EngineCheck> {
        match self {
            Connection::Sqlite(c) => sqlite::ops::check(c),
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => c.check(),
        }
    }
}

impl Connection {
    pub(crate) fn engine(&self) -> Engine {
        match self {
            Connection::Sqlite(_) => Engine::Sqlite,
            #[cfg(feature = "postgres")]
            Connection::Postgres(_) => Engine::Postgres,
        }
    }

    /// The SQLite connection, for an operation that exists on SQLite only (`backup`'s online
    /// backup API); `None` on PostgreSQL, which the caller refuses with its own message.
    pub(crate) fn sqlite_only(&self) -> Option<&rusqlite::Connection> {
        match self {
            Connection::Sqlite(c) => Some(c),
            #[cfg(feature = "postgres")]
            Connection::Postgres(_) => None,
        }
    }

    pub(crate) fn execute(&self, sql: &str, params: impl Params) -> Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    /// A write whose count of rows nobody reads. SQLite runs it now; PostgreSQL, inside a
    /// transaction, sends it with the transaction's next statement, so the writes at the end
    /// of a batch cost one round trip rather than one each (`postgres::later`).
    pub(crate) fn write(&self, sql: &str, params: impl Params) -> Result<()> {
        match self {
            Connection::Sqlite(_) => self.execute(sql, params).map(|_| ()),
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => params.with(|p| c.write_later(sql, p)),
        }
    }

    /// Several statements without parameters (migrations, fixed updates). Without the
    /// `postgres` feature nothing calls it: SQLite's COMMIT and ROLLBACK are cached statements.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn execute_batch(&self, sql: &str) -> Result<()> {
        match self {
            Connection::Sqlite(c) => c.execute_batch(sql).map_err(sqlite::from_sqlite),
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => c.batch_execute(sql),
        }
    }

    pub(crate) fn query_row<T>(
        &self,
        sql: &str,
        params: impl Params,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    /// Each row of `sql` through `f`, with a page of rows in memory at most, whatever the
    /// result's size (an export of every event): SQLite steps through the result as it
    /// comes, while PostgreSQL's client reads a whole result before the first row, so there the
    /// rows come through a cursor, [`ROWS_PER_FETCH`] at a time. Call it in a transaction, as a
    /// cursor needs one: it gives the rows one snapshot on both engines.
    pub(crate) fn for_each_row(
        &self,
        sql: &str,
        params: impl Params,
        mut f: impl FnMut(&Row<'_>) -> Result<()>,
    ) -> Result<()> {
        match self {
            Connection::Sqlite(_) => {
                let mut stmt = self.prepare(sql)?;
                let mut rows = stmt.query(params)?;
                while let Some(row) = rows.next()? {
                    f(&row)?;
                }
                Ok(())
            }
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => params.with(|params| {
                c.for_each_row(sql, params, ROWS_PER_FETCH, &mut |row| {
                    f(&Row::Postgres(row))
                })
            }),
        }
    }

    pub(crate) fn prepare_cached(&self, sql: &str) -> Result<Statement<'_>> {
        match self {
            Connection::Sqlite(c) => c
                .prepare_cached(sql)
                .map(Statement::Sqlite)
                .map_err(sqlite::from_sqlite),
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => Ok(Statement::Postgres(c.statement(sql))),
        }
    }

    /// A statement run once (its text is built at run time): kept out of SQLite's statement
    /// cache, where it would push out the record path's statements. Postgres caches nothing.
    pub(crate) fn prepare(&self, sql: &str) -> Result<Statement<'_>> {
        match self {
            Connection::Sqlite(c) => c
                .prepare(sql)
                .map(Statement::SqliteOnce)
                .map_err(sqlite::from_sqlite),
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => Ok(Statement::Postgres(c.statement(sql))),
        }
    }

    pub(crate) fn transaction_with_behavior(&self, behavior: Behavior) -> Result<Transaction<'_>> {
        match self {
            Connection::Sqlite(c) => sqlite::run_cached(
                c,
                match behavior {
                    Behavior::Deferred => "BEGIN DEFERRED",
                    Behavior::Immediate | Behavior::ImmediateByKey => "BEGIN IMMEDIATE",
                },
            )?,
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => c.begin(behavior)?,
        }
        Ok(Transaction {
            conn: self,
            open: true,
        })
    }

    /// A deferred transaction, as rusqlite's of the same name.
    pub(crate) fn unchecked_transaction(&self) -> Result<Transaction<'_>> {
        self.transaction_with_behavior(Behavior::Deferred)
    }

    /// A write transaction: the writers' lock from its first statement (SQLite's `BEGIN
    /// IMMEDIATE`; on PostgreSQL the writers' advisory lock and the change counter), so what
    /// it reads cannot move before it writes.
    pub(crate) fn transaction(&self) -> Result<Transaction<'_>> {
        self.transaction_with_behavior(Behavior::Immediate)
    }
}

/// An open transaction; dropped without `commit`, it rolls back.
pub(crate) struct Transaction<'c> {
    conn: &'c Connection,
    open: bool,
}

impl Transaction<'_> {
    pub(crate) fn commit(mut self) -> Result<()> {
        self.open = false;
        self.conn.end("COMMIT")
    }

    /// End a transaction that only read (a snapshot): nothing to keep.
    pub(crate) fn finish(self) -> Result<()> {
        self.rollback()
    }

    pub(crate) fn rollback(mut self) -> Result<()> {
        self.open = false;
        self.conn.end("ROLLBACK")
    }
}

impl Connection {
    /// `COMMIT` or `ROLLBACK`. On SQLite a cached statement: `execute_batch` parses the text
    /// anew each time, which was a tenth of a read like `metered_check`.
    fn end(&self, sql: &str) -> Result<()> {
        match self {
            Connection::Sqlite(c) => sqlite::run_cached(c, sql),
            #[cfg(feature = "postgres")]
            Connection::Postgres(_) => self.execute_batch(sql),
        }
    }
}

impl Deref for Transaction<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if self.open {
            // Nothing to do if it fails: the connection is gone, and the transaction with it.
            let _ = self.conn.end("ROLLBACK");
        }
    }
}

/// A statement ready to run.
pub(crate) enum Statement<'c> {
    Sqlite(rusqlite::CachedStatement<'c>),
    SqliteOnce(rusqlite::Statement<'c>),
    #[cfg(feature = "postgres")]
    Postgres(postgres::PgStatement<'c>),
}

impl Statement<'_> {
    /// Run it; the number of rows it changed.
    pub(crate) fn execute(&mut self, params: impl Params) -> Result<usize> {
        params.with(|params| match self {
            Statement::Sqlite(s) => s.execute(sqlite::bind(params)).map_err(sqlite::from_sqlite),
            Statement::SqliteOnce(s) => {
                s.execute(sqlite::bind(params)).map_err(sqlite::from_sqlite)
            }
            #[cfg(feature = "postgres")]
            Statement::Postgres(s) => s.execute(params),
        })
    }

    /// The first row, or [`Error::NoRows`].
    pub(crate) fn query_row<T>(
        &mut self,
        params: impl Params,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut rows = self.query(params)?;
        match rows.next()? {
            Some(row) => f(&row),
            None => Err(Error::NoRows),
        }
    }

    /// Whether the query finds a row.
    pub(crate) fn exists(&mut self, params: impl Params) -> Result<bool> {
        Ok(self.query(params)?.next()?.is_some())
    }

    pub(crate) fn query(&mut self, params: impl Params) -> Result<Rows<'_>> {
        params.with(move |params| match self {
            Statement::Sqlite(s) => s
                .query(sqlite::bind(params))
                .map(Rows::Sqlite)
                .map_err(sqlite::from_sqlite),
            Statement::SqliteOnce(s) => s
                .query(sqlite::bind(params))
                .map(Rows::Sqlite)
                .map_err(sqlite::from_sqlite),
            #[cfg(feature = "postgres")]
            Statement::Postgres(s) => Ok(Rows::Postgres(s.query(params)?.into_iter())),
        })
    }

    /// Each row through `f`.
    pub(crate) fn query_map<T, F>(&mut self, params: impl Params, f: F) -> Result<MappedRows<'_, F>>
    where
        F: FnMut(&Row<'_>) -> Result<T>,
    {
        Ok(MappedRows {
            rows: self.query(params)?,
            f,
        })
    }
}

/// The rows of a query, read one at a time.
pub(crate) enum Rows<'s> {
    Sqlite(rusqlite::Rows<'s>),
    #[cfg(feature = "postgres")]
    Postgres(std::vec::IntoIter<::postgres::Row>),
}

/// One row of a result. Holds the Postgres row itself: it was read in full already.
pub(crate) enum Row<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    #[cfg(feature = "postgres")]
    Postgres(::postgres::Row),
}

impl Rows<'_> {
    #[allow(clippy::should_implement_trait)] // fallible, as rusqlite's
    pub(crate) fn next(&mut self) -> Result<Option<Row<'_>>> {
        match self {
            Rows::Sqlite(rows) => Ok(rows.next().map_err(sqlite::from_sqlite)?.map(Row::Sqlite)),
            #[cfg(feature = "postgres")]
            Rows::Postgres(rows) => Ok(rows.next().map(Row::Postgres)),
        }
    }
}

/// The iterator `query_map` returns.
pub(crate) struct MappedRows<'s, F> {
    rows: Rows<'s>,
    f: F,
}

impl<T, F: FnMut(&Row<'_>) -> Result<T>> Iterator for MappedRows<'_, F> {
    type Item = Result<T>;
    fn next(&mut self) -> Option<Result<T>> {
        match self.rows.next() {
            Ok(Some(row)) => Some((self.f)(&row)),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// A column by position, as rusqlite's `RowIndex` (only positions are used here).
pub(crate) trait ColumnIndex {
    fn index(self) -> usize;
}

impl ColumnIndex for usize {
    fn index(self) -> usize {
        self
    }
}

impl Row<'_> {
    pub(crate) fn get<I: ColumnIndex, T: Column>(&self, idx: I) -> Result<T> {
        let idx = idx.index();
        match self {
            Row::Sqlite(r) => T::from_sqlite(r.get_ref(idx).map_err(sqlite::from_sqlite)?, idx),
            #[cfg(feature = "postgres")]
            Row::Postgres(r) => T::from_postgres(r, idx),
        }
    }

    /// Whether the column holds exactly the text `expected`, compared where it lies (no
    /// copy): for a reader that meets the same value on many rows.
    pub(crate) fn text_is(&self, idx: usize, expected: &str) -> Result<bool> {
        match self {
            Row::Sqlite(r) => Ok(matches!(
                r.get_ref(idx).map_err(sqlite::from_sqlite)?,
                rusqlite::types::ValueRef::Text(text) if text == expected.as_bytes()
            )),
            #[cfg(feature = "postgres")]
            Row::Postgres(r) => postgres::text_is(r, idx, expected),
        }
    }

    /// `f` of the column's text, read where it lies (no copy).
    pub(crate) fn text_with<R>(&self, idx: usize, f: impl FnOnce(&str) -> R) -> Result<R> {
        match self {
            Row::Sqlite(r) => match r.get_ref(idx).map_err(sqlite::from_sqlite)? {
                rusqlite::types::ValueRef::Text(text) => std::str::from_utf8(text)
                    .map(f)
                    .map_err(|_| Error::Database(format!("column {idx} is not valid UTF-8"))),
                _ => Err(Error::Database(format!("column {idx} holds no text"))),
            },
            #[cfg(feature = "postgres")]
            Row::Postgres(r) => postgres::text_with(r, idx, f),
        }
    }

    /// The column as whatever it holds, for readers that pass values through (export).
    pub(crate) fn value(&self, idx: usize) -> Result<OwnedValue> {
        self.get(idx)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lists_go_in_full_statements_then_powers_of_two() {
        let sizes = |n, most| super::list_sizes(n, most).collect::<Vec<_>>();
        assert_eq!(sizes(0, 250), Vec::<usize>::new());
        assert_eq!(sizes(1, 250), [1]);
        assert_eq!(sizes(31, 250), [16, 8, 4, 2, 1]);
        assert_eq!(sizes(600, 250), [250, 250, 64, 32, 4]);
        assert_eq!(sizes(7, 3), [3, 3, 1]);
    }
}
