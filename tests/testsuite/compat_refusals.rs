//! The drop-in routes check a request once, by the record path, all or nothing: one refused
//! event in a CloudEvents or Lago batch records none of it (an archived customer, an id
//! reused inside the batch: refusals only the record path makes), and a refusal's message is
//! the record path's own, as the native API answers the same event (the future limit, the
//! anchor, the meter, the properties), in each protocol's error shape.

use serde_json::{Value, json};

use crate::support::cli::{NOW, Scratch};
use crate::support::engine::{Engine, engine_tests};
use crate::support::meters::dump_all;
use crate::support::serve::{Client, Server, create_token, mapped_acme};

engine_tests!(
    one_refused_event_records_nothing_with_meters,
    one_refused_event_records_nothing_without_meters,
    refusals_are_the_record_paths_own_words,
);

fn unix(at: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(at)
        .unwrap()
        .timestamp()
}

/// How one plans.toml names the meter an event without payload counts on, per protocol.
struct Names {
    /// CloudEvents `type` and Lago `code`.
    by_id: &'static str,
    /// Stripe `event_name`.
    stripe: &'static str,
}

/// `s` with "gone" (pro, cus_Gone1) archived, served.
fn serve_with_gone(s: Scratch) -> (Scratch, Server, Client) {
    s.add_customer("gone", "pro", "2026-11-01");
    for args in [
        ["customer", "set-stripe", "gone", "cus_Gone1"],
        ["customer", "archive", "gone", "--json"],
    ] {
        s.cmd().args(args).assert().success();
    }
    let token = create_token(&s, "compat");
    let server = Server::start(&s, &[]);
    let client = server.client(&token);
    (s, server, client)
}

fn cloud_event(names: &Names, id: &str, subject: &str, time: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "tests", "type": names.by_id,
           "subject": subject, "time": time})
}

fn lago_event(names: &Names, id: &str, customer: &str, timestamp: i64) -> Value {
    json!({"transaction_id": id, "external_subscription_id": customer, "code": names.by_id,
           "timestamp": timestamp})
}

fn lago_batch(c: &Client, events: &Value) -> (u16, Value) {
    c.lago("/lago/api/v1/events/batch", &json!({ "events": events }))
}

fn one_refused_event_records_nothing_with_meters(engine: Engine) {
    let s = crate::support::meters::scratch(engine);
    let names = Names {
        by_id: "requests",
        stripe: "api_requests",
    };
    one_refused_event_records_nothing(serve_with_gone(s), &names);
}

fn one_refused_event_records_nothing_without_meters(engine: Engine) {
    let names = Names {
        by_id: "meterline_usage",
        stripe: "meterline_usage",
    };
    one_refused_event_records_nothing(serve_with_gone(mapped_acme(engine)), &names);
}

fn one_refused_event_records_nothing((s, _server, c): (Scratch, Server, Client), names: &Names) {
    let at = "2026-11-27T17:00:00Z";
    let later = "2026-11-27T17:05:00Z";
    let before = dump_all(&s);

    // CloudEvents: an archived customer's event, then an id + source given twice with
    // another time: 409, the index and every failed event named; nothing recorded.
    for (bad, detail) in [
        (cloud_event(names, "e2", "gone", at), "archived"),
        (cloud_event(names, "e1", "acme", later), "already used"),
    ] {
        let batch = json!([cloud_event(names, "e1", "acme", at), bad]);
        let (status, body) = c.cloudevents(&batch);
        assert_eq!(status, 409, "{batch}: {body}");
        assert_eq!(dump_all(&s), before, "{batch}: the good event was recorded");
        assert_eq!(body["index"], 1, "{body}");
        assert_eq!(body["failed"].as_array().unwrap().len(), 1, "{body}");
        assert!(body["detail"].as_str().unwrap().contains(detail), "{body}");
    }

    // Lago: the same, in Lago's shape (customer_archived 409, value_already_exist 422).
    let (at, later) = (unix(at), unix(later));
    for (bad, status, code) in [
        (
            lago_event(names, "l2", "gone", at),
            409,
            "customer_archived",
        ),
        (
            lago_event(names, "l1", "acme", later),
            422,
            "validation_errors",
        ),
    ] {
        let bad_id = bad["transaction_id"].clone();
        let batch = json!([lago_event(names, "l1", "acme", at), bad]);
        let (got, body) = lago_batch(&c, &batch);
        assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{body}");
        assert_eq!(dump_all(&s), before, "{batch}: the good event was recorded");
        assert_eq!(body["error_details"]["transaction_ids"], json!([bad_id]));
    }

    // Stripe takes one event a request: the archived customer's records nothing.
    let (status, body) = c.stripe_meter_event(&format!(
        "event_name={}&payload[stripe_customer_id]=cus_Gone1&payload[value]=1",
        names.stripe
    ));
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("archived")
    );
    assert_eq!(dump_all(&s), before, "an archived customer's Stripe event");

    // Without the refused event each batch records.
    let (status, body) = c.cloudevents(&json!([cloud_event(names, "e1", "acme", NOW)]));
    assert_eq!(status, 204, "{body}");
    let (status, body) = lago_batch(&c, &json!([lago_event(names, "l1", "acme", at)]));
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.inspect().events_of("acme").0, 2);
}

