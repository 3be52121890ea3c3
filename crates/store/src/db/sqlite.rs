//! The SQLite side of [`super::Connection`]: rusqlite takes the parameters as they are.

use super::Param;

pub(super) mod ops;

/// The parameters in the form rusqlite binds.
pub(super) fn bind<'a>(params: &'a [&'a dyn Param]) -> impl rusqlite::Params + 'a {
    rusqlite::params_from_iter(params.iter().copied())
}

/// A statement without parameters or rows (`BEGIN`, `COMMIT`, `ROLLBACK`), from the
/// statement cache: run on every transaction, so parsed once.
pub(super) fn run_cached(conn: &rusqlite::Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}
