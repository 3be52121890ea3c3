//! Rolling-window limits against brute force, on both engines: random streams of events
//! (in order and late, one by one and in batches) and of reservations (held, released,
//! lapsing) on a plan with a sliding and a fixed window. After each record or reserve the
//! store's decision must be the one a model takes by trying every second, counting each live
//! hold at the second it was made; at the end no window may pass its limit at any instant,
//! and `check`'s `used`, `remaining`, `frees_at`/`frees_units` and `resets_at` must be the
//! brute-force ones.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use meterline_core::Config;
use meterline_core::billing::format_ts;
use meterline_store::{NewCustomer, NewReservation, RecordRequest, Reserved, Store};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::support::{Engine, TestDb, engine_tests, run_cases};

engine_tests!(
    random_streams_are_decided_as_brute_force_decides_them,
    windows_on_whole_minutes_are_read_and_decided
);

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

/// One step of a stream.
#[derive(Debug, Clone)]
enum Step {
    /// Events recorded in one batch.
    Batch(Vec<Event>),
    /// A reservation of this many units for this many seconds, made a few seconds after the
    /// latest event or hold.
    Reserve { quantity: i64, ttl: i64, lag: i64 },
    /// Release the reservation at this index of those held so far (modulo), perhaps again.
    Release(usize),
}

fn stream() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        4 => prop::collection::vec(event(), 1..=4).prop_map(Step::Batch),
        1 => (1..=6i64, 30..600i64, 0..30i64)
            .prop_map(|(quantity, ttl, lag)| Step::Reserve { quantity, ttl, lag }),
        1 => any::<usize>().prop_map(Step::Release),
    ];
    prop::collection::vec(step, 1..18)
}

/// A reservation's hold, as the model keeps it.
#[derive(Debug)]
struct Hold {
    id: String,
    at: i64,
    units: i64,
    expires: i64,
    released: bool,
}

impl Hold {
    fn live(&self, now: i64) -> bool {
        !self.released && self.expires > now
    }
}

/// The units accepted at each second, and the holds.
#[derive(Default)]
struct Model {
    accepted: Vec<(i64, i64)>,
    holds: Vec<Hold>,
}

/// Units at seconds: the accepted events, and the holds counted at once.
struct Points(Vec<(i64, i64)>);

impl Model {
    /// What a decision at `now` counts: the events and the holds live then.
    fn at(&self, now: i64) -> Points {
        let holds = self.holds.iter().filter(|h| h.live(now));
        Points(
            self.accepted
                .iter()
                .copied()
                .chain(holds.map(|h| (h.at, h.units)))
                .collect(),
        )
    }

    /// The events alone.
    fn events(&self) -> Points {
        Points(self.accepted.clone())
    }
}

impl Points {
    /// The units in [lo, hi).
    fn sum(&self, lo: i64, hi: i64) -> i64 {
        self.0
            .iter()
            .filter(|(t, _)| (lo..hi).contains(t))
            .map(|(_, q)| q)
            .sum()
    }

    /// What the sliding window ending at `t` holds: (t - W, t].
    fn sliding(&self, t: i64) -> i64 {
        self.sum(t - SLIDING + 1, t + 1)
    }

