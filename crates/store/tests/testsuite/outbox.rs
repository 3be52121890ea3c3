//! The Stripe outbox, one API for both units (`OutboxUnit`: usage events sent one by one in
//! per_event mode, aggregate reports standing for many), on both engines: a job answered twice
//! is reported once, a refusal rests, dating as sent is undone only for the run that dated,
//! and an event in a report expires only with it.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use meterline_core::Config;
use meterline_store::{
    EventOutcome, NewCustomer, OutboxEvent, OutboxUnit, OutboxWindow, RecordRequest, Store,
    StripeMeters,
};

use crate::support::{AI_PLANS, Engine, TestDb, engine_tests};

engine_tests!(
    a_job_answered_twice_is_reported_once,
    a_refusal_rests_and_an_unanswered_job_stays_pending,
    only_the_run_that_dated_a_job_undates_it,
    an_event_in_a_report_expires_with_the_report,
);

/// Usage events recorded: 2 requests, 3 token events; every job of either unit stands for
/// some of them.
const EVENTS: u64 = 5;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap()
}

/// The AI plans, with the unit's report mode.
fn config(unit: OutboxUnit) -> Config {
    let mode = match unit {
        OutboxUnit::Events => "per_event",
        OutboxUnit::Reports => "aggregate",
    };
    Config::parse(
        &format!("[stripe]\nreport = \"{mode}\"\n{AI_PLANS}"),
        "plans.toml",
    )
    .unwrap()
}

/// Stripe's window at `now`, refusals rested until an hour ago.
fn window() -> OutboxWindow {
    let (not_before, not_after) = meterline_core::billing::stripe_window(now());
    OutboxWindow {
        not_before,
        not_after,
        failed_before: Some(now() - Duration::hours(1)),
    }
}

/// A database where acme (pro, mapped to Stripe) recorded [`EVENTS`] usage events yesterday,
/// made into reports for the `Reports` unit as a sync does first.
fn outbox(engine: Engine, unit: OutboxUnit) -> (TestDb, Store, StripeMeters) {
    let db = TestDb::on(engine);
    let mut store = db.open();
    let config = config(unit);
    let acme = NewCustomer {
        id: "acme".into(),
        name: None,
        plan_id: "pro".into(),
        stripe_customer_id: Some("cus_acme".into()),
        billing_anchor: Some(NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()),
    };
    store.add_customer(&config, &acme, now()).unwrap();
    let yesterday = now() - Duration::days(1);
    let events = [
        ("requests", None),
        ("requests", None),
        ("tokens", Some("100")),
        ("tokens", Some("200")),
        ("tokens", Some("300")),
    ];
    for (meter, tokens) in events {
        let mut request = RecordRequest::new("acme", 1, yesterday);
        request.meter = Some(meter.into());
        request.properties = tokens
            .map(|t| [("tokens", t), ("model", "small")])
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert!(store.record(&config, &request, now()).unwrap().recorded);
    }
    let meters = StripeMeters::new(&config);
    if unit == OutboxUnit::Reports {
        // One report per meter (and group).
        assert_eq!(store.pack_reports(&meters, &window(), now()).unwrap(), 2);
    }
    (db, store, meters)
}

/// Every sendable job of `unit` now, in one page.
fn jobs(store: &Store, unit: OutboxUnit, meters: &StripeMeters) -> Vec<OutboxEvent> {
    let (jobs, _) = store
        .outbox_page(unit, meters, &window(), None, 100)
        .unwrap();
    jobs
}

fn ids(jobs: &[OutboxEvent]) -> Vec<i64> {
    jobs.iter().map(|j| j.id).collect()
}

fn a_job_answered_twice_is_reported_once(engine: Engine) {
    for unit in OutboxUnit::ALL {
        let (_db, mut store, meters) = outbox(engine, unit);
        let sent = jobs(&store, unit, &meters);
        let expected = match unit {
            OutboxUnit::Events => EVENTS as usize,
            OutboxUnit::Reports => 2,
        };
        assert_eq!(sent.len(), expected, "{unit:?}");
        store.mark_sent(unit, &ids(&sent), now()).unwrap();
        let delivered: Vec<EventOutcome> = sent
            .iter()
            .map(|j| EventOutcome::Delivered {
                id: j.id,
                attempts: 1,
            })
            .collect();
        // The answers written twice (a writer retrying its batch): the second marks nothing.
        assert_eq!(
            store.record_outcomes(unit, &delivered, now()).unwrap(),
            EVENTS,
            "{unit:?}"
        );
        assert_eq!(
            store.record_outcomes(unit, &delivered, now()).unwrap(),
            0,
            "{unit:?}"
        );
        assert_eq!(
            store.stripe_counts(now()).unwrap().unreported,
            0,
            "{unit:?}"
        );
        assert!(jobs(&store, unit, &meters).is_empty(), "{unit:?}");
    }
}

