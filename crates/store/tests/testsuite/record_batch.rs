//! `Store::record_batch`: many events in one transaction, each decided as if recorded alone,
//! on both engines.

use std::str::FromStr;

use std::collections::HashMap;

use crate::support::{Engine, NOW, TestDb, engine_tests, repo_plans};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use meterline_core::{Config, Error, Result};
use meterline_store::NewCustomer;
use meterline_store::{RecordOutcome, RecordRequest, Store};

engine_tests!(
    a_refused_event_in_the_middle_leaves_the_others_recorded,
    an_invalid_event_fails_only_itself,
    a_key_repeated_within_a_batch_counts_once,
    a_key_reused_within_a_batch_with_another_quantity_fails_only_itself,
    record_and_record_batch_agree,
    an_empty_batch_is_fine,
    a_large_batch_gives_every_event_its_own_row_and_id,
);

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(NOW)
        .unwrap()
        .with_timezone(&Utc)
}

const PERIOD: &str = "2026-11-01T00:00:00Z";

/// A fresh database with `acme` on the capped free plan (1,000 units) and `globex` on pro.
fn fixture(engine: Engine) -> (TestDb, Store, Config) {
    let db = TestDb::on(engine);
    let mut store = db.open();
    let config = Config::load(&repo_plans()).unwrap();
    for (id, plan) in [("acme", "free"), ("globex", "pro")] {
        store
            .add_customer(
                &config,
                &NewCustomer {
                    id: id.into(),
                    name: None,
                    plan_id: plan.into(),
                    stripe_customer_id: None,
                    billing_anchor: Some(NaiveDate::from_str("2026-11-01").unwrap()),
                },
                now(),
            )
            .unwrap();
    }
    (db, store, config)
}

fn req(customer: &str, quantity: i64) -> RecordRequest {
    RecordRequest::new(customer, quantity, now())
}

fn keyed(customer: &str, quantity: i64, key: &str) -> RecordRequest {
    RecordRequest {
        idempotency_key: Some(key.into()),
        ..req(customer, quantity)
    }
}

fn summary(result: &Result<RecordOutcome>) -> String {
    match result {
        Ok(o) if o.recorded => format!("recorded used={}", o.check.used),
        Ok(o) if o.duplicate => format!("duplicate used={}", o.check.used),
        Ok(o) => format!("refused used={}", o.check.used),
        Err(e) => format!("error {e}"),
    }
}

fn a_refused_event_in_the_middle_leaves_the_others_recorded(engine: Engine) {
    let (db, mut store, config) = fixture(engine);
    let batch = [
        req("acme", 600),
        req("acme", 500), // would pass the 1,000 cap: refused whole
        req("acme", 400),
        req("globex", 7),
    ];
    let results = store.record_batch(&config, &batch, now()).unwrap();
    let got: Vec<String> = results.iter().map(summary).collect();
    assert_eq!(
        got,
        [
            "recorded used=600",
            "refused used=600",
            "recorded used=1000",
            "recorded used=7"
        ]
    );
    let db = db.inspect();
    assert_eq!(db.used_in("acme", PERIOD), 1000);
    assert_eq!(db.events_of("acme"), (2, 1000));
    assert_eq!(db.used_in("globex", PERIOD), 7);
}

fn an_invalid_event_fails_only_itself(engine: Engine) {
    let (db, mut store, config) = fixture(engine);
    let batch = [
        req("acme", 5),
        req("nobody", 1),
        req("acme", 0),
        req("acme", 6),
    ];
    let results = store.record_batch(&config, &batch, now()).unwrap();
    assert!(matches!(results[1], Err(Error::UnknownCustomer(_))));
    assert!(matches!(results[2], Err(Error::InvalidInput(_))));
    assert_eq!(summary(&results[0]), "recorded used=5");
    assert_eq!(summary(&results[3]), "recorded used=11");
    let db = db.inspect();
    assert_eq!(db.used_in("acme", PERIOD), 11);
    assert_eq!(db.events_of("acme"), (2, 11));
}

fn a_key_repeated_within_a_batch_counts_once(engine: Engine) {
    let (db, mut store, config) = fixture(engine);
    let batch = [
        keyed("acme", 5, "k1"),
        keyed("acme", 5, "k1"),
        req("acme", 1),
    ];
    let results = store.record_batch(&config, &batch, now()).unwrap();
    let first = results[0].as_ref().unwrap();
    let again = results[1].as_ref().unwrap();
    assert!(first.recorded && again.duplicate);
    assert_eq!(again.event_id, first.event_id);
    let db = db.inspect();
    assert_eq!(db.events_of("acme"), (2, 6));
}

