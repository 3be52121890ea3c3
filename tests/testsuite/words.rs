//! The words meterline prints for what it did: a record names its meter and the amount, a
//! refusal its meter, value and limit, `--batch` likewise, plurals agree with their numbers.

use crate::support::cli::Scratch;
use crate::support::engine::{Engine, engine_tests};

engine_tests!(export_usage_names_each_meters_stripe_event,);

/// Requests counted, tokens summed, users counted once, the largest prompt as a max: each
/// capped on the free plan.
const PLANS: &str = r#"
[[meters]]
id = "requests"
aggregation = "count"

[[meters]]
id = "tokens"
aggregation = "sum"
property = "tokens"

[[meters]]
id = "active_users"
aggregation = "unique_count"
property = "user"

[[meters]]
id = "tokens_max"
aggregation = "max"
property = "tokens"

[[plans]]
id = "free"
[plans.meters.requests]
included = 2
[plans.meters.tokens]
included = 5000
[plans.meters.active_users]
included = 1
[plans.meters.tokens_max]
included = 1000
"#;

fn scratch() -> Scratch {
    let s = Scratch::new();
    std::fs::write(&s.plans, PLANS).unwrap();
    s.add_customer("acme", "free", "2026-11-01");
    s
}

/// `meterline record ARGS`: (exit code, the first line of stdout, the first of stderr).
fn record(s: &Scratch, args: &[&str]) -> (Option<i32>, String, String) {
    let out = s.cmd().arg("record").args(args).output().unwrap();
    let first = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    (out.status.code(), first(&out.stdout), first(&out.stderr))
}

#[test]
fn a_record_names_its_meter_and_what_it_added() {
    let s = scratch();
    let said = |args: &[&str]| record(&s, args).1;
    assert_eq!(
        said(&["acme", "--meter", "tokens", "--property", "tokens=1200"]),
        "recorded 1,200 on tokens for acme (event 1)"
    );
    assert_eq!(said(&["acme"]), "recorded 1 on requests for acme (event 2)");
    assert_eq!(
        said(&["acme", "--meter", "active_users", "--property", "user=ann"]),
        "recorded user \"ann\" on active_users for acme (event 3)"
    );
    assert_eq!(
        said(&["acme", "--meter", "tokens_max", "--property", "tokens=900"]),
        "recorded 900 on tokens_max (max) for acme (event 4)"
    );
}

#[test]
fn a_refusal_names_the_meter_the_value_and_the_limit() {
    let s = scratch();
    let refused = |args: &[&str]| {
        let (code, _, stderr) = record(&s, args);
        assert_eq!(code, Some(3), "{args:?}: {stderr}");
        stderr
    };
    assert_eq!(
        refused(&["acme", "--meter", "tokens_max", "--property", "tokens=1200"]),
        "refused: tokens_max: 1,200 would pass acme's hard cap of 1,000"
    );
    assert_eq!(
        refused(&["acme", "--meter", "tokens", "--property", "tokens=6000"]),
        "refused: tokens: 6,000 more would pass acme's hard cap of 5,000"
    );
    s.cmd()
        .args([
            "record",
            "acme",
            "--meter",
            "active_users",
            "--property",
            "user=ann",
        ])
        .assert()
        .success();
    assert_eq!(
        refused(&["acme", "--meter", "active_users", "--property", "user=bob"]),
        "refused: active_users: user \"bob\" would be one past acme's hard cap of 1"
    );

    // The same words for a line of --batch, after its number.
    let out = s
        .cmd()
        .args(["record", "--batch", "-"])
        .write_stdin(
            "{\"customer\":\"acme\",\"meter\":\"tokens_max\",\"properties\":{\"tokens\":\"1200\"}}\n",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 1: refused: tokens_max: 1,200 would pass acme's hard cap of 1,000"),
        "{stderr}"
    );
}

/// `export usage` names the Stripe event each meter's usage is reported to (it left
/// `meter_event_name` empty for every meter but the implicit `usage`).
fn export_usage_names_each_meters_stripe_event(engine: Engine) {
    let s = crate::support::meters::scratch(engine);
    for args in [
        &["record", "acme"][..],
        &[
            "record",
            "acme",
            "--meter",
            "tokens",
            "--property",
            "tokens=40",
        ],
        &["record", "acme", "--meter", "credits", "-n", "3"],
    ] {
        s.cmd().args(args).assert().success();
    }
    let out = s
        .cmd()
        .args(["export", "usage", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let rows: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let events: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["meter_id"].as_str().unwrap(),
                r["meter_event_name"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("credits", "credits_used"),
            ("requests", "api_requests"),
            ("tokens", "ai_tokens")
        ]
    );
}
