//! The period counters (`usage_records`): a period's row as stored (read by the record path,
//! set-plan and the read paths), and the running counters of one record batch. Each of those
//! is read once, kept in memory while the batch decides its events in order (the cap check
//! needs only the running total), and written once, as one increment, when the batch ends. A
//! refused event therefore never touches a counter, and a batch of 500 events for 8 customers
//! costs 8 counter writes, not 500.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::str::FromStr;

use crate::db::{Connection, OptionalExtension, params};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::billing::{Allowance, Period, format_ts};
use crate::config::{Config, MeterTermsMap, Plan, kept_meter_terms};
use crate::{Error, Result};

/// A period's counter row: the usage and the terms it was billed under (migration 4, and every
/// meter's since migration 11), read from the columns used, plan_id, meter_event_name,
/// included, at_limit, overage_rate, meter_terms.
pub(crate) struct CounterRow {
    pub used: i64,
    pub plan_id: String,
    pub meter_event: String,
    /// `None` for rows written before migration 4 (no terms kept).
    pub terms: Option<Allowance>,
    /// Every meter's terms as JSON; `None` for rows written before migration 11.
    pub meter_terms: Option<String>,
}

impl CounterRow {
    /// The terms of every meter this period is billed under: with `kept` (a closed period,
    /// or the plan a customer is leaving), those the row kept; else, or for a row from before
    /// migration 11, its plan's in plans.toml.
    pub(crate) fn meter_terms<'c>(
        &self,
        config: &'c Config,
        kept: bool,
    ) -> Option<Cow<'c, MeterTermsMap>> {
        kept.then(|| kept_meter_terms(self.meter_terms.as_deref()))
            .flatten()
            .map(Cow::Owned)
            .or_else(|| config.plan(&self.plan_id).map(|p| Cow::Borrowed(&p.meters)))
    }
}

impl CounterRow {
    fn from_row(r: &crate::db::Row) -> crate::Result<CounterRow> {
        let at_limit: Option<String> = r.get(4)?;
        let rate: Option<String> = r.get(5)?;
        let terms = at_limit.map(|at_limit| Allowance {
            included: r.get(3).ok().flatten(),
            hard_cap: at_limit == "block",
            overage_rate: rate.as_deref().and_then(|t| Decimal::from_str(t).ok()),
        });
        Ok(CounterRow {
            used: r.get(0)?,
            plan_id: r.get(1)?,
            meter_event: r.get(2)?,
            terms,
            meter_terms: r.get(6)?,
        })
    }
}

/// The columns `CounterRow::from_row` reads, in its order.
const COUNTER_COLUMNS: &str =
    "used, plan_id, meter_event_name, included, at_limit, overage_rate, meter_terms";
/// How many they are: `read_ahead` selects its key columns after them.
const COUNTER_COLUMN_COUNT: usize = 7;

/// `customer_id`'s counter row for `period`, if anything was counted in it.
pub(crate) fn counter_row(
    conn: &Connection,
    customer_id: &str,
    period: Period,
) -> Result<Option<CounterRow>> {
    conn.prepare_cached(&format!(
        "SELECT {COUNTER_COLUMNS} FROM usage_records WHERE customer_id = ?1 AND period_start = ?2"
    ))?
    .query_row(
        params![customer_id, format_ts(period.start)],
        CounterRow::from_row,
    )
    .optional()
}

/// The usage counted in `customer_id`'s `period` (0 before its first event).
pub(crate) fn used_in(conn: &Connection, customer_id: &str, period: Period) -> Result<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT used FROM usage_records WHERE customer_id = ?1 AND period_start = ?2",
        )?
        .query_row(params![customer_id, format_ts(period.start)], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// One customer × period counter as the batch sees it.
pub(super) struct Counter<'c> {
    pub period: Period,
    /// `period.start` in the database's text form.
    pub period_start: String,
    /// The plan the period is billed under, with every meter's terms.
    pub plan_id: String,
    pub meter_terms: Cow<'c, MeterTermsMap>,
    /// The implicit meter's total (`usage_records.used`), with this batch's increments.
    pub used: i64,
    /// This batch's increments not yet written.
    pending: i64,
    /// The current period takes the customer's plan terms as they are now.
    current: bool,
    /// Written even without an increment: an event of another meter needs the period's row.
    touched: bool,
    plan: &'c Plan,
}

