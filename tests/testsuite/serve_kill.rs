//! The promise that matters: an event answered 200 is in the database exactly once, whether
//! the server is killed with -9 mid-load or stopped with SIGTERM under load.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::cli::Scratch;
use crate::support::engine::{Engine, engine_tests};
use crate::support::serve::{Client, Server, create_token};
use serde_json::json;

engine_tests!(
    kill_9_mid_load_loses_no_acknowledged_event,
    sigterm_under_load_answers_what_it_accepted_and_exits_0,
);

/// Clients sending keyed singles and batches until the server goes away; each keeps the keys
/// that were answered 200.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(String, i64)>>>,
    count: Arc<AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(server: &Server, token: &str, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let threads = (0..clients)
            .map(|t| {
                let c: Client = server.client(token);
                let (stop, acked, count) = (stop.clone(), acked.clone(), count.clone());
                std::thread::spawn(move || {
                    for round in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let n = if round % 2 == 0 { 1 } else { 50 };
                        let events: Vec<(String, i64)> = (0..n)
                            .map(|j| (format!("c{t}-r{round}-e{j}"), 1 + (j as i64 % 4)))
                            .collect();
                        let reply = if n == 1 {
                            c.try_post(
                                "/v1/events",
                                &json!({"customer": "acme", "key": events[0].0, "quantity": events[0].1})
                                    .to_string(),
                            )
                        } else {
                            let body: Vec<_> = events
                                .iter()
                                .map(|(k, q)| json!({"customer": "acme", "key": k, "quantity": q}))
                                .collect();
                            c.try_post("/v1/events/batch", &json!({"events": body}).to_string())
                        };
                        // The server went away: nothing more can be acknowledged.
                        let Ok(reply) = reply else { return };
                        if reply.status != 200 {
                            assert_eq!(reply.status, 503, "{}", reply.body);
                            continue;
                        }
                        if n > 1 {
                            for r in reply.json()["results"].as_array().unwrap() {
                                assert_eq!(r["status"], 200, "{r}");
                            }
                        }
                        count.fetch_add(n, Ordering::Relaxed);
                        acked.lock().unwrap().extend(events);
                    }
                })
            })
            .collect();
        Load {
            stop,
            acked,
            count,
            threads,
        }
    }

    fn wait_for(&self, events: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.count.load(Ordering::Relaxed) < events {
            assert!(Instant::now() < deadline, "the load made no progress");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish(self) -> Vec<(String, i64)> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        Arc::try_unwrap(self.acked).unwrap().into_inner().unwrap()
    }
}

fn setup(engine: Engine) -> (Scratch, String) {
    let s = Scratch::on(engine);
    s.add_customer("acme", "business", "2026-11-01");
    let token = create_token(&s, "load");
    (s, token)
}

fn total_used(s: &Scratch) -> i64 {
    s.inspect()
        .number("SELECT CAST(COALESCE(SUM(used), 0) AS BIGINT) FROM usage_records")
}

fn assert_all_acknowledged_once(s: &Scratch, acked: &[(String, i64)]) {
    let db = s.inspect();
    let stored: std::collections::HashMap<String, i64> = db
        .rows("SELECT idempotency_key, COUNT(*) FROM usage_events GROUP BY idempotency_key")
        .into_iter()
        .map(|r| (r[0].clone(), r[1].parse().unwrap()))
        .collect();
    for (key, _) in acked {
        assert_eq!(stored.get(key), Some(&1), "acknowledged event {key}");
    }
    assert_eq!(
        db.counters_disagreeing_with_events(),
        0,
        "a counter differs from the sum of its events"
    );
    let used = total_used(s);
    let acked_units: i64 = acked.iter().map(|(_, q)| q).sum();
    assert!(used >= acked_units, "{used} < {acked_units}");
}

fn kill_9_mid_load_loses_no_acknowledged_event(engine: Engine) {
    let (s, token) = setup(engine);
    let server = Server::start(&s, &[]);
    let load = Load::start(&server, &token, 6);
    load.wait_for(2_000);
    server.kill9();
    let acked = load.finish();
    assert!(acked.len() >= 2_000);
    assert_all_acknowledged_once(&s, &acked);

    // Restart: resending every acknowledged event is answered "duplicate", nothing counted twice.
    let server = Server::start(&s, &[]);
    let c = server.client(&token);
    let before = total_used(&s);
    for chunk in acked.chunks(1000) {
        let events: Vec<_> = chunk
            .iter()
            .map(|(k, q)| json!({"customer": "acme", "key": k, "quantity": q}))
            .collect();
        let reply = c.post("/v1/events/batch", &json!({"events": events}).to_string());
        assert_eq!(reply.status, 200);
        for r in reply.json()["results"].as_array().unwrap() {
            assert_eq!(r["duplicate"], true, "{r}");
        }
    }
    let after = total_used(&s);
    assert_eq!(before, after);
    assert_eq!(server.terminate().code(), Some(0));
}

fn sigterm_under_load_answers_what_it_accepted_and_exits_0(engine: Engine) {
    let (s, token) = setup(engine);
    let server = Server::start(&s, &[]);
    let load = Load::start(&server, &token, 6);
    load.wait_for(1_000);
    let status = server.terminate();
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    let acked = load.finish();
    assert_all_acknowledged_once(&s, &acked);
}
