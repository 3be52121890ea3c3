//! `window_buckets`: a limited meter's usage in each minute, hour and day, a minute's row with
//! its units at each second (`seconds`, "s:units,…"). The only SQL of the windows.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use crate::billing::window::{MINUTE, SPANS, stretch};
use crate::db::{Connection, Param, in_lists, params};
use crate::{Error, Result};

/// Bucket rows written by one upsert (six parameters each).
const ROWS_PER_UPSERT: usize = 96;

/// The most whole ranges `stretch` gives: two of each size but the largest.
const RANGES: usize = 2 * SPANS.len() - 1;

/// Units at each second.
type Seconds = BTreeMap<i64, i64>;

/// The units in [from, to): the whole buckets `stretch` names, each range an index lookup of
/// its own (UNION ALL, so neither engine scans the customer's other buckets; always `RANGES`
/// ranges, the unused empty, so there is one statement text), and the seconds of the
/// minutes it cuts at its ends.
pub(super) fn sum(
    conn: &Connection,
    customer: &str,
    meter: &str,
    from: i64,
    to: i64,
) -> Result<i64> {
    let stretch = stretch(from, to);
    let mut bounds: Vec<i64> = stretch
        .whole
        .iter()
        .flat_map(|r| [r.span, r.from, r.to])
        .collect();
    bounds.resize(3 * RANGES, 0);
    let mut values: Vec<&dyn Param> = vec![&customer, &meter];
    values.extend(bounds.iter().map(|b| b as &dyn Param));
    let whole: i64 = if stretch.whole.is_empty() {
        0
    } else {
        conn.prepare_cached(sum_text())?
            .query_row(values.as_slice(), |r| r.get(0))?
    };
    let cut_rows = match stretch.partial.as_slice() {
        [] => Vec::new(),
        [one] => minute_rows(CUT, conn, params![customer, meter, one.0, one.0])?,
        [first, last, ..] => minute_rows(CUT, conn, params![customer, meter, first.0, last.0])?,
    };
    let mut cut: i64 = 0;
    for (minute, text) in &cut_rows {
        for &(_, from, to) in stretch.partial.iter().filter(|p| p.0 == *minute) {
            for part in parts(*minute, text) {
                let (at, units) = part?;
                if (from..to).contains(&at) {
                    cut = cut.saturating_add(units);
                }
            }
        }
    }
    Ok(whole.saturating_add(cut))
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

/// The (at most two) minutes a stretch cuts at its ends.
const CUT: &str = "SELECT start, seconds FROM window_buckets
     WHERE customer_id = ?1 AND meter_id = ?2 AND span = 60 AND start IN (?3, ?4)";

const MINUTES_FROM: &str = "SELECT start, seconds FROM window_buckets
     WHERE customer_id = ?1 AND meter_id = ?2 AND span = 60 AND start >= ?3 AND start < ?4
     ORDER BY start";

const FIRST_MINUTES: &str = "SELECT start, seconds FROM window_buckets
     WHERE customer_id = ?1 AND meter_id = ?2 AND span = 60 AND start >= ?3 AND start < ?4
     ORDER BY start LIMIT 2";

const LAST_MINUTE: &str = "SELECT start, seconds FROM window_buckets
     WHERE customer_id = ?1 AND meter_id = ?2 AND span = 60 ORDER BY start DESC LIMIT 1";

/// A minute row's seconds in order, as absolute seconds and their units.
fn parts(minute: i64, text: &str) -> impl Iterator<Item = Result<(i64, i64)>> + '_ {
    text.split(',').filter(|p| !p.is_empty()).map(move |part| {
        let bad = || {
            Error::Database(format!(
                "window_buckets.seconds of minute {minute} is unreadable"
            ))
        };
        let (at, units) = part.split_once(':').ok_or_else(bad)?;
        let at: i64 = at.parse().map_err(|_| bad())?;
        let units: i64 = units.parse().map_err(|_| bad())?;
        if !(0..MINUTE).contains(&at) {
            return Err(bad());
        }
        Ok((minute.saturating_add(at), units))
    })
}

