//! Serve's writer decides a round of reservation calls in one pass (`reservation_calls`):
//! random rounds of reserves, settles and releases of two customers, with unit credits, a
//! hard cap and (on the `[[meters]]` shape) a rolling window, must answer and end exactly as
//! the same calls made one at a time, on both engines and both plan shapes: each answer the
//! same, and in the end each customer's usage, credits and holds the same, and every ledger
//! the sum of its entries.

use chrono::{DateTime, Duration, TimeZone, Utc};
use meterline_core::Config;
use meterline_store::{
    NewCustomer, NewGrant, NewReservation, ReservationAnswer, ReservationCall, Reserved, Store,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::support::{Engine, TestDb, engine_tests, run_cases};

engine_tests!(
    legacy_rounds_answer_as_their_calls_one_by_one,
    meters_rounds_answer_as_their_calls_one_by_one,
);

/// The implicit meter, 20 included, blocked past them.
const LEGACY: &str = r#"
[[plans]]
id = "free"
included = 20
"#;

/// A sum meter with the same cap, and a window that refuses before the cap does.
const METERS: &str = r#"
[[meters]]
id = "tokens"
aggregation = "sum"
property = "tokens"

[[plans]]
id = "free"
[plans.meters.tokens]
included = 20
[[plans.meters.tokens.limits]]
window = "1m"
limit = 40
"#;

fn origin() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap()
}

#[derive(Debug, Clone)]
enum Op {
    /// Customer, units, key (of four, so that resends and conflicts happen), ttl in seconds.
    Reserve(usize, i64, Option<u8>, i64),
    /// The reservation at this index of those made in earlier rounds (modulo), and the
    /// units it really used (none: the estimate's; below 0: an invalid event, refused).
    Settle(usize, Option<i64>),
    Release(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..2usize, 1..12i64, prop_oneof![Just(None), (0..4u8).prop_map(Some)], 2..40i64)
            .prop_map(|(c, n, key, ttl)| Op::Reserve(c, n, key, ttl)),
        2 => (any::<usize>(), prop_oneof![Just(None), (-1..15i64).prop_map(Some)])
            .prop_map(|(i, n)| Op::Settle(i, n)),
        1 => any::<usize>().prop_map(Op::Release),
    ]
}

/// Rounds of calls, each with the seconds since the one before, and each customer's credits.
fn case() -> impl Strategy<Value = (Vec<(i64, Vec<Op>)>, [u32; 2])> {
    (
        prop::collection::vec((0..20i64, prop::collection::vec(op(), 1..8)), 1..8),
        [0..60u32, 0..60u32],
    )
}

fn legacy_rounds_answer_as_their_calls_one_by_one(engine: Engine) {
    rounds_answer_as_their_calls_one_by_one(engine, LEGACY, None);
}

fn meters_rounds_answer_as_their_calls_one_by_one(engine: Engine) {
    rounds_answer_as_their_calls_one_by_one(engine, METERS, Some("tokens"));
}

fn rounds_answer_as_their_calls_one_by_one(engine: Engine, plans: &str, meter: Option<&str>) {
    let config = Config::parse(plans, "test plans").unwrap();
    let (in_rounds, one_by_one) = (TestDb::on(engine), TestDb::on(engine));
    let cases = if engine == Engine::Postgres { 24 } else { 48 };
    let stores = (in_rounds.open(), one_by_one.open());
    run_cases(
        stores,
        cases,
        case(),
        |(a, b), number, (rounds, credits)| {
            run_case(a, b, &config, meter, number, &rounds, credits)
        },
    );
}

