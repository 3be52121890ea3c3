//! How `meterline` (the dashboard) starts from the command line when it cannot run.

use std::path::Path;
use std::process::Command;

use assert_cmd::prelude::*;
use predicates::prelude::*;

const BIN: &str = env!("CARGO_BIN_EXE_meterline");

fn plans() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/plans.toml"))
}

#[test]
fn demo_with_a_subcommand_is_a_usage_error() {
    Command::new(BIN)
        .args(["--demo", "status"])
        .arg("--plans")
        .arg(plans())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--demo opens the dashboard"));
}

#[test]
fn without_a_terminal_it_says_so_and_leaves_the_output_clean() {
    // setsid drops the controlling terminal, so the dashboard cannot take over this one.
    if Command::new("setsid").arg("true").output().is_err() {
        eprintln!("setsid is not available; skipping");
        return;
    }
    let dir = tempfile::TempDir::new().unwrap();
    let db = dir.path().join("m.db");
    Command::new(BIN)
        .arg("--db")
        .arg(&db)
        .arg("--plans")
        .arg(plans())
        .args(["customer", "add", "acme"])
        .assert()
        .success();
    Command::new("setsid")
        .arg(BIN)
        .arg("--db")
        .arg(&db)
        .arg("--plans")
        .arg(plans())
        .stdin(std::process::Stdio::null())
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains("needs an interactive terminal"))
        .stderr(predicate::str::contains("meterline status"));
}

#[test]
fn a_bad_plans_file_is_reported_before_the_terminal_is_touched() {
    let dir = tempfile::TempDir::new().unwrap();
    let bad = dir.path().join("plans.toml");
    std::fs::write(
        &bad,
        "[[plans]]\nid = \"pro\"\nname = \"Pro\"\nprice = \"1\"\n",
    )
    .unwrap();
    Command::new(BIN)
        .arg("--db")
        .arg(dir.path().join("m.db"))
        .arg("--plans")
        .arg(&bad)
        .stdin(std::process::Stdio::null())
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains("free"));
    assert!(!dir.path().join("m.db").exists(), "no database created");
}

/// `meterline` with a pinned clock on a scratch database and the shipped plans.
fn at(dir: &Path, now: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env("METERLINE_NOW", now)
        .env("METERLINE_DB", dir.join("m.db"))
        .env("METERLINE_PLANS", plans())
        .env_remove("STRIPE_API_KEY");
    cmd
}

#[test]
fn status_counts_events_past_stripes_window_as_expired_like_the_dashboard() {
    let dir = tempfile::TempDir::new().unwrap();
    let now = "2026-11-27T18:00:00Z";
    // The customer exists since well before its oldest event.
    at(dir.path(), "2026-09-01T00:00:00Z")
        .args([
            "customer",
            "add",
            "acme",
            "--plan",
            "pro",
            "--anchor",
            "2026-09-01",
        ])
        .assert()
        .success();
    for when in ["2026-10-10T10:00:00Z", "2026-11-20T10:00:00Z"] {
        at(dir.path(), now)
            .args(["record", "acme", "-n", "3", "--at", when])
            .assert()
            .success();
    }
    // No sync has run: the event of 10 October (48 days old) can never go out all the same.
    let out = at(dir.path(), now).arg("status").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("stripe: 1 unreported (0 failed, 1 unmapped), 1 expired; never synced"),
        "{text}"
    );
    let acme = text.lines().find(|l| l.starts_with("acme")).unwrap();
    // UNREPORTED, before the overage.
    assert!(acme.trim_end().ends_with(" 1        $0.00"), "{acme}");
}

#[test]
fn past_the_limit_the_text_output_uses_the_json_level_and_says_overage() {
    let dir = tempfile::TempDir::new().unwrap();
    let now = "2026-11-27T18:00:00Z";
    for (id, plan) in [("globex", "pro"), ("acme", "free")] {
        at(dir.path(), now)
            .args([
                "customer",
                "add",
                id,
                "--plan",
                plan,
                "--anchor",
                "2026-11-15",
            ])
            .assert()
            .success();
    }
    for (id, n) in [("globex", "134000"), ("acme", "1000")] {
        at(dir.path(), now)
            .args(["record", id, "-n", n])
            .assert()
            .success();
    }
    let json = at(dir.path(), now)
        .args(["check", "globex", "--json"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&json.stdout).contains("\"level\":\"hard_cap\""));
    let check = at(dir.path(), now)
        .args(["check", "globex"])
        .output()
        .unwrap();
    let check = String::from_utf8(check.stdout).unwrap();
    assert!(
        check.contains("level hard_cap (overage)  allowed"),
        "{check}"
    );
    let status = at(dir.path(), now).arg("status").output().unwrap();
    let status = String::from_utf8(status.stdout).unwrap();
    let line = |id: &str| {
        status
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap()
            .to_string()
    };
    assert!(line("globex").contains("hard_cap (overage)"), "{status}");
    assert!(line("acme").contains("hard_cap "), "{status}");
    assert!(!line("acme").contains("overage"), "{status}");
}
