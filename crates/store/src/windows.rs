//! Rolling-window limits (`[[plans.meters.ID.limits]]`): each limited meter's usage kept over
//! time in `window_buckets` (migration 19), and what the record path and `check` decide from
//! it. A record batch holds the write lock, so the buckets it reads cannot move under it; what
//! it adds itself, and what live reservations hold (at the second each was made), it keeps in
//! memory beside them, so every event is decided on everything before it.

mod buckets;
mod tally;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use crate::Result;
use crate::billing::window::{fixed_window, released_by, sliding_peak};
use crate::billing::{Period, Thresholds, WarningLevel, format_ts};
use crate::config::{Config, Limit, WindowKind};
use crate::db::Connection;
use meterline_core::{MeteredCheck, WindowRefusal, WindowUsage};

/// Units at each second.
type Points = BTreeMap<i64, i64>;

/// One customer × meter.
type Key = (String, String);

/// One window of a meter: its kind and length.
type WindowKey = (WindowKind, i64);

/// The windows' state in one transaction.
#[derive(Default)]
pub(crate) struct Windows {
    /// Whether a live reservation may exist (if not, no hold is read).
    reservations: bool,
    /// This batch's counted events, not written yet.
    added: HashMap<Key, Points>,
    /// Live reservations' holds, per customer read once: meter -> points.
    holds: HashMap<String, HashMap<String, Points>>,
    /// Each window's running sum, per customer × meter, by the window's kind and length.
    tallies: HashMap<Key, Vec<(WindowKey, tally::Tally)>>,
    /// The last second with stored usage.
    latest: HashMap<Key, Option<i64>>,
    /// Per limited meter, the first second whose minutes are kept.
    kept_from: HashMap<String, i64>,
}

/// Where an event falls in one window: the most it holds there before the event, and the
/// window (fixed), or the crossing's instant and when what came before it has left
/// (sliding), for its alerts.
pub(crate) struct Step<'l> {
    pub limit: &'l Limit,
    pub before: i64,
    pub span: Period,
}

impl Step<'_> {
    /// The window's alert when `units` more cross a level in it (`None` otherwise), as of
    /// `now`: a window that has ended by then alerts nothing, as a closed period does not.
    pub(crate) fn crossing<'a>(
        &'a self,
        (customer, plan, meter): (&'a str, &'a str, &'a str),
        units: i64,
        thresholds: &Thresholds,
        now: DateTime<Utc>,
    ) -> Option<crate::alerts::Crossing<'a>> {
        let level =
            |used: i64| WarningLevel::of(Some(used as f64 / self.limit.limit as f64), thresholds);
        let used = self.before.saturating_add(units);
        let (before, after) = (level(self.before), level(used));
        (after > before && self.span.end > now).then(|| crate::alerts::Crossing {
            customer,
            plan,
            meter,
            window: Some(self.limit),
            before,
            after,
            used,
            limit: Some(self.limit.limit),
            ratio: Some(used as f64 / self.limit.limit as f64),
            span: self.span,
        })
    }
}

impl Windows {
    /// The windows of one transaction at `now`: `reservations` says whether a live
    /// reservation may exist (if not, no hold is read).
    pub(crate) fn new(config: &Config, reservations: bool, now: DateTime<Utc>) -> Windows {
        let kept_from = config
            .meters
            .iter()
            .filter_map(|m| Some((m.id.clone(), kept_from(config.longest_window(&m.id)?, now))))
            .collect();
        Windows {
            reservations,
            kept_from,
            ..Windows::default()
        }
    }

    /// True when some plan limits `meter`: its usage is kept over time.
    pub(crate) fn keeps(&self, meter: &str) -> bool {
        self.kept_from.contains_key(meter)
    }

