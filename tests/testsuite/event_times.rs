//! An event time means one instant, whole seconds, on every way in: `record --at`,
//! `record --batch`, `POST /v1/events` and the Stripe, CloudEvents and Lago routes. A leap
//! second (`…:60`) is the start of the next second, fractions are dropped; so the same key with
//! the same whole second is a duplicate, and with another whole second a conflict.

use crate::support::cli::Scratch;
use crate::support::engine::{Engine, engine_tests};
use crate::support::serve::{Client, Server, create_token};
use serde_json::{Value, json};

engine_tests!(
    record_at_a_leap_second_or_a_fraction_is_the_whole_second_it_names,
    record_batch_lines_follow_the_same_rule,
    post_v1_events_follows_the_same_rule,
    the_compat_routes_follow_the_same_rule,
);

fn setup(engine: Engine) -> Scratch {
    crate::support::serve::mapped_acme(engine)
}

/// `occurred_at` of the one event stored under `key`.
fn stored_at(s: &Scratch, key: &str) -> String {
    let rows = s.inspect().rows(&format!(
        "SELECT occurred_at FROM usage_events WHERE idempotency_key = '{key}'"
    ));
    rows.first()
        .unwrap_or_else(|| panic!("no event with key {key}"))[0]
        .clone()
}

fn events(s: &Scratch) -> i64 {
    s.inspect().number("SELECT COUNT(*) FROM usage_events")
}

/// `record acme --key KEY --at AT --json`: (exit code, stdout as JSON or Null, stderr).
fn record_at(s: &Scratch, key: &str, at: &str) -> (i32, Value, String) {
    let out = s
        .cmd()
        .args(["record", "acme", "--key", key, "--at", at, "--json"])
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap(),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn record_at_a_leap_second_or_a_fraction_is_the_whole_second_it_names(engine: Engine) {
    let s = setup(engine);
    let (code, first, _) = record_at(&s, "leap", "2026-11-27T11:00:60Z");
    assert_eq!((code, &first["recorded"]), (0, &json!(true)));
    // Stored as the start of the next second (POSIX time), not as 11:00:59.
    assert_eq!(stored_at(&s, "leap"), "2026-11-27T11:01:00Z");
    let (code, again, stderr) = record_at(&s, "leap", "2026-11-27T11:01:00Z");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(again["duplicate"], json!(true));
    assert_eq!(again["event_id"], first["event_id"]);

    // Fractions are dropped: .9 and .1 of one second are one time.
    let (code, _, _) = record_at(&s, "frac", "2026-11-27T12:00:00.9Z");
    assert_eq!(code, 0);
    assert_eq!(stored_at(&s, "frac"), "2026-11-27T12:00:00Z");
    let (code, again, _) = record_at(&s, "frac", "2026-11-27T12:00:00.1Z");
    assert_eq!((code, &again["duplicate"]), (0, &json!(true)));
    // Another whole second under the same key is a conflict (exit 2), nothing written.
    let (code, _, stderr) = record_at(&s, "frac", "2026-11-27T12:00:01Z");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("time 2026-11-27T12:00:01Z (was 2026-11-27T12:00:00Z)"));
    assert_eq!(events(&s), 2);
}

fn record_batch_lines_follow_the_same_rule(engine: Engine) {
    let s = setup(engine);
    let lines = [
        r#"{"customer":"acme","key":"b-leap","at":"2026-11-27T11:00:60Z"}"#,
        r#"{"customer":"acme","key":"b-leap","at":"2026-11-27T11:01:00.5Z"}"#,
        r#"{"customer":"acme","key":"b-leap","at":"2026-11-27T11:01:01Z"}"#,
    ];
    let out = s
        .cmd()
        .args(["record", "--batch", "-", "--json"])
        .write_stdin(lines.join("\n"))
        .output()
        .unwrap();
    let results: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 3, "{results:?}");
    assert_eq!(results[0]["recorded"], json!(true));
    assert_eq!(results[1]["duplicate"], json!(true), "{results:?}");
    assert_eq!(results[2]["status"], json!(409), "{results:?}");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stored_at(&s, "b-leap"), "2026-11-27T11:01:00Z");
}

