//! Credits burnt at record time, inside the write transaction that decides the cap: units
//! past a meter's included burn its unit grants, then money grants at the units' rate, and
//! only then does `at_limit` decide. On both engines and both plans.toml shapes, through the
//! real binary and real HTTP; the ledger always adds up to the balance.

use serde_json::{Value, json};

use crate::support::cli::Scratch;
use crate::support::common::NOW;
use crate::support::engine::{Engine, engine_tests};
use crate::support::serve::{Server, create_token};
use crate::support::shapes::{Shape, grouped, shape_tests};

shape_tests!(
    unit_credits_carry_a_capped_meter_past_its_cap_and_no_further,
    money_credits_pay_overage_before_it_is_billed,
    only_grants_in_effect_burn_and_in_burn_order,
    many_writers_never_overdraw_a_balance,
    plan_credits_are_granted_each_period_and_roll_over,
);

engine_tests!(a_type_refused_by_one_meter_burns_nothing_on_the_others);

/// `shape`'s file on `engine` with `customer` on `plan` (anchored on the 1st: the scratch's
/// clock is 2026-11-27).
fn scratch(engine: Engine, shape: Shape, customer: &str, plan: &str) -> Scratch {
    let s = Scratch::shaped(engine, shape);
    s.add_customer(customer, plan, "2026-11-01");
    s
}

/// `record CUSTOMER` of `n` on the shape's capped meter: the exit code and the answer.
fn count(s: &Scratch, shape: Shape, customer: &str, n: i64) -> (i32, Value) {
    s.record_json(customer, &shape.counting(n))
}

/// `meterline credits grant ARGS --json`: the grant's id.
fn grant(s: &Scratch, args: &[&str]) -> i64 {
    let mut all = vec!["credits", "grant"];
    all.extend_from_slice(args);
    all.push("--json");
    s.json(&all)["id"].as_i64().unwrap()
}

/// The capped meter's object in `check --json`.
fn meter_check(s: &Scratch, shape: Shape, customer: &str) -> Value {
    let check = s.json(&["check", customer, "--json"]);
    check["meters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["meter"] == shape.capped_meter())
        .unwrap()
        .clone()
}

/// Every burn in the ledger: (grant, amount, remaining after).
fn burns(s: &Scratch) -> Vec<(i64, String, String)> {
    s.inspect()
        .rows(
            "SELECT grant_id, amount, remaining FROM credit_ledger WHERE kind = 'burn' ORDER BY id",
        )
        .into_iter()
        .map(|r| (r[0].parse().unwrap(), r[1].clone(), r[2].clone()))
        .collect()
}

/// `doctor` finds the ledger adding up (it checks every grant and every balance).
pub(crate) fn assert_ledger_adds_up(s: &Scratch) {
    let out = s.cmd().args(["doctor", "--json"]).output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let credits = report
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "credits")
        .unwrap();
    assert_eq!(credits["verdict"], "ok", "{credits}");
}

fn unit_credits_carry_a_capped_meter_past_its_cap_and_no_further(engine: Engine, shape: Shape) {
    let s = scratch(engine, shape, "acme", "free");
    let (meter, cap) = (shape.capped_meter(), shape.free_cap());
    assert_eq!(count(&s, shape, "acme", cap).0, 0);
    assert_eq!(
        count(&s, shape, "acme", 1).0,
        3,
        "at the cap, no credits yet"
    );
    let units = grant(&s, &["acme", "10", "--meter", meter]);
    let m = meter_check(&s, shape, "acme");
    assert_eq!(m["allowed"], true, "credits allow more: {m}");
    assert_eq!(m["credits"]["available"], "10");
    // `check`'s text shows them under the standing.
    let out = s.cmd().args(["check", "acme"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&format!(
            "\n{meter} credits: balance 10 {meter}, held 0 {meter}, available 10 {meter}\n"
        )),
        "{text}"
    );

    let (code, answer) = count(&s, shape, "acme", 7);
    assert_eq!(code, 0, "{answer}");
    assert_eq!(burns(&s), [(units, "-7".into(), "3".into())]);
    // More than the credits left: refused whole, nothing burnt.
    assert_eq!(count(&s, shape, "acme", 4).0, 3);
    assert_eq!(burns(&s).len(), 1);
    assert_eq!(count(&s, shape, "acme", 3).0, 0);

    let m = meter_check(&s, shape, "acme");
    assert_eq!(m["used"], cap + 10);
    assert_eq!(m["credited_units"], 10);
    assert_eq!(m["overage_units"], 0, "a capped meter bills nothing");
    assert_eq!(m["allowed"], false, "credits spent");
    let balance = s.json(&["credits", "acme", "--json"]);
    assert_eq!(
        balance["grants"],
        json!([]),
        "the grant is spent: {balance}"
    );
    assert_ledger_adds_up(&s);
}

