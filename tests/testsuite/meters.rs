//! Several meters per plan, each with its own aggregation and cap, through the real binary:
//! every aggregation exact by event time, caps per meter that hold under racing processes,
//! bad input refused with exit 2 and nothing written.

use crate::support::cli::Scratch;
use crate::support::engine::{Engine, engine_tests};
use serde_json::Value;

engine_tests!(
    each_aggregation_is_exact_and_capped_on_its_own_meter,
    a_key_resent_with_another_meter_or_properties_is_a_conflict,
    exports_are_per_meter,
    history_is_per_meter,
    batch_lines_name_their_meter_and_properties,
    meter_caps_hold_under_racing_processes,
    a_closed_period_keeps_every_meters_terms,
    a_plan_change_alerts_on_every_meter_it_moves_up,
    members_are_per_sum_or_count_meter,
    bad_meter_input_is_refused_and_writes_nothing,
    alerts_are_per_meter_and_level_and_sent_once,
    empty_distinct_values_repeated_properties_and_status_with_meters,
    distinct_values_are_exact_within_and_across_batches,
);

/// An AI API: requests capped, tokens by model with overage, active users capped, seats as
/// the latest value, peak concurrency as the max.
pub(crate) const PLANS: &str = r#"
[[meters]]
id = "requests"
name = "API requests"
aggregation = "count"

[[meters]]
id = "tokens"
aggregation = "sum"
property = "tokens"
group_by = ["model"]

[[meters]]
id = "users"
aggregation = "unique_count"
property = "user"

[[meters]]
id = "seats"
aggregation = "latest"
property = "seats"

[[meters]]
id = "peak"
aggregation = "max"
property = "concurrency"

[[plans]]
id = "free"
[plans.meters.requests]
included = 5
[plans.meters.tokens]
included = 1000
at_limit = "overage"
overage_rate = "0.002"
[plans.meters.users]
included = 2
[plans.meters.seats]
included = 10
[plans.meters.peak]
included = 8
"#;

pub(crate) fn scratch(engine: Engine) -> Scratch {
    let s = Scratch::on(engine);
    std::fs::write(&s.plans, PLANS).unwrap();
    s.add_customer("acme", "free", "2026-11-01");
    s
}

/// `record acme ARGS --json`: (exit code, JSON).
fn record(s: &Scratch, args: &[&str]) -> (i32, Value) {
    record_for(s, "acme", args)
}

/// `record CUSTOMER ARGS --json`: (exit code, JSON).
fn record_for(s: &Scratch, customer: &str, args: &[&str]) -> (i32, Value) {
    let out = s
        .cmd()
        .args(["record", customer, "--json"])
        .args(args)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap(), json)
}

fn meter(s: &Scratch, id: &str) -> Value {
    s.json(&["check", "acme", "--meter", id, "--json"])
}