fn parse_seconds(minute: i64, text: Option<&str>) -> Result<Seconds> {
    parts(minute, text.unwrap_or_default()).collect()
}

/// A minute's seconds as its row keeps them.
fn seconds_text(minute: i64, seconds: &Seconds) -> String {
    let parts: Vec<String> = seconds
        .iter()
        .filter(|(_, units)| **units != 0)
        .map(|(at, units)| format!("{}:{units}", at.saturating_sub(minute)))
        .collect();
    parts.join(",")
}

/// Minute rows as stored: the minute and its seconds' text.
fn minute_rows(
    statement: &str,
    conn: &Connection,
    values: &[&dyn Param],
) -> Result<Vec<(i64, String)>> {
    let rows: Vec<(i64, Option<String>)> = conn
        .prepare_cached(statement)?
        .query_map(values, |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_>>()?;
    Ok(rows
        .into_iter()
        .map(|(minute, text)| (minute, text.unwrap_or_default()))
        .collect())
}

/// The stored seconds of the given minutes.
fn minutes_of(
    conn: &Connection,
    customer: &str,
    meter: &str,
    minutes: &[i64],
) -> Result<HashMap<i64, Seconds>> {
    let mut found = HashMap::new();
    for (list, minute_params) in in_lists(minutes) {
        let statement = format!(
            "SELECT start, seconds FROM window_buckets
             WHERE customer_id = ? AND meter_id = ? AND span = 60 AND start IN ({list})"
        );
        let mut values: Vec<&dyn Param> = vec![&customer, &meter];
        values.extend(minute_params);
        for (minute, text) in minute_rows(&statement, conn, &values)? {
            found.insert(minute, parse_seconds(minute, Some(&text))?);
        }
    }
    Ok(found)
}

/// The units at each second in [from, to), in order.
pub(super) fn seconds(
    conn: &Connection,
    customer: &str,
    meter: &str,
    from: i64,
    to: i64,
) -> Result<Vec<(i64, i64)>> {
    let first_minute = from.div_euclid(MINUTE).saturating_mul(MINUTE);
    let rows = minute_rows(
        MINUTES_FROM,
        conn,
        params![customer, meter, first_minute, to],
    )?;
    let mut seconds = Vec::new();
    for (minute, text) in &rows {
        for part in parts(*minute, text) {
            let (at, units) = part?;
            if (from..to).contains(&at) {
                seconds.push((at, units));
            }
        }
    }
    Ok(seconds)
}

/// The first second with usage in [from, to), and its units. Two minutes are enough: every
/// stored minute has a second with usage, and only the first can have them all before `from`.
pub(super) fn first(
    conn: &Connection,
    customer: &str,
    meter: &str,
    from: i64,
    to: i64,
) -> Result<Option<(i64, i64)>> {
    let first_minute = from.div_euclid(MINUTE).saturating_mul(MINUTE);
    let rows = minute_rows(
        FIRST_MINUTES,
        conn,
        params![customer, meter, first_minute, to],
    )?;
    for (minute, text) in &rows {
        for part in parts(*minute, text) {
            let (at, units) = part?;
            if (from..to).contains(&at) {
                return Ok(Some((at, units)));
            }
        }
    }
    Ok(None)
}

/// The last second with usage.
pub(super) fn latest(conn: &Connection, customer: &str, meter: &str) -> Result<Option<i64>> {
    let rows = minute_rows(LAST_MINUTE, conn, params![customer, meter])?;
    let mut latest = None;
    for (minute, text) in &rows {
        for part in parts(*minute, text) {
            latest = latest.max(Some(part?.0));
        }
    }
    Ok(latest)
}

/// Drop the minutes (with their seconds) of `customer`'s `meter` before `before`: what no
/// window decided from now on reads (`windows::kept_from`). Hours and days stay: a few rows a
/// day.
pub(super) fn prune(conn: &Connection, customer: &str, meter: &str, before: i64) -> Result<()> {
    conn.prepare_cached(
        "DELETE FROM window_buckets
         WHERE customer_id = ?1 AND meter_id = ?2 AND span = 60 AND start < ?3",
    )?
    .execute(params![customer, meter, before])?;
    Ok(())
}

/// One bucket row to write: its key, its units, and a minute's seconds.
struct NewRow<'a> {
    customer: &'a str,
    meter: &'a str,
    span: i64,
    start: i64,
    /// A minute's: its whole units (what was stored, merged); an hour's or a day's: what to
    /// add to it.
    units: i64,
    seconds: Option<String>,
}

