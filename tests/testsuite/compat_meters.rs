//! The drop-in routes with `[[meters]]`, over real loopback HTTP: Stripe's `event_name` picks
//! the meter by its `stripe_event`, CloudEvents' `type` and Lago's `code` by its id; their
//! payload, data and properties become the event's properties (Stripe's `payload[value]`
//! stays the quantity). A name matching no meter, a nested payload member or a missing
//! property is the protocol's error with nothing written; a capped meter refuses alone.
//! Without `[[meters]]` (compat.rs) the routes behave as they did before meters.

use crate::support::cli::{NOW, Scratch};
use crate::support::engine::{Engine, engine_tests};
use crate::support::meters::{PLANS, dump_all, meter_used, scratch, stored_event};
use crate::support::serve::{Client, Server, create_token, serving_acme};
use serde_json::{Value, json};

engine_tests!(
    stripe_event_names_pick_meters_by_stripe_event,
    stripe_event_names_made_by_a_pattern_pick_its_meter_and_fill_its_dimension,
    cloudevents_types_pick_meters_by_id_and_data_is_the_properties,
    lago_codes_pick_meters_by_id_and_properties_are_the_properties,
    without_meters_the_payload_is_not_kept_and_anything_goes_in_it,
);

fn now_unix() -> i64 {
    chrono::DateTime::parse_from_rfc3339(NOW)
        .unwrap()
        .timestamp()
}

/// The multi-meter plans, acme (pro, cus_Acme1) and capped (free, cus_Capped1), a server.
fn setup(engine: Engine) -> (Scratch, Server, Client) {
    serve(scratch(engine))
}

/// acme and capped of `s` mapped to their Stripe customers, and a server on `s`.
fn serve(s: Scratch) -> (Scratch, Server, Client) {
    for (id, stripe) in [("acme", "cus_Acme1"), ("capped", "cus_Capped1")] {
        s.cmd()
            .args(["customer", "set-stripe", id, stripe])
            .assert()
            .success();
    }
    let token = create_token(&s, "compat");
    let server = Server::start(&s, &[]);
    let client = server.client(&token);
    (s, server, client)
}

fn groups(s: &Scratch, customer: &str, meter: &str) -> Value {
    s.json(&["check", customer, "--meter", meter, "--json"])["groups"].clone()
}

