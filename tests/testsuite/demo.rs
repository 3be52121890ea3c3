//! `meterline demo`: realistic data covering every case the dashboard shows, deterministic
//! for a seed and a clock, with counters that are exactly the events behind them.

use std::collections::BTreeSet;

use crate::support::cli::Scratch;
use crate::support::engine::{Engine, engine_tests};
use crate::support::postgres::PASSWORD;
use predicates::str::contains;

engine_tests!(
    the_demo_on_the_init_plans_has_customers_near_and_past_each_meters_limit,
    the_demo_on_the_init_plans_records_completion_calls_priced_per_model,
    the_same_seed_and_clock_give_the_same_database,
    the_demo_covers_every_level_the_cap_history_members_and_reporting,
    demo_refuses_a_database_that_already_has_customers,
    the_demo_gives_customers_credits_some_low_some_expiring_some_promotional,
    the_demo_on_the_init_plans_has_a_full_five_hour_window_and_a_week_near_its_limit,
);

const CUSTOMERS: usize = 24;

fn demo(engine: Engine, seed: &str) -> Scratch {
    let s = Scratch::on(engine);
    let out = s
        .cmd()
        .args([
            "demo",
            "--customers",
            "24",
            "--events",
            "3000",
            "--seed",
            seed,
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(&format!("{CUSTOMERS} customers")),
        "{stdout}"
    );
    assert!(
        !stdout.contains(PASSWORD) && !stderr.contains(PASSWORD),
        "the database password is in demo's output: {stdout}{stderr}"
    );
    // The next command is one to paste: no URL with its password hidden as ***.
    let next = stdout.lines().find(|l| l.starts_with("try: "));
    assert!(next.is_some_and(|l| !l.contains("***")), "{stdout}");
    s
}

fn count(s: &Scratch, sql: &str) -> i64 {
    s.inspect().number(sql)
}

fn the_same_seed_and_clock_give_the_same_database(engine: Engine) {
    let (a, b, other) = (demo(engine, "11"), demo(engine, "11"), demo(engine, "12"));
    // Everything but the Stripe identifiers, which are random by design (issue 7, item 5).
    for s in [&a, &b] {
        s.inspect()
            .exec("UPDATE usage_events SET stripe_identifier = CAST(id AS TEXT)");
    }
    assert_eq!(a.dump(), b.dump());
    assert_ne!(a.dump(), other.dump());
}

fn the_demo_covers_every_level_the_cap_history_members_and_reporting(engine: Engine) {
    let s = demo(engine, "11");
    let status = s.json(&["status", "--json"]);
    let rows = status.as_array().unwrap();
    assert_eq!(rows.len(), CUSTOMERS);

    let levels: BTreeSet<&str> = rows.iter().map(|r| r["level"].as_str().unwrap()).collect();
    assert_eq!(
        levels,
        BTreeSet::from(["ok", "warning", "critical", "hard_cap"])
    );
    let plans: BTreeSet<&str> = rows.iter().map(|r| r["plan"].as_str().unwrap()).collect();
    assert_eq!(
        plans,
        BTreeSet::from(["free", "starter", "pro", "team", "business"])
    );
    // Overage customers past their limit; hard-capped ones never past it but by what credits
    // paid (the demo's customer in debt: a settle is never refused).
    assert!(rows.iter().any(|r| r["ratio"].as_f64() > Some(1.0)));
    assert!(rows.iter().any(|r| r["allowed"] == false));
    for r in rows.iter().filter(|r| r["overage_rate"].is_null()) {
        if let Some(limit) = r["limit"].as_i64() {
            let credited = r["credited_units"].as_i64().unwrap_or(0);
            assert!(r["used"].as_i64().unwrap() <= limit + credited, "{r}");
        }
    }

    // Every counter is exactly the sum of its events.
    assert_eq!(
        count(
            &s,
            "SELECT COUNT(*) FROM usage_records r WHERE used != (SELECT COALESCE(SUM(quantity), 0)
             FROM usage_events e WHERE e.customer_id = r.customer_id
             AND e.period_start = r.period_start)"
        ),
        0
    );
    // Six periods of history before the current one, each with usage, for every customer.
    assert_eq!(
        count(
            &s,
            "SELECT COUNT(*) FROM (SELECT customer_id FROM usage_records WHERE used > 0
             GROUP BY customer_id HAVING COUNT(*) = 7) AS full_history"
        ),
        CUSTOMERS as i64
    );
    let first = rows
        .iter()
        .find(|r| r["customer"] == "globex-corporation")
        .expect("the organisation account");
    let history = s.json(&["history", "globex-corporation", "--periods", "7", "--json"]);
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 7);
    assert!(history.iter().all(|h| h["used"].as_i64() > Some(0)));
    assert_eq!(history[6]["used"], first["used"]);

    // The organisation has several members whose shares add up.
    let members = s.json(&["members", "globex-corporation", "--json"]);
    let members = members["members"].as_array().unwrap();
    let named = members.iter().filter(|m| m["user_id"].is_string()).count();
    assert!(named >= 3, "members: {members:?}");
    let shares: f64 = members.iter().map(|m| m["share"].as_f64().unwrap()).sum();
    assert!((shares - 1.0).abs() < 1e-9);

    // Old usage reads as reported 4 minutes after it happened, in the stored format: every
    // reported event (several UPDATEs' worth).
    let export = s
        .cmd()
        .args(["export", "events", "--format", "json"])
        .output()
        .unwrap();
    let reported_events: Vec<serde_json::Value> = String::from_utf8(export.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["stripe_reported_at"].is_string() && e["stripe_error"].is_null())
        .collect();
    assert!(reported_events.len() > 1000, "{}", reported_events.len());
    for event in &reported_events {
        let at = |key: &str| {
            let text = event[key].as_str().unwrap();
            assert!(text.len() == 20 && text.ends_with('Z'), "{key}: {text}");
            chrono::DateTime::parse_from_rfc3339(text).unwrap()
        };
        assert_eq!(
            at("stripe_reported_at") - at("occurred_at"),
            chrono::Duration::minutes(4),
            "{event}"
        );
    }

    // Reporting: most old usage reported, recent usage waiting, a few failures, some
    // customers not mapped to Stripe at all.
    let unreported = count(
        &s,
        "SELECT COUNT(*) FROM usage_events WHERE stripe_reported_at IS NULL",
    );
    let reported = count(
        &s,
        "SELECT COUNT(*) FROM usage_events WHERE stripe_reported_at IS NOT NULL",
    );
    assert!(unreported > 0 && reported > unreported);
    assert!(
        count(
            &s,
            "SELECT COUNT(*) FROM usage_events WHERE stripe_failed_at IS NOT NULL"
        ) > 0
    );
    assert!(
        count(
            &s,
            "SELECT COUNT(*) FROM customers WHERE stripe_customer_id IS NULL"
        ) > 0
    );
}

