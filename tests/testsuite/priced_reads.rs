//! Reads with money per group (issue 26): events of the `completion` type feed three meters,
//! tokens priced per model (tests/fixtures/plans/ai_priced.toml). `history`, `status`,
//! `export usage` and `GET /v1/status` show each group's units past `included` and their
//! money as `check --json` does, a closed period keeps its money when the rates change, and
//! `export events` shows each row's event type and the event it belongs to.

use crate::support::cli::Scratch;
use crate::support::common::AI_PRICED_PLANS;
use crate::support::engine::{Engine, engine_tests};
use crate::support::serve::{Server, create_token};
use serde_json::{Value, json};

engine_tests!(
    history_status_and_export_usage_price_each_group_as_check_does,
    a_closed_period_keeps_its_money_when_the_rates_change,
    export_events_shows_each_rows_type_and_event,
);

/// acme on pro (tokens: 1,000 included, large at 0.01, small and tiny at 0.001, any other
/// model at 0.002), anchored so that October is a closed period.
fn scratch(engine: Engine) -> Scratch {
    let s = Scratch::on(engine);
    std::fs::write(&s.plans, AI_PRICED_PLANS).unwrap();
    s.add_customer("acme", "pro", "2026-09-01");
    s
}

/// One `completion` event: (tokens, model, user), at `at` when given.
fn completion(s: &Scratch, (tokens, model, user): (i64, &str, &str), at: Option<&str>) {
    let mut cmd = s.cmd();
    cmd.args(["record", "acme", "--type", "completion"])
        .args(["--property", &format!("tokens={tokens}")])
        .args(["--property", &format!("model={model}")])
        .args(["--property", &format!("user={user}")]);
    if let Some(at) = at {
        cmd.args(["--at", at]);
    }
    cmd.assert().success();
}

/// 2,400 tokens in all, 1,400 past the 1,000 included: small's 800 inside, large's 500 with
/// 300 past (at 0.01: 3), medium's 100 past (no rate line: 0.002, 0.2), tiny's 1,000 past
/// (at 0.001: 1). 4.2 in all.
const EVENTS: [(i64, &str, &str); 4] = [
    (800, "small", "u1"),
    (500, "large", "u2"),
    (100, "medium", "u1"),
    (1000, "tiny", "u3"),
];

/// The groups as `check --json` lists them: largest first.
fn expected_groups() -> Value {
    json!([
        {"key": {"model": "tiny"}, "used": 1000, "overage_units": 1000, "overage_amount": "1"},
        {"key": {"model": "small"}, "used": 800, "overage_units": 0, "overage_amount": "0"},
        {"key": {"model": "large"}, "used": 500, "overage_units": 300, "overage_amount": "3"},
        {"key": {"model": "medium"}, "used": 100, "overage_units": 100, "overage_amount": "0.2"},
    ])
}

fn tokens_of(meters: &Value) -> &Value {
    meters
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["meter"] == "tokens")
        .unwrap()
}

/// `export usage --format json` rows of the tokens meter.
fn usage_rows(s: &Scratch) -> Vec<Value> {
    let out = s.stdout_comparable(&["export", "usage", "--format", "json"]);
    out.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|row| row["meter_id"] == "tokens")
        .collect()
}

fn history_status_and_export_usage_price_each_group_as_check_does(engine: Engine) {
    let s = scratch(engine);
    for event in EVENTS {
        completion(&s, event, None);
    }
    let check = s.json(&["check", "acme", "--json"]);
    let tokens = tokens_of(&check["meters"]);
    assert_eq!(tokens["groups"], expected_groups(), "{check}");
    assert_eq!(
        (&tokens["overage_units"], &tokens["overage_amount"]),
        (&json!(1400), &json!("4.2"))
    );

    // history --json: the period priced as check prices it (not 1,400 × 0.002 = 2.8), with
    // its groups.
    let history = s.json(&[
        "history",
        "acme",
        "--meter",
        "tokens",
        "--periods",
        "1",
        "--json",
    ]);
    let period = &history[0];
    assert_eq!(
        (&period["overage_units"], &period["overage_amount"]),
        (&json!(1400), &json!("4.2")),
        "{history}"
    );
    assert_eq!(period["groups"], expected_groups());
    // In text, each priced group's units past the limit and money under its period.
    let text = s.stdout_comparable(&["history", "acme", "--meter", "tokens", "--periods", "1"]);
    let line = |model: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(&format!("model={model} ")))
            .unwrap_or_else(|| panic!("no line for {model} in\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        line("large"),
        ["model=large", "300", "over", "$3.00"],
        "{text}"
    );
    assert_eq!(line("medium"), ["model=medium", "100", "over", "$0.20"]);
    assert_eq!(line("tiny"), ["model=tiny", "1,000", "over", "$1.00"]);
    assert!(
        !text.contains("model=small"),
        "no money past the limit:\n{text}"
    );
    assert!(text.contains("$4.20"), "{text}");

    // status in text: the customer's overage, every meter's, as check's overage_total.
    let status = s.stdout_comparable(&["status"]);
    let mut lines = status.lines();
    assert!(lines.next().unwrap().ends_with(" OVERAGE"), "{status}");
    assert!(lines.next().unwrap().ends_with(" $4.20"), "{status}");

    // status --json and GET /v1/status: each meter as check lists it.
    let status = s.json(&["status", "--json"]);
    assert_eq!(tokens_of(&status[0]["meters"]), tokens, "{status}");
    let token = create_token(&s, "reads");
    let server = Server::start(&s, &[]);
    let reply = server.client(&token).get("/v1/status");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(tokens_of(&reply.json()[0]["meters"]), tokens);
    drop(server);

    // export usage: the meter's money as check computes it, its groups as check lists them,
    // in three new columns at the end.
    let rows = usage_rows(&s);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(
        (&row["used"], &row["overage_units"]),
        (&json!(2400), &json!(1400))
    );
    assert_eq!(row["overage_amount"], "4.2");
    let groups: Value = serde_json::from_str(row["groups"].as_str().unwrap()).unwrap();
    assert_eq!(groups, expected_groups());
    let csv = s.stdout_comparable(&["export", "usage"]);
    let header = csv.lines().next().unwrap();
    assert!(
        header.ends_with(",price,meter_id,overage_units,overage_amount,groups"),
        "{header}"
    );
    let requests = csv.lines().find(|l| l.contains(",requests,")).unwrap();
    assert!(requests.ends_with(",requests,0,0,[]"), "{requests}");
}

