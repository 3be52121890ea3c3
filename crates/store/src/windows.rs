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

/// Nothing at any second: what a meter without batch points or holds has beside its buckets.
static NOTHING: Points = BTreeMap::new();

/// One window of a meter: its kind and length.
type WindowKey = (WindowKind, i64);

/// The windows' state in one transaction.
#[derive(Default)]
pub(crate) struct Windows {
    /// Whether a live reservation may exist (if not, no hold is read).
    reservations: bool,
    /// Per customer, then meter: what this transaction keeps of its time line (found by
    /// `&str`, a key is copied only when first seen).
    lines: hashbrown::HashMap<String, hashbrown::HashMap<String, Timeline>>,
    /// Live reservations' holds, per customer read once: meter -> points.
    holds: HashMap<String, HashMap<String, Points>>,
    /// Per limited meter, the first second whose minutes are kept.
    kept_from: HashMap<String, i64>,
    /// The batch's last event second, when known: how far its windows will move.
    last: Option<i64>,
}

/// One customer × meter in a transaction: the batch's counted events (not written yet), each
/// window's running sum, and the last second stored. Found once per decision: an event's
/// windows cost two map lookups, not one per read.
#[derive(Default)]
struct Timeline {
    added: Points,
    /// Each window's running sum, by the window's kind and length.
    tallies: Vec<(WindowKey, tally::Tally)>,
    /// The last stored minute with its seconds, once read (the batch holds the write lock):
    /// the last second with stored usage, and what its write merges into.
    last_stored: Option<Option<buckets::Minute>>,
}

/// Where a customer's meter is read from: its buckets, and beside them, in memory, the batch's
/// events and the live holds (each as units per second).
pub(super) struct Line<'a> {
    pub conn: &'a Connection,
    pub customer: &'a str,
    pub meter: &'a str,
    pub beside: [&'a Points; 2],
}

impl Line<'_> {
    /// What is kept beside the buckets in [from, to).
    fn beside_sum(&self, from: i64, to: i64) -> i64 {
        if from >= to {
            return 0;
        }
        self.beside
            .iter()
            .flat_map(|points| points.range(from..to).map(|(_, u)| *u))
            .fold(0, i64::saturating_add)
    }

    /// The units in [from, to).
    fn sum(&self, from: i64, to: i64) -> Result<i64> {
        let stored = buckets::sum(self.conn, self.customer, self.meter, from, to)?;
        Ok(stored.saturating_add(self.beside_sum(from, to)))
    }

    /// The units at each second in [from, to), sorted.
    fn points(&self, from: i64, to: i64) -> Result<Vec<(i64, i64)>> {
        let mut all: Points = buckets::seconds(self.conn, self.customer, self.meter, from, to)?
            .into_iter()
            .collect();
        for points in self.beside {
            for (&at, &units) in points.range(from..to) {
                let sum = all.entry(at).or_default();
                *sum = sum.saturating_add(units);
            }
        }
        Ok(all.into_iter().collect())
    }
}