fn stripe_event_names_pick_meters_by_stripe_event(engine: Engine) {
    let (s, _server, c) = setup(engine);
    let acme = "payload[stripe_customer_id]=cus_Acme1";

    // api_requests → requests (a count); ai_tokens → tokens, payload members as properties;
    // credits_used → credits, a sum of payload[value].
    for form in [
        format!("event_name=api_requests&{acme}&payload[value]=1&identifier=s-req"),
        format!(
            "event_name=ai_tokens&{acme}&payload[value]=1&payload[tokens]=120\
             &payload[model]=small&identifier=s-tok"
        ),
        format!(
            "event_name=ai_tokens&{acme}&payload[value]=1&payload[tokens]=30&payload[model]=large"
        ),
        format!("event_name=credits_used&{acme}&payload[value]=7&identifier=s-cred"),
    ] {
        let (status, body) = c.stripe_meter_event(&form);
        assert_eq!(status, 200, "{form}: {body}");
        assert_eq!(body["object"], "billing.meter_event");
    }
    assert_eq!(meter_used(&s, "acme", "requests"), 1);
    assert_eq!(meter_used(&s, "acme", "tokens"), 150);
    assert_eq!(meter_used(&s, "acme", "credits"), 7);
    assert_eq!(
        groups(&s, "acme", "tokens"),
        json!([{"key": {"model": "small"}, "used": 120, "overage_units": 0, "overage_amount": "0"}, {"key": {"model": "large"}, "used": 30, "overage_units": 0, "overage_amount": "0"}])
    );
    // The payload minus stripe_customer_id and value is the event's properties.
    assert_eq!(
        stored_event(&s, "stripe:5:s-tok"),
        (
            "tokens".into(),
            Some(r#"{"model":"small","tokens":"120"}"#.into())
        )
    );
    assert_eq!(
        stored_event(&s, "stripe:5:s-req"),
        ("requests".into(), None)
    );
    assert_eq!(
        stored_event(&s, "stripe:6:s-cred"),
        ("credits".into(), None)
    );

    // Refusals in Stripe's shape, nothing written.
    let before = dump_all(&s);
    let cases = [
        // The meter's id is not its Stripe event name.
        (
            format!("event_name=tokens&{acme}&payload[value]=1&payload[tokens]=5"),
            400,
            "resource_missing",
            "event_name",
            "api_requests, ai_tokens, credits_used, users",
        ),
        (
            format!("event_name=meterline_usage&{acme}&payload[value]=1"),
            400,
            "resource_missing",
            "event_name",
            "no meter \"meterline_usage\"",
        ),
        (
            format!("event_name=ai_tokens&{acme}&payload[value]=1&payload[model]=small"),
            400,
            "parameter_invalid",
            "payload[tokens]",
            "payload[tokens]: meter \"tokens\" (sum) needs the property \"tokens\"",
        ),
        (
            format!("event_name=ai_tokens&{acme}&payload[value]=1&payload[tokens]=lots"),
            400,
            "parameter_invalid",
            "payload[tokens]",
            "must be a whole number",
        ),
        (
            format!(
                "event_name=ai_tokens&{acme}&payload[value]=1&payload[tokens]=5&payload[meta][a]=1"
            ),
            400,
            "parameter_invalid",
            "payload[meta][a]",
            "nested objects",
        ),
        (
            format!("event_name=users&{acme}&payload[value]=1&payload[user]=a%E2%80%AEb"),
            400,
            "parameter_invalid",
            "payload",
            "without control, bidi or zero-width",
        ),
    ];
    for (form, status, code, param, message) in &cases {
        assert_stripe_error(&c, form, *status, code, param, message);
    }
    assert_eq!(
        dump_all(&s),
        before,
        "a refused Stripe event wrote something"
    );

    // capped's requests stop at 3: the fourth is Stripe's 402 with our code, and the tokens
    // meter still records.
    let capped = "payload[stripe_customer_id]=cus_Capped1&payload[value]=1";
    for _ in 0..3 {
        assert_eq!(
            c.stripe_meter_event(&format!("event_name=api_requests&{capped}"))
                .0,
            200
        );
    }
    let (status, body) = c.stripe_meter_event(&format!("event_name=api_requests&{capped}"));
    assert_eq!(status, 402, "{body}");
    assert_eq!(body["error"]["code"], "meterline_hard_cap_reached");
    let (status, body) = c.stripe_meter_event(&format!(
        "event_name=ai_tokens&{capped}&payload[tokens]=40&payload[model]=small"
    ));
    assert_eq!(status, 200, "{body}");
    assert_eq!(meter_used(&s, "capped", "requests"), 3);
    assert_eq!(meter_used(&s, "capped", "tokens"), 40);
}

/// Stripe's answer to `form` is the error `status` with this code and param, its message
/// containing `message`.
fn assert_stripe_error(
    c: &Client,
    form: &str,
    status: u16,
    code: &str,
    param: &str,
    message: &str,
) {
    let (got, body) = c.stripe_meter_event(form);
    assert_eq!(got, status, "{form}: {body}");
    let error = &body["error"];
    assert_eq!(error["type"], "invalid_request_error", "{form}: {body}");
    assert_eq!(error["code"], code, "{form}: {body}");
    assert_eq!(error["param"], param, "{form}: {body}");
    assert!(
        error["message"].as_str().unwrap().contains(message),
        "{form}: {body}"
    );
}

/// Prices per model (docs/sync.md): `tokens_{model}` is the Stripe event name of each model's
/// tokens, and a client of Stripe's SDK sends `event_name=tokens_large`: it records on the
/// tokens meter, the model from the name.
fn stripe_event_names_made_by_a_pattern_pick_its_meter_and_fill_its_dimension(engine: Engine) {
    let s = scratch(engine);
    let plans = PLANS.replace(
        r#"stripe_event = "ai_tokens""#,
        r#"stripe_event = "tokens_{model}""#,
    );
    assert_ne!(plans, PLANS);
    std::fs::write(&s.plans, plans).unwrap();
    let (s, _server, c) = serve(s);
    let acme = "payload[stripe_customer_id]=cus_Acme1&payload[value]=1";

    for form in [
        format!("event_name=tokens_large&{acme}&payload[tokens]=300&identifier=p-large"),
        // The payload may name the same model.
        format!("event_name=tokens_small&{acme}&payload[tokens]=20&payload[model]=small"),
    ] {
        let (status, body) = c.stripe_meter_event(&form);
        assert_eq!(status, 200, "{form}: {body}");
        let sent = form
            .split('&')
            .next()
            .unwrap()
            .trim_start_matches("event_name=");
        assert_eq!(body["event_name"], sent, "{body}");
    }
    assert_eq!(
        groups(&s, "acme", "tokens"),
        json!([{"key": {"model": "large"}, "used": 300, "overage_units": 0, "overage_amount": "0"}, {"key": {"model": "small"}, "used": 20, "overage_units": 0, "overage_amount": "0"}])
    );
    assert_eq!(
        stored_event(&s, "stripe:7:p-large"),
        (
            "tokens".into(),
            Some(r#"{"model":"large","tokens":"300"}"#.into())
        )
    );

    let before = dump_all(&s);
    // A payload model that is not the name's: which group would it be? Refused, naming both.
    assert_stripe_error(
        &c,
        &format!("event_name=tokens_large&{acme}&payload[tokens]=5&payload[model]=small"),
        400,
        "parameter_invalid",
        "payload[model]",
        r#"payload[model] is "small", but event_name "tokens_large" names model "large""#,
    );
    // A name no meter makes keeps its answer, listing the meters' Stripe event names.
    assert_stripe_error(
        &c,
        &format!("event_name=ai_tokens&{acme}&payload[tokens]=5&payload[model]=small"),
        400,
        "resource_missing",
        "event_name",
        "no meter \"ai_tokens\": event_name is a meter's stripe_event in plans.toml; they are: \
         api_requests, tokens_{model}, credits_used, users",
    );
    // The pattern's text alone is no name it makes: a placeholder stands for some text.
    assert_stripe_error(
        &c,
        &format!("event_name=tokens_&{acme}&payload[tokens]=5"),
        400,
        "resource_missing",
        "event_name",
        "no meter \"tokens_\"",
    );
    assert_eq!(
        dump_all(&s),
        before,
        "a refused Stripe event wrote something"
    );
}

fn cloud_event(id: &str, subject: &str, kind: &str, data: Value) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "tests", "type": kind,
           "subject": subject, "time": "2026-11-27T17:00:00Z", "data": data})
}

