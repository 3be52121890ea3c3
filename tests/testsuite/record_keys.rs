//! Idempotency keys as one `record_batch` decides them: the batch reads the keys it carries
//! that are already stored in one lookup (a few fixed-length lists), then decides its events
//! in order. Each case here fails if that lookup misses a key, finds one of another source,
//! or lets a refused event claim its key.

use chrono::{DateTime, NaiveDate, Utc};
use meterline::{Config, IdempotencyKey, KeySource, RecordOutcome, RecordRequest, Store};

use crate::support::cli::Scratch;
use crate::support::engine::{Engine, Inspect, engine_tests};

engine_tests!(
    keys_stored_repeated_and_of_other_sources_are_decided_exactly,
    a_batch_of_many_keys_finds_exactly_the_stored_ones,
    a_refused_event_claims_no_key,
);

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-27T18:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

const PERIOD: &str = "2026-11-01T00:00:00Z";

/// A store on `engine` with `acme` on the capped free plan (1,000 units) and `globex` on
/// the unlimited business plan.
fn fixture(engine: Engine) -> (Scratch, Store, Config) {
    let s = Scratch::on(engine);
    let anchor = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    let (store, config) = s.library(&[("acme", "free"), ("globex", "business")], anchor, now());
    (s, store, config)
}

fn keyed(customer: &str, quantity: i64, source: KeySource, key: &str) -> RecordRequest {
    RecordRequest {
        idempotency_key: Some(IdempotencyKey {
            source,
            key: key.into(),
        }),
        ..RecordRequest::new(customer, quantity, now())
    }
}

fn native(customer: &str, quantity: i64, key: &str) -> RecordRequest {
    keyed(customer, quantity, KeySource::Native, key)
}

