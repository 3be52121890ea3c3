//! One meter model: the implicit meter of a plans.toml without `[[meters]]` and every
//! `[[meters]]` meter count and answer the same way (issue 24, items 5–9), on both engines.

use crate::support::cli::Scratch;
use crate::support::engine::{Engine, engine_tests};

engine_tests!(
    a_quantity_property_keeps_every_counter_of_the_implicit_meter_in_step,
    a_duplicate_answers_the_standing_of_its_own_meter,
    a_max_or_latest_meter_at_its_limit_is_still_allowed,
    a_changed_aggregation_never_mixes_in_one_counter,
    a_meter_named_usage_is_an_ordinary_meter,
);

/// On `crate::meters::PLANS`: requests capped at 5, seats (latest of `seats`) at 10, peak
/// (max of `concurrency`) at 8, for acme on the free plan.
use crate::meters::{PLANS as VALUE_PLANS, scratch};

fn scratch_with(engine: Engine, plans: &str) -> Scratch {
    let s = Scratch::on(engine);
    std::fs::write(&s.plans, plans).unwrap();
    s.add_customer("acme", "free", "2026-11-01");
    s
}

fn record_json(s: &Scratch, args: &[&str]) -> serde_json::Value {
    let out = s
        .cmd()
        .args(["record", "--json"])
        .args(args)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{args:?}: {}", String::from_utf8_lossy(&out.stderr)))
}

/// Item 6: `--property quantity=500` on the implicit meter counts 500 everywhere: the
/// customer's total, the member's share, the event, and `backup` finds them agreeing.
fn a_quantity_property_keeps_every_counter_of_the_implicit_meter_in_step(engine: Engine) {
    let s = Scratch::on(engine);
    s.add_customer("org", "team", "2026-11-01");
    s.cmd()
        .args(["record", "org", "--user", "alice", "-n", "1"])
        .args(["--property", "quantity=500"])
        .assert()
        .success();
    assert_eq!(s.json(&["check", "org", "--json"])["used"], 500);
    let members = s.json(&["members", "org", "--json"]);
    assert_eq!(members["members"][0]["user_id"], "alice");
    assert_eq!(members["members"][0]["used"], 500, "{members}");
    let events = s.cmd().args(["export", "events"]).output().unwrap();
    assert!(events.status.success());
    if engine == Engine::Sqlite {
        let backup = s.dir.path().join("copy.db");
        s.cmd().arg("backup").arg(&backup).assert().success();
    }
}

/// Item 7: a resent key answers with the standing of the meter its event counted on, at its
/// cap too, on the CLI and in a batch.
fn a_duplicate_answers_the_standing_of_its_own_meter(engine: Engine) {
    let s = scratch(engine);
    for i in 0..5 {
        let key = format!("r{i}");
        s.cmd()
            .args(["record", "acme", "--meter", "requests", "--key", &key])
            .assert()
            .success();
    }
    let again = record_json(&s, &["acme", "--meter", "requests", "--key", "r2"]);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["used"], 5, "{again}");
    assert_eq!(again["limit"], 5, "{again}");
    assert_eq!(again["allowed"], false, "{again}");
    let batch = s
        .cmd()
        .args(["record", "--batch", "-", "--json"])
        .write_stdin("{\"customer\":\"acme\",\"meter\":\"requests\",\"key\":\"r1\"}\n")
        .output()
        .unwrap();
    let line: serde_json::Value =
        serde_json::from_slice(batch.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(
        (line["duplicate"].clone(), line["used"].clone()),
        (true.into(), 5.into()),
        "{line}"
    );
    assert_eq!(line["limit"], 5, "{line}");
}

/// Item 8: a `max` or `latest` meter at exactly its limit takes that value again, so `check`
/// says allowed and `--exit-code` exits 0; only a value above is refused.
fn a_max_or_latest_meter_at_its_limit_is_still_allowed(engine: Engine) {
    let s = scratch(engine);
    for (meter, property, limit) in [("peak", "concurrency", 8), ("seats", "seats", 10)] {
        let value = format!("{property}={limit}");
        s.cmd()
            .args(["record", "acme", "--meter", meter, "--property", &value])
            .assert()
            .success();
        let check = s.json(&["check", "acme", "--meter", meter, "--json"]);
        assert_eq!(check["used"], limit);
        assert_eq!(check["allowed"], true, "{meter}: {check}");
        s.cmd()
            .args(["check", "acme", "--meter", meter, "--exit-code"])
            .assert()
            .code(0);
        // The same value again is taken; one above is refused.
        s.cmd()
            .args(["record", "acme", "--meter", meter, "--property", &value])
            .assert()
            .success();
        let above = format!("{property}={}", limit + 1);
        s.cmd()
            .args(["record", "acme", "--meter", meter, "--property", &above])
            .assert()
            .code(3);
    }
    assert_eq!(s.json(&["check", "acme", "--json"])["allowed"], true);
}