    /// An event of `units` at `at` on `customer`'s `meter` under `limits`: where it falls in
    /// each window, or the first blocking limit it would pass (when `enforce`; a settle
    /// counts whatever the windows say). The refusal's `retry_after` is left to the caller,
    /// which knows every meter the event feeds (`wait_for_all` on each).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn decide<'l>(
        &mut self,
        conn: &Connection,
        (customer, meter): (&str, &str),
        limits: &'l [Limit],
        units: i64,
        at: DateTime<Utc>,
        period: Period,
        now: DateTime<Utc>,
        enforce: bool,
    ) -> Result<std::result::Result<Vec<Step<'l>>, WindowRefusal>> {
        self.load_holds(conn, customer, now)?;
        let at = at.timestamp();
        let mut steps = Vec::with_capacity(limits.len());
        let kept_from = self.kept_from.get(meter).copied();
        for limit in limits {
            if kept_from.is_some_and(|kept| window_start(limit, at, period) < kept) {
                // So late that every window it falls in ended over a day ago: its seconds
                // are no longer kept, and no window it could pass decides anything now.
                continue;
            }
            let (before, (from, to)) = match limit.kind {
                WindowKind::Sliding => (
                    self.peak(conn, customer, meter, at, limit)?,
                    (at, at.saturating_add(limit.window_secs)),
                ),
                WindowKind::Fixed => {
                    let (from, to) = fixed_window(limit, at, seconds(period));
                    let key = (limit.kind, limit.window_secs);
                    (
                        self.tallied(conn, (customer, meter), key, from, to)?,
                        (from, to),
                    )
                }
            };
            if enforce && limit.blocks() && before.saturating_add(units) > limit.limit {
                return Ok(Err(WindowRefusal {
                    meter: meter.to_string(),
                    window: limit.window().to_string(),
                    kind: limit.kind,
                    limit: limit.limit,
                    used: before,
                    retry_after: None,
                }));
            }
            steps.push(Step {
                limit,
                before,
                span: Period {
                    start: instant(from),
                    end: instant(to),
                },
            });
        }
        Ok(Ok(steps))
    }

    /// Count `units` at `at`: later events of the batch see them, and `flush` writes them.
    pub(crate) fn add(&mut self, customer: &str, meter: &str, at: DateTime<Utc>, units: i64) {
        let key = (customer.to_string(), meter.to_string());
        let at = at.timestamp();
        for (_, tally) in self.tallies.get_mut(&key).into_iter().flatten() {
            tally.note(at, units);
        }
        let sum = self.added.entry(key).or_default().entry(at).or_default();
        *sum = sum.saturating_add(units);
    }

    /// The units in [from, to) of the window `key` (kind, length), from its running sum:
    /// moved forward when it can be, else summed afresh.
    fn tallied(
        &mut self,
        conn: &Connection,
        (customer, meter): (&str, &str),
        key: WindowKey,
        from: i64,
        to: i64,
    ) -> Result<i64> {
        let latest = self.stored_latest(conn, customer, meter)?;
        let Windows {
            added,
            holds,
            tallies,
            ..
        } = self;
        let beside: Vec<&Points> = beside(added, holds, customer, meter).collect();
        let line = tally::Line {
            conn,
            customer,
            meter,
            beside: &beside,
        };
        let kept = tallies
            .entry((customer.to_string(), meter.to_string()))
            .or_default();
        match kept.iter_mut().find(|(k, _)| *k == key) {
            Some((_, tally)) if tally.is(from, to) => {}
            Some((_, tally)) if tally.can_move_to(from, to, latest) => {
                tally.move_to(&line, from, to)?;
            }
            Some((_, tally)) => *tally = tally::Tally::new(&line, from, to)?,
            None => kept.push((key, tally::Tally::new(&line, from, to)?)),
        }
        Ok(kept
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(0, |(_, t)| t.units()))
    }

    /// Write what the batch counted.
    pub(crate) fn flush(&mut self, conn: &Connection) -> Result<()> {
        for (customer, meter) in self.added.keys() {
            if let Some(&kept) = self.kept_from.get(meter) {
                buckets::prune(conn, customer, meter, kept)?;
            }
        }
        buckets::add_all(conn, std::mem::take(&mut self.added))
    }

    fn load_holds(&mut self, conn: &Connection, customer: &str, now: DateTime<Utc>) -> Result<()> {
        if !self.reservations || self.holds.contains_key(customer) {
            return Ok(());
        }
        let mut per_meter: HashMap<String, Points> = HashMap::new();
        for hold in crate::reservations::live_holds(conn, customer, now)? {
            let made = crate::billing::parse_ts(&hold.created_at)
                .map_err(|e| crate::Error::Database(format!("reservations.created_at: {e}")))?
                .timestamp();
            let at = per_meter
                .entry(hold.meter)
                .or_default()
                .entry(made)
                .or_default();
            *at = at.saturating_add(hold.units);
        }
        self.holds.insert(customer.to_string(), per_meter);
        Ok(())
    }

    /// What is kept in memory beside the buckets: the batch's events and the live holds.
    fn beside<'s>(&'s self, customer: &str, meter: &str) -> impl Iterator<Item = &'s Points> {
        beside(&self.added, &self.holds, customer, meter)
    }

    /// The units in [from, to).
    fn sum(
        &self,
        conn: &Connection,
        customer: &str,
        meter: &str,
        from: i64,
        to: i64,
    ) -> Result<i64> {
        let stored = buckets::sum(conn, customer, meter, from, to)?;
        Ok(self
            .beside(customer, meter)
            .flat_map(|points| points.range(from..to).map(|(_, u)| *u))
            .fold(stored, i64::saturating_add))
    }

    /// The units at each second in [from, to), sorted.
    fn points(
        &self,
        conn: &Connection,
        customer: &str,
        meter: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, i64)>> {
        let mut all: Points = buckets::seconds(conn, customer, meter, from, to)?
            .into_iter()
            .collect();
        for points in self.beside(customer, meter) {
            for (&at, &units) in points.range(from..to) {
                let sum = all.entry(at).or_default();
                *sum = sum.saturating_add(units);
            }
        }
        Ok(all.into_iter().collect())
    }

    /// The most a sliding window holds anywhere an event at `at` falls: the window ending at
    /// `at` when nothing is later (one sum), else every later window (a late event).
    fn peak(
        &mut self,
        conn: &Connection,
        customer: &str,
        meter: &str,
        at: i64,
        limit: &Limit,
    ) -> Result<i64> {
        let window = limit.window_secs;
        let from = at.saturating_sub(window).saturating_add(1);
        if self.latest(conn, customer, meter)? <= Some(at) {
            let key = (limit.kind, window);
            return self.tallied(conn, (customer, meter), key, from, at.saturating_add(1));
        }
        let points = self.points(conn, customer, meter, from, at.saturating_add(window))?;
        Ok(sliding_peak(&points, at, window))
    }

    /// The last second with stored usage (read once: the batch holds the write lock).
    fn stored_latest(
        &mut self,
        conn: &Connection,
        customer: &str,
        meter: &str,
    ) -> Result<Option<i64>> {
        let key = (customer.to_string(), meter.to_string());
        if let Some(&latest) = self.latest.get(&key) {
            return Ok(latest);
        }
        let latest = buckets::latest(conn, customer, meter)?;
        self.latest.insert(key, latest);
        Ok(latest)
    }

    /// The last second with usage, stored or beside.
    fn latest(&mut self, conn: &Connection, customer: &str, meter: &str) -> Result<Option<i64>> {
        let stored = self.stored_latest(conn, customer, meter)?;
        Ok(self
            .beside(customer, meter)
            .filter_map(|points| points.last_key_value().map(|(at, _)| *at))
            .chain(stored)
            .max())
    }

    /// How long until `units` sent now would fit every blocking window of `limits`, not
    /// only the one that refused them (a sliding window may free room long before a full
    /// fixed one resets).
    pub(crate) fn wait_for_all(
        &mut self,
        conn: &Connection,
        at: (&str, &str),
        limits: &[Limit],
        units: i64,
        now: DateTime<Utc>,
        period: Period,
    ) -> Result<Wait> {
        let mut longest = Wait::Now;
        for limit in limits.iter().filter(|l| l.blocks()) {
            longest = longest.and(self.wait(conn, at, limit, units, now, period)?);
        }
        Ok(longest)
    }

    /// How long until `units` sent now would fit `limit`.
    fn wait(
        &mut self,
        conn: &Connection,
        (customer, meter): (&str, &str),
        limit: &Limit,
        units: i64,
        now: DateTime<Utc>,
        period: Period,
    ) -> Result<Wait> {
        if units > limit.limit {
            return Ok(Wait::Never);
        }
        let now = now.timestamp();
        let state = self.state(conn, customer, meter, limit, now, period)?;
        let over = state.used.saturating_add(units).saturating_sub(limit.limit);
        if over <= 0 {
            return Ok(Wait::Now);
        }
        let fits_at = match limit.kind {
            WindowKind::Fixed => Some(state.ends),
            WindowKind::Sliding => {
                let points = self.points(conn, customer, meter, state.starts, now + 1)?;
                released_by(&points, limit.window_secs, over).map(|(at, _)| at)
            }
        };
        Ok(fits_at.map_or(Wait::Never, |at| Wait::For(at.saturating_sub(now).max(1))))
    }

    /// `limit`'s window at `now`: what it holds, and where it lies.
    fn state(
        &mut self,
        conn: &Connection,
        customer: &str,
        meter: &str,
        limit: &Limit,
        now: i64,
        period: Period,
    ) -> Result<State> {
        let (starts, ends) = match limit.kind {
            WindowKind::Fixed => {
                // A late event's period may have ended by `now`: its windows are all past,
                // and the one that would hold `now` is empty (it belongs to no window of it).
                let (starts, ends) = fixed_window(limit, now, seconds(period));
                (starts, ends.max(starts))
            }
            WindowKind::Sliding => (
                now.saturating_sub(limit.window_secs).saturating_add(1),
                now.saturating_add(1),
            ),
        };
        let used = self.sum(conn, customer, meter, starts, ends)?;
        Ok(State { starts, ends, used })
    }

    /// `limit` as `check` shows it at `now`.
    #[allow(clippy::too_many_arguments)]
    fn usage(
        &mut self,
        conn: &Connection,
        customer: &str,
        meter: &str,
        limit: &Limit,
        now: DateTime<Utc>,
        period: Period,
        thresholds: &Thresholds,
    ) -> Result<WindowUsage> {
        let now = now.timestamp();
        let state = self.state(conn, customer, meter, limit, now, period)?;
        let remaining = limit.limit.saturating_sub(state.used).max(0);
        let mut usage = WindowUsage {
            window: limit.window().to_string(),
            kind: limit.kind,
            at_limit: limit.at_limit,
            used: state.used,
            limit: limit.limit,
            remaining,
            level: WarningLevel::of(Some(state.used as f64 / limit.limit as f64), thresholds),
            resets_at: None,
            frees_at: None,
            frees_units: None,
        };
        match limit.kind {
            WindowKind::Fixed => usage.resets_at = Some(format_ts(instant(state.ends))),
            WindowKind::Sliding => {
                let oldest = buckets::first(conn, customer, meter, state.starts, state.ends)?;
                let held = self
                    .beside(customer, meter)
                    .filter_map(|p| p.range(state.starts..state.ends).next())
                    .map(|(at, units)| (*at, *units));
                let points: Vec<(i64, i64)> = oldest.into_iter().chain(held).collect();
                if let Some(at) = points.iter().map(|p| p.0).min() {
                    let frees = points.iter().filter(|p| p.0 == at).map(|p| p.1).sum();
                    usage.frees_at = Some(format_ts(instant(at.saturating_add(limit.window_secs))));
                    usage.frees_units = Some(frees);
                }
            }
        }
        Ok(usage)
    }
}

