//! Every meter's standing, the implicit meter of a plans.toml without `[[meters]]` as any
//! other: its totals and groups from meter_counters, its terms from the period (a closed
//! period's kept ones, else the plan's in plans.toml). `check`, the HTTP check, `status`,
//! `history`, `members` and a duplicate's answer all read through here.

use std::borrow::Cow;
use std::collections::HashMap;

use rust_decimal::Decimal;

use crate::db::{Connection, OptionalExtension, params};
use chrono::{DateTime, Utc};

use crate::billing::{Allowance, Period, UsageCheck, format_ts, period_containing};
use crate::config::{AtLimit, Config, Meter, MeterTerms, MeterTermsMap};
use crate::counters::{CounterRow, counter_row};
use crate::customers::{Customer, get};
use crate::{Error, Result, Store};
use meterline_core::{GroupUsage, MeterCheck, MeteredCheck};

/// A plan's terms for a meter as billing sees them; a meter it does not name is unbilled.
pub(crate) fn allowance(terms: Option<&MeterTerms>) -> Allowance {
    terms.map_or(
        Allowance {
            included: None,
            hard_cap: false,
            overage_rate: None,
        },
        |t| Allowance {
            included: t.included,
            hard_cap: t.at_limit == AtLimit::Block,
            overage_rate: t.overage_rate,
        },
    )
}

/// `meter`'s standing at `used` under `allowance`.
pub(crate) fn standing(
    meter: &Meter,
    customer: &str,
    plan: &str,
    allowance: Allowance,
    period: Period,
    used: i64,
    thresholds: &crate::billing::Thresholds,
) -> UsageCheck {
    let mut check = UsageCheck::compute(customer, plan, allowance, period, used, thresholds);
    if !meter.aggregation.full_at_limit() {
        // Only a value above the limit is refused: at it, the same value is still taken.
        check.allowed = !(allowance.hard_cap && allowance.included.is_some_and(|l| used > l));
    }
    check
}

/// A meter_counters row as a check reads it: meter, group key, used, the units past
/// `included` its events were allocated as overage with their cost, and those credits paid
/// for with the money they took.
pub(crate) type CounterCells = (String, String, i64, i64, Decimal, i64, Decimal);

/// The columns of `CounterCells`, in order.
/// (Money credits paid nothing on most rows: no text is read for them.)
pub(crate) const CELL_COLUMNS: &str = "meter_id, group_key, used, overage_units, \
     overage_amount, credited_units, NULLIF(credited_amount, '0')";

/// `CounterCells` from the 7 columns starting at `first`.
/// A group row's credits are never read (what credits paid is the meter's, on its total).
/// The amounts are parsed where they lie (`stored_amount`), never copied out as text.
pub(crate) fn cells(r: &crate::db::Row, first: usize) -> Result<CounterCells> {
    let key: String = r.get(first + 1)?;
    let (credited, credited_amount) = if key.is_empty() {
        let amount: Option<String> = r.get(first + 6)?;
        let amount = amount.as_deref().map_or(Decimal::ZERO, stored_amount);
        (r.get(first + 5)?, amount)
    } else {
        (0, Decimal::ZERO)
    };
    Ok((
        r.get(first)?,
        key,
        r.get(first + 2)?,
        r.get(first + 3)?,
        r.text_with(first + 4, stored_amount)?,
        credited,
        credited_amount,
    ))
}

/// What a counter row's events were allocated of their units past `included`, as they were
/// recorded: billed as overage (`units`, costing `amount`), or paid by credits (`credited`,
/// of which money grants paid `credited_amount`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Allocated {
    pub units: i64,
    pub amount: rust_decimal::Decimal,
    pub credited: i64,
    pub credited_amount: rust_decimal::Decimal,
}

impl Allocated {
    /// From a row's stored columns.
    pub(crate) fn stored(
        units: i64,
        amount: &str,
        credited: i64,
        credited_amount: Option<&str>,
    ) -> Self {
        Allocated {
            units,
            amount: stored_amount(amount),
            credited,
            credited_amount: credited_amount.map_or(rust_decimal::Decimal::ZERO, stored_amount),
        }
    }
}