/// Add `added` (customer × meter -> units at each second) to the buckets of every size: a
/// minute's row is read, merged and written whole (the batch holds the write lock), hours and
/// days are added to.
pub(super) fn add_all(
    conn: &Connection,
    added: HashMap<(String, String), BTreeMap<i64, i64>>,
) -> Result<()> {
    let mut rows: Vec<NewRow> = Vec::new();
    for ((customer, meter), points) in &added {
        let mut minutes: BTreeMap<i64, Seconds> = BTreeMap::new();
        let mut larger: BTreeMap<(i64, i64), i64> = BTreeMap::new();
        for (&at, &units) in points {
            let minute = at.div_euclid(MINUTE).saturating_mul(MINUTE);
            let second = minutes.entry(minute).or_default().entry(at).or_default();
            *second = second.saturating_add(units);
            for &span in &SPANS[1..] {
                let start = at.div_euclid(span).saturating_mul(span);
                let sum = larger.entry((span, start)).or_default();
                *sum = sum.saturating_add(units);
            }
        }
        let keys: Vec<i64> = minutes.keys().copied().collect();
        let stored = minutes_of(conn, customer, meter, &keys)?;
        for (minute, mut seconds) in minutes {
            for (at, units) in stored.get(&minute).into_iter().flatten() {
                let sum = seconds.entry(*at).or_default();
                *sum = sum.saturating_add(*units);
            }
            rows.push(NewRow {
                customer,
                meter,
                span: MINUTE,
                start: minute,
                units: seconds.values().fold(0, |a, u| a.saturating_add(*u)),
                seconds: Some(seconds_text(minute, &seconds)),
            });
        }
        rows.extend(larger.into_iter().map(|((span, start), units)| NewRow {
            customer,
            meter,
            span,
            start,
            units,
            seconds: None,
        }));
    }
    for chunk in rows.chunks(ROWS_PER_UPSERT) {
        let mut values: Vec<&dyn Param> = Vec::with_capacity(chunk.len() * 6);
        for row in chunk {
            values.extend_from_slice(&[
                &row.customer as &dyn Param,
                &row.meter,
                &row.span,
                &row.start,
                &row.units,
                &row.seconds,
            ]);
        }
        // A minute's row is written whole; an hour's or a day's is added to.
        let sql = format!(
            "INSERT INTO window_buckets (customer_id, meter_id, span, start, units, seconds)
             VALUES {}
             ON CONFLICT (customer_id, meter_id, span, start) DO UPDATE SET
                 units = CASE WHEN excluded.span = 60 THEN excluded.units
                              ELSE window_buckets.units + excluded.units END,
                 seconds = excluded.seconds",
            vec!["(?,?,?,?,?,?)"; chunk.len()].join(",")
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
                    "INSERT INTO window_buckets VALUES ('c', 'm', ?1, ?2, 1, '0:1')
                     ON CONFLICT DO UPDATE SET units = units + 1",
                    rusqlite::params![span, at / span * span],
                )
                .unwrap();
            }
        }
        let statements: [(&str, usize); 5] = [
            (super::sum_text(), 3 * super::RANGES),
            (super::CUT, 2),
            (super::MINUTES_FROM, 2),
            (super::FIRST_MINUTES, 2),
            (super::LAST_MINUTE, 0),
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

    #[test]
    fn a_minutes_seconds_read_back_as_written() {
        let minute = 1_796_601_600;
        let seconds = super::Seconds::from([(minute, 3), (minute + 59, 7)]);
        let text = super::seconds_text(minute, &seconds);
        assert_eq!(text, "0:3,59:7");
        assert_eq!(super::parse_seconds(minute, Some(&text)).unwrap(), seconds);
        assert!(super::parse_seconds(minute, Some("60:1")).is_err());
        assert!(super::parse_seconds(minute, Some("x")).is_err());
    }
}