fn a_refusal_rests_and_an_unanswered_job_stays_pending(engine: Engine) {
    for unit in OutboxUnit::ALL {
        let (_db, mut store, meters) = outbox(engine, unit);
        let sent = jobs(&store, unit, &meters);
        let (refused, unanswered) = sent.split_at(1);
        let mut outcomes = vec![EventOutcome::Refused {
            id: refused[0].id,
            attempts: 1,
            error: "no such customer".into(),
        }];
        outcomes.extend(unanswered.iter().map(|j| EventOutcome::Undelivered {
            id: j.id,
            attempts: 4,
            error: "timed out".into(),
        }));
        assert_eq!(store.record_outcomes(unit, &outcomes, now()).unwrap(), 0);
        // The refused job rests for the hour; the unanswered ones go out again now.
        assert_eq!(
            ids(&jobs(&store, unit, &meters)),
            ids(unanswered),
            "{unit:?}"
        );
        let counts = store.stripe_counts(now()).unwrap();
        assert_eq!(counts.unreported, EVENTS, "{unit:?}");
        // The events refused: the one, or every event of the refused report.
        let refused_events = match (unit, refused[0].event_name.as_str()) {
            (OutboxUnit::Events, _) => 1,
            (OutboxUnit::Reports, "requests") => 2,
            (OutboxUnit::Reports, _) => 3,
        };
        assert_eq!(counts.failed, refused_events, "{unit:?}: {counts:?}");
    }
}

fn only_the_run_that_dated_a_job_undates_it(engine: Engine) {
    for unit in OutboxUnit::ALL {
        let (_db, mut store, meters) = outbox(engine, unit);
        let sent = ids(&jobs(&store, unit, &meters));
        let (run, later_run) = (now(), now() + Duration::minutes(5));
        store.mark_sent(unit, &sent, run).unwrap();
        // A later run dated none of them: their dating stays, and a day on they are held
        // (sent, unanswered, past Stripe's 24 hours of identifiers).
        store.undate_unsent(unit, &sent, later_run).unwrap();
        let day_on = now() + Duration::hours(24);
        assert_eq!(
            store.hold_in_doubt(day_on).unwrap(),
            sent.len() as u64,
            "{unit:?}"
        );
    }
    for unit in OutboxUnit::ALL {
        let (_db, mut store, meters) = outbox(engine, unit);
        let sent = ids(&jobs(&store, unit, &meters));
        store.mark_sent(unit, &sent, now()).unwrap();
        // The run that dated them never sent them: undated, they are not in doubt.
        store.undate_unsent(unit, &sent, now()).unwrap();
        let day_on = now() + Duration::hours(24);
        assert_eq!(store.hold_in_doubt(day_on).unwrap(), 0, "{unit:?}");
        assert_eq!(jobs(&store, unit, &meters).len(), sent.len(), "{unit:?}");
    }
}

fn an_event_in_a_report_expires_with_the_report(engine: Engine) {
    let past_all = now() + Duration::days(1);
    // Events sent on their own expire as events.
    let (_db, mut store, _) = outbox(engine, OutboxUnit::Events);
    assert_eq!(
        store.expire(OutboxUnit::Reports, past_all, now()).unwrap(),
        0
    );
    assert_eq!(
        store.expire(OutboxUnit::Events, past_all, now()).unwrap(),
        EVENTS
    );
    assert_eq!(store.stripe_counts(now()).unwrap().expired, EVENTS);
    // Events in a report are left to it, and expire with it.
    let (_db, mut store, _) = outbox(engine, OutboxUnit::Reports);
    assert_eq!(
        store.expire(OutboxUnit::Events, past_all, now()).unwrap(),
        0
    );
    assert_eq!(
        store.expire(OutboxUnit::Reports, past_all, now()).unwrap(),
        EVENTS
    );
    assert_eq!(store.stripe_counts(now()).unwrap().expired, EVENTS);
}
