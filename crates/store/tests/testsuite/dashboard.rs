//! The dashboard's read paths on real databases of both engines: the full load agrees with
//! `status`, and refreshes see exactly what other connections changed.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use meterline_core::Config;
use meterline_core::billing::{Period, UsageCheck, WarningLevel};
use meterline_store::demo::{DemoSpec, fill};
use meterline_store::{BacklogChange, NewCustomer, Projection, Refresh, StripeState, project};
use meterline_store::{RecordRequest, Store};

use crate::support::{Engine, TestDb, engine_tests};

engine_tests!(
    the_full_load_agrees_with_status_on_a_demo_database,
    a_refresh_reads_only_what_another_connection_recorded,
    a_hard_cap_refusal_changes_nothing,
    stripe_state_changes_recount_the_backlog,
    a_customer_change_reloads_everything,
    the_detail_has_every_day_history_and_recent_events,
    the_events_view_lists_pending_events_newest_first,
    events_past_stripes_window_count_as_expired_before_any_sync_marks_them,
);

fn config() -> Config {
    Config::load(&crate::support::repo_plans()).unwrap()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap()
}

fn customer(id: &str, plan: &str, stripe: Option<&str>) -> NewCustomer {
    NewCustomer {
        id: id.into(),
        name: None,
        plan_id: plan.into(),
        stripe_customer_id: stripe.map(str::to_string),
        billing_anchor: Some(NaiveDate::from_ymd_opt(2026, 1, 5).unwrap()),
    }
}

fn record(store: &mut Store, id: &str, n: i64, at: DateTime<Utc>) -> bool {
    store
        .record(&config(), &RecordRequest::new(id, n, at), now())
        .unwrap()
        .recorded
}

/// A database with two customers and a second connection to it.
fn two_connections(engine: Engine) -> (TestDb, Store, Store) {
    let db = TestDb::on(engine);
    let mut writer = db.open();
    let config = config();
    writer
        .add_customer(&config, &customer("acme", "free", Some("cus_acme")), now())
        .unwrap();
    writer
        .add_customer(&config, &customer("globex", "pro", None), now())
        .unwrap();
    record(&mut writer, "acme", 500, now() - Duration::days(1));
    let reader = db.open();
    (db, writer, reader)
}

fn the_full_load_agrees_with_status_on_a_demo_database(engine: Engine) {
    let db = TestDb::on(engine);
    let mut store = db.open();
    let config = config();
    let spec = DemoSpec {
        customers: 14,
        events: 3_000,
        seed: 11,
    };
    fill(&mut store, &config, &spec, now()).unwrap();
    let dashboard = store.dashboard(&config, now()).unwrap();
    let status = store.status(&config, now()).unwrap();
    let marked_expired = |id: &str| -> i64 {
        db.inspect().number(&format!(
            "SELECT COUNT(*) FROM usage_events
             WHERE customer_id = '{id}' AND stripe_reported_at IS NULL
               AND stripe_expired_at IS NOT NULL"
        ))
    };
    assert_eq!(dashboard.rows.len(), status.len());
    for s in &status {
        let row = dashboard
            .rows
            .iter()
            .find(|r| r.customer_id == s.check.customer)
            .unwrap();
        assert_eq!(row.used, s.check.used, "{}", row.customer_id);
        assert_eq!(row.limit, s.check.limit);
        assert_eq!(row.period.start, s.check.period_start);
        assert_eq!(row.level(&config), s.check.level);
        // Status counts every event not reported nor marked expired; the dashboard tells
        // apart those past Stripe's window (expired, marked or not).
        assert_eq!(
            row.backlog.unreported + row.backlog.expired,
            s.unreported + marked_expired(&row.customer_id),
            "{}",
            row.customer_id
        );
        assert_eq!(row.mapped, s.stripe_customer_id.is_some());
    }
    // Every level is represented in the demo.
    for level in WarningLevel::ALL {
        assert!(
            dashboard.rows.iter().any(|r| r.level(&config) == level),
            "{level:?}"
        );
    }
    let failed: i64 = dashboard.rows.iter().map(|r| r.backlog.failed).sum();
    assert_eq!(failed, 3, "the demo has three failed events");
}