/// The pro plan's included units on the capped meter and the rate of the units `counting`
/// records (the legacy overage rate; the init file's `large` model).
fn pro_terms(shape: Shape) -> (i64, &'static str) {
    match shape {
        Shape::Legacy => (100_000, "0.0005"),
        Shape::Meters => (10_000_000, "0.00001"),
    }
}

fn money_credits_pay_overage_before_it_is_billed(engine: Engine, shape: Shape) {
    let s = scratch(engine, shape, "acme", "pro");
    let (included, rate) = pro_terms(shape);
    let rate: rust_decimal::Decimal = rate.parse().unwrap();
    assert_eq!(count(&s, shape, "acme", included).0, 0);
    let money = grant(&s, &["acme", "1.00"]);
    // $1 pays for 1 / rate units; the event uses a quarter more, which is billed.
    let paid = (rust_decimal::Decimal::ONE / rate).trunc();
    let paid = i64::try_from(paid.mantissa()).unwrap();
    let (code, answer) = count(&s, shape, "acme", paid + paid / 4);
    assert_eq!(code, 0, "{answer}");
    let m = meter_check(&s, shape, "acme");
    assert_eq!(m["credited_units"], paid);
    assert_eq!(m["credited_amount"], "1");
    assert_eq!(m["overage_units"], paid / 4);
    let billed = (rate * rust_decimal::Decimal::from(paid / 4)).normalize();
    assert_eq!(m["overage_amount"], billed.to_string());
    assert_eq!(burns(&s), [(money, "-1".into(), "0".into())]);
    let check = s.json(&["check", "acme", "--json"]);
    assert_eq!(check["credits"]["balance"], "0");
    assert_eq!(check["overage_total"], billed.to_string());
    // The text says what credits paid, beside the overage billed.
    let out = s.cmd().args(["check", "acme"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&format!("overage {} units", grouped(paid / 4))),
        "{text}"
    );
    assert!(
        text.contains(&format!("credits paid {} units ($1.00)", grouped(paid))),
        "{text}"
    );
    // An overage meter is never refused when credits run out: the rest is billed.
    assert_eq!(count(&s, shape, "acme", 10).0, 0);
    assert_ledger_adds_up(&s);
}

