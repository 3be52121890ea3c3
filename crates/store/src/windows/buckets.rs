//! `window_buckets`: a limited meter's usage in each minute, hour and day, a minute's row with
//! its units at each second (`seconds`, "s:units,…"). The only SQL of the windows.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::OnceLock;

use crate::billing::window::{MINUTE, SPANS, Stretch, stretch};
use crate::db::{Connection, Param, in_lists, params};
use crate::{Error, Result};

/// Bucket rows written by one upsert (six parameters each).
const ROWS_PER_UPSERT: usize = 96;

/// The most whole ranges `stretch` gives: two of each size but the largest.
const RANGES: usize = 2 * SPANS.len() - 1;

/// Units at each second.
pub(super) type Seconds = BTreeMap<i64, i64>;

/// A minute's start and its seconds.
pub(super) type Minute = (i64, Seconds);

/// One customer × meter's units to add, and its last stored minute when known (no minute
/// after it is stored, so no read is needed for it or later ones).
pub(super) struct Added<'a> {
    pub customer: &'a str,
    pub meter: &'a str,
    pub points: &'a Seconds,
    pub last_stored: Option<&'a Minute>,
}

/// What a batch's first read of a meter gives: the units of each stretch asked for, the last
/// stored minute (with its seconds) and the stored seconds of a range ahead.
#[derive(Default)]
pub(super) struct Read {
    pub sums: Vec<i64>,
    pub last_minute: Option<Minute>,
    pub ahead: Vec<(i64, i64)>,
}

/// The units in [from, to): the whole buckets `stretch` names (see `read`), then the seconds
/// of the minutes it cuts, only when it cuts one (a check reads each window on its own).
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
    let mut total: i64 = if stretch.whole.is_empty() {
        0
    } else {
        conn.prepare_cached(whole_text())?
            .query_row(values.as_slice(), |r| r.get(0))?
    };
    let cut_rows = match cut_minutes(&stretch) {
        None => Vec::new(),
        Some([first, last]) => minute_rows(CUT, conn, params![customer, meter, first, last])?,
    };
    for (minute, text) in &cut_rows {
        total = total.saturating_add(cut_units(&stretch, *minute, text)?);
    }
    Ok(total)
}

/// The sum of one stretch's whole buckets, its ranges bound from `?3`.
fn whole_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        format!(
            "SELECT COALESCE(SUM(units), 0) FROM ({}) AS covered",
            ranges(3, RANGES)
        )
    })
}

/// The (at most two) minutes a stretch cuts at its ends.
const CUT: &str = "SELECT start, seconds FROM window_buckets
     WHERE customer_id = ?1 AND meter_id = ?2 AND span = 60 AND start IN (?3, ?4)";

/// `count` ranges of whole buckets, their bounds bound from `?first`, each an index lookup of
/// its own (UNION ALL, so neither engine scans the customer's other buckets).
fn ranges(first: usize, count: usize) -> String {
    let ranges: Vec<String> = (0..count)
        .map(|i| {
            let at = first + 3 * i;
            format!(
                "SELECT units FROM window_buckets WHERE customer_id = ?1 AND meter_id = ?2
                 AND span = ?{at} AND start >= ?{} AND start < ?{}",
                at + 1,
                at + 2
            )
        })
        .collect();
    ranges.join(" UNION ALL ")
}

