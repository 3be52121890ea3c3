//! Read paths for the live dashboard, built to stay fast at 100,000 customers and 10 million
//! events: one full load when it opens, then small refreshes driven by change marks
//! (the newest event id and the `change_counters` rows kept by triggers, see
//! `migrations/sqlite/0003_change_marks.sql`).
//! Meters (`meters/dashboard.rs`) ride on the same marks: every event that moves a meter's counter is
//! a new `usage_events` row in the same transaction, so the newest event id announces it.

use std::collections::HashMap;

use crate::db::{OptionalExtension, params};
use chrono::{DateTime, Duration, NaiveDate, Utc};

use super::customers::get;
use super::{HistoryRow, Member, Store, StripeState, stripe_window};
use crate::Result;
use crate::billing::{
    Period, Projection, UsageCheck, WarningLevel, format_ts, parse_ts, period_containing, project,
};
use crate::config::Config;
use crate::credits_dashboard::{CreditColumn, CreditDetail};
use crate::meters::dashboard as meters;
use meters::nearest_limit;
pub use meters::{GroupRow, MeterDetail, MeterFigure, MeterWindows, TightestWindow, has_meters};
use rust_decimal::Decimal;

/// One customer's line on the overview: its current period and Stripe backlog.
#[derive(Debug, Clone, PartialEq)]
pub struct DashboardRow {
    pub customer_id: String,
    pub name: String,
    pub plan_id: String,
    /// Units included per period of the meter shown (`shown`); `None` is unlimited (or a plan
    /// no longer in plans.toml, or a meter the plan does not bill).
    pub limit: Option<i64>,
    /// Has a Stripe customer id, so its usage can be reported.
    pub mapped: bool,
    pub period: Period,
    /// The shown meter's total this period.
    pub used: i64,
    pub backlog: Backlog,
    /// Archived: hidden from the dashboard unless asked for, records refused.
    pub archived: bool,
    /// Every meter of plans.toml, in its order, when it has `[[meters]]`; empty with the
    /// implicit `usage` meter alone, whose figures are `used` and `limit`.
    pub meters: Vec<MeterFigure>,
    /// Which of `meters` `used` and `limit` are (an index into plans.toml's meters): the one
    /// nearest its limit as loaded, or the one `show_meter` picked.
    pub shown: usize,
    /// Available money credits; `None` for a customer that never had a money grant.
    pub credits: Option<Decimal>,
    /// Its fullest rolling window as of its last event or the last load; `None` without
    /// windows (and always when plans.toml has none: then nothing is read for them).
    pub window: Option<TightestWindow>,
}

impl DashboardRow {
    /// used / limit; `None` for unlimited plans.
    pub fn ratio(&self) -> Option<f64> {
        self.limit.map(|l| {
            if l == 0 {
                1.0
            } else {
                self.used as f64 / l as f64
            }
        })
    }

    /// The customer's plan is no longer in plans.toml (its `limit` is then `None`): show
    /// "plan missing", not "unlimited".
    pub fn plan_missing(&self, config: &Config) -> bool {
        config.plan(&self.plan_id).is_none()
    }

    /// The row's warning level under plans.toml's thresholds.
    pub fn level(&self, config: &Config) -> WarningLevel {
        WarningLevel::of(self.ratio(), &config.thresholds)
    }

    /// Show meter `pick` (an index into plans.toml's meters), or with `None` the meter
    /// nearest its limit: `used`, `limit` and `shown` become its. Nothing changes for a row
    /// without meters (the `usage` meter alone).
    pub fn show_meter(&mut self, pick: Option<usize>) {
        if self.meters.is_empty() {
            return;
        }
        let i = pick
            .filter(|i| *i < self.meters.len())
            .unwrap_or_else(|| nearest_limit(&self.meters));
        self.shown = i;
        self.used = self.meters[i].used;
        self.limit = self.meters[i].limit;
    }
}