fn a_key_reused_within_a_batch_with_another_quantity_fails_only_itself(engine: Engine) {
    let (db, mut store, config) = fixture(engine);
    let batch = [
        keyed("acme", 5, "k1"),
        keyed("acme", 6, "k1"),
        req("acme", 1),
    ];
    let results = store.record_batch(&config, &batch, now()).unwrap();
    assert!(matches!(results[1], Err(Error::IdempotencyConflict(_))));
    assert_eq!(summary(&results[2]), "recorded used=6");
    let db = db.inspect();
    assert_eq!(db.events_of("acme"), (2, 6));
}

fn record_and_record_batch_agree(engine: Engine) {
    let batch: Vec<RecordRequest> = vec![
        req("acme", 300),
        keyed("acme", 200, "a"),
        req("acme", 800),
        keyed("acme", 200, "a"),
        req("globex", 99_999),
        RecordRequest {
            user_id: Some("u1".into()),
            ..req("globex", 5)
        },
        req("acme", 500),
        RecordRequest::new("acme", 3, now() - Duration::days(40)),
        req("nobody", 1),
    ];
    let (one_db, mut one, config) = fixture(engine);
    let singles: Vec<String> = batch
        .iter()
        .map(|r| summary(&one.record(&config, r, now())))
        .collect();
    let (many_db, mut many, _) = fixture(engine);
    let batched: Vec<String> = many
        .record_batch(&config, &batch, now())
        .unwrap()
        .iter()
        .map(summary)
        .collect();
    assert_eq!(singles, batched);
    // Same rows, apart from the random Stripe identifiers.
    let dump = |db: &TestDb| {
        let db = db.inspect();
        db.exec("UPDATE usage_events SET stripe_identifier = CAST(id AS TEXT)");
        db.dump()
    };
    assert_eq!(dump(&one_db), dump(&many_db));
}

fn an_empty_batch_is_fine(engine: Engine) {
    let (_db, mut store, config) = fixture(engine);
    assert!(store.record_batch(&config, &[], now()).unwrap().is_empty());
}

fn a_large_batch_gives_every_event_its_own_row_and_id(engine: Engine) {
    let (db, mut store, config) = fixture(engine);
    store.record(&config, &req("globex", 1), now()).unwrap();
    // 700 events (the batch writes them several hundred to a statement), keys repeated far
    // apart, a refusal and an invalid event among them.
    let mut batch: Vec<RecordRequest> = (0..700)
        .map(|i| keyed("globex", 1 + i % 3, &format!("k{i}")))
        .collect();
    batch[400] = keyed("globex", 1 + 5 % 3, "k5");
    batch[650] = req("nobody", 1);
    batch.push(req("acme", 1_001));
    let results = store.record_batch(&config, &batch, now()).unwrap();
    let db = db.inspect();
    // (quantity, key) of every event, by id.
    let stored: HashMap<i64, (i64, String)> = db
        .rows("SELECT id, quantity, idempotency_key FROM usage_events")
        .into_iter()
        .map(|r| (r[0].parse().unwrap(), (r[1].parse().unwrap(), r[2].clone())))
        .collect();
    let mut recorded = 0;
    for (i, (r, sent)) in results.iter().zip(&batch).enumerate() {
        match i {
            400 => {
                let again = r.as_ref().unwrap();
                assert!(again.duplicate);
                assert_eq!(again.event_id, results[5].as_ref().unwrap().event_id);
            }
            650 => assert!(matches!(r, Err(Error::UnknownCustomer(_)))),
            700 => assert!(!r.as_ref().unwrap().recorded),
            _ => {
                let outcome = r.as_ref().unwrap();
                assert!(outcome.recorded, "{i}: {}", summary(r));
                recorded += 1;
                let (quantity, key) = &stored[&outcome.event_id.unwrap()];
                assert_eq!(
                    (*quantity, key.as_str()),
                    (
                        sent.quantity,
                        sent.idempotency_key.as_ref().unwrap().key.as_str()
                    )
                );
            }
        }
    }
    let (events, units) = db.events_of("globex");
    assert_eq!(events, recorded + 1);
    assert_eq!(db.used_in("globex", PERIOD), units);
    assert_eq!(db.events_of("acme"), (0, 0));
}
