//! One rule for every input, on every route: a retry without a time is the same event
//! whenever it arrives, a number property keeps its digits, a key is never repeated, text is
//! compared in one Unicode form, a meter's value is never 0, an id cannot look like another,
//! and the CLI's text neither overstates usage nor fails on a closed pipe.

use std::process::Stdio;

use crate::support::cli::{BIN, Scratch};
use predicates::str::contains;

/// Run `meterline ARGS` with its stdout closed before it writes (`| head -0`): exit code and
/// stderr.
fn with_stdout_closed(args: &[&str]) -> (Option<i32>, String) {
    let mut child = std::process::Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn completions_and_the_man_page_end_quietly_on_a_closed_pipe() {
    for args in [&["completions", "bash"][..], &["man"]] {
        let (code, stderr) = with_stdout_closed(args);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?} was not quiet");
    }
}

#[test]
fn check_never_shows_the_limit_reached_below_it() {
    let s = Scratch::new();
    s.add_customer("acme", "starter", "2026-11-01");
    s.record("acme", 9_996);
    s.cmd()
        .args(["check", "acme"])
        .assert()
        .stdout(contains("used 9,996 / 10,000 (99.9 %)  level critical"));
    s.record("acme", 4);
    s.cmd()
        .args(["check", "acme"])
        .assert()
        .stdout(contains("(100.0 %)  level hard_cap"));
}
