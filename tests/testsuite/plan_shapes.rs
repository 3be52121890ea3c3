//! Every command a user types, and the HTTP routes, under both plans.toml shapes and both
//! engines (`shape_tests!`): the legacy one-meter file and the `[[meters]]` file `meterline
//! init` writes. One body per test holds for both shapes (support/shapes.rs says how to count
//! on each), so an answer that is right on one shape only fails here.

use predicates::prelude::*;
use predicates::str::contains;
use serde_json::{Value, json};

use crate::support::cli::Scratch;
use crate::support::engine::{Engine, engine_tests};
use crate::support::meters::{dump_all, meter_used};
use crate::support::serve::{Server, create_token};
use crate::support::shapes::{Shape, grouped, shape_tests};
use crate::support::stripe::{FakeStripe, KEY};

shape_tests!(
    customers_records_and_every_read_of_them,
    batch_lines_record_each_alone_and_a_resend_counts_nothing,
    plans_show_each_plans_terms_per_meter_and_each_meters_stripe_event,
    exports_doctor_and_the_sync_preview,
    the_demo_fills_a_database_whose_counters_match_its_events,
    the_demo_shows_usage_on_every_meter_and_customers_at_risk,
    the_http_routes_record_and_check,
    a_duplicate_answers_with_its_own_meters_standing,
    export_usage_names_each_rows_meter_and_stripe_event,
    backup_copies_and_verifies_a_database_with_events,
);

engine_tests!(a_max_or_latest_meter_at_its_limit_still_allows_that_value);

/// acme on pro (overage on the capped meter), capped on free (a hard cap there), both
/// anchored on the 1st: the period is 2026-11-01 .. 2026-12-01.
fn two_customers(engine: Engine, shape: Shape) -> Scratch {
    let s = Scratch::shaped(engine, shape);
    s.add_customer("acme", "pro", "2026-11-01");
    s.add_customer("capped", "free", "2026-11-01");
    s
}

/// `ARGS` followed by more.
fn with(args: Vec<String>, more: &[&str]) -> Vec<String> {
    args.into_iter()
        .chain(more.iter().map(|a| a.to_string()))
        .collect()
}

/// The object of `meter` in a check's or a status entry's `meters`.
fn meter_of<'a>(check: &'a Value, meter: &str) -> &'a Value {
    check["meters"]
        .as_array()
        .unwrap_or_else(|| panic!("no meters in {check}"))
        .iter()
        .find(|m| m["meter"] == meter)
        .unwrap_or_else(|| panic!("no meter {meter} in {check}"))
}

/// The meter ids of a check's or a status entry's `meters`, in order.
fn meter_ids(check: &Value) -> Vec<&str> {
    check["meters"]
        .as_array()
        .unwrap_or_else(|| panic!("no meters in {check}"))
        .iter()
        .map(|m| m["meter"].as_str().unwrap())
        .collect()
}

