//! The `--json` shapes of check, record and status (README.md, docs/api.md), printed by the
//! real binary: insta snapshots with one key per line, so the key order is kept too.

use crate::support::cli::{Scratch, one_key_per_line};
use crate::support::engine::{Engine, engine_tests};

engine_tests!(check_json_shape, record_json_shape, status_json_shape,);

/// A database in every interesting state for the JSON snapshots, through the real binary.
fn json_scratch(engine: Engine) -> Scratch {
    let s = Scratch::on(engine);
    s.add_customer("acme", "free", "2026-11-01");
    s.add_customer("globex", "pro", "2026-11-15");
    s.add_customer("initech", "business", "2026-10-31");
    s.record("acme", 990);
    s.record("globex", 123_457);
    s.record("initech", 42);
    s
}

fn stdout_of(s: &Scratch, args: &[&str], code: i32) -> String {
    let out = s.cmd().args(args).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    one_key_per_line(&out.stdout)
}

fn check_json_shape(engine: Engine) {
    let s = json_scratch(engine);
    insta::assert_snapshot!(
        "check_capped",
        stdout_of(&s, &["check", "acme", "--json"], 0)
    );
    insta::assert_snapshot!(
        "check_overage",
        stdout_of(&s, &["check", "globex", "--json"], 0)
    );
    insta::assert_snapshot!(
        "check_unlimited",
        stdout_of(&s, &["check", "initech", "--json"], 0)
    );
}

fn record_json_shape(engine: Engine) {
    let s = json_scratch(engine);
    let args = ["record", "acme", "-n", "5", "--key", "k-1", "--json"];
    insta::assert_snapshot!("record_recorded", stdout_of(&s, &args, 0));
    insta::assert_snapshot!("record_duplicate", stdout_of(&s, &args, 0));
    insta::assert_snapshot!(
        "record_refused",
        stdout_of(&s, &["record", "acme", "-n", "6", "--json"], 3)
    );
}

fn status_json_shape(engine: Engine) {
    let s = json_scratch(engine);
    insta::assert_snapshot!("status", stdout_of(&s, &["status", "--json"], 0));
}
