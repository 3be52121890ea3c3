//! The running counters of one record batch, for every meter (the implicit one of a
//! plans.toml without `[[meters]]` too). Each row is read once, decided on in memory while the
//! batch holds the write lock, and written once at the end: a refused event changes nothing.
//!
//! Per event this is the hot part of a batch on several meters, so a row is found with one
//! hash of one key built in a reused buffer (no allocation), a unique_count row asks the
//! database about all of the batch's values for it in one query (not one per event), and the
//! new distinct values are written several to an INSERT.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::db::{Connection, OptionalExtension, Param, params};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::standing::Allocated;
use crate::billing::{format_ts, parse_ts};
use crate::config::{Aggregation, AtLimit, Config, Meter, MeterTerms, QUANTITY};
use crate::credits::Cover;
use crate::{Error, RecordRequest, Result};
use meterline_core::metering::MeterValue;

/// Values asked about in one `SELECT … value IN (…)`, at most.
const VALUES_PER_SELECT: usize = 256;
/// Distinct values written by one INSERT, at most (one parameter each, after the row's four).
const VALUES_PER_INSERT: usize = 128;
/// Counter rows written by one upsert, at most (12 parameters each).
const ROWS_PER_UPSERT: usize = 100;

/// customer × period start × meter × group ('' = the meter's total), as stored.
struct Key {
    customer: String,
    period_start: String,
    meter: String,
    group: String,
}

impl Key {
    /// The row's four columns as the first parameters (`?1`–`?4`), with room for `more`.
    fn params(&self, more: usize) -> Vec<&dyn Param> {
        let mut bound: Vec<&dyn Param> = Vec::with_capacity(4 + more);
        bound.extend_from_slice(&[&self.customer, &self.period_start, &self.meter, &self.group]);
        bound
    }
}

struct Row {
    key: Key,
    used: i64,
    /// The aggregation the row counts by (`None`: counted before migration 12).
    aggregation: Option<String>,
    /// latest: the time and id of the event whose value `used` is.
    latest: Option<(DateTime<Utc>, i64)>,
    dirty: bool,
    /// unique_count: the values this batch knows about, and whether each is stored.
    values: HashMap<String, Distinct>,
    /// unique_count: the batch's values for this row were asked about in one query.
    prefetched: bool,
    /// The units past `included` its events used and what they cost at each event's rate
    /// (`overage_units`, `overage_amount`).
    overage: i64,
    overage_amount: Decimal,
    /// The units past `included` that credits paid for, and the money they took
    /// (`credited_units`, `credited_amount`).
    credited: i64,
    credited_amount: Decimal,
}

/// A stored counter row: used, latest_at, latest_id, aggregation, overage_units,
/// overage_amount, credited_units, credited_amount.
type StoredRow = (
    i64,
    Option<String>,
    Option<i64>,
    Option<String>,
    i64,
    String,
    i64,
    String,
);

/// A counter row's columns after its key, as `StoredRow` reads them.
const STORED_COLUMNS: &str = "used, latest_at, latest_id, aggregation, overage_units, \
     overage_amount, credited_units, credited_amount";

/// A `StoredRow` from the 8 columns starting at `first`.
fn stored_row(r: &crate::db::Row, first: usize) -> Result<StoredRow> {
    Ok((
        r.get(first)?,
        r.get(first + 1)?,
        r.get(first + 2)?,
        r.get(first + 3)?,
        r.get(first + 4)?,
        r.get(first + 5)?,
        r.get(first + 6)?,
        r.get(first + 7)?,
    ))
}

/// What the batch knows of one distinct value of a unique_count row.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Distinct {
    /// Not in meter_values (as of this batch's reads).
    Absent,
    /// In meter_values already.
    Stored,
    /// Counted by this batch, not yet written.
    New,
}