/// A meter's minutes (and their seconds) are kept for twice its longest window and a day: an
/// event up to a window late is decided exactly on every window it falls in (they reach a window
/// past it), and one later still falls only in windows that ended over a day ago.
fn kept_from(longest_window: i64, now: DateTime<Utc>) -> i64 {
    now.timestamp()
        .saturating_sub(longest_window.saturating_mul(2))
        .saturating_sub(86_400)
}

/// Where the stretch a decision on `limit` reads begins, for an event at `at`.
fn window_start(limit: &Limit, at: i64, period: Period) -> i64 {
    match limit.kind {
        WindowKind::Sliding => at.saturating_sub(limit.window_secs),
        WindowKind::Fixed => fixed_window(limit, at, seconds(period)).0,
    }
}

/// `customer`'s `meter` in the batch's events (`added`) and the live holds (`holds`): a free
/// function, so a tally can read them while another field is borrowed.
fn beside<'s>(
    added: &'s HashMap<Key, Points>,
    holds: &'s HashMap<String, HashMap<String, Points>>,
    customer: &str,
    meter: &str,
) -> impl Iterator<Item = &'s Points> {
    let key = (customer.to_string(), meter.to_string());
    added
        .get(&key)
        .into_iter()
        .chain(holds.get(customer).and_then(|h| h.get(meter)))
}

