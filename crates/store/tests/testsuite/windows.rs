//! Rolling-window limits against brute force, on both engines: random streams of events
//! (in order and late, one by one and in batches) on a plan with a sliding and a fixed
//! window. After each record the store's decision must be the one a model takes by trying
//! every second; at the end no window may pass its limit at any instant, and `check`'s
//! `used`, `remaining`, `frees_at`/`frees_units` and `resets_at` must be the brute-force ones.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use meterline_core::Config;
use meterline_core::billing::format_ts;
use meterline_store::{NewCustomer, RecordRequest, Store};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};

use crate::support::{Engine, TestDb, engine_tests};

engine_tests!(random_streams_are_decided_as_brute_force_decides_them);

/// The implicit meter, unlimited per period, with a 5-minute sliding and a 7-minute fixed
/// window (aligned on the period, which 7 minutes do not divide, so the period's last
/// window is cut short): small limits, so a stream of a few dozen events meets both.
const PLANS: &str = r#"
[[plans]]
id = "free"
meter_event = "meterline_usage"

[[plans.limits]]
window = "5m"
limit = 10

[[plans.limits]]
window = "7m"
kind = "fixed"
limit = 15
"#;

const SLIDING: i64 = 300;
const SLIDING_LIMIT: i64 = 10;
const FIXED: i64 = 420;
const FIXED_LIMIT: i64 = 15;

fn day(month: u32, day: u32) -> i64 {
    let year = if month == 13 { 2027 } else { 2026 };
    Utc.with_ymd_and_hms(year, (month - 1) % 12 + 1, day, 0, 0, 0)
        .unwrap()
        .timestamp()
}

/// The first second of the stream: a quarter of an hour before the customer's November
/// period (anchored on the 1st) ends, so most streams cross into December's.
fn origin() -> i64 {
    day(12, 1) - 900
}

fn instant(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap()
}

/// One event of the stream.
#[derive(Debug, Clone)]
struct Event {
    /// Late: up to two sliding windows before the latest event so far. Else up to a minute
    /// after it.
    late: bool,
    /// Seconds, folded into those ranges (the first event's also says how long after its
    /// batch's last event the batch is recorded).
    offset: i64,
    quantity: i64,
}

fn event() -> impl Strategy<Value = Event> {
    (prop::bool::weighted(0.3), 0..1_000i64, 1..=6i64).prop_map(|(late, offset, quantity)| Event {
        late,
        offset,
        quantity,
    })
}

/// The events of a stream, recorded in batches of one to four.
fn stream() -> impl Strategy<Value = Vec<Vec<Event>>> {
    prop::collection::vec(prop::collection::vec(event(), 1..=4), 1..16)
}

/// The units accepted at each second, as the model keeps them.
#[derive(Default)]
struct Model {
    accepted: Vec<(i64, i64)>,
}

impl Model {
    /// The units in [lo, hi).
    fn sum(&self, lo: i64, hi: i64) -> i64 {
        self.accepted
            .iter()
            .filter(|(t, _)| (lo..hi).contains(t))
            .map(|(_, q)| q)
            .sum()
    }

    /// What the sliding window ending at `t` holds: (t - W, t].
    fn sliding(&self, t: i64) -> i64 {
        self.sum(t - SLIDING + 1, t + 1)
    }

    /// The fixed window holding `t`, [start, end): from its period's start, the last one
    /// ending with the period.
    fn fixed_window(t: i64) -> (i64, i64) {
        let (from, to) = if t < day(12, 1) {
            (day(11, 1), day(12, 1))
        } else {
            (day(12, 1), day(13, 1))
        };
        let start = from + (t - from).div_euclid(FIXED) * FIXED;
        (start, (start + FIXED).min(to))
    }

    /// Brute force: the first window (in plans.toml's order) that would not take the
    /// event, and the most it holds where the event falls. The sliding window: every window
    /// ending at an instant from `at` to `at + W`; the fixed one: the window holding `at`.
    fn refusing(&self, at: i64, quantity: i64) -> Option<(&'static str, i64)> {
        let peak = (at..at + SLIDING).map(|t| self.sliding(t)).max().unwrap();
        let (start, end) = Model::fixed_window(at);
        let fixed = self.sum(start, end);
        if peak + quantity > SLIDING_LIMIT {
            Some(("5m", peak))
        } else if fixed + quantity > FIXED_LIMIT {
            Some(("7m", fixed))
        } else {
            None
        }
    }

    /// The seconds until `quantity` sent after `now` would fit, trying every second; none
    /// when it never fits or fits now.
    fn retry_after(&self, now: i64, quantity: i64) -> Option<i64> {
        if quantity > SLIDING_LIMIT.min(FIXED_LIMIT) || self.refusing(now, quantity).is_none() {
            return None;
        }
        (1..=FIXED + SLIDING).find(|wait| self.refusing(now + wait, quantity).is_none())
    }
}