/// What one event would do to one meter, decided before anything changes: an event of a
/// type decides every meter it feeds before it commits to any, so a cap on one refuses it
/// on all.
pub(crate) struct Decided {
    total: usize,
    /// The meter's total before the event.
    pub(crate) before: i64,
    /// The total after it; `None` when the event leaves it as it is.
    next: Option<i64>,
    /// The event's group row and its total after the event (`None`: left as it is).
    group: Option<(usize, Option<i64>)>,
    /// The event's units past `included` that neither included nor credits covered, and
    /// their cost at its rate, allocated to its rows now and never again.
    overage: i64,
    cost: Decimal,
    /// What credits paid of its units past `included` (taken from the wallet already; given
    /// back if the event is refused).
    pub(crate) cover: Cover,
    /// Refused by the meter's hard cap; nothing may change.
    pub(crate) refused: bool,
}

impl Decided {
    /// The units of the event neither the allowance nor credits covered: what it bills.
    pub(crate) fn billed(&self) -> i64 {
        self.overage
    }

    /// Move the units neither included nor credits covered from overage to the credits
    /// (which then owe them): a settle on a capped meter, which bills no overage.
    pub(crate) fn owe(&mut self) -> i64 {
        let owed = self.overage;
        self.cover.units += owed;
        self.overage = 0;
        self.cost = Decimal::ZERO;
        owed
    }

    /// The meter's total after the event (its total before, when refused or unchanged).
    pub(crate) fn after(&self) -> i64 {
        if self.refused {
            self.before
        } else {
            self.next.unwrap_or(self.before)
        }
    }

    /// What the event adds to the meter's total.
    pub(crate) fn added(&self) -> i64 {
        self.after().saturating_sub(self.before)
    }
}

#[derive(Default)]
pub(crate) struct MeterCounters {
    rows: Vec<Row>,
    /// `encode`d key -> position in `rows`.
    index: HashMap<Vec<u8>, usize>,
    /// A reused buffer for `encode`.
    scratch: Vec<u8>,
    /// `encode`d customer × unique_count meter -> the values the batch's events carry for
    /// it: what a row's one query asks about.
    candidates: HashMap<Vec<u8>, Vec<String>>,
}

/// The parts, each after its length: no two keys encode alike, whatever they hold.
fn encode<const N: usize>(buffer: &mut Vec<u8>, parts: [&str; N]) {
    buffer.clear();
    for part in parts {
        buffer.extend_from_slice(&part.len().to_le_bytes());
        buffer.extend_from_slice(part.as_bytes());
    }
}

impl Row {
    fn allocated(&self) -> Allocated {
        Allocated {
            units: self.overage,
            amount: self.overage_amount,
            credited: self.credited,
            credited_amount: self.credited_amount,
        }
    }
}

impl MeterCounters {
    /// The counters of a batch of `requests`: each unique_count value its events carry is
    /// noted, so that a row asks the database about all of them at once.
    pub(crate) fn for_batch(config: &Config, requests: &[RecordRequest]) -> MeterCounters {
        let mut counters = MeterCounters::default();
        for req in requests {
            let meters = config.meters_fed(req).unwrap_or_default();
            for meter in meters {
                if meter.aggregation == Aggregation::UniqueCount {
                    counters.note_candidate(req, meter);
                }
            }
        }
        counters
    }

    /// Note the distinct value `req` carries for unique_count `meter`, if any.
    fn note_candidate(&mut self, req: &RecordRequest, meter: &Meter) {
        let property = meter.property.as_deref().unwrap_or(QUANTITY);
        let Some(value) = req.properties.get(property).filter(|v| !v.is_empty()) else {
            return;
        };
        encode(&mut self.scratch, [&req.customer_id, &meter.id]);
        match self.candidates.get_mut(self.scratch.as_slice()) {
            Some(values) => values.push(value.clone()),
            None => {
                let key = self.scratch.clone();
                self.candidates.insert(key, vec![value.clone()]);
            }
        }
    }

