//! `Store::record_all_or_nothing` and `Store::record_parts`, which the drop-in routes record
//! through: a part with one invalid event records none of its events and answers each
//! invalid one with the record path's own error and what it is about; a hard cap still
//! refuses its event alone; the parts of one batch are decided apart. On both engines and
//! both plans.toml shapes.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use meterline::store::record::{Atomicity, Field, Part, PartOutcome};
use meterline::{Config, Error, IdempotencyKey, RecordOutcome, RecordRequest, Store};

use crate::support::cli::{Dump, Scratch};
use crate::support::engine::Engine;
use crate::support::shapes::{Shape, shape_tests};

shape_tests!(
    an_invalid_event_records_none_of_its_part_and_says_why,
    a_hard_cap_refuses_its_event_alone_in_an_all_or_nothing_part,
    the_parts_of_one_batch_are_decided_apart,
);

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-27T18:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// A store on `engine` × `shape` with acme on pro, capped on free (a hard cap on the
/// shape's capped meter) and gone (archived), all anchored on 2026-11-01.
fn fixture(engine: Engine, shape: Shape) -> (Scratch, Store, Config) {
    let s = Scratch::shaped(engine, shape);
    let anchor = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    let customers = [("acme", "pro"), ("capped", "free"), ("gone", "pro")];
    let (mut store, config) = s.library(&customers, anchor, now());
    store.set_archived("gone", Some(now())).unwrap();
    (s, store, config)
}

/// The property the shape's capped meter reads.
fn counted_property(shape: Shape) -> &'static str {
    match shape {
        Shape::Legacy => "quantity",
        Shape::Meters => "tokens",
    }
}

/// An event counting `n` on the shape's capped meter for `customer`, under `key`.
fn counting(shape: Shape, customer: &str, n: i64, key: &str) -> RecordRequest {
    let mut request = RecordRequest::new(customer, 1, now() - Duration::hours(1));
    request.idempotency_key = Some(IdempotencyKey::from(key));
    match shape {
        Shape::Legacy => request.quantity = n,
        Shape::Meters => {
            request.meter = Some("tokens".into());
            request.properties.insert("tokens".into(), n.to_string());
            request.properties.insert("model".into(), "large".into());
        }
    }
    request
}

fn summary(result: &meterline::Result<RecordOutcome>) -> &'static str {
    match result {
        Ok(o) if o.recorded => "recorded",
        Ok(o) if o.duplicate => "duplicate",
        Ok(_) => "capped",
        Err(_) => "error",
    }
}

fn decided(outcome: &PartOutcome) -> Vec<&'static str> {
    match outcome {
        PartOutcome::Decided(results) => results.iter().map(summary).collect(),
        PartOutcome::Refused(refusals) => panic!("refused: {refusals:?}"),
    }
}

fn assert_unchanged(s: &Scratch, before: &Dump, what: &str) {
    assert_eq!(&s.dump(), before, "{what}: something was written");
}