fn run_case(
    store: &mut Store,
    config: &Config,
    case: usize,
    batches: &[Vec<Event>],
) -> Result<(), TestCaseError> {
    let customer = format!("c{case}");
    let new = NewCustomer {
        id: customer.clone(),
        name: None,
        plan_id: "free".into(),
        stripe_customer_id: None,
        billing_anchor: Some(NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()),
    };
    store.add_customer(config, &new, instant(origin())).unwrap();
    let mut model = Model::default();
    let mut latest = origin();
    for batch in batches {
        let mut times = Vec::with_capacity(batch.len());
        for e in batch {
            let at = if e.late {
                latest - e.offset % (2 * SLIDING)
            } else {
                latest + e.offset % 60
            };
            latest = latest.max(at);
            times.push(at);
        }
        // Recorded a little after the batch's last event.
        let now = latest + batch[0].offset % 30;
        let requests: Vec<RecordRequest> = batch
            .iter()
            .zip(&times)
            .map(|(e, &at)| RecordRequest::new(&customer, e.quantity, instant(at)))
            .collect();
        let outcomes = store.record_batch(config, &requests, instant(now)).unwrap();
        for ((e, &at), outcome) in batch.iter().zip(&times).zip(outcomes) {
            let outcome = outcome.unwrap();
            let refusing = model.refusing(at, e.quantity);
            prop_assert_eq!(
                outcome.recorded,
                refusing.is_none(),
                "{} units at +{}s, accepted so far {:?}",
                e.quantity,
                at - origin(),
                model.accepted
            );
            let Some((window, used)) = refusing else {
                model.accepted.push((at, e.quantity));
                continue;
            };
            let refusal = outcome.refused_window.expect("refused_window");
            prop_assert_eq!(outcome.refused_by, vec!["usage".to_string()]);
            prop_assert_eq!(
                (
                    refusal.meter.as_str(),
                    refusal.window.as_str(),
                    refusal.used
                ),
                ("usage", window, used)
            );
            prop_assert_eq!(
                refusal.retry_after,
                model.retry_after(now, e.quantity),
                "retry_after of {} units at +{}s, now +{}s, accepted so far {:?}",
                e.quantity,
                at - origin(),
                now - origin(),
                model.accepted
            );
        }
    }
    check_windows(store, config, &customer, &model)
}

/// At no instant does a window pass its limit, and `check` at every instant that matters
/// (each event, where it leaves the sliding window, the fixed windows' edges) says what
/// brute force says.
fn check_windows(
    store: &Store,
    config: &Config,
    customer: &str,
    model: &Model,
) -> Result<(), TestCaseError> {
    let last = model.accepted.iter().map(|p| p.0).max().unwrap_or(origin());
    for t in origin() - 2 * FIXED..last + 2 * SLIDING {
        prop_assert!(
            model.sliding(t) <= SLIDING_LIMIT,
            "sliding at +{}",
            t - origin()
        );
        let (start, end) = Model::fixed_window(t);
        prop_assert!(model.sum(start, end) <= FIXED_LIMIT);
    }
    let mut instants: Vec<i64> = model
        .accepted
        .iter()
        .flat_map(|&(t, _)| [t - 1, t, t + SLIDING - 1, t + SLIDING])
        .chain([
            origin() - 1,
            origin() + FIXED - 1,
            origin() + FIXED,
            last + FIXED,
        ])
        .collect();
    instants.sort_unstable();
    instants.dedup();
    for t in instants {
        let check = store.metered_check(config, customer, instant(t)).unwrap();
        let [sliding, fixed] = check.windows.as_slice() else {
            return Err(TestCaseError::fail(format!("windows: {:?}", check.windows)));
        };
        let used = model.sliding(t);
        prop_assert_eq!(sliding.used, used, "sliding used at +{}", t - origin());
        prop_assert_eq!(sliding.remaining, SLIDING_LIMIT - used);
        // The oldest second still in the window frees its units when it leaves it.
        let oldest = model
            .accepted
            .iter()
            .map(|p| p.0)
            .filter(|&at| at > t - SLIDING && at <= t)
            .min();
        prop_assert_eq!(
            sliding.frees_at.clone(),
            oldest.map(|at| format_ts(instant(at + SLIDING)))
        );
        prop_assert_eq!(sliding.frees_units, oldest.map(|at| model.sum(at, at + 1)));
        let (start, end) = Model::fixed_window(t);
        prop_assert_eq!(
            fixed.used,
            model.sum(start, end),
            "fixed at +{}",
            t - origin()
        );
        prop_assert_eq!(fixed.remaining, FIXED_LIMIT - model.sum(start, end));
        prop_assert_eq!(fixed.resets_at.clone(), Some(format_ts(instant(end))));
        prop_assert_eq!(
            check.check.allowed,
            used < SLIDING_LIMIT && fixed.remaining > 0
        );
    }
    Ok(())
}

fn random_streams_are_decided_as_brute_force_decides_them(engine: Engine) {
    let db = TestDb::on(engine);
    let store = std::cell::RefCell::new(db.open());
    let config = Config::parse(PLANS, "plans.toml").unwrap();
    // Each case on its own customer in one database, as in credits.rs.
    let cases = match engine {
        Engine::Sqlite => 96,
        Engine::Postgres => 32,
    };
    let mut runner = TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let case = std::cell::Cell::new(0);
    runner
        .run(&stream(), |batches| {
            case.set(case.get() + 1);
            run_case(&mut store.borrow_mut(), &config, case.get(), &batches)
        })
        .unwrap();
}