    /// Decide one event (id `event_id`, at `at`) on its meter's total and, if counted, its
    /// group, changing nothing but the wallet `credits` pays from (which is given the units
    /// past `included` and returns what credits paid of them). The cap is decided on the
    /// total with the `held` units of live reservations, and the credits.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn decide(
        &mut self,
        conn: &Connection,
        meter: &Meter,
        terms: Option<&MeterTerms>,
        (customer, period_start): (&str, &str),
        group: Option<&str>,
        value: &MeterValue,
        rate: Option<Decimal>,
        (at, event_id): (DateTime<Utc>, i64),
        held: i64,
        credits: impl FnOnce(i64) -> Result<Cover>,
    ) -> Result<Decided> {
        let cap = terms
            .filter(|t| t.at_limit == AtLimit::Block)
            .and_then(|t| t.included);
        let total = self.row(conn, [customer, period_start, &meter.id, ""])?;
        self.same_aggregation(total, meter)?;
        let before = self.rows[total].used;
        let refused = Decided {
            total,
            before,
            next: None,
            group: None,
            overage: 0,
            cost: Decimal::ZERO,
            cover: Cover::default(),
            refused: true,
        };
        // max and latest refuse a value above the limit, whatever it would do to the total.
        if let (Aggregation::Max | Aggregation::Latest, MeterValue::Number(v)) =
            (meter.aggregation, value)
            && cap.is_some_and(|limit| *v > limit)
        {
            return Ok(refused);
        }
        // A total the event leaves as it is (a value seen, a max not above, an older latest)
        // may still move its group: `ann` seen in one region is new in another.
        let next = self.next(conn, meter, total, value, at, event_id)?;
        let adds = adds_up(meter.aggregation);
        // A total that adds up may pass the cap by what credits pay for (below).
        if !adds && next.is_some_and(|after| cap.is_some_and(|limit| after > limit)) {
            return Ok(refused);
        }
        let group = match group {
            Some(group) => {
                let row = self.row(conn, [customer, period_start, &meter.id, group])?;
                Some((row, self.next(conn, meter, row, value, at, event_id)?))
            }
            None => None,
        };
        // Units past `included` are paid by credits first; what is left is refused by a
        // cap, billed as overage otherwise. Reservations' units count as used for the cap.
        let past_included = match (terms.and_then(|t| t.included), next) {
            (Some(included), Some(after)) if adds => {
                let past = |used: i64| used.saturating_add(held).saturating_sub(included).max(0);
                past(after) - past(before)
            }
            _ => 0,
        };
        let cover = if past_included > 0 {
            credits(past_included)?
        } else {
            Cover::default()
        };
        let overage = past_included - cover.covered();
        if cap.is_some() && overage > 0 {
            return Ok(Decided { cover, ..refused });
        }
        // Within the bounds of plans.toml (at most 10^12 units per event, rates at most
        // 10^6 with 12 decimals) the product is exact.
        let cost = rate.map_or(Decimal::ZERO, |rate| rate * Decimal::from(overage));
        Ok(Decided {
            total,
            before,
            next,
            group,
            overage,
            cost,
            cover,
            refused: false,
        })
    }

    /// Count a decided event (not refused) on its rows.
    pub(crate) fn count(
        &mut self,
        meter: &Meter,
        value: &MeterValue,
        decided: &Decided,
        at: DateTime<Utc>,
        event_id: i64,
    ) {
        debug_assert!(!decided.refused);
        if let Some(after) = decided.next {
            self.commit(decided.total, meter, value, after, at, event_id);
        }
        if let Some((row, Some(next))) = decided.group {
            self.commit(row, meter, value, next, at, event_id);
        }
        if decided.overage > 0 || decided.cover.covered() > 0 {
            let group = decided.group.map(|(row, _)| row);
            for row in std::iter::once(decided.total).chain(group) {
                let row = &mut self.rows[row];
                row.overage += decided.overage;
                row.overage_amount += decided.cost;
                row.credited += decided.cover.covered();
                row.credited_amount += decided.cover.money;
                row.dirty = true;
            }
        }
    }

    /// Refuse to count `meter` on a row another aggregation counted: the total would be
    /// neither's, and would be billed.
    fn same_aggregation(&self, row: usize, meter: &Meter) -> Result<()> {
        let row = &self.rows[row];
        match row.aggregation.as_deref() {
            Some(counted) if counted != meter.aggregation.as_str() => {
                Err(Error::InvalidInput(format!(
                    "meter \"{}\" was counted as {counted} this period and plans.toml now says \
                     {}; one total is never counted two ways, so nothing was recorded. Set \
                     aggregation = \"{counted}\" again until the period ends, or give the meter \
                     a new id (a new id starts its own counter, and cap, from 0)",
                    meter.id,
                    meter.aggregation.as_str()
                )))
            }
            _ => Ok(()),
        }
    }

    /// The row's total after `value`, or `None` when the event leaves it as it is (a
    /// distinct value already seen, an older latest, a max not above the current).
    fn next(
        &mut self,
        conn: &Connection,
        meter: &Meter,
        row: usize,
        value: &MeterValue,
        at: DateTime<Utc>,
        event_id: i64,
    ) -> Result<Option<i64>> {
        let (used, latest) = (self.rows[row].used, self.rows[row].latest);
        let overflow = || {
            Error::InvalidInput(format!(
                "the counter of meter \"{}\" would overflow; nothing recorded",
                meter.id
            ))
        };
        Ok(match (meter.aggregation, value) {
            (Aggregation::Sum | Aggregation::Count, MeterValue::Number(n)) => {
                Some(used.checked_add(*n).ok_or_else(overflow)?)
            }
            (Aggregation::Max, MeterValue::Number(v)) => (*v > used).then_some(*v),
            (Aggregation::Latest, MeterValue::Number(v)) => latest
                .is_none_or(|newest| (at, event_id) > newest)
                .then_some(*v),
            (Aggregation::UniqueCount, MeterValue::Distinct(text)) => {
                if self.seen(conn, row, text)? {
                    None
                } else {
                    Some(used.checked_add(1).ok_or_else(overflow)?)
                }
            }
            _ => {
                return Err(Error::InvalidInput(format!(
                    "meter \"{}\": the event's value does not fit its aggregation",
                    meter.id
                )));
            }
        })
    }

    fn commit(
        &mut self,
        row: usize,
        meter: &Meter,
        value: &MeterValue,
        used: i64,
        at: DateTime<Utc>,
        event_id: i64,
    ) {
        let row = &mut self.rows[row];
        if let MeterValue::Distinct(text) = value {
            match row.values.get_mut(text.as_str()) {
                Some(state) => *state = Distinct::New,
                None => {
                    row.values.insert(text.clone(), Distinct::New);
                }
            }
        }
        row.used = used;
        row.dirty = true;
        row.aggregation = Some(meter.aggregation.as_str().to_string());
        if meter.aggregation == Aggregation::Latest {
            row.latest = Some((at, event_id));
        }
    }

    /// The position of the row `parts` in `rows`, read from the database on first use.
    fn row(&mut self, conn: &Connection, parts: [&str; 4]) -> Result<usize> {
        encode(&mut self.scratch, parts);
        if let Some(&found) = self.index.get(self.scratch.as_slice()) {
            return Ok(found);
        }
        let [customer, period_start, meter, group] = parts;
        let found: Option<StoredRow> = conn
            .prepare_cached(&format!(
                "SELECT {STORED_COLUMNS} FROM meter_counters
                 WHERE customer_id = ?1 AND period_start = ?2 AND meter_id = ?3 AND group_key = ?4"
            ))?
            .query_row(params![customer, period_start, meter, group], |r| {
                stored_row(r, 0)
            })
            .optional()?;
        Ok(self.keep(parts, found))
    }

    /// Keep the row `parts` as stored (`None`: not yet), unless the batch has it: its position.
    fn keep(&mut self, parts: [&str; 4], found: Option<StoredRow>) -> usize {
        encode(&mut self.scratch, parts);
        if let Some(&kept) = self.index.get(self.scratch.as_slice()) {
            return kept;
        }
        let [customer, period_start, meter, group] = parts;
        let aggregation = found.as_ref().and_then(|f| f.3.clone());
        let overage = found.as_ref().map_or(0, |f| f.4);
        let overage_amount = found
            .as_ref()
            .map_or(Decimal::ZERO, |f| super::standing::stored_amount(&f.5));
        let credited = found.as_ref().map_or(0, |f| f.6);
        let credited_amount = found
            .as_ref()
            .map_or(Decimal::ZERO, |f| super::standing::stored_amount(&f.7));
        let (used, latest) = match found {
            Some((used, at, id, ..)) => (
                used,
                match (at, id) {
                    (Some(at), Some(id)) => parse_ts(&at).ok().map(|at| (at, id)),
                    _ => None,
                },
            ),
            None => (0, None),
        };
        let position = self.rows.len();
        self.rows.push(Row {
            key: Key {
                customer: customer.to_string(),
                period_start: period_start.to_string(),
                meter: meter.to_string(),
                group: group.to_string(),
            },
            used,
            aggregation,
            latest,
            dirty: false,
            values: HashMap::new(),
            prefetched: false,
            overage,
            overage_amount,
            credited,
            credited_amount,
        });
        self.index.insert(self.scratch.clone(), position);
        position
    }

    /// Read the totals of `meters` in each customer × period of `wanted` at once: a query per
    /// 512 customers × period starts × meters (`db::in_lists`) rather than one per row (on
    /// PostgreSQL, a round trip each).
    pub(crate) fn read_ahead(
        &mut self,
        conn: &Connection,
        wanted: &[(&str, crate::billing::Period)],
        meters: &[&str],
    ) -> Result<()> {
        let mut customers: Vec<&str> = wanted.iter().map(|(c, _)| *c).collect();
        customers.sort_unstable();
        customers.dedup();
        let mut starts: Vec<String> = wanted.iter().map(|(_, p)| format_ts(p.start)).collect();
        starts.sort_unstable();
        starts.dedup();
        let mut found: HashMap<(String, String, String), StoredRow> = HashMap::new();
        for (customer_list, customer_params) in crate::db::in_lists(&customers) {
            for (start_list, start_params) in crate::db::in_lists(&starts) {
                for (meter_list, meter_params) in crate::db::in_lists(meters) {
                    let params: Vec<&dyn Param> = customer_params
                        .iter()
                        .chain(&start_params)
                        .chain(&meter_params)
                        .copied()
                        .collect();
                    let mut stmt = conn.prepare_cached(&format!(
                        "SELECT customer_id, period_start, meter_id, {STORED_COLUMNS}
                         FROM meter_counters
                         WHERE customer_id IN ({customer_list}) AND period_start IN ({start_list})
                           AND meter_id IN ({meter_list}) AND group_key = ''"
                    ))?;
                    let mut rows = stmt.query(params.as_slice())?;
                    while let Some(r) = rows.next()? {
                        let key = (r.get(0)?, r.get(1)?, r.get(2)?);
                        found.insert(key, stored_row(&r, 3)?);
                    }
                }
            }
        }
        for (customer, period) in wanted {
            let start = format_ts(period.start);
            for meter in meters {
                let stored =
                    found.remove(&(customer.to_string(), start.clone(), meter.to_string()));
                self.keep([customer, &start, meter, ""], stored);
            }
        }
        Ok(())
    }

    /// What was allocated so far of the units past `included` of `decided`'s meter's total.
    pub(crate) fn allocated(&self, decided: &Decided) -> Allocated {
        self.rows[decided.total].allocated()
    }

    /// `meter`'s total in the customer's period with what was allocated of it past
    /// `included`, with this batch's events so far.
    pub(crate) fn priced_total(
        &mut self,
        conn: &Connection,
        customer: &str,
        period_start: &str,
        meter: &str,
    ) -> Result<(i64, Allocated)> {
        let row = self.row(conn, [customer, period_start, meter, ""])?;
        let row = &self.rows[row];
        Ok((row.used, row.allocated()))
    }

    /// True when this unique_count row has counted `text` already. The first question of a
    /// row asks about every value the batch carries for its customer and meter at once.
    fn seen(&mut self, conn: &Connection, row: usize, text: &str) -> Result<bool> {
        if !self.rows[row].prefetched {
            self.rows[row].prefetched = true;
            let Row { key, values, .. } = &mut self.rows[row];
            encode(&mut self.scratch, [&key.customer, &key.meter]);
            if let Some(candidates) = self.candidates.get(self.scratch.as_slice()) {
                stored_values(conn, key, candidates, values)?;
            }
        }
        let Row { key, values, .. } = &mut self.rows[row];
        let stored = match values.get(text) {
            Some(state) => return Ok(*state != Distinct::Absent),
            // Not among the batch's values as `for_batch` found them: asked alone.
            None => conn
                .prepare_cached(
                    "SELECT 1 FROM meter_values WHERE customer_id = ?1 AND period_start = ?2
                     AND meter_id = ?3 AND group_key = ?4 AND value = ?5",
                )?
                .exists(params![
                    key.customer,
                    key.period_start,
                    key.meter,
                    key.group,
                    text
                ])?,
        };
        values.insert(
            text.to_string(),
            if stored {
                Distinct::Stored
            } else {
                Distinct::Absent
            },
        );
        Ok(stored)
    }

    /// Write every changed row (several to an upsert) and every new distinct value.
    pub(crate) fn flush(&mut self, conn: &Connection) -> Result<()> {
        let dirty: Vec<usize> = (0..self.rows.len())
            .filter(|&i| self.rows[i].dirty)
            .collect();
        for chunk in dirty.chunks(ROWS_PER_UPSERT) {
            let amounts: Vec<(String, String)> = chunk
                .iter()
                .map(|&i| {
                    let row = &self.rows[i];
                    (
                        row.overage_amount.normalize().to_string(),
                        row.credited_amount.normalize().to_string(),
                    )
                })
                .collect();
            let latest: Vec<(Option<String>, Option<i64>)> = chunk
                .iter()
                .map(|&i| match self.rows[i].latest {
                    Some((at, id)) => (Some(format_ts(at)), Some(id)),
                    None => (None, None),
                })
                .collect();
            let mut values: Vec<&dyn Param> = Vec::with_capacity(chunk.len() * 12);
            for ((&i, (latest_at, latest_id)), (amount, credited_amount)) in
                chunk.iter().zip(&latest).zip(&amounts)
            {
                let row = &self.rows[i];
                values.extend(row.key.params(8));
                values.extend_from_slice(&[&row.used as &dyn Param, latest_at, latest_id]);
                values.extend_from_slice(&[&row.aggregation as &dyn Param, &row.overage, amount]);
                values.extend_from_slice(&[&row.credited as &dyn Param, credited_amount]);
            }
            let sql = format!(
                "INSERT INTO meter_counters (customer_id, period_start, meter_id, group_key, used,
                                             latest_at, latest_id, aggregation, overage_units,
                                             overage_amount, credited_units, credited_amount)
                 VALUES {}
                 ON CONFLICT (customer_id, period_start, meter_id, group_key) DO UPDATE SET
                     used = excluded.used, latest_at = excluded.latest_at,
                     latest_id = excluded.latest_id, aggregation = excluded.aggregation,
                     overage_units = excluded.overage_units,
                     overage_amount = excluded.overage_amount,
                     credited_units = excluded.credited_units,
                     credited_amount = excluded.credited_amount",
                vec!["(?,?,?,?,?,?,?,?,?,?,?,?)"; chunk.len()].join(",")
            );
            // Cached: SQLite prepares an upsert of several rows slowly, and a batch's row
            // counts repeat (all but its last statement are full).
            conn.write(&sql, values.as_slice())?;
        }
        for &i in &dirty {
            self.rows[i].dirty = false;
        }
        for row in &mut self.rows {
            let new: Vec<&String> = row
                .values
                .iter()
                .filter(|(_, state)| **state == Distinct::New)
                .map(|(value, _)| value)
                .collect();
            insert_values(conn, &row.key, &new)?;
            for state in row.values.values_mut() {
                if *state == Distinct::New {
                    *state = Distinct::Stored;
                }
            }
        }
        Ok(())
    }
}