fn each_aggregation_is_exact_and_capped_on_its_own_meter(engine: Engine) {
    let s = scratch(engine);
    // count: the default meter (first in [[meters]]); capped at 5.
    for _ in 0..5 {
        assert_eq!(record(&s, &[]).0, 0);
    }
    assert_eq!(record(&s, &[]).0, 3, "the sixth request passes the cap");
    assert_eq!(meter(&s, "requests")["used"], 5);

    // sum by model, with overage: never refused.
    for (tokens, model) in [("600", "small"), ("300", "large"), ("400", "small")] {
        let (code, _) = record(
            &s,
            &[
                "--meter",
                "tokens",
                "--property",
                &format!("tokens={tokens}"),
                "--property",
                &format!("model={model}"),
            ],
        );
        assert_eq!(code, 0);
    }
    let tokens = meter(&s, "tokens");
    assert_eq!(tokens["used"], 1300);
    assert_eq!(tokens["overage_units"], 300);
    assert_eq!(tokens["overage_amount"], "0.6");
    assert_eq!(
        tokens["groups"],
        serde_json::json!([
            {"key": {"model": "small"}, "used": 1000, "overage_units": 300, "overage_amount": "0.6"},
            {"key": {"model": "large"}, "used": 300, "overage_units": 0, "overage_amount": "0"}
        ])
    );

    // unique_count: a third distinct user is refused, a user already seen still passes.
    for (user, code) in [("ann", 0), ("bob", 0), ("cat", 3), ("ann", 0)] {
        assert_eq!(
            record(
                &s,
                &["--meter", "users", "--property", &format!("user={user}")]
            )
            .0,
            code,
            "{user}"
        );
    }
    assert_eq!(meter(&s, "users")["used"], 2);

    // latest: by event time, ties by id; a late event never overwrites a newer one; a value
    // above the limit is refused.
    let at = |t: &str| format!("2026-11-27T{t}Z");
    for (seats, when, code) in [
        ("4", "10:00:00", 0),
        ("6", "09:00:00", 0),
        ("11", "11:00:00", 3),
    ] {
        assert_eq!(
            record(
                &s,
                &[
                    "--meter",
                    "seats",
                    "--property",
                    &format!("seats={seats}"),
                    "--at",
                    &at(when)
                ]
            )
            .0,
            code
        );
    }
    assert_eq!(meter(&s, "seats")["used"], 4, "the 09:00 event came late");

    // max: a value above the limit is refused; the largest value is kept.
    for (value, code) in [("3", 0), ("7", 0), ("5", 0), ("9", 3)] {
        assert_eq!(
            record(
                &s,
                &[
                    "--meter",
                    "peak",
                    "--property",
                    &format!("concurrency={value}")
                ]
            )
            .0,
            code
        );
    }
    assert_eq!(meter(&s, "peak")["used"], 7);

    // check without --meter: every meter, and allowed is false while a capped meter refuses.
    let all = s.json(&["check", "acme", "--json"]);
    let ids: Vec<&str> = all["meters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["meter"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["requests", "tokens", "users", "seats", "peak"]);
    assert_eq!(all["allowed"], false);
    assert_eq!(
        all["overage_total"], "0.6",
        "tokens' overage; the capped meters have none"
    );
}

fn bad_meter_input_is_refused_and_writes_nothing(engine: Engine) {
    let s = scratch(engine);
    let before = s.dump();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--meter", "tokenz"],
            "meter \"tokenz\" is not in plans.toml",
        ),
        (&["--meter", "tokens"], "needs the property \"tokens\""),
        (
            &["--meter", "tokens", "--property", "tokens=lots"],
            "must be a whole number",
        ),
        (
            &["--meter", "tokens", "--property", "tokens=-5"],
            "must be a whole number",
        ),
        (
            &["--meter", "users", "--property", "user=a\u{202e}b"],
            "without control, bidi or zero-width",
        ),
        (&["--property", "bad key=1"], "property name"),
    ];
    for (args, message) in cases {
        let out = s
            .cmd()
            .args(["record", "acme"])
            .args(*args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    let many: Vec<String> = (0..21).map(|i| format!("--property=k{i}=v")).collect();
    let out = s
        .cmd()
        .args(["record", "acme"])
        .args(&many)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at most 20"));
    assert_eq!(s.dump(), before, "nothing written");
}

fn a_key_resent_with_another_meter_or_properties_is_a_conflict(engine: Engine) {
    let s = scratch(engine);
    let args = [
        "--meter",
        "tokens",
        "--property",
        "tokens=5",
        "--property",
        "model=small",
        "--key",
        "k1",
    ];
    assert_eq!(record(&s, &args).0, 0);
    let (code, again) = record(&s, &args);
    assert_eq!((code, again["duplicate"].clone()), (0, Value::Bool(true)));
    let out = s
        .cmd()
        .args([
            "record",
            "acme",
            "--meter",
            "tokens",
            "--property",
            "tokens=6",
            "--property",
            "model=small",
            "--key",
            "k1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("properties"));
    assert_eq!(meter(&s, "tokens")["used"], 5);
}

/// 8 processes race on two capped meters at once: neither passes its cap, and every
/// counted event is in the database exactly once.
fn meter_caps_hold_under_racing_processes(engine: Engine) {
    let s = scratch(engine);
    let answers: Vec<(i32, i32)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|worker| {
                let s = &s;
                scope.spawn(move || {
                    let user = format!("user={worker}");
                    let requests = record(s, &[]).0;
                    let users = record(s, &["--meter", "users", "--property", &user]).0;
                    (requests, users)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let counted = |pick: fn(&(i32, i32)) -> i32| answers.iter().filter(|a| pick(a) == 0).count();
    assert_eq!(counted(|a| a.0), 5, "{answers:?}");
    assert_eq!(counted(|a| a.1), 2, "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|(r, u)| [0, 3].contains(r) && [0, 3].contains(u))
    );
    assert_eq!(meter(&s, "requests")["used"], 5);
    assert_eq!(meter(&s, "users")["used"], 2);
    assert_eq!(s.inspect().number("SELECT COUNT(*) FROM usage_events"), 7);
}

/// Warning levels and alerts are per customer × period × meter × level, each once; the alert
/// JSON names its meter.
fn alerts_are_per_meter_and_level_and_sent_once(engine: Engine) {
    let s = scratch(engine);
    let sink = s.dir.path().join("alerts.jsonl");
    let mut plans = std::fs::read_to_string(&s.plans).unwrap();
    plans.push_str(&format!(
        "\n[[alerts]]\ncommand = [\"sh\", \"-c\", \"cat >> {}; echo >> {}\"]\n",
        sink.display(),
        sink.display()
    ));
    std::fs::write(&s.plans, plans).unwrap();
    // requests: 4 of 5 is warning, 5 of 5 is hard_cap (critical crossed on the way).
    for _ in 0..6 {
        record(&s, &[]);
    }
    // users: 1 of 2 is ok... 2 of 2 is hard_cap; a seen user crosses nothing again.
    for user in ["ann", "bob", "ann"] {
        record(
            &s,
            &["--meter", "users", "--property", &format!("user={user}")],
        );
    }
    let rows = s
        .inspect()
        .rows("SELECT meter_id, level FROM alerts ORDER BY meter_id, level");
    let rows: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str()))
        .collect();
    assert_eq!(
        rows,
        [
            ("requests", "critical"),
            ("requests", "hard_cap"),
            ("requests", "warning"),
            ("users", "critical"),
            ("users", "hard_cap"),
            ("users", "warning"),
        ]
    );
    s.cmd().arg("alerts").assert().success();
    s.cmd().arg("alerts").assert().success();
    let sent = std::fs::read_to_string(&sink).unwrap();
    let alerts: Vec<Value> = sent
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(alerts.len(), 6, "each alert sent once: {sent}");
    let users = alerts.iter().filter(|a| a["meter"] == "users").count();
    assert_eq!(users, 3);
}

/// `export usage` has one row per customer × period × meter; `export events` names each
/// event's meter, properties and amount.
fn exports_are_per_meter(engine: Engine) {
    let s = scratch(engine);
    record(&s, &[]);
    record(
        &s,
        &[
            "--meter",
            "tokens",
            "--property",
            "tokens=40",
            "--property",
            "model=small",
        ],
    );
    record(&s, &["--meter", "users", "--property", "user=ann"]);
    let out = s
        .cmd()
        .args(["export", "usage", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let rows: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let per_meter: Vec<(&str, i64)> = rows
        .iter()
        .map(|r| (r["meter_id"].as_str().unwrap(), r["used"].as_i64().unwrap()))
        .collect();
    assert_eq!(per_meter, [("requests", 1), ("tokens", 40), ("users", 1)]);
    let out = s
        .cmd()
        .args(["export", "events", "--format", "json"])
        .output()
        .unwrap();
    let events: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events[1]["meter_id"], "tokens");
    assert_eq!(
        events[1]["properties"],
        r#"{"model":"small","tokens":"40"}"#
    );
    assert_eq!(events[1]["amount"], 40);
}

/// `history --meter` reads one meter's periods; without `--meter`, the default meter's.
fn history_is_per_meter(engine: Engine) {
    let s = scratch(engine);
    for at in ["2026-11-03T10:00:00Z", "2026-11-20T10:00:00Z"] {
        record(&s, &["--at", at]);
    }
    record(
        &s,
        &[
            "--meter",
            "tokens",
            "--property",
            "tokens=70",
            "--at",
            "2026-11-04T10:00:00Z",
        ],
    );
    let rows = s.json(&["history", "acme", "--periods", "2", "--json"]);
    let used: Vec<i64> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["used"].as_i64().unwrap())
        .collect();
    assert_eq!(
        used,
        [2],
        "the customer's one period so far: November's two requests"
    );
    let tokens = s.json(&[
        "history",
        "acme",
        "--meter",
        "tokens",
        "--periods",
        "1",
        "--json",
    ]);
    assert_eq!(tokens[0]["used"], 70);
    assert_eq!(tokens[0]["meter_event"], "tokens");
    let out = s
        .cmd()
        .args(["history", "acme", "--meter", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `record --batch`: each line may carry `"meter"` and `"properties"`; a bad line is refused
/// alone, with its line number.
fn batch_lines_name_their_meter_and_properties(engine: Engine) {
    let s = scratch(engine);
    let lines = [
        r#"{"customer":"acme"}"#,
        r#"{"customer":"acme","meter":"tokens","properties":{"tokens":250,"model":"small"}}"#,
        r#"{"customer":"acme","meter":"users","properties":{"user":"ann"}}"#,
        r#"{"customer":"acme","meter":"tokens","properties":{"tokens":"many"}}"#,
        r#"{"customer":"acme","meter":"tokens","properties":{"tokens":{"nested":1}}}"#,
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
    let statuses: Vec<i64> = results
        .iter()
        .map(|r| r["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 200, 200, 400, 400], "{results:?}");
    assert_eq!(meter(&s, "requests")["used"], 1);
    assert_eq!(meter(&s, "tokens")["used"], 250);
    assert_eq!(meter(&s, "users")["used"], 1);
}

/// Found by trying it as a user: an empty id counted as one more distinct user, a property
/// given twice silently kept the last, and `status` showed the `usage` meter (0, unlimited)
/// beside [[meters]] instead of a meter that is counted.
fn empty_distinct_values_repeated_properties_and_status_with_meters(engine: Engine) {
    let s = scratch(engine);
    let before = s.dump();
    let out = s
        .cmd()
        .args(["record", "acme", "--meter", "users", "--property", "user="])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("property user is empty"));
    let out = s
        .cmd()
        .args([
            "record",
            "acme",
            "--meter",
            "tokens",
            "--property",
            "tokens=1",
        ])
        .args(["--property", "model=small", "--property", "model=large"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("given twice"));
    assert_eq!(s.dump(), before, "nothing written");

    for user in ["ann", "bob"] {
        record(
            &s,
            &["--meter", "users", "--property", &format!("user={user}")],
        );
    }
    record(&s, &[]);
    let status = s.json(&["status", "--json"]);
    let acme = &status[0];
    assert_eq!(acme["used"], 2, "users, 2 of 2, nearest its limit: {acme}");
    assert_eq!(acme["limit"], 2);
    assert_eq!(acme["allowed"], false);
    assert_eq!(acme["meters"].as_array().unwrap().len(), 5);
    let text = String::from_utf8(s.cmd().arg("status").output().unwrap().stdout).unwrap();
    assert!(text.contains("2 / 2"), "{text}");
}

/// The period snapshot of plan terms covers every meter: once October has closed, editing
/// plans.toml changes neither its caps (a late event into it is decided on the terms it was
/// billed under), nor its history, nor its export; the current period follows the file.
fn a_closed_period_keeps_every_meters_terms(engine: Engine) {
    let s = scratch(engine);
    s.add_customer("globex", "free", "2026-10-01");
    let record_globex = |args: &[&str]| record_for(&s, "globex", args).0;
    for day in 1..=5 {
        let at = format!("2026-10-0{day}T10:00:00Z");
        assert_eq!(record_globex(&["--at", &at]), 0);
    }
    let tokens = ["--meter", "tokens", "--property", "tokens=900"];
    assert_eq!(
        record_globex(&[&tokens[..], &["--at", "2026-10-06T10:00:00Z"]].concat()),
        0
    );
    // November, the current period, counts under the same terms for now.
    assert_eq!(record_globex(&tokens), 0);

    let text = std::fs::read_to_string(&s.plans).unwrap();
    let edited = text
        .replacen(
            "[plans.meters.requests]\nincluded = 5",
            "[plans.meters.requests]\nincluded = 50",
            1,
        )
        .replacen(
            "[plans.meters.tokens]\nincluded = 1000",
            "[plans.meters.tokens]\nincluded = 10",
            1,
        );
    assert_ne!(edited, text);
    std::fs::write(&s.plans, edited).unwrap();

    assert_eq!(
        record_globex(&["--at", "2026-10-07T10:00:00Z"]),
        3,
        "October kept its cap of 5 requests"
    );
    assert_eq!(record_globex(&[]), 0, "November follows plans.toml: 50");

    let history = |meter: &str| {
        s.json(&[
            "history",
            "globex",
            "--meter",
            meter,
            "--periods",
            "2",
            "--json",
        ])
    };
    let requests = history("requests");
    assert_eq!(
        (requests[0]["used"].as_i64(), requests[0]["limit"].as_i64()),
        (Some(5), Some(5))
    );
    assert_eq!(
        (requests[1]["used"].as_i64(), requests[1]["limit"].as_i64()),
        (Some(1), Some(50))
    );
    let tokens = history("tokens");
    assert_eq!(tokens[0]["limit"], 1000);
    assert_eq!(tokens[0]["overage_amount"], "0", "900 of 1,000 included");
    assert_eq!(tokens[1]["limit"], 10);
    assert_eq!(tokens[1]["overage_amount"], "1.78", "890 over at 0.002");

    let out = s
        .cmd()
        .args([
            "export",
            "usage",
            "--customer",
            "globex",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let october_tokens = rows
        .iter()
        .find(|r| r["meter_id"] == "tokens" && r["period_start"] == "2026-10-01T00:00:00Z")
        .expect("October's tokens row");
    assert_eq!(october_tokens["included"], 1000);
    assert_eq!(october_tokens["at_limit"], "overage");
    assert_eq!(october_tokens["overage_rate"], "0.002");
}

/// `customer set-plan` to a plan with lower limits alerts on each meter it moves up a level,
/// as on `usage`: the level is per customer × period × meter.
fn a_plan_change_alerts_on_every_meter_it_moves_up(engine: Engine) {
    let s = scratch(engine);
    let text = std::fs::read_to_string(&s.plans).unwrap();
    let small = "\n[[plans]]\nid = \"small\"\n[plans.meters.tokens]\nincluded = 100\n\
                 [plans.meters.users]\nincluded = 10\n";
    std::fs::write(&s.plans, format!("{text}{small}")).unwrap();
    let (code, _) = record(&s, &["--meter", "tokens", "--property", "tokens=150"]);
    assert_eq!(code, 0);
    let (code, _) = record(&s, &["--meter", "users", "--property", "user=ann"]);
    assert_eq!(code, 0);
    let levels = || {
        s.inspect().rows(
            "SELECT meter_id, level FROM alerts WHERE customer_id = 'acme'
             ORDER BY meter_id, used, level",
        )
    };
    assert_eq!(
        levels(),
        Vec::<Vec<String>>::new(),
        "150 of 1,000 tokens, 1 of 2 users"
    );
    s.cmd()
        .args(["customer", "set-plan", "acme", "small"])
        .assert()
        .success();
    let expected: Vec<Vec<String>> = ["critical", "hard_cap", "warning"]
        .iter()
        .map(|level| vec!["tokens".to_string(), level.to_string()])
        .collect();
    assert_eq!(
        levels(),
        expected,
        "150 of 100 tokens; 1 of 10 users stays ok"
    );
    // Back and forth again: each level once per period and meter.
    for plan in ["free", "small"] {
        s.cmd()
            .args(["customer", "set-plan", "acme", plan])
            .assert()
            .success();
    }
    assert_eq!(levels(), expected);
}

/// `check` in text, without `--meter`: the period once, then every meter's line (a user with
/// three meters must not see only the first), with the overage of those that bill one.
#[test]
fn check_in_text_shows_every_meter() {
    let s = scratch(Engine::Sqlite);
    let tokens = ["--meter", "tokens", "--property", "tokens=1500"];
    assert_eq!(record(&s, &tokens).0, 0);
    assert_eq!(
        record(&s, &["--meter", "users", "--property", "user=ann"]).0,
        0
    );
    let out = s.cmd().args(["check", "acme"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "acme  plan free  period 2026-11-01 .. 2026-12-01");
    assert_eq!(
        &lines[1..],
        [
            "requests  used 0 / 5 (0.0 %)  level ok  allowed",
            "tokens    used 1,500 / 1,000 (150.0 %)  level hard_cap (overage)  allowed  overage 500 units x $0.002 = $1.00",
            "users     used 1 / 2 (50.0 %)  level ok  allowed",
            "seats     used 0 / 10 (0.0 %)  level ok  allowed",
            "peak      used 0 / 8 (0.0 %)  level ok  allowed",
            "overage total $1.00",
        ]
    );
}

/// `status` names each customer's meter nearest its limit, and `history` in text, without
/// `--meter`, shows every meter under its name (the first alone was unnamed).
#[test]
fn status_and_history_in_text_name_their_meters() {
    let s = scratch(Engine::Sqlite);
    assert_eq!(
        record(&s, &["--meter", "users", "--property", "user=ann"]).0,
        0
    );
    let text = |args: &[&str]| {
        let out = s.cmd().args(args).output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let status = text(&["status"]);
    let header = status.lines().next().unwrap();
    assert!(header.contains(" METER "), "{status}");
    let acme = status.lines().nth(1).unwrap();
    assert!(
        acme.contains(" users ") && acme.contains("1 / 2"),
        "{status}"
    );

    let history = text(&["history", "acme", "--periods", "1"]);
    let titles: Vec<&str> = history
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with("FROM") && !l.starts_with("2026"))
        .collect();
    assert_eq!(
        titles,
        [
            "requests (API requests)",
            "tokens",
            "users",
            "seats",
            "peak"
        ]
    );
    assert_eq!(history.matches("FROM ").count(), 5, "{history}");
}

/// `members --meter`: each member's share of a sum or count meter in the current period (the
/// flag was accepted and ignored); events of another meter count elsewhere, and an
/// aggregation that is not a sum of shares is refused with exit 2.
fn members_are_per_sum_or_count_meter(engine: Engine) {
    let s = scratch(engine);
    for (tokens, user) in [
        ("300", Some("bob")),
        ("100", Some("ann")),
        ("50", None),
        ("200", Some("bob")),
    ] {
        let property = format!("tokens={tokens}");
        let mut args = vec!["--meter", "tokens", "--property", &property];
        if let Some(user) = user {
            args.extend(["--user", user]);
        }
        assert_eq!(record(&s, &args).0, 0);
    }
    record(&s, &["--user", "bob"]);
    let tokens = s.json(&["members", "acme", "--meter", "tokens", "--json"]);
    assert_eq!(tokens["used"], 650);
    let members: Vec<(Value, i64)> = tokens["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["user_id"].clone(), m["used"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        members,
        [
            (Value::from("bob"), 500),
            (Value::from("ann"), 100),
            (Value::Null, 50)
        ]
    );
    let requests = s.json(&["members", "acme", "--json"]);
    assert_eq!(
        (
            requests["used"].as_i64(),
            requests["members"][0]["user_id"].as_str()
        ),
        (Some(1), Some("bob"))
    );
    let out = s
        .cmd()
        .args(["members", "acme", "--meter", "users"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sum and count meters"));
}

/// unique_count in `record --batch`: a batch asks the database about its values at once and
/// writes its new ones together, so repeats within a batch, values stored by an earlier batch,
/// refusals at the cap and a grouped meter's groups must each still count exactly once.
fn distinct_values_are_exact_within_and_across_batches(engine: Engine) {
    let s = Scratch::on(engine);
    std::fs::write(
        &s.plans,
        r#"
[[meters]]
id = "users"
aggregation = "unique_count"
property = "user"
[[meters]]
id = "visitors"
aggregation = "unique_count"
property = "user"
group_by = ["region"]
[[meters]]
id = "peak"
aggregation = "max"
property = "concurrency"
group_by = ["region"]
[[plans]]
id = "free"
[plans.meters.users]
included = 3
"#,
    )
    .unwrap();
    s.add_customer("acme", "free", "2026-11-01");
    let batch = |events: &[(&str, &str, Option<&str>)]| -> Vec<bool> {
        let lines: Vec<String> = events
            .iter()
            .map(|(meter, user, region)| {
                let mut properties = serde_json::json!({ "user": user });
                if let Some(region) = region {
                    properties["region"] = (*region).into();
                }
                serde_json::json!({"customer": "acme", "meter": meter, "properties": properties})
                    .to_string()
            })
            .collect();
        let out = s
            .cmd()
            .args(["record", "--batch", "-", "--json"])
            .write_stdin(lines.join("\n"))
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let result: Value = serde_json::from_str(l).unwrap();
                result["recorded"].as_bool().unwrap_or(false)
            })
            .collect()
    };
    let recorded = batch(&[
        ("users", "ann", None),
        ("users", "ann", None),
        ("users", "bob", None),
        ("users", "cat", None),
        ("users", "dan", None),
        ("users", "ann", None),
        ("users", "dan", None),
        ("visitors", "ann", Some("eu")),
        ("visitors", "ann", Some("eu")),
        ("visitors", "ann", Some("us")),
        ("visitors", "bob", Some("eu")),
    ]);
    assert_eq!(
        recorded,
        [
            true, true, true, true, false, true, false, true, true, true, true
        ],
        "dan is the fourth user: refused, twice"
    );
    assert_eq!(meter(&s, "users")["used"], 3);
    let visitors = meter(&s, "visitors");
    assert_eq!(visitors["used"], 2, "{visitors}");
    assert_eq!(
        visitors["groups"],
        serde_json::json!([{"key": {"region": "eu"}, "used": 2, "overage_units": 0, "overage_amount": "0"}, {"key": {"region": "us"}, "used": 1, "overage_units": 0, "overage_amount": "0"}])
    );

    let recorded = batch(&[
        ("users", "ann", None),
        ("users", "eve", None),
        ("users", "bob", None),
        ("users", "cat", None),
        ("visitors", "cat", Some("us")),
        ("visitors", "ann", Some("us")),
        ("visitors", "bob", Some("us")),
    ]);
    assert_eq!(recorded, [true, false, true, true, true, true, true]);
    assert_eq!(meter(&s, "users")["used"], 3);
    let visitors = meter(&s, "visitors");
    assert_eq!(visitors["used"], 3, "{visitors}");
    assert_eq!(
        visitors["groups"],
        serde_json::json!([{"key": {"region": "us"}, "used": 3, "overage_units": 0, "overage_amount": "0"}, {"key": {"region": "eu"}, "used": 2, "overage_units": 0, "overage_amount": "0"}])
    );
    // More values than one query asks about or one INSERT writes, and a repeat among them.
    let many: Vec<String> = (0..300).map(|i| format!("v{i}")).collect();
    let mut events: Vec<(&str, &str, Option<&str>)> = many
        .iter()
        .map(|user| ("visitors", user.as_str(), Some("eu")))
        .collect();
    events.push(("visitors", "v7", Some("eu")));
    events.push(("visitors", "ann", Some("eu")));
    assert!(batch(&events).iter().all(|recorded| *recorded));
    let visitors = meter(&s, "visitors");
    assert_eq!(visitors["used"], 303, "{visitors}");
    assert_eq!(visitors["groups"][0]["used"], 302, "{visitors}");
    let recorded = batch(&[
        ("visitors", "v299", Some("us")),
        ("visitors", "v300", Some("us")),
    ]);
    assert_eq!(recorded, [true, true]);
    let visitors = meter(&s, "visitors");
    assert_eq!(visitors["used"], 304, "{visitors}");
    assert_eq!(visitors["groups"][1]["used"], 5, "{visitors}");
    assert_eq!(
        s.inspect().number(
            "SELECT COUNT(*) FROM meter_values WHERE meter_id = 'visitors' AND value LIKE 'v%'"
        ),
        300 + 1 + 300 + 2
    );

    // A max below the total's is still its own group's max.
    for (concurrency, region) in [("10", "eu"), ("5", "us")] {
        let out = s
            .cmd()
            .args(["record", "acme", "--meter", "peak"])
            .args(["--property", &format!("concurrency={concurrency}")])
            .args(["--property", &format!("region={region}")])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
    }
    let peak = meter(&s, "peak");
    assert_eq!(peak["used"], 10);
    assert_eq!(
        peak["groups"],
        serde_json::json!([{"key": {"region": "eu"}, "used": 10, "overage_units": 0, "overage_amount": "0"}, {"key": {"region": "us"}, "used": 5, "overage_units": 0, "overage_amount": "0"}])
    );
    let stored = s.inspect().rows(
        "SELECT meter_id, group_key, value FROM meter_values WHERE value NOT LIKE 'v%'
         ORDER BY meter_id, group_key, value",
    );
    let stored: Vec<String> = stored.iter().map(|r| r.join(" ")).collect();
    assert_eq!(
        stored,
        [
            "users  ann",
            "users  bob",
            "users  cat",
            "visitors  ann",
            "visitors  bob",
            "visitors  cat",
            "visitors {\"region\":\"eu\"} ann",
            "visitors {\"region\":\"eu\"} bob",
            "visitors {\"region\":\"us\"} ann",
            "visitors {\"region\":\"us\"} bob",
            "visitors {\"region\":\"us\"} cat",
        ]
    );
}
