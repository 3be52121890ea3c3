//! `meterline sync` end to end: the real binary against the Stripe-like server on loopback.

use crate::support::engine::{Engine, engine_tests};
use crate::support::stripe::{Env, KEY, PLANS, Seed, json, stderr, stdout};
use chrono::Duration;

engine_tests!(
    happy_path_delivers_every_event_exactly_once,
    the_global_sync_flag_is_the_same_as_the_subcommand,
    unmapped_expired_and_future_events_are_not_sent,
    dry_run_lists_and_changes_nothing,
    limit_sends_the_oldest_first,
    a_missing_key_exits_2_without_network,
    configuration_mistakes_exit_2_before_sending,
    a_refused_key_stops_the_run_at_once,
);

fn happy_path_delivers_every_event_exactly_once(engine: Engine) {
    let env = Env::seeded(engine, PLANS);
    let expected = env.deliverable().len() as u64;
    assert_eq!(expected, 90);
    // Slow enough answers that parallel workers must overlap.
    env.server.set_delay(std::time::Duration::from_millis(5));

    let output = env.run(&["sync", "--json"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report = json(&output);
    assert_eq!(report["attempted"], expected);
    assert_eq!(report["accepted"], expected);
    assert_eq!(report["duplicates"], 0);
    assert_eq!(report["failed"], 0);
    assert_eq!(report["remaining"], 0);
    let keys: Vec<_> = report.as_object().unwrap().keys().cloned().collect();
    for field in [
        "attempted",
        "accepted",
        "duplicates",
        "failed",
        "expired",
        "unmapped",
        "remaining",
        "duration_ms",
    ] {
        assert!(
            keys.contains(&field.to_string()),
            "{field} missing from {report}"
        );
    }

    env.assert_exactly_once();
    // Every request was valid as Stripe sees it, carried its headers, and Stripe's
    // one-in-flight-per-customer-and-meter rule held while several workers ran.
    assert!(
        env.server.refused().is_empty(),
        "{:?}",
        env.server.refused()
    );
    assert_eq!(env.server.missing_idempotency_keys(), 0);
    assert_eq!(
        env.server.versions().into_iter().collect::<Vec<_>>(),
        vec![meterline::config::DEFAULT_API_VERSION.to_string()]
    );
    assert_eq!(env.server.max_in_flight_per_key(), 1);
    assert_eq!(
        env.server.max_in_flight(),
        3,
        "one request per customer at once"
    );
    // Keep-alive: a handful of connections for 90 requests.
    assert!(
        env.server.connections() <= 8,
        "{} connections",
        env.server.connections()
    );

    let run = env.store().last_sync_run().unwrap().unwrap();
    assert_eq!(
        (run.outcome.as_str(), run.accepted),
        ("completed", expected)
    );
    assert!(run.finished_at.is_some());

    let status = stdout(&env.run(&["status"], &[]));
    assert!(
        status.contains("stripe: 0 unreported (0 failed, 0 unmapped), 0 expired; last sync ")
            && status.contains(" completed: 90 accepted"),
        "{status}"
    );

    // Nothing left: a second run sends nothing.
    let again = env.run(&["sync", "--json"], &[]);
    assert!(again.status.success());
    assert_eq!(json(&again)["attempted"], 0);
    assert_eq!(env.server.requests(), expected);
    env.assert_key_not_in_files();
}

fn the_global_sync_flag_is_the_same_as_the_subcommand(engine: Engine) {
    let env = Env::seeded(engine, PLANS);
    let output = env.run(&["--sync"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("90 attempted, 90 reached Stripe, 90 accepted"),
        "{text}"
    );
    env.assert_exactly_once();

    let both = env.run(&["--sync", "status"], &[]);
    assert_eq!(both.status.code(), Some(2));
    assert!(stderr(&both).contains("--sync runs the sync on its own"));
}

fn unmapped_expired_and_future_events_are_not_sent(engine: Engine) {
    let env = Env::on(engine, PLANS);
    env.seed(
        &[
            Seed {
                id: "acme",
                stripe: Some("cus_Acme0001"),
                plan: "free",
                events: 10,
            },
            Seed {
                id: "hooli",
                stripe: None,
                plan: "free",
                events: 5,
            },
        ],
        Duration::days(3),
    );
    let config = env.config();
    let mut store = env.store();
    let now = crate::support::stripe::now();
    for days in [36, 40] {
        env.record(&mut store, &config, "acme", 2, now - Duration::days(days));
    }
    // Recorded by a machine whose clock runs 30 minutes ahead (record refuses events more than
    // 5 minutes ahead of its own clock).
    let ahead = now + Duration::minutes(30);
    let request = meterline::RecordRequest::new("acme", 3, ahead);
    assert!(store.record(&config, &request, ahead).unwrap().recorded);
    drop(store);

    let output = env.run(&["sync", "--json"], &[]);
    let report = json(&output);
    assert!(output.status.success(), "{report}");
    assert_eq!(report["accepted"], 10);
    assert_eq!(report["expired"], 2);
    assert_eq!(report["unmapped"], 5);
    assert_eq!(report["future"], 1);
    // The future event is still to be reported; unmapped ones are counted apart.
    assert_eq!(report["remaining"], 1);
    env.assert_exactly_once();
    assert_eq!(env.count("stripe_expired_at IS NOT NULL"), 2);
    assert_eq!(
        env.count("stripe_expired_at IS NOT NULL AND stripe_reported_at IS NULL"),
        2
    );

    let counts = env.store().stripe_counts(now).unwrap();
    assert_eq!(
        (counts.unmapped, counts.expired, counts.unreported),
        (5, 2, 6)
    );

    // Mapping the customer sends its pending events on the next run; expired stay expired.
    let mapped = env.run(&["customer", "set-stripe", "hooli", "cus_Hooli0004"], &[]);
    assert!(mapped.status.success(), "{}", stderr(&mapped));
    let report = json(&env.run(&["sync", "--json"], &[]));
    assert_eq!(
        (report["accepted"].as_u64(), report["unmapped"].as_u64()),
        (Some(5), Some(0))
    );
    env.assert_exactly_once();

    // Once its time has come, the future event goes out too (a pretend clock reaches a sync
    // only through the library's explicit option).
    let later = crate::support::stripe::now() + Duration::minutes(40);
    env.server.set_now(later);
    let options = meterline_stripe::SyncOptions {
        now: Some(later),
        ..Default::default()
    };
    let report = env
        .sync_lib(
            options,
            &std::sync::atomic::AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap();
    assert_eq!((report.accepted, report.expired), (1, 0));
    assert_eq!(env.server.accepted_count(), 16);
}

fn dry_run_lists_and_changes_nothing(engine: Engine) {
    let env = Env::seeded(engine, PLANS);
    env.run(&["status"], &[]);
    let before = env.dump();
    let output = env.run(&["sync", "--dry-run"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("would send 90 events of 3 customers"),
        "{text}"
    );
    assert!(
        text.contains("cus_Globex002") && text.contains("meterline_usage_business"),
        "{text}"
    );
    assert!(text.contains("test mode"), "{text}");

    let preview = json(&env.run(&["sync", "--dry-run", "--json", "--limit", "25"], &[]));
    assert_eq!(preview["events"], 25);
    assert_eq!(preview["live"], false);

    assert_eq!(env.server.connections(), 0, "a dry run touched the network");
    assert_eq!(env.dump(), before, "a dry run changed the database");
}

fn limit_sends_the_oldest_first(engine: Engine) {
    let env = Env::seeded(engine, PLANS);
    let report = json(&env.run(&["sync", "--json", "--limit", "10"], &[]));
    assert_eq!(report["accepted"], 10);
    assert_eq!(report["remaining"], 80);
    let oldest: Vec<String> = env
        .deliverable()
        .into_iter()
        .take(10)
        .map(|e| e.1)
        .collect();
    let accepted = env.server.accepted();
    assert!(oldest.iter().all(|id| accepted.contains_key(id)));
}

fn a_missing_key_exits_2_without_network(engine: Engine) {
    let env = Env::seeded(engine, PLANS);
    for key in [None, Some(""), Some("   ")] {
        let output = env.run(&["sync"], &[("STRIPE_API_KEY", key)]);
        assert_eq!(output.status.code(), Some(2));
        let err = stderr(&output);
        assert!(
            err.contains("STRIPE_API_KEY is not set") && err.contains("export STRIPE_API_KEY="),
            "{err}"
        );
    }
    let output = env.run(&["--sync"], &[("STRIPE_API_KEY", None)]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(env.server.connections(), 0);
    assert_eq!(env.count("stripe_reported_at IS NOT NULL"), 0);
}

fn configuration_mistakes_exit_2_before_sending(engine: Engine) {
    let env = Env::seeded(engine, PLANS);
    let cases: &[(&crate::support::stripe::EnvOverrides, &str)] = &[
        (
            &[("STRIPE_API_KEY", Some("pk_test_publishable123"))],
            "does not look like a Stripe secret key",
        ),
        (
            &[("STRIPE_API_BASE", Some("http://stripe.example.com"))],
            "plain http",
        ),
        (
            &[("STRIPE_API_BASE", Some("ftp://127.0.0.1"))],
            "not an http(s) URL",
        ),
    ];
    for (extra, message) in cases {
        let output = env.run(&["sync"], extra);
        assert_eq!(output.status.code(), Some(2), "{extra:?}");
        assert!(stderr(&output).contains(message), "{}", stderr(&output));
    }
    assert_eq!(env.server.connections(), 0);
}

fn a_refused_key_stops_the_run_at_once(engine: Engine) {
    let env = Env::seeded(engine, PLANS);
    let wrong = "sk_test_51WrongKeyWrongKeyWrongKey000";
    let output = env.run(&["sync"], &[("STRIPE_API_KEY", Some(wrong))]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(
        err.contains("Stripe refused the API key") && err.contains("HTTP 401"),
        "{err}"
    );
    assert!(!err.contains(wrong));
    // At most the requests already in flight: one per worker.
    assert!(
        env.server.requests() <= 4,
        "{} requests",
        env.server.requests()
    );
    assert_eq!(env.count("stripe_reported_at IS NOT NULL"), 0);
    let run = env.store().last_sync_run().unwrap().unwrap();
    assert_eq!(run.outcome, "aborted");
    assert!(!run.error.unwrap_or_default().contains(wrong));
    // The lock was released: the right key works right after.
    let output = env.run(&["sync"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    env.assert_exactly_once();
    assert!(!stdout(&output).contains(KEY));
}