/// Where an event falls in one window: the most it holds there before the event, and the
/// window (fixed), or the crossing's instant and when what came before it has left
/// (sliding), for its alerts.
pub(crate) struct Step<'l> {
    pub limit: &'l Limit,
    pub before: i64,
    /// The window's [from, to) in seconds (made an instant only for an alert).
    pub span: (i64, i64),
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
        let (from, to) = self.span;
        (after > before && to > now.timestamp()).then(|| crate::alerts::Crossing {
            customer,
            plan,
            meter,
            window: Some(self.limit),
            before,
            after,
            used,
            limit: Some(self.limit.limit),
            ratio: Some(used as f64 / self.limit.limit as f64),
            span: Period {
                start: instant(from),
                end: instant(to),
            },
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

    /// The same, for a batch whose last event is at `last`: a window moving with a backfill
    /// reads the seconds that will leave it in one query, not a growing chunk at a time.
    pub(crate) fn reaching(self, last: Option<DateTime<Utc>>) -> Windows {
        Windows {
            last: last.map(|at| at.timestamp()),
            ..self
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
        let kept_from = self.kept_from.get(meter).copied();
        let self_last = self.last.unwrap_or(i64::MIN);
        let (timeline, held) = self.timeline(customer, meter);
        let at = at.timestamp();
        let line = At {
            conn,
            customer,
            meter,
            held,
            last: self_last,
        };
        if timeline.last_stored.is_none() {
            timeline.open(line, limits, at, period)?;
        }
        let mut steps = Vec::with_capacity(limits.len());
        for limit in limits {
            if kept_from.is_some_and(|kept| window_start(limit, at, period) < kept) {
                // So late that every window it falls in ended over a day ago: its seconds
                // are no longer kept, and no window it could pass decides anything now.
                continue;
            }
            let (before, (from, to)) = match limit.kind {
                WindowKind::Sliding => (
                    timeline.peak(line, at, limit, period)?,
                    (at, at.saturating_add(limit.window_secs)),
                ),
                WindowKind::Fixed => {
                    let (from, to) = window_at(limit, at, period);
                    let key = (limit.kind, limit.window_secs);
                    (timeline.tallied(line, key, from, to)?, (from, to))
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
                span: (from, to),
            });
        }
        Ok(Ok(steps))
    }

    /// Count `units` at `at`: later events of the batch see them, and `flush` writes them.
    pub(crate) fn add(&mut self, customer: &str, meter: &str, at: DateTime<Utc>, units: i64) {
        let at = at.timestamp();
        let (timeline, _) = self.timeline(customer, meter);
        for (_, tally) in &mut timeline.tallies {
            tally.note(at, units);
        }
        let sum = timeline.added.entry(at).or_default();
        *sum = sum.saturating_add(units);
    }

    /// `customer`'s `meter` in this transaction (begun on first use), and its live holds.
    fn timeline(&mut self, customer: &str, meter: &str) -> (&mut Timeline, &Points) {
        let timeline = self
            .lines
            .entry_ref(customer)
            .or_default()
            .entry_ref(meter)
            .or_default();
        (timeline, held(&self.holds, customer, meter))
    }

    /// Write what the batch counted.
    pub(crate) fn flush(&mut self, conn: &Connection) -> Result<()> {
        let mut added = Vec::new();
        for (customer, meters) in &self.lines {
            for (meter, timeline) in meters.iter().filter(|(_, t)| !t.added.is_empty()) {
                let mut last_stored = timeline.last_stored.as_ref().and_then(Option::as_ref);
                if let Some(&kept) = self.kept_from.get(meter).filter(|_| timeline.prunes()) {
                    buckets::prune(conn, customer, meter, kept)?;
                    last_stored = last_stored.filter(|(minute, _)| *minute >= kept);
                }
                added.push(buckets::Added {
                    customer,
                    meter,
                    points: &timeline.added,
                    last_stored,
                });
            }
        }
        buckets::add_all(conn, &added)?;
        for timeline in self
            .lines
            .values_mut()
            .flat_map(hashbrown::HashMap::values_mut)
        {
            timeline.added.clear();
        }
        Ok(())
    }

    /// Add `units` (less than 0 to free them) held at `made` to `customer`'s `meter`:
    /// later decisions of the pass see them.
    pub(crate) fn hold(
        &mut self,
        conn: &Connection,
        (customer, meter): (&str, &str),
        made: DateTime<Utc>,
        units: i64,
        now: DateTime<Utc>,
    ) -> Result<()> {
        if !self.reservations || units == 0 || !self.keeps(meter) {
            return Ok(());
        }
        self.load_holds(conn, customer, now)?;
        let made = made.timestamp();
        let points = self
            .holds
            .entry(customer.to_string())
            .or_default()
            .entry(meter.to_string())
            .or_default();
        let at = points.entry(made).or_default();
        *at = at.saturating_add(units);
        if *at == 0 {
            points.remove(&made);
        }
        let (timeline, _) = self.timeline(customer, meter);
        for (_, tally) in &mut timeline.tallies {
            tally.note(made, units);
        }
        Ok(())
    }

    fn load_holds(&mut self, conn: &Connection, customer: &str, now: DateTime<Utc>) -> Result<()> {
        if !self.reservations || self.holds.contains_key(customer) {
            return Ok(());
        }
        let mut per_meter: HashMap<String, Points> = HashMap::new();
        for hold in crate::reservations::live_holds(conn, &[customer], now)? {
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

    /// Where `customer`'s `meter` is read from, for a reader outside a decision.
    fn line<'s>(&'s self, conn: &'s Connection, customer: &'s str, meter: &'s str) -> Line<'s> {
        let added = self
            .lines
            .get(customer)
            .and_then(|m| m.get(meter))
            .map_or(&NOTHING, |t| &t.added);
        Line {
            conn,
            customer,
            meter,
            beside: [added, held(&self.holds, customer, meter)],
        }
    }

    /// How long until `units` sent now would fit every blocking window of `limits`, not
    /// only the one that refused them (a sliding window may free room long before a full
    /// fixed one resets).
    pub(crate) fn wait_for_all(
        &self,
        conn: &Connection,
        (customer, meter): (&str, &str),
        limits: &[Limit],
        units: i64,
        now: DateTime<Utc>,
        period: Period,
    ) -> Result<Wait> {
        let line = self.line(conn, customer, meter);
        let mut longest = Wait::Now;
        for limit in limits.iter().filter(|l| l.blocks()) {
            longest = longest.and(wait(&line, limit, units, now, period)?);
        }
        Ok(longest)
    }
}

/// A decision's view of one meter: the connection, the customer and meter, its live holds,
/// and the batch's last second.
#[derive(Clone, Copy)]
struct At<'a> {
    conn: &'a Connection,
    customer: &'a str,
    meter: &'a str,
    held: &'a Points,
    last: i64,
}

impl Timeline {
    /// The batch's first read of this meter, one statement: the last stored minute, and each
    /// window's stretch for an event at `event` with the stored seconds a sliding one will
    /// leave as the batch moves it to its last second. Each window's running sum starts
    /// from it.
    fn open(&mut self, at: At<'_>, limits: &[Limit], event: i64, period: Period) -> Result<()> {
        let stretches: Vec<(WindowKey, (i64, i64))> = limits
            .iter()
            .map(|limit| {
                let key = (limit.kind, limit.window_secs);
                (key, window_at(limit, event, period))
            })
            .collect();
        // Where each stretch's read-ahead ends; one range covers them all.
        let ahead_to = |(from, to): (i64, i64)| reach(at.last, from, to).min(to).max(from);
        let ahead = stretches
            .iter()
            .map(|&(_, stretch)| (stretch.0, ahead_to(stretch)))
            .filter(|(from, until)| from < until)
            .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)))
            .unwrap_or_default();
        let ranges: Vec<(i64, i64)> = stretches.iter().map(|s| s.1).collect();
        let read = buckets::read(at.conn, at.customer, at.meter, &ranges, ahead)?;
        self.last_stored = Some(read.last_minute);
        let line = self.line(at);
        let tallies = stretches
            .iter()
            .zip(read.sums)
            .map(|(&(key, stretch), stored)| {
                let until = ahead_to(stretch);
                let ahead = read
                    .ahead
                    .iter()
                    .filter(|(second, _)| (stretch.0..until).contains(second));
                let tally =
                    tally::Tally::read(&line, stretch, stored, (ahead.copied().collect(), until));
                (key, tally)
            })
            .collect();
        self.tallies = tallies;
        Ok(())
    }

    /// Whether its write should prune old minutes: when the batch takes the meter's last
    /// second into a later hour than what was stored (or what was stored is unknown). So a
    /// busy meter prunes once an hour of its usage, not in every batch; a minute stays at
    /// most that hour past its horizon (`kept_from`), where no read reaches it.
    fn prunes(&self) -> bool {
        let hour = |at: i64| at.div_euclid(3600);
        match (self.stored_latest(), self.added.last_key_value()) {
            (Some(None), _) => false,
            (Some(Some(stored)), Some((&last, _))) => hour(last) > hour(stored),
            _ => true,
        }
    }

    /// Where this meter is read from: its buckets, this batch's events and `held`.
    fn line<'a>(&'a self, at: At<'a>) -> Line<'a> {
        Line {
            conn: at.conn,
            customer: at.customer,
            meter: at.meter,
            beside: [&self.added, at.held],
        }
    }

    /// The units in [from, to) of the window `key` (kind, length), from its running sum:
    /// moved forward when it can be, else summed afresh. The furthest it can move in this
    /// batch (its `from` when it ends at the batch's last second) is read ahead at once.
    fn tallied(&mut self, at: At<'_>, key: WindowKey, from: i64, to: i64) -> Result<i64> {
        let latest = self.stored_latest().flatten();
        let Timeline { added, tallies, .. } = self;
        let line = Line {
            conn: at.conn,
            customer: at.customer,
            meter: at.meter,
            beside: [added, at.held],
        };
        let reach = reach(at.last, from, to);
        let index = match tallies.iter().position(|(k, _)| *k == key) {
            Some(i) => {
                let tally = &mut tallies[i].1;
                if tally.is(from, to) {
                } else if tally.can_move_to(from, to, latest) {
                    tally.move_to(&line, from, to, reach)?;
                } else {
                    *tally = tally::Tally::new(&line, from, to)?;
                }
                i
            }
            None => {
                tallies.push((key, tally::Tally::new(&line, from, to)?));
                tallies.len() - 1
            }
        };
        Ok(tallies[index].1.units())
    }

    /// The most a sliding window holds anywhere an event at `at` falls: the window ending at
    /// `at` when nothing is later (one sum), else every later window (a late event).
    fn peak(&mut self, line: At<'_>, at: i64, limit: &Limit, period: Period) -> Result<i64> {
        let window = limit.window_secs;
        let (from, to) = window_at(limit, at, period);
        if self.latest(line) <= Some(at) {
            let key = (limit.kind, window);
            return self.tallied(line, key, from, to);
        }
        let points = self.line(line).points(from, at.saturating_add(window))?;
        Ok(sliding_peak(&points, at, window))
    }

    /// The last second with stored usage, once `open` has read it.
    fn stored_latest(&self) -> Option<Option<i64>> {
        self.last_stored.as_ref().map(|last| {
            last.as_ref()
                .and_then(|(_, s)| s.keys().next_back().copied())
        })
    }

    /// The last second with usage, stored or beside.
    fn latest(&self, at: At<'_>) -> Option<i64> {
        [&self.added, at.held]
            .into_iter()
            .filter_map(|points| points.last_key_value().map(|(at, _)| *at))
            .chain(self.stored_latest().flatten())
            .max()
    }
}