fn cloudevents_types_pick_meters_by_id_and_data_is_the_properties(engine: Engine) {
    let (s, _server, c) = setup(engine);
    let (status, body) = c.cloudevents(&json!([
        cloud_event("e1", "acme", "requests", Value::Null),
        cloud_event(
            "e2",
            "acme",
            "tokens",
            json!({"tokens": 400, "model": "small"})
        ),
        cloud_event(
            "e3",
            "acme",
            "tokens",
            json!({"tokens": "60", "model": "large"})
        ),
        cloud_event("e4", "acme", "users", json!({"user": "ann"})),
        cloud_event("e5", "acme", "users", json!({"user": "ann"})),
        cloud_event("e6", "acme", "credits", json!({"quantity": 9})),
        cloud_event("e7", "acme", "credits", json!({})),
    ]));
    assert_eq!(status, 204, "{body}");
    for (meter, used) in [
        ("requests", 1),
        ("tokens", 460),
        ("users", 1),
        ("credits", 10),
    ] {
        assert_eq!(meter_used(&s, "acme", meter), used, "{meter}");
    }
    assert_eq!(
        groups(&s, "acme", "tokens"),
        json!([{"key": {"model": "small"}, "used": 400, "overage_units": 0, "overage_amount": "0"}, {"key": {"model": "large"}, "used": 60, "overage_units": 0, "overage_amount": "0"}])
    );
    assert_eq!(
        stored_event(&s, "ce:5:tests:2:e2"),
        (
            "tokens".into(),
            Some(r#"{"model":"small","tokens":"400"}"#.into())
        )
    );

    // One bad event refuses the whole batch, naming it; nothing written.
    let good = cloud_event("g1", "acme", "requests", Value::Null);
    let before = dump_all(&s);
    let cases = [
        (
            cloud_event("b1", "acme", "ai_tokens", json!({"tokens": 1})),
            // `type` is an event type (OpenMeter's meaning): each meter's is its id here.
            "event type \"ai_tokens\" is not in plans.toml; the types are: requests, tokens, credits, users",
        ),
        (
            cloud_event(
                "b2",
                "acme",
                "tokens",
                json!({"tokens": 1, "meta": {"a": 1}}),
            ),
            "data.meta: property \"meta\" must be a string or a number",
        ),
        (
            cloud_event("b3", "acme", "tokens", json!({"tokens": 1, "cached": true})),
            "data.cached",
        ),
        (
            cloud_event("b4", "acme", "tokens", json!("lots")),
            "data must be a JSON object",
        ),
        (
            cloud_event("b5", "acme", "tokens", json!({"model": "small"})),
            "data.tokens: meter \"tokens\" (sum) needs the property \"tokens\"",
        ),
        (
            cloud_event("b6", "acme", "tokens", json!({"tokens": 2.5})),
            "must be a whole number",
        ),
    ];
    for (bad, detail) in &cases {
        let (status, body) = c.cloudevents(&json!([good, bad]));
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["index"], 1, "{body}");
        assert!(
            body["detail"].as_str().unwrap().contains(detail),
            "{bad}: {body}"
        );
    }
    assert_eq!(
        dump_all(&s),
        before,
        "a refused CloudEvents batch wrote something"
    );

    // capped's users stop at 2: the third distinct user is refused (402 naming it) while the
    // rest of the batch records, a user already seen included.
    let (status, body) = c.cloudevents(&json!([
        cloud_event("u1", "capped", "users", json!({"user": "ann"})),
        cloud_event("u2", "capped", "users", json!({"user": "bob"})),
        cloud_event("u3", "capped", "users", json!({"user": "cat"})),
        cloud_event("u4", "capped", "users", json!({"user": "ann"})),
        cloud_event(
            "u5",
            "capped",
            "tokens",
            json!({"tokens": 5, "model": "small"})
        ),
    ]));
    assert_eq!(status, 402, "{body}");
    assert_eq!(body["refused"], json!([{"id": "u3", "source": "tests"}]));
    assert_eq!(meter_used(&s, "capped", "users"), 2);
    assert_eq!(meter_used(&s, "capped", "tokens"), 5);
}

