//! Every fault class Stripe or the network can produce: each event still ends up accepted
//! exactly once, or stays pending with its error recorded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::support::engine::{Engine, engine_tests};
use crate::support::stripe::{Env, Fault, PLANS, json, stderr};

engine_tests!(
    http_429_is_retried,
    http_400_rate_limit_is_retried,
    http_409_is_retried,
    http_500_without_the_header_is_retried,
    http_500_with_should_retry_true_is_retried,
    a_dropped_connection_is_retried,
    a_500_after_recording_is_resolved_as_a_duplicate,
    a_connection_dropped_after_recording_is_resolved_as_a_duplicate,
    a_response_slower_than_the_timeout_is_retried_and_recognised,
    http_500_with_should_retry_false_fails_the_event_until_retried,
    other_client_errors_mark_events_failed_with_stripes_message,
    transient_errors_past_the_attempt_bound_leave_events_pending_and_the_run_gives_up,
    an_unreachable_server_ends_the_run_quickly_with_the_reason,
    cancel_lets_requests_in_flight_finish_and_marks_them,
);

/// Inject `fault` `times` times; the sync must still deliver everything exactly once.
fn survives(engine: Engine, fault: Fault, times: usize) -> serde_json::Value {
    let env = Env::seeded(engine, PLANS);
    env.server.inject(fault.clone(), times);
    let output = env.run(&["sync", "--json"], &[]);
    assert!(output.status.success(), "{fault:?}: {}", stderr(&output));
    assert_eq!(env.server.faults_left(), 0, "{fault:?} was never hit");
    let report = json(&output);
    assert_eq!(report["attempted"], 90, "{fault:?}: {report}");
    assert_eq!(
        report["accepted"].as_u64().unwrap() + report["duplicates"].as_u64().unwrap(),
        90,
        "{fault:?}: {report}"
    );
    assert_eq!(
        (report["failed"].as_u64(), report["undelivered"].as_u64()),
        (Some(0), Some(0))
    );
    env.assert_exactly_once();
    // Retries happened: more requests than events.
    assert_eq!(env.server.requests(), 90 + times as u64, "{fault:?}");
    report
}

fn http_429_is_retried(engine: Engine) {
    survives(engine, Fault::TooManyRequests, 3);
}

fn http_400_rate_limit_is_retried(engine: Engine) {
    survives(engine, Fault::RateLimit400, 3);
}

fn http_409_is_retried(engine: Engine) {
    survives(engine, Fault::Conflict, 2);
}

fn http_500_without_the_header_is_retried(engine: Engine) {
    survives(engine, Fault::ServerError { should_retry: None }, 3);
}

fn http_500_with_should_retry_true_is_retried(engine: Engine) {
    survives(
        engine,
        Fault::ServerError {
            should_retry: Some(true),
        },
        2,
    );
}

fn a_dropped_connection_is_retried(engine: Engine) {
    survives(engine, Fault::Drop, 3);
}

fn a_500_after_recording_is_resolved_as_a_duplicate(engine: Engine) {
    // Stripe saved the 500 under the idempotency key: the retry moves to a new key, and the
    // identifier tells Stripe it already has the event.
    let report = survives(engine, Fault::RecordThenServerError, 2);
    assert_eq!(report["duplicates"], 2, "{report}");
}

fn a_connection_dropped_after_recording_is_resolved_as_a_duplicate(engine: Engine) {
    // Same idempotency key on the retry: Stripe replays its saved 200.
    let report = survives(engine, Fault::RecordThenDrop, 2);
    assert_eq!(report["duplicates"], 2, "{report}");
}

fn a_response_slower_than_the_timeout_is_retried_and_recognised(engine: Engine) {
    // timeout_secs = 1 in the test plans.
    let report = survives(engine, Fault::Slow(Duration::from_millis(1500)), 1);
    assert_eq!(report["duplicates"], 1, "{report}");
}