/// The units of each of `stretches` (one a window), the last stored minute, and the
/// stored seconds in `ahead` = [from, to), in order: all a batch first reads of a meter, in
/// one statement (one round trip on PostgreSQL).
///
/// A stretch adds up from the whole buckets `stretch` names (`ranges`) and the seconds of
/// the minutes it cuts at its ends.
pub(super) fn read(
    conn: &Connection,
    customer: &str,
    meter: &str,
    stretches: &[(i64, i64)],
    ahead: (i64, i64),
) -> Result<Read> {
    let stretches: Vec<Stretch> = stretches.iter().map(|&(f, t)| stretch(f, t)).collect();
    let (text, values) = read_statement(&stretches, ahead);
    let (ahead_from, ahead_to) = ahead;
    let mut params: Vec<&dyn Param> = vec![&customer, &meter];
    params.extend(values.iter().map(|v| v as &dyn Param));
    type Row = (i64, Option<i64>, i64, Option<String>);
    let rows: Vec<Row> = conn
        .prepare_cached(&text)?
        .query_map(params.as_slice(), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<Result<_>>()?;
    let mut read = Read {
        sums: vec![0; stretches.len()],
        ..Read::default()
    };
    for (tag, start, units, text) in rows {
        let text = text.unwrap_or_default();
        match (tag, start) {
            (LAST, Some(minute)) => {
                read.last_minute = Some((minute, parse_seconds(minute, Some(&text))?));
            }
            (AHEAD, Some(minute)) => {
                for part in parts_in(minute, &text, ahead_from..ahead_to) {
                    read.ahead.push(part?);
                }
            }
            (k, start) => {
                let k = usize::try_from(k).ok().filter(|k| *k < stretches.len());
                let Some(k) = k else {
                    return Err(Error::Database(format!("window read: a row tagged {tag}")));
                };
                let units = match start {
                    None => units,
                    Some(minute) => cut_units(&stretches[k], minute, &text)?,
                };
                read.sums[k] = read.sums[k].saturating_add(units);
            }
        }
    }
    read.ahead.sort_unstable();
    Ok(read)
}

/// The units of the seconds `stretch` takes of a minute it cuts.
fn cut_units(stretch: &Stretch, minute: i64, text: &str) -> Result<i64> {
    let mut units: i64 = 0;
    for &(_, from, to) in stretch.partial.iter().filter(|p| p.0 == minute) {
        for part in parts_in(minute, text, from..to) {
            units = units.saturating_add(part?.1);
        }
    }
    Ok(units)
}

/// The tags of a read's rows that are not a stretch's (those are its index).
const LAST: i64 = -1;
const AHEAD: i64 = -2;

/// The minutes of a table's rows: a minute's bucket of `?1`'s meter `?2`.
const MINUTES: &str = "FROM window_buckets WHERE customer_id = ?1 AND meter_id = ?2 AND span = 60";

/// `read`'s statement and its values after `?1` and `?2`: only the ranges and cut minutes each
/// stretch has (a fixed window of whole days is one range), so PostgreSQL, which plans every
/// statement it is sent, plans no empty range. A handful of texts in use (SQLite caches each).
fn read_statement(stretches: &[Stretch], (ahead_from, ahead_to): (i64, i64)) -> (String, Vec<i64>) {
    let mut values: Vec<i64> = Vec::new();
    let mut parts: Vec<String> = Vec::new();
    for (k, stretch) in stretches.iter().enumerate() {
        if !stretch.whole.is_empty() {
            let first = values.len() + 3;
            values.extend(stretch.whole.iter().flat_map(|r| [r.span, r.from, r.to]));
            parts.push(format!(
                // Typed NULLs: PostgreSQL makes two untyped ones in a row text.
                "SELECT {k}, CAST(NULL AS BIGINT), COALESCE(SUM(units), 0), CAST(NULL AS TEXT)
                 FROM ({}) AS covered_{k}",
                ranges(first, stretch.whole.len())
            ));
        }
        if let Some(cut) = cut_minutes(stretch) {
            let at = values.len() + 3;
            values.extend(cut);
            parts.push(format!(
                "SELECT {k}, start, 0, seconds {MINUTES} AND start IN (?{at}, ?{})",
                at + 1
            ));
        }
    }
    let at = values.len() + 3;
    values.extend([
        ahead_from.div_euclid(MINUTE).saturating_mul(MINUTE),
        ahead_to,
    ]);
    parts.push(format!(
        "SELECT {LAST}, start, 0, seconds FROM
         (SELECT start, seconds {MINUTES} ORDER BY start DESC LIMIT 1) AS last_minute"
    ));
    parts.push(format!(
        "SELECT {AHEAD}, start, 0, seconds {MINUTES} AND start >= ?{at} AND start < ?{}",
        at + 1
    ));
    (parts.join("\n UNION ALL "), values)
}

/// The (at most two) minutes `stretch` cuts at its ends, as `CUT`'s `?3` and `?4`.
fn cut_minutes(stretch: &Stretch) -> Option<[i64; 2]> {
    match stretch.partial.as_slice() {
        [] => None,
        [one] => Some([one.0, one.0]),
        [first, last, ..] => Some([first.0, last.0]),
    }
}

const MINUTES_FROM: &str = "SELECT start, seconds FROM window_buckets
     WHERE customer_id = ?1 AND meter_id = ?2 AND span = 60 AND start >= ?3 AND start < ?4
     ORDER BY start";

const FIRST_MINUTES: &str = "SELECT start, seconds FROM window_buckets
     WHERE customer_id = ?1 AND meter_id = ?2 AND span = 60 AND start >= ?3 AND start < ?4
     ORDER BY start LIMIT 2";

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

/// Those of a minute row's seconds that lie in `range` (and any unreadable part, as an error).
fn parts_in(
    minute: i64,
    text: &str,
    range: std::ops::Range<i64>,
) -> impl Iterator<Item = Result<(i64, i64)>> + '_ {
    parts(minute, text).filter(move |part| part.as_ref().map_or(true, |(at, _)| range.contains(at)))
}

fn parse_seconds(minute: i64, text: Option<&str>) -> Result<Seconds> {
    parts(minute, text.unwrap_or_default()).collect()
}

/// A minute's seconds as its row keeps them.
fn seconds_text(minute: i64, seconds: &Seconds) -> String {
    let mut text = String::with_capacity(seconds.len() * 8);
    for (at, units) in seconds.iter().filter(|(_, units)| **units != 0) {
        if !text.is_empty() {
            text.push(',');
        }
        let _ = write!(text, "{}:{units}", at.saturating_sub(minute));
    }
    text
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
        for part in parts_in(*minute, text, from..to) {
            seconds.push(part?);
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
    rows.iter()
        .flat_map(|(minute, text)| parts_in(*minute, text, from..to))
        .next()
        .transpose()
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
pub(super) fn add_all(conn: &Connection, added: &[Added<'_>]) -> Result<()> {
    let mut rows: Vec<NewRow> = Vec::new();
    for &Added {
        customer,
        meter,
        points,
        last_stored,
    } in added
    {
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
        // Only minutes before the last stored one need reading (a live batch's, none).
        let known = last_stored.map_or(i64::MIN, |(minute, _)| *minute);
        let keys: Vec<i64> = minutes.range(..known).map(|(m, _)| *m).collect();
        let mut stored = minutes_of(conn, customer, meter, &keys)?;
        if let Some((minute, seconds)) = last_stored {
            stored.insert(*minute, seconds.clone());
        }
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
        conn.write(&sql, values.as_slice())?;
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
        let stretches = [super::stretch(100, 5_000), super::stretch(0, 2 * 86_400)];
        let (read, values) = super::read_statement(&stretches, (0, 0));
        let read_values = values.len();
        let statements: [(&str, usize); 5] = [
            (super::whole_text(), 3 * super::RANGES),
            (super::CUT, 2),
            (read.as_str(), read_values),
            (super::MINUTES_FROM, 2),
            (super::FIRST_MINUTES, 2),
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