/// `check` priced as its events were when recorded: the units past `included` that credits
/// paid for are not billed, those allocated at their own rates cost what they were allocated
/// (`units`, `amount`), and the rest (counted before prices per dimension, or on a max or
/// latest meter, whose units are not any event's) cost `overage_rate`.
pub(crate) fn priced(mut check: UsageCheck, allocated: Allocated) -> UsageCheck {
    check.credited_units = allocated.credited;
    check.credited_amount = allocated.credited_amount.normalize();
    if allocated.units > 0 || allocated.credited > 0 {
        let billed = check
            .overage_units
            .saturating_sub(allocated.credited)
            .max(0);
        let rest = billed.saturating_sub(allocated.units).max(0);
        let rest = check.overage_rate.unwrap_or_default() * rust_decimal::Decimal::from(rest);
        check.overage_units = billed;
        // One spelling of an amount, however it was added up ("0.00203", not "0.002030").
        check.overage_amount = (allocated.amount + rest).normalize();
    }
    check
}

/// A group row of meter_counters as reads show it: its key as JSON, its usage and the
/// money its events were allocated (`overage_amount`, exact decimal text).
pub(crate) fn group_usage(key: String, used: i64, units: i64, amount: Decimal) -> GroupUsage {
    GroupUsage {
        // A key that is not JSON (never written so) reads as null.
        key: serde_json::value::RawValue::from_string(key).unwrap_or_default(),
        used,
        overage_units: units,
        overage_amount: amount,
    }
}

/// A stored `overage_amount`. Most rows never passed their limit: "0" needs no parsing.
pub(crate) fn stored_amount(text: &str) -> rust_decimal::Decimal {
    match text {
        "0" => rust_decimal::Decimal::ZERO,
        text => text.parse().unwrap_or_default(),
    }
}

/// Counter rows in the order reads list them: by meter, its total row first, then its
/// groups largest first, then by key. Sorted here, bytewise on both engines, not by an
/// ORDER BY (the per-meter query ordered by `group_key = '' DESC, …` was re-prepared by
/// SQLite on every check: 46 % of one).
pub(crate) fn sort_cells(found: &mut [CounterCells]) {
    found.sort_unstable_by(
        |(meter_a, key_a, used_a, ..), (meter_b, key_b, used_b, ..)| {
            meter_a
                .cmp(meter_b)
                .then_with(|| key_b.is_empty().cmp(&key_a.is_empty()))
                .then_with(|| used_b.cmp(used_a))
                .then_with(|| key_a.cmp(key_b))
        },
    );
}

/// One customer's period as its meters are read in: the plan it is billed under and every
/// meter's terms. `terms` is `None` when that plan is gone from plans.toml.
pub(crate) struct Frame<'c> {
    pub customer: String,
    pub plan: String,
    pub period: Period,
    terms: Option<Cow<'c, MeterTermsMap>>,
    config: &'c Config,
}

