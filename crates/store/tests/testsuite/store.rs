//! The store against a real database: migrations (SQLite's file), and on both engines record
//! and its hard cap, late events, period boundaries, plan changes, exact overage, history,
//! members, status. (The `--json` shapes of check, record and status are the root suite's
//! json_shapes.rs.)

use std::str::FromStr;

use crate::support::{Engine, NOW, TestDb, engine_tests, repo_plans};
use chrono::{DateTime, NaiveDate, Utc};
use meterline_core::billing::WarningLevel;
use meterline_core::{Config, Error};
use meterline_store::{NewCustomer, SCHEMA_VERSION};
use meterline_store::{RecordRequest, Store};
use rust_decimal::Decimal;

engine_tests!(
    levels_follow_the_counter_and_the_hard_cap_refuses_atomically,
    a_record_that_would_pass_the_cap_is_refused_whole,
    late_events_count_in_their_own_period,
    the_boundary_instant_belongs_to_the_next_period,
    a_plan_change_mid_period_moves_the_current_period_only,
    a_downgrade_below_current_usage_blocks_at_once,
    overage_amounts_are_exact,
    history_lists_every_period_oldest_first,
    members_share_the_organisation_usage,
    status_puts_the_customers_most_at_risk_first,
    a_repeated_key_returns_the_original_event_and_counts_nothing,
    history_lists_no_period_before_the_customer_existed,
    a_write_refused_at_its_end_leaves_nothing_and_the_connection_usable,
);

fn t(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn now() -> DateTime<Utc> {
    t(NOW)
}

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

/// A fresh database on an engine, the shipped plans, and customers added on the given
/// plans/anchors.
struct Fixture {
    db: TestDb,
    store: Store,
    config: Config,
}

impl Fixture {
    fn new(engine: Engine, customers: &[(&str, &str, &str)]) -> Fixture {
        let db = TestDb::on(engine);
        let mut store = db.open();
        let config = Config::load(&repo_plans()).unwrap();
        for (id, plan, anchor) in customers {
            store
                .add_customer(
                    &config,
                    &NewCustomer {
                        id: id.to_string(),
                        name: None,
                        plan_id: plan.to_string(),
                        stripe_customer_id: None,
                        billing_anchor: Some(NaiveDate::from_str(anchor).unwrap()),
                    },
                    now(),
                )
                .unwrap();
        }
        Fixture { db, store, config }
    }

    fn record_at(
        &mut self,
        customer: &str,
        quantity: i64,
        at: &str,
    ) -> meterline_store::RecordOutcome {
        self.store
            .record(
                &self.config,
                &RecordRequest::new(customer, quantity, t(at)),
                now(),
            )
            .unwrap()
    }

    fn record(&mut self, customer: &str, quantity: i64) -> meterline_store::RecordOutcome {
        self.record_at(customer, quantity, NOW)
    }

    fn check(&self, customer: &str) -> meterline_core::billing::UsageCheck {
        self.store.check(&self.config, customer, now()).unwrap()
    }

    /// (period_start, period_end, used, plan_id, meter_event_name) of every counter row.
    fn counters(&self, customer: &str) -> Vec<(String, String, i64, String, String)> {
        self.db
            .inspect()
            .rows(&format!(
                "SELECT period_start, period_end, used, plan_id, meter_event_name
                 FROM usage_records WHERE customer_id = '{customer}' ORDER BY period_start"
            ))
            .into_iter()
            .map(|r| {
                let used = r[2].parse().unwrap();
                row(&r[0], &r[1], used, &r[3], &r[4])
            })
            .collect()
    }

    fn event_count(&self) -> i64 {
        self.db
            .inspect()
            .number("SELECT COUNT(*) FROM usage_events")
    }
}

fn row(
    start: &str,
    end: &str,
    used: i64,
    plan: &str,
    meter: &str,
) -> (String, String, i64, String, String) {
    (start.into(), end.into(), used, plan.into(), meter.into())
}

#[test]
fn migrations_run_twice_and_keep_the_documented_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meterline.db");
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    drop(store);

    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let columns = |table: &str| -> Vec<String> {
        let mut stmt = conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    };
    let contract: [(&str, &[&str]); 3] = [
        (
            "customers",
            &[
                "id",
                "name",
                "plan_id",
                "stripe_customer_id",
                "billing_anchor",
            ],
        ),
        (
            "usage_events",
            &[
                "id",
                "customer_id",
                "user_id",
                "quantity",
                "occurred_at",
                "idempotency_key",
                "stripe_reported_at",
                "stripe_attempts",
                "stripe_error",
            ],
        ),
        (
            "usage_records",
            &[
                "customer_id",
                "period_start",
                "period_end",
                "used",
                "plan_id",
                "meter_event_name",
            ],
        ),
    ];
    for (table, expected) in contract {
        let found = columns(table);
        for column in expected {
            assert!(
                found.iter().any(|c| c == column),
                "{table}.{column} missing"
            );
        }
    }
    // The outbox query is served by an index, not a scan of all events.
    let plan: String = conn
        .query_row(
            "EXPLAIN QUERY PLAN SELECT id FROM usage_events WHERE stripe_reported_at IS NULL",
            [],
            |r| r.get(3),
        )
        .unwrap();
    assert!(plan.contains("INDEX"), "outbox query plan: {plan}");
}

