//! One event, several meters (tests/fixtures/plans/ai_types.toml): an event of a type feeds
//! every meter of that type, all or nothing, under one idempotency key, from the CLI, a
//! batch, the native HTTP API and CloudEvents; units past `included` are priced at the rate
//! of the event that used them, fixed when it was recorded.

use predicates::str::contains;
use serde_json::{Value, json};

use meterline::RecordRequest;

use crate::support::cli::Scratch;
use crate::support::engine::{Engine, engine_tests};
use crate::support::meters::dump_all;
use crate::support::serve::{Client, Server, create_token};
use crate::support::shapes::{Shape, shape_tests};

engine_tests!(
    one_event_feeds_every_meter_of_its_type,
    a_cap_on_any_meter_refuses_the_event_on_all,
    bad_events_are_refused_whole_and_write_nothing,
    one_key_covers_the_event_and_a_resend_answers_every_meter,
    units_past_included_are_priced_at_the_rate_of_the_event_that_used_them,
    the_http_routes_take_a_type_and_cloudevents_types_are_event_types,
    many_writers_stop_exactly_at_the_cap_and_the_money_is_exact,
    counters_and_money_equal_a_replay_of_the_events_under_random_writers,
);

shape_tests!(the_one_event_form_records_on_both_plan_shapes);

const PLANS: &str = include_str!("../fixtures/plans/ai_types.toml");

/// acme on pro (tokens priced per model past 1,000), capped on free (5 requests, 2 users).
fn scratch(engine: Engine) -> Scratch {
    let s = Scratch::on(engine);
    std::fs::write(&s.plans, PLANS).unwrap();
    s.add_customer("acme", "pro", "2026-11-01");
    s.add_customer("capped", "free", "2026-11-01");
    s
}

/// `record CUSTOMER --type completion` with `tokens`, `model` and `user`, then `more`; the
/// exit code and the JSON answer.
fn completion(s: &Scratch, customer: &str, tokens: i64, model: &str, user: &str) -> (i32, Value) {
    completion_with(s, customer, tokens, model, user, &[])
}

fn completion_with(
    s: &Scratch,
    customer: &str,
    tokens: i64,
    model: &str,
    user: &str,
    more: &[&str],
) -> (i32, Value) {
    let out = s
        .cmd()
        .args(["record", customer, "--type", "completion", "--json"])
        .args(["--property", &format!("tokens={tokens}")])
        .args(["--property", &format!("model={model}")])
        .args(["--property", &format!("user={user}")])
        .args(more)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap(), json)
}

