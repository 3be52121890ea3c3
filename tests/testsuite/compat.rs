//! The compatible routes of `meterline serve` over real loopback HTTP: every field mapping of
//! Stripe meter events (`/stripe`), CloudEvents (`/openmeter`) and Lago events (`/lago`), and
//! every malformed input → the protocol's status and error shape, with nothing written.

use crate::support::engine::{Engine, engine_tests};
use std::time::Duration;

use crate::support::cli::{Dump, NOW, Scratch};
use crate::support::serve::{Server, create_token};
use serde_json::{Value, json};

engine_tests!(cloudevents_map_every_attribute, lago_events_map_every_field);

/// The server's clock at start (METERLINE_NOW) as Unix seconds.
fn now_unix() -> i64 {
    chrono::DateTime::parse_from_rfc3339(NOW)
        .unwrap()
        .timestamp()
}

struct Reply {
    status: u16,
    content_type: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

struct Api {
    _scratch_server: Server,
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Api {
    fn post(&self, path: &str, content_type: &str, body: &str) -> Reply {
        self.post_as(Some(&self.token), path, content_type, body)
    }

    fn post_as(&self, token: Option<&str>, path: &str, content_type: &str, body: &str) -> Reply {
        let mut request = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Content-Type", content_type);
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let mut response = request
            .send(body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        Reply {
            status: response.status().as_u16(),
            content_type: response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default(),
            body: response.body_mut().read_to_string().unwrap(),
        }
    }

    fn stripe(&self, form: &str) -> Reply {
        self.post(
            "/stripe/v1/billing/meter_events",
            "application/x-www-form-urlencoded",
            form,
        )
    }

    fn cloudevents(&self, content_type: &str, body: &Value) -> Reply {
        self.post("/openmeter/api/v1/events", content_type, &body.to_string())
    }

    fn lago(&self, body: &Value) -> Reply {
        self.post("/lago/api/v1/events", "application/json", &body.to_string())
    }

    fn lago_batch(&self, body: &Value) -> Reply {
        self.post(
            "/lago/api/v1/events/batch",
            "application/json",
            &body.to_string(),
        )
    }
}

/// acme (pro, no cap, cus_Acme1), capped (free: 1,000 then refused, cus_Capped1),
/// biz (business: meter "meterline_usage_business", no value property); plans.toml takes
/// meterline_usage's quantity from the payload field "tokens".
fn setup() -> (Scratch, Api) {
    setup_on(Engine::Sqlite)
}

fn setup_on(engine: Engine) -> (Scratch, Api) {
    let s = Scratch::on(engine);
    let mut plans = std::fs::read_to_string(&s.plans).unwrap();
    plans.push_str("\n[ingest.value_property]\nmeterline_usage = \"tokens\"\n");
    std::fs::write(&s.plans, plans).unwrap();
    s.add_customer("acme", "pro", "2026-11-01");
    s.add_customer("capped", "free", "2026-11-01");
    s.add_customer("biz", "business", "2026-11-01");
    for (id, stripe) in [("acme", "cus_Acme1"), ("capped", "cus_Capped1")] {
        s.cmd()
            .args(["customer", "set-stripe", id, stripe])
            .assert()
            .success();
    }
    let token = create_token(&s, "compat");
    let server = Server::start(&s, &[]);
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build();
    let api = Api {
        base: server.base.clone(),
        _scratch_server: server,
        token,
        agent: ureq::Agent::new_with_config(config),
    };
    (s, api)
}

fn used(s: &Scratch, customer: &str) -> i64 {
    s.json(&["check", customer, "--json"])["used"]
        .as_i64()
        .unwrap()
}

/// (quantity, occurred_at) of the event stored under `key`.
fn stored(s: &Scratch, key: &str) -> (i64, String) {
    let rows = s.inspect().rows(&format!(
        "SELECT quantity, occurred_at FROM usage_events WHERE idempotency_key = '{key}'"
    ));
    let row = rows
        .first()
        .unwrap_or_else(|| panic!("no event with key {key}"));
    (row[0].parse().unwrap(), row[1].clone())
}

/// The event under `key` has `quantity` and the server's time when it arrived: its clock
/// starts at NOW when it starts and moves on, so a slow run can be a few seconds past it.
fn assert_stored_now(s: &Scratch, key: &str, quantity: i64) {
    let (stored_quantity, at) = stored(s, key);
    assert_eq!(stored_quantity, quantity, "{key}");
    let at = chrono::DateTime::parse_from_rfc3339(&at)
        .unwrap()
        .timestamp();
    assert!(
        (now_unix()..now_unix() + 120).contains(&at),
        "{key} at {at}, not the server's now"
    );
}

fn assert_nothing_written(s: &Scratch, before: &Dump, what: &str) {
    assert_eq!(&s.dump(), before, "{what} wrote something");
}

// ---------------------------------------------------------------- Stripe

#[test]
fn stripe_meter_event_maps_every_field() {
    let (s, api) = setup();
    let at = now_unix() - 3600;
    let ok = api.stripe(&format!(
        "event_name=meterline_usage&payload[stripe_customer_id]=cus_Acme1&payload[value]=25\
         &payload[model]=small&identifier=req-1&timestamp={at}"
    ));
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(
        ok.json(),
        json!({
            "object": "billing.meter_event",
            "created": ok.json()["created"],
            "event_name": "meterline_usage",
            "identifier": "req-1",
            "livemode": false,
            "payload": {"model": "small", "stripe_customer_id": "cus_Acme1", "value": "25"},
            "timestamp": at,
        })
    );
    assert_eq!(
        stored(&s, "stripe:5:req-1"),
        (25, "2026-11-27T17:00:00Z".into())
    );
    assert_eq!(used(&s, "acme"), 25);

    // No identifier: one is made up (as Stripe does) and named in the answer; no timestamp:
    // now. Form bodies with percent-encoding decode as Stripe's do.
    let made_up = api.stripe(
        "event_name=meterline_usage&payload%5Bstripe_customer_id%5D=cus_Acme1&payload%5Bvalue%5D=2",
    );
    assert_eq!(made_up.status, 200, "{}", made_up.body);
    let identifier = made_up.json()["identifier"].as_str().unwrap().to_string();
    assert_eq!(identifier.len(), 36, "a UUID: {identifier}");
    assert_eq!(
        s.inspect()
            .events_with_key(&format!("stripe:36:{identifier}")),
        1
    );
    assert_eq!(used(&s, "acme"), 27);

    // A resend of a known identifier: Stripe's 400, whatever the other fields; nothing counted.
    let before = s.dump();
    for form in [
        "event_name=meterline_usage&payload[stripe_customer_id]=cus_Acme1&payload[value]=25&identifier=req-1",
        "event_name=meterline_usage&payload[stripe_customer_id]=cus_Acme1&payload[value]=99&identifier=req-1",
    ] {
        let again = api.stripe(form);
        assert_eq!(again.status, 400, "{}", again.body);
        assert_eq!(again.json()["error"]["type"], "invalid_request_error");
        assert_eq!(
            again.json()["error"]["message"],
            "An event already exists with identifier req-1."
        );
    }
    assert_nothing_written(&s, &before, "a resend");

    // The hard cap: 402 with a code naming it; nothing written.
    let cap = api.stripe(
        "event_name=meterline_usage&payload[stripe_customer_id]=cus_Capped1&payload[value]=1001",
    );
    assert_eq!(cap.status, 402, "{}", cap.body);
    assert_eq!(cap.json()["error"]["code"], "meterline_hard_cap_reached");
    assert_nothing_written(&s, &before, "a capped event");
}

#[test]
fn stripe_malformed_input_gets_stripes_error_and_writes_nothing() {
    let (s, api) = setup();
    let base = "event_name=meterline_usage&payload[stripe_customer_id]=cus_Acme1";
    let old = now_unix() - 36 * 86_400;
    let future = now_unix() + 600;
    let before_anchor = chrono::DateTime::parse_from_rfc3339("2026-10-30T00:00:00Z")
        .unwrap()
        .timestamp();
    let long_id = "i".repeat(101);
    let cases: Vec<(String, u16, Option<&str>, Option<&str>)> = vec![
        (
            "payload[stripe_customer_id]=cus_Acme1&payload[value]=1".into(),
            400,
            Some("parameter_missing"),
            Some("event_name"),
        ),
        (
            "event_name=meterline_usage&payload[value]=1".into(),
            400,
            Some("parameter_missing"),
            Some("payload[stripe_customer_id]"),
        ),
        (
            base.into(),
            400,
            Some("parameter_missing"),
            Some("payload[value]"),
        ),
        (
            format!("{base}&payload[value]=1.5"),
            400,
            Some("parameter_invalid_integer"),
            Some("payload[value]"),
        ),
        (
            format!("{base}&payload[value]=abc"),
            400,
            Some("parameter_invalid_integer"),
            Some("payload[value]"),
        ),
        (
            format!("{base}&payload[value]=0"),
            400,
            Some("parameter_invalid_integer"),
            Some("payload[value]"),
        ),
        (
            format!("{base}&payload[value]=-4"),
            400,
            Some("parameter_invalid_integer"),
            Some("payload[value]"),
        ),
        (
            format!("{base}&payload[value]=1&foo=bar"),
            400,
            Some("parameter_unknown"),
            Some("foo"),
        ),
        (
            format!("{base}&payload[value]=1&identifier={long_id}"),
            400,
            Some("parameter_invalid_string"),
            Some("identifier"),
        ),
        (
            format!("{base}&payload[value]=1&timestamp=yesterday"),
            400,
            Some("parameter_invalid_integer"),
            Some("timestamp"),
        ),
        (
            format!("{base}&payload[value]=1&timestamp={old}"),
            400,
            Some("timestamp_outside_window"),
            Some("timestamp"),
        ),
        (
            format!("{base}&payload[value]=1&timestamp={future}"),
            400,
            Some("timestamp_outside_window"),
            Some("timestamp"),
        ),
        (
            format!("{base}&payload[value]=1&timestamp={before_anchor}"),
            400,
            Some("parameter_invalid"),
            Some("timestamp"),
        ),
        (
            "event_name=meterline_usage&payload[stripe_customer_id]=cus_Nobody&payload[value]=1"
                .into(),
            404,
            Some("resource_missing"),
            Some("payload[stripe_customer_id]"),
        ),
        (
            "event_name=other_meter&payload[stripe_customer_id]=cus_Acme1&payload[value]=1".into(),
            400,
            Some("resource_missing"),
            Some("event_name"),
        ),
    ];
    let before = s.dump();
    for (form, status, code, param) in &cases {
        let reply = api.stripe(form);
        assert_eq!(reply.status, *status, "{form}: {}", reply.body);
        let error = &reply.json()["error"];
        assert_eq!(error["type"], "invalid_request_error", "{form}");
        assert_eq!(error["code"].as_str(), *code, "{form}: {}", reply.body);
        assert_eq!(error["param"].as_str(), *param, "{form}: {}", reply.body);
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // JSON instead of a form: Stripe's API takes forms only.
    let json_body = api.post(
        "/stripe/v1/billing/meter_events",
        "application/json",
        r#"{"event_name":"meterline_usage"}"#,
    );
    assert_eq!(json_body.status, 400, "{}", json_body.body);
    assert_eq!(json_body.json()["error"]["type"], "invalid_request_error");
    // Tokens: missing or wrong → 401 in Stripe's shape (the SDKs raise AuthenticationError).
    let form = format!("{base}&payload[value]=1");
    for token in [None, Some("mlt_wrong")] {
        let reply = api.post_as(
            token,
            "/stripe/v1/billing/meter_events",
            "application/x-www-form-urlencoded",
            &form,
        );
        assert_eq!(reply.status, 401, "{}", reply.body);
        assert_eq!(reply.json()["error"]["type"], "invalid_request_error");
        assert!(!reply.body.contains("mlt_wrong"), "{}", reply.body);
    }
    assert_nothing_written(&s, &before, "a refused Stripe request");
}

// ---------------------------------------------------------------- CloudEvents

fn cloud_event(id: &str, subject: &str, tokens: Value) -> Value {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": "svc",
        "type": "meterline_usage",
        "subject": subject,
        "time": "2026-11-27T17:30:00Z",
        "data": {"tokens": tokens, "model": "small"},
    })
}

fn cloudevents_map_every_attribute(engine: Engine) {
    let (s, api) = setup_on(engine);
    let one = api.cloudevents(
        "application/cloudevents+json",
        &cloud_event("e1", "acme", json!(12)),
    );
    assert_eq!((one.status, one.body.as_str()), (204, ""));
    assert_eq!(
        stored(&s, "ce:3:svc:2:e1"),
        (12, "2026-11-27T17:30:00Z".into())
    );

    // A batch; application/json takes an array or one object; a numeric string counts.
    let batch = api.cloudevents(
        "application/cloudevents-batch+json; charset=utf-8",
        &json!([
            cloud_event("e2", "acme", json!(3)),
            cloud_event("e3", "acme", json!("4"))
        ]),
    );
    assert_eq!(batch.status, 204, "{}", batch.body);
    let plain = api.cloudevents(
        "application/json",
        &json!([cloud_event("e4", "acme", json!(5))]),
    );
    assert_eq!(plain.status, 204, "{}", plain.body);
    let plain_one = api.cloudevents("application/json", &cloud_event("e5", "acme", json!(6)));
    assert_eq!(plain_one.status, 204, "{}", plain_one.body);
    assert_eq!(used(&s, "acme"), 30);

    // id + source is the key: the same id from another source is another event, and a
    // source/id split differently is not the same key.
    let mut other = cloud_event("e1", "acme", json!(1));
    other["source"] = json!("svc2");
    let mut split = cloud_event("2:e1", "acme", json!(1));
    split["source"] = json!("svc");
    let mut split2 = cloud_event("e1", "acme", json!(1));
    split2["source"] = json!("svc:2");
    for event in [&other, &split, &split2] {
        let reply = api.cloudevents("application/cloudevents+json", event);
        assert_eq!(reply.status, 204, "{}", reply.body);
    }
    assert_eq!(used(&s, "acme"), 33);

    // Resent: 204 again (OpenMeter drops duplicates), nothing counted twice.
    let before = s.dump();
    let again = api.cloudevents(
        "application/cloudevents-batch+json",
        &json!([
            cloud_event("e1", "acme", json!(12)),
            cloud_event("e2", "acme", json!(3))
        ]),
    );
    assert_eq!(again.status, 204, "{}", again.body);
    assert_nothing_written(&s, &before, "a resent batch");

    // No time: now. A meter without a value property: 1 per event, data optional.
    let bare = json!({"specversion": "1.0", "id": "b1", "source": "svc",
                      "type": "meterline_usage_business", "subject": "biz"});
    let reply = api.cloudevents("application/cloudevents+json", &bare);
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_stored_now(&s, "ce:3:svc:2:b1", 1);

    // A key too long for the store is hashed, so it still deduplicates.
    let long = cloud_event(&"x".repeat(300), "acme", json!(1));
    for _ in 0..2 {
        let reply = api.cloudevents("application/cloudevents+json", &long);
        assert_eq!(reply.status, 204, "{}", reply.body);
    }
    assert_eq!(used(&s, "acme"), 34);

    // A hard cap in a batch: the others are recorded, 402 lists the refused ids.
    let capped = api.cloudevents(
        "application/cloudevents-batch+json",
        &json!([
            cloud_event("c1", "capped", json!(600)),
            cloud_event("c2", "capped", json!(600)),
            cloud_event("c3", "capped", json!(400)),
        ]),
    );
    assert_eq!(capped.status, 402, "{}", capped.body);
    assert_eq!(capped.content_type, "application/problem+json");
    assert_eq!(
        capped.json()["refused"],
        json!([{"id": "c2", "source": "svc"}])
    );
    assert_eq!(used(&s, "capped"), 1000);
    // Retrying the whole batch records nothing twice.
    let before = s.dump();
    let retry = api.cloudevents(
        "application/cloudevents-batch+json",
        &json!([
            cloud_event("c1", "capped", json!(600)),
            cloud_event("c2", "capped", json!(600)),
            cloud_event("c3", "capped", json!(400)),
        ]),
    );
    assert_eq!(retry.status, 402, "{}", retry.body);
    assert_nothing_written(&s, &before, "a retried batch");

    // The same id + source with other data: 409, nothing written.
    let conflict = api.cloudevents(
        "application/cloudevents+json",
        &cloud_event("e1", "acme", json!(13)),
    );
    assert_eq!(conflict.status, 409, "{}", conflict.body);
    assert_nothing_written(&s, &before, "a conflicting event");
}

#[test]
fn cloudevents_malformed_input_is_a_problem_and_writes_nothing() {
    let (s, api) = setup();
    let good = cloud_event("ok", "acme", json!(1));
    let without = |name: &str| {
        let mut e = good.clone();
        e.as_object_mut().unwrap().remove(name);
        e
    };
    let with = |name: &str, value: Value| {
        let mut e = good.clone();
        e[name] = value;
        e
    };
    let one = "application/cloudevents+json";
    let batch = "application/cloudevents-batch+json";
    let cases: Vec<(&str, &str, Value, u16)> = vec![
        ("missing specversion", one, without("specversion"), 400),
        (
            "specversion 0.3",
            one,
            with("specversion", json!("0.3")),
            400,
        ),
        ("missing id", one, without("id"), 400),
        ("empty id", one, with("id", json!("")), 400),
        ("missing source", one, without("source"), 400),
        ("missing type", one, without("type"), 400),
        ("missing subject", one, without("subject"), 400),
        ("id not a string", one, with("id", json!(7)), 400),
        (
            "time not RFC 3339",
            one,
            with("time", json!("yesterday")),
            400,
        ),
        (
            "time in the future",
            one,
            with("time", json!("2026-11-28T18:00:00Z")),
            400,
        ),
        (
            "time before the anchor",
            one,
            with("time", json!("2026-10-01T00:00:00Z")),
            400,
        ),
        (
            "value field missing",
            one,
            with("data", json!({"model": "x"})),
            400,
        ),
        ("no data", one, without("data"), 400),
        (
            "value not a number",
            one,
            with("data", json!({"tokens": "lots"})),
            400,
        ),
        (
            "value fractional",
            one,
            with("data", json!({"tokens": 1.5})),
            400,
        ),
        ("value zero", one, with("data", json!({"tokens": 0})), 400),
        (
            "value negative",
            one,
            with("data", json!({"tokens": -2})),
            400,
        ),
        ("bad extension name", one, with("Bad-Name", json!("x")), 400),
        ("data_base64", one, with("data_base64", json!("AAAA")), 400),
        (
            "datacontenttype not JSON",
            one,
            with("datacontenttype", json!("text/plain")),
            400,
        ),
        (
            "unknown subject",
            one,
            with("subject", json!("nobody")),
            400,
        ),
        (
            "unknown meter",
            one,
            with("type", json!("other_meter")),
            400,
        ),
        (
            "another plan's meter",
            one,
            with("type", json!("meterline_usage_business")),
            400,
        ),
        ("array as one event", one, json!([good.clone()]), 400),
        ("object as a batch", batch, good.clone(), 400),
        ("empty batch", batch, json!([]), 400),
        ("event not an object", batch, json!([1]), 400),
        // One bad event refuses the whole batch.
        (
            "a bad event in a batch",
            batch,
            json!([good.clone(), without("subject")]),
            400,
        ),
        (
            "a future event in a batch",
            batch,
            json!([good.clone(), with("time", json!("2026-11-28T18:00:00Z"))]),
            400,
        ),
        (
            "an unknown subject in a batch",
            batch,
            json!([good.clone(), cloud_event("other", "nobody", json!(1))]),
            400,
        ),
        ("wrong content type", "text/plain", good.clone(), 415),
    ];
    let before = s.dump();
    for (what, content_type, body, status) in &cases {
        let reply = api.cloudevents(content_type, body);
        assert_eq!(reply.status, *status, "{what}: {}", reply.body);
        assert_eq!(reply.content_type, "application/problem+json", "{what}");
        let problem = reply.json();
        assert_eq!(problem["status"], *status, "{what}");
        assert!(
            problem["title"].is_string() && problem["detail"].is_string(),
            "{what}"
        );
    }
    let too_many: Vec<Value> = (0..1001)
        .map(|i| cloud_event(&format!("m{i}"), "acme", json!(1)))
        .collect();
    assert_eq!(api.cloudevents(batch, &json!(too_many)).status, 400);
    let not_json = api.post("/openmeter/api/v1/events", one, "{not json");
    assert_eq!(not_json.status, 400, "{}", not_json.body);
    for token in [None, Some("mlt_wrong")] {
        let reply = api.post_as(token, "/openmeter/api/v1/events", one, &good.to_string());
        assert_eq!(reply.status, 401, "{}", reply.body);
        assert_eq!(reply.content_type, "application/problem+json");
    }
    assert_nothing_written(&s, &before, "a refused CloudEvents request");
}

// ---------------------------------------------------------------- Lago

fn lago_event(transaction_id: &str, customer: &str, tokens: Value) -> Value {
    json!({
        "transaction_id": transaction_id,
        "external_subscription_id": customer,
        "code": "meterline_usage",
        "timestamp": now_unix() - 1800,
        "properties": {"tokens": tokens},
    })
}

fn lago_events_map_every_field(engine: Engine) {
    let (s, api) = setup_on(engine);
    let created = api.lago(&json!({"event": lago_event("t1", "acme", json!(9))}));
    assert_eq!(created.status, 200, "{}", created.body);
    let event = &created.json()["event"];
    assert_eq!(event["transaction_id"], "t1");
    assert_eq!(event["code"], "meterline_usage");
    assert_eq!(event["external_subscription_id"], "acme");
    assert_eq!(event["external_customer_id"], "acme");
    assert_eq!(event["lago_customer_id"], "acme");
    assert_eq!(event["timestamp"], "2026-11-27T17:30:00Z");
    assert_eq!(event["properties"], json!({"tokens": 9}));
    assert!(event["lago_id"].is_string() && event["created_at"].is_string());
    assert_eq!(stored(&s, "lago:2:t1"), (9, "2026-11-27T17:30:00Z".into()));

    // external_customer_id; a timestamp as a string with a fraction; none at all (now).
    let by_customer = json!({"event": {"transaction_id": "t2", "external_customer_id": "acme",
        "code": "meterline_usage", "timestamp": format!("{}.75", now_unix() - 60),
        "properties": {"tokens": "2"}}});
    assert_eq!(api.lago(&by_customer).status, 200);
    assert_eq!(stored(&s, "lago:2:t2"), (2, "2026-11-27T17:59:00Z".into()));
    let no_time = json!({"event": {"transaction_id": "t3", "external_customer_id": "acme",
        "code": "meterline_usage", "properties": {"tokens": 1}}});
    assert_eq!(api.lago(&no_time).status, 200);
    assert_stored_now(&s, "lago:2:t3", 1);
    // A meter without a value property counts 1 per event.
    let biz = json!({"event": {"transaction_id": "t4", "external_customer_id": "biz",
        "code": "meterline_usage_business"}});
    assert_eq!(api.lago(&biz).status, 200);
    assert_eq!(used(&s, "biz"), 1);

    // A batch answers every event.
    let batch = api.lago_batch(&json!({"events": [
        lago_event("b1", "acme", json!(3)), lago_event("b2", "acme", json!(4))]}));
    assert_eq!(batch.status, 200, "{}", batch.body);
    assert_eq!(batch.json()["events"].as_array().unwrap().len(), 2);
    assert_eq!(used(&s, "acme"), 9 + 2 + 1 + 3 + 4);

    // Resent: the same answer again, nothing counted twice.
    let before = s.dump();
    let again = api.lago(&json!({"event": lago_event("t1", "acme", json!(9))}));
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["event"]["lago_id"], event["lago_id"]);
    let batch_again = api.lago_batch(&json!({"events": [
        lago_event("b1", "acme", json!(3)), lago_event("b2", "acme", json!(4))]}));
    assert_eq!(batch_again.status, 200, "{}", batch_again.body);
    assert_nothing_written(&s, &before, "resent Lago events");