fn only_grants_in_effect_burn_and_in_burn_order(engine: Engine, shape: Shape) {
    let s = scratch(engine, shape, "acme", "free");
    let (meter, cap) = (shape.capped_meter(), shape.free_cap());
    assert_eq!(count(&s, shape, "acme", cap).0, 0);
    // (effective, expires) of each: over before now, and not yet begun.
    let dated = |effective: &str, expires: Option<&str>| {
        let mut args = vec!["acme", "50", "--meter", meter, "--effective", effective];
        args.extend(expires.iter().flat_map(|at| ["--expires", *at]));
        grant(&s, &args)
    };
    let expired = dated("2026-11-01T00:00:00Z", Some("2026-11-20T00:00:00Z"));
    let future = dated("2026-12-01T00:00:00Z", None);
    let paid = grant(&s, &["acme", "4", "--meter", meter]);
    let promotional = grant(&s, &["acme", "4", "--meter", meter, "--promotional"]);
    let soon = grant(
        &s,
        &[
            "acme",
            "4",
            "--meter",
            meter,
            "--expires",
            "2026-12-15T00:00:00Z",
        ],
    );
    let first = grant(&s, &["acme", "4", "--meter", meter, "--priority", "1"]);
    // 14 units: priority 1, then the soonest expiry, then promotional before paid.
    assert_eq!(count(&s, shape, "acme", 14).0, 0);
    let burnt: Vec<(i64, String)> = burns(&s).into_iter().map(|(g, a, _)| (g, a)).collect();
    assert_eq!(
        burnt,
        [
            (first, "-4".into()),
            (soon, "-4".into()),
            (promotional, "-4".into()),
            (paid, "-2".into())
        ]
    );
    assert!(!burnt.iter().any(|(g, _)| *g == expired || *g == future));
    // The expired grant's remainder left the balance by a ledger entry, at its expiry.
    let expiry = s.inspect().rows(&format!(
        "SELECT amount, remaining, written_at FROM credit_ledger
         WHERE grant_id = {expired} AND kind = 'expiry'"
    ));
    assert_eq!(expiry, [["-50", "0", "2026-11-20T00:00:00Z"]]);
    // 2 left in effect: a third more is refused.
    assert_eq!(count(&s, shape, "acme", 3).0, 3);
    assert_ledger_adds_up(&s);
}

fn many_writers_never_overdraw_a_balance(engine: Engine, shape: Shape) {
    let s = scratch(engine, shape, "acme", "free");
    let (meter, cap) = (shape.capped_meter(), shape.free_cap());
    assert_eq!(count(&s, shape, "acme", cap - 100).0, 0);
    // 100 units left of included, 250 of credits in 3 grants: 350 units of 8 × 25 × 3 tried.
    for units in ["100", "50", "100"] {
        grant(&s, &["acme", units, "--meter", meter]);
    }
    let token = create_token(&s, "burn");
    let server = Server::start(&s, &[]);
    let client = server.client(&token);
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let c = client.clone();
            std::thread::spawn(move || {
                let mut recorded = 0;
                for i in 0..25 {
                    let event = shape.event("acme", 3, &format!("w{w}-{i}"));
                    let reply = c.post("/v1/events", &event.to_string());
                    assert!(matches!(reply.status, 200 | 402), "{}", reply.body);
                    recorded += i64::from(reply.status == 200) * 3;
                }
                recorded
            })
        })
        .collect();
    let recorded: i64 = writers.into_iter().map(|t| t.join().unwrap()).sum();
    // 116 events of 3 fit in 350 (348); the 117th needs 351.
    assert_eq!(recorded, 348);
    let m = meter_check(&s, shape, "acme");
    assert_eq!(m["used"], cap - 100 + 348);
    assert_eq!(m["credited_units"], 248);
    let burnt: i64 = burns(&s)
        .iter()
        .map(|(_, a, _)| a.parse::<i64>().unwrap())
        .sum();
    assert_eq!(burnt, -248);
    let balance = s.json(&["credits", "acme", "--json"]);
    assert_eq!(balance["units"][meter]["balance"], "2");
    drop(server);
    assert_ledger_adds_up(&s);
}

fn a_type_refused_by_one_meter_burns_nothing_on_the_others(engine: Engine) {
    let s = scratch(engine, Shape::Meters, "acme", "free");
    // free: tokens capped at 100,000, active users at 3.
    assert_eq!(count(&s, Shape::Meters, "acme", 100_000).0, 0);
    grant(&s, &["acme", "50", "--meter", "tokens"]);
    let completion = |user: &str| {
        s.record_json(
            "acme",
            &[
                "--type",
                "completion",
                "--property",
                "tokens=10",
                "--property",
                "model=small",
                "--property",
                &format!("user={user}"),
            ],
        )
    };
    for user in ["ann", "bob", "cat"] {
        assert_eq!(completion(user).0, 0);
    }
    assert_eq!(burns(&s).len(), 3);
    // A fourth user is refused by active_users: the tokens it would have burnt stay.
    let (code, answer) = completion("dan");
    assert_eq!(code, 3, "{answer}");
    assert_eq!(answer["refused_by"], json!(["active_users"]));
    assert_eq!(burns(&s).len(), 3);
    let balance = s.json(&["credits", "acme", "--json"]);
    assert_eq!(balance["units"]["tokens"]["balance"], "20");
    assert_ledger_adds_up(&s);
}