#[test]
fn a_newer_schema_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meterline.db");
    drop(Store::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let err = Store::open(&path)
        .err()
        .expect("a newer schema must be refused");
    assert!(matches!(err, Error::NewerSchema { .. }), "{err}");
    assert_eq!(err.exit_code(), 1);
    assert!(err.to_string().contains("upgrade meterline"));
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION + 1);
}

fn levels_follow_the_counter_and_the_hard_cap_refuses_atomically(engine: Engine) {
    let mut f = Fixture::new(engine, &[("acme", "free", "2026-11-01")]);
    let steps = [
        (799, WarningLevel::Ok, true),
        (1, WarningLevel::Warning, true),
        (149, WarningLevel::Warning, true),
        (1, WarningLevel::Critical, true),
        (50, WarningLevel::HardCap, false),
    ];
    let mut used = 0;
    for (quantity, level, allowed) in steps {
        let outcome = f.record("acme", quantity);
        used += quantity;
        assert!(outcome.recorded && !outcome.duplicate);
        assert_eq!(outcome.check.used, used);
        assert_eq!(
            (outcome.check.level, outcome.check.allowed),
            (level, allowed)
        );
        assert_eq!(f.check("acme"), outcome.check);
    }
    let check = f.check("acme");
    assert_eq!((check.limit, check.remaining), (Some(1000), Some(0)));
    assert_eq!(check.ratio, Some(1.0));

    let events = f.event_count();
    let refused = f.record("acme", 1);
    assert!(!refused.recorded && !refused.duplicate);
    assert_eq!(refused.event_id, None);
    assert_eq!(refused.check.used, 1000);
    assert_eq!(f.event_count(), events);
    assert_eq!(f.counters("acme")[0].2, 1000);
}

fn a_record_that_would_pass_the_cap_is_refused_whole(engine: Engine) {
    let mut f = Fixture::new(engine, &[("acme", "free", "2026-11-01")]);
    f.record("acme", 990);
    let refused = f.record("acme", 11);
    assert!(!refused.recorded);
    assert_eq!(refused.check.used, 990);
    assert!(refused.check.allowed, "10 units are still allowed");
    assert!(f.record("acme", 10).recorded);
}

fn late_events_count_in_their_own_period(engine: Engine) {
    let mut f = Fixture::new(engine, &[("acme", "starter", "2026-10-01")]);
    f.record("acme", 3);
    let late = f.record_at("acme", 7, "2026-10-15T08:30:00Z");
    assert!(late.recorded);
    assert_eq!(late.check.period_start, t("2026-10-01T00:00:00Z"));
    assert_eq!(late.check.used, 7);
    assert_eq!(f.check("acme").used, 3);
    assert_eq!(
        f.counters("acme"),
        [
            row(
                "2026-10-01T00:00:00Z",
                "2026-11-01T00:00:00Z",
                7,
                "starter",
                "meterline_usage"
            ),
            row(
                "2026-11-01T00:00:00Z",
                "2026-12-01T00:00:00Z",
                3,
                "starter",
                "meterline_usage"
            ),
        ]
    );
    let history = f.store.history(&f.config, "acme", 2, now()).unwrap();
    let used: Vec<i64> = history.iter().map(|h| h.check.used).collect();
    assert_eq!(used, [7, 3]);
}