impl<'c> Frame<'c> {
    /// `customer`'s `period` with its counter row, if it has one. The current period (and a
    /// closed one that kept nothing) follows plans.toml and the customer's plan now; a closed
    /// period is billed under the plan and terms it kept.
    pub(crate) fn of(
        config: &'c Config,
        customer: &Customer,
        period: Period,
        row: Option<&CounterRow>,
        now: DateTime<Utc>,
    ) -> Frame<'c> {
        let (plan, terms) = match row.filter(|_| period.end <= now) {
            Some(r) => (r.plan_id.clone(), r.meter_terms(config, true)),
            None => (
                customer.plan_id.clone(),
                config
                    .plan(&customer.plan_id)
                    .map(|p| Cow::Borrowed(&p.meters)),
            ),
        };
        Frame {
            customer: customer.id.clone(),
            plan,
            period,
            terms,
            config,
        }
    }

    /// The customer's period containing `at`, read on `conn`.
    pub(crate) fn read(
        conn: &Connection,
        config: &'c Config,
        customer: &Customer,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Frame<'c>> {
        let period = period_containing(customer.billing_anchor, config.billing.period, at);
        // The current period's terms are plans.toml's: its row is not needed.
        let row = if period.end <= now {
            counter_row(conn, &customer.id, period)?
        } else {
            None
        };
        Ok(Frame::of(config, customer, period, row.as_ref(), now))
    }

    pub(crate) fn plan_missing(&self) -> bool {
        self.terms.is_none()
    }

    /// `meter`'s standing at `used` in this period.
    pub(crate) fn check(&self, meter: &Meter, used: i64) -> UsageCheck {
        let Some(terms) = &self.terms else {
            return UsageCheck::plan_missing(&self.customer, &self.plan, self.period, used);
        };
        standing(
            meter,
            &self.customer,
            &self.plan,
            allowance(terms.get(&meter.id)),
            self.period,
            used,
            &self.config.thresholds,
        )
    }

    /// Every meter of plans.toml, in order, with its groups: one query for the
    /// customer-period's rows, not one per meter.
    pub(crate) fn meter_checks(&self, conn: &Connection) -> Result<Vec<MeterCheck>> {
        let found: Vec<CounterCells> = conn
            .prepare_cached(&format!(
                "SELECT {CELL_COLUMNS}
                 FROM meter_counters WHERE customer_id = ?1 AND period_start = ?2"
            ))?
            .query_map(params![self.customer, format_ts(self.period.start)], |r| {
                cells(r, 0)
            })?
            .collect::<Result<_>>()?;
        Ok(self.meter_checks_of(found))
    }

    /// `meter`'s standing with its groups, priced as `meter_checks` prices it: the history's
    /// and the dashboard's read of one meter.
    pub(crate) fn meter_check(&self, conn: &Connection, meter: &Meter) -> Result<MeterCheck> {
        let mut found: Vec<CounterCells> = conn
            .prepare_cached(&format!(
                "SELECT {CELL_COLUMNS} FROM meter_counters
                 WHERE customer_id = ?1 AND period_start = ?2 AND meter_id = ?3"
            ))?
            .query_map(
                params![self.customer, format_ts(self.period.start), meter.id],
                |r| cells(r, 0),
            )?
            .collect::<Result<_>>()?;
        sort_cells(&mut found);
        Ok(self.meter_check_of(meter, &mut found))
    }

    /// Every meter of plans.toml, in order, with its groups, from the period's
    /// meter_counters rows.
    fn meter_checks_of(&self, mut found: Vec<CounterCells>) -> Vec<MeterCheck> {
        sort_cells(&mut found);
        let mut checks = Vec::with_capacity(self.config.meters.len());
        for meter in &self.config.meters {
            let first = found.partition_point(|(id, ..)| *id < meter.id);
            let last = first + found[first..].partition_point(|(id, ..)| *id == meter.id);
            checks.push(self.meter_check_of(meter, &mut found[first..last]));
        }
        checks
    }

    /// `meter`'s check from its rows (`sort_cells` order): the total row priced by
    /// [`priced`], the group rows as they are stored (their keys moved out, not copied).
    fn meter_check_of(&self, meter: &Meter, rows: &mut [CounterCells]) -> MeterCheck {
        let mut total = (0, Allocated::default());
        let mut groups = Vec::new();
        for (_, key, used, units, amount, credited, credited_amount) in rows {
            if key.is_empty() {
                let allocated = Allocated {
                    units: *units,
                    amount: *amount,
                    credited: *credited,
                    credited_amount: *credited_amount,
                };
                total = (*used, allocated);
            } else {
                groups.push(group_usage(std::mem::take(key), *used, *units, *amount));
            }
        }
        let (used, allocated) = total;
        MeterCheck {
            meter: meter.id.clone(),
            aggregation: meter.aggregation,
            check: priced(self.check(meter, used), allocated),
            groups,
            credits: None,
            windows: Vec::new(),
        }
    }

    /// `meter_id`'s standing at `used`; a meter plans.toml no longer has is shown as unbilled.
    pub(crate) fn standing_of(&self, meter_id: &str, used: i64) -> UsageCheck {
        match self.config.meter(meter_id) {
            Some(meter) => self.check(meter, used),
            None => UsageCheck::compute(
                &self.customer,
                &self.plan,
                allowance(None),
                self.period,
                used,
                &self.config.thresholds,
            ),
        }
    }

    /// `meter`'s total in this period (0 before its first event).
    pub(crate) fn total(&self, conn: &Connection, meter: &str) -> Result<i64> {
        Ok(conn
            .prepare_cached(
                "SELECT used FROM meter_counters
                 WHERE customer_id = ?1 AND period_start = ?2 AND meter_id = ?3 AND group_key = ''",
            )?
            .query_row(
                params![self.customer, format_ts(self.period.start), meter],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }
}

/// The customer's current standing on every meter, on any connection. A customer whose plan
/// is gone is an error here: a caller asking "may they use more?" must not get an answer
/// without terms.
pub(crate) fn metered_check_in(
    conn: &Connection,
    config: &Config,
    customer_id: &str,
    now: DateTime<Utc>,
) -> Result<MeteredCheck> {
    let customer = get(conn, customer_id)?;
    let frame = Frame::read(conn, config, &customer, now, now)?;
    let checks = frame.meter_checks(conn)?;
    metered_check_of(frame, checks)
}

fn metered_check_of(frame: Frame, checks: Vec<MeterCheck>) -> Result<MeteredCheck> {
    if frame.plan_missing() {
        return Err(Error::PlanMissing {
            customer: frame.customer,
            plan: frame.plan,
        });
    }
    MeteredCheck::new(checks).ok_or_else(|| Error::InvalidInput("plans.toml has no meter".into()))
}

/// How far back a current period can start: a month at most (both `[billing] period`s are
/// monthly), with a day to spare.
const LONGEST_PERIOD_DAYS: u64 = 32;

/// A customer and its meter_counters rows since `LONGEST_PERIOD_DAYS` ago, by period start
/// (in the order read: one start may come twice), as `checks_at_once` reads them.
type Recent = (Customer, Vec<(String, Vec<CounterCells>)>);

/// Each customer's check, `None` where its period starts too early to be read at once.
type Answers = HashMap<String, Option<Result<MeteredCheck>>>;

/// `metered_check_in` of each of `ids` in one statement per 512 of them (on PostgreSQL one
/// round trip; each customer's answer from one snapshot on both engines, no transaction to
/// open and close): the customers with their meter_counters rows since the earliest start a
/// current period can have, those of each one's current period kept. An answer is `None`
/// when that customer's period starts earlier than that (never with a monthly period). Also
/// whether any customer has credits (`credits::IN_USE`).
fn checks_at_once(
    conn: &Connection,
    config: &Config,
    ids: &[&str],
    now: DateTime<Utc>,
) -> Result<(Answers, bool)> {
    let since = now
        .checked_sub_days(chrono::Days::new(LONGEST_PERIOD_DAYS))
        .map_or_else(|| format_ts(now), format_ts);
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    // No customer id holds a NUL, and PostgreSQL refuses one in any text: not asked.
    let asked: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| !id.contains('\0'))
        .collect();
    let mut found: HashMap<String, Recent> = HashMap::new();
    let mut credits = false;
    // A customer's rows come one after another, and most share their period's start: each is
    // compared where it lies and copied out only when it changes (a check reads every row).
    let mut current: Option<(String, Recent)> = None;
    for (list, id_params) in crate::db::in_lists(&asked) {
        let mut params: Vec<&dyn crate::db::Param> = vec![&since];
        params.extend(id_params);
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {}, mc.period_start, mc.meter_id, mc.group_key, mc.used,
                    mc.overage_units, mc.overage_amount, mc.credited_units,
                    NULLIF(mc.credited_amount, '0'),
                    {}
             FROM customers c LEFT JOIN meter_counters mc
                 ON mc.customer_id = c.id AND mc.period_start >= ?
             WHERE c.id IN ({list})",
            crate::customers::COLUMNS_OF_C,
            crate::credits::IN_USE
        ))?;
        let mut rows = stmt.query(params.as_slice())?;
        let mut first = true;
        while let Some(r) = rows.next()? {
            if std::mem::take(&mut first) {
                // The same on every row: whether the database has any credits.
                credits |= r.get::<_, bool>(14)?;
            }
            let (_, periods) = customer_of(&r, &mut found, &mut current)?;
            add_counter(&r, periods)?;
        }
    }
    if let Some((id, recent)) = current {
        found.insert(id, recent);
    }
    let answers = ids
        .iter()
        .map(|id| {
            let answer = match found.remove(*id) {
                None => Some(Err(Error::UnknownCustomer(id.to_string()))),
                Some(recent) => current_check(config, recent, &since, now),
            };
            (id.to_string(), answer)
        })
        .collect();
    Ok((answers, credits))
}

