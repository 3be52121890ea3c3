//! The dashboard's read paths with several meters: the overview rows carry every meter's total
//! and show the one nearest its limit, a refresh after another connection records on any meter
//! sees it, and the detail has each meter's standing, per-day usage and largest groups.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use meterline_core::Config;
use meterline_core::billing::WarningLevel;
use meterline_store::{MeterFigure, NewCustomer, Refresh, has_meters};
use meterline_store::{RecordRequest, Store};

use crate::support::{AI_PLANS, Engine, TestDb, engine_tests};

engine_tests!(
    each_row_carries_every_meter_and_shows_the_one_nearest_its_limit,
    without_meters_the_rows_are_as_before,
    a_refresh_sees_usage_another_connection_recorded_on_any_meter,
    the_detail_has_every_meter_with_its_days_and_largest_groups,
);

/// The AI API of tests/fixtures/plans/ai.toml (requests capped, tokens by model with overage,
/// active users), and two meters more: seats (latest), peak (max).
const MORE_METERS: &str = r#"
[[meters]]
id = "seats"
aggregation = "latest"
property = "seats"

[[meters]]
id = "peak"
aggregation = "max"
property = "concurrency"
"#;

fn config() -> Config {
    Config::parse(&format!("{AI_PLANS}{MORE_METERS}"), "plans.toml").unwrap()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap()
}

fn customer(id: &str, plan: &str) -> NewCustomer {
    NewCustomer {
        id: id.into(),
        name: None,
        plan_id: plan.into(),
        stripe_customer_id: None,
        billing_anchor: Some(NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()),
    }
}

/// One event on `meter` with `properties`, at `at`; true when counted.
fn record(
    store: &mut Store,
    id: &str,
    meter: &str,
    properties: &[(&str, &str)],
    at: DateTime<Utc>,
) -> bool {
    let mut request = RecordRequest::new(id, 1, at);
    request.meter = Some(meter.into());
    request.properties = properties
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    store.record(&config(), &request, now()).unwrap().recorded
}

fn day(n: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, n, 10, 0, 0).unwrap()
}

/// acme (free): 90 of 100 requests, 2,000 of 10,000 tokens, 1 of 4 users: requests nearest.
/// globex (pro): 1 request, 900,000 tokens of 1,000,000: tokens nearest. initech (pro): only
/// unbilled users: nothing limited is used, the first meter shows.
fn database(engine: Engine) -> (TestDb, Store) {
    let db = TestDb::on(engine);
    let mut store = db.open();
    let config = config();
    for (id, plan) in [("acme", "free"), ("globex", "pro"), ("initech", "pro")] {
        store
            .add_customer(&config, &customer(id, plan), now())
            .unwrap();
    }
    for i in 0..90 {
        assert!(record(&mut store, "acme", "requests", &[], day(1 + i % 19)));
    }
    assert!(record(
        &mut store,
        "acme",
        "tokens",
        &[("tokens", "2000"), ("model", "small")],
        day(3)
    ));
    assert!(record(
        &mut store,
        "acme",
        "users",
        &[("user", "ann")],
        day(4)
    ));
    assert!(record(&mut store, "globex", "requests", &[], day(2)));
    assert!(record(
        &mut store,
        "globex",
        "tokens",
        &[("tokens", "900000"), ("model", "large")],
        day(5)
    ));
    assert!(record(
        &mut store,
        "initech",
        "users",
        &[("user", "bob")],
        day(6)
    ));
    (db, store)
}

fn figure(used: i64, limit: Option<i64>) -> MeterFigure {
    MeterFigure { used, limit }
}

fn each_row_carries_every_meter_and_shows_the_one_nearest_its_limit(engine: Engine) {
    let (_db, store) = database(engine);
    let config = config();
    assert!(has_meters(&config));
    let dashboard = store.dashboard(&config, now()).unwrap();
    let row = |id: &str| dashboard.rows.iter().find(|r| r.customer_id == id).unwrap();

    let acme = row("acme");
    assert_eq!(
        acme.meters,
        [
            figure(90, Some(100)),
            figure(2000, Some(10_000)),
            figure(1, Some(4)),
            figure(0, None),
            figure(0, None),
        ]
    );
    assert_eq!((acme.shown, acme.used, acme.limit), (0, 90, Some(100)));
    assert_eq!(acme.level(&config), WarningLevel::Warning);

    let globex = row("globex");
    assert_eq!(globex.meters[1], figure(900_000, Some(1_000_000)));
    assert_eq!((globex.shown, globex.used), (1, 900_000));
    // Users are not billed on pro: unlimited, and nothing limited is used: the first meter.
    let initech = row("initech");
    assert_eq!(initech.meters[2], figure(1, None));
    assert_eq!(
        (initech.shown, initech.used, initech.limit),
        (0, 0, Some(10_000))
    );

    // The row agrees with `check`, meter by meter.
    for r in &dashboard.rows {
        let checks = store
            .metered_check(&config, &r.customer_id, now())
            .unwrap()
            .meters;
        let from_check: Vec<MeterFigure> = checks
            .iter()
            .map(|c| figure(c.check.used, c.check.limit))
            .collect();
        assert_eq!(r.meters, from_check, "{}", r.customer_id);
    }

    // Picking a meter shows it; None goes back to the nearest.
    let mut acme = acme.clone();
    acme.show_meter(Some(1));
    assert_eq!((acme.shown, acme.used, acme.limit), (1, 2000, Some(10_000)));
    acme.show_meter(Some(99));
    assert_eq!(acme.shown, 0, "a meter that is not there: the nearest");
    acme.show_meter(None);
    assert_eq!((acme.shown, acme.used), (0, 90));
}