/// True when a meter's total is the sum of what each event added, so the units past
/// `included` can be told apart by the event (and group) that used them.
pub(crate) fn adds_up(aggregation: Aggregation) -> bool {
    matches!(
        aggregation,
        Aggregation::Sum | Aggregation::Count | Aggregation::UniqueCount
    )
}

/// Ask which of `candidates` row `key` has stored, and note each as stored or absent.
#[inline(never)] // its own entry in a profile
fn stored_values(
    conn: &Connection,
    key: &Key,
    candidates: &[String],
    values: &mut HashMap<String, Distinct>,
) -> Result<()> {
    let mut asked: Vec<&str> = candidates
        .iter()
        .map(String::as_str)
        .filter(|v| !values.contains_key(*v))
        .collect();
    asked.sort_unstable();
    asked.dedup();
    for chunk in asked.chunks(VALUES_PER_SELECT) {
        // A few statement texts (8, 16, … 256 values), each kept in the statement cache:
        // the list is filled up with its last value, which changes nothing in an IN.
        let width = chunk.len().next_power_of_two().max(8);
        let last = chunk.last().copied().unwrap_or_default();
        let mut bound = key.params(width);
        for i in 0..width {
            bound.push(chunk.get(i).unwrap_or(&last));
        }
        let mut statement = conn.prepare_cached(statement_text(&SELECT_VALUES, width)?)?;
        let stored = statement.query_map(bound.as_slice(), |r| r.get::<_, String>(0))?;
        for value in stored {
            values.insert(value?, Distinct::Stored);
        }
        for value in chunk {
            if !values.contains_key(*value) {
                values.insert((*value).to_string(), Distinct::Absent);
            }
        }
    }
    Ok(())
}

