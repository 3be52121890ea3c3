//! `meterline plans`: the shipped plans.toml validates and prints, and every mistake in
//! tests/invalid_plans/ is refused with exit 2 and its precise message.

use std::path::{Path, PathBuf};

use crate::support::cli::{BIN, one_key_per_line, repo_plans};

fn plans_cmd(plans: &Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(BIN);
    cmd.env_remove("METERLINE_PLANS")
        .arg("--plans")
        .arg(plans)
        .arg("plans");
    cmd
}

/// Each file in tests/invalid_plans names the message it must produce in `# expect:` lines.
fn invalid_cases() -> Vec<(PathBuf, Vec<String>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid_plans");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/invalid_plans")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let expected: Vec<String> = text
                .lines()
                .filter_map(|line| line.strip_prefix("# expect: "))
                .map(str::to_string)
                .collect();
            assert!(!expected.is_empty(), "{} has no # expect:", path.display());
            (path, expected)
        })
        .collect();
    cases.sort();
    cases
}

#[test]
fn every_invalid_plans_file_is_refused_with_its_message() {
    let cases = invalid_cases();
    assert!(cases.len() >= 24, "invalid plans cases went missing");
    let scratch = tempfile::tempdir().unwrap();
    let db = scratch.path().join("untouched.db");
    let mut failures = Vec::new();
    for (path, expected) in &cases {
        let out = plans_cmd(path)
            .arg("--db")
            .arg(&db)
            .output()
            .expect("run meterline");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let name = path.file_name().unwrap().to_string_lossy();
        if out.status.code() != Some(2) {
            failures.push(format!("{name}: exit {:?}, want 2", out.status.code()));
        }
        if !out.stdout.is_empty() {
            failures.push(format!("{name}: printed to stdout"));
        }
        // The message names the file, then says what is wrong.
        if !stderr.starts_with("error: ") || !stderr.contains(&*path.to_string_lossy()) {
            failures.push(format!("{name}: message does not name the file: {stderr}"));
        }
        for want in expected {
            if !stderr.contains(want.as_str()) {
                failures.push(format!("{name}: missing {want:?} in:\n{stderr}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(!db.exists(), "validating plans touched the database");
}

#[test]
fn a_missing_plans_file_is_a_usage_error() {
    let scratch = tempfile::tempdir().unwrap();
    let missing = scratch.path().join("nope.toml");
    plans_cmd(&missing)
        .assert()
        .code(2)
        .stderr(predicates::str::contains(format!(
            "cannot read plans file {}",
            missing.display()
        )))
        .stderr(predicates::str::contains("`meterline init`"));
}

#[test]
fn the_shipped_plans_file_validates_and_prints_a_table() {
    let out = plans_cmd(Path::new("plans.toml"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    insta::assert_snapshot!(String::from_utf8(out.stdout).unwrap());
}

#[test]
fn plans_json_has_the_documented_shape() {
    let out = plans_cmd(&repo_plans()).arg("--json").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = json["plans"]
        .as_array()
        .expect("plans array")
        .iter()
        .map(|p| p["id"].as_str().expect("plan id"))
        .collect();
    assert_eq!(ids, ["free", "starter", "pro", "team", "business"]);
    assert!(json["thresholds"].is_object());
    assert!(json["stripe"].is_object());
    insta::assert_snapshot!(one_key_per_line(&out.stdout));
}

#[test]
fn money_is_shown_in_the_configured_currency() {
    let dir = tempfile::tempdir().unwrap();
    let plans = dir.path().join("plans.toml");
    std::fs::write(
        &plans,
        "[billing]\ncurrency = \"eur\"\n\n[[plans]]\nid = \"free\"\nprice = \"19.5\"\nincluded = 10\nat_limit = \"overage\"\noverage_rate = \"0.0004\"\n",
    )
    .unwrap();
    let out = plans_cmd(&plans).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("19.50 EUR"), "{text}");
    assert!(text.contains("0.0004 EUR"), "{text}");
    assert!(text.contains("currency eur"), "{text}");
    let out = plans_cmd(&plans).arg("--json").output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["billing"]["currency"], "eur");
    // Absent: usd.
    let out = plans_cmd(&repo_plans()).arg("--json").output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["billing"]["currency"], "usd");
}

/// With `[[meters]]` each plan's terms are per meter (the plan's own fields stay empty, so
/// the table once called every plan unlimited on `meterline_usage`).
#[test]
fn meter_plans_print_each_meters_terms_and_stripe_event() {
    let plans = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/plans-ai-api.toml");
    let out = plans_cmd(&plans).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let text = text.replace(&*plans.to_string_lossy(), "plans-ai-api.toml");
    assert!(!text.contains("unlimited"), "{text}");
    assert!(!text.contains("meterline_usage"), "{text}");
    insta::assert_snapshot!(text);
}

/// Each meter's event type and a plan's rates per meter, in the table (a line per rate under
/// its meter) and in `--json` (`event`; `rates` as `where` and `rate`, in the file's order).
#[test]
fn meter_plans_show_each_meters_event_type_and_the_rates_per_meter() {
    let plans = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/plans-ai-api.toml");
    let out = plans_cmd(&plans).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let line = |start: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(start))
            .unwrap_or_else(|| panic!("no line {start:?} in:\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(line("tokens")[..2], ["tokens", "completion"]);
    assert_eq!(
        line("where model = \"large\""),
        ["where", "model", "=", "\"large\"", "$0.00001"]
    );
    assert_eq!(
        line("where model = [\"small\""),
        [
            "where",
            "model",
            "=",
            "[\"small\",",
            "\"tiny\"]",
            "$0.000001"
        ]
    );

    let out = plans_cmd(&plans).arg("--json").output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for meter in json["meters"].as_array().unwrap() {
        assert_eq!(meter["event"], "completion", "{meter}");
    }
    let pro = json["plans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "pro")
        .unwrap();
    assert_eq!(
        pro["meters"]["tokens"]["rates"],
        serde_json::json!([
            {"where": {"model": ["large"]}, "rate": "0.00001"},
            {"where": {"model": ["vision"]}, "rate": "0.000006"},
            {"where": {"model": ["small", "tiny"]}, "rate": "0.000001"},
            {"where": {"model": ["embed"]}, "rate": "0.0000001"},
        ])
    );
    // A meter without rates has none to show.
    assert!(pro["meters"]["requests"].get("rates").is_none(), "{pro}");
}