fn the_boundary_instant_belongs_to_the_next_period(engine: Engine) {
    // Anchored on the 31st: February's period starts on the 28th, March's on the 31st again.
    let mut f = Fixture::new(engine, &[("acme", "starter", "2026-01-31")]);
    let before = f.record_at("acme", 1, "2026-02-27T23:59:59Z");
    let at = f.record_at("acme", 2, "2026-02-28T00:00:00Z");
    let last = f.record_at("acme", 4, "2026-03-30T23:59:59Z");
    let next = f.record_at("acme", 8, "2026-03-31T00:00:00Z");
    assert_eq!(before.check.period_end, t("2026-02-28T00:00:00Z"));
    assert_eq!(at.check.period_start, t("2026-02-28T00:00:00Z"));
    assert_eq!(last.check.used, 6);
    assert_eq!(next.check.period_start, t("2026-03-31T00:00:00Z"));
    let periods: Vec<(String, String, i64)> = f
        .counters("acme")
        .into_iter()
        .map(|(start, end, used, ..)| (start, end, used))
        .collect();
    assert_eq!(
        periods,
        [
            (
                "2026-01-31T00:00:00Z".into(),
                "2026-02-28T00:00:00Z".into(),
                1
            ),
            (
                "2026-02-28T00:00:00Z".into(),
                "2026-03-31T00:00:00Z".into(),
                6
            ),
            (
                "2026-03-31T00:00:00Z".into(),
                "2026-04-30T00:00:00Z".into(),
                8
            ),
        ]
    );
}

fn a_plan_change_mid_period_moves_the_current_period_only(engine: Engine) {
    let mut f = Fixture::new(engine, &[("acme", "free", "2026-10-01")]);
    f.record_at("acme", 400, "2026-10-20T00:00:00Z");
    f.record("acme", 900);
    f.store.set_plan(&f.config, "acme", "pro", now()).unwrap();
    let check = f.check("acme");
    assert_eq!((check.plan.as_str(), check.used), ("pro", 900));
    assert_eq!(
        (check.limit, check.level),
        (Some(100_000), WarningLevel::Ok)
    );
    assert_eq!(check.overage_rate, Some(dec("0.0005")));
    f.store
        .set_plan(&f.config, "acme", "business", now())
        .unwrap();
    assert_eq!(
        f.counters("acme"),
        [
            row(
                "2026-10-01T00:00:00Z",
                "2026-11-01T00:00:00Z",
                400,
                "free",
                "meterline_usage"
            ),
            row(
                "2026-11-01T00:00:00Z",
                "2026-12-01T00:00:00Z",
                900,
                "business",
                "meterline_usage_business"
            ),
        ]
    );
    let history = f.store.history(&f.config, "acme", 2, now()).unwrap();
    let plans: Vec<(&str, Option<&str>)> = history
        .iter()
        .map(|h| (h.check.plan.as_str(), h.meter_event.as_deref()))
        .collect();
    assert_eq!(
        plans,
        [
            ("free", Some("meterline_usage")),
            ("business", Some("meterline_usage_business"))
        ]
    );
}

fn a_downgrade_below_current_usage_blocks_at_once(engine: Engine) {
    let mut f = Fixture::new(engine, &[("acme", "pro", "2026-11-01")]);
    f.record("acme", 5000);
    f.store.set_plan(&f.config, "acme", "free", now()).unwrap();
    let check = f.check("acme");
    assert_eq!((check.used, check.remaining), (5000, Some(0)));
    assert_eq!((check.level, check.allowed), (WarningLevel::HardCap, false));
    assert!(!f.record("acme", 1).recorded);
}

