//! What the CLI prints: a closed pipe ends it quietly, text from data never reaches the
//! terminal as escape sequences, look-alike ids are refused, and the first steps work with
//! the defaults README promises.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::support::cli::Scratch;
use predicates::prelude::*;
use predicates::str::contains;

use crate::support::engine::{Engine, engine_tests};

engine_tests!(
    a_closed_pipe_ends_every_listing_quietly,
    text_from_data_is_shown_not_obeyed,
    look_alike_ids_empty_keys_and_long_text_are_refused,
);

/// Run `args`, read one line, close the pipe (`| head -1`), and return the exit code and stderr.
fn first_line_then_close(s: &Scratch, args: &[&str]) -> (Option<i32>, String, String) {
    let mut child = std::process::Command::new(crate::support::cli::BIN)
        .env("METERLINE_NOW", crate::support::cli::NOW)
        .env("METERLINE_DB", &s.db)
        .env("METERLINE_PLANS", &s.plans)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader is dropped here: the pipe is closed with most of the output unwritten.
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        first,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn a_closed_pipe_ends_every_listing_quietly(engine: Engine) {
    let s = Scratch::on(engine);
    // Far more output than a pipe buffers (64 KiB), so the writer meets the closed pipe.
    s.cmd()
        .args(["demo", "--customers", "3000", "--events", "3000"])
        .assert()
        .success();
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["customer", "list"],
        &["customer", "list", "--json"],
    ] {
        let (code, first, stderr) = first_line_then_close(&s, args);
        assert!(!first.is_empty(), "{args:?} printed nothing");
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?} was not quiet");
    }
}

fn text_from_data_is_shown_not_obeyed(engine: Engine) {
    let s = Scratch::on(engine);
    // A plans.toml with a hostile plan name, and a customer name to match.
    let plans = std::fs::read_to_string(&s.plans).unwrap();
    let hostile = plans.replacen("name = \"Free\"", "name = \"Fr\\u001b[2Jee\\u202e\"", 1);
    assert_ne!(
        plans, hostile,
        "the shipped plans.toml names its free plan Free"
    );
    std::fs::write(&s.plans, hostile).unwrap();
    s.cmd()
        .args([
            "customer",
            "add",
            "acme",
            "--name",
            "Evil\x1b]0;pwned\x07Corp",
        ])
        .assert()
        .success()
        .stdout(contains("Evil\\x1b]0;pwned\\x07Corp"));
    s.cmd()
        .args(["record", "acme", "--user", "alice"])
        .assert()
        .success();

    let no_escape =
        || predicate::function(|out: &str| !out.contains('\x1b') && !out.contains('\u{202e}'));
    s.cmd()
        .args(["plans"])
        .assert()
        .success()
        .stdout(contains("Fr\\x1b[2Jee\\u{202e}"))
        .stdout(no_escape());
    s.cmd()
        .args(["customer", "list"])
        .assert()
        .success()
        .stdout(contains("Evil\\x1b]0;pwned\\x07Corp"))
        .stdout(no_escape());
    // Error messages echo what was typed, made visible.
    s.cmd()
        .args(["check", "ac\x1b[31mme"])
        .assert()
        .code(2)
        .stderr(contains("unknown customer \"ac\\x1b[31mme\""))
        .stderr(no_escape());
    // A member id from before validation existed, straight in the database.
    s.inspect()
        .exec("UPDATE usage_events SET user_id = 'al\x1b[2Jice' WHERE user_id = 'alice'");
    s.cmd()
        .args(["members", "acme"])
        .assert()
        .success()
        .stdout(contains("al\\x1b[2Jice"))
        .stdout(no_escape());
}

fn look_alike_ids_empty_keys_and_long_text_are_refused(engine: Engine) {
    let s = Scratch::on(engine);
    s.add_customer("acme", "free", "2026-11-01");
    let before = s.dump();
    let long = "x".repeat(300);
    let long_id = "x".repeat(101);
    for (args, message) in [
        // Bidi override and zero-width space: an id that looks like another.
        (
            vec!["customer", "add", "ac\u{202e}me"],
            "customer id \"ac\\u{202e}me\" must be 1 to 100 characters",
        ),
        (
            vec!["customer", "add", "ac\u{200b}me"],
            "customer id \"ac\\u{200b}me\" must be",
        ),
        (vec!["customer", "add", &long_id], "customer id"),
        (
            vec!["customer", "add", "initech", "--name", &long],
            "a customer name must be 1 to 256 characters",
        ),
        (
            vec!["record", "acme", "--user", ""],
            "member id (--user) \"\" must be 1 to 100 characters",
        ),
        (
            vec!["record", "acme", "--user", "bob\u{2066}"],
            "member id (--user) \"bob\\u{2066}\"",
        ),
        (
            vec!["record", "acme", "--user", "a b"],
            "member id (--user) \"a b\" must be",
        ),
        (
            vec!["record", "acme", "--user", &long_id],
            "member id (--user)",
        ),
        (
            vec!["record", "acme", "--key", ""],
            "idempotency key \"\" must be 1 to 255 characters",
        ),
        (
            vec!["record", "acme", "--key", "k\x1b[2J"],
            "idempotency key \"k\\x1b[2J\" must be",
        ),
        (vec!["record", "acme", "--key", &long], "idempotency key"),
    ] {
        s.cmd()
            .args(&args)
            .assert()
            .code(2)
            .stdout("")
            .stderr(contains(message))
            .stderr(predicate::function(|e: &str| !e.contains('\x1b')));
    }
    assert_eq!(s.dump(), before);
}

#[test]
fn first_steps_work_with_the_defaults() {
    let s = Scratch::new();
    // `customer add ID` without --plan: the free plan, as README and plans.toml say.
    s.cmd()
        .args(["customer", "add", "acme", "--json"])
        .assert()
        .success()
        .stdout(contains("\"plan_id\":\"free\""));
    // `meterline demo` without a plans.toml: the built-in example plans, as `--demo` uses,
    // written beside the database.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    s.cmd()
        .env_remove("METERLINE_PLANS")
        .current_dir(dir.path())
        .arg("--db")
        .arg(&db)
        .args(["demo", "--customers", "5", "--events", "50"])
        .assert()
        .success()
        .stdout(contains(
            "plans: built-in example plans, written to plans.toml",
        ));
    // Written beside it, so the next command reads the demo with the plans it was made on.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("plans.toml")).unwrap(),
        std::fs::read_to_string(crate::support::cli::repo_plans()).unwrap()
    );
}
