//! One rule for every input, on every route: a retry without a time is the same event
//! whenever it arrives, a number property keeps its digits, a key is never repeated, text is
//! compared in one Unicode form, a meter's value is never 0, an id cannot look like another,
//! and the CLI's text neither overstates usage nor fails on a closed pipe.

use std::path::Path;
use std::process::Stdio;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use meterline::store::NewCustomer;
use meterline::{Config, RecordRequest, Store};
use predicates::str::contains;

use crate::support::cli::{BIN, NOW, Scratch};
use crate::support::engine::{Engine, engine_tests};

engine_tests!(a_retry_without_a_time_is_the_same_event_whenever_it_commits,);

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(NOW).unwrap().with_timezone(&Utc)
}

/// A store on `engine` with `globex` on the unlimited business plan.
fn store_with_globex(engine: Engine) -> (Scratch, Store, Config) {
    let s = Scratch::on(engine);
    let config = Config::load(&s.plans).unwrap();
    let mut store = Store::open(Path::new(&s.db)).unwrap();
    store
        .add_customer(
            &config,
            &NewCustomer {
                id: "globex".into(),
                name: None,
                plan_id: "business".into(),
                stripe_customer_id: None,
                billing_anchor: Some(NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()),
            },
            now(),
        )
        .unwrap();
    (s, store, config)
}

/// The server stamps an event without `at` when it parses it and the store commits it
/// later: a second may turn in between, for the original and for the retry.
fn a_retry_without_a_time_is_the_same_event_whenever_it_commits(engine: Engine) {
    let (_s, mut store, config) = store_with_globex(engine);
    let received = |at: DateTime<Utc>| RecordRequest {
        idempotency_key: Some("k".into()),
        at_given: false,
        ..RecordRequest::new("globex", 5, at)
    };
    let original = store
        .record(&config, &received(now()), now() + Duration::seconds(1))
        .unwrap();
    assert!(original.recorded);
    for (parsed, committed) in [(60, 61), (120, 120), (0, 1)] {
        let retry = store
            .record(
                &config,
                &received(now() + Duration::seconds(parsed)),
                now() + Duration::seconds(committed),
            )
            .unwrap_or_else(|e| panic!("retry parsed at +{parsed}s: {e}"));
        assert!(retry.duplicate && !retry.recorded);
        assert_eq!(retry.event_id, original.event_id);
        assert_eq!(retry.check.used, 5);
    }
    // A time given that differs is still another event's parameters.
    let other_time = RecordRequest {
        at_given: true,
        ..received(now() - Duration::hours(1))
    };
    assert!(matches!(
        store.record(&config, &other_time, now() + Duration::seconds(200)),
        Err(meterline::Error::IdempotencyConflict(_))
    ));
}

/// Run `meterline ARGS` with its stdout closed before it writes (`| head -0`): exit code and
/// stderr.
fn with_stdout_closed(args: &[&str]) -> (Option<i32>, String) {
    let mut child = std::process::Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn completions_and_the_man_page_end_quietly_on_a_closed_pipe() {
    for args in [&["completions", "bash"][..], &["man"]] {
        let (code, stderr) = with_stdout_closed(args);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?} was not quiet");
    }
}

#[test]
fn check_never_shows_the_limit_reached_below_it() {
    let s = Scratch::new();
    s.add_customer("acme", "starter", "2026-11-01");
    s.record("acme", 9_996);
    s.cmd()
        .args(["check", "acme"])
        .assert()
        .stdout(contains("used 9,996 / 10,000 (99.9 %)  level critical"));
    s.record("acme", 4);
    s.cmd()
        .args(["check", "acme"])
        .assert()
        .stdout(contains("(100.0 %)  level hard_cap"));
}