fn a_refresh_reads_only_what_another_connection_recorded(engine: Engine) {
    let (_db, mut writer, reader) = two_connections(engine);
    let config = config();
    let loaded = reader.dashboard(&config, now()).unwrap();
    assert!(matches!(
        reader
            .dashboard_refresh(&config, loaded.marks, now())
            .unwrap(),
        Refresh::Unchanged
    ));
    record(&mut writer, "acme", 100, now());
    record(&mut writer, "acme", 50, now());
    match reader
        .dashboard_refresh(&config, loaded.marks, now())
        .unwrap()
    {
        Refresh::Partial {
            usage,
            backlog,
            marks,
            ..
        } => {
            assert_eq!(usage.len(), 1);
            assert_eq!(usage[0].customer_id, "acme");
            assert_eq!(usage[0].new_events, 2);
            assert_eq!(usage[0].used, 650);
            assert!(backlog.is_none(), "no Stripe state changed");
            assert_eq!(marks.last_event_id, loaded.marks.last_event_id + 2);
        }
        other => panic!("expected a partial refresh, got {other:?}"),
    }
}

fn a_hard_cap_refusal_changes_nothing(engine: Engine) {
    let (_db, mut writer, reader) = two_connections(engine);
    let config = config();
    let loaded = reader.dashboard(&config, now()).unwrap();
    assert!(
        !record(&mut writer, "acme", 10_000, now()),
        "refused by the cap"
    );
    assert!(matches!(
        reader
            .dashboard_refresh(&config, loaded.marks, now())
            .unwrap(),
        Refresh::Unchanged
    ));
}

fn stripe_state_changes_recount_the_backlog(engine: Engine) {
    let (db, mut writer, reader) = two_connections(engine);
    let config = config();
    record(&mut writer, "acme", 1, now());
    record(&mut writer, "globex", 1, now());
    let loaded = reader.dashboard(&config, now()).unwrap();
    let acme = |d: &meterline_store::Dashboard| {
        d.rows
            .iter()
            .find(|r| r.customer_id == "acme")
            .unwrap()
            .backlog
    };
    assert_eq!(acme(&loaded).unreported, 2);
    // What a sync does: one event reported, one refused by Stripe.
    let raw = db.inspect();
    raw.exec("UPDATE usage_events SET stripe_reported_at = '2026-11-20T12:00:00Z' WHERE id = 1");
    raw.exec(
        "UPDATE usage_events SET stripe_error = 'No such customer',
             stripe_failed_at = '2026-11-20T12:00:00Z', stripe_attempts = 1
         WHERE id = 2",
    );
    match reader
        .dashboard_refresh(&config, loaded.marks, now())
        .unwrap()
    {
        Refresh::Partial {
            usage,
            backlog: Some(BacklogChange::Customers(backlog)),
            ..
        } => {
            assert!(usage.is_empty());
            let b = backlog["acme"];
            assert_eq!((b.unreported, b.failed, b.expired), (1, 1, 0));
            assert!(
                !backlog.contains_key("globex"),
                "only changed customers are recounted"
            );
        }
        other => panic!("expected a backlog recount, got {other:?}"),
    }
    let problems = reader.problem_events(10, now()).unwrap();
    assert_eq!(problems[0].id, 2, "failed first");
    assert_eq!(problems[0].state, StripeState::Failed);
    assert_eq!(problems[0].error.as_deref(), Some("No such customer"));
    assert!(problems.iter().any(|e| e.state == StripeState::Unmapped));
    assert!(problems.iter().all(|e| e.state != StripeState::Reported));
}

fn a_customer_change_reloads_everything(engine: Engine) {
    let (_db, mut writer, reader) = two_connections(engine);
    let config = config();
    let loaded = reader.dashboard(&config, now()).unwrap();
    writer
        .add_customer(&config, &customer("initech", "team", None), now())
        .unwrap();
    match reader
        .dashboard_refresh(&config, loaded.marks, now())
        .unwrap()
    {
        Refresh::Full(d) => assert_eq!(d.rows.len(), 3),
        other => panic!("expected a full reload, got {other:?}"),
    }
    let loaded = reader.dashboard(&config, now()).unwrap();
    writer.set_plan(&config, "acme", "starter", now()).unwrap();
    match reader
        .dashboard_refresh(&config, loaded.marks, now())
        .unwrap()
    {
        Refresh::Full(d) => {
            let acme = d.rows.iter().find(|r| r.customer_id == "acme").unwrap();
            assert_eq!(
                (acme.plan_id.as_str(), acme.limit),
                ("starter", Some(10_000))
            );
        }
        other => panic!("expected a full reload, got {other:?}"),
    }
}

