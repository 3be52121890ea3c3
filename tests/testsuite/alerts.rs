//! Alert detection: each level crossed once per customer and period, written by the record
//! (or set-plan) transaction itself, with 8 writer processes and a batch at once. Both
//! engines.

use std::collections::{BTreeMap, BTreeSet};

use crate::support::alerts::plans_with;
use crate::support::cli::Scratch;
use crate::support::engine::{Engine, engine_tests};

engine_tests!(
    eight_writers_and_a_batch_alert_each_level_exactly_once,
    one_record_crossing_several_levels_alerts_each_and_a_refused_one_none,
    a_new_period_starts_fresh_and_a_closed_one_alerts_nothing,
    a_plan_change_that_moves_the_level_alerts,
    deliveries_follow_the_levels_and_plans_of_each_entry,
    status_json_carries_the_highest_level_alerted_this_period,
);

const CUSTOMERS: [&str; 5] = ["acme", "globex", "initech", "umbrella", "hooli"];

/// (customer, period_start, level, previous_level, used) of every alert, in id order.
fn alerts(s: &Scratch) -> Vec<(String, String, String, String, i64)> {
    s.inspect()
        .rows(
            "SELECT customer_id, period_start, level, previous_level, used FROM alerts
             ORDER BY customer_id, period_start, used, level",
        )
        .into_iter()
        .map(|r| {
            let [customer, period, level, previous, used] = <[String; 5]>::try_from(r).unwrap();
            (customer, period, level, previous, used.parse().unwrap())
        })
        .collect()
}

fn levels_of(s: &Scratch, customer: &str) -> Vec<String> {
    alerts(s)
        .into_iter()
        .filter(|a| a.0 == customer)
        .map(|a| a.2)
        .collect()
}

fn eight_writers_and_a_batch_alert_each_level_exactly_once(engine: Engine) {
    let s = Scratch::on(engine);
    for c in CUSTOMERS {
        s.add_customer(c, "free", "2026-11-01");
    }
    // 8 writer processes x 3 rounds x 50 units per customer, plus a batch of 2 x 50 each:
    // 1,300 units offered against the free plan's hard cap of 1,000.
    let batch = s.dir.path().join("batch.ndjson");
    let lines: String = (0..2)
        .flat_map(|_| CUSTOMERS)
        .map(|c| format!("{{\"customer\":\"{c}\",\"quantity\":50}}\n"))
        .collect();
    std::fs::write(&batch, lines).unwrap();
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for _ in 0..3 {
                    for c in CUSTOMERS {
                        let out = s.cmd().args(["record", c, "-n", "50"]).output().unwrap();
                        // 0 recorded, 3 refused by the hard cap.
                        assert!(
                            matches!(out.status.code(), Some(0 | 3)),
                            "{}",
                            String::from_utf8_lossy(&out.stderr)
                        );
                    }
                }
            });
        }
        scope.spawn(|| {
            let out = s
                .cmd()
                .args(["record", "--batch", batch.to_str().unwrap()])
                .output()
                .unwrap();
            assert!(
                matches!(out.status.code(), Some(0 | 3)),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        });
    });
    for c in CUSTOMERS {
        assert_eq!(s.json(&["check", c, "--json"])["used"], 1000);
        assert_eq!(levels_of(&s, c), ["warning", "critical", "hard_cap"], "{c}");
    }
    let ids: BTreeSet<String> = s
        .inspect()
        .rows("SELECT id FROM alerts")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(ids.len(), 15);
    // Each alert carries the counter at the record that crossed it.
    for (customer, _, level, _, used) in alerts(&s) {
        let ok = match level.as_str() {
            "warning" => (800..950).contains(&used),
            "critical" => (950..1000).contains(&used),
            _ => used == 1000,
        };
        assert!(ok, "{customer} {level} at {used}");
    }
}

fn one_record_crossing_several_levels_alerts_each_and_a_refused_one_none(engine: Engine) {
    let s = Scratch::on(engine);
    s.add_customer("acme", "free", "2026-11-01");
    s.record("acme", 500);
    assert!(alerts(&s).is_empty());
    s.record("acme", 460);
    // A record past the hard cap is refused: it crosses nothing.
    s.cmd()
        .args(["record", "acme", "-n", "100"])
        .assert()
        .code(3);
    let period = "2026-11-01T00:00:00Z".to_string();
    assert_eq!(
        alerts(&s),
        [
            (
                "acme".into(),
                period.clone(),
                "critical".into(),
                "ok".into(),
                960
            ),
            (
                "acme".into(),
                period.clone(),
                "warning".into(),
                "ok".into(),
                960
            ),
        ]
    );
    s.record("acme", 40);
    assert_eq!(levels_of(&s, "acme"), ["critical", "warning", "hard_cap"]);
}