/// Events not yet delivered to Stripe. `failed` and `expired` are the ones needing attention;
/// `unreported` counts everything still to deliver (failed included, expired not).
/// `expired` counts every unreported event past Stripe's 35-day window, whether or not a sync
/// has marked it yet: it can never go out, so it is not counted as still to deliver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    pub unreported: i64,
    pub failed: i64,
    pub expired: i64,
}

impl std::ops::AddAssign for Backlog {
    fn add_assign(&mut self, other: Backlog) {
        self.unreported += other.unreported;
        self.failed += other.failed;
        self.expired += other.expired;
    }
}

/// Cheap markers of what changed since the last look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChangeMarks {
    /// Bumped by triggers on every change to `customers`.
    pub customers: i64,
    /// Bumped by a trigger on every change of an event's Stripe state.
    pub stripe: i64,
    /// Events are append-only, so new usage shows as ids above this one.
    pub last_event_id: i64,
    /// The credit ledger is append-only too: grants, voids and burns show as ids above this.
    pub last_ledger_id: i64,
}

/// Everything the overview shows, as loaded in one consistent read.
#[derive(Debug, Clone, Default)]
pub struct Dashboard {
    pub rows: Vec<DashboardRow>,
    pub marks: ChangeMarks,
    /// When the oldest event still to send leaves Stripe's window (and turns expired).
    pub next_expiry: Option<DateTime<Utc>>,
    /// Meters counted otherwise than plans.toml says, or removed with events unsent.
    pub drift: crate::MeterDrift,
    /// The soonest a credit grant takes effect or expires: the credits column moves then.
    pub next_credit_change: Option<DateTime<Utc>>,
}

impl Dashboard {
    /// The earliest end of a current period, or the moment the oldest event to send turns
    /// expired: past it, the rows need a full reload.
    pub fn next_rollover(&self) -> Option<DateTime<Utc>> {
        let period_end = self.rows.iter().map(|r| r.period.end).min();
        period_end
            .into_iter()
            .chain(self.next_expiry)
            .chain(self.next_credit_change)
            .min()
    }
}

/// A customer whose current-period counter moved.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageChange {
    pub customer_id: String,
    /// New events still to send to Stripe.
    pub new_events: i64,
    /// New events dated past Stripe's window (`record --at`): expired from the start.
    pub new_expired: i64,
    /// The total of the meter nearest its limit (the `usage` meter without `[[meters]]`).
    pub used: i64,
    /// Every meter's figures now, as in [`DashboardRow::meters`] (empty without `[[meters]]`).
    pub meters: Vec<MeterFigure>,
    /// Its fullest window now, as in [`DashboardRow::window`].
    pub window: Option<TightestWindow>,
}

/// What changed since a given set of marks.
#[derive(Debug, Clone)]
pub enum Refresh {
    Unchanged,
    /// Customers were added or changed: everything reloaded.
    Full(Dashboard),
    Partial {
        usage: Vec<UsageChange>,
        /// New backlog counts, when Stripe state changed.
        backlog: Option<BacklogChange>,
        /// The credits of the customers whose ledger moved, when it did.
        credits: Option<CreditColumn>,
        marks: ChangeMarks,
    },
}

/// Backlog counts read again after Stripe state changed.
#[derive(Debug, Clone, PartialEq)]
pub enum BacklogChange {
    /// The customers whose events changed, with their counts now.
    Customers(HashMap<String, Backlog>),
    /// Every customer's counts (absent customers have none): after many changes at once.
    All(HashMap<String, Backlog>),
}

/// Past this many customers changed at once, one full recount is cheaper.
const BACKLOG_RECOUNT_ALL: usize = 5_000;

/// One usage event and where it stands with Stripe. An event of a type (`record --type`) is
/// one line however many meters it fed: `id` is its first row's (the one with the key),
/// `meter_id`, `amount` and the Stripe state those of its row that came first in the list's
/// order (in the Events view, the one in most trouble), and `meters` every meter it fed.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub id: i64,
    /// Its event type, for an event of a type.
    pub event_type: Option<String>,
    /// Every meter it fed with what it added there, in the order they were recorded (for
    /// an event on one meter, that meter).
    pub meters: Vec<(String, i64)>,
    pub customer_id: String,
    pub customer_name: String,
    pub user_id: Option<String>,
    pub quantity: i64,
    /// The meter it counts on, and what it added to it (`quantity` on the `usage` meter).
    pub meter_id: String,
    pub amount: i64,
    pub occurred_at: String,
    pub attempts: i64,
    pub error: Option<String>,
    pub state: StripeState,
}