/// `message` with the time after "now is " masked: the server's clock moves on between two
/// requests.
fn masked(message: &str) -> String {
    match message.split_once("(now is ") {
        Some((head, tail)) => format!("{head}(now is …{}", &tail[tail.find(')').unwrap()..]),
        None => message.to_string(),
    }
}

fn refusals_are_the_record_paths_own_words(engine: Engine) {
    let s = crate::support::meters::scratch(engine);
    s.cmd()
        .args(["customer", "set-stripe", "acme", "cus_Acme1"])
        .assert()
        .success();
    let (s, _server, c) = serve_with_gone(s);
    let native = |event: Value| -> String {
        let reply = c.post("/v1/events", &event.to_string());
        assert_eq!(reply.status, 400, "{event}: {}", reply.body);
        masked(reply.json()["error"]["message"].as_str().unwrap())
    };
    let future = "2026-11-27T19:00:00Z";
    let before_anchor = "2026-10-25T00:00:00Z";
    let before = dump_all(&s);

    // (what, the native event, CloudEvents type and data, the time, the payload member named)
    let cases = [
        (
            "ahead of the future limit",
            json!({"customer": "acme", "meter": "requests", "at": future}),
            "requests",
            Value::Null,
            future,
            None,
        ),
        (
            "before the anchor",
            json!({"customer": "acme", "meter": "requests", "at": before_anchor}),
            "requests",
            Value::Null,
            before_anchor,
            None,
        ),
        (
            "a meter plans.toml lacks",
            json!({"customer": "acme", "meter": "nope", "at": NOW}),
            "nope",
            Value::Null,
            NOW,
            None,
        ),
        (
            "the meter's property missing",
            json!({"customer": "acme", "meter": "tokens", "at": NOW,
                   "properties": {"model": "small"}}),
            "tokens",
            json!({"model": "small"}),
            NOW,
            Some("tokens"),
        ),
        (
            "the meter's property not a number",
            json!({"customer": "acme", "meter": "tokens", "at": NOW,
                   "properties": {"model": "small", "tokens": "lots"}}),
            "tokens",
            json!({"model": "small", "tokens": "lots"}),
            NOW,
            Some("tokens"),
        ),
    ];
    for (what, event, kind, data, at, member) in cases {
        // CloudEvents' `type` is an event type, as the native API's `"type"`.
        let mut typed = event.clone();
        if let Some(meter) = typed.as_object_mut().and_then(|e| e.remove("meter")) {
            typed["type"] = meter;
        }
        let typed_says = native(typed);
        let store_says = native(event);
        let with_member = |says: &str, name: String| match member {
            Some(_) => format!("{name}: {says}"),
            None => says.to_string(),
        };
        let member = member.unwrap_or_default();

        let mut ce = json!({"specversion": "1.0", "id": "x", "source": "tests", "type": kind,
                            "subject": "acme", "time": at});
        if !data.is_null() {
            ce["data"] = data.clone();
        }
        let (status, body) = c.cloudevents(&json!([ce]));
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(
            masked(body["detail"].as_str().unwrap()),
            with_member(&typed_says, format!("data.{member}")),
            "{what}"
        );

        let lago = json!({"transaction_id": "x", "external_subscription_id": "acme",
                          "code": kind, "timestamp": unix(at), "properties": data});
        let (status, body) = lago_batch(&c, &json!([lago]));
        let expected_status = if kind == "nope" { 404 } else { 400 };
        assert_eq!(status, expected_status, "{what}: {body}");
        assert_eq!(
            masked(body["error_details"]["message"].as_str().unwrap()),
            with_member(&store_says, format!("properties.{member}")),
            "{what}"
        );
    }

    // Stripe names meters by their Stripe event and keeps its own time window, so here the
    // record path speaks for the anchor and the properties.
    let acme = "payload[stripe_customer_id]=cus_Acme1&payload[value]=1";
    let stripe_cases = [
        (
            json!({"customer": "acme", "meter": "requests", "at": before_anchor}),
            format!(
                "event_name=api_requests&{acme}&timestamp={}",
                unix(before_anchor)
            ),
            "timestamp",
            None,
        ),
        (
            json!({"customer": "acme", "meter": "tokens", "properties": {"model": "small"}}),
            format!("event_name=ai_tokens&{acme}&payload[model]=small"),
            "payload[tokens]",
            Some("payload[tokens]"),
        ),
    ];
    for (event, form, param, prefix) in stripe_cases {
        let store_says = native(event);
        let (status, body) = c.stripe_meter_event(&form);
        assert_eq!(status, 400, "{form}: {body}");
        assert_eq!(body["error"]["param"], param, "{body}");
        let expected = match prefix {
            Some(prefix) => format!("{prefix}: {store_says}"),
            None => store_says,
        };
        assert_eq!(body["error"]["message"], expected, "{form}");
    }
    assert_eq!(dump_all(&s), before, "a refused event was recorded");
}
