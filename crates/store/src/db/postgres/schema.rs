//! The PostgreSQL schema: the files of `migrations/postgres/` (`db::migrations`), each applied
//! once and recorded in `meterline_migrations` with its checksum, so a file changed after it
//! ran is noticed instead of silently diverging. Files 1-6 were PostgreSQL's own numbering (1
//! is the whole schema SQLite reaches at its version 10, 2 SQLite's 11, 6 SQLite's 12; 3-5
//! have no SQLite counterpart); from 13 on the numbers are SQLite's too.

use super::PgConnection;
use crate::db::migrations::{POSTGRES as MIGRATIONS, SCHEMA_VERSION, checksum};
use crate::{Error, OpenOptions, Result};

/// The oldest server meterline runs on (`server_version_num`): 13 is the oldest PostgreSQL
/// its maintainers still supported when this was written, and has everything the SQL uses.
const OLDEST_SERVER: i64 = 130_000;

/// Serialises schema changes of processes starting at once.
const MIGRATION_LOCK: i64 = 0x6d65_7465_726c_0002;

/// meterline's own bookkeeping, made before the first migration.
const BOOKKEEPING: &str = "
    CREATE TABLE IF NOT EXISTS meterline_migrations (
        version    BIGINT PRIMARY KEY,
        name       TEXT NOT NULL,
        checksum   TEXT NOT NULL,
        applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    -- Bumped by every write transaction: what a live view polls instead of the tables.
    CREATE TABLE IF NOT EXISTS meterline_changes (n BIGINT NOT NULL);
    INSERT INTO meterline_changes SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM meterline_changes);
";

enum Owner {
    Empty,
    Meterline,
    Foreign,
}

/// Check the server and whose database it is, then create, migrate or only check the schema
/// as `options` say.
pub(crate) fn prepare(conn: &PgConnection, options: OpenOptions) -> Result<()> {
    let version = server_version(conn)?;
    if version < OLDEST_SERVER {
        return Err(Error::UnsupportedServer(format!(
            "{} runs PostgreSQL {}, older than {}, the oldest meterline supports; upgrade the server",
            conn.url().shown(),
            shown_version(version),
            shown_version(OLDEST_SERVER)
        )));
    }
    match owner(conn)? {
        Owner::Foreign => return Err(Error::ForeignServerDatabase),
        Owner::Empty if !options.create => return Err(Error::NoDatabase),
        Owner::Meterline if !options.migrate => return check_current(conn),
        Owner::Empty | Owner::Meterline => migrate(conn)?,
    }
    conn.counts_changes.set(true);
    Ok(())
}

fn server_version(conn: &PgConnection) -> Result<i64> {
    let text: String = conn
        .statement("SELECT current_setting('server_version_num')")
        .query(&[])?
        .first()
        .map(|r| super::text(r, 0))
        .transpose()?
        .unwrap_or_default();
    text.parse()
        .map_err(|_| Error::Database(format!("unreadable server version \"{text}\"")))
}

/// `150004` as `15.4`; before 10, three parts: `90624` as `9.6.24`.
fn shown_version(num: i64) -> String {
    if num < 100_000 {
        format!("{}.{}.{}", num / 10_000, num / 100 % 100, num % 100)
    } else {
        format!("{}.{}", num / 10_000, num % 10_000)
    }
}

fn owner(conn: &PgConnection) -> Result<Owner> {
    let rows = conn
        .statement(
            "SELECT to_regclass('meterline_migrations') IS NOT NULL,
                    (SELECT count(*) FROM pg_tables WHERE schemaname = current_schema())",
        )
        .query(&[])?;
    let Some(row) = rows.first() else {
        return Err(Error::NoRows);
    };
    let (ours, tables) = (super::integer(row, 0)? != 0, super::integer(row, 1)?);
    Ok(if ours {
        Owner::Meterline
    } else if tables == 0 {
        Owner::Empty
    } else {
        Owner::Foreign
    })
}

/// The applied migrations, after checking each against this build's file.
fn applied(conn: &PgConnection) -> Result<i64> {
    let rows = conn
        .statement("SELECT version, name, checksum FROM meterline_migrations ORDER BY version")
        .query(&[])?;
    let mut found = 0;
    for row in &rows {
        let version = super::integer(row, 0)?;
        let name = super::text(row, 1)?;
        let sum = super::text(row, 2)?;
        found = found.max(version);
        let Some(ours) = MIGRATIONS.iter().find(|m| m.version == version) else {
            continue; // newer than this build: refused below
        };
        if checksum(ours.sql) != sum {
            return Err(Error::Database(format!(
                "migration {version} ({name}) in the database differs from this meterline's \
                 (checksum {sum}); the schema was changed by hand or by another build"
            )));
        }
    }
    if found > SCHEMA_VERSION {
        return Err(Error::NewerSchema {
            found,
            known: SCHEMA_VERSION,
        });
    }
    Ok(found)
}

fn check_current(conn: &PgConnection) -> Result<()> {
    let found = applied(conn)?;
    if found < SCHEMA_VERSION {
        return Err(Error::OlderSchema {
            found,
            known: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// A database exactly as an older meterline left it: migrations 1..=`version` only, for
/// tests of upgrades (`crate::create_postgres_at_version`).
pub(crate) fn create_at_version(conn: &PgConnection, version: i64) -> Result<()> {
    migrate_to(conn, version)
}

fn migrate(conn: &PgConnection) -> Result<()> {
    migrate_to(conn, SCHEMA_VERSION)
}

fn migrate_to(conn: &PgConnection, version: i64) -> Result<()> {
    conn.open_transaction(&format!(
        "BEGIN; SELECT pg_advisory_xact_lock({MIGRATION_LOCK}); {BOOKKEEPING}"
    ))?;
    let result =
        (|| {
            // Read under the lock: another process may have migrated meanwhile.
            let found = applied(conn)?;
            for migration in MIGRATIONS
                .iter()
                .filter(|m| m.version > found && m.version <= version)
            {
                conn.batch_execute(migration.sql)?;
                conn.statement(
                "INSERT INTO meterline_migrations (version, name, checksum) VALUES (?1, ?2, ?3)",
            )
            .execute(&[&migration.version, &migration.name, &checksum(migration.sql)])?;
            }
            Ok(())
        })();
    match result {
        Ok(()) => conn.batch_execute("COMMIT"),
        Err(e) => {
            let _ = conn.batch_execute("ROLLBACK");
            Err(e)
        }
    }
}

/// The schema version the database is at.
pub(crate) fn version(conn: &PgConnection) -> Result<i64> {
    let rows = conn
        .statement("SELECT COALESCE(MAX(version), 0) FROM meterline_migrations")
        .query(&[])?;
    rows.first().map_or(Ok(0), |r| super::integer(r, 0))
}

/// The change counter (see `BOOKKEEPING`).
pub(crate) fn changes(conn: &PgConnection) -> Result<i64> {
    let rows = conn
        .statement("SELECT n FROM meterline_changes")
        .query(&[])?;
    rows.first().map_or(Ok(0), |r| super::integer(r, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_show_as_the_server_names_them() {
        assert_eq!(shown_version(150_004), "15.4");
        assert_eq!(shown_version(130_000), "13.0");
        assert_eq!(shown_version(120_022), "12.22");
        assert_eq!(shown_version(90_624), "9.6.24");
        assert_eq!(shown_version(80_423), "8.4.23");
    }
}
