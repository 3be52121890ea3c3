//! A period keeps the terms it was billed under (issue 7, item 7), and a plan removed from
//! plans.toml is one story across commands (item 8). Through the real binary.

use crate::support::cli::Scratch;
use crate::support::engine::{Engine, engine_tests};
use predicates::str::contains;

engine_tests!(
    editing_plans_toml_does_not_rewrite_a_closed_period,
    set_plan_moves_the_current_period_and_leaves_closed_ones,
    plans_names_the_customers_on_a_removed_plan,
    status_check_and_record_show_a_removed_plan_as_plan_missing,
    the_dashboard_data_shows_a_removed_plan_as_plan_missing,
    extreme_amounts_never_panic,
);

/// Replace `from` with `to` in the scratch plans.toml, which must contain it.
fn edit_plans(s: &Scratch, from: &str, to: &str) {
    let text = std::fs::read_to_string(&s.plans).unwrap();
    assert!(text.contains(from), "plans.toml has no {from:?}");
    std::fs::write(&s.plans, text.replacen(from, to, 1)).unwrap();
}

fn history(s: &Scratch, customer: &str) -> Vec<serde_json::Value> {
    let json = s.json(&["history", customer, "--periods", "2", "--json"]);
    json.as_array().unwrap().clone()
}

fn editing_plans_toml_does_not_rewrite_a_closed_period(engine: Engine) {
    let s = Scratch::on(engine);
    s.add_customer("globex", "pro", "2026-10-01");
    s.cmd()
        .args([
            "record",
            "globex",
            "-n",
            "120000",
            "--at",
            "2026-10-15T00:00:00Z",
        ])
        .assert()
        .success();
    s.record("globex", 60_000);
    let before = history(&s, "globex");
    assert_eq!(before[0]["limit"], 100_000);
    assert_eq!(before[0]["overage_amount"], "10");

    edit_plans(&s, "included = 100000", "included = 50000");
    edit_plans(&s, "overage_rate = \"0.0005\"", "overage_rate = \"0.001\"");
    let after = history(&s, "globex");
    assert_eq!(after[0], before[0], "the closed period keeps its terms");
    // The current period follows plans.toml until it ends.
    assert_eq!(after[1]["limit"], 50_000);
    assert_eq!(after[1]["overage_amount"], "10");
    let check = s.json(&["check", "globex", "--json"]);
    assert_eq!(check["limit"], 50_000);
}

fn set_plan_moves_the_current_period_and_leaves_closed_ones(engine: Engine) {
    let s = Scratch::on(engine);
    s.add_customer("acme", "starter", "2026-10-01");
    s.cmd()
        .args([
            "record",
            "acme",
            "-n",
            "9000",
            "--at",
            "2026-10-15T00:00:00Z",
        ])
        .assert()
        .success();
    s.record("acme", 10);
    s.cmd()
        .args(["customer", "set-plan", "acme", "pro"])
        .assert()
        .success();
    edit_plans(&s, "included = 10000", "included = 5");
    let rows = history(&s, "acme");
    assert_eq!(
        (rows[0]["plan"].as_str(), rows[0]["limit"].as_i64()),
        (Some("starter"), Some(10_000))
    );
    assert_eq!(
        (rows[1]["plan"].as_str(), rows[1]["limit"].as_i64()),
        (Some("pro"), Some(100_000))
    );
}

/// `team` removed from plans.toml while `initech` and `hooli` are on it.
fn removed_plan(engine: Engine) -> Scratch {
    let s = Scratch::on(engine);
    s.add_customer("acme", "free", "2026-11-01");
    s.add_customer("initech", "team", "2026-11-01");
    s.add_customer("hooli", "team", "2026-11-01");
    s.record("acme", 10);
    s.record("initech", 600_000);
    let text = std::fs::read_to_string(&s.plans).unwrap();
    let start = text.find("[[plans]]\nid = \"team\"").expect("team plan");
    let end = start + text[start..].find("[[plans]]\nid = \"business\"").unwrap();
    std::fs::write(&s.plans, format!("{}{}", &text[..start], &text[end..])).unwrap();
    s
}

fn plans_names_the_customers_on_a_removed_plan(engine: Engine) {
    let s = removed_plan(engine);
    s.cmd()
        .arg("plans")
        .assert()
        .code(2)
        .stdout(contains(
            "valid, but 2 customers are on plans it no longer defines",
        ))
        .stderr(contains(
            "  hooli (plan \"team\")\n  initech (plan \"team\")",
        ))
        .stderr(contains("meterline customer set-plan CUSTOMER PLAN"));
    // Without a database there is nobody to name.
    s.cmd()
        .args([
            "--db",
            s.dir.path().join("none.db").to_str().unwrap(),
            "plans",
        ])
        .assert()
        .success();
}