/// The customer a row of `checks_at_once` belongs to, made `current`: the last row's when its
/// id is the same (compared in place), else the one kept in `found` (which gets the last row's
/// back), else begun from the row.
fn customer_of<'a>(
    r: &crate::db::Row,
    found: &mut HashMap<String, Recent>,
    current: &'a mut Option<(String, Recent)>,
) -> Result<&'a mut Recent> {
    let same = match current {
        Some((id, _)) => r.text_is(0, id)?,
        None => false,
    };
    if !same {
        let id: String = r.get(0)?;
        let recent = match found.remove(&id) {
            Some(recent) => recent,
            None => (crate::customers::from_row(r)?, Vec::new()),
        };
        if let Some((id, recent)) = current.replace((id, recent)) {
            found.insert(id, recent);
        }
    }
    // Set above whenever it was not the same.
    current
        .as_mut()
        .map(|(_, recent)| recent)
        .ok_or_else(|| Error::Database("a check's row without its customer".into()))
}

/// A row's counter (none for a customer without any) added to its period's, the last one's
/// when the start is the same (compared in place).
fn add_counter(r: &crate::db::Row, periods: &mut Vec<(String, Vec<CounterCells>)>) -> Result<()> {
    let in_last = match periods.last() {
        Some((start, _)) => r.text_is(6, start)?,
        None => false,
    };
    match periods.last_mut() {
        Some((_, counters)) if in_last => counters.push(cells(r, 7)?),
        _ => {
            if let Some(start) = r.get::<_, Option<String>>(6)? {
                periods.push((start, vec![cells(r, 7)?]));
            }
        }
    }
    Ok(())
}

