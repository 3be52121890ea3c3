//! Issue 7's sync defects, each against the real binary or the library on a real SQLite file
//! and the Stripe-like server on loopback: the plain-http guard, proxies, redaction, the real
//! clock, panics, deadlines, TLS, counts after a failed write, and the preview without a key.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::support::engine::{Engine, engine_tests};
use crate::support::stripe::{Env, Fault, KEY, PLANS, json, stderr, stdout};

engine_tests!(
    userinfo_in_the_api_base_is_refused_before_anything_is_sent,
    a_plain_http_base_never_goes_through_a_proxy,
    server_text_is_redacted_in_any_case_and_made_inert,
    pretend_clocks_never_reach_a_sync,
    a_malformed_backoff_setting_is_an_error,
    a_panicking_worker_or_reader_ends_the_run_failed_and_frees_the_lock,
    a_server_trickling_bytes_cannot_hold_the_run,
    a_tls_failure_stops_the_run_at_once_with_the_reason,
    a_dry_run_needs_no_key_but_a_sync_does,
    sigterm_and_sigint_cancel_after_the_requests_in_flight,
);

fn userinfo_in_the_api_base_is_refused_before_anything_is_sent(engine: Engine) {
    let env = Env::seeded(engine, PLANS);
    // Each of these passed the old guard (it read the text before the `:`) while the client
    // connected to the host after the `@`.
    for base in [
        "http://localhost:1@example.com",
        "http://[::1]@example.com",
        "http://127.0.0.1:9@example.com",
        "https://user:secret@api.stripe.com",
    ] {
        for args in [&["sync"][..], &["sync", "--dry-run"][..]] {
            let output = env.run(args, &[("STRIPE_API_BASE", Some(base))]);
            assert_eq!(output.status.code(), Some(2), "{base} {args:?}");
            let err = stderr(&output);
            assert!(err.contains("user name or password"), "{base}: {err}");
            assert!(stdout(&output).is_empty(), "{base}: {}", stdout(&output));
        }
    }
    // The dry run names the host that would be connected to.
    let port = env.server.addr().port();
    let base = format!("http://LocalHost:{port}/");
    let output = env.run(&["sync", "--dry-run"], &[("STRIPE_API_BASE", Some(&base))]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("to localhost ("),
        "{}",
        stdout(&output)
    );
    assert_eq!(env.server.connections(), 0);
    assert_eq!(env.count("stripe_reported_at IS NOT NULL"), 0);
}

fn a_plain_http_base_never_goes_through_a_proxy(engine: Engine) {
    let env = Env::seeded(engine, PLANS);
    // A "proxy" that would see the key in clear: it must never get a connection.
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    proxy.set_nonblocking(true).unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let mut vars: Vec<(&str, Option<&str>)> = vec![("NO_PROXY", None), ("no_proxy", None)];
    for name in [
        "ALL_PROXY",
        "all_proxy",
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "http_proxy",
    ] {
        vars.push((name, Some(&proxy_url)));
    }
    let output = env.run_bounded(&["sync", "--json"], &vars);
    assert!(output.status.success(), "{}", stderr(&output));
    env.assert_exactly_once();
    assert!(
        matches!(proxy.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the proxy got a connection"
    );
}

fn server_text_is_redacted_in_any_case_and_made_inert(engine: Engine) {
    let env = Env::seeded(engine, PLANS);
    let message = format!(
        "bad key {} or rk_live_51OtherKey9 \x1b[2J\x1b]0;owned\x07 done",
        KEY.to_ascii_uppercase()
    );
    env.server.inject(Fault::RefuseWith(message), 1);
    let output = env.run(&["sync"], &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let stored: Vec<String> = env
        .inspect()
        .rows("SELECT stripe_error FROM usage_events WHERE stripe_error IS NOT NULL")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(
        stored[0],
        "HTTP 400 invalid_request_error: bad key [redacted] or [redacted] \\x1b[2J\\x1b]0;owned\\x07 done"
    );
    let upper = KEY.to_ascii_uppercase();
    for text in [stdout(&output), stderr(&output)] {
        assert!(
            !text.contains('\x1b') && !text.contains(&upper[8..]),
            "{text}"
        );
    }
}

fn pretend_clocks_never_reach_a_sync(engine: Engine) {
    let env = Env::seeded(engine, PLANS);
    // 40 days ahead: by that clock every event is past Stripe's window.
    let ahead =
        meterline::billing::format_ts(crate::support::stripe::now() + chrono::Duration::days(40));
    for args in [
        &["sync", "--json"][..],
        &["--now", &ahead, "sync", "--json"][..],
    ] {
        let output = env.run(args, &[("METERLINE_NOW", Some(&ahead))]);
        assert!(output.status.success(), "{}", stderr(&output));
        assert_eq!(json(&output)["expired"], 0, "{args:?}");
    }
    assert_eq!(env.count("stripe_expired_at IS NOT NULL"), 0);
    env.assert_exactly_once();
    // The run's timestamps are the real ones.
    let run = env.store().last_sync_run().unwrap().unwrap();
    assert!(run.started_at.as_str() < ahead.as_str(), "{run:?}");
    assert!(
        run.started_at.as_str() >= crate::support::stripe::now_text(),
        "{run:?}"
    );
}

fn a_malformed_backoff_setting_is_an_error(engine: Engine) {
    let env = Env::seeded(engine, PLANS);
    for bad in ["fast", "-5", "1.5"] {
        let output = env.run(&["sync"], &[("METERLINE_STRIPE_BACKOFF_MS", Some(bad))]);
        assert_eq!(output.status.code(), Some(2), "{bad}");
        assert!(
            stderr(&output).contains("METERLINE_STRIPE_BACKOFF_MS"),
            "{}",
            stderr(&output)
        );
    }
    assert_eq!(env.server.requests(), 0);
}

/// A library sync with a test-only panic, run on its own thread so a hang fails the test.
fn sync_with_panic(env: &Env, hook: meterline_stripe::sync::PanicHook) -> meterline::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let options = meterline_stripe::SyncOptions {
                panic_hook: Some(hook),
                ..Default::default()
            };
            let result = env.sync_lib(options, &AtomicBool::new(false), &mut |_| {});
            let _ = tx.send(result.map(|_| ()));
        });
        rx.recv_timeout(Duration::from_secs(60))
            .expect("the sync hung after a panic")
    })
}

