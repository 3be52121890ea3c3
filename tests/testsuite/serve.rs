//! `meterline serve` over real loopback HTTP: every endpoint and status, tokens, bad input,
//! concurrency with exact counters, hard caps under load, backpressure.

use std::sync::{Arc, Mutex};

use crate::support::cli::Scratch;
use crate::support::engine::{Engine, engine_tests};
use crate::support::serve::{Client, Server, create_token};
use serde_json::{Value, json};

engine_tests!(
    every_endpoint_answers_with_its_status,
    tokens_missing_wrong_or_revoked_are_refused,
    bad_input_gets_the_right_status_and_writes_nothing,
    eight_concurrent_clients_keep_counters_exact,
    a_capped_customer_hammered_by_singles_and_batches_never_passes_its_cap,
    a_full_write_queue_answers_503_and_loses_nothing,
    answers_before_the_body_is_read_say_connection_close,
);

fn setup(engine: Engine) -> (Scratch, String) {
    let s = Scratch::on(engine);
    s.add_customer("acme", "pro", "2026-11-01");
    s.add_customer("capped", "free", "2026-11-01");
    let token = create_token(&s, "ci");
    (s, token)
}

fn used(s: &Scratch, customer: &str) -> i64 {
    s.json(&["check", customer, "--json"])["used"]
        .as_i64()
        .unwrap()
}

/// `token` with its last hex digit changed: never the token itself.
fn one_digit_off(token: &str) -> String {
    let (head, last) = token.split_at(token.len() - 1);
    format!("{head}{}", if last == "0" { '1' } else { '0' })
}