fn post_v1_events_follows_the_same_rule(engine: Engine) {
    let s = setup(engine);
    let token = create_token(&s, "t");
    let server = Server::start(&s, &[]);
    let api = server.client(&token);
    let post = |key: &str, at: &str| {
        api.post(
            "/v1/events",
            &json!({"customer": "acme", "key": key, "at": at}).to_string(),
        )
    };
    let first = post("leap", "2026-11-27T11:00:60Z");
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(stored_at(&s, "leap"), "2026-11-27T11:01:00Z");
    let again = post("leap", "2026-11-27T11:01:00Z");
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["duplicate"], json!(true));
    // A leap second given with an offset is normalised the same way.
    let again = post("leap", "2026-11-27T12:00:60+01:00");
    assert_eq!(again.status, 200, "{}", again.body);

    assert_eq!(post("frac", "2026-11-27T12:00:00.75Z").status, 200);
    assert_eq!(stored_at(&s, "frac"), "2026-11-27T12:00:00Z");
    assert_eq!(
        post("frac", "2026-11-27T12:00:00Z").json()["duplicate"],
        true
    );
    let conflict = post("frac", "2026-11-27T11:59:59.999Z");
    assert_eq!(conflict.status, 409, "{}", conflict.body);
    assert_eq!(conflict.code(), "idempotency_conflict");
    assert_eq!(events(&s), 2);
}

/// POST with an explicit content type (the compat routes need their own).
fn post_as(api: &Client, path: &str, content_type: &str, body: &str) -> (u16, String) {
    let reply = api.send(path, &[("Content-Type", content_type)], body.as_bytes());
    (reply.status, reply.body)
}

fn the_compat_routes_follow_the_same_rule(engine: Engine) {
    let s = setup(engine);
    let token = create_token(&s, "t");
    let server = Server::start(&s, &[]);
    let api = server.client(&token);

    // CloudEvents `time`: RFC 3339, the same parser as everywhere.
    let cloud_event = |time: &str| {
        json!({"specversion": "1.0", "id": "e1", "source": "app", "type": "meterline_usage",
               "subject": "acme", "time": time})
        .to_string()
    };
    let ce = |time: &str| {
        post_as(
            &api,
            "/openmeter/api/v1/events",
            "application/cloudevents+json",
            &cloud_event(time),
        )
    };
    assert_eq!(ce("2026-11-27T11:00:60Z").0, 204);
    let ce_key = "ce:3:app:2:e1";
    assert_eq!(stored_at(&s, ce_key), "2026-11-27T11:01:00Z");
    let (status, body) = ce("2026-11-27T11:01:00.4Z");
    assert_eq!(status, 204, "a duplicate, not a conflict: {body}");
    assert_eq!(ce("2026-11-27T11:01:01Z").0, 409);

    // Lago `timestamp` as a string is read exactly: a fraction just short of the next second
    // is still this second (a float would round it up to the next one).
    let t = chrono::DateTime::parse_from_rfc3339("2026-11-27T12:00:00Z")
        .unwrap()
        .timestamp();
    let lago = |timestamp: Value| {
        post_as(
            &api,
            "/lago/api/v1/events",
            "application/json",
            &json!({"event": {"transaction_id": "tx1", "code": "meterline_usage",
                              "external_customer_id": "acme", "timestamp": timestamp}})
            .to_string(),
        )
    };
    let (status, body) = lago(json!(format!("{t}.999999999")));
    assert_eq!(status, 200, "{body}");
    assert_eq!(stored_at(&s, "lago:3:tx1"), "2026-11-27T12:00:00Z");
    let (status, body) = lago(json!(t));
    assert_eq!(status, 200, "a duplicate, not a conflict: {body}");
    assert_eq!(lago(json!(t + 1)).0, 422);

    // Stripe `timestamp`: Unix seconds; a fraction is dropped like everywhere else.
    let (status, body) = post_as(
        &api,
        "/stripe/v1/billing/meter_events",
        "application/x-www-form-urlencoded",
        &format!(
            "event_name=meterline_usage&payload[stripe_customer_id]=cus_Acme1\
             &payload[value]=1&identifier=s1&timestamp={t}.5"
        ),
    );
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["timestamp"], json!(t));
    assert_eq!(stored_at(&s, "stripe:2:s1"), "2026-11-27T12:00:00Z");
}
