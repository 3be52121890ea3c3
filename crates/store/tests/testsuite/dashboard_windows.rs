//! The dashboard's rolling windows, on both engines: the detail shows each limited meter's
//! windows as `check` does (used, limit, when a sliding window frees up, when a fixed one
//! resets), the overview each customer's fullest window, and a refresh moves it for the
//! customer who recorded. A plans.toml without windows reads none.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use meterline_core::Config;
use meterline_core::billing::WarningLevel;
use meterline_core::config::WindowKind;
use meterline_store::{NewCustomer, RecordRequest, Refresh, Store, TightestWindow};

use crate::support::{Engine, TestDb, engine_tests};

engine_tests!(
    the_detail_shows_each_window_as_check_does_and_the_overview_the_fullest,
    a_refresh_moves_the_fullest_window_of_the_customer_who_recorded,
    a_window_moved_by_time_alone_reads_again_as_it_is_then,
);

/// Tokens limited over 5 hours (sliding) and per week (fixed, from the period start) on
/// `max`; `free` has no windows.
const PLANS: &str = r#"
[[meters]]
id = "tokens"
name = "Tokens"
aggregation = "sum"
property = "tokens"

[[meters]]
id = "requests"
name = "Requests"
aggregation = "count"

[[plans]]
id = "free"
[plans.meters.tokens]
included = 1000000

[[plans]]
id = "max"
[plans.meters.tokens]
included = 40000000
[[plans.meters.tokens.limits]]
window = "5h"
limit = 1500000
[[plans.meters.tokens.limits]]
window = "7d"
kind = "fixed"
limit = 10000000
"#;

fn config() -> Config {
    Config::parse(PLANS, "plans.toml").unwrap()
}

/// A Friday noon; the period began on the 1st, so the week's window began on the 15th.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap()
}

fn add(store: &mut Store, id: &str, plan: &str) {
    let customer = NewCustomer {
        id: id.into(),
        name: None,
        plan_id: plan.into(),
        stripe_customer_id: None,
        billing_anchor: Some(NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()),
    };
    store.add_customer(&config(), &customer, now()).unwrap();
}

fn tokens(store: &mut Store, id: &str, n: i64, hours_ago: i64) {
    let mut request = RecordRequest::new(id, 1, now() - Duration::hours(hours_ago));
    request.meter = Some("tokens".into());
    request.properties.insert("tokens".into(), n.to_string());
    let outcome = store.record(&config(), &request, now()).unwrap();
    assert!(outcome.recorded, "{outcome:?}");
}

/// `maxi` on max with 2,000,000 tokens this week, 1,400,000 of them in the last 5 hours
/// (900,000 three hours ago, the first to slide out); `freebie` on free.
fn customers(store: &mut Store) {
    add(store, "maxi", "max");
    add(store, "freebie", "free");
    tokens(store, "maxi", 600_000, 6);
    tokens(store, "maxi", 900_000, 3);
    tokens(store, "maxi", 500_000, 1);
    tokens(store, "freebie", 900_000, 1);
}

