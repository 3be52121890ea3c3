//! A NUL byte (`\u0000` in JSON, `%00` in a URL or a form), which SQLite keeps in a text and
//! PostgreSQL refuses in any: the same answer on both engines, an unknown customer (or the
//! line's own error), never a 500, and a batch records its other events.

use crate::support::cli::Scratch;
use crate::support::engine::{Engine, engine_tests};
use crate::support::serve::serving_acme;
use serde_json::json;

engine_tests!(
    a_nul_in_a_batch_line_is_that_lines_error_alone,
    a_nul_over_http_is_an_unknown_customer_on_every_route,
);

fn used(s: &Scratch, customer: &str) -> i64 {
    s.json(&["check", customer, "--json"])["used"]
        .as_i64()
        .unwrap()
}

fn a_nul_in_a_batch_line_is_that_lines_error_alone(engine: Engine) {
    let s = Scratch::on(engine);
    s.add_customer("acme", "pro", "2026-11-01");
    let lines = [
        r#"{"customer":"ac\u0000me","quantity":5}"#,
        r#"{"customer":"acme","quantity":2}"#,
        r#"{"customer":"acme","quantity":3,"key":"k\u0000"}"#,
    ]
    .join("\n");
    let out = s
        .cmd()
        .args(["record", "--batch", "-"])
        .write_stdin(lines)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(r#"line 1: unknown customer "ac\x00me""#),
        "{stderr}"
    );
    assert!(stderr.contains("recorded 1,"), "{stderr}");
    assert!(!stderr.contains("database error"), "{stderr}");
    assert_eq!(used(&s, "acme"), 2);
}

fn a_nul_over_http_is_an_unknown_customer_on_every_route(engine: Engine) {
    let (s, _server, c) = serving_acme(engine);
    let before = s.dump();

    let reply = c.get("/v1/customers/ac%00me/check");
    assert_eq!(reply.status, 404, "{}", reply.body);

    let nul_customer = json!({"customer": "ac\u{0}me", "quantity": 1}).to_string();
    let reply = c.post("/v1/events", &nul_customer);
    assert_eq!(reply.status, 404, "{}", reply.body);

    let form = [("content-type", "application/x-www-form-urlencoded")];
    let reply = c.send(
        "/stripe/v1/billing/meter_events",
        &form,
        b"event_name=meterline_usage&payload[stripe_customer_id]=cus_Ac%00me1&payload[value]=1",
    );
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert!(reply.body.contains("resource_missing"), "{}", reply.body);

    let cloud = json!({"specversion": "1.0", "id": "e1", "source": "s",
        "type": "meterline_usage", "subject": "ac\u{0}me", "data": {"value": 1}});
    let reply = c.send(
        "/openmeter/api/v1/events",
        &[("content-type", "application/cloudevents+json")],
        cloud.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body.contains("unknown customer"), "{}", reply.body);

    let lago = json!({"event": {"transaction_id": "t1", "external_customer_id": "ac\u{0}me",
        "code": "meterline_usage", "properties": {}}});
    let reply = c.post("/lago/api/v1/events", &lago.to_string());
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert_eq!(s.dump(), before, "a refused event wrote");

    // A batch records its other events and answers for the NUL one alone.
    let batch = json!({"events": [
        {"customer": "ac\u{0}me", "quantity": 1},
        {"customer": "acme", "quantity": 4},
    ]});
    let reply = c.post("/v1/events/batch", &batch.to_string());
    assert!(reply.status < 500, "{} {}", reply.status, reply.body);
    assert!(reply.body.contains("unknown_customer"), "{}", reply.body);
    assert_eq!(used(&s, "acme"), 4);
}