/// Write `new`, row `key`'s distinct values counted by this batch, several to an INSERT, in
/// a handful of statement texts (`db::list_sizes`).
#[inline(never)] // its own entry in a profile
fn insert_values(conn: &Connection, key: &Key, new: &[&String]) -> Result<()> {
    let mut rest = new;
    for width in crate::db::list_sizes(new.len(), VALUES_PER_INSERT) {
        let (chunk, after) = rest.split_at(width);
        rest = after;
        let mut bound = key.params(width);
        for value in chunk {
            bound.push(*value);
        }
        conn.write(statement_text(&INSERT_VALUES, width)?, bound.as_slice())?;
    }
    Ok(())
}

/// A statement over a list of `width` values (a power of two), its text built once.
struct ListStatement {
    texts: OnceLock<Vec<String>>,
    /// The text for `width` values.
    build: fn(usize) -> String,
}

static SELECT_VALUES: ListStatement = ListStatement {
    texts: OnceLock::new(),
    build: |width| {
        let list: Vec<String> = (0..width).map(|i| format!("?{}", i + 5)).collect();
        format!(
            "SELECT value FROM meter_values WHERE customer_id = ?1 AND period_start = ?2
             AND meter_id = ?3 AND group_key = ?4 AND value IN ({})",
            list.join(", ")
        )
    },
};

/// The row's four columns bound once, its values as a VALUES list (`column1` on both
/// engines); `WHERE true` tells SQLite's parser the ON is the upsert's, not a join's.
static INSERT_VALUES: ListStatement = ListStatement {
    texts: OnceLock::new(),
    build: |width| {
        let list: Vec<String> = (0..width).map(|i| format!("(?{})", i + 5)).collect();
        format!(
            "INSERT INTO meter_values (customer_id, period_start, meter_id, group_key, value)
             SELECT ?1, ?2, ?3, ?4, column1 FROM (VALUES {}) AS batch WHERE true
             ON CONFLICT DO NOTHING",
            list.join(", ")
        )
    },
};

fn statement_text(statement: &'static ListStatement, width: usize) -> Result<&'static str> {
    let texts = statement.texts.get_or_init(|| {
        (0..=VALUES_PER_SELECT.max(VALUES_PER_INSERT).ilog2())
            .map(|k| (statement.build)(1 << k))
            .collect()
    });
    texts
        .get(width.ilog2() as usize)
        .filter(|_| width.is_power_of_two())
        .map(String::as_str)
        .ok_or_else(|| Error::Database(format!("no statement for a list of {width} values")))
}
