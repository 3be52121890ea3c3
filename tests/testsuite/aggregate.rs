//! Aggregated reporting (the default): one meter event per customer, meter and period, made
//! and stored before it is sent, resent under the same identifier until Stripe answers.

use std::time::Duration;

use crate::support::engine::{Engine, engine_tests};
use crate::support::stripe::{Env, Fault, MAPPED, aggregate_plans, json, stderr, stdout};

engine_tests!(
    one_request_per_customer_meter_and_period,
    the_report_carries_the_latest_events_timestamp,
    every_fault_class_still_bills_each_sum_once,
    a_made_report_is_resent_as_is_and_later_events_go_into_the_next,
    a_refused_report_fails_with_its_events_and_is_retried,
    dry_run_shows_the_reports_and_units,
    per_event_mode_sends_one_request_per_event,
    reports_made_before_a_switch_to_per_event_still_go_out,
);

fn reports(env: &Env) -> Vec<(i64, String, i64, Option<String>)> {
    env.inspect()
        .rows("SELECT id, identifier, value, reported_at FROM stripe_reports ORDER BY id")
        .into_iter()
        .map(|r| {
            let reported = Some(r[3].clone()).filter(|t| !t.is_empty());
            (
                r[0].parse().unwrap(),
                r[1].clone(),
                r[2].parse().unwrap(),
                reported,
            )
        })
        .collect()
}

/// Make the reports of everything unreported, as a sync does before sending: the state a sync
/// that died right after packing leaves.
fn pack_reports(env: &Env) -> u64 {
    let (not_before, not_after) = meterline::store::stripe_window(crate::support::stripe::now());
    let window = meterline::store::OutboxWindow {
        not_before,
        not_after,
        failed_before: None,
    };
    let meters = meterline::store::StripeMeters::new(&env.config());
    env.store()
        .pack_reports(&meters, &window, crate::support::stripe::now())
        .unwrap()
}

/// 7 units for acme a minute ago: usage recorded after the reports were made.
fn record_seven_more(env: &Env) {
    let now = crate::support::stripe::now();
    let mut store = env.store();
    env.record(
        &mut store,
        &env.config(),
        "acme",
        7,
        now - chrono::Duration::minutes(1),
    );
}