/// The customer detail view's data.
#[derive(Debug, Clone)]
pub struct CustomerDetail {
    pub name: String,
    pub stripe_customer_id: Option<String>,
    pub check: UsageCheck,
    /// Units per day of the current period, from its first day to today, zeros included.
    pub daily: Vec<(NaiveDate, i64)>,
    /// The last periods, oldest first, with the plan in force for each.
    pub history: Vec<HistoryRow>,
    pub members: Vec<Member>,
    /// Newest first.
    pub recent: Vec<EventRow>,
    pub backlog: Backlog,
    /// Every meter of plans.toml, in its order, when it has `[[meters]]` (empty with the
    /// implicit `usage` meter alone, which `check` and `daily` describe).
    pub meters: Vec<MeterDetail>,
    pub credits: CreditDetail,
    /// Each limited meter's rolling windows now, in plans.toml's meter order (empty when
    /// the plan has none).
    pub windows: Vec<MeterWindows>,
}

impl CustomerDetail {
    /// Projected date the limit is reached, at the average pace of the period so far.
    pub fn projection(&self, now: DateTime<Utc>) -> Projection {
        project(&self.check, now)
    }
}

/// How many events of a customer the detail view lists.
pub(crate) const RECENT_EVENTS: usize = 12;
/// How many periods the detail view's history shows.
pub(crate) const HISTORY_PERIODS: usize = 6;

/// The dashboard's reads: one full load, then refreshes by change marks; serves the tui (and
/// the backlog of text `status`).
impl Store {
    /// The current marks; compare with earlier ones to see what changed.
    pub fn change_marks(&self) -> Result<ChangeMarks> {
        self.conn
            .prepare_cached(
                "SELECT (SELECT value FROM change_counters WHERE name = 'customers'),
                    (SELECT value FROM change_counters WHERE name = 'stripe'),
                    (SELECT COALESCE(MAX(id), 0) FROM usage_events),
                    (SELECT COALESCE(MAX(id), 0) FROM credit_ledger)",
            )?
            .query_row([], |r| {
                Ok(ChangeMarks {
                    customers: r.get(0)?,
                    stripe: r.get(1)?,
                    last_event_id: r.get(2)?,
                    last_ledger_id: r.get(3)?,
                })
            })
    }

    /// Every customer with its current period and backlog, in one consistent read.
    pub fn dashboard(&self, config: &Config, now: DateTime<Utc>) -> Result<Dashboard> {
        let tx = self.conn.unchecked_transaction()?;
        let dashboard = self.dashboard_in_read(config, now)?;
        tx.finish()?;
        Ok(dashboard)
    }

    fn dashboard_in_read(&self, config: &Config, now: DateTime<Utc>) -> Result<Dashboard> {
        let marks = self.change_marks()?;
        let mut rows = self.dashboard_rows(config, now)?;
        let backlog = self.stripe_backlog(now)?;
        let credits = self.money_credits(now, None)?;
        for row in &mut rows {
            if let Some(b) = backlog.get(&row.customer_id) {
                row.backlog = *b;
            }
            row.credits = credits.customers.get(&row.customer_id).copied().flatten();
        }
        let (window_start, _) = stripe_window(now);
        let oldest: Option<String> = self.conn.query_row(
            "SELECT MIN(occurred_at) FROM usage_events INDEXED BY usage_events_outbox
             WHERE stripe_reported_at IS NULL AND stripe_expired_at IS NULL
               AND occurred_at >= ?1",
            [format_ts(window_start)],
            |r| r.get(0),
        )?;
        // Unparsable text is left to the reads that show it; here it just sets no alarm.
        let next_expiry = oldest
            .and_then(|at| parse_ts(&at).ok())
            .and_then(|at| at.checked_add_signed(now - window_start));
        Ok(Dashboard {
            rows,
            marks,
            next_expiry,
            drift: self.meter_drift(config)?,
            next_credit_change: credits.next_change,
        })
    }

