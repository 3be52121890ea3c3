//! meterline behind PgBouncer in transaction mode, with fewer server connections than clients:
//! each statement goes out unnamed in one round trip and every lock a write takes is
//! transaction-scoped, so record, check and serve work through the pool as on the server
//! itself: every event counted once, a hard cap held, and the password never shown.
//! (`sync` and `alerts` hold a session lock: they need a session-mode pool; docs say so.)

use crate::support::cli::Scratch;
use crate::support::pgbouncer::{POOL_SIZE, PgBouncer};
use crate::support::postgres::PASSWORD;
use crate::support::serve::{Client, Server, create_token};

/// stdout and stderr of a finished command, asserting neither shows the password.
fn texts(out: &std::process::Output) -> String {
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains(PASSWORD), "the password is shown: {text}");
    text
}

#[test]
fn record_check_and_serve_work_through_pgbouncer_in_transaction_mode() {
    let bouncer = PgBouncer::start();
    let mut s = Scratch::new();
    s.db = bouncer.fresh_database();
    // The first write creates the schema through the pool.
    s.add_customer("acme", "pro", "2026-11-01");
    s.add_customer("capped", "free", "2026-11-01");

    // More writer processes than server connections, each a record or a batch at a time.
    let batch = s.dir.path().join("batch.ndjson");
    std::fs::write(
        &batch,
        "{\"customer\":\"acme\",\"quantity\":2}\n{\"customer\":\"capped\",\"quantity\":60}\n",
    )
    .unwrap();
    let writers = 3 * POOL_SIZE;
    std::thread::scope(|scope| {
        for w in 0..writers {
            let (s, batch) = (&s, &batch);
            scope.spawn(move || {
                for i in 0..4 {
                    let out = if i % 2 == 0 {
                        s.cmd()
                            .args(["record", "acme", "-n", "1", "--key"])
                            .arg(format!("w{w}-{i}"))
                            .output()
                    } else {
                        s.cmd().args(["record", "--batch"]).arg(batch).output()
                    }
                    .unwrap();
                    let text = texts(&out);
                    // 3: the capped customer's event refused by its hard cap.
                    assert!(matches!(out.status.code(), Some(0 | 3)), "{text}");
                    let out = s
                        .cmd()
                        .args(["check", "capped", "--json"])
                        .output()
                        .unwrap();
                    let text = texts(&out);
                    assert!(out.status.success(), "{text}");
                }
            });
        }
    });
    // acme: 2 singles of 1 and 2 batches of 2 per writer; capped: 60 at a time, 18 times
    // offered, up to its hard cap of 1,000.
    assert_eq!(
        s.json(&["check", "acme", "--json"])["used"],
        (writers * (2 + 2 * 2)) as i64
    );
    let capped = s.json(&["check", "capped", "--json"])["used"]
        .as_i64()
        .unwrap();
    assert_eq!(capped, 960);
    assert_eq!(s.inspect().counters_disagreeing_with_events(), 0);
    // A key seen before is a duplicate through the pool too.
    let again = s
        .cmd()
        .args(["record", "acme", "-n", "1", "--key", "w0-0", "--json"])
        .output()
        .unwrap();
    texts(&again);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&again.stdout).unwrap()["duplicate"],
        true
    );

    // serve: tokens, events and reads through the pool, several clients at once.
    let token = create_token(&s, "ci");
    let server = Server::start(&s, &[]);
    std::thread::scope(|scope| {
        for t in 0..writers {
            let client = server.client(&token);
            scope.spawn(move || {
                for i in 0..5 {
                    let reply = client.post(
                        "/v1/events",
                        &format!(r#"{{"customer":"acme","quantity":1,"key":"http-{t}-{i}"}}"#),
                    );
                    assert_eq!(reply.status, 200, "{}", reply.body);
                    let check = client.get("/v1/customers/acme/check");
                    assert_eq!(check.status, 200, "{}", check.body);
                }
            });
        }
    });
    let c = server.client(&token);
    let used = c.get("/v1/customers/acme/check").json()["used"]
        .as_i64()
        .unwrap();
    assert_eq!(used, (writers * (2 + 2 * 2) + writers * 5) as i64);
    let batch = c.post(
        "/v1/events/batch",
        r#"{"events":[{"customer":"acme","quantity":3},{"customer":"capped","quantity":50}]}"#,
    );
    let statuses: Vec<i64> = batch.json()["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 402]);
    assert_eq!(c.get("/v1/status").status, 200);
    assert_eq!(Client::new(&server.base, None).get("/healthz").status, 200);
    assert_eq!(server.terminate().code(), Some(0));
    assert_eq!(s.inspect().counters_disagreeing_with_events(), 0);
    assert_eq!(s.json(&["check", "acme", "--json"])["used"], used + 3);
    // It all went through the pool.
    let log = bouncer.log();
    assert!(log.contains("login attempt"), "{log}");
    assert!(!log.contains(PASSWORD));
}
