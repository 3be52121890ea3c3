//! The dashboard's credit reads, on both engines: every customer's available money credits in
//! the full load (the grants in effect only, unit grants apart, "none" apart from "used up"),
//! when they next change by time alone, a grant or void by another connection read again for
//! that customer alone, and one customer's balance and last ledger entries for the detail.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use meterline_core::Config;
use meterline_store::{Decimal, NewCustomer, NewGrant, Refresh, Store};

use crate::support::{AI_PLANS, Engine, TestDb, engine_tests};

engine_tests!(
    the_overview_reads_each_customers_money_credits_in_effect,
    a_grant_by_another_connection_refreshes_that_customers_credits_alone,
    the_detail_reads_the_balance_and_the_ledgers_last_entries_newest_first,
);

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap()
}

fn config() -> Config {
    Config::parse(AI_PLANS, "ai.toml").unwrap()
}

/// A store on `db` with customers a, b and c on pro.
fn customers(db: &TestDb, config: &Config) -> Store {
    let mut store = db.open();
    for id in ["a", "b", "c"] {
        let customer = NewCustomer {
            id: id.into(),
            name: None,
            plan_id: "pro".into(),
            stripe_customer_id: None,
            billing_anchor: Some(NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()),
        };
        store.add_customer(config, &customer, now()).unwrap();
    }
    store
}

fn grant(store: &mut Store, config: &Config, request: NewGrant) -> i64 {
    store
        .grant_credits(config, &request, now())
        .unwrap()
        .grant
        .id
}

/// Customer `id`'s credits in the overview's rows.
fn credits(rows: &[meterline_store::DashboardRow], id: &str) -> Option<Decimal> {
    rows.iter().find(|r| r.customer_id == id).unwrap().credits
}

fn the_overview_reads_each_customers_money_credits_in_effect(engine: Engine) {
    let db = TestDb::on(engine);
    let config = config();
    let mut store = customers(&db, &config);
    // a: 20 in effect, 7 expired, 11 not yet in effect, 3 voided, 1,000 tokens (units).
    grant(&mut store, &config, NewGrant::new("a", "20"));
    let expired = NewGrant {
        effective_at: Some(now() - Duration::days(3)),
        expires_at: Some(now() - Duration::days(1)),
        ..NewGrant::new("a", "7")
    };
    grant(&mut store, &config, expired);
    let later = NewGrant {
        effective_at: Some(now() + Duration::days(2)),
        ..NewGrant::new("a", "11")
    };
    grant(&mut store, &config, later);
    let voided = grant(&mut store, &config, NewGrant::new("a", "3"));
    store.void_grant(None, voided, now()).unwrap();
    let tokens = NewGrant {
        meter: Some("tokens".into()),
        ..NewGrant::new("a", "1000")
    };
    grant(&mut store, &config, tokens.clone());
    // b: only units; c: a money grant used up by its void.
    grant(
        &mut store,
        &config,
        NewGrant {
            customer: "b".into(),
            ..tokens
        },
    );
    let used_up = grant(&mut store, &config, NewGrant::new("c", "4.5"));
    store.void_grant(None, used_up, now()).unwrap();

    let dashboard = db.open().dashboard(&config, now()).unwrap();
    assert_eq!(credits(&dashboard.rows, "a"), Some(Decimal::from(20)));
    assert_eq!(credits(&dashboard.rows, "b"), None);
    assert_eq!(credits(&dashboard.rows, "c"), Some(Decimal::ZERO));
    // a's grant of 11 takes effect in two days: a reload is due then.
    assert_eq!(
        dashboard.next_credit_change,
        Some(now() + Duration::days(2))
    );
    assert!(dashboard.next_rollover() <= Some(now() + Duration::days(2)));
}

fn a_grant_by_another_connection_refreshes_that_customers_credits_alone(engine: Engine) {
    let db = TestDb::on(engine);
    let config = config();
    let mut writer = customers(&db, &config);
    grant(&mut writer, &config, NewGrant::new("a", "20"));
    let reader = db.open();
    let loaded = reader.dashboard(&config, now()).unwrap();

    let expiring = NewGrant {
        expires_at: Some(now() + Duration::hours(5)),
        ..NewGrant::new("b", "2.75")
    };
    grant(&mut writer, &config, expiring);
    let Refresh::Partial { credits, marks, .. } = reader
        .dashboard_refresh(&config, loaded.marks, now())
        .unwrap()
    else {
        panic!("a grant is a partial refresh");
    };
    let credits = credits.expect("the credits read again");
    assert_eq!(
        credits.customers.into_iter().collect::<Vec<_>>(),
        [("b".to_string(), Some(Decimal::new(275, 2)))]
    );
    assert_eq!(credits.next_change, Some(now() + Duration::hours(5)));
    assert!(matches!(
        reader.dashboard_refresh(&config, marks, now()).unwrap(),
        Refresh::Unchanged
    ));
}

fn the_detail_reads_the_balance_and_the_ledgers_last_entries_newest_first(engine: Engine) {
    let db = TestDb::on(engine);
    let config = config();
    let mut store = customers(&db, &config);
    let mut ids = Vec::new();
    for amount in ["1", "2", "3", "4"] {
        ids.push(grant(&mut store, &config, NewGrant::new("a", amount)));
    }
    store.void_grant(None, ids[0], now()).unwrap();
    store.void_grant(None, ids[1], now()).unwrap();

    let detail = store.customer_detail(&config, "a", now()).unwrap().credits;
    assert_eq!(detail.balance.money.available, Decimal::from(7));
    let entries: Vec<(&str, Decimal)> = detail
        .recent
        .iter()
        .map(|e| (e.kind.as_str(), e.amount))
        .collect();
    assert_eq!(
        entries,
        [
            ("void", Decimal::from(-2)),
            ("void", Decimal::from(-1)),
            ("grant", Decimal::from(4)),
            ("grant", Decimal::from(3)),
            ("grant", Decimal::from(2)),
        ]
    );
    let none = store.customer_detail(&config, "b", now()).unwrap().credits;
    assert!(none.is_empty());
}
