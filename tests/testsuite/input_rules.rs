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
use crate::support::meters::{dump_all, meter_used, scratch};
use crate::support::serve::{Client, Server, create_token};
use crate::support::shapes::{Shape, shape_tests};

engine_tests!(
    a_retry_without_a_time_is_the_same_event_whenever_it_commits,
    numbers_keep_their_digits_and_text_is_one_form_on_every_route,
    a_repeated_key_is_refused_on_every_route,
    a_numeric_meter_refuses_0_on_every_route,
);

shape_tests!(an_array_is_not_an_object_on_any_route);

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(NOW)
        .unwrap()
        .with_timezone(&Utc)
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

/// The multi-meter plans (support::meters) with acme (pro, cus_Acme1), served.
fn serving_meters(engine: Engine) -> (Scratch, Server, Client) {
    let s = scratch(engine);
    s.cmd()
        .args(["customer", "set-stripe", "acme", "cus_Acme1"])
        .assert()
        .success();
    let token = create_token(&s, "rules");
    let server = Server::start(&s, &[]);
    let client = server.client(&token);
    (s, server, client)
}

/// POST `body` as it is written (a JSON text a serialiser could not produce): status, body.
fn send(c: &Client, path: &str, content_type: &str, body: &str) -> (u16, String) {
    let reply = c.send(path, &[("Content-Type", content_type)], body.as_bytes());
    (reply.status, reply.body)
}

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";
const CLOUDEVENTS: &str = "application/cloudevents+json";

fn cloud_event(id: &str, kind: &str, data: &str) -> String {
    format!(
        r#"{{"specversion":"1.0","id":"{id}","source":"t","type":"{kind}","subject":"acme","data":{data}}}"#
    )
}

fn lago_event(id: &str, code: &str, properties: &str) -> String {
    format!(
        r#"{{"event":{{"transaction_id":"{id}","code":"{code}","external_customer_id":"acme","properties":{properties}}}}}"#
    )
}

/// The properties stored with each event, oldest first.
fn stored_properties(s: &Scratch) -> Vec<String> {
    s.inspect()
        .rows("SELECT properties FROM usage_events ORDER BY id")
        .into_iter()
        .map(|row| row[0].clone())
        .collect()
}