fn the_detail_has_every_day_history_and_recent_events(engine: Engine) {
    let (_db, mut writer, reader) = two_connections(engine);
    let config = config();
    record(&mut writer, "acme", 20, now() - Duration::days(3));
    record(&mut writer, "acme", 30, now() - Duration::days(40));
    let d = reader.customer_detail(&config, "acme", now()).unwrap();
    assert_eq!(d.check.used, 520);
    // Period 2026-11-05 .. 2026-12-05; now is the 20th: 16 days, zeros included.
    assert_eq!(d.daily.len(), 16);
    assert_eq!(d.daily[0].0, NaiveDate::from_ymd_opt(2026, 11, 5).unwrap());
    assert_eq!(d.daily.iter().map(|(_, n)| n).sum::<i64>(), 520);
    assert_eq!(d.daily[14].1, 500);
    assert_eq!(d.history.len(), 6);
    assert_eq!(d.history[4].check.used, 30, "the previous period");
    assert_eq!(d.recent.len(), 3);
    assert_eq!(d.recent[0].quantity, 500, "newest first");
    // The one 40 days old is past Stripe's window: expired, though no sync marked it.
    let states: Vec<StripeState> = d.recent.iter().map(|e| e.state).collect();
    assert_eq!(
        states,
        [
            StripeState::Pending,
            StripeState::Pending,
            StripeState::Expired
        ]
    );
    assert_eq!((d.backlog.unreported, d.backlog.expired), (2, 1));
    let unknown = reader.customer_detail(&config, "nobody", now());
    assert!(
        unknown
            .unwrap_err()
            .to_string()
            .contains("unknown customer")
    );
}

fn check(used: i64, limit: Option<i64>) -> UsageCheck {
    let period = Period {
        start: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
        end: Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
    };
    let allowance = meterline_core::billing::Allowance {
        included: limit,
        hard_cap: true,
        overage_rate: None,
    };
    UsageCheck::compute("c", "p", allowance, period, used, &Default::default())
}

#[test]
fn the_projection_follows_the_average_pace() {
    let day10 = Utc.with_ymd_and_hms(2026, 11, 11, 0, 0, 0).unwrap();
    // 400 in 10 days: 1,000 after 25 days.
    assert_eq!(
        project(&check(400, Some(1000)), day10),
        Projection::On(Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap())
    );
    assert_eq!(
        project(&check(100, Some(1000)), day10),
        Projection::NotThisPeriod
    );
    assert_eq!(
        project(&check(0, Some(1000)), day10),
        Projection::NotThisPeriod
    );
    assert_eq!(
        project(&check(1000, Some(1000)), day10),
        Projection::AlreadyReached
    );
    assert_eq!(project(&check(5, None), day10), Projection::Unlimited);
}

#[test]
fn a_projection_beyond_any_calendar_is_no_date_not_a_panic() {
    // 10,000,000 included, 1 unit in 30 days: the limit is 800,000 years away, past what a
    // date can hold (it panicked adding the time span).
    let day30 = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
    assert_eq!(
        project(&check(1, Some(10_000_000)), day30),
        Projection::NotThisPeriod
    );
    assert_eq!(
        project(&check(1, Some(i64::MAX)), day30),
        Projection::NotThisPeriod
    );
}

// SQLite's: the schema versions of the two engines differ until they share one.
#[test]
fn the_dashboard_migration_applies_once_and_counts_customer_changes() {
    let db = TestDb::on(Engine::Sqlite);
    let mut store = db.open();
    let before = store.change_marks().unwrap();
    store
        .add_customer(&config(), &customer("a", "free", None), now())
        .unwrap();
    drop(store);
    let store = db.open();
    assert_eq!(
        store.schema_version().unwrap(),
        meterline_store::SCHEMA_VERSION
    );
    let after = store.change_marks().unwrap();
    assert_eq!(after.customers, before.customers + 1);
}

// SQLite's: the rows are written behind the store's back, ids included (the store gives
// PostgreSQL's events their ids itself).
#[test]
fn many_stripe_changes_at_once_recount_every_customer() {
    let (db, _writer, reader) = two_connections(Engine::Sqlite);
    let config = config();
    let raw = db.inspect();
    raw.exec(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 5200)
         INSERT INTO customers (id, name, plan_id, billing_anchor, created_at)
         SELECT 'bulk-' || (100000 + i), 'Bulk', 'free', '2026-01-05', '2026-01-05T00:00:00Z'
         FROM n",
    );
    raw.exec(
        "INSERT INTO usage_events (customer_id, quantity, occurred_at, recorded_at, period_start)
         SELECT id, 1, '2026-11-20T10:00:00Z', '2026-11-20T10:00:00Z', '2026-11-05T00:00:00Z'
         FROM customers WHERE id LIKE 'bulk-%'",
    );
    let loaded = reader.dashboard(&config, now()).unwrap();
    raw.exec(
        "UPDATE usage_events SET stripe_reported_at = '2026-11-20T12:00:00Z'
         WHERE customer_id LIKE 'bulk-%'",
    );
    match reader
        .dashboard_refresh(&config, loaded.marks, now())
        .unwrap()
    {
        Refresh::Partial {
            backlog: Some(BacklogChange::All(counts)),
            ..
        } => {
            assert!(!counts.contains_key("bulk-100001"), "reported: no backlog");
            assert_eq!(
                counts["acme"].unreported, 1,
                "untouched customers keep theirs"
            );
        }
        other => panic!("expected a full backlog recount, got {other:?}"),
    }
}