fn demo_refuses_a_database_that_already_has_customers(engine: Engine) {
    let s = Scratch::on(engine);
    s.add_customer("acme", "free", "2026-11-01");
    s.record("acme", 3);
    let before = s.dump();
    s.cmd()
        .args(["demo", "--customers", "3", "--events", "10"])
        .assert()
        .code(2)
        .stderr(contains("the database already has customers"));
    assert_eq!(s.dump(), before);
}

/// Each customer's (meter, used, limit) in its current period, from `status --json`: every
/// meter with `[[meters]]`, the implicit `usage` meter without.
fn meter_usage(s: &Scratch) -> Vec<(String, i64, Option<i64>)> {
    let status = s.json(&["status", "--json"]);
    let mut usage = Vec::new();
    for row in status.as_array().unwrap() {
        let meters = row["meters"].as_array().filter(|m| !m.is_empty());
        let meters = meters.map_or_else(|| vec![row.clone()], Clone::clone);
        for m in meters {
            usage.push((
                m["meter"].as_str().unwrap_or("usage").to_string(),
                m["used"].as_i64().unwrap(),
                m["limit"].as_i64(),
            ));
        }
    }
    usage
}

/// On either plan shape: every capped meter has customers near its limit (80 % up to the
/// critical level) and at or past it, and every customer used every meter. On the init
/// plans the demo once left all 40 customers at exactly 125 requests, 0 tokens, all ok.
fn the_demo_on_the_init_plans_has_customers_near_and_past_each_meters_limit(engine: Engine) {
    let init = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/plans-ai-api.toml");
    for plans in [init, crate::support::cli::repo_plans()] {
        let s = Scratch::on(engine);
        std::fs::copy(&plans, &s.plans).unwrap();
        s.cmd()
            .args(["demo", "--customers", "24", "--events", "3000"])
            .assert()
            .success();
        let usage = meter_usage(&s);
        let config = meterline::Config::load(&s.plans).unwrap();
        for meter in &config.meters {
            let of_meter: Vec<_> = usage.iter().filter(|(m, ..)| *m == meter.id).collect();
            assert_eq!(of_meter.len(), 24, "{}: {usage:?}", meter.id);
            assert!(
                of_meter.iter().all(|(_, used, _)| *used > 0),
                "{}: a customer without usage: {of_meter:?}",
                meter.id
            );
            let ratios: Vec<f64> = of_meter
                .iter()
                .filter_map(|(_, used, limit)| limit.map(|l| *used as f64 / l as f64))
                .collect();
            assert!(
                ratios.iter().any(|r| (0.8..0.95).contains(r)),
                "{}: nobody near the limit: {ratios:?}",
                meter.id
            );
            assert!(
                ratios.iter().any(|r| *r >= 1.0),
                "{}: nobody at or past the limit: {ratios:?}",
                meter.id
            );
            let distinct: BTreeSet<i64> = of_meter.iter().map(|(_, used, _)| *used).collect();
            assert!(
                distinct.len() >= 3,
                "{}: the same figures again and again: {of_meter:?}",
                meter.id
            );
        }
    }
}

