//! The answers the fast paths give must be the ones the slow paths gave (issue 25): a
//! duplicate's standing comes from the batch's own counters (the events before it in the
//! batch included), and a check is one statement that reads the current period's counters
//! among the recent ones. Each case runs on both engines.

use chrono::{DateTime, NaiveDate, Utc};
use meterline::{Config, IdempotencyKey, KeySource, RecordOutcome, RecordRequest, Store};

use crate::support::cli::Scratch;
use crate::support::engine::{Engine, engine_tests};

engine_tests!(
    a_duplicate_answers_its_meters_standing_with_the_batch_so_far,
    a_duplicate_of_a_closed_period_answers_that_periods_standing,
    a_check_counts_the_current_period_only,
);

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// `acme` on the capped free plan (1,000 units), `globex` on the unlimited business plan,
/// both anchored on `anchor`.
fn fixture(engine: Engine, anchor: NaiveDate, now: DateTime<Utc>) -> (Scratch, Store, Config) {
    let s = Scratch::on(engine);
    let (store, config) = s.library(&[("acme", "free"), ("globex", "business")], anchor, now);
    (s, store, config)
}

fn keyed(customer: &str, quantity: i64, key: &str, now: DateTime<Utc>) -> RecordRequest {
    RecordRequest {
        idempotency_key: Some(IdempotencyKey {
            source: KeySource::Native,
            key: key.into(),
        }),
        ..RecordRequest::new(customer, quantity, now)
    }
}

/// Each answer as (recorded, duplicate, used, limit).
fn answers(results: &[meterline::Result<RecordOutcome>]) -> Vec<(bool, bool, i64, Option<i64>)> {
    results
        .iter()
        .map(|r| {
            let o = r.as_ref().expect("an outcome");
            (o.recorded, o.duplicate, o.check.used, o.check.limit)
        })
        .collect()
}

fn a_duplicate_answers_its_meters_standing_with_the_batch_so_far(engine: Engine) {
    let now = at("2026-11-27T18:00:00Z");
    let (_s, mut store, config) =
        fixture(engine, NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(), now);
    let first = [keyed("globex", 5, "g1", now), keyed("acme", 10, "a1", now)];
    store.record_batch(&config, &first, now).unwrap();
    // Two customers: the batch reads their counters ahead.
    let mixed = [
        keyed("globex", 5, "g1", now),
        keyed("globex", 3, "g2", now),
        keyed("globex", 5, "g1", now),
        keyed("acme", 10, "a1", now),
        keyed("acme", 4, "a2", now),
        keyed("acme", 4, "a2", now),
        keyed("acme", 10, "a1", now),
    ];
    let results = store.record_batch(&config, &mixed, now).unwrap();
    let free = Some(1000);
    assert_eq!(
        answers(&results),
        [
            (false, true, 5, None),
            (true, false, 8, None),
            (false, true, 8, None),
            (false, true, 10, free),
            (true, false, 14, free),
            (false, true, 14, free),
            (false, true, 14, free),
        ]
    );
    // One customer: read as the batch goes.
    let single = [
        keyed("acme", 10, "a1", now),
        keyed("acme", 1, "a3", now),
        keyed("acme", 10, "a1", now),
    ];
    let results = store.record_batch(&config, &single, now).unwrap();
    assert_eq!(
        answers(&results),
        [
            (false, true, 14, free),
            (true, false, 15, free),
            (false, true, 15, free)
        ]
    );
    let acme = &results[2].as_ref().unwrap().check;
    assert_eq!((acme.plan.as_str(), acme.remaining), ("free", Some(985)));
    assert_eq!(store.check(&config, "acme", now).unwrap().used, 15);
    assert_eq!(store.check(&config, "globex", now).unwrap().used, 8);
}

fn a_duplicate_of_a_closed_period_answers_that_periods_standing(engine: Engine) {
    let october = at("2026-10-20T12:00:00Z");
    let (_s, mut store, config) = fixture(
        engine,
        NaiveDate::from_ymd_opt(2026, 10, 1).unwrap(),
        october,
    );
    store
        .record_batch(&config, &[keyed("acme", 7, "old", october)], october)
        .unwrap();
    let november = at("2026-11-02T12:00:00Z");
    let batch = [
        keyed("acme", 2, "new", november),
        keyed("acme", 7, "old", november),
        keyed("globex", 1, "g", november),
    ];
    let results = store.record_batch(&config, &batch, november).unwrap();
    let old = &results[1].as_ref().unwrap();
    assert!(old.duplicate);
    assert_eq!(
        (old.check.used, old.check.period_start),
        (7, at("2026-10-01T00:00:00Z"))
    );
    assert_eq!(results[0].as_ref().unwrap().check.used, 2);
}

fn a_check_counts_the_current_period_only(engine: Engine) {
    let october = at("2026-10-20T12:00:00Z");
    let (_s, mut store, config) = fixture(
        engine,
        NaiveDate::from_ymd_opt(2026, 10, 1).unwrap(),
        october,
    );
    store
        .record_batch(&config, &[RecordRequest::new("acme", 7, october)], october)
        .unwrap();
    // A day into November: October's counters are among the recent rows a check reads.
    let november = at("2026-11-01T12:00:00Z");
    let check = store.metered_check(&config, "acme", november).unwrap();
    assert_eq!(
        (check.check.used, check.check.period_start),
        (0, at("2026-11-01T00:00:00Z"))
    );
    store
        .record_batch(
            &config,
            &[RecordRequest::new("acme", 2, november)],
            november,
        )
        .unwrap();
    assert_eq!(store.check(&config, "acme", november).unwrap().used, 2);
    assert_eq!(store.check(&config, "acme", october).unwrap().used, 7);
    assert!(matches!(
        store.check(&config, "nobody", november),
        Err(meterline::Error::UnknownCustomer(_))
    ));
}