fn the_detail_shows_each_window_as_check_does_and_the_overview_the_fullest(engine: Engine) {
    let db = TestDb::on(engine);
    let mut store = db.open();
    let config = config();
    customers(&mut store);

    let detail = store.customer_detail(&config, "maxi", now()).unwrap();
    assert_eq!(detail.windows.len(), 1, "{:?}", detail.windows);
    let tokens = &detail.windows[0];
    assert_eq!(
        (tokens.meter.as_str(), tokens.name.as_str()),
        ("tokens", "Tokens")
    );
    let [sliding, fixed] = &tokens.windows[..] else {
        panic!("{:?}", tokens.windows);
    };
    assert_eq!(
        (
            sliding.window.as_str(),
            sliding.kind,
            sliding.used,
            sliding.limit
        ),
        ("5h", WindowKind::Sliding, 1_400_000, 1_500_000)
    );
    assert_eq!(sliding.level, WarningLevel::Warning);
    assert_eq!(sliding.frees_at.as_deref(), Some("2026-11-20T14:00:00Z"));
    assert_eq!(sliding.frees_units, Some(900_000));
    assert_eq!(
        (
            fixed.window.as_str(),
            fixed.kind,
            fixed.used,
            fixed.remaining
        ),
        ("7d", WindowKind::Fixed, 2_000_000, 8_000_000)
    );
    assert_eq!(fixed.resets_at.as_deref(), Some("2026-11-22T00:00:00Z"));
    // The same as `check` answers.
    let check = store.metered_check(&config, "maxi", now()).unwrap();
    let checked = check.meters.iter().find(|m| m.meter == "tokens").unwrap();
    assert_eq!(checked.windows, tokens.windows);
    // A plan without windows: none.
    let free = store.customer_detail(&config, "freebie", now()).unwrap();
    assert!(free.windows.is_empty(), "{:?}", free.windows);

    let dashboard = store.dashboard(&config, now()).unwrap();
    let row = |id: &str| {
        dashboard
            .rows
            .iter()
            .find(|r| r.customer_id == id)
            .unwrap()
            .window
            .clone()
    };
    assert_eq!(
        row("maxi"),
        Some(TightestWindow {
            meter: "tokens".into(),
            window: "5h".into(),
            used: 1_400_000,
            limit: 1_500_000,
            level: WarningLevel::Warning,
            // The 5-hour window frees 900,000 then; the week resets on the 22nd.
            moves_at: Some(now() + Duration::hours(2)),
        })
    );
    assert_eq!(row("freebie"), None);

    // Without windows in plans.toml, no row and no detail has any.
    let without = PLANS
        .split("[[plans.meters.tokens.limits]]")
        .next()
        .unwrap();
    let plain = Config::parse(without, "plain").unwrap();
    assert!(!plain.has_windows());
    let dashboard = store.dashboard(&plain, now()).unwrap();
    assert!(dashboard.rows.iter().all(|r| r.window.is_none()));
    let detail = store.customer_detail(&plain, "maxi", now()).unwrap();
    assert!(detail.windows.is_empty());
}

fn a_refresh_moves_the_fullest_window_of_the_customer_who_recorded(engine: Engine) {
    let db = TestDb::on(engine);
    let mut writer = db.open();
    let config = config();
    customers(&mut writer);
    let reader = db.open();
    let loaded = reader.dashboard(&config, now()).unwrap();

    tokens(&mut writer, "maxi", 100_000, 0);
    let Refresh::Partial { usage, .. } = reader
        .dashboard_refresh(&config, loaded.marks, now())
        .unwrap()
    else {
        panic!("a new event is a partial refresh");
    };
    let [change] = &usage[..] else {
        panic!("{usage:?}");
    };
    assert_eq!(change.customer_id, "maxi");
    let window = change.window.as_ref().unwrap();
    assert_eq!((window.window.as_str(), window.used), ("5h", 1_500_000));
    assert_eq!(window.level, WarningLevel::HardCap);
    assert_eq!(window.ratio(), 1.0);
}

/// Past its `moves_at`, with no new event, the fullest window reads as it is then: the
/// 900,000 tokens of three hours ago have left the 5-hour window.
fn a_window_moved_by_time_alone_reads_again_as_it_is_then(engine: Engine) {
    let db = TestDb::on(engine);
    let mut store = db.open();
    let config = config();
    customers(&mut store);
    let later = now() + Duration::hours(2);
    let ids = [
        "maxi".to_string(),
        "freebie".to_string(),
        "gone".to_string(),
    ];
    let windows = store.customer_windows(&config, &ids, later).unwrap();
    assert_eq!(windows.len(), 2, "{windows:?}");
    let (id, window) = &windows[0];
    let window = window.as_ref().unwrap();
    assert_eq!((id.as_str(), window.window.as_str()), ("maxi", "5h"));
    assert_eq!((window.used, window.level), (500_000, WarningLevel::Ok));
    // Next, the 500,000 of an hour ago frees up, three hours on.
    assert_eq!(window.moves_at, Some(now() + Duration::hours(4)));
    assert_eq!(windows[1], ("freebie".to_string(), None));
}