fn numbers_keep_their_digits_and_text_is_one_form_on_every_route(engine: Engine) {
    let (s, _server, c) = serving_meters(engine);
    // Four user ids that a double would make two: each is its own distinct value.
    for user in [
        "123456789012345678901234567890",
        "123456789012345678901234567891",
        "0.10000000000000000001",
        "0.10000000000000000002",
    ] {
        let body =
            format!(r#"{{"customer":"acme","meter":"users","properties":{{"user":{user}}}}}"#);
        let (status, answer) = send(&c, "/v1/events", JSON, &body);
        assert_eq!(status, 200, "{body}: {answer}");
    }
    assert_eq!(meter_used(&s, "acme", "users"), 4);
    // A number is its digits as sent, on every route that takes JSON.
    let (status, answer) = send(
        &c,
        "/openmeter/api/v1/events",
        CLOUDEVENTS,
        &cloud_event("c1", "users", r#"{"user":1e3}"#),
    );
    assert_eq!(status, 204, "{answer}");
    let (status, answer) = send(
        &c,
        "/lago/api/v1/events",
        JSON,
        &lago_event("l1", "users", r#"{"user":1000000000000000000000000000000}"#),
    );
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer.contains(r#""user":1000000000000000000000000000000"#),
        "{answer}"
    );
    let (status, answer) = send(
        &c,
        "/v1/events/batch",
        JSON,
        r#"{"events":[{"customer":"acme","meter":"users","properties":{"user":1.50}}]}"#,
    );
    assert_eq!(status, 200, "{answer}");
    let stored = stored_properties(&s);
    assert_eq!(
        stored[4..],
        [
            // Every digit kept; only an exponent is written one way (`1e3`, `1E3`: `1e+3`).
            r#"{"user":"1e+3"}"#,
            r#"{"user":"1000000000000000000000000000000"}"#,
            r#"{"user":"1.50"}"#
        ]
    );
    assert_eq!(meter_used(&s, "acme", "users"), 7);

    // One word in its composed and decomposed spellings is one value, on every route.
    // JSON escapes: the body's bytes are ASCII, the text is NFC and NFD.
    let composed = r"caf\u00e9";
    let decomposed = r"cafe\u0301";
    for (path, content_type, body) in [
        (
            "/v1/events",
            JSON,
            format!(
                r#"{{"customer":"acme","meter":"users","properties":{{"user":"{composed}"}}}}"#
            ),
        ),
        (
            "/v1/events",
            JSON,
            format!(
                r#"{{"customer":"acme","meter":"users","properties":{{"user":"{decomposed}"}}}}"#
            ),
        ),
        (
            "/openmeter/api/v1/events",
            CLOUDEVENTS,
            cloud_event("c2", "users", &format!(r#"{{"user":"{decomposed}"}}"#)),
        ),
        (
            "/lago/api/v1/events",
            JSON,
            lago_event("l2", "users", &format!(r#"{{"user":"{decomposed}"}}"#)),
        ),
        (
            "/stripe/v1/billing/meter_events",
            FORM,
            "event_name=users&payload[stripe_customer_id]=cus_Acme1&payload[value]=1\
             &payload[user]=cafe%CC%81"
                .to_string(),
        ),
    ] {
        let (status, answer) = send(&c, path, content_type, &body);
        assert!(status < 300, "{path} {body}: {status} {answer}");
    }
    s.cmd()
        .args([
            "record",
            "acme",
            "--meter",
            "users",
            "--property",
            "user=cafe\u{301}",
        ])
        .assert()
        .success();
    assert_eq!(meter_used(&s, "acme", "users"), 8);
    let stored = stored_properties(&s);
    assert!(
        stored[7..].iter().all(|p| p == "{\"user\":\"caf\u{e9}\"}"),
        "{stored:?}"
    );
}

fn a_repeated_key_is_refused_on_every_route(engine: Engine) {
    let (s, _server, c) = serving_meters(engine);
    let before = dump_all(&s);
    let twice = r#"{"user":"ann","user":"bob"}"#;
    for (path, content_type, body) in [
        (
            "/v1/events",
            JSON,
            format!(r#"{{"customer":"acme","meter":"users","properties":{twice}}}"#),
        ),
        (
            "/v1/reservations",
            JSON,
            format!(r#"{{"customer":"acme","meter":"users","properties":{twice}}}"#),
        ),
        (
            "/openmeter/api/v1/events",
            CLOUDEVENTS,
            cloud_event("c1", "users", twice),
        ),
        (
            "/lago/api/v1/events",
            JSON,
            lago_event("l1", "users", twice),
        ),
        (
            "/stripe/v1/billing/meter_events",
            FORM,
            "event_name=users&payload[stripe_customer_id]=cus_Acme1&payload[value]=1\
             &payload[user]=ann&payload[user]=bob"
                .to_string(),
        ),
    ] {
        let (status, answer) = send(&c, path, content_type, &body);
        assert_eq!(status, 400, "{path} {body}: {answer}");
        assert!(answer.contains("user"), "{path}: {answer}");
        assert!(answer.contains("twice"), "{path}: {answer}");
    }
    assert_eq!(dump_all(&s), before, "a repeated key wrote something");
    // In a batch, the event alone fails; its neighbour is recorded.
    let (status, answer) = send(
        &c,
        "/v1/events/batch",
        JSON,
        &format!(
            r#"{{"events":[{{"customer":"acme","meter":"users","properties":{twice}}},
                {{"customer":"acme","meter":"users","properties":{{"user":"cy"}}}}]}}"#
        ),
    );
    assert_eq!(status, 200, "{answer}");
    let results: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(results["results"][0]["status"], 400, "{answer}");
    assert_eq!(results["results"][1]["status"], 200, "{answer}");
    assert_eq!(meter_used(&s, "acme", "users"), 1);
    // `record --batch` refuses the line, exit 2.
    let lines = s.dir.path().join("events.ndjson");
    std::fs::write(
        &lines,
        format!("{{\"customer\":\"acme\",\"meter\":\"users\",\"properties\":{twice}}}\n"),
    )
    .unwrap();
    s.cmd()
        .args(["record", "--batch", lines.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(contains("\"user\" is given twice"));
    assert_eq!(meter_used(&s, "acme", "users"), 1);
}

fn a_numeric_meter_refuses_0_on_every_route(engine: Engine) {
    let (s, _server, c) = serving_meters(engine);
    let before = dump_all(&s);
    s.cmd()
        .args([
            "record",
            "acme",
            "--meter",
            "tokens",
            "--property",
            "tokens=0",
            "--property",
            "model=small",
        ])
        .assert()
        .code(2)
        .stderr(contains(
            "property tokens = \"0\" must be a whole number from 1",
        ));
    for (path, content_type, body) in [
        (
            "/v1/events",
            JSON,
            r#"{"customer":"acme","meter":"tokens","properties":{"tokens":0,"model":"small"}}"#
                .to_string(),
        ),
        (
            "/openmeter/api/v1/events",
            CLOUDEVENTS,
            cloud_event("c1", "tokens", r#"{"tokens":0,"model":"small"}"#),
        ),
        (
            "/lago/api/v1/events",
            JSON,
            lago_event("l1", "tokens", r#"{"tokens":"0","model":"small"}"#),
        ),
        (
            "/stripe/v1/billing/meter_events",
            FORM,
            "event_name=ai_tokens&payload[stripe_customer_id]=cus_Acme1&payload[value]=1\
             &payload[tokens]=0&payload[model]=small"
                .to_string(),
        ),
    ] {
        let (status, answer) = send(&c, path, content_type, &body);
        assert_eq!(status, 400, "{path} {body}: {answer}");
        assert!(answer.contains("from 1"), "{path}: {answer}");
    }
    assert_eq!(dump_all(&s), before, "a value of 0 wrote something");
}

/// Characters Unicode calls default-ignorable or bidi controls render as nothing: an id with
/// one looks exactly like another, and a value with one hides it on the terminal.
#[test]
fn ids_that_render_like_another_are_refused_and_hidden_characters_are_shown() {
    let s = Scratch::new();
    s.add_customer("acme", "free", "2026-11-01");
    let before = s.dump();
    for hidden in [
        '\u{00ad}',
        '\u{034f}',
        '\u{061c}',
        '\u{115f}',
        '\u{3164}',
        '\u{180e}',
        '\u{206a}',
        '\u{fe0f}',
        '\u{e0061}',
    ] {
        let id = format!("ac{hidden}me");
        s.cmd()
            .args(["customer", "add", &id])
            .assert()
            .code(2)
            .stderr(contains("must be 1 to 100 characters"));
        s.cmd()
            .args(["record", "acme", "--user", &id])
            .assert()
            .code(2);
    }
    assert_eq!(s.dump(), before, "a look-alike id was written");
    // Text that may hold them (a name) is shown with the character as its code point.
    s.cmd()
        .args([
            "customer",
            "add",
            "globex",
            "--name",
            "Glo\u{00ad}bex\u{e0061}",
        ])
        .assert()
        .success();
    s.cmd()
        .args(["customer", "list"])
        .assert()
        .stdout(contains("Glo\\xadbex\\u{e0061}"));
}

/// serde's derived structs take an array as well as an object, its items in field order:
/// `["acme", 5]` was recorded as an event of acme. Every JSON body and line is one object.
fn an_array_is_not_an_object_on_any_route(engine: Engine, shape: Shape) {
    let s = Scratch::shaped(engine, shape);
    s.add_customer("acme", "pro", "2026-11-01");
    let token = create_token(&s, "arrays");
    let server = Server::start(&s, &[]);
    let c = server.client(&token);
    let mut estimate = serde_json::json!({"customer": "acme", "properties": {"quantity": 5}});
    if shape == Shape::Meters {
        estimate["meter"] = "tokens".into();
        estimate["properties"] = serde_json::json!({"tokens": 5, "model": "large"});
    }
    let reserved = c.post("/v1/reservations", &estimate.to_string());
    assert_eq!(reserved.status, 201, "{}", reserved.body);
    let id = reserved.json()["id"].as_str().unwrap().to_string();
    let before = dump_all(&s);
    let array = r#" ["acme", 5, null, "k1"]"#;
    let settle = format!("/v1/reservations/{id}/settle");
    for path in [
        "/v1/events",
        "/v1/events/batch",
        "/v1/reservations",
        settle.as_str(),
        "/v1/customers/acme/credits",
    ] {
        let (status, answer) = send(&c, path, JSON, array);
        assert_eq!(status, 400, "{path}: {answer}");
        assert!(answer.contains("found an array"), "{path}: {answer}");
    }
    // Inside a batch, the array alone fails.
    let (status, answer) = send(
        &c,
        "/v1/events/batch",
        JSON,
        &format!(r#"{{"events":[{array}]}}"#),
    );
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("found an array"), "{answer}");
    assert_eq!(dump_all(&s), before, "an array wrote something");
    // `record --batch` refuses the line, exit 2.
    let out = s.record_batch(&[array.to_string()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("found an array"));
    assert_eq!(dump_all(&s), before, "an array line wrote something");
    // The reservation is still held, and settles.
    let reply = c.post(&settle, "");
    assert_eq!(reply.status, 200, "{}", reply.body);
}