fn overage_amounts_are_exact(engine: Engine) {
    let mut f = Fixture::new(
        engine,
        &[
            ("pro", "pro", "2026-11-01"),
            ("team", "team", "2026-11-01"),
            ("business", "business", "2026-11-01"),
        ],
    );
    f.record("pro", 100_000);
    assert_eq!(f.check("pro").overage_amount, Decimal::ZERO);
    let outcome = f.record("pro", 34_567);
    assert!(outcome.recorded, "overage plans keep recording");
    let check = f.check("pro");
    assert_eq!(check.overage_units, 34_567);
    assert_eq!(check.overage_amount, dec("17.2835"));
    assert_eq!((check.level, check.allowed), (WarningLevel::HardCap, true));
    f.record("team", 500_003);
    assert_eq!(f.check("team").overage_amount, dec("0.0012"));
    f.record("business", 9_000_000);
    let unlimited = f.check("business");
    assert_eq!((unlimited.limit, unlimited.ratio), (None, None));
    assert_eq!(unlimited.overage_amount, Decimal::ZERO);
}

fn history_lists_every_period_oldest_first(engine: Engine) {
    let mut f = Fixture::new(engine, &[("acme", "starter", "2026-05-31")]);
    f.record_at("acme", 5, "2026-07-01T00:00:00Z");
    // The last hour before September's clamped start (the 30th) still belongs to August's period.
    f.record_at("acme", 9, "2026-09-29T23:00:00Z");
    f.record("acme", 1);
    let history = f.store.history(&f.config, "acme", 6, now()).unwrap();
    let got: Vec<(String, i64, Option<&str>)> = history
        .iter()
        .map(|h| {
            (
                meterline_core::billing::format_ts(h.check.period_start),
                h.check.used,
                h.meter_event.as_deref(),
            )
        })
        .collect();
    let usage = Some("meterline_usage");
    assert_eq!(
        got,
        [
            ("2026-05-31T00:00:00Z".into(), 0, None),
            ("2026-06-30T00:00:00Z".into(), 5, usage),
            ("2026-07-31T00:00:00Z".into(), 0, None),
            ("2026-08-31T00:00:00Z".into(), 9, usage),
            ("2026-09-30T00:00:00Z".into(), 0, None),
            ("2026-10-31T00:00:00Z".into(), 1, usage),
        ]
    );
    for pair in history.windows(2) {
        assert_eq!(pair[0].check.period_end, pair[1].check.period_start);
    }
}

fn members_share_the_organisation_usage(engine: Engine) {
    let mut f = Fixture::new(engine, &[("org", "team", "2026-10-01")]);
    for (user, quantity) in [
        (Some("alice"), 20),
        (Some("bob"), 10),
        (None, 10),
        (Some("alice"), 10),
    ] {
        let mut request = RecordRequest::new("org", quantity, now());
        request.user_id = user.map(str::to_string);
        f.store.record(&f.config, &request, now()).unwrap();
    }
    // A member's usage in an earlier period is not this period's.
    let mut late = RecordRequest::new("org", 99, t("2026-10-10T00:00:00Z"));
    late.user_id = Some("bob".into());
    f.store.record(&f.config, &late, now()).unwrap();

    let summary = f.store.members(&f.config, "org", now()).unwrap();
    assert_eq!(summary.check.used, 50);
    let members: Vec<(Option<&str>, i64, f64)> = summary
        .members
        .iter()
        .map(|m| (m.user_id.as_deref(), m.used, m.share))
        .collect();
    assert_eq!(
        members,
        [
            (Some("alice"), 30, 0.6),
            (Some("bob"), 10, 0.2),
            (None, 10, 0.2)
        ]
    );
}