fn a_new_period_starts_fresh_and_a_closed_one_alerts_nothing(engine: Engine) {
    let s = Scratch::on(engine);
    s.add_customer("acme", "free", "2026-10-01");
    s.record("acme", 900);
    assert_eq!(levels_of(&s, "acme"), ["warning"]);
    // A late event into October (closed) moves October's counter past 80 %: no alert.
    s.cmd()
        .args([
            "record",
            "acme",
            "-n",
            "850",
            "--at",
            "2026-10-20T00:00:00Z",
        ])
        .assert()
        .success();
    assert_eq!(levels_of(&s, "acme"), ["warning"]);
    // December: a new period, alerted again from the start.
    s.cmd()
        .env("METERLINE_NOW", "2026-12-02T00:00:00Z")
        .args(["record", "acme", "-n", "900"])
        .assert()
        .success();
    let periods: BTreeMap<String, Vec<String>> =
        alerts(&s).into_iter().fold(BTreeMap::new(), |mut m, a| {
            m.entry(a.1).or_default().push(a.2);
            m
        });
    assert_eq!(
        periods,
        BTreeMap::from([
            ("2026-11-01T00:00:00Z".into(), vec!["warning".into()]),
            ("2026-12-01T00:00:00Z".into(), vec!["warning".into()]),
        ])
    );
}

fn a_plan_change_that_moves_the_level_alerts(engine: Engine) {
    let s = Scratch::on(engine);
    s.add_customer("acme", "starter", "2026-11-01");
    s.record("acme", 900); // 9 % of starter's 10,000
    assert!(alerts(&s).is_empty());
    s.cmd()
        .args(["customer", "set-plan", "acme", "free"])
        .assert()
        .success();
    assert_eq!(
        alerts(&s),
        [(
            "acme".into(),
            "2026-11-01T00:00:00Z".into(),
            "warning".into(),
            "ok".into(),
            900
        )]
    );
    // Back to a larger plan and down again: warning was already alerted this period.
    for plan in ["starter", "free"] {
        s.cmd()
            .args(["customer", "set-plan", "acme", plan])
            .assert()
            .success();
    }
    assert_eq!(levels_of(&s, "acme"), ["warning"]);
}

fn deliveries_follow_the_levels_and_plans_of_each_entry(engine: Engine) {
    let s = Scratch::on(engine);
    std::fs::write(
        &s.plans,
        plans_with(
            "[[alerts]]\ncommand = [\"/bin/true\"]\nlevels = [\"hard_cap\"]\n\n\
             [[alerts]]\ncommand = [\"/bin/true\", \"pro-only\"]\nplans = [\"pro\"]",
        ),
    )
    .unwrap();
    s.add_customer("acme", "free", "2026-11-01");
    s.add_customer("globex", "pro", "2026-11-01");
    s.record("acme", 1000);
    s.record("globex", 120_000); // overage plans cross too, past 100 %
    let rows: Vec<(String, String, String)> = s
        .inspect()
        .rows(
            "SELECT a.customer_id, a.level, d.target FROM alert_deliveries d
             JOIN alerts a ON a.id = d.alert_id ORDER BY 1, 2, 3",
        )
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone(), r[2].clone()))
        .collect();
    let all = "command [\"/bin/true\"]".to_string();
    let pro = "command [\"/bin/true\",\"pro-only\"]".to_string();
    let row = |c: &str, l: &str, t: &String| (c.to_string(), l.to_string(), t.clone());
    assert_eq!(
        rows,
        [
            row("acme", "hard_cap", &all),
            row("globex", "critical", &pro),
            row("globex", "hard_cap", &pro),
            row("globex", "hard_cap", &all),
            row("globex", "warning", &pro),
        ]
    );
    let out = s
        .cmd()
        .args(["alerts", "--dry-run", "--json"])
        .output()
        .unwrap();
    let preview: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(preview["due"].as_array().unwrap().len(), 5);
    s.cmd().arg("alerts").assert().success();
    assert_eq!(s.json(&["alerts", "--json"])["totals"]["delivered"], 5);
}

fn status_json_carries_the_highest_level_alerted_this_period(engine: Engine) {
    let s = Scratch::on(engine);
    s.add_customer("acme", "free", "2026-11-01");
    s.add_customer("globex", "free", "2026-11-01");
    s.record("acme", 960);
    s.record("globex", 10);
    let status = s.json(&["status", "--json"]);
    let by_id = |id: &str| {
        status
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["customer"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id("acme")["alerted_level"], "critical");
    // Absent when nothing was alerted: the output of an alert-free database is unchanged.
    assert!(by_id("globex").get("alerted_level").is_none());
    // Next period: a fresh start, nothing alerted yet.
    let later = s
        .cmd()
        .env("METERLINE_NOW", "2026-12-02T00:00:00Z")
        .args(["status", "--json"])
        .output()
        .unwrap();
    let later: serde_json::Value = serde_json::from_slice(&later.stdout).unwrap();
    assert!(
        later
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r.get("alerted_level").is_none())
    );
}
