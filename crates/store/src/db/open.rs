//! Opening a [`Connection`] on the engine its name says, and the schema bookkeeping every
//! engine keeps its own way (`sqlite/schema.rs`, `postgres/schema.rs`).

use std::path::Path;

use super::{Connection, sqlite};
use crate::{OpenOptions, Result};

impl Connection {
    /// Open the database `db` names (a file path, or a `postgres://` URL) as `options` say.
    pub(crate) fn open(db: &Path, options: OpenOptions) -> Result<Connection> {
        match db.to_str().filter(|d| crate::is_postgres_url(d)) {
            Some(url) => open_postgres(url, options),
            None => Ok(Connection::Sqlite(sqlite::open(db, options)?)),
        }
    }

    /// A private in-memory SQLite database.
    pub(crate) fn open_in_memory() -> Result<Connection> {
        Ok(Connection::Sqlite(sqlite::open_in_memory()?))
    }

    /// The schema version the database is at: the number of the last migration it ran.
    pub(crate) fn schema_version(&self) -> Result<i64> {
        match self {
            Connection::Sqlite(c) => sqlite::schema::version(c),
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => super::postgres::schema::version(c),
        }
    }

    /// Changes whenever another connection commits (SQLite's `PRAGMA data_version`; on
    /// PostgreSQL a counter every write transaction bumps).
    pub(crate) fn data_version(&self) -> Result<i64> {
        match self {
            Connection::Sqlite(c) => sqlite::schema::changes(c),
            #[cfg(feature = "postgres")]
            Connection::Postgres(c) => super::postgres::schema::changes(c),
        }
    }
}

#[cfg(feature = "postgres")]
fn open_postgres(url: &str, options: OpenOptions) -> Result<Connection> {
    use super::postgres::{PgConnection, PgUrl, schema};
    let lock_timeout_ms = options.busy_timeout.as_millis().max(1) as u64;
    let conn = PgConnection::connect(PgUrl::parse(url)?, lock_timeout_ms)?;
    schema::prepare(&conn, options)?;
    Ok(Connection::Postgres(Box::new(conn)))
}

#[cfg(not(feature = "postgres"))]
fn open_postgres(url: &str, _options: OpenOptions) -> Result<Connection> {
    Err(crate::Error::InvalidInput(format!(
        "{} is a PostgreSQL database, and this meterline was built without PostgreSQL \
         (the `postgres` feature of meterline-store)",
        crate::redact_db(url)
    )))
}