/// How long until `units` sent now would fit `limit`.
fn wait(
    line: &Line<'_>,
    limit: &Limit,
    units: i64,
    now: DateTime<Utc>,
    period: Period,
) -> Result<Wait> {
    if units > limit.limit {
        return Ok(Wait::Never);
    }
    let now = now.timestamp();
    let state = state(line, limit, now, period)?;
    let over = state.used.saturating_add(units).saturating_sub(limit.limit);
    if over <= 0 {
        return Ok(Wait::Now);
    }
    let fits_at = match limit.kind {
        WindowKind::Fixed => Some(state.ends),
        WindowKind::Sliding => {
            let points = line.points(state.starts, now + 1)?;
            released_by(&points, limit.window_secs, over).map(|(at, _)| at)
        }
    };
    Ok(fits_at.map_or(Wait::Never, |at| Wait::For(at.saturating_sub(now).max(1))))
}

/// `limit`'s window at `now`: what it holds, and where it lies.
fn state(line: &Line<'_>, limit: &Limit, now: i64, period: Period) -> Result<State> {
    // A late event's period may have ended by `now`: its fixed windows are all past, and the
    // one that would hold `now` is empty (it belongs to no window of it).
    let (starts, ends) = window_at(limit, now, period);
    let ends = ends.max(starts);
    let used = line.sum(starts, ends)?;
    Ok(State { starts, ends, used })
}