fn customers_records_and_every_read_of_them(engine: Engine, shape: Shape) {
    let s = Scratch::shaped(engine, shape);
    let (default, capped, cap) = (
        shape.default_meter(),
        shape.capped_meter(),
        shape.free_cap(),
    );

    // customer add, set-plan, list: text and JSON.
    s.cmd()
        .args([
            "customer",
            "add",
            "acme",
            "--plan",
            "pro",
            "--anchor",
            "2026-11-01",
        ])
        .assert()
        .success()
        .stdout(contains("acme").and(contains("pro")));
    let added = s.json(&[
        "customer",
        "add",
        "capped",
        "--plan",
        "free",
        "--anchor",
        "2026-11-01",
        "--json",
    ]);
    assert_eq!(
        (&added["id"], &added["plan_id"]),
        (&json!("capped"), &json!("free"))
    );
    s.cmd()
        .args(["customer", "set-plan", "acme", "free"])
        .assert()
        .success()
        .stdout(contains("free"));
    assert_eq!(
        s.json(&["customer", "set-plan", "acme", "pro", "--json"])["plan_id"],
        "pro"
    );
    let list = s.json(&["customer", "list", "--json"]);
    let plans: Vec<(&str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_str().unwrap(), c["plan_id"].as_str().unwrap()))
        .collect();
    assert_eq!(plans, [("acme", "pro"), ("capped", "free")]);
    s.cmd()
        .args(["customer", "list"])
        .assert()
        .success()
        .stdout(contains("acme").and(contains("capped")));

    // record: one unit on the default meter, in text, then in JSON.
    s.cmd()
        .args(["record", "acme", "--user", "alice"])
        .assert()
        .success()
        // With [[meters]] the line names the meter: "recorded 1 on requests for acme".
        .stdout(contains("recorded 1 ").and(contains(" for acme")));
    let (code, second) = s.record_json("acme", &[] as &[&str]);
    assert_eq!(code, 0, "{second}");
    assert_eq!(
        (&second["recorded"], &second["duplicate"], &second["used"]),
        (&json!(true), &json!(false), &json!(2)),
        "{second}"
    );
    assert_eq!(meter_used(&s, "acme", default), 2);

    // Exactly the cap, under a key; then the same key again: a duplicate that counts nothing.
    let fill = with(shape.counting(cap), &["--key", "fill"]);
    let (code, full) = s.record_json("capped", &fill);
    assert_eq!(code, 0, "{full}");
    assert_eq!(
        (&full["used"], &full["limit"]),
        (&json!(cap), &json!(cap)),
        "{full}"
    );
    let (code, again) = s.record_json("capped", &fill);
    assert_eq!(code, 0, "{again}");
    assert_eq!(
        (&again["duplicate"], &again["recorded"], &again["event_id"]),
        (&json!(true), &json!(false), &full["event_id"]),
        "{again}"
    );
    s.cmd()
        .args(["record", "capped"])
        .args(&fill)
        .assert()
        .success()
        .stdout(contains("duplicate key"));
    assert_eq!(meter_used(&s, "capped", capped), cap);
    let cap_text = grouped(shape.free_cap());

    // One more past the cap: refused with exit 3, nothing written.
    let before = dump_all(&s);
    let (code, refused) = s.record_json("capped", &shape.counting(1));
    assert_eq!(code, 3, "{refused}");
    assert_eq!(
        (&refused["recorded"], &refused["used"]),
        (&json!(false), &json!(cap))
    );
    s.cmd()
        .args(["record", "capped"])
        .args(shape.counting(1))
        .assert()
        .code(3)
        .stderr(contains("hard cap"));
    assert_eq!(dump_all(&s), before, "a refused record wrote something");

    // check: text, JSON, --exit-code.
    s.cmd()
        .args(["check", "capped"])
        .assert()
        .success()
        .stdout(contains("BLOCKED").and(contains(format!("{cap_text} / {cap_text}"))));
    let check = s.json(&["check", "capped", "--json"]);
    assert_eq!(meter_ids(&check), shape.meter_ids());
    assert_eq!(check["allowed"], false, "{check}");
    let at_cap = meter_of(&check, capped);
    assert_eq!(
        (
            &at_cap["used"],
            &at_cap["limit"],
            &at_cap["level"],
            &at_cap["allowed"]
        ),
        (&json!(cap), &json!(cap), &json!("hard_cap"), &json!(false))
    );
    assert_eq!(
        s.json(&["check", "capped", "--meter", capped, "--json"]),
        *at_cap
    );
    s.cmd()
        .args(["check", "capped", "--exit-code"])
        .assert()
        .code(3);
    s.cmd()
        .args(["check", "acme", "--exit-code"])
        .assert()
        .success()
        .stdout(contains("allowed"));

    // status: text and JSON, most at risk first, each with every meter.
    s.cmd()
        .args(["status"])
        .assert()
        .success()
        .stdout(contains("2 customers"))
        .stdout(contains("capped").and(contains("hard_cap")));
    let status = s.json(&["status", "--json"]);
    let entries = status.as_array().unwrap();
    assert_eq!(entries.len(), 2, "{status}");
    assert_eq!(entries[0]["customer"], "capped");
    assert_eq!(meter_of(&entries[0], capped), at_cap);
    for entry in entries {
        assert_eq!(meter_ids(entry), shape.meter_ids(), "{entry}");
    }
    assert_eq!(meter_of(&entries[1], default)["used"], 2);

    // history of the capped meter: the period at its cap, under the meter's Stripe event.
    let history = s.json(&["history", "capped", "--meter", capped, "--json"]);
    let last = history.as_array().unwrap().last().unwrap();
    assert_eq!(
        (&last["used"], &last["limit"], &last["meter_event"]),
        (&json!(cap), &json!(cap), &json!(shape.stripe_event(capped))),
        "{history}"
    );
    s.cmd()
        .args(["history", "capped"])
        .assert()
        .success()
        .stdout(contains(format!("{cap_text} / {cap_text}")).and(contains("hard_cap")));

    // members of the default meter: alice's unit and the one without a member.
    let members = s.json(&["members", "acme", "--json"]);
    assert_eq!(members["used"], 2, "{members}");
    assert_eq!(
        members["members"],
        json!([{"user_id": "alice", "used": 1, "share": 0.5},
               {"user_id": null, "used": 1, "share": 0.5}])
    );
    s.cmd()
        .args(["members", "acme"])
        .assert()
        .success()
        .stdout(contains("alice"));
}