/// How long an amount waits for a window to take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    Now,
    For(i64),
    Never,
}

impl Wait {
    /// Waiting for both this and `other`: the longer.
    pub(crate) fn and(self, other: Wait) -> Wait {
        match (self, other) {
            (Wait::Never, _) | (_, Wait::Never) => Wait::Never,
            (Wait::For(a), Wait::For(b)) => Wait::For(a.max(b)),
            (Wait::For(a), Wait::Now) | (Wait::Now, Wait::For(a)) => Wait::For(a),
            (Wait::Now, Wait::Now) => Wait::Now,
        }
    }

    /// `Retry-After`: seconds when waiting helps; none when it cannot (more than a limit)
    /// or the amount fits now (a late event was refused).
    pub(crate) fn seconds(self) -> Option<i64> {
        match self {
            Wait::For(secs) => Some(secs),
            Wait::Now | Wait::Never => None,
        }
    }
}

struct State {
    starts: i64,
    ends: i64,
    used: i64,
}

fn seconds(period: Period) -> (i64, i64) {
    (period.start.timestamp(), period.end.timestamp())
}

fn instant(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap_or_default()
}

/// `check` with each meter's windows: their usage at `now`, and `allowed` false where a
/// blocking window is full. `reservations`: whether a live reservation may exist (else no
/// hold is read).
pub(crate) fn with_windows(
    conn: &Connection,
    config: &Config,
    check: &mut MeteredCheck,
    reservations: bool,
    now: DateTime<Utc>,
) -> Result<()> {
    let customer = check.check.customer.clone();
    let plan = check.check.plan.clone();
    let mut windows = Windows::new(config, reservations, now);
    for meter in &mut check.meters {
        let period = Period {
            start: meter.check.period_start,
            end: meter.check.period_end,
        };
        let at = (customer.as_str(), meter.meter.as_str());
        meter.windows = windows.of_meter(conn, config, &plan, at, period, now)?;
        if meter.windows.iter().any(WindowUsage::full) {
            meter.check.allowed = false;
        }
    }
    if let Some(first) = check.meters.first() {
        check.windows = first.windows.clone();
    }
    if check.meters.iter().any(|m| !m.check.allowed) {
        check.check.allowed = false;
    }
    Ok(())
}

/// Every window `plan` puts on `customer`'s `meter`, at `now` in `period` (the current one):
/// what `check` shows, for readers that build their own answers (the dashboard).
pub(crate) fn meter_windows(
    conn: &Connection,
    config: &Config,
    plan: &str,
    (customer, meter): (&str, &str),
    period: Period,
    now: DateTime<Utc>,
) -> Result<Vec<WindowUsage>> {
    Windows::new(config, true, now).of_meter(conn, config, plan, (customer, meter), period, now)
}

impl Windows {
    fn of_meter(
        &mut self,
        conn: &Connection,
        config: &Config,
        plan: &str,
        (customer, meter): (&str, &str),
        period: Period,
        now: DateTime<Utc>,
    ) -> Result<Vec<WindowUsage>> {
        let limits = config
            .plan(plan)
            .and_then(|p| p.meters.get(meter))
            .map_or(&[][..], |t| t.limits.as_slice());
        if limits.is_empty() {
            return Ok(Vec::new());
        }
        self.load_holds(conn, customer, now)?;
        limits
            .iter()
            .map(|limit| {
                self.usage(
                    conn,
                    customer,
                    meter,
                    limit,
                    now,
                    period,
                    &config.thresholds,
                )
            })
            .collect()
    }
}