/// The shape's plans.toml with `[plans.credits]` on pro: $10 a period, up to $5 carried over.
fn with_plan_credits(s: &Scratch) {
    let text = std::fs::read_to_string(&s.plans).unwrap();
    let pro = text.find("id = \"pro\"").unwrap();
    let end = text[pro..]
        .find("[[plans]]")
        .map_or(text.len(), |i| pro + i);
    let credits = "\n[plans.credits]\ngrant = \"10.00\"\nrollover = \"5.00\"\n\n";
    let text = format!("{}{credits}{}", &text[..end], &text[end..]);
    std::fs::write(&s.plans, text).unwrap();
}

/// `record` of `n` on the shape's capped meter at `now`.
fn count_at(s: &Scratch, shape: Shape, n: i64, now: &str) {
    let out = s
        .cmd()
        .env("METERLINE_NOW", now)
        .args(["record", "acme"])
        .args(shape.counting(n))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (kind, amount, remaining) of every ledger entry of the grant made with `key`.
fn entries_of(s: &Scratch, key: &str) -> Vec<Vec<String>> {
    s.inspect().rows(&format!(
        "SELECT l.kind, l.amount, l.remaining FROM credit_ledger l
         JOIN credit_grants g ON g.id = l.grant_id
         WHERE g.idempotency_key = '{key}' ORDER BY l.id"
    ))
}

fn plan_credits_are_granted_each_period_and_roll_over(engine: Engine, shape: Shape) {
    let s = scratch(engine, shape, "acme", "pro");
    with_plan_credits(&s);
    let (included, rate) = pro_terms(shape);
    let rate: rust_decimal::Decimal = rate.parse().unwrap();
    // The first write of November grants $10, once.
    count_at(&s, shape, included, NOW);
    count_at(&s, shape, 1, NOW);
    let november = "plan-credits:2026-11-01T00:00:00Z";
    assert_eq!(entries_of(&s, november)[0], ["grant", "10", "10"]);
    // $3 of overage: 1 unit above already, the rest now.
    let units = (rust_decimal::Decimal::from(3) / rate).trunc();
    count_at(&s, shape, i64::try_from(units.mantissa()).unwrap() - 1, NOW);
    let balance = s.json(&["credits", "acme", "--json"]);
    assert_eq!(balance["balance"], "7", "{balance}");

    // December's first write: $5 of the $7 left carry over, $2 expire, $10 more.
    count_at(&s, shape, 1, "2026-12-02T00:00:00Z");
    let old = entries_of(&s, november);
    let kinds: Vec<[&str; 3]> = old
        .iter()
        .map(|e| [e[0].as_str(), e[1].as_str(), e[2].as_str()])
        .collect();
    assert_eq!(kinds.last().unwrap(), &["expiry", "-2", "0"], "{old:?}");
    assert!(kinds.contains(&["rollover", "-5", "2"]), "{old:?}");
    assert_eq!(
        entries_of(&s, "plan-rollover:2026-12-01T00:00:00Z"),
        [["grant", "5", "5"]]
    );
    assert_eq!(
        entries_of(&s, "plan-credits:2026-12-01T00:00:00Z"),
        [["grant", "10", "10"]]
    );
    let out = s
        .cmd()
        .env("METERLINE_NOW", "2026-12-02T00:00:00Z")
        .args(["credits", "acme", "--json"])
        .output()
        .unwrap();
    let balance: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(balance["balance"], "15", "{balance}");
    assert_ledger_adds_up(&s);
}