    /// Brute force: the first window (in plans.toml's order) that would not take the
    /// event, and the most it holds where the event falls. The sliding window: every window
    /// ending at an instant from `at` to `at + W`; the fixed one: the window holding `at`.
    fn refusing(&self, at: i64, quantity: i64) -> Option<(&'static str, i64)> {
        let peak = (at..at + SLIDING).map(|t| self.sliding(t)).max().unwrap();
        let (start, end) = fixed_window(at);
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
    /// when it never fits or fits now. A hold counts until it leaves the window, as if it
    /// did not lapse first (the store does not look ahead to lapses).
    fn retry_after(&self, now: i64, quantity: i64) -> Option<i64> {
        if quantity > SLIDING_LIMIT.min(FIXED_LIMIT) || self.refusing(now, quantity).is_none() {
            return None;
        }
        (1..=FIXED + SLIDING).find(|wait| self.refusing(now + wait, quantity).is_none())
    }
}

/// The fixed window holding `t`, [start, end): from its period's start, the last one ending
/// with the period.
fn fixed_window(t: i64) -> (i64, i64) {
    let (from, to) = if t < day(12, 1) {
        (day(11, 1), day(12, 1))
    } else {
        (day(12, 1), day(13, 1))
    };
    let start = from + (t - from).div_euclid(FIXED) * FIXED;
    (start, (start + FIXED).min(to))
}

/// A refusal by a window against the model's: the window, what it held and Retry-After.
fn same_refusal(
    outcome: &meterline_store::RecordOutcome,
    (window, used): (&str, i64),
    retry_after: Option<i64>,
) -> Result<(), TestCaseError> {
    let refusal = outcome.refused_window.as_ref().expect("refused_window");
    prop_assert_eq!(&outcome.refused_by, &vec!["usage".to_string()]);
    prop_assert_eq!(
        (
            refusal.meter.as_str(),
            refusal.window.as_str(),
            refusal.used
        ),
        ("usage", window, used)
    );
    prop_assert_eq!(refusal.retry_after, retry_after, "retry_after");
    Ok(())
}

fn run_case(
    store: &mut Store,
    config: &Config,
    case: usize,
    steps: &[Step],
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
    // The latest event or hold, and the clock, which never goes back.
    let (mut latest, mut now) = (origin(), origin());
    for step in steps {
        match step {
            Step::Batch(batch) => {
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
                now = now.max(latest + batch[0].offset % 30);
                let requests: Vec<RecordRequest> = batch
                    .iter()
                    .zip(&times)
                    .map(|(e, &at)| RecordRequest::new(&customer, e.quantity, instant(at)))
                    .collect();
                let outcomes = store.record_batch(config, &requests, instant(now)).unwrap();
                for ((e, &at), outcome) in batch.iter().zip(&times).zip(outcomes) {
                    let outcome = outcome.unwrap();
                    let seen = model.at(now);
                    let refusing = seen.refusing(at, e.quantity);
                    prop_assert_eq!(
                        outcome.recorded,
                        refusing.is_none(),
                        "{} units at +{}s, now +{}s, model {:?} {:?}",
                        e.quantity,
                        at - origin(),
                        now - origin(),
                        model.accepted,
                        model.holds
                    );
                    match refusing {
                        None => model.accepted.push((at, e.quantity)),
                        Some(refusing) => {
                            same_refusal(&outcome, refusing, seen.retry_after(now, e.quantity))?
                        }
                    }
                }
            }
            Step::Reserve { quantity, ttl, lag } => {
                now = now.max(latest) + lag;
                latest = now;
                let request = NewReservation {
                    customer: customer.clone(),
                    event_type: None,
                    meter: None,
                    properties: [("quantity".to_string(), quantity.to_string())].into(),
                    ttl_secs: *ttl,
                    key: None,
                };
                let reserved = store.reserve(config, &request, instant(now)).unwrap();
                let seen = model.at(now);
                match (reserved, seen.refusing(now, *quantity)) {
                    (Reserved::Held { reservation, .. }, None) => model.holds.push(Hold {
                        id: reservation.id,
                        at: now,
                        units: *quantity,
                        expires: now + ttl,
                        released: false,
                    }),
                    (Reserved::Refused(outcome), Some(refusing)) => {
                        same_refusal(&outcome, refusing, seen.retry_after(now, *quantity))?
                    }
                    (reserved, refusing) => {
                        return Err(TestCaseError::fail(format!(
                            "reserve {quantity} at +{}s: {reserved:?}, model refuses by \
                             {refusing:?}; model {:?} {:?}",
                            now - origin(),
                            model.accepted,
                            model.holds
                        )));
                    }
                }
            }
            Step::Release(index) if !model.holds.is_empty() => {
                let n = model.holds.len();
                let hold = &mut model.holds[index % n];
                // Released again: said so, nothing changes.
                let released = store.release(&hold.id, instant(now)).unwrap();
                prop_assert_eq!(released.already, hold.released);
                hold.released = true;
            }
            Step::Release(_) => {}
        }
    }
    check_windows(store, config, &customer, &model)
}

/// At no instant do the events pass a window's limit, and `check` at every instant that
/// matters (each event and hold, where it leaves the sliding window, the period's end) says
/// what brute force says, with the holds live then.
fn check_windows(
    store: &Store,
    config: &Config,
    customer: &str,
    model: &Model,
) -> Result<(), TestCaseError> {
    let events = model.events();
    let last = events.0.iter().map(|p| p.0).max().unwrap_or(origin());
    for t in origin() - 2 * FIXED..last + 2 * SLIDING {
        prop_assert!(
            events.sliding(t) <= SLIDING_LIMIT,
            "sliding at +{}",
            t - origin()
        );
        let (start, end) = fixed_window(t);
        prop_assert!(events.sum(start, end) <= FIXED_LIMIT);
    }
    let holds = model.holds.iter().map(|h| (h.at, h.units));
    let mut instants: Vec<i64> = events
        .0
        .iter()
        .copied()
        .chain(holds)
        .flat_map(|(t, _)| [t - 1, t, t + SLIDING - 1, t + SLIDING])
        .chain(model.holds.iter().flat_map(|h| [h.expires - 1, h.expires]))
        .chain([origin() - 1, day(12, 1) - 1, day(12, 1), last + FIXED])
        .collect();
    instants.sort_unstable();
    instants.dedup();
    for t in instants {
        let check = store.metered_check(config, customer, instant(t)).unwrap();
        let [sliding, fixed] = check.windows.as_slice() else {
            return Err(TestCaseError::fail(format!("windows: {:?}", check.windows)));
        };
        let seen = model.at(t);
        let used = seen.sliding(t);
        prop_assert_eq!(sliding.used, used, "sliding used at +{}", t - origin());
        prop_assert_eq!(sliding.remaining, (SLIDING_LIMIT - used).max(0));
        // The oldest second still in the window frees its units when it leaves it.
        let oldest = seen
            .0
            .iter()
            .map(|p| p.0)
            .filter(|&at| at > t - SLIDING && at <= t)
            .min();
        prop_assert_eq!(
            sliding.frees_at.clone(),
            oldest.map(|at| format_ts(instant(at + SLIDING)))
        );
        prop_assert_eq!(sliding.frees_units, oldest.map(|at| seen.sum(at, at + 1)));
        let (start, end) = fixed_window(t);
        let fixed_used = seen.sum(start, end);
        prop_assert_eq!(fixed.used, fixed_used, "fixed at +{}", t - origin());
        prop_assert_eq!(fixed.remaining, (FIXED_LIMIT - fixed_used).max(0));
        prop_assert_eq!(fixed.resets_at.clone(), Some(format_ts(instant(end))));
        prop_assert_eq!(
            check.check.allowed,
            sliding.remaining > 0 && fixed.remaining > 0
        );
    }
    Ok(())
}

fn random_streams_are_decided_as_brute_force_decides_them(engine: Engine) {
    let db = TestDb::on(engine);
    let config = Config::parse(PLANS, "plans.toml").unwrap();
    let cases = match engine {
        Engine::Sqlite => 96,
        Engine::Postgres => 32,
    };
    run_cases(db.open(), cases, stream(), |store, case, steps| {
        run_case(store, &config, case, &steps)
    });
}

/// An event at a minute's last second: its sliding window ([at − 5 min + 1 s, at + 1 s)) and
/// its fixed one (7 minutes from the period's start) both begin and end on whole minutes, so a
/// batch's one read of them carries no cut minute (PostgreSQL once refused that statement:
/// two untyped NULL columns in a row became text).
fn windows_on_whole_minutes_are_read_and_decided(engine: Engine) {
    let db = TestDb::on(engine);
    let mut store = db.open();
    let config = Config::parse(PLANS, "plans.toml").unwrap();
    let new = NewCustomer {
        id: "acme".into(),
        name: None,
        plan_id: "free".into(),
        stripe_customer_id: None,
        billing_anchor: Some(NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()),
    };
    let at = day(11, 20) + 59;
    store.add_customer(&config, &new, instant(at)).unwrap();
    let batch = |store: &mut Store, quantities: &[i64]| -> Vec<bool> {
        let requests: Vec<RecordRequest> = quantities
            .iter()
            .map(|&q| RecordRequest::new("acme", q, instant(at)))
            .collect();
        store
            .record_batch(&config, &requests, instant(at))
            .unwrap()
            .into_iter()
            .map(|o| o.unwrap().recorded)
            .collect()
    };
    assert_eq!(batch(&mut store, &[4, 2]), [true, true]);
    // 6 used of the sliding window's 10: 4 more fit, 5 do not.
    assert_eq!(batch(&mut store, &[5, 4]), [false, true]);
    let check = store.metered_check(&config, "acme", instant(at)).unwrap();
    let used: Vec<i64> = check.windows.iter().map(|w| w.used).collect();
    assert_eq!(used, [10, 10]);
}