    // The same transaction id with other properties: Lago's 422 value_already_exist.
    let conflict = api.lago(&json!({"event": lago_event("t1", "acme", json!(10))}));
    assert_eq!(conflict.status, 422, "{}", conflict.body);
    assert_eq!(
        conflict.json()["error_details"]["transaction_id"],
        json!(["value_already_exist"])
    );
    assert_nothing_written(&s, &before, "a conflicting Lago event");

    // A hard cap in a batch: the others are recorded; 402 lists the refused ids.
    let capped = api.lago_batch(&json!({"events": [
        lago_event("c1", "capped", json!(700)),
        lago_event("c2", "capped", json!(700)),
        lago_event("c3", "capped", json!(300))]}));
    assert_eq!(capped.status, 402, "{}", capped.body);
    let body = capped.json();
    assert_eq!(
        (body["status"].clone(), body["code"].clone()),
        (json!(402), json!("hard_cap_reached"))
    );
    assert_eq!(body["error_details"]["transaction_ids"], json!(["c2"]));
    assert_eq!(used(&s, "capped"), 1000);
}

#[test]
fn lago_malformed_input_gets_lagos_error_and_writes_nothing() {
    let (s, api) = setup();
    let good = lago_event("ok", "acme", json!(1));
    let without = |name: &str| {
        let mut e = good.clone();
        e.as_object_mut().unwrap().remove(name);
        json!({ "event": e })
    };
    let with = |name: &str, value: Value| {
        let mut e = good.clone();
        e[name] = value;
        json!({ "event": e })
    };
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        ("no event root", good.clone(), 400, "bad_request"),
        (
            "missing transaction_id",
            without("transaction_id"),
            400,
            "bad_request",
        ),
        ("missing code", without("code"), 400, "bad_request"),
        (
            "no customer",
            without("external_subscription_id"),
            400,
            "bad_request",
        ),
        (
            "unknown field",
            with("quantity", json!(3)),
            400,
            "bad_request",
        ),
        (
            "properties not an object",
            with("properties", json!([1])),
            400,
            "bad_request",
        ),
        (
            "value field missing",
            with("properties", json!({})),
            400,
            "bad_request",
        ),
        (
            "value not a number",
            with("properties", json!({"tokens": "x"})),
            400,
            "bad_request",
        ),
        (
            "value fractional",
            with("properties", json!({"tokens": 2.5})),
            400,
            "bad_request",
        ),
        (
            "timestamp not a number",
            with("timestamp", json!("noon")),
            400,
            "bad_request",
        ),
        (
            "timestamp in the future",
            with("timestamp", json!(now_unix() + 3600)),
            400,
            "bad_request",
        ),
        (
            "two different customers",
            with("external_customer_id", json!("capped")),
            400,
            "bad_request",
        ),
        (
            "unknown customer",
            with("external_subscription_id", json!("nobody")),
            404,
            "customer_not_found",
        ),
        (
            "unknown code",
            with("code", json!("other_meter")),
            404,
            "billable_metric_not_found",
        ),
    ];
    let before = s.dump();
    for (what, body, status, code) in &cases {
        let reply = api.lago(body);
        assert_eq!(reply.status, *status, "{what}: {}", reply.body);
        let error = reply.json();
        assert_eq!(error["status"], *status, "{what}");
        assert_eq!(error["code"], *code, "{what}: {}", reply.body);
        assert!(error["error"].is_string(), "{what}");
    }
    // One bad event refuses the whole batch; an empty or oversized batch is refused.
    let bad_batch = json!({"events": [good.clone(), without("code")["event"].clone()]});
    assert_eq!(api.lago_batch(&bad_batch).status, 400);
    let future = with("timestamp", json!(now_unix() + 3600))["event"].clone();
    assert_eq!(
        api.lago_batch(&json!({"events": [good.clone(), future]}))
            .status,
        400
    );
    let nobody = lago_event("other", "nobody", json!(1));
    assert_eq!(
        api.lago_batch(&json!({"events": [good.clone(), nobody]}))
            .status,
        404
    );
    assert_eq!(api.lago_batch(&json!({"events": []})).status, 400);
    let too_many: Vec<Value> = (0..1001)
        .map(|i| lago_event(&format!("m{i}"), "acme", json!(1)))
        .collect();
    assert_eq!(api.lago_batch(&json!({ "events": too_many })).status, 400);
    let not_json = api.post("/lago/api/v1/events", "application/json", "{nope");
    assert_eq!(not_json.status, 400, "{}", not_json.body);
    for token in [None, Some("mlt_wrong")] {
        let reply = api.post_as(
            token,
            "/lago/api/v1/events",
            "application/json",
            &json!({ "event": good }).to_string(),
        );
        assert_eq!(reply.status, 401, "{}", reply.body);
        assert_eq!(
            reply.json(),
            json!({"status": 401, "error": "Unauthorized"})
        );
    }
    assert_nothing_written(&s, &before, "a refused Lago request");
}

