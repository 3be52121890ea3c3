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

/// The implicit meter, unlimited per period, with a 5-minute sliding and a 10-minute fixed
/// window: small limits, so a stream of a few dozen events meets both.
const PLANS: &str = r#"
[[plans]]
id = "free"
meter_event = "meterline_usage"

[[plans.limits]]
window = "5m"
limit = 10

[[plans.limits]]
window = "10m"
kind = "fixed"
limit = 15
"#;

const SLIDING: i64 = 300;
const SLIDING_LIMIT: i64 = 10;
const FIXED: i64 = 600;
const FIXED_LIMIT: i64 = 15;

/// The first second of the stream: a multiple of the fixed window after the period's start
/// (the 1st of the month), well inside the period.
fn origin() -> i64 {
    Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0)
        .unwrap()
        .timestamp()
}

/// How far the stream reaches: five sliding windows.
const SPREAD: i64 = 5 * SLIDING;

/// When every record is made: after all the events, so each may be late.
fn now() -> DateTime<Utc> {
    instant(origin() + SPREAD + 2 * FIXED)
}

fn instant(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap()
}

/// One event of the stream.
#[derive(Debug, Clone)]
struct Event {
    /// Late: anywhere in the stream's reach. Else this many seconds after the latest event
    /// so far.
    late: bool,
    offset: i64,
    quantity: i64,
}

fn event() -> impl Strategy<Value = Event> {
    (prop::bool::weighted(0.3), 0..SPREAD, 1..=6i64).prop_map(|(late, offset, quantity)| Event {
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

    /// The fixed window holding `t`, [start, end).
    fn fixed_window(t: i64) -> (i64, i64) {
        let start = origin() + (t - origin()).div_euclid(FIXED) * FIXED;
        (start, start + FIXED)
    }

    /// Brute force: every window ending at an instant from `at` to `at + W` takes the
    /// event, and so does its fixed window.
    fn admits(&self, at: i64, quantity: i64) -> bool {
        let sliding = (at..at + SLIDING).all(|t| self.sliding(t) + quantity <= SLIDING_LIMIT);
        let (start, end) = Model::fixed_window(at);
        sliding && self.sum(start, end) + quantity <= FIXED_LIMIT
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
    store.add_customer(config, &new, now()).unwrap();
    let mut model = Model::default();
    let mut latest = origin();
    for batch in batches {
        let mut times = Vec::with_capacity(batch.len());
        for e in batch {
            let at = if e.late {
                origin() + e.offset
            } else {
                latest + e.offset % 90
            };
            latest = latest.max(at);
            times.push(at);
        }
        let requests: Vec<RecordRequest> = batch
            .iter()
            .zip(&times)
            .map(|(e, &at)| RecordRequest::new(&customer, e.quantity, instant(at)))
            .collect();
        let outcomes = store.record_batch(config, &requests, now()).unwrap();
        for ((e, &at), outcome) in batch.iter().zip(&times).zip(outcomes) {
            let outcome = outcome.unwrap();
            let admits = model.admits(at, e.quantity);
            prop_assert_eq!(
                outcome.recorded,
                admits,
                "{} units at +{}s, accepted so far {:?}",
                e.quantity,
                at - origin(),
                model.accepted
            );
            if admits {
                model.accepted.push((at, e.quantity));
            } else {
                let refusal = outcome.refused_window.expect("refused_window");
                prop_assert_eq!(refusal.meter, "usage");
                prop_assert_eq!(outcome.refused_by, vec!["usage".to_string()]);
            }
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
    for t in origin() - SLIDING..origin() + SPREAD + 2 * SLIDING {
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
        .chain([origin() - 1, origin() + FIXED - 1, origin() + FIXED])
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
        Engine::Postgres => 16,
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