    /// What changed since `since`, read consistently; cheap unless customers changed.
    pub fn dashboard_refresh(
        &self,
        config: &Config,
        since: ChangeMarks,
        now: DateTime<Utc>,
    ) -> Result<Refresh> {
        let tx = self.conn.unchecked_transaction()?;
        let marks = self.change_marks()?;
        let refresh = if marks == since {
            Refresh::Unchanged
        } else if marks.customers != since.customers {
            Refresh::Full(self.dashboard_in_read(config, now)?)
        } else {
            let usage = if marks.last_event_id != since.last_event_id {
                self.usage_changes(config, since.last_event_id, marks.last_event_id, now)?
            } else {
                Vec::new()
            };
            let backlog = if marks.stripe != since.stripe {
                Some(self.backlog_change(since.stripe, now)?)
            } else {
                None
            };
            let credits = if marks.last_ledger_id != since.last_ledger_id {
                Some(self.money_credits(now, Some(since.last_ledger_id))?)
            } else {
                None
            };
            Refresh::Partial {
                usage,
                backlog,
                credits,
                marks,
            }
        };
        tx.finish()?;
        Ok(refresh)
    }

    fn dashboard_rows(&self, config: &Config, now: DateTime<Utc>) -> Result<Vec<DashboardRow>> {
        // Periods depend only on the anchor: compute each distinct one once.
        let mut periods: HashMap<String, (Period, String)> = HashMap::new();
        // With [[meters]], each meter's total in the joined period: one primary-key lookup.
        let (meter_sql, meter_ids, meter_columns) = meters::overview_columns(config, 8);
        let limits = meters::Limits::new(config);
        // Every current period started within the last 31 days: one short range seek per
        // customer, in rowid order so a customer's rows come together.
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT c.id, c.name, c.plan_id, c.stripe_customer_id IS NOT NULL, c.billing_anchor,
                    r.period_start, r.used, c.archived_at IS NOT NULL{meter_sql}
             FROM customers c
             LEFT JOIN usage_records r ON r.customer_id = c.id AND r.period_start >= ?1
             ORDER BY c.rowid",
        ))?;
        let since = format_ts(now - Duration::days(32));
        let mut query = stmt.query(
            &std::iter::once(&since as &dyn crate::db::Param)
                .chain(meter_ids.iter().map(|m| m as &dyn crate::db::Param))
                .collect::<Vec<_>>(),
        )?;
        let mut rows: Vec<DashboardRow> = Vec::new();
        // The current customer's period start as stored text, to match counter rows.
        let mut current_start = String::new();
        let mut used = vec![0; meter_columns.len()];
        while let Some(r) = query.next()? {
            let id: String = r.get(0)?;
            if rows.last().is_none_or(|last| last.customer_id != id) {
                if let Some(last) = rows.last_mut() {
                    finish_row(last, &limits, &mut used);
                }
                let anchor: String = r.get(4)?;
                let (period, start) = match periods.get(&anchor) {
                    Some(p) => p,
                    None => {
                        let date = parse_anchor(&anchor)?;
                        let p = period_containing(date, config.billing.period, now);
                        periods.entry(anchor).or_insert((p, format_ts(p.start)))
                    }
                };
                current_start.clone_from(start);
                let plan_id: String = r.get(2)?;
                rows.push(DashboardRow {
                    customer_id: id,
                    name: r.get(1)?,
                    limit: config.plan(&plan_id).and_then(|p| p.included),
                    plan_id,
                    mapped: r.get(3)?,
                    period: *period,
                    used: 0,
                    backlog: Backlog::default(),
                    archived: r.get(7)?,
                    meters: Vec::new(),
                    shown: 0,
                    credits: None,
                    window: None,
                });
            }
            if r.get::<_, Option<String>>(5)?.as_deref() == Some(current_start.as_str())
                && let Some(last) = rows.last_mut()
            {
                last.used = r.get(6)?;
                for (slot, column) in used.iter_mut().zip(&meter_columns) {
                    *slot = r.get::<_, Option<i64>>(*column)?.unwrap_or(0);
                }
            }
        }
        if let Some(last) = rows.last_mut() {
            finish_row(last, &limits, &mut used);
        }
        if config.has_windows() {
            for row in &mut rows {
                let customer = (row.customer_id.as_str(), row.plan_id.as_str());
                row.window = self.tightest_window(config, customer, row.period, now)?;
            }
        }
        Ok(rows)
    }

    /// Customers with events above `after`, and their current-period counters now.
    fn usage_changes(
        &self,
        config: &Config,
        after: i64,
        upto: i64,
        now: DateTime<Utc>,
    ) -> Result<Vec<UsageChange>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT customer_id, COUNT(*) FILTER (WHERE occurred_at >= ?3),
                    COUNT(*) FILTER (WHERE occurred_at < ?3)
             FROM usage_events
             WHERE id > ?1 AND id <= ?2 GROUP BY customer_id",
        )?;
        let window = format_ts(stripe_window(now).0);
        let touched = stmt
            .query_map(params![after, upto, window], |r| {
                Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<crate::Result<Vec<(String, i64, i64)>>>()?;
        let limits = has_meters(config).then(|| meters::Limits::new(config));
        let mut out = Vec::with_capacity(touched.len());
        for (customer_id, new_events, new_expired) in touched {
            let customer = get(&self.conn, &customer_id)?;
            let period = period_containing(customer.billing_anchor, config.billing.period, now);
            let mut used = self.used_in(&customer_id, period)?;
            let mut figures = Vec::new();
            if let Some(limits) = &limits {
                let totals = self.meter_totals(config, &customer_id, period)?;
                figures = limits.figures(&customer.plan_id, &totals);
                used = figures[nearest_limit(&figures)].used;
            }
            let window = if config.has_windows() {
                let at = (customer_id.as_str(), customer.plan_id.as_str());
                self.tightest_window(config, at, period, now)?
            } else {
                None
            };
            out.push(UsageChange {
                customer_id,
                new_events,
                new_expired,
                used,
                meters: figures,
                window,
            });
        }
        Ok(out)
    }

    /// The fullest window now of each of `customers` (ids; one gone is left out), in one
    /// read: for rows whose windows moved with time alone ([`TightestWindow::moves_at`]).
    pub fn customer_windows(
        &self,
        config: &Config,
        customers: &[String],
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, Option<TightestWindow>)>> {
        let tx = self.conn.unchecked_transaction()?;
        let ids: Vec<&str> = customers.iter().map(String::as_str).collect();
        let found = super::customers::get_many(&self.conn, &ids)?;
        let mut out = Vec::with_capacity(customers.len());
        for id in customers {
            let Some(Some(customer)) = found.get(id) else {
                continue;
            };
            let period = period_containing(customer.billing_anchor, config.billing.period, now);
            let at = (id.as_str(), customer.plan_id.as_str());
            out.push((id.clone(), self.tightest_window(config, at, period, now)?));
        }
        tx.finish()?;
        Ok(out)
    }

    /// Backlog counts of the customers whose events' Stripe state changed after `since`.
    fn backlog_change(&self, since: i64, now: DateTime<Utc>) -> Result<BacklogChange> {
        let changed: Vec<String> = self
            .conn
            .prepare_cached("SELECT customer_id FROM stripe_changes WHERE seq > ?1")?
            .query_map([since], |r| r.get(0))?
            .collect::<crate::Result<_>>()?;
        if changed.len() > BACKLOG_RECOUNT_ALL {
            return Ok(BacklogChange::All(self.stripe_backlog(now)?));
        }
        let mut counts = HashMap::with_capacity(changed.len());
        for customer_id in changed {
            let backlog = self.customer_backlog(&customer_id, now)?;
            counts.insert(customer_id, backlog);
        }
        Ok(BacklogChange::Customers(counts))
    }

    /// Per customer: events still to deliver, failed and expired (as of `now`). Reads only
    /// the partial indexes of unreported events, so its cost follows the backlog, not the
    /// history.
    pub fn stripe_backlog(&self, now: DateTime<Utc>) -> Result<HashMap<String, Backlog>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {BACKLOG_COUNTS}, customer_id
             FROM usage_events INDEXED BY usage_events_backlog
             WHERE stripe_reported_at IS NULL
             GROUP BY customer_id"
        ))?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(3)?, backlog_of(r)?)))?;
        let mut counts: HashMap<String, Backlog> = rows.collect::<crate::Result<_>>()?;
        // Events past the window that no sync has marked yet: expired all the same.
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {STALE_COUNTS}, customer_id
             FROM usage_events INDEXED BY usage_events_outbox
             WHERE stripe_reported_at IS NULL AND stripe_expired_at IS NULL AND occurred_at < ?1
             GROUP BY customer_id"
        ))?;
        let window = format_ts(stripe_window(now).0);
        let stale = stmt.query_map([window], |r| Ok((r.get::<_, String>(2)?, stale_of(r)?)))?;
        for row in stale {
            let (customer_id, stale) = row?;
            counts.entry(customer_id).or_default().expire(stale);
        }
        Ok(counts)
    }

    /// Everything the detail view shows about one customer.
    pub fn customer_detail(
        &self,
        config: &Config,
        customer_id: &str,
        now: DateTime<Utc>,
    ) -> Result<CustomerDetail> {
        let tx = self.conn.unchecked_transaction()?;
        let customer = get(&self.conn, customer_id)?;
        let members = super::counter_reads::members_in(&self.conn, config, customer_id, now)?;
        let check = members.check;
        let daily = self.daily_usage(customer_id, &check, now)?;
        let default_meter = &config.default_meter().id;
        let history = super::meters::standing::meter_history_in(
            &self.conn,
            config,
            customer_id,
            default_meter,
            HISTORY_PERIODS,
            now,
        )?;
        // Enough rows for as many events when each fed every meter (a row per meter).
        let rows = RECENT_EVENTS * config.meters.len().max(1);
        let recent = self.events_where(
            "e.customer_id = ?1 ORDER BY e.customer_id DESC, e.occurred_at DESC, e.id DESC",
            params![customer_id, rows as i64],
        )?;
        let mut recent = self.one_line_per_event(recent)?;
        recent.truncate(RECENT_EVENTS);
        expire_stale(&mut recent, &format_ts(stripe_window(now).0));
        let backlog = self.customer_backlog(customer_id, now)?;
        let meters = self.meter_details(config, customer_id, &check, now)?;
        let period = Period {
            start: check.period_start,
            end: check.period_end,
        };
        let windows = self.meter_windows(config, (customer_id, &customer.plan_id), period, now)?;
        tx.finish()?;
        // Its own read: the balance is credits.rs's, which opens one.
        let credits = self.credit_detail(customer_id, now)?;
        Ok(CustomerDetail {
            name: customer.name,
            stripe_customer_id: customer.stripe_customer_id,
            check,
            daily,
            history,
            members: members.members,
            recent,
            backlog,
            meters,
            credits,
            windows,
        })
    }

    fn customer_backlog(&self, customer_id: &str, now: DateTime<Utc>) -> Result<Backlog> {
        let mut backlog = self
            .conn
            .prepare_cached(&format!(
                "SELECT {BACKLOG_COUNTS}
                 FROM usage_events INDEXED BY usage_events_backlog
                 WHERE stripe_reported_at IS NULL AND customer_id = ?1"
            ))?
            .query_row([customer_id], backlog_of)
            .optional()?
            .unwrap_or_default();
        let stale = self
            .conn
            .prepare_cached(&format!(
                "SELECT {STALE_COUNTS} FROM usage_events
                 WHERE customer_id = ?1 AND occurred_at < ?2
                   AND stripe_reported_at IS NULL AND stripe_expired_at IS NULL"
            ))?
            .query_row(
                params![customer_id, format_ts(stripe_window(now).0)],
                stale_of,
            )?;
        backlog.expire(stale);
        Ok(backlog)
    }

    fn daily_usage(
        &self,
        customer_id: &str,
        check: &UsageCheck,
        now: DateTime<Utc>,
    ) -> Result<Vec<(NaiveDate, i64)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT substr(occurred_at, 1, 10), SUM(quantity) FROM usage_events
             WHERE customer_id = ?1 AND occurred_at >= ?2 AND occurred_at < ?3
               AND meter_id = 'usage'
             GROUP BY 1",
        )?;
        let sums: HashMap<String, i64> = stmt
            .query_map(
                params![
                    customer_id,
                    format_ts(check.period_start),
                    format_ts(check.period_end)
                ],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?
            .collect::<crate::Result<_>>()?;
        let period = Period {
            start: check.period_start,
            end: check.period_end,
        };
        let days = meters::period_days(period, now)
            .into_iter()
            .map(|d| {
                let used = sums
                    .get(&d.format("%Y-%m-%d").to_string())
                    .copied()
                    .unwrap_or(0);
                (d, used)
            })
            .collect();
        Ok(days)
    }

    /// Events needing attention across customers: failed and expired first (past Stripe's
    /// window at `now` counts as expired, marked or not), then the pending (and unmapped)
    /// ones; each group newest first by when the usage happened; at most `limit` in all.
    pub fn problem_events(&self, limit: usize, now: DateTime<Utc>) -> Result<Vec<EventRow>> {
        let limit = limit as i64;
        let window = format_ts(stripe_window(now).0);
        let mut out = self.events_where(
            "e.stripe_reported_at IS NULL
               AND (e.stripe_failed_at IS NOT NULL OR e.stripe_expired_at IS NOT NULL
                    OR e.occurred_at < ?1)
             ORDER BY e.occurred_at DESC, e.id DESC",
            params![window, limit],
        )?;
        let rest = limit - out.len() as i64;
        if rest > 0 {
            out.extend(self.events_where(
                "e.stripe_reported_at IS NULL
                   AND e.stripe_failed_at IS NULL AND e.stripe_expired_at IS NULL
                   AND e.occurred_at >= ?1
                 ORDER BY e.occurred_at DESC, e.id DESC",
                params![window, rest],
            )?);
        }
        let mut out = self.one_line_per_event(out)?;
        expire_stale(&mut out, &window);
        Ok(out)
    }

    /// `rows` with the rows of one event of a type as one line, the first of them (in
    /// `rows`' order) standing for it, and each event's meters: every row it has, read by
    /// the event's id (its first row) and `event_of`.
    fn one_line_per_event(&self, rows: Vec<EventRow>) -> Result<Vec<EventRow>> {
        let mut seen = std::collections::HashSet::new();
        let mut lines: Vec<EventRow> = rows.into_iter().filter(|e| seen.insert(e.id)).collect();
        let typed: Vec<i64> = lines
            .iter()
            .filter(|e| e.event_type.is_some())
            .map(|e| e.id)
            .collect();
        let mut fed: HashMap<i64, Vec<(String, i64)>> = HashMap::new();
        for (list, ids) in crate::db::in_lists(&typed) {
            let params: Vec<&dyn crate::db::Param> = ids.iter().chain(&ids).copied().collect();
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT COALESCE(event_of, id), meter_id, COALESCE(amount, quantity)
                 FROM usage_events WHERE id IN ({list}) OR event_of IN ({list}) ORDER BY id"
            ))?;
            let rows = stmt.query_map(params.as_slice(), |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            for row in rows {
                let (event, meter, amount) = row?;
                fed.entry(event).or_default().push((meter, amount));
            }
        }
        for line in &mut lines {
            if let Some(meters) = fed.remove(&line.id) {
                line.meters = meters;
            }
        }
        Ok(lines)
    }

    /// Events matching `filter_and_order` (SQL over `e` and `c`), the last parameter being
    /// the LIMIT.
    fn events_where(
        &self,
        filter_and_order: &str,
        params: &[&dyn crate::db::Param],
    ) -> Result<Vec<EventRow>> {
        let sql = format!(
            "SELECT e.id, e.customer_id, c.name, e.user_id, e.quantity, e.occurred_at,
                    e.stripe_attempts, e.stripe_error, e.stripe_reported_at IS NOT NULL,
                    e.stripe_failed_at IS NOT NULL, e.stripe_expired_at IS NOT NULL,
                    c.stripe_customer_id IS NULL, e.meter_id, COALESCE(e.amount, e.quantity),
                    COALESCE(e.event_of, e.id), e.event_type
             FROM usage_events e JOIN customers c ON c.id = e.customer_id
             WHERE {filter_and_order} LIMIT ?{}",
            params.len()
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params, |r| {
            let state = match (r.get(8)?, r.get(9)?, r.get(10)?, r.get(11)?) {
                (true, _, _, _) => StripeState::Reported,
                (_, _, true, _) => StripeState::Expired,
                (_, true, _, _) => StripeState::Failed,
                (_, _, _, true) => StripeState::Unmapped,
                _ => StripeState::Pending,
            };
            let meter_id: String = r.get(12)?;
            let amount: i64 = r.get(13)?;
            Ok(EventRow {
                id: r.get(14)?,
                event_type: r.get(15)?,
                meters: vec![(meter_id.clone(), amount)],
                customer_id: r.get(1)?,
                customer_name: r.get(2)?,
                user_id: r.get(3)?,
                quantity: r.get(4)?,
                meter_id,
                amount,
                occurred_at: r.get(5)?,
                attempts: r.get(6)?,
                error: r.get(7)?,
                state,
            })
        })?;
        rows.collect::<crate::Result<_>>()
    }
}

