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
