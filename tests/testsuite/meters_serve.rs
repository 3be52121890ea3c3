//! Meters over the native HTTP API of a real `meterline serve`: events and batches on several
//! meters with `"meter"` and `"properties"`, a capped meter refusing while the others record,
//! bad meters and properties refused with nothing written; the check, status and metrics per
//! meter, each what the CLI prints.

use crate::support::engine::{Engine, engine_tests};
use crate::support::meters::{dump_all, meter_used, scratch, stored_event};
use crate::support::serve::{Client, Server, create_token};
use serde_json::{Value, json};

engine_tests!(
    events_on_several_meters_record_each_on_its_own_and_a_capped_meter_refuses_alone,
    bad_meters_and_properties_are_400_and_write_nothing,
);

fn statuses(batch: &Value) -> Vec<i64> {
    batch["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_i64().unwrap())
        .collect()
}

fn start(engine: Engine) -> (crate::support::cli::Scratch, Server, Client) {
    let s = scratch(engine);
    let token = create_token(&s, "meters");
    let server = Server::start(&s, &[]);
    let client = server.client(&token);
    (s, server, client)
}

fn events_on_several_meters_record_each_on_its_own_and_a_capped_meter_refuses_alone(
    engine: Engine,
) {
    let (s, _server, c) = start(engine);

    // One event on a named meter, properties as strings and numbers (kept as their digits).
    let one = c.post(
        "/v1/events",
        &json!({"customer": "acme", "meter": "tokens", "key": "t-1",
                "properties": {"tokens": 600, "model": "small"}})
        .to_string(),
    );
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(one.json()["recorded"], true);
    assert_eq!(one.json()["used"], 600, "the answer is the tokens meter's");
    assert_eq!(
        stored_event(&s, "t-1"),
        (
            "tokens".to_string(),
            Some(r#"{"model":"small","tokens":"600"}"#.to_string())
        )
    );
    // No meter: the default one, the first in [[meters]] (requests, a count).
    let default = c.post("/v1/events", r#"{"customer":"acme","key":"r-1"}"#);
    assert_eq!(default.status, 200, "{}", default.body);
    assert_eq!(stored_event(&s, "r-1"), ("requests".to_string(), None));

    // A batch over four meters, for two customers. capped's requests stop at 3: its fourth
    // and fifth requests are refused (402 in their results) while every other event records.
    let batch = c.post(
        "/v1/events/batch",
        &json!({"events": [
            {"customer": "capped", "meter": "requests"},
            {"customer": "capped", "meter": "tokens", "properties": {"tokens": "300", "model": "large"}},
            {"customer": "capped", "meter": "requests"},
            {"customer": "capped", "meter": "requests"},
            {"customer": "capped", "meter": "requests"},
            {"customer": "capped", "meter": "users", "properties": {"user": "ann"}},
            {"customer": "capped", "meter": "tokens", "properties": {"tokens": 900, "model": "small"}},
            {"customer": "capped", "meter": "users", "properties": {"user": "bob"}},
            {"customer": "capped", "meter": "users", "properties": {"user": "cat"}},
            {"customer": "capped", "meter": "users", "properties": {"user": "ann"}},
            {"customer": "capped", "meter": "requests"},
            {"customer": "acme", "meter": "credits", "quantity": 7},
            {"customer": "acme", "meter": "tokens", "properties": {"tokens": 50, "model": "large"}},
        ]})
        .to_string(),
    );
    assert_eq!(batch.status, 200, "{}", batch.body);
    let answer = batch.json();
    assert_eq!(
        statuses(&answer),
        [
            200, 200, 200, 200, 402, 200, 200, 200, 402, 200, 402, 200, 200
        ],
        "{answer}"
    );
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results[4]["recorded"], false);
    assert_eq!(results[4]["limit"], 3);
    assert_eq!(
        results[8]["used"], 2,
        "a third distinct user passes the limit"
    );
    assert_eq!(results[9]["recorded"], true, "a user already seen passes");

    for (customer, meter, used) in [
        ("capped", "requests", 3),
        ("capped", "tokens", 1200),
        ("capped", "users", 2),
        ("capped", "credits", 0),
        ("acme", "requests", 1),
        ("acme", "tokens", 650),
        ("acme", "credits", 7),
    ] {
        assert_eq!(meter_used(&s, customer, meter), used, "{customer} {meter}");
    }

    // The HTTP check is `check --json`: the default meter on top and every meter.
    for customer in ["acme", "capped"] {
        let check = c.get(&format!("/v1/customers/{customer}/check"));
        assert_eq!(check.status, 200, "{}", check.body);
        assert_eq!(check.json(), s.json(&["check", customer, "--json"]));
    }
    let all = c.get("/v1/customers/capped/check").json();
    let ids: Vec<&str> = all["meters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["meter"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["requests", "tokens", "credits", "users"]);
    assert_eq!(all["used"], 3, "the default meter's fields on top");
    assert_eq!(all["allowed"], false, "a capped meter refuses more");
    // ?meter=ID: that meter's object, as `check --meter ID --json`.
    let tokens = c.get("/v1/customers/capped/check?meter=tokens");
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let tokens = tokens.json();
    assert_eq!(
        tokens,
        s.json(&["check", "capped", "--meter", "tokens", "--json"])
    );
    assert_eq!(tokens["meter"], "tokens");
    assert_eq!(tokens["aggregation"], "sum");
    assert_eq!(tokens["overage_units"], 200);
    assert_eq!(tokens["overage_amount"], "0.4");
    assert_eq!(
        tokens["groups"],
        json!([
            {"key": {"model": "small"}, "used": 900, "overage_units": 200, "overage_amount": "0.4"},
            {"key": {"model": "large"}, "used": 300, "overage_units": 0, "overage_amount": "0"}
        ])
    );
    let unknown = c.get("/v1/customers/capped/check?meter=tokenz");
    assert_eq!(
        (unknown.status, unknown.code().as_str()),
        (400, "invalid_input"),
        "{}",
        unknown.body
    );
    let message = unknown.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("\"tokenz\"") && message.contains("requests, tokens, credits, users"),
        "{message}"
    );
    let nobody = c.get("/v1/customers/nobody/check?meter=tokens");
    assert_eq!(nobody.status, 404);

    // status: what `status --json` prints, each customer with every meter.
    let status = c.get("/v1/status");
    assert_eq!(status.status, 200);
    let status = status.json();
    assert_eq!(status, s.json(&["status", "--json"]));
    for entry in status.as_array().unwrap() {
        let customer = entry["customer"].as_str().unwrap();
        assert_eq!(
            entry["meters"],
            s.json(&["check", customer, "--json"])["meters"],
            "{customer}"
        );
    }

    // metrics: events by meter and outcome (the two singles, then the batch).
    let metrics = c.get("/metrics").body;
    for line in [
        "meterline_meter_events_total{meter=\"requests\",outcome=\"recorded\"} 4",
        "meterline_meter_events_total{meter=\"requests\",outcome=\"refused\"} 2",
        "meterline_meter_events_total{meter=\"tokens\",outcome=\"recorded\"} 4",
        "meterline_meter_events_total{meter=\"users\",outcome=\"recorded\"} 3",
        "meterline_meter_events_total{meter=\"users\",outcome=\"refused\"} 1",
        "meterline_meter_events_total{meter=\"credits\",outcome=\"recorded\"} 1",
        "meterline_meter_events_total{meter=\"credits\",outcome=\"duplicate\"} 0",
        "meterline_events_total{outcome=\"recorded\"} 12",
        "meterline_events_total{outcome=\"refused\"} 3",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
}

fn bad_meters_and_properties_are_400_and_write_nothing(engine: Engine) {
    let (s, _server, c) = start(engine);
    let before = dump_all(&s);
    let many: serde_json::Map<String, Value> =
        (0..21).map(|i| (format!("p{i}"), json!("x"))).collect();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"customer": "acme", "meter": "tokenz"}),
            "meter \"tokenz\" is not in plans.toml; the meters are: requests, tokens, credits, users",
        ),
        (
            json!({"customer": "acme", "meter": "tokens"}),
            "needs the property \"tokens\"",
        ),
        (
            json!({"customer": "acme", "meter": "tokens", "properties": {"tokens": "lots"}}),
            "must be a whole number",
        ),
        (
            json!({"customer": "acme", "meter": "tokens", "properties": {"tokens": 1.5}}),
            "must be a whole number",
        ),
        (
            json!({"customer": "acme", "properties": {"model": {"name": "small"}}}),
            "property \"model\" must be a string or a number",
        ),
        (
            json!({"customer": "acme", "properties": {"flag": true}}),
            "property \"flag\" must be a string or a number",
        ),
        (
            json!({"customer": "acme", "properties": many}),
            "21 properties; an event carries at most 20",
        ),
        (
            json!({"customer": "acme", "properties": {"bad key": "x"}}),
            "must be 1 to 64 letters",
        ),
        (
            json!({"customer": "acme", "properties": {"model": "x".repeat(256)}}),
            "at most 255 bytes",
        ),
        (
            json!({"customer": "acme", "meter": "users", "properties": {"user": "a\u{202e}b"}}),
            "without control, bidi or zero-width",
        ),
        (json!({"customer": "acme", "meter": 7}), "invalid type"),
        (
            json!({"customer": "acme", "properties": ["x"]}),
            "invalid type",
        ),
    ];
    for (event, expected) in &cases {
        let answer = c.post("/v1/events", &event.to_string());
        assert_eq!(
            (answer.status, answer.code().as_str()),
            (400, "invalid_input"),
            "{event}: {}",
            answer.body
        );
        let message = answer.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(message.contains(expected), "{event}: {message}");
    }
    // The same events in one batch: each fails alone with the same status.
    let events: Vec<Value> = cases.iter().map(|(e, _)| e.clone()).collect();
    let batch = c.post("/v1/events/batch", &json!({ "events": events }).to_string());
    assert_eq!(batch.status, 200, "{}", batch.body);
    let batch = batch.json();
    assert_eq!(statuses(&batch), vec![400; cases.len()], "{batch}");
    for result in batch["results"].as_array().unwrap() {
        assert_eq!(result["error"]["code"], "invalid_input", "{result}");
    }
    assert_eq!(dump_all(&s), before, "a refused event wrote something");

    // Invalid events on a known meter count as invalid on it; an unknown meter nowhere.
    let metrics = c.get("/metrics").body;
    assert!(
        metrics.contains("meterline_meter_events_total{meter=\"tokens\",outcome=\"invalid\"} 6"),
        "{metrics}"
    );
    assert!(!metrics.contains("tokenz"), "{metrics}");
}