fn lago_event(transaction_id: &str, customer: &str, code: &str, properties: Value) -> Value {
    json!({"transaction_id": transaction_id, "external_subscription_id": customer,
           "code": code, "timestamp": now_unix() - 1800, "properties": properties})
}

fn lago_codes_pick_meters_by_id_and_properties_are_the_properties(engine: Engine) {
    let (s, _server, c) = setup(engine);
    let (status, body) = c.lago("/lago/api/v1/events",
        &json!({"event": lago_event("l1", "acme", "tokens", json!({"tokens": 250, "model": "large"}))}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["event"]["code"], "tokens");
    assert_eq!(
        body["event"]["properties"],
        json!({"tokens": 250, "model": "large"})
    );
    let (status, body) = c.lago(
        "/lago/api/v1/events/batch",
        &json!({"events": [
            lago_event("l2", "acme", "requests", json!({})),
            lago_event("l3", "acme", "users", json!({"user": "bob"})),
            lago_event("l4", "acme", "credits", json!({"quantity": "4"})),
        ]}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["events"].as_array().unwrap().len(), 3);
    for (meter, used) in [
        ("requests", 1),
        ("tokens", 250),
        ("users", 1),
        ("credits", 4),
    ] {
        assert_eq!(meter_used(&s, "acme", meter), used, "{meter}");
    }
    assert_eq!(
        stored_event(&s, "lago:2:l1"),
        (
            "tokens".into(),
            Some(r#"{"model":"large","tokens":"250"}"#.into())
        )
    );

    let before = dump_all(&s);
    let cases = [
        (
            lago_event("x1", "acme", "ai_tokens", json!({"tokens": 1})),
            404,
            "billable_metric_not_found",
            None,
        ),
        (
            lago_event(
                "x2",
                "acme",
                "tokens",
                json!({"tokens": 1, "meta": {"a": 1}}),
            ),
            400,
            "bad_request",
            Some("properties.meta"),
        ),
        (
            lago_event("x3", "acme", "tokens", json!({"tokens": [1]})),
            400,
            "bad_request",
            Some("properties.tokens"),
        ),
        (
            lago_event("x4", "acme", "tokens", json!({"model": "small"})),
            400,
            "bad_request",
            Some("properties.tokens"),
        ),
    ];
    for (bad, status, code, field) in &cases {
        let (got, body) = c.lago(
            "/lago/api/v1/events/batch",
            &json!({"events": [lago_event("ok", "acme", "requests", json!({})), bad]}),
        );
        assert_eq!(got, *status, "{bad}: {body}");
        assert_eq!(body["code"], *code, "{body}");
        if let Some(field) = field {
            assert_eq!(
                body["error_details"][field],
                json!(["invalid_value"]),
                "{body}"
            );
        }
    }
    assert_eq!(dump_all(&s), before, "a refused Lago batch wrote something");

    // A capped meter in a batch: 402 listing the refused ids, the others recorded.
    let (status, body) = c.lago(
        "/lago/api/v1/events/batch",
        &json!({"events": [
            lago_event("c1", "capped", "requests", json!({})),
            lago_event("c2", "capped", "requests", json!({})),
            lago_event("c3", "capped", "requests", json!({})),
            lago_event("c4", "capped", "requests", json!({})),
            lago_event("c5", "capped", "tokens", json!({"tokens": 8, "model": "small"})),
        ]}),
    );
    assert_eq!(status, 402, "{body}");
    assert_eq!(body["code"], "hard_cap_reached");
    assert_eq!(body["error_details"]["transaction_ids"], json!(["c4"]));
    assert_eq!(meter_used(&s, "capped", "requests"), 3);
    assert_eq!(meter_used(&s, "capped", "tokens"), 8);
}

fn without_meters_the_payload_is_not_kept_and_anything_goes_in_it(engine: Engine) {
    // The shipped plans.toml (no [[meters]]): the implicit usage meter, as before meters.
    let (s, _server, c) = serving_acme(engine);
    let (status, body) = c.stripe_meter_event(
        "event_name=meterline_usage&payload[stripe_customer_id]=cus_Acme1&payload[value]=3\
         &payload[meta][a]=1&identifier=plain",
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = c.cloudevents(&json!([cloud_event(
        "p1",
        "acme",
        "meterline_usage",
        json!({"meta": {"a": true}})
    )]));
    assert_eq!(status, 204, "{body}");
    let (status, body) = c.lago("/lago/api/v1/events",
        &json!({"event": lago_event("p2", "acme", "meterline_usage", json!({"nested": {"x": [1]}}))}),
    );
    assert_eq!(status, 200, "{body}");
    for key in ["stripe:5:plain", "ce:5:tests:2:p1", "lago:2:p2"] {
        assert_eq!(stored_event(&s, key), ("usage".into(), None), "{key}");
    }
    assert_eq!(s.json(&["check", "acme", "--json"])["used"], 5);
    // A meter id is not a meter event name there.
    let (status, body) = c.cloudevents(&json!([cloud_event("p3", "acme", "usage", Value::Null)]));
    assert_eq!(status, 400, "{body}");
}