/// `limit` as `check` shows it at `now`.
fn usage(
    line: &Line<'_>,
    limit: &Limit,
    now: DateTime<Utc>,
    period: Period,
    thresholds: &Thresholds,
) -> Result<WindowUsage> {
    let now = now.timestamp();
    let state = state(line, limit, now, period)?;
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
            let oldest = buckets::first(
                line.conn,
                line.customer,
                line.meter,
                state.starts,
                state.ends,
            )?;
            let held = line
                .beside
                .iter()
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

/// A meter's minutes (and their seconds) are kept for twice its longest window and a day: an
/// event up to a window late is decided exactly on every window it falls in (they reach a window
/// past it), and one later still falls only in windows that ended over a day ago.
fn kept_from(longest_window: i64, now: DateTime<Utc>) -> i64 {
    now.timestamp()
        .saturating_sub(longest_window.saturating_mul(2))
        .saturating_sub(86_400)
}

/// The furthest a stretch [from, to) moves in a batch whose last event is at `last`: its
/// `from` when it ends there.
fn reach(last: i64, from: i64, to: i64) -> i64 {
    last.saturating_add(1)
        .saturating_sub(to.saturating_sub(from))
}

/// `limit`'s window for the second `at`: the sliding window ending at it, or the fixed window
/// holding it in `period` (a sliding window needs no period), as [from, to).
fn window_at(limit: &Limit, at: i64, period: Period) -> (i64, i64) {
    match limit.kind {
        WindowKind::Sliding => (
            at.saturating_sub(limit.window_secs).saturating_add(1),
            at.saturating_add(1),
        ),
        WindowKind::Fixed => fixed_window(limit, at, seconds(period)),
    }
}

/// Where the stretch a decision on `limit` reads begins, for an event at `at`.
fn window_start(limit: &Limit, at: i64, period: Period) -> i64 {
    match limit.kind {
        WindowKind::Sliding => at.saturating_sub(limit.window_secs),
        WindowKind::Fixed => fixed_window(limit, at, seconds(period)).0,
    }
}

/// What live reservations hold on `customer`'s `meter`: a free function, so a decision can
/// read it while its time line is borrowed.
fn held<'s>(
    holds: &'s HashMap<String, HashMap<String, Points>>,
    customer: &str,
    meter: &str,
) -> &'s Points {
    holds
        .get(customer)
        .and_then(|h| h.get(meter))
        .unwrap_or(&NOTHING)
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
        let line = self.line(conn, customer, meter);
        limits
            .iter()
            .map(|limit| usage(&line, limit, now, period, &config.thresholds))
            .collect()
    }
}
