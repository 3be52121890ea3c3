//! Plain-SQL reads of a test database on either engine, without going through the code under
//! test: the SQLite file with rusqlite, a PostgreSQL database with psql. Shared by the main
//! suite (tests/testsuite/support) and the store's (crates/store/tests), both mounting it as
//! `support::inspect` beside their `support::postgres` and `support::common`.

use std::path::Path;

use super::common::{Dump, TABLES, dump};

/// Reads a test database with plain SQL.
pub struct Inspect<'a> {
    db: &'a Path,
}

impl Inspect<'_> {
    /// The database at `db`: a file, or a `postgres://` URL on the test server.
    pub fn of(db: &Path) -> Inspect<'_> {
        Inspect { db }
    }

    /// Every row of every meterline table ([`Dump`]), in a stable order.
    pub fn dump(&self) -> Dump {
        let db = self.db.to_string_lossy();
        if !meterline_store::is_postgres_url(&db) {
            return dump(&rusqlite::Connection::open(self.db).expect("open the test database"));
        }
        Dump(
            TABLES
                .iter()
                .map(|table| {
                    let rows = self
                        .rows(&format!("SELECT * FROM {table} ORDER BY 1, 2, 3"))
                        .into_iter()
                        .map(|r| r.join("|"))
                        .collect();
                    (table.to_string(), rows)
                })
                .collect(),
        )
    }

    /// Every row of `sql`, each column as text (NULL as "").
    pub fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        let db = self.db.to_string_lossy();
        if meterline_store::is_postgres_url(&db) {
            return super::postgres::psql(&db, sql)
                .lines()
                .filter(|l| !l.is_empty())
                .map(|l| l.split('|').map(str::to_owned).collect())
                .collect();
        }
        let conn = rusqlite::Connection::open(self.db).expect("open the test database");
        let mut stmt = conn.prepare(sql).expect("prepare");
        let columns = stmt.column_count();
        stmt.query_map([], |r| {
            (0..columns)
                .map(|i| {
                    Ok(match r.get_ref(i)? {
                        rusqlite::types::ValueRef::Null => String::new(),
                        rusqlite::types::ValueRef::Integer(n) => n.to_string(),
                        rusqlite::types::ValueRef::Real(x) => x.to_string(),
                        rusqlite::types::ValueRef::Text(t) => {
                            String::from_utf8_lossy(t).into_owned()
                        }
                        rusqlite::types::ValueRef::Blob(b) => format!("{b:?}"),
                    })
                })
                .collect::<rusqlite::Result<Vec<String>>>()
        })
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows")
    }

    /// Change the database behind meterline's back (a test setting up a state no command
    /// makes): `sql` runs as one statement.
    pub fn exec(&self, sql: &str) {
        let db = self.db.to_string_lossy();
        if meterline_store::is_postgres_url(&db) {
            super::postgres::psql(&db, sql);
            return;
        }
        rusqlite::Connection::open(self.db)
            .expect("open the test database")
            .execute_batch(sql)
            .expect("execute");
    }

    /// The one integer `sql` answers (write `CAST(SUM(x) AS BIGINT)`: Postgres sums to NUMERIC).
    pub fn number(&self, sql: &str) -> i64 {
        let rows = self.rows(sql);
        let cell = rows
            .first()
            .and_then(|r| r.first())
            .unwrap_or_else(|| panic!("no row from {sql}"));
        cell.parse()
            .unwrap_or_else(|_| panic!("{sql} answered {cell:?}"))
    }

    /// Units on `customer`'s counter for the period starting at `period_start`.
    pub fn used_in(&self, customer: &str, period_start: &str) -> i64 {
        self.number(&format!(
            "SELECT CAST(COALESCE(SUM(used), 0) AS BIGINT) FROM usage_records
             WHERE customer_id = '{customer}' AND period_start = '{period_start}'"
        ))
    }

    /// How many events carry idempotency `key` (0 or 1).
    pub fn events_with_key(&self, key: &str) -> i64 {
        self.number(&format!(
            "SELECT COUNT(*) FROM usage_events WHERE idempotency_key = '{key}'"
        ))
    }

    /// How many events `customer` has, and their units.
    pub fn events_of(&self, customer: &str) -> (i64, i64) {
        let rows = self.rows(&format!(
            "SELECT COUNT(*), CAST(COALESCE(SUM(quantity), 0) AS BIGINT) FROM usage_events
             WHERE customer_id = '{customer}'"
        ));
        (rows[0][0].parse().unwrap(), rows[0][1].parse().unwrap())
    }

    /// Counters that disagree with the events they count, and events no counter counts: both
    /// must be 0.
    pub fn counters_disagreeing_with_events(&self) -> i64 {
        self.number(
            "SELECT (SELECT COUNT(*) FROM usage_records r
                     WHERE r.used != (SELECT COALESCE(SUM(e.quantity), 0) FROM usage_events e
                                      WHERE e.customer_id = r.customer_id
                                        AND e.period_start = r.period_start
                                        AND e.meter_id = 'usage'))
                  + (SELECT COUNT(*) FROM usage_events e WHERE e.meter_id = 'usage' AND NOT EXISTS
                     (SELECT 1 FROM usage_records r
                      WHERE r.customer_id = e.customer_id AND r.period_start = e.period_start))",
        )
    }
}