fn an_invalid_event_records_none_of_its_part_and_says_why(engine: Engine, shape: Shape) {
    let (s, mut store, config) = fixture(engine, shape);
    let good = || {
        vec![
            counting(shape, "acme", 5, "good-1"),
            counting(shape, "acme", 7, "good-2"),
        ]
    };
    let property = counted_property(shape);
    let with = |change: &dyn Fn(&mut RecordRequest)| {
        let mut bad = counting(shape, "acme", 1, "bad");
        change(&mut bad);
        bad
    };
    // (the invalid event, what the refusal is about)
    let cases: Vec<(&str, RecordRequest, Option<Field>)> = vec![
        (
            "ten minutes ahead",
            with(&|r| r.occurred_at = now() + Duration::minutes(10)),
            Some(Field::Time),
        ),
        (
            "before the customer's anchor",
            with(&|r| r.occurred_at = now() - Duration::days(40)),
            Some(Field::Time),
        ),
        (
            "a meter plans.toml lacks",
            with(&|r| r.meter = Some("nope".into())),
            Some(Field::Meter),
        ),
        (
            "the meter's property not a number",
            with(&|r| {
                r.properties.insert(property.into(), "lots".into());
            }),
            Some(Field::Property(property.into())),
        ),
        (
            "a property name the rules refuse",
            with(&|r| {
                r.properties.insert("bad name!".into(), "x".into());
            }),
            Some(Field::Properties),
        ),
        (
            "an unknown customer",
            with(&|r| r.customer_id = "nobody".into()),
            None,
        ),
        (
            "an archived customer",
            with(&|r| r.customer_id = "gone".into()),
            None,
        ),
    ];
    let before = s.dump();
    for (what, bad, field) in cases {
        let mut batch = good();
        batch.push(bad.clone());
        let outcome = store.record_all_or_nothing(&config, &batch, now()).unwrap();
        let PartOutcome::Refused(refusals) = outcome else {
            panic!("{what}: not refused: {outcome:?}");
        };
        assert_eq!(refusals.len(), 1, "{what}: {refusals:?}");
        let (index, refusal) = &refusals[0];
        assert_eq!((*index, &refusal.field), (2, &field), "{what}");
        // The record path's own message: the one the same event gets alone.
        let alone = store.record(&config, &bad, now()).unwrap_err();
        assert_eq!(refusal.error.to_string(), alone.to_string(), "{what}");
        assert_unchanged(&s, &before, what);
    }

    // A key reused with other parameters inside the part: a conflict refuses it too.
    let mut batch = good();
    batch.push(counting(shape, "acme", 6, "good-1"));
    let PartOutcome::Refused(refusals) =
        store.record_all_or_nothing(&config, &batch, now()).unwrap()
    else {
        panic!("a conflict inside the part was recorded");
    };
    assert!(
        matches!(refusals[..], [(2, ref r)] if matches!(r.error, Error::IdempotencyConflict(_))),
        "{refusals:?}"
    );
    assert_unchanged(&s, &before, "a conflict inside the part");

    // Without the invalid event the part records whole, and a resend is all duplicates.
    let outcome = store
        .record_all_or_nothing(&config, &good(), now())
        .unwrap();
    assert_eq!(decided(&outcome), ["recorded", "recorded"]);
    let outcome = store
        .record_all_or_nothing(&config, &good(), now())
        .unwrap();
    assert_eq!(decided(&outcome), ["duplicate", "duplicate"]);
    assert_eq!(s.inspect().events_of("acme").0, 2);
}

fn a_hard_cap_refuses_its_event_alone_in_an_all_or_nothing_part(engine: Engine, shape: Shape) {
    let (s, mut store, config) = fixture(engine, shape);
    let cap = shape.free_cap();
    let batch = [
        counting(shape, "capped", cap - 1, "c1"),
        counting(shape, "capped", 5, "c2"),
        counting(shape, "capped", 1, "c3"),
    ];
    let outcome = store.record_all_or_nothing(&config, &batch, now()).unwrap();
    assert_eq!(decided(&outcome), ["recorded", "capped", "recorded"]);
    assert_eq!(s.inspect().events_of("capped").0, 2);
}

fn the_parts_of_one_batch_are_decided_apart(engine: Engine, shape: Shape) {
    let (s, mut store, config) = fixture(engine, shape);
    let mut future = counting(shape, "acme", 1, "a-2");
    future.occurred_at = now() + Duration::hours(1);
    let requests = [
        // All or nothing, with an invalid event: none of it.
        counting(shape, "acme", 3, "shared"),
        future,
        // Event by event: the same key as the refused part's first event is this one's own
        // (the refused part never took it); the unknown customer is refused alone.
        counting(shape, "acme", 3, "shared"),
        counting(shape, "nobody", 1, "b-2"),
        // All or nothing, valid: recorded.
        counting(shape, "acme", 4, "c-1"),
    ];
    let parts = [
        Part {
            len: 2,
            atomicity: Atomicity::AllOrNothing,
        },
        Part {
            len: 2,
            atomicity: Atomicity::EachEvent,
        },
        Part {
            len: 1,
            atomicity: Atomicity::AllOrNothing,
        },
    ];
    let outcomes = store
        .record_parts(&config, &requests, &parts, now())
        .unwrap();
    assert_eq!(outcomes.len(), 3);
    match &outcomes[0] {
        PartOutcome::Refused(refusals) => {
            assert!(
                matches!(refusals[..], [(1, ref r)] if r.field == Some(Field::Time)),
                "{refusals:?}"
            );
        }
        other => panic!("the invalid part was decided: {other:?}"),
    }
    assert_eq!(decided(&outcomes[1]), ["recorded", "error"]);
    assert_eq!(decided(&outcomes[2]), ["recorded"]);
    let db = s.inspect();
    assert_eq!(db.events_with_key("shared"), 1);
    assert_eq!(db.events_with_key("a-2"), 0);
    assert_eq!(db.events_of("acme").0, 2);

    // Parts that do not cover the batch are the caller's mistake.
    let short = [Part {
        len: 1,
        atomicity: Atomicity::EachEvent,
    }];
    assert!(
        store
            .record_parts(&config, &requests, &short, now())
            .is_err()
    );
}
