//! PostgreSQL restarted under load: while it is down the server answers 503 with
//! Retry-After and a CLI writer fails with a clear message; once it is back both work again
//! without a restart of meterline, and every acknowledged event is there exactly once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::cli::Scratch;
use crate::support::postgres::PgServer;
use crate::support::serve::{Server, create_token};
use serde_json::json;

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_postgres_restart_under_load_gives_503_then_recovers_losing_nothing() {
    let pg = PgServer::private();
    let mut s = Scratch::new();
    s.db = pg.fresh_database().into();
    s.add_customer("acme", "business", "2026-11-01");
    let token = create_token(&s, "load");
    let server = Server::start(&s, &[]);

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let unavailable = Arc::new(Mutex::new(Vec::new()));
    let load: Vec<_> = (0..4)
        .map(|t| {
            let client = server.client(&token);
            let (stop, ok, acked, unavailable) =
                (stop.clone(), ok.clone(), acked.clone(), unavailable.clone());
            std::thread::spawn(move || {
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let key = format!("t{t}-{i}");
                    let reply = client.post(
                        "/v1/events",
                        &json!({"customer": "acme", "key": key, "quantity": 1 + i % 3}).to_string(),
                    );
                    match reply.status {
                        200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            acked.lock().unwrap().push((key, 1 + i % 3));
                        }
                        503 => {
                            unavailable
                                .lock()
                                .unwrap()
                                .push((reply.retry_after.clone(), reply.body.clone()));
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        other => panic!("{other}: {}", reply.body),
                    }
                }
            })
        })
        .collect();

    wait_until("events before the restart", || {
        ok.load(Ordering::Relaxed) >= 200
    });
    pg.stop();
    wait_until("a 503 while PostgreSQL is down", || {
        !unavailable.lock().unwrap().is_empty()
    });
    let out = s
        .cmd()
        .args(["record", "acme", "-n", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unavailable"), "{stderr}");
    assert!(!stderr.contains("meterline-pw"), "{stderr}");

    pg.start();
    let before = ok.load(Ordering::Relaxed);
    wait_until("events after the restart", || {
        ok.load(Ordering::Relaxed) >= before + 200
    });
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }

    for (retry_after, body) in unavailable.lock().unwrap().iter() {
        assert!(retry_after.is_some(), "a 503 without Retry-After: {body}");
        assert!(!body.contains("meterline-pw"), "{body}");
    }
    s.record("acme", 1);
    let db = s.inspect();
    let stored: HashMap<String, i64> = db
        .rows("SELECT idempotency_key, COUNT(*) FROM usage_events WHERE idempotency_key IS NOT NULL GROUP BY 1")
        .into_iter()
        .map(|r| (r[0].clone(), r[1].parse().unwrap()))
        .collect();
    let acked = acked.lock().unwrap();
    for (key, _) in acked.iter() {
        assert_eq!(stored.get(key), Some(&1), "acknowledged event {key}");
    }
    assert_eq!(db.counters_disagreeing_with_events(), 0);
    assert_eq!(server.terminate().code(), Some(0));
}