fn without_meters_the_rows_are_as_before(engine: Engine) {
    let db = TestDb::on(engine);
    let mut store = db.open();
    let config = Config::load(&crate::support::repo_plans()).unwrap();
    assert!(!has_meters(&config));
    store
        .add_customer(&config, &customer("acme", "free"), now())
        .unwrap();
    store
        .record(&config, &RecordRequest::new("acme", 250, day(2)), now())
        .unwrap();
    let dashboard = store.dashboard(&config, now()).unwrap();
    let row = &dashboard.rows[0];
    assert!(row.meters.is_empty());
    assert_eq!((row.used, row.limit, row.shown), (250, Some(1000), 0));
    let detail = store.customer_detail(&config, "acme", now()).unwrap();
    assert!(detail.meters.is_empty());
}

fn a_refresh_sees_usage_another_connection_recorded_on_any_meter(engine: Engine) {
    let (db, mut writer) = database(engine);
    let config = config();
    let reader = db.open();
    let marks = reader.dashboard(&config, now()).unwrap().marks;
    // Tokens only: no change to the default meter, the new event id announces it.
    assert!(record(
        &mut writer,
        "acme",
        "tokens",
        &[("tokens", "7500"), ("model", "large")],
        day(7)
    ));
    let Refresh::Partial {
        usage,
        marks: after,
        ..
    } = reader.dashboard_refresh(&config, marks, now()).unwrap()
    else {
        panic!("expected a partial refresh");
    };
    assert_eq!(usage.len(), 1);
    let change = &usage[0];
    assert_eq!(change.customer_id, "acme");
    assert_eq!(change.new_events, 1);
    assert_eq!(change.meters[1], figure(9500, Some(10_000)));
    // Tokens (95 %) are now nearer their limit than requests (90 %).
    assert_eq!(change.used, 9500);
    // A refused event (past the cap) writes nothing, so nothing changes.
    assert!(!record(
        &mut writer,
        "acme",
        "tokens",
        &[("tokens", "900"), ("model", "x")],
        day(7)
    ));
    assert!(matches!(
        reader.dashboard_refresh(&config, after, now()).unwrap(),
        Refresh::Unchanged
    ));
}

fn the_detail_has_every_meter_with_its_days_and_largest_groups(engine: Engine) {
    let (_db, mut store) = database(engine);
    let config = config();
    // globex: tokens over 7 models, users on two days, seats (latest) and peak (max).
    for (i, model) in ["a", "b", "c", "d", "e", "f", "g"].iter().enumerate() {
        let tokens = (1000 * (i + 1)).to_string();
        let at = day(8) + Duration::minutes(i as i64);
        assert!(record(
            &mut store,
            "globex",
            "tokens",
            &[("tokens", &tokens), ("model", model)],
            at
        ));
    }
    for (user, d) in [("ann", 9), ("bob", 9), ("ann", 9), ("ann", 10), ("cy", 10)] {
        assert!(record(
            &mut store,
            "globex",
            "users",
            &[("user", user)],
            day(d)
        ));
    }
    // Latest of the day is the latest by time, not the last recorded.
    assert!(record(
        &mut store,
        "globex",
        "seats",
        &[("seats", "7")],
        day(11) + Duration::hours(2)
    ));
    assert!(record(
        &mut store,
        "globex",
        "seats",
        &[("seats", "3")],
        day(11)
    ));
    assert!(record(
        &mut store,
        "globex",
        "peak",
        &[("concurrency", "4")],
        day(12)
    ));
    assert!(record(
        &mut store,
        "globex",
        "peak",
        &[("concurrency", "9")],
        day(12)
    ));
    assert!(record(
        &mut store,
        "globex",
        "peak",
        &[("concurrency", "2")],
        day(12)
    ));

    let detail = store.customer_detail(&config, "globex", now()).unwrap();
    let ids: Vec<&str> = detail.meters.iter().map(|m| m.meter.as_str()).collect();
    assert_eq!(ids, ["requests", "tokens", "users", "seats", "peak"]);
    let meter = |id: &str| detail.meters.iter().find(|m| m.meter == id).unwrap();
    let on = |m: &meterline_store::MeterDetail, d: u32| {
        m.daily
            .iter()
            .find(|(date, _)| *date == NaiveDate::from_ymd_opt(2026, 11, d).unwrap())
            .unwrap()
            .1
    };
    // Every day of the period so far, for each meter.
    assert!(detail.meters.iter().all(|m| m.daily.len() == 20));

    let tokens = meter("tokens");
    assert_eq!(tokens.check.used, 928_000);
    assert_eq!(tokens.check.limit, Some(1_000_000));
    assert_eq!(tokens.check.level, WarningLevel::Warning);
    assert_eq!((on(tokens, 5), on(tokens, 8)), (900_000, 28_000));
    // The top five groups, largest first, and how many more.
    let groups: Vec<(String, i64)> = tokens
        .groups
        .iter()
        .map(|g| (g.values[0].clone().unwrap(), g.used))
        .collect();
    assert_eq!(
        groups,
        [
            ("large".to_string(), 900_000),
            ("g".to_string(), 7000),
            ("f".to_string(), 6000),
            ("e".to_string(), 5000),
            ("d".to_string(), 4000),
        ]
    );
    assert_eq!(tokens.more_groups, 3);

    let users = meter("users");
    assert_eq!(users.check.used, 3);
    assert_eq!(users.check.limit, None, "not billed on pro");
    // Distinct users of each day.
    assert_eq!((on(users, 9), on(users, 10)), (2, 2));
    assert!(users.groups.is_empty() && users.more_groups == 0);
    assert_eq!(on(meter("seats"), 11), 7);
    assert_eq!(meter("seats").check.used, 7);
    assert_eq!(on(meter("peak"), 12), 9);
    assert_eq!(on(meter("requests"), 2), 1);
}