/// `used` of every meter in the customer's check, in plans.toml's order.
fn used(s: &Scratch, customer: &str) -> Vec<(String, i64)> {
    s.json(&["check", customer, "--json"])["meters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["meter"].as_str().unwrap().to_string(),
                m["used"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// The customer's requests, tokens, active_users and images are these.
fn assert_used(s: &Scratch, customer: &str, expected: [i64; 4]) {
    let meters = ["requests", "tokens", "active_users", "images"];
    let expected: Vec<(String, i64)> = meters
        .iter()
        .zip(expected)
        .map(|(m, n)| (m.to_string(), n))
        .collect();
    assert_eq!(used(s, customer), expected, "{customer}");
}

/// The meters each answer says the event fed, in order.
fn fed(answer: &Value) -> Vec<&str> {
    answer["meters"]
        .as_array()
        .unwrap_or_else(|| panic!("no meters in {answer}"))
        .iter()
        .map(|m| m["meter"].as_str().unwrap())
        .collect()
}

/// (meter, type, event_of, key) of every stored event row, in id order.
fn rows(s: &Scratch) -> Vec<Vec<String>> {
    s.inspect().rows(
        "SELECT meter_id, event_type, event_of, idempotency_key FROM usage_events ORDER BY id",
    )
}

fn one_event_feeds_every_meter_of_its_type(engine: Engine) {
    let s = scratch(engine);
    let (code, answer) = completion(&s, "acme", 1200, "large", "u_9");
    assert_eq!(code, 0, "{answer}");
    assert_eq!(answer["recorded"], true);
    assert_eq!(fed(&answer), ["requests", "tokens", "active_users"]);
    assert_eq!(answer["meters"][1]["used"], 1200, "{answer}");
    assert_used(&s, "acme", [1, 1200, 1, 0]);
    // One row per meter fed, all of the type; the first is the event, the others point at it.
    let first = answer["event_id"].as_i64().unwrap().to_string();
    assert_eq!(
        rows(&s),
        [
            vec![
                "requests".to_string(),
                "completion".into(),
                "".into(),
                "".into()
            ],
            vec![
                "tokens".into(),
                "completion".into(),
                first.clone(),
                "".into()
            ],
            vec!["active_users".into(), "completion".into(), first, "".into()],
        ]
    );
    // The words say what the event added to each meter.
    s.cmd()
        .args(["record", "acme", "--type", "completion"])
        .args(["--property", "tokens=30", "--property", "model=small"])
        .args(["--property", "user=u_9"])
        .assert()
        .success()
        .stdout(contains(
            "recorded completion: 1 on requests, 30 on tokens, user \"u_9\" on active_users for acme",
        ));
    // Another type feeds its own meter only; a meter named still feeds exactly that one, and
    // an event with neither the default meter, as before types.
    s.cmd()
        .args(["record", "acme", "--type", "image"])
        .assert()
        .success();
    s.cmd()
        .args([
            "record",
            "acme",
            "--meter",
            "tokens",
            "--property",
            "tokens=5",
        ])
        .args(["--property", "model=tiny"])
        .assert()
        .success();
    s.cmd().args(["record", "acme"]).assert().success();
    assert_used(&s, "acme", [3, 1235, 1, 1]);
    let stored = s
        .inspect()
        .rows("SELECT COUNT(*) FROM usage_events WHERE event_type = 'completion'");
    assert_eq!(stored[0][0], "6");
    // doctor finds every counter counting as plans.toml says.
    let doctor = s.cmd().args(["doctor", "--json"]).output().unwrap();
    let doctor: Value = serde_json::from_slice(&doctor.stdout).unwrap();
    let counting = doctor
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "counting")
        .unwrap();
    assert_eq!(counting["verdict"], "ok", "{counting}");
    // backup checks every meter's total and money against its events, and counts events.
    if engine == Engine::Sqlite {
        let copy = s.dir.path().join("copy.db");
        s.cmd()
            .args(["backup", copy.to_str().unwrap()])
            .assert()
            .success()
            .stdout(contains("2 customers, 5 events"));
        // A total whose money disagrees with its groups' is refused as a backup.
        s.conn()
            .execute(
                "UPDATE meter_counters SET overage_units = overage_units + 1
                 WHERE meter_id = 'tokens' AND group_key = ''",
                [],
            )
            .unwrap();
        s.cmd()
            .args(["backup", s.dir.path().join("bad.db").to_str().unwrap()])
            .assert()
            .failure()
            .stderr(contains("counters disagree"));
    }
}

fn a_cap_on_any_meter_refuses_the_event_on_all(engine: Engine) {
    let s = scratch(engine);
    // Two users fill active_users (cap 2); a third user is refused on every meter.
    assert_eq!(completion(&s, "capped", 10, "small", "ann").0, 0);
    assert_eq!(completion(&s, "capped", 10, "small", "bob").0, 0);
    let before = dump_all(&s);
    let (code, answer) = completion(&s, "capped", 10, "small", "cat");
    assert_eq!(code, 3, "{answer}");
    assert_eq!(answer["recorded"], false);
    assert_eq!(answer["refused_by"], json!(["active_users"]), "{answer}");
    assert_eq!(
        answer["meters"][0]["used"], 2,
        "nothing counted on requests: {answer}"
    );
    assert_eq!(
        answer["meters"][1]["used"], 20,
        "nothing counted on tokens: {answer}"
    );
    assert_eq!(dump_all(&s), before, "a refused event writes nothing");
    // The words name the meter that refused.
    let out = s
        .cmd()
        .args(["record", "capped", "--type", "completion"])
        .args(["--property", "tokens=1", "--property", "model=small"])
        .args(["--property", "user=dan"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(
            "refused: active_users: user \"dan\" would be one past capped's hard cap of 2"
        ),
        "{said}"
    );
    // A known user still fits; then requests (cap 5) fill up and refuse, naming requests.
    for _ in 0..3 {
        assert_eq!(completion(&s, "capped", 1, "tiny", "ann").0, 0);
    }
    let (code, answer) = completion(&s, "capped", 1, "tiny", "ann");
    assert_eq!(code, 3);
    assert_eq!(answer["refused_by"], json!(["requests"]), "{answer}");
    // Both at once: each refusing meter is named.
    let (code, answer) = completion(&s, "capped", 1, "tiny", "eve");
    assert_eq!(code, 3);
    assert_eq!(
        answer["refused_by"],
        json!(["requests", "active_users"]),
        "{answer}"
    );
    assert_used(&s, "capped", [5, 23, 2, 0]);
}

fn bad_events_are_refused_whole_and_write_nothing(engine: Engine) {
    let s = scratch(engine);
    assert_eq!(completion(&s, "acme", 10, "small", "ann").0, 0);
    let before = dump_all(&s);
    let refused = |args: &[&str], says: &str| {
        s.cmd()
            .args(["record", "acme"])
            .args(args)
            .assert()
            .code(2)
            .stderr(contains(says));
        assert_eq!(dump_all(&s), before, "{args:?} wrote something");
    };
    refused(
        &["--type", "chat"],
        "event type \"chat\" is not in plans.toml; the types are: completion, image",
    );
    refused(
        &["--type", "completion", "--meter", "tokens"],
        "'--type <TYPE>' cannot be used with '--meter <ID>'",
    );
    // A property one meter needs is missing: refused on all of them, naming both.
    refused(
        &[
            "--type",
            "completion",
            "--property",
            "tokens=5",
            "--property",
            "model=small",
        ],
        "meter \"active_users\" (unique_count) needs the property \"user\"",
    );
    refused(
        &[
            "--type",
            "completion",
            "--property",
            "user=ann",
            "--property",
            "tokens=lots",
        ],
        "property tokens = \"lots\" must be a whole number",
    );
    // A batch line with both is refused alone, with the same words; the good line counts.
    let batch = s.dir.path().join("events.ndjson");
    std::fs::write(
        &batch,
        [
            json!({"customer": "acme", "type": "completion", "meter": "tokens",
                   "properties": {"tokens": 1, "model": "small", "user": "ann"}}),
            json!({"customer": "acme", "type": "completion",
                   "properties": {"tokens": 7, "model": "small", "user": "ann"}}),
        ]
        .map(|l| l.to_string())
        .join("\n"),
    )
    .unwrap();
    s.cmd()
        .args(["record", "--batch"])
        .arg(&batch)
        .assert()
        .code(2)
        .stderr(contains("an event names a type or a meter, not both"));
    assert_used(&s, "acme", [2, 17, 1, 0]);
}

fn one_key_covers_the_event_and_a_resend_answers_every_meter(engine: Engine) {
    let s = scratch(engine);
    let (code, first) = completion_with(&s, "acme", 900, "large", "ann", &["--key", "c-1"]);
    assert_eq!(code, 0, "{first}");
    let (code, again) = completion_with(&s, "acme", 900, "large", "ann", &["--key", "c-1"]);
    assert_eq!(code, 0, "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["event_id"], first["event_id"]);
    assert_eq!(fed(&again), ["requests", "tokens", "active_users"]);
    assert_eq!(
        again["meters"], first["meters"],
        "the standing of every meter it fed"
    );
    // One key, one event: only its first row carries the key.
    let keyed = s
        .inspect()
        .rows("SELECT COUNT(*) FROM usage_events WHERE idempotency_key = 'c-1'");
    assert_eq!(keyed[0][0], "1");
    // The same key on a meter, or with other properties, is another event: a conflict.
    s.cmd()
        .args(["record", "acme", "--meter", "tokens", "--key", "c-1"])
        .args(["--property", "tokens=900", "--property", "model=large"])
        .assert()
        .code(2)
        .stderr(contains("type none (was \"completion\")"));
    let (code, _) = completion_with(&s, "acme", 901, "large", "ann", &["--key", "c-1"]);
    assert_eq!(code, 2);
    assert_used(&s, "acme", [1, 900, 1, 0]);
}

fn group_money(check: &Value, model: &str) -> (i64, String) {
    let tokens = check["meters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["meter"] == "tokens")
        .unwrap();
    let group = tokens["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"]["model"] == model)
        .unwrap_or_else(|| panic!("no group {model} in {tokens}"));
    (
        group["overage_units"].as_i64().unwrap(),
        group["overage_amount"].as_str().unwrap().to_string(),
    )
}

fn units_past_included_are_priced_at_the_rate_of_the_event_that_used_them(engine: Engine) {
    let s = scratch(engine);
    // 1,000 included. 800 small fit; 500 large cross the limit: 200 inside cost nothing,
    // 300 past it cost the large rate; then every unit is past it, at its own model's rate.
    assert_eq!(completion(&s, "acme", 800, "small", "ann").0, 0);
    assert_eq!(completion(&s, "acme", 500, "large", "ann").0, 0);
    assert_eq!(completion(&s, "acme", 100, "tiny", "ann").0, 0);
    assert_eq!(completion(&s, "acme", 1000, "medium", "ann").0, 0);
    let check = s.json(&["check", "acme", "--json"]);
    assert_eq!(group_money(&check, "small"), (0, "0".into()));
    assert_eq!(group_money(&check, "large"), (300, "0.003".into()));
    assert_eq!(group_money(&check, "tiny"), (100, "0.0001".into()));
    assert_eq!(
        group_money(&check, "medium"),
        (1000, "0.002".into()),
        "overage_rate"
    );
    let tokens = &check["meters"][1];
    assert_eq!(tokens["overage_units"], 1400);
    assert_eq!(tokens["overage_amount"], "0.0051");
    assert_eq!(check["overage_total"], "0.0051");
    // A late event counts in its own (this) period after the others: it takes the units it
    // uses at its rate and reprices none of the earlier ones.
    let (code, _) = completion_with(
        &s,
        "acme",
        100,
        "large",
        "ann",
        &["--at", "2026-11-02T09:00:00Z"],
    );
    assert_eq!(code, 0);
    let check = s.json(&["check", "acme", "--json"]);
    assert_eq!(group_money(&check, "small"), (0, "0".into()));
    assert_eq!(group_money(&check, "large"), (400, "0.004".into()));
    assert_eq!(check["overage_total"], "0.0061");
    // The text says the units were priced per group.
    s.cmd()
        .args(["check", "acme"])
        .assert()
        .success()
        .stdout(contains(
            "overage 1,500 units = $0.0061 at each group's rate",
        ));
    // A closed period keeps its rates: "old" spent October past its 1,000 at the large rate.
    s.add_customer("old", "pro", "2026-10-01");
    let october = ["--at", "2026-10-20T09:00:00Z"];
    assert_eq!(
        completion_with(&s, "old", 1100, "large", "ann", &october).0,
        0
    );
    // A new rate in plans.toml changes no money already allocated, and a late event into
    // the closed period is priced at the rate it kept.
    let cheaper = PLANS.replace("rate = \"0.00001\"", "rate = \"0.000005\"");
    std::fs::write(&s.plans, cheaper).unwrap();
    let check = s.json(&["check", "acme", "--json"]);
    assert_eq!(group_money(&check, "large"), (400, "0.004".into()));
    assert_eq!(
        completion_with(&s, "old", 100, "large", "ann", &october).0,
        0
    );
    let closed = s.json(&["check", "old", "--now", "2026-10-25T00:00:00Z", "--json"]);
    assert_eq!(
        group_money(&closed, "large"),
        (200, "0.002".into()),
        "{closed}"
    );
    // This period's new events take the new rate.
    assert_eq!(completion(&s, "acme", 100, "large", "ann").0, 0);
    let check = s.json(&["check", "acme", "--json"]);
    assert_eq!(group_money(&check, "large"), (500, "0.0045".into()));
}

fn start(s: &Scratch) -> (Server, Client) {
    let token = create_token(s, "types");
    let server = Server::start(s, &[]);
    let client = server.client(&token);
    (server, client)
}

fn the_http_routes_take_a_type_and_cloudevents_types_are_event_types(engine: Engine) {
    let s = scratch(engine);
    let (_server, c) = start(&s);
    let event = |key: &str, user: &str| {
        json!({"customer": "capped", "type": "completion", "key": key,
               "properties": {"tokens": 5, "model": "small", "user": user}})
    };
    let one = c.post("/v1/events", &event("h-1", "ann").to_string());
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(fed(&one.json()), ["requests", "tokens", "active_users"]);
    let batch = c.post(
        "/v1/events/batch",
        &json!({"events": [event("h-2", "bob"), event("h-3", "cat"), event("h-1", "ann")]})
            .to_string(),
    );
    assert_eq!(batch.status, 200, "{}", batch.body);
    let results = batch.json()["results"].as_array().unwrap().clone();
    let statuses: Vec<i64> = results
        .iter()
        .map(|r| r["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 402, 200]);
    assert_eq!(results[1]["refused_by"], json!(["active_users"]));
    assert_eq!(results[2]["duplicate"], true);
    assert_eq!(fed(&results[2]), ["requests", "tokens", "active_users"]);
    let refused = c.post("/v1/events", &event("h-4", "dan").to_string());
    assert_eq!(refused.status, 402, "{}", refused.body);
    assert_eq!(refused.json()["refused_by"], json!(["active_users"]));
    // Bad input: 400, nothing written.
    let before = dump_all(&s);
    for (bad, says) in [
        (
            json!({"customer": "capped", "type": "chat"}),
            "the types are: completion, image",
        ),
        (
            json!({"customer": "capped", "type": "completion", "meter": "requests"}),
            "an event names a type or a meter, not both",
        ),
        (
            json!({"customer": "capped", "type": "completion", "properties": {"user": "ann"}}),
            "meter \"tokens\" (sum) needs the property \"tokens\"",
        ),
    ] {
        let reply = c.post("/v1/events", &bad.to_string());
        assert_eq!(reply.status, 400, "{bad}: {}", reply.body);
        let message = reply.json()["error"]["message"].clone();
        assert!(message.as_str().unwrap().contains(says), "{bad}: {message}");
    }
    assert_eq!(dump_all(&s), before);
    // CloudEvents: `type` is the event type (OpenMeter's meaning), all meters at once.
    let ce = json!([{"specversion": "1.0", "id": "ce-1", "source": "tests", "type": "completion",
                     "subject": "acme", "data": {"tokens": 40, "model": "large", "user": "ann"}}]);
    let (status, body) = c.cloudevents(&ce);
    assert!(status < 300, "{status}: {body}");
    assert_used(&s, "acme", [1, 40, 1, 0]);
    // A CloudEvent missing a property of one meter refuses the batch, naming it.
    let ce = json!([{"specversion": "1.0", "id": "ce-2", "source": "tests", "type": "completion",
                     "subject": "acme", "data": {"tokens": 40, "model": "large"}}]);
    let (status, body) = c.cloudevents(&ce);
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("data.user"),
        "{body}"
    );
    // Lago's code still picks one meter.
    let lago = json!({"event": {"transaction_id": "l-1", "external_subscription_id": "acme",
                                "code": "tokens", "properties": {"tokens": 2, "model": "tiny"}}});
    let (status, body) = c.lago("/lago/api/v1/events", &lago);
    assert_eq!(status, 200, "{body}");
    assert_used(&s, "acme", [1, 42, 1, 0]);
}

fn many_writers_stop_exactly_at_the_cap_and_the_money_is_exact(engine: Engine) {
    let s = scratch(engine);
    let (_server, c) = start(&s);
    // 8 writers × 10 events for capped (5 requests): exactly 5 recorded on every meter.
    // 8 writers × 10 events for acme: every one, money exact whatever the order.
    let threads: Vec<_> = (0..8)
        .map(|w| {
            let c = c.clone();
            std::thread::spawn(move || {
                let mut recorded = 0;
                for i in 0..10 {
                    for (customer, model) in [("capped", "small"), ("acme", "large")] {
                        let event = json!({"customer": customer, "type": "completion",
                                           "key": format!("{customer}-{w}-{i}"),
                                           "properties": {"tokens": 100, "model": model,
                                                          "user": "ann"}});
                        let reply = c.post("/v1/events", &event.to_string());
                        assert!(matches!(reply.status, 200 | 402), "{}", reply.body);
                        if customer == "capped" && reply.status == 200 {
                            recorded += 1;
                        }
                    }
                }
                recorded
            })
        })
        .collect();
    let recorded: i64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(recorded, 5);
    assert_used(&s, "capped", [5, 500, 1, 0]);
    // acme: 80 × 100 = 8,000 large tokens, 7,000 past 1,000 at 0.00001.
    let check = s.json(&["check", "acme", "--json"]);
    assert_eq!(group_money(&check, "large"), (7000, "0.07".into()));
    assert_eq!(check["overage_total"], "0.07");
    let rows = s
        .inspect()
        .rows("SELECT COUNT(*) FROM usage_events WHERE customer_id = 'capped'");
    assert_eq!(rows[0][0], "15", "5 events × 3 meters");
}

/// The rate of a model's tokens past pro's 1,000 included (ai_types.toml).
fn rate_of(model: &str) -> rust_decimal::Decimal {
    let text = match model {
        "large" => "0.00001",
        "small" | "tiny" => "0.000001",
        _ => "0.000002",
    };
    text.parse().unwrap()
}

fn counters_and_money_equal_a_replay_of_the_events_under_random_writers(engine: Engine) {
    use std::collections::BTreeMap;
    let s = scratch(engine);
    let at = chrono::DateTime::parse_from_rfc3339(crate::support::common::NOW)
        .unwrap()
        .with_timezone(&chrono::Utc);
    // Writers with their own connections, random batches of random events (some resent),
    // for a capped customer and a priced one.
    let threads: Vec<_> = (0..4u64)
        .map(|w| {
            let db = s.db.clone();
            let plans = s.plans.clone();
            std::thread::spawn(move || {
                let config = meterline::Config::load(&plans).unwrap();
                let mut store = meterline::Store::open(std::path::Path::new(&db)).unwrap();
                let mut rng = fastrand::Rng::with_seed(w);
                for round in 0..30 {
                    let batch: Vec<RecordRequest> = (0..rng.usize(1..12))
                        .map(|i| {
                            let customer = if rng.bool() { "acme" } else { "capped" };
                            let mut r = RecordRequest::new(customer, 1, at);
                            r.event_type = Some("completion".into());
                            r.idempotency_key = Some(format!("w{w}-{}", round * 7 + i % 7).into());
                            let model =
                                ["large", "small", "tiny", "medium", "vision"][rng.usize(0..5)];
                            r.properties = [
                                ("tokens", rng.i64(1..400).to_string()),
                                ("model", model.to_string()),
                                ("user", format!("u{}", rng.usize(0..4))),
                            ]
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v))
                            .collect();
                            r
                        })
                        .collect();
                    // A resent key with other parameters is refused alone, as it should be.
                    store.record_batch(&config, &batch, at).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Every event fed all three meters or none.
    let per_event = s.inspect().rows(
        "SELECT COALESCE(event_of, id), COUNT(*) FROM usage_events GROUP BY 1 HAVING COUNT(*) <> 3",
    );
    assert!(per_event.is_empty(), "{per_event:?}");
    // Replay the events in the order they were recorded.
    let events = s.inspect().rows(
        "SELECT customer_id, properties FROM usage_events WHERE meter_id = 'tokens' ORDER BY id",
    );
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    let mut groups: BTreeMap<(String, String), (i64, i64, rust_decimal::Decimal)> = BTreeMap::new();
    for row in &events {
        let properties: Value = serde_json::from_str(&row[1]).unwrap();
        let tokens: i64 = properties["tokens"].as_str().unwrap().parse().unwrap();
        let model = properties["model"].as_str().unwrap().to_string();
        let total = totals.entry(row[0].clone()).or_default();
        let past = |n: i64| {
            if row[0] == "acme" {
                (n - 1000).max(0)
            } else {
                0
            }
        };
        let over = past(*total + tokens) - past(*total);
        *total += tokens;
        let group = groups.entry((row[0].clone(), model.clone())).or_default();
        group.0 += tokens;
        group.1 += over;
        group.2 += rate_of(&model) * rust_decimal::Decimal::from(over);
    }
    for customer in ["acme", "capped"] {
        let check = s.json(&["check", customer, "--json"]);
        let tokens = &check["meters"][1];
        assert_eq!(
            tokens["used"],
            totals.get(customer).copied().unwrap_or(0),
            "{customer}"
        );
        let mut total = rust_decimal::Decimal::ZERO;
        for group in tokens["groups"].as_array().unwrap() {
            let model = group["key"]["model"].as_str().unwrap().to_string();
            let (units, over, money) = groups[&(customer.to_string(), model.clone())];
            assert_eq!(group["used"], units, "{customer} {model}");
            assert_eq!(group["overage_units"], over, "{customer} {model}");
            let amount: rust_decimal::Decimal =
                group["overage_amount"].as_str().unwrap().parse().unwrap();
            assert_eq!(amount, money, "{customer} {model}");
            total += money;
        }
        let overage: rust_decimal::Decimal =
            check["overage_total"].as_str().unwrap().parse().unwrap();
        assert_eq!(overage, total, "{customer}");
    }
    // The caps held: capped has at most 5 requests and 2 users.
    let capped = used(&s, "capped");
    assert!(capped[0].1 <= 5 && capped[2].1 <= 2, "{capped:?}");
}

/// The type of the events of `shape`'s file and the meters one feeds: the implicit meter's
/// own (`usage`) without `[[meters]]`, `completion` in the file `init` writes.
fn one_event_form(shape: Shape) -> (&'static str, Vec<&'static str>, Vec<&'static str>) {
    match shape {
        Shape::Legacy => ("usage", vec!["-n", "7"], vec!["usage"]),
        Shape::Meters => (
            "completion",
            vec![
                "--property",
                "tokens=7",
                "--property",
                "model=large",
                "--property",
                "user=u_9",
            ],
            vec!["requests", "tokens", "active_users"],
        ),
    }
}

fn the_one_event_form_records_on_both_plan_shapes(engine: Engine, shape: Shape) {
    let s = Scratch::shaped(engine, shape);
    s.add_customer("acme", "pro", "2026-11-01");
    let (event_type, properties, fed_meters) = one_event_form(shape);
    let send = || {
        let out = s
            .cmd()
            .args(["record", "acme", "--type", event_type, "--key", "one"])
            .arg("--json")
            .args(&properties)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let answer = send();
    assert_eq!(fed(&answer), fed_meters);
    let check = s.json(&["check", "acme", "--json"]);
    for meter in &fed_meters {
        let found = check["meters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["meter"] == *meter)
            .unwrap();
        assert!(found["used"].as_i64().unwrap() > 0, "{meter}: {check}");
    }
    // The same event again is a duplicate; an unknown type names the types there are.
    let again = send();
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["meters"], answer["meters"]);
    s.cmd()
        .args(["record", "acme", "--type", "nope"])
        .assert()
        .code(2)
        .stderr(contains(format!("the types are: {event_type}")));
}