fn run_case(
    a: &mut Store,
    b: &mut Store,
    config: &Config,
    meter: Option<&str>,
    number: usize,
    rounds: &[(i64, Vec<Op>)],
    credits: [u32; 2],
) -> Result<(), TestCaseError> {
    let customers = [format!("c{number}-0"), format!("c{number}-1")];
    let meter_id = meter.unwrap_or("usage");
    for store in [&mut *a, &mut *b] {
        for (customer, units) in customers.iter().zip(credits) {
            let new = NewCustomer {
                id: customer.clone(),
                name: None,
                plan_id: "free".into(),
                stripe_customer_id: None,
                billing_anchor: Some(origin().date_naive()),
            };
            store.add_customer(config, &new, origin()).unwrap();
            if units > 0 {
                let grant = NewGrant {
                    meter: Some(meter_id.to_string()),
                    ..NewGrant::new(customer, &units.to_string())
                };
                store.grant_credits(config, &grant, origin()).unwrap();
            }
        }
    }
    let mut now = origin();
    // The reservations made so far: (in rounds, one by one).
    let mut made: Vec<(String, String)> = Vec::new();
    for (round, (gap, ops)) in rounds.iter().enumerate() {
        now += Duration::seconds(*gap);
        let mut calls = (Vec::new(), Vec::new());
        for op in ops {
            let (call_a, call_b) = match op {
                Op::Reserve(c, n, key, ttl) => {
                    let call = ReservationCall::Reserve(NewReservation {
                        customer: customers[*c].clone(),
                        event_type: None,
                        meter: meter.map(str::to_string),
                        properties: properties(meter, *n),
                        ttl_secs: *ttl,
                        // A settle's event takes the reservation's key, and event keys are
                        // shared by all customers: each customer keys its own.
                        key: key.map(|k| format!("{}-k{k}", customers[*c])),
                    });
                    (call.clone(), call)
                }
                Op::Settle(..) | Op::Release(_) if made.is_empty() => continue,
                Op::Settle(i, n) => {
                    let (id_a, id_b) = &made[i % made.len()];
                    let settle = |id: &String| ReservationCall::Settle {
                        id: id.clone(),
                        properties: n.map(|n| properties(meter, n)),
                    };
                    (settle(id_a), settle(id_b))
                }
                Op::Release(i) => {
                    let (id_a, id_b) = &made[i % made.len()];
                    (
                        ReservationCall::Release(id_a.clone()),
                        ReservationCall::Release(id_b.clone()),
                    )
                }
            };
            calls.0.push(call_a);
            calls.1.push(call_b);
        }
        let answers_a = a.reservation_calls(config, &calls.0, now).unwrap();
        let answers_b: Vec<_> = calls
            .1
            .iter()
            .map(|call| {
                b.reservation_calls(config, std::slice::from_ref(call), now)
                    .unwrap()
                    .pop()
                    .unwrap()
            })
            .collect();
        for (i, (answer_a, answer_b)) in answers_a.iter().zip(&answers_b).enumerate() {
            prop_assert_eq!(
                summary(answer_a),
                summary(answer_b),
                "round {} call {}: {:?}",
                round,
                i,
                calls.0[i]
            );
            // A settle sent again without properties is the first settle's event again.
            if let ReservationCall::Settle {
                properties: None, ..
            } = &calls.0[i]
            {
                prop_assert!(
                    !matches!(answer_a, Err(meterline_core::Error::IdempotencyConflict(_))),
                    "round {} call {}: {:?}",
                    round,
                    i,
                    answer_a
                );
            }
            if let (Ok(ReservationAnswer::Reserved(x)), Ok(ReservationAnswer::Reserved(y))) =
                (answer_a, answer_b)
                && let (
                    Reserved::Held {
                        reservation: x,
                        duplicate: false,
                        ..
                    },
                    Reserved::Held { reservation: y, .. },
                ) = (x, y)
            {
                made.push((x.id.clone(), y.id.clone()));
            }
        }
    }
    // Later, when every hold has lapsed, and now, with the holds still live.
    for at in [now, now + Duration::hours(1)] {
        for customer in &customers {
            let (x, y) = (
                a.metered_check(config, customer, at).unwrap(),
                b.metered_check(config, customer, at).unwrap(),
            );
            prop_assert_eq!(format!("{:?}", x.check), format!("{:?}", y.check));
            let (x, y) = (
                a.credit_balance(customer, at).unwrap(),
                b.credit_balance(customer, at).unwrap(),
            );
            prop_assert_eq!(format!("{:?}", x.units), format!("{:?}", y.units));
        }
    }
    for store in [&*a, &*b] {
        let ledger = store.check_ledger().unwrap();
        prop_assert!(ledger.mismatches.is_empty(), "{:?}", ledger.mismatches);
    }
    Ok(())
}

fn properties(meter: Option<&str>, n: i64) -> meterline_core::Properties {
    let name = if meter.is_some() {
        "tokens"
    } else {
        "quantity"
    };
    [(name.to_string(), n.to_string())].into()
}

/// What an answer says, without the ids and times that differ between two databases, or a
/// resent reserve's standing (read after its whole round).
fn summary(answer: &Result<ReservationAnswer, meterline_core::Error>) -> String {
    match answer {
        Err(e) => format!("error {}", format!("{e:?}").split('(').next().unwrap_or("")),
        Ok(ReservationAnswer::Reserved(Reserved::Refused(outcome))) => {
            format!(
                "refused by {:?} {:?}",
                outcome.refused_by, outcome.refused_window
            )
        }
        Ok(ReservationAnswer::Reserved(Reserved::Held {
            reservation,
            duplicate,
            outcome,
        })) => {
            let holds: Vec<_> = reservation
                .holds
                .iter()
                .map(|h| (h.units, h.credit_units, h.credit_amount))
                .collect();
            let used = (!duplicate).then_some(outcome.check.used);
            format!("held {holds:?} duplicate {duplicate} used {used:?}")
        }
        Ok(ReservationAnswer::Settled(settled)) => format!(
            "settled lapsed {} recorded {} duplicate {} used {} status {}",
            settled.lapsed,
            settled.outcome.recorded,
            settled.outcome.duplicate,
            settled.outcome.check.used,
            settled.reservation.status
        ),
        Ok(ReservationAnswer::Released(released)) => format!(
            "released already {} status {}",
            released.already, released.reservation.status
        ),
    }
}