fn http_500_with_should_retry_false_fails_the_event_until_retried(engine: Engine) {
    let env = Env::seeded(engine, PLANS);
    env.server.inject(
        Fault::ServerError {
            should_retry: Some(false),
        },
        1,
    );
    let output = env.run(&["sync", "--json"], &[]);
    assert_eq!(output.status.code(), Some(1));
    let report = json(&output);
    assert_eq!(
        (report["failed"].as_u64(), report["accepted"].as_u64()),
        (Some(1), Some(89))
    );
    assert_eq!(
        env.server.requests(),
        90,
        "Should-Retry: false must not be retried"
    );
    assert_eq!(
        env.count(
            "stripe_failed_at IS NOT NULL AND stripe_reported_at IS NULL AND stripe_attempts = 1 \
                   AND stripe_error = 'HTTP 500 api_error: An unknown error occurred'"
        ),
        1
    );

    // A refusal rests for an hour before the next run resends it ...
    let output = env.run(&["sync", "--json"], &[]);
    assert!(output.status.success());
    let report = json(&output);
    assert_eq!(
        (
            report["attempted"].as_u64(),
            report["failed_waiting"].as_u64()
        ),
        (Some(0), Some(1))
    );
    // ... unless asked to.
    let output = env.run(&["sync", "--json", "--retry-failed"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(json(&output)["accepted"], 1);
    env.assert_exactly_once();
    assert_eq!(
        env.count("stripe_failed_at IS NOT NULL OR stripe_error IS NOT NULL"),
        0
    );
}

fn other_client_errors_mark_events_failed_with_stripes_message(engine: Engine) {
    let env = Env::seeded(engine, PLANS);
    env.server.refuse_customer("cus_Initech03");
    let output = env.run(&["sync"], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        crate::support::stripe::stdout(&output).contains("refused: 20 events"),
        "{}",
        crate::support::stripe::stdout(&output)
    );
    assert_eq!(
        env.count("stripe_error = 'HTTP 400 invalid_request_error resource_missing: No such customer: ''cus_Initech03'' (param payload[stripe_customer_id])'"),
        20
    );
    assert_eq!(env.count("stripe_reported_at IS NOT NULL"), 70);
    let counts = env
        .store()
        .stripe_counts(crate::support::stripe::now())
        .unwrap();
    assert_eq!((counts.failed, counts.unreported), (20, 20));

    // Fixed at Stripe; an hour later the next run sends them on its own.
    env.server.accept_customer("cus_Initech03");
    let later = crate::support::stripe::now() + chrono::Duration::minutes(90);
    env.server.set_now(later);
    let options = meterline_stripe::SyncOptions {
        now: Some(later),
        ..Default::default()
    };
    let report = env
        .sync_lib(options, &AtomicBool::new(false), &mut |_| {})
        .unwrap();
    assert_eq!(report.accepted, 20);
    env.assert_exactly_once();
}

fn transient_errors_past_the_attempt_bound_leave_events_pending_and_the_run_gives_up(
    engine: Engine,
) {
    let env = Env::seeded(engine, PLANS);
    env.server
        .inject(Fault::ServerError { should_retry: None }, 10_000);
    let output = env.run(&["sync", "--json"], &[]);
    assert_eq!(output.status.code(), Some(1));
    let report = json(&output);
    assert!(
        report["stopped"].as_str().unwrap().contains("gave up"),
        "{report}"
    );
    assert_eq!(report["accepted"], 0);
    assert!(report["undelivered"].as_u64().unwrap() >= 3, "{report}");
    assert_eq!(
        env.count("stripe_reported_at IS NOT NULL OR stripe_failed_at IS NOT NULL"),
        0
    );
    // max_attempts = 4 per event, recorded with the last error.
    assert!(env.count("stripe_attempts = 4 AND stripe_error LIKE 'HTTP 500%'") >= 3);
    let run = env.store().last_sync_run().unwrap().unwrap();
    assert_eq!(run.outcome, "aborted");

    env.server.clear_faults();
    let output = env.run(&["sync", "--json"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    env.assert_exactly_once();
    assert_eq!(env.count("stripe_error IS NOT NULL"), 0);
}

fn an_unreachable_server_ends_the_run_quickly_with_the_reason(engine: Engine) {
    let env = Env::seeded(engine, PLANS);
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let base = format!("http://{closed}");
    let output = env.run(&["sync"], &[("STRIPE_API_BASE", Some(&base))]);
    assert_eq!(output.status.code(), Some(1));
    let text = crate::support::stripe::stdout(&output);
    // Nothing left the machine: attempted, but none reached Stripe, and it says why.
    assert!(
        text.contains("gave up")
            && text.contains("0 reached Stripe")
            && text.contains("never reached Stripe (could not connect: Connection refused"),
        "{text}"
    );
    assert_eq!(env.count("stripe_reported_at IS NOT NULL"), 0);

    let output = env.run(&["sync", "--json"], &[("STRIPE_API_BASE", Some(&base))]);
    let report = json(&output);
    assert!(report["attempted"].as_u64().unwrap() >= 3, "{report}");
    assert_eq!(report["reached"], 0, "{report}");
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .starts_with("could not connect"),
        "{report}"
    );
    // A run that did reach Stripe says so in the same field.
    env.server
        .inject(Fault::ServerError { should_retry: None }, 10_000);
    let report = json(&env.run(&["sync", "--json"], &[]));
    assert_eq!(report["reached"], report["attempted"], "{report}");
    assert!(
        report["error"].as_str().unwrap().contains("gave up"),
        "{report}"
    );
}

fn cancel_lets_requests_in_flight_finish_and_marks_them(engine: Engine) {
    let env = Env::seeded(engine, PLANS);
    // ~150 answers/s over 3 customers: progress arrives every 50 ms, long before the end.
    env.server.set_delay(Duration::from_millis(20));
    let cancel = AtomicBool::new(false);
    let report = env
        .sync_lib(Default::default(), &cancel, &mut |p| {
            if p.attempted >= 10 {
                cancel.store(true, Ordering::Relaxed);
            }
        })
        .unwrap();
    assert_eq!(report.stopped.as_deref(), Some("cancelled"));
    assert!(!report.all_delivered());
    let accepted = env.server.accepted_count() as i64;
    assert!((10..90).contains(&accepted), "{accepted} accepted");
    // Everything Stripe accepted is marked, nothing more.
    assert_eq!(env.count("stripe_reported_at IS NOT NULL"), accepted);
    assert_eq!(report.accepted as i64, accepted);
    assert_eq!(
        env.store().last_sync_run().unwrap().unwrap().outcome,
        "cancelled"
    );

    let output = env.run(&["sync"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    env.assert_exactly_once();
}