fn one_request_per_customer_meter_and_period(engine: Engine) {
    let env = Env::seeded(engine, &aggregate_plans());
    let groups = env.groups();
    assert!((3..=6).contains(&groups), "{groups}");
    let output = env.run(&["sync", "--json"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report = json(&output);
    assert_eq!(report["mode"], "aggregate", "{report}");
    assert_eq!(report["attempted"], groups, "{report}");
    assert_eq!(report["accepted"], groups, "{report}");
    assert_eq!(report["events_reported"], 90, "{report}");
    assert_eq!(report["remaining"], 0);
    assert_eq!(
        env.server.requests(),
        groups,
        "90 events, one request per group"
    );
    env.assert_sums_match();
    assert_eq!(env.server.max_in_flight_per_key(), 1);
    // Every event points at the report that carried it.
    assert_eq!(env.count("stripe_report_id IS NULL"), 0);
    // Nothing left: a second sync sends nothing.
    let again = env.run(&["sync", "--json"], &[]);
    assert_eq!(json(&again)["attempted"], 0);
    assert_eq!(env.server.requests(), groups);
}

fn the_report_carries_the_latest_events_timestamp(engine: Engine) {
    let env = Env::on(engine, &aggregate_plans());
    env.seed(&MAPPED[..1], chrono::Duration::hours(5));
    let output = env.run(&["sync", "--json"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let accepted = env.server.accepted();
    assert_eq!(accepted.len(), 1);
    let event = accepted.values().next().unwrap();
    let latest = env
        .inspect()
        .rows("SELECT MAX(occurred_at) FROM usage_events")[0][0]
        .clone();
    let latest = chrono::DateTime::parse_from_rfc3339(&latest).unwrap();
    assert_eq!(event.timestamp, latest.timestamp());
    assert_eq!(event.customer, "cus_Acme0001");
}

fn every_fault_class_still_bills_each_sum_once(engine: Engine) {
    let faults = [
        Fault::TooManyRequests,
        Fault::RateLimit400,
        Fault::Conflict,
        Fault::ServerError { should_retry: None },
        Fault::ServerError {
            should_retry: Some(true),
        },
        Fault::Drop,
        Fault::RecordThenServerError,
        Fault::RecordThenDrop,
        Fault::Slow(Duration::from_millis(1500)),
    ];
    for fault in faults {
        let env = Env::seeded(engine, &aggregate_plans());
        env.server.inject(fault.clone(), 2);
        let output = env.run(&["sync", "--json"], &[]);
        assert!(output.status.success(), "{fault:?}: {}", stderr(&output));
        assert_eq!(env.server.faults_left(), 0, "{fault:?} was never hit");
        let report = json(&output);
        assert_eq!(report["failed"], 0, "{fault:?}: {report}");
        assert_eq!(report["undelivered"], 0, "{fault:?}: {report}");
        env.assert_sums_match();
        // A request the client gave up on (timed out) may still be asleep at the server.
        if !matches!(fault, Fault::Slow(_)) {
            assert_eq!(env.server.max_in_flight_per_key(), 1, "{fault:?}");
        }
    }
}

fn a_made_report_is_resent_as_is_and_later_events_go_into_the_next(engine: Engine) {
    let env = Env::seeded(engine, &aggregate_plans());
    // A sync that died right after making its reports: they are in the database, unsent.
    assert_eq!(pack_reports(&env), env.groups());
    let made = reports(&env);
    // The preview counts made reports, their events and customers.
    let preview = json(&env.run(&["sync", "--dry-run", "--json"], &[]));
    assert_eq!(preview["requests"], env.groups(), "{preview}");
    assert_eq!(
        (preview["events"].as_u64(), preview["customers"].as_u64()),
        (Some(90), Some(3))
    );
    // Usage after the reports were made is not folded into them.
    record_seven_more(&env);
    let output = env.run(&["sync", "--json"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let after = reports(&env);
    assert_eq!(
        after.len(),
        made.len() + 1,
        "one more report for the new event"
    );
    for ((id, identifier, value, _), (id2, identifier2, value2, reported)) in
        made.iter().zip(&after)
    {
        assert_eq!((id, identifier, value), (id2, identifier2, value2));
        assert!(reported.is_some());
        assert!(env.server.accepted().contains_key(identifier));
    }
    assert_eq!(after.last().unwrap().2, 7);
    env.assert_sums_match();
}

fn a_refused_report_fails_with_its_events_and_is_retried(engine: Engine) {
    let env = Env::seeded(engine, &aggregate_plans());
    env.server.refuse_customer("cus_Globex002");
    let output = env.run(&["sync", "--json"], &[]);
    assert_eq!(output.status.code(), Some(1));
    let report = json(&output);
    assert!(report["failed"].as_u64().unwrap() >= 1, "{report}");
    // Globex's 30 events are shown failed, with Stripe's message.
    assert_eq!(
        env.count(
            "stripe_failed_at IS NOT NULL AND stripe_error LIKE '%No such customer%' \
             AND customer_id = 'globex'"
        ),
        30
    );
    let failed = env.inspect().number(
        "SELECT COUNT(*) FROM stripe_reports WHERE failed_at IS NOT NULL
         AND error LIKE '%No such customer%'",
    );
    assert!(failed >= 1);
    // Within the hour it rests; --retry-failed sends the same report again.
    env.server.accept_customer("cus_Globex002");
    let rest = env.run(&["sync", "--json"], &[]);
    assert_eq!(json(&rest)["attempted"], 0);
    let retry = env.run(&["sync", "--json", "--retry-failed"], &[]);
    assert!(retry.status.success(), "{}", stderr(&retry));
    assert_eq!(reports(&env).len() as u64, env.groups(), "no new reports");
    env.assert_sums_match();
    assert_eq!(env.count("stripe_failed_at IS NOT NULL"), 0);
}

fn dry_run_shows_the_reports_and_units(engine: Engine) {
    let env = Env::seeded(engine, &aggregate_plans());
    let units: i64 = env.deliverable().iter().map(|e| e.4).sum();
    let output = env.run(&["sync", "--dry-run", "--json"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let preview = json(&output);
    assert_eq!(preview["mode"], "aggregate");
    assert_eq!(preview["requests"], env.groups(), "{preview}");
    assert_eq!(preview["units"], units, "{preview}");
    assert_eq!(preview["events"], 90);
    let text = stdout(&env.run(&["sync", "--dry-run"], &[]));
    assert!(
        text.contains(&format!(
            "would send {} reports ({units} units, 90 events)",
            env.groups()
        )),
        "{text}"
    );
    assert_eq!(env.server.requests(), 0);
    assert!(reports(&env).is_empty(), "a dry run makes no reports");
}

fn per_event_mode_sends_one_request_per_event(engine: Engine) {
    let env = Env::on(engine, crate::support::stripe::PLANS);
    env.seed(MAPPED, chrono::Duration::days(20));
    let output = env.run(&["sync", "--json"], &[]);
    assert!(output.status.success());
    assert_eq!(json(&output)["mode"], "per_event");
    assert_eq!(env.server.requests(), 90);
    env.assert_exactly_once();
}

fn reports_made_before_a_switch_to_per_event_still_go_out(engine: Engine) {
    let env = Env::seeded(engine, &aggregate_plans());
    // An aggregate sync died right after making its reports; then plans.toml says per_event.
    pack_reports(&env);
    let made = reports(&env);
    std::fs::write(&env.plans, crate::support::stripe::PLANS).unwrap();
    record_seven_more(&env);

    let preview = json(&env.run(&["sync", "--dry-run", "--json"], &[]));
    assert_eq!(preview["requests"], made.len() as u64 + 1, "{preview}");
    assert_eq!(preview["events"], 91, "{preview}");
    let output = env.run(&["sync", "--json"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report = json(&output);
    assert_eq!(report["mode"], "per_event", "{report}");
    assert_eq!(report["accepted"], made.len() as u64 + 1, "{report}");
    assert_eq!(report["events_reported"], 91, "{report}");
    let accepted = env.server.accepted();
    for (_, identifier, value, _) in &made {
        assert_eq!(accepted[identifier].value, *value, "{identifier}");
    }
    assert!(reports(&env).iter().all(|r| r.3.is_some()));
    // The new event went on its own, no report was made for it, and nothing is left.
    assert_eq!(reports(&env).len(), made.len());
    assert_eq!(env.server.requests(), made.len() as u64 + 1);
    assert_eq!(env.count("stripe_reported_at IS NULL"), 0);
    let total: i64 = accepted.values().map(|e| e.value).sum();
    assert_eq!(total, 7 + made.iter().map(|r| r.2).sum::<i64>());
}
