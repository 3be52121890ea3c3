//! `window_buckets`: a limited meter's usage at each second, minute, hour and day. The only
//! SQL of the windows.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use crate::Result;
use crate::billing::window::{SPANS, cover};
use crate::db::{Connection, OptionalExtension, Param, params};

/// Bucket rows written by one upsert (five parameters each).
const ROWS_PER_UPSERT: usize = 128;

/// The most ranges `cover` gives: two of each size but the largest.
const RANGES: usize = 2 * SPANS.len() - 1;

/// The units in [from, to): the buckets `cover` names, each range an index lookup of its own
/// (UNION ALL, so neither engine scans the customer's other buckets). Always `RANGES`
/// ranges, the unused empty, so there is one statement text.
pub(super) fn sum(
    conn: &Connection,
    customer: &str,
    meter: &str,
    from: i64,
    to: i64,
) -> Result<i64> {
    let mut bounds: Vec<i64> = cover(from, to)
        .iter()
        .flat_map(|r| [r.span, r.from, r.to])
        .collect();
    bounds.resize(3 * RANGES, 0);
    let mut values: Vec<&dyn Param> = vec![&customer, &meter];
    values.extend(bounds.iter().map(|b| b as &dyn Param));
    conn.prepare_cached(sum_text())?
        .query_row(values.as_slice(), |r| r.get(0))
}

fn sum_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let ranges: Vec<String> = (0..RANGES)
            .map(|i| {
                format!(
                    "SELECT units FROM window_buckets WHERE customer_id = ?1 AND meter_id = ?2
                     AND span = ?{} AND start >= ?{} AND start < ?{}",
                    3 + 3 * i,
                    4 + 3 * i,
                    5 + 3 * i
                )
            })
            .collect();
        format!(
            "SELECT COALESCE(SUM(units), 0) FROM ({}) AS covered",
            ranges.join(" UNION ALL ")
        )
    })
}

const SECONDS: &str = "SELECT start, units FROM window_buckets
     WHERE customer_id = ?1 AND meter_id = ?2 AND span = 1 AND start >= ?3 AND start < ?4
     ORDER BY start";

const FIRST: &str = "SELECT start, units FROM window_buckets
     WHERE customer_id = ?1 AND meter_id = ?2 AND span = 1 AND start >= ?3 AND start < ?4
     ORDER BY start LIMIT 1";

const LATEST: &str = "SELECT MAX(start) FROM window_buckets
     WHERE customer_id = ?1 AND meter_id = ?2 AND span = 1";

/// The units at each second in [from, to), in order.
pub(super) fn seconds(
    conn: &Connection,
    customer: &str,
    meter: &str,
    from: i64,
    to: i64,
) -> Result<Vec<(i64, i64)>> {
    conn.prepare_cached(SECONDS)?
        .query_map(params![customer, meter, from, to], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect()
}

/// The first second with usage in [from, to), and its units.
pub(super) fn first(
    conn: &Connection,
    customer: &str,
    meter: &str,
    from: i64,
    to: i64,
) -> Result<Option<(i64, i64)>> {
    conn.prepare_cached(FIRST)?
        .query_row(params![customer, meter, from, to], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
}

/// The last second with usage.
pub(super) fn latest(conn: &Connection, customer: &str, meter: &str) -> Result<Option<i64>> {
    conn.prepare_cached(LATEST)?
        .query_row(params![customer, meter], |r| r.get(0))
}

/// Drop the seconds and minutes of `customer`'s `meter` before `before`: what no window
/// decided from now on reads (`windows::kept_from`). Hours and days stay: a few rows a day.
pub(super) fn prune(conn: &Connection, customer: &str, meter: &str, before: i64) -> Result<()> {
    conn.prepare_cached(
        "DELETE FROM window_buckets
         WHERE customer_id = ?1 AND meter_id = ?2 AND span IN (1, 60) AND start < ?3",
    )?
    .execute(params![customer, meter, before])?;
    Ok(())
}

/// Add `added` (customer × meter -> units at each second) to the buckets of every size.
pub(super) fn add_all(
    conn: &Connection,
    added: HashMap<(String, String), BTreeMap<i64, i64>>,
) -> Result<()> {
    let mut rows: BTreeMap<(&str, &str, i64, i64), i64> = BTreeMap::new();
    for ((customer, meter), points) in &added {
        for (&at, &units) in points {
            for span in SPANS {
                let start = at.div_euclid(span).saturating_mul(span);
                let sum = rows.entry((customer, meter, span, start)).or_default();
                *sum = sum.saturating_add(units);
            }
        }
    }
    let rows: Vec<_> = rows.into_iter().collect();
    for chunk in rows.chunks(ROWS_PER_UPSERT) {
        let mut values: Vec<&dyn Param> = Vec::with_capacity(chunk.len() * 5);
        for ((customer, meter, span, start), units) in chunk {
            values.extend_from_slice(&[customer as &dyn Param, meter, span, start, units]);
        }
        let sql = format!(
            "INSERT INTO window_buckets (customer_id, meter_id, span, start, units) VALUES {}
             ON CONFLICT (customer_id, meter_id, span, start)
             DO UPDATE SET units = window_buckets.units + excluded.units",
            vec!["(?,?,?,?,?)"; chunk.len()].join(",")
        );
        conn.prepare_cached(&sql)?.execute(values.as_slice())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rusqlite::StatementStatus;

    /// SQLite (bundled, with STAT4) prepares some statements again on every run when a bound
    /// range changes, unless the connection keeps its plans (QPSG, as the store opens it); a
    /// window's reads run on every check and record, so none may.
    #[test]
    fn no_read_is_prepared_again_when_its_range_moves() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )
        .unwrap();
        conn.execute_batch(
            "CREATE TABLE customers (id TEXT PRIMARY KEY);
             INSERT INTO customers VALUES ('c');",
        )
        .unwrap();
        let migration = include_str!("../../migrations/sqlite/0019_window_limits.sql");
        let create = &migration[..migration.find("ALTER TABLE").unwrap()];
        conn.execute_batch(create).unwrap();
        for at in 0..5_000 {
            for span in super::SPANS {
                conn.execute(
                    "INSERT INTO window_buckets VALUES ('c', 'm', ?1, ?2, 1)
                     ON CONFLICT DO UPDATE SET units = units + 1",
                    rusqlite::params![span, at / span * span],
                )
                .unwrap();
            }
        }
        let statements: [(&str, usize); 4] = [
            (super::sum_text(), 3 * super::RANGES),
            (super::SECONDS, 2),
            (super::FIRST, 2),
            (super::LATEST, 0),
        ];
        for (text, bounds) in statements {
            let mut statement = conn.prepare(text).unwrap();
            for run in 0..20_i64 {
                let mut values: Vec<Box<dyn rusqlite::ToSql>> = vec![Box::new("c"), Box::new("m")];
                values.extend((0..bounds as i64).map(|i| Box::new(run * 97 + i * 13) as _));
                let mut rows = statement
                    .query(rusqlite::params_from_iter(values.iter()))
                    .unwrap();
                while rows.next().unwrap().is_some() {}
            }
            assert_eq!(
                statement.get_status(StatementStatus::RePrepare),
                0,
                "prepared again on each run: {text}"
            );
        }
    }
}
