//! Reports in doubt: sent, never answered, and past Stripe's 24-hour identifier window
//! (an injected clock) are held, not resent; reconcile settles them from Stripe's total.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::support::stripe::{Env, Fault, MAPPED, aggregate_plans};
use meterline_stripe::SyncOptions;
use meterline_stripe::reconcile::{self, ReconcileOptions};

use crate::support::engine::{Engine, engine_tests};

engine_tests!(
    within_23_hours_an_unanswered_report_is_resent_under_its_identifier,
    held_then_found_in_stripes_total_is_reported_without_a_resend,
    held_then_missing_from_stripe_by_exactly_its_amount_is_resent,
    held_with_a_figure_that_settles_nothing_shows_both_numbers,
    per_event_mode_holds_an_unanswered_event_then_resends_it_when_stripe_lacks_it,
    per_event_mode_marks_a_held_event_reported_when_stripe_has_it,
    requests_that_never_reached_stripe_leave_nothing_in_doubt,
);

fn at(hours: i64) -> SyncOptions {
    SyncOptions {
        now: Some(crate::support::stripe::now() + chrono::Duration::hours(hours)),
        ..SyncOptions::default()
    }
}

/// One customer's report sent without an answer on every attempt; `recorded`: Stripe got it.
fn unanswered(engine: Engine, recorded: bool) -> Env {
    let env = Env::on(engine, &aggregate_plans());
    env.seed(&MAPPED[..1], chrono::Duration::hours(3));
    env.server.add_meter("meterline_usage");
    env.server.add_meter("meterline_usage_business");
    if recorded {
        env.server.inject(Fault::RecordThenDrop, 1);
        env.server.inject(Fault::Drop, 3);
    } else {
        env.server.inject(Fault::Drop, 4);
    }
    let report = env
        .sync_lib(at(0), &AtomicBool::new(false), &mut |_| {})
        .unwrap();
    assert_eq!((report.undelivered, report.in_doubt), (1, 0), "{report:?}");
    assert_eq!(env.server.accepted_count(), usize::from(recorded));
    env
}

fn within_23_hours_an_unanswered_report_is_resent_under_its_identifier(engine: Engine) {
    let env = unanswered(engine, true);
    let report = env
        .sync_lib(at(22), &AtomicBool::new(false), &mut |_| {})
        .unwrap();
    assert_eq!((report.duplicates, report.in_doubt), (1, 0), "{report:?}");
    env.assert_sums_match();
}

fn held_after_a_day(env: &Env) {
    let requests = env.server.requests();
    let report = env
        .sync_lib(at(24), &AtomicBool::new(false), &mut |_| {})
        .unwrap();
    assert_eq!(report.in_doubt, 40, "{report:?}");
    assert_eq!(report.attempted, 0, "held, not resent");
    assert_eq!(env.server.requests(), requests);
    // status shows it, and status --json says whose events they are.
    let status = crate::support::stripe::stdout(&env.run(&["status"], &[]));
    assert!(status.contains("40 in doubt"), "{status}");
    let status = crate::support::stripe::json(&env.run(&["status", "--json"], &[]));
    let held: Vec<(&str, i64)> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["customer"].as_str().unwrap(),
                e["stripe"]["in_doubt"].as_i64().unwrap(),
            )
        })
        .filter(|(_, n)| *n != 0)
        .collect();
    assert_eq!(held, [("acme", 40)]);
}

fn reconcile(env: &Env) -> Vec<meterline::store::ReconcileRow> {
    let key = meterline_stripe::ApiKey::new(crate::support::stripe::KEY).unwrap();
    let options = ReconcileOptions {
        grace: Duration::ZERO,
        backoff: Some(Duration::from_millis(10)),
        ..ReconcileOptions::default()
    };
    reconcile::run(&env.db, &env.config(), &key, &options)
        .unwrap()
        .rows
}

fn held_then_found_in_stripes_total_is_reported_without_a_resend(engine: Engine) {
    let env = unanswered(engine, true);
    held_after_a_day(&env);
    let requests = env.server.requests();
    let rows = reconcile(&env);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "ok", "{rows:?}");
    assert_eq!(rows[0].drift, 0);
    assert_eq!(env.count("stripe_reported_at IS NULL"), 0);
    assert_eq!(env.store().in_doubt().unwrap().reports, 0);
    // Nothing more goes out.
    let report = env
        .sync_lib(at(25), &AtomicBool::new(false), &mut |_| {})
        .unwrap();
    assert_eq!(report.attempted, 0);
    let posts = env.server.requests() - requests;
    assert_eq!(posts, env.server.reads(), "only reads since");
    env.assert_sums_match();
}

