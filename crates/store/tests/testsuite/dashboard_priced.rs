//! The dashboard's reads of events of a type and priced groups (issue 26), on both engines:
//! the detail lists each group's units past `included` and their money as `check` prices
//! them, and the recent and problem events are one line per event, naming its type and every
//! meter it fed.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use meterline_core::Config;
use meterline_store::{NewCustomer, RecordRequest, Store};
use rust_decimal::Decimal;

use crate::support::common::AI_PRICED_PLANS;
use crate::support::{Engine, TestDb, engine_tests};

engine_tests!(
    the_detail_prices_each_group_as_check_does,
    events_of_a_type_are_one_line_naming_every_meter_they_fed,
    the_detail_lists_as_many_events_of_a_type_as_of_one_meter,
);

fn config() -> Config {
    Config::parse(AI_PRICED_PLANS, "plans.toml").unwrap()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap()
}

/// acme on pro with one `completion` event per (tokens, model), by five users in turn (pro
/// caps active users at 10).
fn store_with(engine: Engine, events: &[(i64, &str)]) -> (TestDb, Store) {
    let db = TestDb::on(engine);
    let mut store = db.open();
    let config = config();
    let customer = NewCustomer {
        id: "acme".into(),
        name: Some("Acme".into()),
        plan_id: "pro".into(),
        stripe_customer_id: None,
        billing_anchor: Some(NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()),
    };
    store.add_customer(&config, &customer, now()).unwrap();
    for (i, (tokens, model)) in events.iter().enumerate() {
        let mut request = RecordRequest::new("acme", 1, now());
        request.event_type = Some("completion".into());
        request.properties = [
            ("tokens", tokens.to_string()),
            ("model", model.to_string()),
            ("user", format!("u{}", i % 5)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert!(store.record(&config, &request, now()).unwrap().recorded);
    }
    (db, store)
}

fn the_detail_prices_each_group_as_check_does(engine: Engine) {
    // 1,000 included: small's 800 inside, large's 500 with 300 past at 0.01, medium's 100
    // past at the overage rate 0.002.
    let (_db, store) = store_with(engine, &[(800, "small"), (500, "large"), (100, "medium")]);
    let detail = store.customer_detail(&config(), "acme", now()).unwrap();
    let tokens = detail.meters.iter().find(|m| m.meter == "tokens").unwrap();
    let money = |s: &str| s.parse::<Decimal>().unwrap();
    assert_eq!(
        (tokens.check.overage_units, tokens.check.overage_amount),
        (400, money("3.2")),
        "priced per group, not 400 × 0.002"
    );
    let groups: Vec<(Option<String>, i64, i64, Decimal)> = tokens
        .groups
        .iter()
        .map(|g| {
            (
                g.values[0].clone(),
                g.used,
                g.overage_units,
                g.overage_amount,
            )
        })
        .collect();
    assert_eq!(
        groups,
        [
            (Some("small".into()), 800, 0, money("0")),
            (Some("large".into()), 500, 300, money("3")),
            (Some("medium".into()), 100, 100, money("0.2")),
        ]
    );
    // The detail agrees with check.
    let check = store.metered_check(&config(), "acme", now()).unwrap();
    assert_eq!(check.meter("tokens").unwrap().check, tokens.check);
}

/// An event's line as the test compares it: its type, and each meter it fed with its amount.
type Line<'e> = (Option<&'e str>, Vec<(&'e str, i64)>);

fn events_of_a_type_are_one_line_naming_every_meter_they_fed(engine: Engine) {
    let (_db, store) = store_with(engine, &[(800, "small"), (500, "large")]);
    let mut one_meter = RecordRequest::new("acme", 1, now());
    one_meter.meter = Some("requests".into());
    let mut store = store;
    assert!(store.record(&config(), &one_meter, now()).unwrap().recorded);

    let detail = store.customer_detail(&config(), "acme", now()).unwrap();
    let lines: Vec<Line> = detail
        .recent
        .iter()
        .map(|e| {
            let meters = e.meters.iter().map(|(m, a)| (m.as_str(), *a)).collect();
            (e.event_type.as_deref(), meters)
        })
        .collect();
    let fed = |tokens| vec![("requests", 1), ("tokens", tokens), ("active_users", 1)];
    assert_eq!(
        lines,
        [
            (None, vec![("requests", 1)]),
            (Some("completion"), fed(500)),
            (Some("completion"), fed(800)),
        ],
        "newest first, one line per event"
    );
    // Each line has its event's id: its first row's (rows 1-3 and 4-6, then 7).
    let ids = |events: &[meterline_store::EventRow]| -> Vec<i64> {
        events.iter().map(|e| e.id).collect()
    };
    assert_eq!(ids(&detail.recent), [7, 4, 1]);

    // The Events view (every event is pending, unmapped): the same lines.
    let problems = store.problem_events(500, now()).unwrap();
    assert_eq!(ids(&problems), ids(&detail.recent));
    assert_eq!(problems[1].meters, detail.recent[1].meters);
}

/// The detail lists its latest twelve events, however many meters each fed (it once read
/// twelve rows: four events of three meters).
fn the_detail_lists_as_many_events_of_a_type_as_of_one_meter(engine: Engine) {
    let events: Vec<(i64, &str)> = (0..13).map(|_| (10, "small")).collect();
    let (_db, store) = store_with(engine, &events);
    let detail = store.customer_detail(&config(), "acme", now()).unwrap();
    assert_eq!(detail.recent.len(), 12);
    assert!(detail.recent.iter().all(|e| e.meters.len() == 3));
    // Newest first: the thirteen events' ids are 1, 4, …, 37; the first is left out.
    assert_eq!(detail.recent[0].id, 37);
    assert_eq!(detail.recent[11].id, 4);
}