/// Item 9: a meter whose aggregation changes mid-period is never counted two ways in one
/// total: its events are refused (exit 2, saying why and the way out), nothing changes, and
/// `doctor` and `plans` say so.
fn a_changed_aggregation_never_mixes_in_one_counter(engine: Engine) {
    let s = scratch(engine);
    for v in ["4", "2"] {
        let value = format!("seats={v}");
        s.cmd()
            .args(["record", "acme", "--meter", "seats", "--property", &value])
            .assert()
            .success();
    }
    // seats becomes unique_count of the same property.
    let changed = VALUE_PLANS.replace(
        "id = \"seats\"\naggregation = \"latest\"",
        "id = \"seats\"\naggregation = \"unique_count\"",
    );
    assert_ne!(changed, VALUE_PLANS);
    std::fs::write(&s.plans, &changed).unwrap();
    let before = s.dump();
    let out = s
        .cmd()
        .args([
            "record",
            "acme",
            "--meter",
            "seats",
            "--property",
            "seats=7",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("counted as latest") && stderr.contains("unique_count"),
        "{stderr}"
    );
    assert_eq!(s.dump(), before, "a refused event wrote something");
    assert_eq!(
        s.json(&["check", "acme", "--meter", "seats", "--json"])["used"],
        2
    );
    let doctor = s.cmd().arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(text.contains("was counted as latest"), "{text}");
    let plans = s.cmd().arg("plans").output().unwrap();
    assert!(
        String::from_utf8_lossy(&plans.stderr).contains("was counted as latest"),
        "{}",
        String::from_utf8_lossy(&plans.stderr)
    );
    // Removing the meter: its unsent events are said to be kept and never sent.
    let removed = changed.replace(
        "[[meters]]\nid = \"seats\"\naggregation = \"unique_count\"\nproperty = \"seats\"\n",
        "",
    );
    let removed = removed.replace("[plans.meters.seats]\nincluded = 10\n", "");
    assert_ne!(removed, changed);
    std::fs::write(&s.plans, &removed).unwrap();
    let doctor = s.cmd().arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        text.contains("meter \"seats\" is no longer in plans.toml")
            && text.contains("never be sent"),
        "{text}"
    );
}

/// A `[[meters]]` meter named `usage` counts by its own aggregation, like any other.
fn a_meter_named_usage_is_an_ordinary_meter(engine: Engine) {
    let plans = r#"
[[meters]]
id = "usage"
aggregation = "max"
property = "value"

[[plans]]
id = "free"
[plans.meters.usage]
included = 10
"#;
    let s = scratch_with(engine, plans);
    for v in ["4", "9", "2"] {
        let value = format!("value={v}");
        s.cmd()
            .args(["record", "acme", "--property", &value])
            .assert()
            .success();
    }
    let check = s.json(&["check", "acme", "--json"]);
    assert_eq!(check["used"], 9, "{check}");
    assert_eq!(check["allowed"], true, "{check}");
    s.cmd()
        .args(["record", "acme", "--property", "value=11"])
        .assert()
        .code(3);
}

/// Item 5: `backup` of a database with events on `[[meters]]` meters succeeds and counts them.
#[test]
fn backup_succeeds_with_events_on_every_kind_of_meter() {
    let s = crate::support::meters::scratch(Engine::Sqlite);
    for args in [
        &["record", "acme", "--meter", "requests"][..],
        &[
            "record",
            "acme",
            "--meter",
            "tokens",
            "--property",
            "tokens=1200",
            "--property",
            "model=large",
        ],
        &[
            "record",
            "acme",
            "--meter",
            "users",
            "--property",
            "user=u1",
        ],
        &[
            "record",
            "acme",
            "--meter",
            "users",
            "--property",
            "user=u1",
        ],
    ] {
        s.cmd().args(args).assert().success();
    }
    let copy = s.dir.path().join("copy.db");
    let out = s.cmd().arg("backup").arg(&copy).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A database of today's schema before one meter model (tests/fixtures/schema_v11): after
/// the upgrade, the implicit meter's totals count in meter_counters, every old row is there,
/// new records count on, and backup agrees.
#[test]
fn a_database_with_meters_upgrades_to_one_meter_model() {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schema_v11");
    let s = Scratch::new();
    std::fs::copy(format!("{fixture}/meterline.db"), &s.db).unwrap();
    std::fs::copy(format!("{fixture}/plans.toml"), &s.plans).unwrap();
    let count = |sql: &str| -> i64 { s.conn().query_row(sql, [], |r| r.get(0)).unwrap() };
    let events = count("SELECT COUNT(*) FROM usage_events");
    s.cmd().arg("upgrade").assert().success();
    assert_eq!(count("SELECT COUNT(*) FROM usage_events"), events);
    // Every implicit-meter total is now a meter total too, and agrees with usage_records.
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM usage_records r JOIN meter_counters m
             ON m.customer_id = r.customer_id AND m.period_start = r.period_start
             AND m.meter_id = 'usage' AND m.group_key = '' AND m.used = r.used"
        ),
        count("SELECT COUNT(*) FROM usage_records WHERE used > 0")
    );
    // The meters answer as they did, and keep counting.
    let tokens = s.json(&["check", "acme", "--meter", "tokens", "--json"]);
    assert_eq!(tokens["used"], 1500);
    s.cmd()
        .args(["record", "acme", "--meter", "tokens"])
        .args(["--property", "tokens=5", "--property", "model=small"])
        .assert()
        .success();
    assert_eq!(
        s.json(&["check", "acme", "--meter", "tokens", "--json"])["used"],
        1505
    );
    let copy = s.dir.path().join("copy.db");
    s.cmd().arg("backup").arg(&copy).assert().success();
    // The implicit meter's closed period under the legacy plans reads as it was.
    std::fs::copy(format!("{fixture}/legacy.toml"), &s.plans).unwrap();
    let history = s.json(&["history", "acme", "--periods", "2", "--json"]);
    assert_eq!(history[0]["used"], 40, "{history}");
    assert_eq!(history[1]["used"], 25, "{history}");
}
