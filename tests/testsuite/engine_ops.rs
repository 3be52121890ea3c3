//! What each engine does its own way behind `db::Connection` (the store's code above it never
//! asks which engine it is on): the same answers on both, and the operations that exist on
//! one engine only refused on the other by name.

use chrono::NaiveDate;

use crate::support::cli::{NOW, Scratch};
use crate::support::engine::{Engine, engine_tests};

engine_tests!(a_days_latest_value_is_its_latest_event_by_time_then_by_id);

const LATEST_PLANS: &str = r#"
[[meters]]
id = "seats"
aggregation = "latest"
property = "seats"

[[plans]]
id = "free"
[plans.meters.seats]
included = 100
"#;

/// The dashboard's per-day chart of a `latest` meter (one statement on both engines, no
/// engine's own spelling): a day's value is its latest event's by time, not the last
/// recorded, and of two events at the same second the one recorded last.
fn a_days_latest_value_is_its_latest_event_by_time_then_by_id(engine: Engine) {
    let s = Scratch::on(engine);
    std::fs::write(&s.plans, LATEST_PLANS).unwrap();
    s.add_customer("acme", "free", "2026-11-01");
    let seats = |at: &str, value: &str| {
        s.cmd()
            .args(["record", "acme", "--meter", "seats", "--at", at])
            .args(["--property", &format!("seats={value}")])
            .assert()
            .success();
    };
    seats("2026-11-20T14:00:00Z", "4");
    seats("2026-11-20T13:00:00Z", "9");
    seats("2026-11-21T12:00:00Z", "5");
    seats("2026-11-21T12:00:00Z", "8");
    seats("2026-11-21T11:59:59Z", "6");

    let store = meterline::Store::open(&s.db).unwrap();
    let config = meterline::Config::load(&s.plans).unwrap();
    let now = chrono::DateTime::parse_from_rfc3339(NOW).unwrap().into();
    let detail = store.customer_detail(&config, "acme", now).unwrap();
    let daily = &detail.meters[0].daily;
    let on = |day: u32| {
        let date = NaiveDate::from_ymd_opt(2026, 11, day).unwrap();
        daily.iter().find(|(d, _)| *d == date).map(|(_, v)| *v)
    };
    assert_eq!((on(20), on(21)), (Some(4), Some(8)), "{daily:?}");
}

/// `copy-to` exists from an SQLite file into PostgreSQL only: the library refuses any other
/// direction itself (the command checks before it), writing nothing.
#[test]
fn the_library_copies_from_sqlite_into_postgres_only() {
    let (sqlite, other_sqlite, postgres) = (
        Scratch::on(Engine::Sqlite),
        Scratch::on(Engine::Sqlite),
        Scratch::on(Engine::Postgres),
    );
    let open = |s: &Scratch| meterline::Store::open(&s.db).unwrap();
    let refusal = |source: &Scratch, target: &Scratch| match open(source)
        .copy_to(&open(target), &mut |_| {})
    {
        Err(e @ meterline::Error::InvalidInput(_)) => e.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert!(
        refusal(&sqlite, &other_sqlite).contains("into a PostgreSQL database only"),
        "SQLite into SQLite"
    );
    assert!(
        refusal(&postgres, &postgres).contains("the source is a PostgreSQL database"),
        "PostgreSQL into PostgreSQL"
    );
    let copied = open(&sqlite)
        .copy_to(&open(&postgres), &mut |_| {})
        .unwrap();
    assert!(copied.committed(), "{:?}", copied.mismatches);
}