fn held_then_missing_from_stripe_by_exactly_its_amount_is_resent(engine: Engine) {
    let env = unanswered(engine, false);
    held_after_a_day(&env);
    let rows = reconcile(&env);
    assert_eq!(rows[0].status, "resend", "{rows:?}");
    let report = env
        .sync_lib(at(25), &AtomicBool::new(false), &mut |_| {})
        .unwrap();
    assert_eq!((report.accepted, report.in_doubt), (1, 0), "{report:?}");
    env.assert_sums_match();
}

fn held_with_a_figure_that_settles_nothing_shows_both_numbers(engine: Engine) {
    let env = unanswered(engine, true);
    held_after_a_day(&env);
    let at = (crate::support::stripe::now() - chrono::Duration::minutes(30)).timestamp();
    env.server
        .add_usage("cus_Acme0001", "meterline_usage", 5, at);
    let rows = reconcile(&env);
    assert_eq!(rows[0].status, "in_doubt", "{rows:?}");
    assert_eq!(rows[0].local, 0);
    assert!(rows[0].stripe > 5);
    assert_eq!(env.store().in_doubt().unwrap().reports, 1, "still held");
}

fn per_event_mode_holds_an_unanswered_event_then_resends_it_when_stripe_lacks_it(engine: Engine) {
    let env = Env::on(engine, crate::support::stripe::PLANS);
    env.seed(&MAPPED[..1], chrono::Duration::hours(3));
    env.server.add_meter("meterline_usage");
    env.server.add_meter("meterline_usage_business");
    // The first event never gets an answer on any of its 4 attempts.
    env.server.inject(Fault::Drop, 4);
    let first = env
        .sync_lib(at(0), &AtomicBool::new(false), &mut |_| {})
        .unwrap();
    assert_eq!((first.accepted, first.undelivered), (39, 1), "{first:?}");
    // A day later it is held, not resent.
    let requests = env.server.requests();
    let held = env
        .sync_lib(at(24), &AtomicBool::new(false), &mut |_| {})
        .unwrap();
    assert_eq!((held.in_doubt, held.attempted), (1, 0), "{held:?}");
    assert_eq!(env.server.requests(), requests);
    let rows = reconcile(&env);
    assert_eq!(rows[0].status, "resend", "{rows:?}");
    let resent = env
        .sync_lib(at(25), &AtomicBool::new(false), &mut |_| {})
        .unwrap();
    assert_eq!((resent.accepted, resent.in_doubt), (1, 0), "{resent:?}");
    env.assert_exactly_once();
}

fn per_event_mode_marks_a_held_event_reported_when_stripe_has_it(engine: Engine) {
    let env = Env::on(engine, crate::support::stripe::PLANS);
    env.seed(&MAPPED[..1], chrono::Duration::hours(3));
    env.server.add_meter("meterline_usage");
    env.server.add_meter("meterline_usage_business");
    env.server.inject(Fault::RecordThenDrop, 1);
    env.server.inject(Fault::Drop, 3);
    env.sync_lib(at(0), &AtomicBool::new(false), &mut |_| {})
        .unwrap();
    let held = env
        .sync_lib(at(24), &AtomicBool::new(false), &mut |_| {})
        .unwrap();
    assert_eq!(held.in_doubt, 1, "{held:?}");
    let rows = reconcile(&env);
    assert_eq!(rows[0].status, "ok", "{rows:?}");
    assert_eq!(env.count("stripe_reported_at IS NULL"), 0);
    env.assert_exactly_once();
}

fn requests_that_never_reached_stripe_leave_nothing_in_doubt(engine: Engine) {
    for plans in [aggregate_plans(), crate::support::stripe::PLANS.to_string()] {
        let env = Env::on(
            engine,
            &plans.replace("https://api.stripe.com", "http://127.0.0.1:1"),
        );
        env.seed(MAPPED, chrono::Duration::hours(3));
        let down = env
            .sync_lib(at(0), &AtomicBool::new(false), &mut |_| {})
            .unwrap();
        assert!(down.reached == 0 && down.undelivered > 0, "{down:?}");
        // A day later, with Stripe reachable: everything goes out, nothing is held.
        std::fs::write(
            &env.plans,
            plans.replace("https://api.stripe.com", &env.server.base()),
        )
        .unwrap();
        let up = env
            .sync_lib(at(24), &AtomicBool::new(false), &mut |_| {})
            .unwrap();
        assert_eq!((up.in_doubt, up.undelivered), (0, 0), "{up:?}");
        assert!(up.all_delivered(), "{up:?}");
    }
}