fn a_closed_period_keeps_its_money_when_the_rates_change(engine: Engine) {
    let s = scratch(engine);
    for event in EVENTS {
        completion(&s, event, Some("2026-10-15T12:00:00Z"));
    }
    // The large model costs five times more from now on: October's money was fixed as its
    // events were recorded.
    std::fs::write(
        &s.plans,
        AI_PRICED_PLANS.replace("rate = \"0.01\"", "rate = \"0.05\""),
    )
    .unwrap();
    completion(&s, (1500, "large", "u9"), None);

    let history = s.json(&[
        "history",
        "acme",
        "--meter",
        "tokens",
        "--periods",
        "2",
        "--json",
    ]);
    let october = &history[0];
    assert_eq!(october["period_start"], "2026-10-01T00:00:00Z", "{history}");
    assert_eq!(
        (&october["overage_units"], &october["overage_amount"]),
        (&json!(1400), &json!("4.2"))
    );
    assert_eq!(october["groups"], expected_groups());
    // November: 500 past the 1,000 included, at the new rate.
    let november = &history[1];
    assert_eq!(
        (&november["overage_units"], &november["overage_amount"]),
        (&json!(500), &json!("25")),
        "{history}"
    );

    let rows = usage_rows(&s);
    let amounts: Vec<(&Value, &Value)> = rows
        .iter()
        .map(|r| (&r["period_start"], &r["overage_amount"]))
        .collect();
    assert_eq!(
        amounts,
        [
            (&json!("2026-10-01T00:00:00Z"), &json!("4.2")),
            (&json!("2026-11-01T00:00:00Z"), &json!("25")),
        ]
    );
}

fn export_events_shows_each_rows_type_and_event(engine: Engine) {
    let s = scratch(engine);
    completion(&s, (800, "small", "u1"), None);
    s.cmd()
        .args(["record", "acme", "--meter", "tokens", "--key", "one-meter"])
        .args(["--property", "tokens=5", "--property", "model=small"])
        .assert()
        .success();

    let out = s.stdout_comparable(&["export", "events", "--format", "json"]);
    let rows: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let shown: Vec<(&Value, &Value, &Value, &Value)> = rows
        .iter()
        .map(|r| (&r["id"], &r["meter_id"], &r["event_type"], &r["event_of"]))
        .collect();
    let first = &rows[0]["id"];
    // The event of a type: a row per meter it fed, each with the type, the others pointing
    // at its first row; the event on one meter has neither.
    assert_eq!(
        shown,
        [
            (
                first,
                &json!("requests"),
                &json!("completion"),
                &Value::Null
            ),
            (
                &rows[1]["id"],
                &json!("tokens"),
                &json!("completion"),
                first
            ),
            (
                &rows[2]["id"],
                &json!("active_users"),
                &json!("completion"),
                first
            ),
            (&rows[3]["id"], &json!("tokens"), &Value::Null, &Value::Null),
        ]
    );

    // The CSV has the same two columns, last.
    let csv = s.stdout_comparable(&["export", "events"]);
    let mut lines = csv.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .ends_with(",meter_id,properties,amount,event_type,event_of")
    );
    let ends: Vec<String> = lines
        .map(|l| l.rsplitn(3, ',').take(2).collect::<Vec<_>>().join("|"))
        .collect();
    let first = first.to_string();
    assert_eq!(
        ends,
        [
            "|completion".to_string(),
            format!("{first}|completion"),
            format!("{first}|completion"),
            "|".to_string(),
        ]
    );
}