fn status_puts_the_customers_most_at_risk_first(engine: Engine) {
    let mut f = Fixture::new(
        engine,
        &[
            ("calm", "starter", "2026-11-01"),
            ("unlimited", "business", "2026-11-01"),
            ("over", "pro", "2026-11-20"),
            ("capped", "free", "2026-10-27"),
        ],
    );
    f.record("calm", 100);
    f.record("unlimited", 1_000_000);
    f.record("over", 120_000);
    f.record("capped", 960);
    let rows = f.store.status(&f.config, now()).unwrap();
    let order: Vec<(&str, WarningLevel, i64, i64)> = rows
        .iter()
        .map(|r| {
            (
                r.check.customer.as_str(),
                r.check.level,
                r.days_left,
                r.unreported,
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            ("over", WarningLevel::HardCap, 23, 1),
            ("capped", WarningLevel::Critical, 30, 1),
            ("calm", WarningLevel::Ok, 4, 1),
            ("unlimited", WarningLevel::Ok, 4, 1),
        ]
    );
}

fn a_repeated_key_returns_the_original_event_and_counts_nothing(engine: Engine) {
    let mut f = Fixture::new(engine, &[("acme", "starter", "2026-10-01")]);
    let mut request = RecordRequest::new("acme", 5, t("2026-10-05T00:00:00Z"));
    request.idempotency_key = Some("order-17".into());
    let first = f.store.record(&f.config, &request, now()).unwrap();
    let again = f.store.record(&f.config, &request, now()).unwrap();
    assert!(first.recorded && !first.duplicate);
    assert!(!again.recorded && again.duplicate);
    assert_eq!(again.event_id, first.event_id);
    assert_eq!(
        again.check, first.check,
        "the answer is about the original event's period"
    );
    // The same key with another quantity is a client bug, not a duplicate: refused whole.
    request.quantity = 50;
    let conflict = f.store.record(&f.config, &request, now()).unwrap_err();
    assert!(
        matches!(conflict, Error::IdempotencyConflict(_)),
        "{conflict}"
    );
    assert_eq!(conflict.exit_code(), 2);
    assert!(
        conflict.to_string().contains("quantity 50 (was 5)"),
        "{conflict}"
    );
    assert_eq!(f.event_count(), 1);
    assert_eq!(f.check("acme").used, 0);
}

fn history_lists_no_period_before_the_customer_existed(engine: Engine) {
    let db = TestDb::on(engine);
    let mut store = db.open();
    let config = meterline_core::Config::load(&repo_plans()).unwrap();
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-27T18:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    store
        .add_customer(
            &config,
            &meterline_store::NewCustomer {
                id: "fresh".into(),
                name: None,
                plan_id: "free".into(),
                stripe_customer_id: None,
                billing_anchor: Some(chrono::NaiveDate::from_ymd_opt(2026, 10, 15).unwrap()),
            },
            now,
        )
        .unwrap();
    let rows = store.history(&config, "fresh", 6, now).unwrap();
    let starts: Vec<String> = rows
        .iter()
        .map(|r| meterline_core::billing::format_ts(r.check.period_start))
        .collect();
    assert_eq!(starts, ["2026-10-15T00:00:00Z", "2026-11-15T00:00:00Z"]);
}

/// The database refuses a batch's write at its end (here a trigger behind meterline's back;
/// in life a full disk or a constraint): the record fails whole, nothing of it is kept, and the
/// same connection records the next event. On PostgreSQL the end's writes go out together just
/// before COMMIT (`db::postgres::later`), so this is where a refusal comes.
fn a_write_refused_at_its_end_leaves_nothing_and_the_connection_usable(engine: Engine) {
    let mut f = Fixture::new(engine, &[("acme", "starter", "2026-10-01")]);
    f.record("acme", 5);
    f.db.inspect().exec(match engine {
        Engine::Sqlite => {
            "CREATE TRIGGER refuse_seven BEFORE INSERT ON usage_events WHEN NEW.quantity = 7
             BEGIN SELECT RAISE(ABORT, 'seven refused'); END;"
        }
        Engine::Postgres => {
            "CREATE FUNCTION refuse_seven() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF NEW.quantity = 7 THEN RAISE EXCEPTION 'seven refused'; END IF;
             RETURN NEW; END $$;
             CREATE TRIGGER refuse_seven BEFORE INSERT ON usage_events
             FOR EACH ROW EXECUTE FUNCTION refuse_seven();"
        }
    });
    let refused = f
        .store
        .record(&f.config, &RecordRequest::new("acme", 7, now()), now())
        .unwrap_err();
    assert!(refused.to_string().contains("seven refused"), "{refused}");
    assert_eq!((f.check("acme").used, f.event_count()), (5, 1));
    f.record("acme", 3);
    assert_eq!((f.check("acme").used, f.event_count()), (8, 2));
}