fn batch_lines_record_each_alone_and_a_resend_counts_nothing(engine: Engine, shape: Shape) {
    let s = two_customers(engine, shape);
    s.add_customer("globex", "free", "2026-11-01");
    let cap = shape.free_cap();
    let lines = [
        shape.event("acme", 5, "b-1").to_string(),
        shape.event("acme", 5, "b-1").to_string(),
        shape.event("capped", cap + 1, "b-2").to_string(),
        "not json".to_string(),
        json!({"customer": "globex", "key": "b-3"}).to_string(),
    ];
    let out = s.record_batch(&lines, &["--json"]);
    assert_eq!(out.status.code(), Some(2), "an invalid line: exit 2");
    let results: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let statuses: Vec<&Value> = results.iter().map(|r| &r["status"]).collect();
    assert_eq!(
        statuses,
        [
            &json!(200),
            &json!(200),
            &json!(402),
            &json!(400),
            &json!(200)
        ]
    );
    assert_eq!(
        (&results[0]["used"], &results[0]["recorded"]),
        (&json!(5), &json!(true))
    );
    assert_eq!(
        (&results[1]["duplicate"], &results[1]["event_id"]),
        (&json!(true), &results[0]["event_id"]),
        "{}",
        results[1]
    );
    assert_eq!(
        (&results[2]["recorded"], &results[2]["limit"]),
        (&json!(false), &json!(cap))
    );
    assert_eq!(results[4]["used"], 1);
    assert_eq!(meter_used(&s, "acme", shape.capped_meter()), 5);
    assert_eq!(meter_used(&s, "capped", shape.capped_meter()), 0);
    assert_eq!(meter_used(&s, "globex", shape.default_meter()), 1);

    // The same file again: what was stored is a duplicate, the rest fails as before.
    let before = dump_all(&s);
    let again = s.record_batch(&lines, &[]);
    assert_eq!(again.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&again.stderr)
            .lines()
            .last()
            .unwrap_or_default(),
        "recorded 0, duplicate 3, refused 1, invalid 1"
    );
    assert_eq!(dump_all(&s), before, "a resent batch wrote something");
}