fn a_panicking_worker_or_reader_ends_the_run_failed_and_frees_the_lock(engine: Engine) {
    use meterline_stripe::sync::PanicHook;
    let env = Env::seeded(engine, PLANS);
    env.server.set_delay(Duration::from_millis(2));
    for hook in [PanicHook::Worker(5), PanicHook::Reader] {
        let error = sync_with_panic(&env, hook).unwrap_err();
        assert!(error.to_string().contains("panic"), "{hook:?}: {error}");
        let run = env.store().last_sync_run().unwrap().unwrap();
        assert_eq!(run.outcome, "aborted", "{hook:?}");
        assert!(run.finished_at.is_some());
        assert!(
            run.error
                .unwrap_or_default()
                .contains("failed unexpectedly"),
            "{hook:?}"
        );
        // What Stripe accepted is exactly what is marked.
        assert_eq!(
            env.count("stripe_reported_at IS NOT NULL"),
            env.server.accepted_count() as i64
        );
    }
    // The lock was released: the next sync runs at once and finishes the job.
    let output = env.run(&["sync"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    env.assert_exactly_once();
}

fn a_server_trickling_bytes_cannot_hold_the_run(engine: Engine) {
    let env = Env::seeded(engine, PLANS);
    env.server.inject(Fault::Trickle, 100_000);
    let output = env.run_bounded(&["sync", "--json"], &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report = json(&output);
    assert!(
        report["error"].as_str().unwrap().contains("timed out"),
        "{report}"
    );
    assert_eq!(report["accepted"], 0);
    assert_eq!(report["reached"], report["attempted"]);
    assert_eq!(env.count("stripe_reported_at IS NOT NULL"), 0);
    assert_eq!(env.server.accepted_count(), 0);
    assert_eq!(
        env.store().last_sync_run().unwrap().unwrap().outcome,
        "aborted"
    );
}

fn a_tls_failure_stops_the_run_at_once_with_the_reason(engine: Engine) {
    let env = Env::seeded(engine, PLANS);
    // https to a loopback port that answers TLS with plain-text garbage.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("https://{}", listener.local_addr().unwrap());
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    {
        let connections = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                connections.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut hello = [0u8; 512];
                let _ = stream.read(&mut hello);
                let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\nnot tls\n");
            }
        });
    }
    let output = env.run_bounded(&["sync", "--json"], &[("STRIPE_API_BASE", Some(&base))]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(err.contains("TLS error"), "{err}");
    assert!(
        json(&output)["error"]
            .as_str()
            .unwrap()
            .contains("TLS error"),
        "{}",
        stdout(&output)
    );
    // At most the requests already in flight (one per worker), each tried once.
    let seen = connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!((1..=4).contains(&seen), "{seen} connections");
    assert_eq!(env.count("stripe_reported_at IS NOT NULL"), 0);
    assert_eq!(
        env.store().last_sync_run().unwrap().unwrap().outcome,
        "aborted"
    );
}

/// SQLite's own trigger stands in for the full disk.
#[test]
fn a_write_failure_mid_sync_records_what_was_marked() {
    let env = Env::seeded(Engine::Sqlite, PLANS);
    // Slow answers: the writer commits several small batches before the 30th mark fails,
    // as a disk filling up mid-run would.
    env.server.set_delay(Duration::from_millis(40));
    rusqlite::Connection::open(&env.db)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER fill_the_disk BEFORE UPDATE OF stripe_reported_at ON usage_events
             WHEN (SELECT COUNT(*) FROM usage_events WHERE stripe_reported_at IS NOT NULL) >= 30
             BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
        )
        .unwrap();
    let output = env.run(&["sync", "--json"], &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        json(&output)["error"]
            .as_str()
            .unwrap()
            .contains("disk is full"),
        "{}",
        stdout(&output)
    );
    let marked = env.count("stripe_reported_at IS NOT NULL") as u64;
    assert!(marked > 0 && marked <= 30, "{marked}");
    let run = env.store().last_sync_run().unwrap().unwrap();
    assert_eq!(run.outcome, "aborted");
    assert_eq!(run.accepted + run.duplicates, marked, "{run:?}");
    assert!(run.attempted >= marked, "{run:?}");
    assert!(run.error.unwrap_or_default().contains("disk is full"));
}