/// A database whose customer exists since 60 days before `now()`, mapped to Stripe.
fn old_customer(engine: Engine) -> (TestDb, Store) {
    let db = TestDb::on(engine);
    let mut store = db.open();
    store
        .add_customer(
            &config(),
            &customer("acme", "pro", Some("cus_acme")),
            now() - Duration::days(60),
        )
        .unwrap();
    (db, store)
}

fn the_events_view_lists_pending_events_newest_first(engine: Engine) {
    let (db, mut store) = old_customer(engine);
    // Recorded in one order, happened in another (`record --at`).
    for hours in [30, 2, 50, 10, 70] {
        record(&mut store, "acme", 1, now() - Duration::hours(hours));
    }
    // One refused by Stripe: listed first whatever its date.
    db.inspect().exec(
        "UPDATE usage_events SET stripe_failed_at = '2026-11-20T11:00:00Z',
             stripe_error = 'No such customer'
         WHERE id = 5",
    );
    let problems = store.problem_events(10, now()).unwrap();
    let shown: Vec<(i64, StripeState)> = problems.iter().map(|e| (e.id, e.state)).collect();
    assert_eq!(
        shown,
        [
            (5, StripeState::Failed),
            (2, StripeState::Pending),
            (4, StripeState::Pending),
            (1, StripeState::Pending),
            (3, StripeState::Pending),
        ]
    );
}

fn events_past_stripes_window_count_as_expired_before_any_sync_marks_them(engine: Engine) {
    let (db, mut store) = old_customer(engine);
    let config = config();
    // Two past the 35-day window (one of them refused once), one still sendable.
    record(&mut store, "acme", 1, now() - Duration::days(40));
    record(&mut store, "acme", 1, now() - Duration::days(36));
    record(&mut store, "acme", 1, now() - Duration::days(30));
    db.inspect().exec(
        "UPDATE usage_events SET stripe_failed_at = '2026-10-20T11:00:00Z', stripe_error = 'timeout'
         WHERE id = 2",
    );
    let backlog = |d: &meterline_store::Dashboard| d.rows[0].backlog;
    let expect = meterline_store::Backlog {
        unreported: 1,
        failed: 0,
        expired: 2,
    };
    let loaded = store.dashboard(&config, now()).unwrap();
    assert_eq!(backlog(&loaded), expect);
    let detail = store.customer_detail(&config, "acme", now()).unwrap();
    assert_eq!(detail.backlog, expect);
    let states: Vec<StripeState> = detail.recent.iter().map(|e| e.state).collect();
    assert_eq!(
        states,
        [
            StripeState::Pending,
            StripeState::Expired,
            StripeState::Expired
        ]
    );
    let problems = store.problem_events(10, now()).unwrap();
    let shown: Vec<(i64, StripeState)> = problems.iter().map(|e| (e.id, e.state)).collect();
    assert_eq!(
        shown,
        [
            (2, StripeState::Expired),
            (1, StripeState::Expired),
            (3, StripeState::Pending),
        ]
    );
    // The sendable one turns expired 35 days after it happened: the dashboard reloads then.
    assert_eq!(
        loaded.next_rollover(),
        Some(now() - Duration::days(30) + Duration::days(35))
    );

    // A sync marks them: the same counts, nothing counted twice.
    db.inspect().exec(
        "UPDATE usage_events SET stripe_expired_at = '2026-11-20T11:30:00Z' WHERE id IN (1, 2)",
    );
    match store
        .dashboard_refresh(&config, loaded.marks, now())
        .unwrap()
    {
        Refresh::Partial {
            backlog: Some(BacklogChange::Customers(counts)),
            ..
        } => assert_eq!(counts["acme"], expect),
        other => panic!("expected a backlog recount, got {other:?}"),
    }
    let marked = store.dashboard(&config, now()).unwrap();
    assert_eq!(backlog(&marked), expect);

    // Usage recorded later but dated past the window is expired from the start.
    record(&mut store, "acme", 1, now() - Duration::days(50));
    match store
        .dashboard_refresh(&config, marked.marks, now())
        .unwrap()
    {
        Refresh::Partial { usage, .. } => {
            assert_eq!((usage[0].new_events, usage[0].new_expired), (0, 1));
        }
        other => panic!("expected a partial refresh, got {other:?}"),
    }
}