fn plans_show_each_plans_terms_per_meter_and_each_meters_stripe_event(
    engine: Engine,
    shape: Shape,
) {
    let s = Scratch::shaped(engine, shape);
    let plans = s.json(&["plans", "--json"]);
    let text = String::from_utf8(s.cmd().arg("plans").output().unwrap().stdout).unwrap();

    // Each meter with its Stripe event.
    let meters: Vec<(&str, &str)> = plans["meters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap(),
                m["stripe_event"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(meters, shape.meters());
    // Each meter's event type: the implicit meter's is `usage`.
    for meter in plans["meters"].as_array().unwrap() {
        assert_eq!(meter["event"], shape.event_type(), "{meter}");
    }

    // Each plan's terms per meter, as the file writes them (without [[meters]], on the plan).
    let shown = |plan: &str| {
        plans["plans"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == plan)
            .unwrap_or_else(|| panic!("no plan {plan} in {plans}"))
            .clone()
    };
    for &(plan, meter, included, at_limit, rate) in shape.plan_terms() {
        let mut terms = json!({"included": included, "at_limit": at_limit, "overage_rate": rate});
        let rates = shape.rates(plan, meter);
        if !rates.is_empty() {
            terms["rates"] = rates.into();
        }
        assert_eq!(shown(plan)["meters"][meter], terms, "{plan} {meter}");
        if let Some(included) = included {
            assert!(text.contains(&grouped(included)), "{plan} {meter}: {text}");
        }
    }
    // A plan-wide event or limit, where shown, is one the file gives this plan: never the
    // legacy default for a file with [[meters]].
    let events: Vec<&str> = shape.stripe_meters().iter().map(|(e, _)| *e).collect();
    for plan in plans["plans"].as_array().unwrap() {
        if let Some(event) = plan.get("meter_event").and_then(Value::as_str) {
            assert!(events.contains(&event), "{plan}");
        }
        if let Some(included) = plan.get("included").filter(|i| !i.is_null()) {
            assert_eq!(
                *included,
                plan["meters"][shape.default_meter()]["included"],
                "{plan}"
            );
        }
    }
    // The text names each meter's Stripe event, and on [[meters]] neither an unlimited plan
    // (every plan caps every meter) nor the legacy event no meter reports to.
    for (_, event) in shape.meters() {
        assert!(text.contains(event), "{event} not in\n{text}");
    }
    if shape == Shape::Meters {
        assert!(!text.contains("unlimited"), "{text}");
        assert!(!text.contains("meterline_usage"), "{text}");
    }
}

/// [`Shape`]'s three events on the real clock (sync always is): acme (pro, mapped) one on the
/// default meter and 7 on the capped meter, capped (free, mapped) its cap.
fn three_events(engine: Engine, shape: Shape) -> Scratch {
    let s = Scratch::shaped(engine, shape).on_the_real_clock();
    for (customer, plan, stripe) in [
        ("acme", "pro", "cus_Acme1234"),
        ("capped", "free", "cus_Capped12"),
    ] {
        s.cmd()
            .args([
                "customer",
                "add",
                customer,
                "--plan",
                plan,
                "--stripe-customer",
                stripe,
            ])
            .assert()
            .success();
    }
    s.cmd().args(["record", "acme"]).assert().success();
    s.cmd()
        .args(["record", "acme"])
        .args(shape.counting(7))
        .assert()
        .success();
    s.cmd()
        .args(["record", "capped"])
        .args(shape.counting(shape.free_cap()))
        .assert()
        .success();
    s
}

/// `export usage` as CSV rows, each a map from column to cell.
fn usage_rows(s: &Scratch) -> Vec<std::collections::HashMap<String, String>> {
    let out = s.cmd().args(["export", "usage"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut csv = csv::Reader::from_reader(&out.stdout[..]);
    let header = csv.headers().unwrap().clone();
    csv.records()
        .map(|row| {
            let row = row.unwrap();
            header
                .iter()
                .map(String::from)
                .zip(row.iter().map(String::from))
                .collect()
        })
        .collect()
}

fn exports_doctor_and_the_sync_preview(engine: Engine, shape: Shape) {
    let s = three_events(engine, shape);
    let (capped, cap) = (shape.capped_meter(), shape.free_cap());

    // export usage: a row per customer × period × meter, with the meter's terms.
    let rows = usage_rows(&s);
    let capped_row = rows
        .iter()
        .find(|r| r["customer_id"] == "capped")
        .unwrap_or_else(|| panic!("no row for capped: {rows:?}"));
    assert_eq!(
        ["meter_id", "used", "plan_id", "included", "at_limit"].map(|c| capped_row[c].as_str()),
        [capped, &cap.to_string(), "free", &cap.to_string(), "block"]
    );
    let acme_used: i64 = rows
        .iter()
        .filter(|r| r["customer_id"] == "acme")
        .map(|r| r["used"].parse::<i64>().unwrap())
        .sum();
    assert_eq!(acme_used, 8, "{rows:?}");

    // export events: each event with its meter, in CSV and JSON Lines.
    let events = s.stdout_comparable(&["export", "events"]);
    assert_eq!(events.lines().count(), 4, "a header and 3 events: {events}");
    let lines: Vec<Value> = s
        .stdout_comparable(&[
            "export",
            "events",
            "--format",
            "json",
            "--customer",
            "capped",
        ])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["meter_id"], capped);

    // doctor against a Stripe with the meters this file needs: healthy; without one of
    // them, it names the missing event.
    let stripe = FakeStripe::start(KEY, chrono::Utc::now());
    let doctor = |args: &[&str]| {
        s.cmd()
            .env("STRIPE_API_KEY", KEY)
            .env("STRIPE_API_BASE", stripe.base())
            .args(args)
            .output()
            .unwrap()
    };
    let (missing, formula) = shape.stripe_meters()[0];
    let out = doctor(&["doctor"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Stripe has no active meter for") && text.contains(missing),
        "{text}"
    );
    stripe.add_meter_with(missing, formula);
    for (event, formula) in &shape.stripe_meters()[1..] {
        stripe.add_meter_with(event, formula);
    }
    let out = doctor(&["doctor", "--json"]);
    let findings: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{findings:?}");
    assert!(
        findings.iter().all(|f| f["verdict"] != "problem"),
        "{findings:?}"
    );
    let meters = findings.iter().find(|f| f["check"] == "meters").unwrap();
    assert_eq!(meters["verdict"], "ok", "{meters}");

    // sync --dry-run: one report per customer × meter, each to its meter's Stripe event.
    let preview = s.json(&["sync", "--dry-run", "--json"]);
    assert_eq!(
        ["events", "customers", "unmapped", "expired", "units"].map(|k| preview[k].clone()),
        [json!(3), json!(2), json!(0), json!(0), json!(8 + cap)],
        "{preview}"
    );
    for group in preview["groups"].as_array().unwrap() {
        let meter = group["meter"].as_str().unwrap();
        assert_eq!(group["event_name"], shape.stripe_event(meter), "{group}");
    }
    let capped_group = preview["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["customer_id"] == "capped")
        .unwrap();
    assert_eq!(
        (&capped_group["meter"], &capped_group["units"]),
        (&json!(capped), &json!(cap))
    );
    assert_eq!(
        s.inspect()
            .number("SELECT COUNT(*) FROM usage_events WHERE stripe_reported_at IS NOT NULL"),
        0,
        "a dry run sent nothing"
    );
}

/// Each `export usage` row names the Stripe event its meter reports to, as `sync` sends it.
fn export_usage_names_each_rows_meter_and_stripe_event(engine: Engine, shape: Shape) {
    let s = three_events(engine, shape);
    let rows = usage_rows(&s);
    assert!(rows.len() >= 2, "{rows:?}");
    for row in &rows {
        assert_eq!(
            row["meter_event_name"],
            shape.stripe_event(&row["meter_id"]),
            "{row:?}"
        );
    }
}

/// `backup`: a verified copy of an SQLite file that says what it holds, and answers as the
/// original; on PostgreSQL it names pg_dump instead.
fn backup_copies_and_verifies_a_database_with_events(engine: Engine, shape: Shape) {
    let s = three_events(engine, shape);
    let (capped, cap) = (shape.capped_meter(), shape.free_cap());
    let copy = s.dir.path().join("copy.db");
    if engine == Engine::Sqlite {
        s.cmd()
            .args(["backup", copy.to_str().unwrap()])
            .assert()
            .success()
            .stdout(contains("2 customers, 3 events"));
        let report = s.json(&[
            "backup",
            s.dir.path().join("copy2.db").to_str().unwrap(),
            "--json",
        ]);
        assert_eq!(
            (&report["customers"], &report["events"]),
            (&json!(2), &json!(3))
        );
        let from_copy = s
            .cmd()
            .env("METERLINE_DB", &copy)
            .args(["check", "capped", "--meter", capped, "--json"])
            .output()
            .unwrap();
        let from_copy: Value = serde_json::from_slice(&from_copy.stdout).unwrap();
        assert_eq!(from_copy["used"], cap);
    } else {
        s.cmd()
            .args(["backup", copy.to_str().unwrap()])
            .assert()
            .code(2)
            .stderr(contains("pg_dump"));
    }
}

fn the_demo_fills_a_database_whose_counters_match_its_events(engine: Engine, shape: Shape) {
    let s = Scratch::shaped(engine, shape);
    let out = s
        .cmd()
        .args(["demo", "--customers", "5", "--events", "300"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // "demo database PATH: 5 customers, N events (…)": N is near 300, not exactly.
    let said = String::from_utf8(out.stdout).unwrap();
    let stored: usize = said
        .split_once("5 customers, ")
        .and_then(|(_, rest)| rest.split_once(" events"))
        .and_then(|(n, _)| n.replace(',', "").parse().ok())
        .unwrap_or_else(|| panic!("{said}"));
    let status = s.json(&["status", "--json"]);
    let entries = status.as_array().unwrap();
    assert_eq!(entries.len(), 5, "{status}");

    // Each sum or count meter's standing is what its events in the period add up to.
    let events: Vec<Value> = s
        .stdout_comparable(&["export", "events", "--format", "json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // A row per meter an event fed: the event's own, and one for each further meter of its
    // type (`event_of`, so counted once in what demo says).
    assert_eq!(
        s.inspect()
            .number("SELECT COUNT(*) FROM usage_events WHERE event_of IS NULL"),
        stored as i64
    );
    assert_eq!(
        events.len() as i64,
        s.inspect().number("SELECT COUNT(*) FROM usage_events")
    );
    let mut compared = 0;
    for entry in entries {
        assert_eq!(meter_ids(entry), shape.meter_ids(), "{entry}");
        for meter in entry["meters"].as_array().unwrap() {
            if !["sum", "count"].contains(&meter["aggregation"].as_str().unwrap()) {
                continue;
            }
            let added: i64 = events
                .iter()
                .filter(|e| {
                    e["customer_id"] == entry["customer"]
                        && e["meter_id"] == meter["meter"]
                        && e["period_start"] == entry["period_start"]
                })
                .map(|e| {
                    e["amount"]
                        .as_i64()
                        .unwrap_or_else(|| e["quantity"].as_i64().unwrap())
                })
                .sum();
            assert_eq!(meter["used"], added, "{}: {meter}", entry["customer"]);
            compared += 1;
        }
    }
    assert!(compared >= 5);
}

/// The demo is "customers on every plan, at every warning level" (crates/store/src/demo.rs),
/// whatever the file: each meter has usage in the current period, and some customer is at
/// warning or above on some meter.
fn the_demo_shows_usage_on_every_meter_and_customers_at_risk(engine: Engine, shape: Shape) {
    let s = Scratch::shaped(engine, shape);
    s.cmd()
        .args(["demo", "--customers", "5", "--events", "300"])
        .assert()
        .success();
    let status = s.json(&["status", "--json"]);
    let meters: Vec<&Value> = status
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|entry| entry["meters"].as_array().unwrap())
        .collect();
    for id in shape.meter_ids() {
        assert!(
            meters
                .iter()
                .any(|m| m["meter"] == id && m["used"].as_i64() > Some(0)),
            "no customer has usage on {id}: {status}"
        );
    }
    assert!(
        meters.iter().any(|m| m["level"] != "ok"),
        "every customer is ok on every meter: {status}"
    );
}

fn the_http_routes_record_and_check(engine: Engine, shape: Shape) {
    let s = two_customers(engine, shape);
    let (default, capped, cap) = (
        shape.default_meter(),
        shape.capped_meter(),
        shape.free_cap(),
    );
    let token = create_token(&s, "shapes");
    let server = Server::start(&s, &[]);
    let api = server.client(&token);

    let health = crate::support::serve::Client::new(&server.base, None).get("/healthz");
    assert_eq!(health.status, 200, "{}", health.body);

    // One event on the capped meter, one on the default meter.
    let one = api.post("/v1/events", &shape.event("acme", 7, "h-1").to_string());
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(
        (&one.json()["recorded"], &one.json()["used"]),
        (&json!(true), &json!(7))
    );
    let plain = api.post("/v1/events", r#"{"customer":"acme","key":"h-2"}"#);
    assert_eq!(plain.status, 200, "{}", plain.body);
    let default_used = meter_used(&s, "acme", default);
    assert_eq!(default_used, if default == capped { 8 } else { 1 });
    assert_eq!(plain.json()["used"], default_used);

    // A batch: the cap exactly, one past it, and h-1 again.
    let batch = api.post(
        "/v1/events/batch",
        &json!({"events": [
            shape.event("capped", cap, "h-3"),
            shape.event("capped", 1, "h-4"),
            shape.event("acme", 7, "h-1"),
        ]})
        .to_string(),
    );
    assert_eq!(batch.status, 200, "{}", batch.body);
    let batch = batch.json();
    let results = batch["results"].as_array().unwrap();
    let statuses: Vec<&Value> = results.iter().map(|r| &r["status"]).collect();
    assert_eq!(statuses, [&json!(200), &json!(402), &json!(200)], "{batch}");
    assert_eq!(results[1]["limit"], cap);
    assert_eq!(
        (&results[2]["duplicate"], &results[2]["event_id"]),
        (&json!(true), &one.json()["event_id"]),
        "{}",
        results[2]
    );

    // A duplicate resend alone: 200, counted once.
    let resend = api.post("/v1/events", &shape.event("capped", cap, "h-3").to_string());
    assert_eq!(resend.status, 200, "{}", resend.body);
    assert_eq!(
        (&resend.json()["duplicate"], &resend.json()["recorded"]),
        (&json!(true), &json!(false))
    );
    assert_eq!(s.inspect().events_with_key("h-3"), 1);
    assert_eq!(meter_used(&s, "capped", capped), cap);

    // The check: what `check --json` prints, the capped meter at its cap.
    let check = api.get("/v1/customers/capped/check");
    assert_eq!(check.status, 200, "{}", check.body);
    let check = check.json();
    assert_eq!(check, s.json(&["check", "capped", "--json"]));
    assert_eq!(check["allowed"], false);
    assert_eq!(meter_of(&check, capped)["used"], cap);
    let one_meter = api.get(&format!("/v1/customers/capped/check?meter={capped}"));
    assert_eq!(one_meter.status, 200, "{}", one_meter.body);
    assert_eq!(one_meter.json(), *meter_of(&check, capped));

    // status: what `status --json` prints, each customer with every meter.
    let status = api.get("/v1/status");
    assert_eq!(status.status, 200, "{}", status.body);
    let status = status.json();
    assert_eq!(status, s.json(&["status", "--json"]));
    for entry in status.as_array().unwrap() {
        assert_eq!(meter_ids(entry), shape.meter_ids(), "{entry}");
    }
}

/// A resent event is answered with the standing of the meter it counts on, whichever way
/// it is resent: `record` (JSON and text), a `record --batch` line, `POST /v1/events` and a
/// batch of them. (Answering with the default meter's standing says `used 0`, unlimited.)
fn a_duplicate_answers_with_its_own_meters_standing(engine: Engine, shape: Shape) {
    let s = two_customers(engine, shape);
    let (capped, cap) = (shape.capped_meter(), shape.free_cap());
    let fill = with(shape.counting(cap), &["--key", "dup"]);
    assert_eq!(s.record_json("capped", &fill).0, 0);
    let standing = s.json(&["check", "capped", "--meter", capped, "--json"]);
    let same_standing = |answer: &Value, how: &str| {
        assert_eq!(answer["duplicate"], true, "{how}: {answer}");
        for field in ["used", "limit", "remaining", "level", "allowed"] {
            assert_eq!(answer[field], standing[field], "{how}: {field} of {answer}");
        }
    };

    same_standing(&s.record_json("capped", &fill).1, "record --json");
    let text = s
        .cmd()
        .args(["record", "capped"])
        .args(&fill)
        .output()
        .unwrap();
    let cap_text = grouped(shape.free_cap());
    assert!(
        String::from_utf8_lossy(&text.stdout).contains(&format!("used {cap_text} / {cap_text}")),
        "record: {text:?}"
    );
    let line = [shape.event("capped", cap, "dup").to_string()];
    let out = s.record_batch(&line, &["--json"]);
    same_standing(
        &serde_json::from_slice(&out.stdout).unwrap(),
        "record --batch",
    );

    let token = create_token(&s, "dup");
    let server = Server::start(&s, &[]);
    let api = server.client(&token);
    let single = api.post("/v1/events", &line[0]);
    assert_eq!(single.status, 200, "{}", single.body);
    same_standing(&single.json(), "POST /v1/events");
    let batch = api.post(
        "/v1/events/batch",
        &json!({"events": [shape.event("capped", cap, "dup")]}).to_string(),
    );
    assert_eq!(batch.status, 200, "{}", batch.body);
    same_standing(&batch.json()["results"][0], "POST /v1/events/batch");
    assert_eq!(s.inspect().events_with_key("dup"), 1);
}

/// A max or latest meter holds a value up to its limit: exactly at the limit, the same
/// value is still allowed, so `check` says allowed (a sum at its limit would refuse one more).
fn a_max_or_latest_meter_at_its_limit_still_allows_that_value(engine: Engine) {
    let s = Scratch::on(engine);
    std::fs::write(
        &s.plans,
        r#"
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
[plans.meters.seats]
included = 10
[plans.meters.peak]
included = 8
"#,
    )
    .unwrap();
    s.add_customer("acme", "free", "2026-11-01");
    for (meter, property) in [("seats", "seats=10"), ("peak", "concurrency=8")] {
        let (code, at_limit) = s.record_json("acme", &["--meter", meter, "--property", property]);
        assert_eq!(code, 0, "{at_limit}");
        // The same value again records: the limit is not passed.
        let (code, again) = s.record_json("acme", &["--meter", meter, "--property", property]);
        assert_eq!(code, 0, "{again}");
        assert_eq!(again["allowed"], true, "{meter}: {again}");
        let check = s.json(&["check", "acme", "--meter", meter, "--json"]);
        assert_eq!(check["allowed"], true, "{meter}: {check}");
    }
    assert_eq!(s.json(&["check", "acme", "--json"])["allowed"], true);
    s.cmd()
        .args(["check", "acme", "--exit-code"])
        .assert()
        .success();
}