/// On either plan shape, through the real grant path: a customer with little left, one with
/// promotional credits expiring within days, one with a month's welcome credit, one without
/// credits; every ledger adds up (doctor).
fn the_demo_gives_customers_credits_some_low_some_expiring_some_promotional(engine: Engine) {
    use rust_decimal::Decimal;
    let init = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/plans-ai-api.toml");
    for plans in [crate::support::cli::repo_plans(), init] {
        let s = Scratch::on(engine);
        std::fs::copy(&plans, &s.plans).unwrap();
        s.cmd()
            .args(["demo", "--customers", "24", "--events", "3000"])
            .assert()
            .success();
        let decimal = |v: &serde_json::Value| Decimal::from_str_exact(v.as_str().unwrap()).unwrap();
        let credits = |id: &str| s.json(&["credits", id, "--json"]);
        // "Acme Robotics": a little left.
        let low = credits("acme-robotics");
        assert!(decimal(&low["available"]) < Decimal::from(3), "{low}");
        assert!(decimal(&low["available"]) > Decimal::ZERO, "{low}");
        // "Initech": promotional credits expiring within days, beside paid ones.
        let expiring = credits("initech");
        let grants = expiring["grants"].as_array().unwrap();
        let soon = grants
            .iter()
            .find(|g| g["promotional"] == true)
            .unwrap_or_else(|| panic!("no promotional grant: {expiring}"));
        let expires = soon["expires_at"].as_str().unwrap();
        assert!(
            ("2026-11-28".."2026-12-04").contains(&expires),
            "expires {expires}, not within days of {}",
            crate::support::cli::NOW
        );
        assert!(
            grants.iter().any(|g| g["promotional"] == false),
            "{expiring}"
        );
        // "Hooli Chat": a promotional welcome credit.
        let welcome = credits("hooli-chat");
        assert_eq!(welcome["grants"][0]["note"], "welcome credit", "{welcome}");
        assert_eq!(decimal(&welcome["available"]), Decimal::from(25));
        // "Northwind Labs": none.
        assert!(
            credits("northwind-labs")["grants"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        // Every grant under a demo key, and the ledger adds up.
        assert_eq!(
            count(
                &s,
                "SELECT COUNT(*) FROM credit_grants
                 WHERE idempotency_key NOT LIKE 'demo-%' AND amount <> '0'"
            ),
            0
        );
        // One customer in debt: a settle past its cap, nothing to pay it with.
        let in_debt = s.inspect().rows(
            "SELECT g.customer_id, l.remaining FROM credit_grants g
             JOIN credit_ledger l ON l.grant_id = g.id AND l.kind = 'burn'
             WHERE g.amount = '0'",
        );
        assert_eq!(in_debt.len(), 1, "{in_debt:?}");
        assert!(in_debt[0][1].starts_with('-'), "{in_debt:?}");
        let debtor = credits(&in_debt[0][0]);
        assert!(debtor.to_string().contains("\"balance\":\"-"), "{debtor}");
        assert!(count(&s, "SELECT COUNT(DISTINCT customer_id) FROM credit_grants") >= 8);
        let doctor = s.cmd().arg("doctor").output().unwrap();
        let doctor = String::from_utf8_lossy(&doctor.stdout);
        assert!(
            doctor.contains("every balance the sum of its ledger"),
            "{doctor}"
        );
    }
}

/// `demo` in an empty folder writes the plans it used beside the database and prints a next
/// command that works there (it suggested one that failed: "cannot read plans file").
#[test]
fn demo_in_an_empty_folder_prints_a_next_command_that_works() {
    let dir = tempfile::tempdir().unwrap();
    let run = |command: &str| {
        let mut shell = std::process::Command::new("sh");
        shell.arg("-c").arg(command).current_dir(dir.path()).env(
            "PATH",
            format!(
                "{}:/usr/bin:/bin",
                std::path::Path::new(crate::support::cli::BIN)
                    .parent()
                    .unwrap()
                    .display()
            ),
        );
        for var in ["METERLINE_DB", "METERLINE_PLANS", "XDG_CONFIG_HOME", "HOME"] {
            shell.env_remove(var);
        }
        shell.output().unwrap()
    };
    let out = run("meterline demo --customers 5 --events 200");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let next = stdout
        .lines()
        .find_map(|l| l.strip_prefix("try: "))
        .unwrap_or_else(|| panic!("no next command: {stdout}"));
    let out = run(next);
    assert!(
        out.status.success(),
        "{next}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("5 customers")
    );
}

/// The rate per token past the pro plan's included tokens, by model (examples/plans-ai-api.toml).
fn pro_token_rate(model: &str) -> rust_decimal::Decimal {
    let rate = match model {
        "large" => "0.00001",
        "vision" => "0.000006",
        "small" | "tiny" => "0.000001",
        "embed" => "0.0000001",
        _ => "0.000002",
    };
    rate.parse().unwrap()
}

/// On the init plans the demo is a month of an AI API: every call one `completion` event
/// feeding requests, tokens and active users at once; many models; pro customers past their
/// tokens with the overage priced per model; free customers at the requests and the active
/// users caps. It once recorded each call three times, once per meter, on three models.
fn the_demo_on_the_init_plans_records_completion_calls_priced_per_model(engine: Engine) {
    let init = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/plans-ai-api.toml");
    let s = Scratch::on(engine);
    std::fs::copy(&init, &s.plans).unwrap();
    s.cmd()
        .args(["demo", "--customers", "24", "--events", "6000"])
        .assert()
        .success();

    // Every call is a completion, and fed all three meters: its own row and two more.
    assert_eq!(
        count(
            &s,
            "SELECT COUNT(*) FROM usage_events
             WHERE (event_type IS NULL OR event_type <> 'completion')
               AND COALESCE(idempotency_key, '') NOT LIKE 'demo-debt-%'"
        ),
        0
    );
    assert_eq!(
        count(
            &s,
            "SELECT COUNT(*) FROM (SELECT COALESCE(event_of, id) AS call FROM usage_events
             WHERE COALESCE(idempotency_key, '') NOT LIKE 'demo-debt-%'
             GROUP BY COALESCE(event_of, id)
             HAVING COUNT(DISTINCT meter_id) <> 3 OR COUNT(*) <> 3) AS short"
        ),
        0
    );
    assert!(
        count(
            &s,
            "SELECT COUNT(*) FROM usage_events WHERE event_of IS NULL"
        ) > 1000
    );

    let checks: Vec<serde_json::Value> = s
        .json(&["status", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let customer = row["customer"].as_str().unwrap();
            s.json(&["check", customer, "--json"])
        })
        .collect();
    let meter = |check: &serde_json::Value, id: &str| -> serde_json::Value {
        check["meters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["meter"] == id)
            .unwrap_or_else(|| panic!("no meter {id}: {check}"))
            .clone()
    };
    let decimal = |v: &serde_json::Value| -> rust_decimal::Decimal {
        v.as_str().unwrap_or_else(|| panic!("{v}")).parse().unwrap()
    };

    // Many models, and on the pro plan past the included tokens each model's overage at its
    // own rate, adding up to the meter's and the customer's.
    let mut models = BTreeSet::new();
    let mut priced_models = BTreeSet::new();
    for check in &checks {
        let tokens = meter(check, "tokens");
        let groups = tokens["groups"].as_array().unwrap();
        models.extend(groups.iter().map(|g| g["key"]["model"].to_string()));
        let mut group_money = rust_decimal::Decimal::ZERO;
        for group in groups {
            let (units, amount) = (
                group["overage_units"].as_i64().unwrap(),
                &group["overage_amount"],
            );
            let model = group["key"]["model"].as_str().unwrap();
            assert_eq!(
                decimal(amount),
                rust_decimal::Decimal::from(units) * pro_token_rate(model),
                "{}: {group}",
                check["customer"]
            );
            if units > 0 {
                priced_models.insert(model.to_string());
            }
            group_money += decimal(amount);
        }
        assert_eq!(decimal(&tokens["overage_amount"]), group_money, "{tokens}");
        let meters_money: rust_decimal::Decimal = check["meters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| decimal(&m["overage_amount"]))
            .sum();
        assert_eq!(decimal(&check["overage_total"]), meters_money, "{check}");
    }
    assert!(models.len() >= 6, "models: {models:?}");
    assert!(
        priced_models.len() >= 5,
        "overage on models: {priced_models:?}"
    );

    // Near and past each limit: the requests and active users caps reached on the free plan
    // (and someone near each), the pro plan's tokens past their included.
    let standing = |plan: &str, id: &str| -> Vec<f64> {
        checks
            .iter()
            .filter(|c| c["plan"] == plan)
            .map(|c| meter(c, id)["ratio"].as_f64().unwrap())
            .collect()
    };
    for (plan, id) in [
        ("free", "requests"),
        ("free", "active_users"),
        ("pro", "tokens"),
    ] {
        let ratios = standing(plan, id);
        assert!(ratios.iter().any(|r| *r >= 1.0), "{plan} {id}: {ratios:?}");
    }
    for id in ["requests", "tokens", "active_users"] {
        let ratios: Vec<f64> = [standing("free", id), standing("pro", id)].concat();
        assert!(
            ratios.iter().any(|r| (0.8..1.0).contains(r)),
            "{id}: nobody near the limit: {ratios:?}"
        );
    }
    assert!(standing("pro", "tokens").iter().any(|r| *r > 1.0));
}

/// On the init plans, the Max plan's windows (5 hours sliding, 7 days fixed): one customer's
/// 5-hour window full, another's week near its limit, and no window ever passed (the demo's
/// customer in debt, a settle past its cap, once went to a Max customer, whose settle passed
/// both windows twenty times over).
fn the_demo_on_the_init_plans_has_a_full_five_hour_window_and_a_week_near_its_limit(
    engine: Engine,
) {
    let init = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/plans-ai-api.toml");
    let s = Scratch::on(engine);
    std::fs::copy(&init, &s.plans).unwrap();
    s.cmd()
        .args(["demo", "--customers", "12", "--events", "1500"])
        .assert()
        .success();
    let mut windows = Vec::new();
    for row in s.json(&["status", "--json"]).as_array().unwrap() {
        let check = s.json(&["check", row["customer"].as_str().unwrap(), "--json"]);
        for meter in check["meters"].as_array().unwrap() {
            windows.extend(meter["windows"].as_array().cloned().unwrap_or_default());
        }
    }
    let of = |kind: &str| -> Vec<f64> {
        windows
            .iter()
            .filter(|w| w["kind"] == kind)
            .map(|w| w["used"].as_f64().unwrap() / w["limit"].as_f64().unwrap())
            .collect()
    };
    let (sliding, fixed) = (of("sliding"), of("fixed"));
    assert!(sliding.contains(&1.0), "no full 5-hour window: {sliding:?}");
    assert!(
        fixed.iter().any(|r| (0.9..1.0).contains(r)),
        "no week near its limit: {fixed:?}"
    );
    assert!(
        sliding.iter().chain(&fixed).all(|r| *r <= 1.0),
        "a window passed: {windows:?}"
    );
}