fn every_endpoint_answers_with_its_status(engine: Engine) {
    let (s, token) = setup(engine);
    let server = Server::start(&s, &[]);
    let c = server.client(&token);

    // healthz needs no token.
    let health = Client::new(&server.base, None).get("/healthz");
    assert_eq!(health.status, 200, "{}", health.body);

    // One event: exactly the object `record --json` prints.
    let ok = c.post(
        "/v1/events",
        r#"{"customer":"acme","quantity":5,"key":"k1","user":"ann"}"#,
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    let ok = ok.json();
    assert_eq!(ok["recorded"], true);
    assert_eq!(ok["used"], 5);
    let cli = s.json(&["record", "acme", "-n", "1", "--json"]);
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&ok), keys(&cli));

    // The same key again: a duplicate, 200, nothing counted.
    let dup = c.post(
        "/v1/events",
        r#"{"customer":"acme","quantity":5,"key":"k1","user":"ann"}"#,
    );
    assert_eq!(dup.status, 200);
    assert_eq!(dup.json()["duplicate"], true);
    assert_eq!(used(&s, "acme"), 6);

    // 402 with the same object when the hard cap refuses.
    let refused = c.post("/v1/events", r#"{"customer":"capped","quantity":1001}"#);
    assert_eq!(refused.status, 402, "{}", refused.body);
    assert_eq!(refused.json()["recorded"], false);
    assert_eq!(refused.json()["limit"], 1000);

    // 404 unknown customer, 400 bad quantity.
    let unknown = c.post("/v1/events", r#"{"customer":"nobody"}"#);
    assert_eq!(
        (unknown.status, unknown.code().as_str()),
        (404, "unknown_customer")
    );
    // 409: the key again with another quantity; nothing written.
    let conflict = c.post(
        "/v1/events",
        r#"{"customer":"acme","quantity":6,"key":"k1","user":"ann"}"#,
    );
    assert_eq!(
        (conflict.status, conflict.code().as_str()),
        (409, "idempotency_conflict"),
        "{}",
        conflict.body
    );
    assert_eq!(used(&s, "acme"), 6);
    let negative = c.post("/v1/events", r#"{"customer":"acme","quantity":-3}"#);
    assert_eq!(negative.status, 400);

    // A batch: one result per event, in order, each with its own status.
    let batch = c.post(
        "/v1/events/batch",
        &json!({"events": [
            {"customer": "acme", "quantity": 2},
            {"customer": "nobody"},
            {"customer": "capped", "quantity": 2000},
            {"customer": "acme", "quantity": "x"},
            {"customer": "acme", "quantity": 3, "at": "2026-11-20T10:00:00Z"},
        ]})
        .to_string(),
    );
    assert_eq!(batch.status, 200, "{}", batch.body);
    let results = batch.json()["results"].as_array().unwrap().clone();
    let statuses: Vec<i64> = results
        .iter()
        .map(|r| r["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 404, 402, 400, 200]);
    assert_eq!(results[0]["used"], 8);
    assert_eq!(results[4]["used"], 11);
    assert_eq!(results[1]["error"]["code"], "unknown_customer");
    assert_eq!(used(&s, "acme"), 11);

    // check and status: what the CLI prints.
    let check = c.get("/v1/customers/acme/check");
    assert_eq!(check.status, 200);
    assert_eq!(check.json(), s.json(&["check", "acme", "--json"]));
    let missing = c.get("/v1/customers/nobody/check");
    assert_eq!(
        (missing.status, missing.code().as_str()),
        (404, "unknown_customer")
    );
    let status = c.get("/v1/status");
    assert_eq!(status.status, 200);
    assert_eq!(status.json(), s.json(&["status", "--json"]));

    // An unknown path is a JSON 404 too.
    let nowhere = c.get("/v1/nowhere");
    assert_eq!(
        (nowhere.status, nowhere.code().as_str()),
        (404, "not_found")
    );

    // Metrics: Prometheus text with requests by route and status and event outcomes.
    let metrics = c.get("/metrics");
    assert_eq!(metrics.status, 200);
    for line in [
        "meterline_http_requests_total{route=\"/v1/events\",status=\"402\"} 1",
        "meterline_http_requests_total{route=\"/v1/events/batch\",status=\"200\"} 1",
        "meterline_events_total{outcome=\"recorded\"} 3",
        "meterline_events_total{outcome=\"refused\"} 2",
        "meterline_events_total{outcome=\"duplicate\"} 1",
        "meterline_write_queue_depth 0",
        "meterline_commit_seconds_count",
        "meterline_commit_batch_events_bucket{le=\"+Inf\"}",
    ] {
        assert!(
            metrics.body.contains(line),
            "{line} missing from\n{}",
            metrics.body
        );
    }
    assert_eq!(server.terminate().code(), Some(0));
}

fn tokens_missing_wrong_or_revoked_are_refused(engine: Engine) {
    let (s, token) = setup(engine);
    let server = Server::start(&s, &[]);
    let body = r#"{"customer":"acme"}"#;
    let anonymous = Client::new(&server.base, None);
    for reply in [
        anonymous.post("/v1/events", body),
        anonymous.get("/v1/status"),
        anonymous.get("/metrics"),
        server.client("mlt_wrong").post("/v1/events", body),
        // Same length and prefix as a real token, one digit off.
        server
            .client(&one_digit_off(&token))
            .get("/v1/customers/acme/check"),
    ] {
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (401, "unauthorized"),
            "{}",
            reply.body
        );
    }
    assert_eq!(used(&s, "acme"), 0);
    assert_eq!(server.client(&token).post("/v1/events", body).status, 200);
    // The scheme is case-insensitive (RFC 9110): `bearer` works as `Bearer` does.
    let lowercase = crate::support::serve::raw_exchange(
        &server,
        &format!(
            "GET /v1/customers/acme/check HTTP/1.1\r\nHost: x\r\nAuthorization: bearer {token}\r\n\
             Connection: close\r\n\r\n"
        ),
    );
    assert!(lowercase.starts_with("HTTP/1.1 200"), "{lowercase}");

    // Only the hash is stored; list shows names and last use, never the token.
    let stored = s.inspect().rows("SELECT * FROM api_tokens");
    assert_eq!(stored.len(), 1);
    assert!(
        stored[0].iter().all(|cell| !cell.contains(&token)),
        "{stored:?}"
    );
    if engine == Engine::Sqlite {
        assert!(
            !std::fs::read(&s.db)
                .unwrap()
                .windows(token.len())
                .any(|w| w == token.as_bytes())
        );
    }
    let list = s.cmd().args(["token", "list"]).output().unwrap();
    let list = String::from_utf8(list.stdout).unwrap();
    assert!(list.contains("ci") && !list.contains(&token), "{list}");
    let json = s.json(&["token", "list", "--json"]).to_string();
    assert!(json.contains("\"ci\"") && !json.contains(&token), "{json}");

    // A revoked token is refused (the server rereads tokens at most a second later).
    s.cmd().args(["token", "revoke", "ci"]).assert().success();
    let c = server.client(&token);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let reply = c.get("/v1/status");
        if reply.status == 401 {
            break;
        }
        assert_eq!(reply.status, 200);
        assert!(
            std::time::Instant::now() < deadline,
            "revoked token still accepted"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // A server started after the revoke refuses it at once; a new token works.
    drop(server);
    let server = Server::start(&s, &[]);
    assert_eq!(server.client(&token).get("/v1/status").status, 401);
    let fresh = create_token(&s, "ci2");
    assert_eq!(server.client(&fresh).get("/v1/status").status, 200);
    // Names stay taken.
    s.cmd().args(["token", "create", "ci"]).assert().code(2);
}

fn bad_input_gets_the_right_status_and_writes_nothing(engine: Engine) {
    let (s, token) = setup(engine);
    let server = Server::start(&s, &[]);
    let c = server.client(&token);
    let before = s.dump();
    let event = json!({"customer": "acme"});
    let cases: Vec<(&str, String, u16)> = vec![
        ("/v1/events", "{not json".into(), 400),
        ("/v1/events", "".into(), 400),
        ("/v1/events", r#"{"customer":5}"#.into(), 400),
        (
            "/v1/events",
            r#"{"customer":"acme","quantity":"7"}"#.into(),
            400,
        ),
        (
            "/v1/events",
            r#"{"customer":"acme","quantity":1.5}"#.into(),
            400,
        ),
        (
            "/v1/events",
            r#"{"customer":"acme","quantity":-1}"#.into(),
            400,
        ),
        (
            "/v1/events",
            r#"{"customer":"acme","quantity":0}"#.into(),
            400,
        ),
        (
            "/v1/events",
            r#"{"customer":"acme","at":"yesterday"}"#.into(),
            400,
        ),
        ("/v1/events", r#"{"customer":"acme","extra":1}"#.into(), 400),
        ("/v1/events", r#"[{"customer":"acme"}]"#.into(), 400),
        ("/v1/events/batch", r#"{"events":[]}"#.into(), 400),
        ("/v1/events/batch", r#"{"events":[],"more":1}"#.into(), 400),
        (
            "/v1/events/batch",
            r#"{"events":{"customer":"acme"}}"#.into(),
            400,
        ),
        (
            "/v1/events/batch",
            json!({"events": vec![event.clone(); 1001]}).to_string(),
            400,
        ),
    ];
    for (path, body, status) in &cases {
        let reply = c.post(path, body);
        assert_eq!(reply.status, *status, "{path} {body:.80}: {}", reply.body);
        assert!(!reply.code().is_empty());
    }
    // The 1,001-event batch names the limit.
    let big = c.post("/v1/events/batch", &cases.last().unwrap().1);
    assert_eq!(big.code(), "batch_size");

    // A body over the cap: 413 as soon as the headers announce it, before it is sent.
    let answer = crate::support::serve::raw_exchange(
        &server,
        &format!(
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            2 << 20
        ),
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#""code":"body_too_large""#), "{answer}");
    // A customer id that is not UTF-8: a JSON 400 like every other error (axum's own
    // answer is plain text).
    let bad_path = c.get("/v1/customers/%FF%FE/check");
    assert_eq!(
        (bad_path.status, bad_path.code().as_str()),
        (400, "invalid_input"),
        "{}",
        bad_path.body
    );
    // Nothing above wrote anything.
    assert_eq!(s.dump(), before);
    assert_eq!(c.post("/v1/events", &event.to_string()).status, 200);
}

fn eight_concurrent_clients_keep_counters_exact(engine: Engine) {
    let (s, token) = setup(engine);
    s.add_customer("beta", "business", "2026-11-01");
    let server = Server::start(&s, &[]);
    let mut threads = Vec::new();
    for t in 0..8 {
        let c = server.client(&token);
        threads.push(std::thread::spawn(move || {
            let mut sent = 0;
            for i in 0..40 {
                let customer = if (t + i) % 2 == 0 { "acme" } else { "beta" };
                if i % 4 == 0 {
                    let events: Vec<Value> = (0..25)
                        .map(|j| json!({"customer": customer, "quantity": 1 + j % 3, "user": format!("u{t}")}))
                        .collect();
                    let reply = c.post("/v1/events/batch", &json!({"events": events}).to_string());
                    assert_eq!(reply.status, 200, "{}", reply.body);
                    for r in reply.json()["results"].as_array().unwrap() {
                        assert_eq!(r["status"], 200);
                    }
                    sent += (0..25).map(|j| 1 + j % 3).sum::<i64>();
                } else {
                    let reply = c.post(
                        "/v1/events",
                        &json!({"customer": customer, "quantity": 2, "key": format!("t{t}-{i}")}).to_string(),
                    );
                    assert_eq!(reply.status, 200, "{}", reply.body);
                    sent += 2;
                }
            }
            sent
        }));
    }
    let total: i64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(used(&s, "acme") + used(&s, "beta"), total);
    let db = s.inspect();
    let events = db.number("SELECT CAST(SUM(quantity) AS BIGINT) FROM usage_events");
    assert_eq!(events, total);
    assert_eq!(db.counters_disagreeing_with_events(), 0);
    let members = db.number("SELECT CAST(SUM(used) AS BIGINT) FROM usage_members");
    assert_eq!(members, 8 * 10 * (0..25).map(|j| 1 + j % 3).sum::<i64>());
}

fn a_capped_customer_hammered_by_singles_and_batches_never_passes_its_cap(engine: Engine) {
    let (s, token) = setup(engine);
    s.record("capped", 900);
    let server = Server::start(&s, &[]);
    let accepted = Arc::new(Mutex::new(0i64));
    let mut threads = Vec::new();
    for t in 0..6 {
        let c = server.client(&token);
        let accepted = accepted.clone();
        threads.push(std::thread::spawn(move || {
            for i in 0..15 {
                let replies: Vec<(i64, i64, bool)> = if t % 2 == 0 {
                    let events: Vec<Value> = (0..5)
                        .map(|_| json!({"customer": "capped", "quantity": 3}))
                        .collect();
                    let reply = c.post("/v1/events/batch", &json!({"events": events}).to_string());
                    assert_eq!(reply.status, 200);
                    reply.json()["results"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| (r["status"].as_i64().unwrap(), 3, r["recorded"] == true))
                        .collect()
                } else {
                    let reply = c.post(
                        "/v1/events",
                        &json!({"customer": "capped", "quantity": 1 + i % 2}).to_string(),
                    );
                    vec![(
                        reply.status as i64,
                        1 + i % 2,
                        reply.json()["recorded"] == true,
                    )]
                };
                for (status, quantity, recorded) in replies {
                    // Every answer is a recorded 200 or a refused 402, nothing else.
                    assert!(
                        matches!((status, recorded), (200, true) | (402, false)),
                        "{status}"
                    );
                    if recorded {
                        *accepted.lock().unwrap() += quantity;
                    }
                }
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    let used = used(&s, "capped");
    assert!(used <= 1000, "passed the cap: {used}");
    assert_eq!(used, 900 + *accepted.lock().unwrap());
    assert!(used >= 998, "the cap was not reached: {used}");
    assert_eq!(s.inspect().counters_disagreeing_with_events(), 0);
}

fn a_full_write_queue_answers_503_and_loses_nothing(engine: Engine) {
    let (s, token) = setup(engine);
    let server = Server::start(&s, &["--queue", "1"]);
    // Hold the write lock so the writer blocks on its first round and the queue fills.
    let blocker = s.hold_write_lock();
    let mut pending = Vec::new();
    let mut full = None;
    for i in 0..20 {
        let c = server.client(&token);
        let body = json!({"customer": "acme", "key": format!("q{i}")}).to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        pending.push((
            i,
            std::thread::spawn(move || {
                let reply = c.post("/v1/events", &body);
                let _ = tx.send(reply.status);
                reply
            }),
        ));
        if let Ok(503) = rx.recv_timeout(std::time::Duration::from_millis(300)) {
            full = Some(i);
            break;
        }
    }
    let full = full.expect("the queue never filled");
    drop(blocker);
    let mut acknowledged = Vec::new();
    for (i, thread) in pending {
        let reply = thread.join().unwrap();
        if i == full {
            assert_eq!(reply.code(), "queue_full");
            assert_eq!(reply.retry_after.as_deref(), Some("1"));
        } else {
            assert_eq!(reply.status, 200, "{}", reply.body);
            acknowledged.push(format!("q{i}"));
        }
    }
    let db = s.inspect();
    for key in &acknowledged {
        assert_eq!(db.events_with_key(key), 1, "{key}");
    }
    assert_eq!(db.events_with_key(&format!("q{full}")), 0);
    assert_eq!(used(&s, "acme"), acknowledged.len() as i64);
}

#[test]
fn a_non_loopback_address_needs_public() {
    let s = Scratch::new();
    s.cmd()
        .args(["serve", "--listen", "0.0.0.0:0"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--public"));
}

/// `--listen` takes a host name that resolves (localhost binds its loopback address); a name
/// that does not resolve, or no port, is exit 2 with what to write.
#[test]
fn listen_takes_a_host_name_that_resolves() {
    let s = Scratch::new();
    let mut command = std::process::Command::new(crate::support::cli::BIN);
    command
        .args(["serve", "--listen", "localhost:0"])
        .env("METERLINE_DB", &s.db)
        .env("METERLINE_PLANS", &s.plans);
    let server = Server::spawn(command);
    let host = server.base.trim_start_matches("http://");
    let addr: std::net::SocketAddr = host.parse().expect("the address is printed as today");
    assert!(addr.ip().is_loopback(), "{addr}");
    assert_ne!(addr.port(), 0);
    let health = Client::new(&server.base, None).get("/healthz");
    assert_eq!(
        (health.status, health.json()),
        (200, json!({"status": "ok"}))
    );
    server.terminate();

    for (listen, says) in [
        (
            "nosuchhost.invalid:1",
            "cannot resolve \"nosuchhost.invalid\"",
        ),
        ("localhost", "has no valid port"),
        ("localhost:http", "has no valid port"),
        ("localhost:99999", "has no valid port"),
    ] {
        let out = s
            .cmd()
            .args(["serve", "--listen", listen])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{listen}: {stderr}");
        assert!(stderr.contains(says), "{listen}: {stderr}");
        assert!(
            stderr.contains("HOST:PORT, e.g. 127.0.0.1:8787"),
            "{listen}: {stderr}"
        );
    }
}

/// A database moved away under a running server: `/healthz` answers 503 and no new file takes
/// its place; a file that is not a database there is a 503 too; once the database is back,
/// 200 and every event is still there. (A new empty file would have answered 200 and 404s.)
#[test]
fn healthz_is_503_while_the_database_is_unusable_and_200_once_it_is_back() {
    let (s, token) = setup(Engine::Sqlite);
    s.record("acme", 7);
    let dump = s.dump();
    let server = Server::start(&s, &[]);
    let health = || Client::new(&server.base, None).get("/healthz");
    let kept = s.db.with_extension("kept");

    std::fs::rename(&s.db, &kept).unwrap();
    let gone = health();
    assert_eq!(
        (gone.status, gone.code().as_str()),
        (503, "database_unavailable"),
        "{}",
        gone.body
    );
    assert!(!s.db.exists(), "a reader created a new database file");

    std::fs::write(&s.db, b"this is not a database, it is a note\n".repeat(200)).unwrap();
    let foreign = health();
    assert_eq!(foreign.status, 503, "{}", foreign.body);

    std::fs::rename(&kept, &s.db).unwrap();
    let back = health();
    assert_eq!(back.status, 200, "{}", back.body);
    let check = server.client(&token).get("/v1/customers/acme/check");
    assert_eq!(
        (check.status, check.json()["used"].as_i64()),
        (200, Some(7))
    );
    assert_eq!(server.terminate().code(), Some(0));
    assert_eq!(s.dump(), dump);
}

/// An answer given before the body was read (401, an unknown path) ends the connection, and
/// says `Connection: close` so a keep-alive client does not write its next request into it
/// (it got "peer disconnected" before). A request whose body was read keeps the connection.
fn answers_before_the_body_is_read_say_connection_close(engine: Engine) {
    use std::io::{Read, Write};
    let (s, token) = setup(engine);
    let server = Server::start(&s, &[]);
    let addr = server.base.trim_start_matches("http://").to_string();
    let body = r#"{"customer":"acme"}"#;
    let answer_head = |stream: &mut std::net::TcpStream| {
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        while !answer.ends_with(b"}") {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "closed without an answer");
            answer.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&answer).to_lowercase()
    };
    for (path, auth) in [
        ("/v1/events", String::new()),
        ("/v1/nowhere", format!("Authorization: Bearer {token}\r\n")),
    ] {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        // The headers alone: the server answers before any of the body exists.
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        let head = answer_head(&mut stream);
        assert!(head.contains("\r\nconnection: close\r\n"), "{path}: {head}");
    }
    // Read to its end: the same connection answers again.
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    for _ in 0..2 {
        write!(
            stream,
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let head = answer_head(&mut stream);
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(!head.contains("connection: close"), "{head}");
    }
    assert_eq!(used(&s, "acme"), 2);
}