/// The check of a customer read with its recent counters; `None` when its current period
/// starts before `since` (its rows may be older than those read).
fn current_check(
    config: &Config,
    (customer, counters): Recent,
    since: &str,
    now: DateTime<Utc>,
) -> Option<Result<MeteredCheck>> {
    let period = period_containing(customer.billing_anchor, config.billing.period, now);
    let start = format_ts(period.start);
    if start.as_str() < since {
        return None;
    }
    let frame = Frame::of(config, &customer, period, None, now);
    let rows = counters
        .into_iter()
        .filter(|(s, _)| *s == start)
        .flat_map(|(_, cells)| cells)
        .collect();
    let checks = frame.meter_checks_of(rows);
    Some(metered_check_of(frame, checks))
}

/// `meter_id`'s standing in `customer_id`'s period containing `at`: a duplicate's answer,
/// read inside the record transaction after the batch's counters were written. A meter
/// plans.toml no longer has is shown as unbilled.
pub(crate) fn meter_standing_in(
    conn: &Connection,
    config: &Config,
    customer_id: &str,
    meter_id: &str,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<UsageCheck> {
    let customer = get(conn, customer_id)?;
    let frame = Frame::read(conn, config, &customer, at, now)?;
    let used = frame.total(conn, meter_id)?;
    Ok(frame.standing_of(meter_id, used))
}

impl Store {
    /// `customer_id`'s current period on every meter of plans.toml, in order; the top level
    /// is the default meter's, `allowed` over every meter.
    pub fn metered_check(
        &self,
        config: &Config,
        customer_id: &str,
        now: DateTime<Utc>,
    ) -> Result<MeteredCheck> {
        self.metered_checks(config, &[customer_id], now)?
            .remove(customer_id)
            .unwrap_or_else(|| Err(Error::UnknownCustomer(customer_id.to_string())))
    }

    /// `metered_check` of each of `ids` (`serve` answers the checks waiting together): one
    /// statement for up to 512 of them. Outer `Err`: the database failed.
    pub fn metered_checks(
        &self,
        config: &Config,
        ids: &[&str],
        now: DateTime<Utc>,
    ) -> Result<HashMap<String, Result<MeteredCheck>>> {
        let mut answers = HashMap::with_capacity(ids.len());
        // The same query says whether any customer has credits (if none, none are read).
        let (checks, credits) = checks_at_once(&self.conn, config, ids, now)?;
        // The credits of every answer read in one snapshot: on SQLite one lock, not three
        // per customer.
        let windows = config.has_windows();
        let snapshot = if credits || windows {
            Some(self.conn.unchecked_transaction()?)
        } else {
            None
        };
        for (id, answer) in checks {
            let answer = match answer {
                Some(answer) => answer,
                // One read transaction: the customer and its counters from one snapshot (a
                // plan change cannot fall between them).
                None => match &snapshot {
                    Some(read) => metered_check_in(read, config, &id, now),
                    None => {
                        let read = self.conn.unchecked_transaction()?;
                        let check = metered_check_in(&read, config, &id, now);
                        read.finish()?;
                        check
                    }
                },
            };
            let answer = match (answer, &snapshot) {
                (Ok(mut check), Some(read)) => {
                    if credits {
                        crate::credits::with_credits(read, config, &mut check, now)?;
                    }
                    if windows {
                        crate::windows::with_windows(read, config, &mut check, credits, now)?;
                    }
                    Ok(check)
                }
                (answer, _) => answer,
            };
            match answer {
                Err(e) if e.is_database() => return Err(e),
                answer => {
                    answers.insert(id, answer);
                }
            }
        }
        if let Some(read) = snapshot {
            read.finish()?;
        }
        Ok(answers)
    }

    /// The customer's standing in the current period: the default meter's, `allowed` over
    /// every meter.
    pub fn check(
        &self,
        config: &Config,
        customer_id: &str,
        now: DateTime<Utc>,
    ) -> Result<UsageCheck> {
        Ok(self.metered_check(config, customer_id, now)?.check)
    }

    /// The default meter's history: `history`.
    pub fn history(
        &self,
        config: &Config,
        customer_id: &str,
        count: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<crate::HistoryRow>> {
        let meter = config.default_meter().id.clone();
        self.meter_history(config, customer_id, &meter, count, now)
    }

    /// One meter's last `count` periods, oldest first, including periods without usage: each
    /// under the plan it was billed under and the terms a closed period kept.
    pub fn meter_history(
        &self,
        config: &Config,
        customer_id: &str,
        meter_id: &str,
        count: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<crate::HistoryRow>> {
        let snapshot = self.conn.unchecked_transaction()?;
        let rows = meter_history_in(&snapshot, config, customer_id, meter_id, count, now)?;
        snapshot.finish()?;
        Ok(rows)
    }
}

/// `Store::meter_history` on `conn`, inside the caller's read transaction. `meter_event` is
/// the Stripe event the period's usage reports to: the implicit meter's is the one its
/// period was counted under (a plan's `meter_event`), any other meter's its own.
pub(crate) fn meter_history_in(
    conn: &Connection,
    config: &Config,
    customer_id: &str,
    meter_id: &str,
    count: usize,
    now: DateTime<Utc>,
) -> Result<Vec<crate::HistoryRow>> {
    let meter = config.known_meter(meter_id)?;
    let customer = get(conn, customer_id)?;
    let periods =
        crate::billing::periods_before(customer.billing_anchor, config.billing.period, now, count);
    let mut out = Vec::with_capacity(periods.len());
    for period in periods {
        let row = counter_row(conn, &customer.id, period)?;
        let frame = Frame::of(config, &customer, period, row.as_ref(), now);
        // Priced as `check` prices it: each group's units at the rate they were recorded at.
        let MeterCheck { check, groups, .. } = frame.meter_check(conn, meter)?;
        let meter_event = match (&row, config.implicit_meter()) {
            (Some(r), Some(_)) => Some(r.meter_event.clone()),
            _ => (check.used > 0).then(|| meter.stripe_event.clone()),
        };
        out.push(crate::HistoryRow {
            check,
            meter_event,
            groups,
        });
    }
    Ok(out)
}

/// Where the database's meters have left plans.toml's: what `doctor`, `plans` and the
/// dashboard warn about.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MeterDrift {
    /// Meters whose counters were counted by another aggregation than plans.toml's now:
    /// (meter, counted as, periods). Their events are refused until the two agree again.
    pub recounted: Vec<(String, String, i64)>,
    /// Meters plans.toml no longer has, with their unsent events: kept, never to be sent.
    pub removed: Vec<(String, i64)>,
}

impl MeterDrift {
    pub fn is_empty(&self) -> bool {
        self.recounted.is_empty() && self.removed.is_empty()
    }

    /// One short line for a header: the first drift, and how many more.
    pub fn summary(&self) -> Option<String> {
        let first = match (self.recounted.first(), self.removed.first()) {
            (Some((meter, counted, _)), _) => {
                format!("meter \"{meter}\" was counted as {counted}: its events are refused")
            }
            (None, Some((meter, events))) => {
                format!("meter \"{meter}\" was removed: {events} event(s) will never be sent")
            }
            (None, None) => return None,
        };
        let more = self.recounted.len() + self.removed.len() - 1;
        Some(if more == 0 {
            first
        } else {
            format!("{first} (and {more} more)")
        })
    }

    /// One sentence per drift, for a terminal.
    pub fn sentences(&self, config: &Config) -> Vec<String> {
        let recounted = self.recounted.iter().map(|(meter, counted, periods)| {
            let now = config.meter(meter).map_or("", |m| m.aggregation.as_str());
            format!(
                "meter \"{meter}\" was counted as {counted} in {periods} period(s) and \
                 plans.toml now says {now}: its events there are refused (one total is never \
                 counted two ways); set aggregation = \"{counted}\" again until those periods \
                 end, or give the meter a new id (which starts its counter, and cap, from 0)"
            )
        });
        let removed = self.removed.iter().map(|(meter, events)| {
            format!(
                "meter \"{meter}\" is no longer in plans.toml: its {events} unsent event(s) are \
                 kept and will never be sent to Stripe; put the meter back to send them"
            )
        });
        recounted.chain(removed).collect()
    }
}

impl Store {
    /// How the database's meters differ from plans.toml's. Every meter that ever counted has
    /// a total row, so the meters are found among those (a small table); a removed meter's
    /// unsent events are counted only when there is one.
    pub fn meter_drift(&self, config: &Config) -> Result<MeterDrift> {
        let counted: Vec<(String, Option<String>, i64)> = self
            .conn
            .prepare_cached(
                "SELECT meter_id, aggregation, COUNT(*) FROM meter_counters
                 WHERE group_key = ''
                 GROUP BY meter_id, aggregation ORDER BY meter_id, aggregation",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_>>()?;
        let routes = crate::meters::stripe::StripeMeters::new(config);
        // In meter order: a meter counted by two aggregations comes twice, together.
        let mut gone: Vec<&String> = counted
            .iter()
            .map(|(meter, _, _)| meter)
            .filter(|meter| config.meter(meter).is_none() && routes.route(meter).is_none())
            .collect();
        gone.dedup();
        let mut removed = Vec::new();
        for meter in gone {
            let unsent: i64 = self
                .conn
                .prepare_cached(
                    "SELECT COUNT(*) FROM usage_events
                     WHERE meter_id = ?1 AND stripe_reported_at IS NULL
                       AND stripe_expired_at IS NULL",
                )?
                .query_row([meter], |r| r.get(0))?;
            if unsent > 0 {
                removed.push((meter.clone(), unsent));
            }
        }
        let recounted = counted
            .iter()
            .filter_map(|(meter, counted_as, periods)| {
                let now = config.meter(meter)?.aggregation.as_str();
                let counted_as = counted_as.as_deref().filter(|c| *c != now)?;
                Some((meter.clone(), counted_as.to_string(), *periods))
            })
            .collect();
        let drift = MeterDrift { recounted, removed };
        Ok(drift)
    }
}