impl Counter<'_> {
    /// Have the period's row written at the end of the batch, even with nothing to add.
    pub(crate) fn touch(&mut self) {
        self.touched = true;
    }

    /// Count `quantity` more (the caller checked the cap). The total is bounded by
    /// `MAX_QUANTITY` per event, so it overflows only after billions of them: refused then.
    pub(crate) fn add(&mut self, quantity: i64) -> Result<()> {
        let (Some(used), Some(pending)) = (
            self.used.checked_add(quantity),
            self.pending.checked_add(quantity),
        ) else {
            return Err(Error::InvalidInput(format!(
                "the counter of {} would overflow; nothing recorded",
                self.period_start
            )));
        };
        (self.used, self.pending) = (used, pending);
        Ok(())
    }
}

/// The batch's counters, each with its customer, found by customer and period start.
#[derive(Default)]
pub(super) struct Counters<'c> {
    counters: Vec<(String, Counter<'c>)>,
    /// customer × period start -> position in `counters`.
    index: HashMap<(String, DateTime<Utc>), usize>,
    /// Rows read before the batch's first event (`read_ahead`), `None` where there was none:
    /// `find` takes a row from here rather than reading it.
    read: HashMap<(String, DateTime<Utc>), Option<CounterRow>>,
}

impl<'c> Counters<'c> {
    /// Read the rows of `wanted` (customer × period) at once: a query per 512 customers ×
    /// 512 period starts (`db::in_lists`) instead of one per row.
    pub(crate) fn read_ahead(
        &mut self,
        conn: &Connection,
        wanted: &[(&str, Period)],
    ) -> Result<()> {
        let mut customers: Vec<&str> = wanted.iter().map(|(c, _)| *c).collect();
        customers.sort_unstable();
        customers.dedup();
        let mut starts: Vec<String> = wanted.iter().map(|(_, p)| format_ts(p.start)).collect();
        starts.sort_unstable();
        starts.dedup();
        let mut found: HashMap<(String, String), CounterRow> = HashMap::new();
        for (customer_list, customer_params) in crate::db::in_lists(&customers) {
            for (start_list, start_params) in crate::db::in_lists(&starts) {
                let params: Vec<&dyn crate::db::Param> = customer_params
                    .iter()
                    .chain(&start_params)
                    .copied()
                    .collect();
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {COUNTER_COLUMNS}, customer_id, period_start FROM usage_records
                     WHERE customer_id IN ({customer_list}) AND period_start IN ({start_list})"
                ))?;
                let mut rows = stmt.query(params.as_slice())?;
                while let Some(r) = rows.next()? {
                    let key = (
                        r.get(COUNTER_COLUMN_COUNT)?,
                        r.get(COUNTER_COLUMN_COUNT + 1)?,
                    );
                    found.insert(key, CounterRow::from_row(&r)?);
                }
            }
        }
        for (customer, period) in wanted {
            let row = found.remove(&(customer.to_string(), format_ts(period.start)));
            self.read
                .entry((customer.to_string(), period.start))
                .or_insert(row);
        }
        Ok(())
    }

    /// The counter at `position` (`find`'s answer).
    pub(crate) fn at(&mut self, position: usize) -> &mut Counter<'c> {
        &mut self.counters[position].1
    }

    /// Where the counter of `customer_id`'s `period` is (`at`), read from the database on
    /// first use.
    pub(crate) fn find(
        &mut self,
        conn: &Connection,
        config: &'c Config,
        customer_id: &str,
        plan: &'c Plan,
        period: Period,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        let slot = match self.index.entry((customer_id.to_string(), period.start)) {
            Entry::Occupied(kept) => return Ok(*kept.get()),
            Entry::Vacant(slot) => slot,
        };
        // The period's total and the terms it is billed under: the current period follows
        // the customer's plan; a closed one keeps the terms it was billed under (a row from
        // before migration 4 has none and follows plans.toml; a new row gets the plan's).
        let row = match self.read.remove(slot.key()) {
            Some(row) => row,
            None => counter_row(conn, customer_id, period)?,
        };
        let current = period.contains(now);
        let used = row.as_ref().map_or(0, |r| r.used);
        let kept = row
            .as_ref()
            .filter(|_| !current)
            .and_then(|row| row.meter_terms(config, true));
        let meter_terms = kept.unwrap_or(Cow::Borrowed(&plan.meters));
        // A closed period keeps its plan unless it kept no terms and that plan is gone.
        let plan_id = match row {
            Some(row)
                if !current && (row.terms.is_some() || config.plan(&row.plan_id).is_some()) =>
            {
                row.plan_id
            }
            _ => plan.id.clone(),
        };
        let counter = Counter {
            period,
            period_start: format_ts(period.start),
            plan_id,
            meter_terms,
            used,
            pending: 0,
            current,
            touched: false,
            plan,
        };
        let position = self.counters.len();
        self.counters.push((customer_id.to_string(), counter));
        Ok(*slot.insert(position))
    }

    /// Write every pending increment (and the current periods' terms): the current periods'
    /// rows in one upsert, the closed ones' in another (on PostgreSQL a round trip each, not
    /// one per row).
    pub(crate) fn flush(&mut self, conn: &Connection) -> Result<()> {
        for current in [true, false] {
            let due: Vec<usize> = (0..self.counters.len())
                .filter(|&i| {
                    let counter = &self.counters[i].1;
                    counter.current == current && (counter.pending != 0 || counter.touched)
                })
                .collect();
            for chunk in due.chunks(ROWS_PER_UPSERT) {
                self.upsert(conn, chunk, current)?;
            }
            for i in due {
                let counter = &mut self.counters[i].1;
                counter.pending = 0;
                counter.touched = false;
            }
        }
        Ok(())
    }

    /// One upsert of the counters at `positions`: each adds its increment; a current period's
    /// row takes its plan's terms as they are now, a closed one keeps its own.
    fn upsert(&self, conn: &Connection, positions: &[usize], current: bool) -> Result<()> {
        // The texts bound, per row: period end, at_limit, overage rate, price.
        type Texts = (String, &'static str, Option<String>, String);
        let texts: Vec<Texts> = positions
            .iter()
            .map(|&i| {
                let counter = &self.counters[i].1;
                let plan = counter.plan;
                (
                    format_ts(counter.period.end),
                    plan.at_limit.as_str(),
                    plan.overage_rate.map(|r| r.to_string()),
                    plan.price.to_string(),
                )
            })
            .collect();
        let mut values: Vec<&dyn crate::db::Param> = Vec::with_capacity(positions.len() * 11);
        for (&i, (period_end, at_limit, rate, price)) in positions.iter().zip(&texts) {
            let (customer_id, counter) = &self.counters[i];
            let plan = counter.plan;
            values.extend_from_slice(&[
                customer_id as &dyn crate::db::Param,
                &counter.period_start,
                period_end,
                &counter.pending,
                &plan.id,
                &plan.meter_event,
                &plan.included,
                at_limit,
                rate,
                price,
                &plan.kept_meter_terms,
            ]);
        }
        let set_terms = if current {
            ", plan_id = excluded.plan_id, meter_event_name = excluded.meter_event_name,
             included = excluded.included, at_limit = excluded.at_limit,
             overage_rate = excluded.overage_rate, price = excluded.price,
             meter_terms = excluded.meter_terms"
        } else {
            ""
        };
        let sql = format!(
            "INSERT INTO usage_records
                 (customer_id, period_start, period_end, used, plan_id, meter_event_name,
                  included, at_limit, overage_rate, price, meter_terms)
             VALUES {}
             ON CONFLICT (customer_id, period_start) DO UPDATE SET
                 used = usage_records.used + excluded.used{set_terms}",
            vec!["(?,?,?,?,?,?,?,?,?,?,?)"; positions.len()].join(",")
        );
        // Cached: SQLite prepares an upsert of several rows slowly, and a batch's row
        // counts repeat (all but its last statement are full).
        conn.write(&sql, values.as_slice())?;
        Ok(())
    }
}

/// Counter rows written by one upsert, at most (11 parameters each).
const ROWS_PER_UPSERT: usize = 80;