// ---------------------------------------------------------------- plans.toml

#[test]
fn value_property_config_is_validated() {
    let plans = std::fs::read_to_string(crate::support::cli::repo_plans()).unwrap();
    let with = |extra: &str| meterline::Config::parse(&format!("{plans}\n{extra}"), "plans.toml");
    let ok = with("[ingest.value_property]\nmeterline_usage = \"tokens\"").unwrap();
    assert_eq!(ok.value_property("meterline_usage"), Some("tokens"));
    assert_eq!(ok.value_property("meterline_usage_business"), None);
    let typo = with("[ingest.value_property]\nmeterline_usgae = \"tokens\"")
        .unwrap_err()
        .to_string();
    assert!(
        typo.contains("meterline_usgae") && typo.contains("meterline_usage_business"),
        "{typo}"
    );
    assert!(with("[ingest.value_property]\nmeterline_usage = \"\"").is_err());
    assert!(with("[ingest]\nvalue_field = {}").is_err());
    assert!(with("[ingest.value_property]\nmeterline_usage = 3").is_err());
}

/// A native key spelled like a drop-in route's key (`stripe:5:req-1`, `ce:3:svc:2:e1`,
/// `lago:2:t1`, `lago-sha256:<hex>`) once took that route's event identity: the later compat
/// event was answered as a duplicate of the native one and nothing was counted. Each source
/// now has its own namespace: both events count, and each resend still finds its own.
#[test]
fn native_keys_never_take_a_drop_in_events_identity() {
    use sha2::{Digest, Sha256};
    let (s, api) = setup();
    let long_id = "t".repeat(300);
    let hashed = format!(
        "lago-sha256:{}",
        hex::encode(Sha256::digest(format!("lago:300:{long_id}").as_bytes()))
    );
    for key in ["stripe:5:req-1", "ce:3:svc:2:e1", "lago:2:t1", &hashed] {
        let native = json!({"customer": "acme", "quantity": 100, "key": key});
        let reply = api.post("/v1/events", "application/json", &native.to_string());
        assert_eq!(reply.json()["recorded"], true, "{key}: {}", reply.body);
    }
    // The CLI's keys are native too.
    s.cmd()
        .args(["record", "acme", "-n", "100", "--key", "lago:2:t2"])
        .assert()
        .success();
    assert_eq!(used(&s, "acme"), 500);

    let at = now_unix() - 3600;
    let stripe = api.stripe(&format!(
        "event_name=meterline_usage&payload[stripe_customer_id]=cus_Acme1&payload[value]=1\
         &identifier=req-1&timestamp={at}"
    ));
    assert_eq!(stripe.status, 200, "{}", stripe.body);
    let ce = api.cloudevents(
        "application/cloudevents+json",
        &cloud_event("e1", "acme", json!(2)),
    );
    assert_eq!(ce.status, 204, "{}", ce.body);
    let lago = api.lago(&json!({"event": lago_event("t1", "acme", json!(4))}));
    assert_eq!(lago.status, 200, "{}", lago.body);
    let lago_long = api.lago(&json!({"event": lago_event(&long_id, "acme", json!(8))}));
    assert_eq!(lago_long.status, 200, "{}", lago_long.body);
    let lago_cli = api.lago(&json!({"event": lago_event("t2", "acme", json!(16))}));
    assert_eq!(lago_cli.status, 200, "{}", lago_cli.body);
    assert_eq!(
        used(&s, "acme"),
        500 + 1 + 2 + 4 + 8 + 16,
        "every event counted"
    );
    for key in [
        "stripe:5:req-1",
        "ce:3:svc:2:e1",
        "lago:2:t1",
        &hashed,
        "lago:2:t2",
    ] {
        assert_eq!(
            s.inspect().events_with_key(key),
            2,
            "one event per source: {key}"
        );
    }
    let native_id: i64 = s
        .conn()
        .query_row(
            "SELECT id FROM usage_events
             WHERE idempotency_key = 'lago:2:t1' AND idempotency_source = 'native'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_ne!(
        lago.json()["event"]["lago_id"],
        json!(native_id.to_string())
    );

    // Resent, each on its own side: a duplicate of its own event, nothing counted twice.
    let before = s.dump();
    let native = json!({"customer": "acme", "quantity": 100, "key": "lago:2:t1"});
    let again = api.post("/v1/events", "application/json", &native.to_string());
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(
        (
            again.json()["duplicate"].clone(),
            again.json()["event_id"].clone()
        ),
        (json!(true), json!(native_id))
    );
    let lago_again = api.lago(&json!({"event": lago_event("t1", "acme", json!(4))}));
    assert_eq!(
        lago_again.json()["event"]["lago_id"],
        lago.json()["event"]["lago_id"]
    );
    assert_nothing_written(&s, &before, "resends on both sides");
}