fn outcome(result: &meterline::Result<RecordOutcome>) -> (&'static str, Option<i64>) {
    match result {
        Ok(o) if o.recorded => ("recorded", o.event_id),
        Ok(o) if o.duplicate => ("duplicate", o.event_id),
        Ok(_) => ("refused", None),
        Err(meterline::Error::IdempotencyConflict(_)) => ("conflict", None),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn keyed_events(db: &Inspect, key: &str) -> Vec<Vec<String>> {
    db.rows(&format!(
        "SELECT id, idempotency_source, quantity FROM usage_events
         WHERE idempotency_key = '{key}' ORDER BY id"
    ))
}

fn keys_stored_repeated_and_of_other_sources_are_decided_exactly(engine: Engine) {
    let (s, mut store, config) = fixture(engine);
    let first = store
        .record_batch(
            &config,
            &[
                native("globex", 5, "stored"),
                keyed("globex", 7, KeySource::Stripe, "shared"),
                native("globex", 2, "old"),
            ],
            now(),
        )
        .unwrap();
    let ids: Vec<i64> = first.iter().map(|r| outcome(r).1.unwrap()).collect();
    // A key kept from before the namespaces: either side finds it (migration 9).
    let db = s.inspect();
    db.rows("UPDATE usage_events SET idempotency_source = 'legacy' WHERE idempotency_key = 'old'");

    let results = store
        .record_batch(
            &config,
            &[
                // Stored: a duplicate of the first batch's event, counting nothing.
                native("globex", 5, "stored"),
                // New, then repeated within the batch: one event.
                native("globex", 3, "fresh"),
                native("globex", 3, "fresh"),
                // The same text as a Stripe key: a native key of its own.
                native("globex", 11, "shared"),
                // Stored by the Stripe route: a duplicate there.
                keyed("globex", 7, KeySource::Stripe, "shared"),
                // Stored with other parameters: a conflict, nothing written.
                native("globex", 6, "stored"),
                // Legacy: the native side finds it too.
                native("globex", 2, "old"),
                keyed("globex", 2, KeySource::Lago, "old"),
                // The native "shared" of this batch, again.
                native("globex", 11, "shared"),
            ],
            now(),
        )
        .unwrap();
    let got: Vec<(&str, Option<i64>)> = results.iter().map(outcome).collect();
    let fresh = got[1].1.unwrap();
    let shared = got[3].1.unwrap();
    assert_eq!(
        got,
        vec![
            ("duplicate", Some(ids[0])),
            ("recorded", Some(fresh)),
            ("duplicate", Some(fresh)),
            ("recorded", Some(shared)),
            ("duplicate", Some(ids[1])),
            ("conflict", None),
            ("duplicate", Some(ids[2])),
            ("duplicate", Some(ids[2])),
            ("duplicate", Some(shared)),
        ]
    );
    assert_eq!(
        keyed_events(&db, "shared"),
        vec![
            vec![ids[1].to_string(), "stripe".into(), "7".into()],
            vec![shared.to_string(), "native".into(), "11".into()],
        ]
    );
    assert_eq!(keyed_events(&db, "fresh").len(), 1);
    assert_eq!(keyed_events(&db, "stored").len(), 1);
    assert_eq!(db.used_in("globex", PERIOD), 5 + 7 + 2 + 3 + 11);
    assert_eq!(db.counters_disagreeing_with_events(), 0);
}

fn a_batch_of_many_keys_finds_exactly_the_stored_ones(engine: Engine) {
    let (s, mut store, config) = fixture(engine);
    // More keys than one lookup list holds, and counts that fill no list exactly.
    let stored: Vec<RecordRequest> = (0..700)
        .filter(|i| i % 3 == 0)
        .map(|i| native("globex", 1, &format!("k{i}")))
        .collect();
    let first = store.record_batch(&config, &stored, now()).unwrap();
    // Every key stored so far, with its event.
    let mut ids: std::collections::HashMap<String, i64> = stored
        .iter()
        .zip(&first)
        .map(|(r, o)| {
            let key = r.idempotency_key.as_ref().unwrap().key.clone();
            (key, outcome(o).1.unwrap())
        })
        .collect();
    for n in [1, 2, 9, 65, 700] {
        let requests: Vec<RecordRequest> = (0..n)
            .map(|i| native("globex", 1, &format!("k{i}")))
            .collect();
        let results = store.record_batch(&config, &requests, now()).unwrap();
        for (i, result) in results.iter().enumerate() {
            let key = format!("k{i}");
            match ids.get(&key) {
                Some(id) => assert_eq!(outcome(result), ("duplicate", Some(*id)), "{key}"),
                None => {
                    let (what, id) = outcome(result);
                    assert_eq!(what, "recorded", "{key}");
                    ids.insert(key, id.unwrap());
                }
            }
        }
        // Every key of this batch is now stored: the same batch again is all duplicates.
        let again = store.record_batch(&config, &requests, now()).unwrap();
        for (i, result) in again.iter().enumerate() {
            let key = format!("k{i}");
            assert_eq!(outcome(result), ("duplicate", Some(ids[&key])), "{key}");
        }
    }
    let db = s.inspect();
    assert_eq!(db.events_of("globex"), (700, 700));
    assert_eq!(db.used_in("globex", PERIOD), 700);
    assert_eq!(db.counters_disagreeing_with_events(), 0);
}

fn a_refused_event_claims_no_key(engine: Engine) {
    let (s, mut store, config) = fixture(engine);
    let results = store
        .record_batch(
            &config,
            &[
                native("acme", 900, "a"),
                // Past the cap: refused, its key stays free...
                native("acme", 200, "b"),
                // ... for this event, in the same batch, which fits.
                native("acme", 100, "b"),
            ],
            now(),
        )
        .unwrap();
    let got: Vec<&str> = results.iter().map(|r| outcome(r).0).collect();
    assert_eq!(got, ["recorded", "refused", "recorded"]);
    // A refused key in one batch is free in the next.
    let results = store
        .record_batch(
            &config,
            &[native("acme", 5000, "c"), native("acme", 1, "d")],
            now(),
        )
        .unwrap();
    let got: Vec<&str> = results.iter().map(|r| outcome(r).0).collect();
    assert_eq!(got, ["refused", "refused"]);
    let db = s.inspect();
    assert!(keyed_events(&db, "c").is_empty());
    assert!(keyed_events(&db, "d").is_empty());
    let results = store
        .record_batch(&config, &[native("globex", 5000, "c")], now())
        .unwrap();
    assert_eq!(outcome(&results[0]).0, "recorded");
    assert_eq!(db.used_in("acme", PERIOD), 1000);
    assert_eq!(db.counters_disagreeing_with_events(), 0);
}