fn status_check_and_record_show_a_removed_plan_as_plan_missing(engine: Engine) {
    let s = removed_plan(engine);
    let status = s.json(&["status", "--json"]);
    let rows = status.as_array().unwrap();
    let missing: Vec<&str> = rows
        .iter()
        .filter(|r| r["plan_missing"] == true)
        .map(|r| r["customer"].as_str().unwrap())
        .collect();
    assert_eq!(missing, ["hooli", "initech"]);
    let acme = rows.iter().find(|r| r["customer"] == "acme").unwrap();
    assert_eq!(
        (acme["used"].as_i64(), acme["limit"].as_i64()),
        (Some(10), Some(1000))
    );
    assert!(acme.get("plan_missing").is_none());
    s.cmd()
        .arg("status")
        .assert()
        .success()
        .stdout(contains("plan missing"));

    let message = "customer \"initech\" is on plan \"team\", which plans.toml no longer defines; \
                   put the plan back in plans.toml or move the customer with \
                   `meterline customer set-plan initech PLAN`";
    s.cmd()
        .args(["check", "initech"])
        .assert()
        .code(2)
        .stderr(contains(message));
    let before = s.dump();
    s.cmd()
        .args(["record", "initech", "-n", "5"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(contains(message));
    assert_eq!(s.dump(), before, "nothing written");
    // History still shows the usage, as plan missing rather than unlimited.
    let rows = history(&s, "initech");
    assert_eq!(rows[rows.len() - 1]["plan_missing"], true);
    assert_eq!(rows[rows.len() - 1]["used"], 600_000);
    // Moving the customer ends it.
    s.cmd()
        .args(["customer", "set-plan", "initech", "pro"])
        .assert()
        .success();
    s.record("initech", 5);
}

fn the_dashboard_data_shows_a_removed_plan_as_plan_missing(engine: Engine) {
    let s = removed_plan(engine);
    let config = meterline::Config::load(&s.plans).unwrap();
    let store = meterline::Store::open(&s.db).unwrap();
    let now = chrono::DateTime::parse_from_rfc3339(crate::support::cli::NOW)
        .unwrap()
        .with_timezone(&chrono::Utc);
    let dashboard = store.dashboard(&config, now).unwrap();
    let missing: Vec<&str> = dashboard
        .rows
        .iter()
        .filter(|r| r.plan_missing(&config))
        .map(|r| r.customer_id.as_str())
        .collect();
    assert_eq!(missing.len(), 2);
    assert!(missing.contains(&"initech") && missing.contains(&"hooli"));
    let detail = store.customer_detail(&config, "initech", now).unwrap();
    assert!(detail.check.plan_missing && !detail.check.allowed);
    assert_eq!(detail.check.used, 600_000);
    assert!(detail.history.last().unwrap().check.plan_missing);
}

/// Plans at the largest amounts plans.toml allows, and far more usage than any real one.
const EXTREME_PLANS: &str = r#"
[[plans]]
id = "free"
included = 1000

[[plans]]
id = "max"
price = "1000000"
included = 0
at_limit = "overage"
overage_rate = "999999.999999999999"

[[plans]]
id = "big"
included = 1000000000000000
at_limit = "block"
"#;

fn extreme_amounts_never_panic(engine: Engine) {
    let s = Scratch::on(engine);
    std::fs::write(&s.plans, EXTREME_PLANS).unwrap();
    s.cmd().arg("plans").assert().success();
    s.add_customer("whale", "max", "2000-01-01");
    s.add_customer("slow", "big", "2026-10-28");
    for _ in 0..3 {
        s.record("whale", 1_000_000_000_000);
    }
    s.record("slow", 1);
    let check = s.json(&["check", "whale", "--json"]);
    assert_eq!(check["overage_units"], 3_000_000_000_000i64);
    assert_eq!(check["overage_amount"], "2999999999999999997");
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["history", "whale", "--periods", "240"],
        &["history", "slow", "--json"],
        &["check", "slow"],
        &["members", "whale"],
    ] {
        s.cmd().args(args).assert().success();
    }
    // The cap projection of a huge limit at a slow pace lies past chrono's range.
    let config = meterline::Config::load(&s.plans).unwrap();
    let store = meterline::Store::open(&s.db).unwrap();
    let now = chrono::DateTime::parse_from_rfc3339(crate::support::cli::NOW)
        .unwrap()
        .with_timezone(&chrono::Utc);
    let detail = store.customer_detail(&config, "slow", now).unwrap();
    assert_eq!(
        detail.projection(now),
        meterline::store::Projection::NotThisPeriod
    );
}

#[test]
fn periods_from_before_the_upgrade_take_their_terms_at_the_first_record() {
    let s = Scratch::new();
    s.add_customer("globex", "pro", "2026-10-01");
    s.cmd()
        .args([
            "record",
            "globex",
            "-n",
            "120000",
            "--at",
            "2026-10-15T00:00:00Z",
        ])
        .assert()
        .success();
    // As migration 4 leaves a database that had counters: no terms, and the fill pending.
    s.conn()
        .execute_batch(
            "UPDATE usage_records SET included = NULL, at_limit = NULL, overage_rate = NULL,
                 price = NULL;
             INSERT INTO meterline_meta (key, value) VALUES ('period_terms_pending', '1');",
        )
        .unwrap();
    assert_eq!(history(&s, "globex")[0]["overage_amount"], "10");
    s.record("globex", 1);
    let pending: i64 = s
        .conn()
        .query_row(
            "SELECT COUNT(*) FROM meterline_meta WHERE key = 'period_terms_pending'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(pending, 0);
    edit_plans(&s, "overage_rate = \"0.0005\"", "overage_rate = \"0.001\"");
    let closed = &history(&s, "globex")[0];
    assert_eq!(
        (closed["limit"].as_i64(), closed["overage_amount"].as_str()),
        (Some(100_000), Some("10"))
    );
}
