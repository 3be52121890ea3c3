//! A period keeps the terms it was billed under (issue 7, item 7), and a plan removed from
//! plans.toml is one story across commands (item 8). Through the real binary.

mod common;

use common::Scratch;
use predicates::str::contains;

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

#[test]
fn editing_plans_toml_does_not_rewrite_a_closed_period() {
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

#[test]
fn set_plan_moves_the_current_period_and_leaves_closed_ones() {
    let s = Scratch::new();
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
