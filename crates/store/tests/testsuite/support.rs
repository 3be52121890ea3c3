//! What the store's tests share: the shipped plans, the instant they pretend it is, and reads
//! of the database behind the library's back.

use std::path::{Path, PathBuf};

use rusqlite::types::ValueRef;

/// The instant the tests pretend it is.
pub const NOW: &str = "2026-11-27T18:00:00Z";

/// The plans.toml shipped at the repository root.
pub fn repo_plans() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plans.toml")
}

/// Every row of every meterline table, as text, in a stable order.
#[derive(Debug, PartialEq, Eq)]
pub struct Dump(Vec<(String, Vec<String>)>);

const TABLES: [&str; 4] = [
    "customers",
    "usage_events",
    "usage_records",
    "usage_members",
];

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