fn a_dry_run_needs_no_key_but_a_sync_does(engine: Engine) {
    let env = Env::seeded(engine, PLANS);
    let output = env.run(&["sync", "--dry-run"], &[("STRIPE_API_KEY", None)]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("would send 90 events of 3 customers to 127.0.0.1")
            && text.contains("no STRIPE_API_KEY set"),
        "{text}"
    );
    let preview = json(&env.run(
        &["sync", "--dry-run", "--json"],
        &[("STRIPE_API_KEY", None)],
    ));
    assert_eq!(preview["events"], 90);
    // A malformed key is still refused, and a real sync still needs one.
    let bad = env.run(
        &["sync", "--dry-run"],
        &[("STRIPE_API_KEY", Some("pk_test_publishable1"))],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert_eq!(
        env.run(&["sync"], &[("STRIPE_API_KEY", None)])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(env.server.connections(), 0);
}

fn sigterm_and_sigint_cancel_after_the_requests_in_flight(engine: Engine) {
    let env = Env::seeded(engine, PLANS);
    // Slow answers: the run is well under way, with requests in flight, when the signal comes.
    env.server.set_delay(Duration::from_millis(150));
    for signal in ["-TERM", "-INT"] {
        // Signal once this run has sent a few requests (so its handlers are installed).
        let output = env.signal_after_requests(&["sync"], 6, signal);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{signal}: {}",
            stderr(&output)
        );
        assert!(stderr(&output).contains("cancelled"), "{}", stderr(&output));
        assert!(stdout(&output).contains("stopped early: cancelled"));
        // The lock is released and the run recorded as cancelled.
        let db = env.inspect();
        assert_eq!(db.number("SELECT COUNT(*) FROM sync_lock"), 0, "{signal}");
        let run = env.store().last_sync_run().unwrap().unwrap();
        assert_eq!(run.outcome, "cancelled", "{signal}");
        // The database and the server agree: every event marked reported was received, and
        // every event the server accepted is marked (the requests in flight finished).
        let marked: std::collections::HashSet<String> = db
            .rows("SELECT stripe_identifier FROM usage_events WHERE stripe_reported_at IS NOT NULL")
            .into_iter()
            .map(|r| r[0].clone())
            .collect();
        let accepted: std::collections::HashSet<String> =
            env.server.accepted().into_keys().collect();
        assert_eq!(marked, accepted, "{signal}");
        assert!(!marked.is_empty() && marked.len() < 90, "{}", marked.len());
    }
    // The next run sends the rest, each event once.
    env.server.set_delay(Duration::ZERO);
    let output = env.run(&["sync"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    env.assert_exactly_once();
}