/// Events past the window (stored text from `format_ts`, which sorts as time) are expired,
/// whether or not a sync has marked them.
fn expire_stale(events: &mut [EventRow], window_start: &str) {
    for e in events {
        if e.state != StripeState::Reported && e.occurred_at.as_str() < window_start {
            e.state = StripeState::Expired;
        }
    }
}

/// Over unreported events not yet marked expired: how many, how many of them failed.
const STALE_COUNTS: &str = "COUNT(*), COUNT(stripe_failed_at)";

/// Unmarked events past the window: (all, failed).
fn stale_of(r: &crate::db::Row) -> crate::Result<(i64, i64)> {
    Ok((r.get(0)?, r.get(1)?))
}

impl Backlog {
    /// Count `(all, failed)` unmarked events past the window as expired.
    fn expire(&mut self, (all, failed): (i64, i64)) {
        self.unreported -= all;
        self.failed -= failed;
        self.expired += all;
    }
}

/// Over unreported events: still to deliver (failed included), failed, expired.
const BACKLOG_COUNTS: &str = "COUNT(*) - COUNT(stripe_expired_at),
     COUNT(CASE WHEN stripe_failed_at IS NOT NULL AND stripe_expired_at IS NULL THEN 1 END),
     COUNT(stripe_expired_at)";

fn backlog_of(r: &crate::db::Row) -> crate::Result<Backlog> {
    Ok(Backlog {
        unreported: r.get(0)?,
        failed: r.get(1)?,
        expired: r.get(2)?,
    })
}

/// A customer's row is read: with meters, its figures, and the meter nearest its limit shown.
fn finish_row(row: &mut DashboardRow, limits: &meters::Limits, used: &mut [i64]) {
    if used.is_empty() {
        return;
    }
    row.meters = limits.figures(&row.plan_id, used);
    row.show_meter(None);
    used.fill(0);
}

fn parse_anchor(text: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|e| {
        crate::Error::Corrupt(format!(
            "billing_anchor \"{}\" is not a date: {e}",
            text.escape_debug()
        ))
    })
}
