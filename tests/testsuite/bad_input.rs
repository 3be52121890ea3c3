//! Every bad input to the CLI: a clear message, the right exit code, and not one byte of data
//! changed (each case compares a full dump of the database before and after).

use std::time::{Duration, Instant};

use crate::support::cli::Scratch;
use crate::support::engine::{Engine, engine_tests};
use predicates::str::contains;

engine_tests!(
    unknown_customer,
    unknown_plan,
    quantities_out_of_range,
    malformed_instants,
    invalid_plans_file_stops_a_record,
    a_record_past_the_hard_cap_is_refused_with_exit_3,
    duplicate_idempotency_key_counts_nothing,
    a_key_reused_with_other_parameters_is_a_conflict,
    impossible_event_times_are_refused,
    billing_anchors_are_bounded,
    bad_customer_ids_and_stripe_ids,
    a_database_locked_by_another_writer_waits_then_fails_clearly,
);

/// Two customers with some usage: the state every refused command must leave exactly as it was.
fn populated(engine: Engine) -> Scratch {
    let s = Scratch::on(engine);
    s.add_customer("acme", "free", "2026-11-01");
    s.add_customer("globex", "pro", "2026-11-15");
    s.cmd()
        .args([
            "record", "acme", "-n", "10", "--key", "k1", "--user", "alice",
        ])
        .assert()
        .success();
    s.record("globex", 500);
    s
}

/// Run `args`; it must exit `code` with `message` on stderr, print nothing on stdout, and
/// leave the database as it was.
fn refused(s: &Scratch, args: &[&str], code: i32, message: &str) {
    let before = s.dump();
    s.cmd()
        .args(args)
        .assert()
        .code(code)
        .stdout("")
        .stderr(contains(message));
    assert_eq!(s.dump(), before, "meterline {args:?} changed the database");
}

fn unknown_customer(engine: Engine) {
    let s = populated(engine);
    let message = "unknown customer \"nobody\"; add it with `meterline customer add nobody";
    for args in [
        &["record", "nobody"][..],
        &["check", "nobody"],
        &["history", "nobody"],
        &["members", "nobody"],
        &["customer", "set-plan", "nobody", "pro"],
        &["customer", "set-stripe", "nobody", "cus_Nffr2Hib"],
    ] {
        refused(&s, args, 2, message);
    }
}

fn unknown_plan(engine: Engine) {
    let s = populated(engine);
    let message =
        "unknown plan \"platinum\"; plans.toml defines: free, starter, pro, team, business";
    refused(
        &s,
        &["customer", "add", "initech", "--plan", "platinum"],
        2,
        message,
    );
    refused(
        &s,
        &["customer", "set-plan", "acme", "platinum"],
        2,
        message,
    );
}

fn quantities_out_of_range(engine: Engine) {
    let s = populated(engine);
    for (quantity, reason) in [
        ("0", "0 is not in 1..=1000000000000"),
        ("-5", "-5 is not in 1..=1000000000000"),
        ("many", "invalid digit found in string"),
        ("1.5", "invalid digit found in string"),
        ("", "cannot parse integer from empty string"),
        // Past i64, and past the largest single event.
        (
            "99999999999999999999",
            "number too large to fit in target type",
        ),
        (
            "9223372036854775807",
            "9223372036854775807 is not in 1..=1000000000000",
        ),
    ] {
        refused(
            &s,
            &["record", "acme", "-n", quantity],
            2,
            &format!("invalid value '{quantity}' for '--quantity <QUANTITY>': {reason}"),
        );
    }
}

fn malformed_instants(engine: Engine) {
    let s = populated(engine);
    for at in [
        "yesterday",
        "2026-11-27",
        "2026-13-01T00:00:00Z",
        "1700000000",
    ] {
        refused(
            &s,
            &["record", "acme", "--at", at],
            2,
            &format!("invalid value '{at}' for '--at <AT>'"),
        );
        refused(
            &s,
            &["--now", at, "record", "acme"],
            2,
            &format!("invalid value '{at}' for '--now <NOW>'"),
        );
    }
    let before = s.dump();
    s.cmd()
        .env("METERLINE_NOW", "next tuesday")
        .args(["record", "acme"])
        .assert()
        .code(2)
        .stderr(contains("invalid value 'next tuesday'"))
        .stderr(contains("expected RFC3339, e.g. 2026-11-27T18:00:00Z"));
    assert_eq!(s.dump(), before);
    refused(
        &s,
        &[
            "customer",
            "add",
            "initech",
            "--plan",
            "free",
            "--anchor",
            "31/01/2026",
        ],
        2,
        "expected YYYY-MM-DD",
    );
}

fn invalid_plans_file_stops_a_record(engine: Engine) {
    let s = populated(engine);
    std::fs::write(&s.plans, "[[plans]]\nid = \"free\"\nincluded = -1\n").unwrap();
    refused(
        &s,
        &["record", "acme"],
        2,
        "plan \"free\": included = -1 must be between 0 and 1000000000000000",
    );
}

fn a_record_past_the_hard_cap_is_refused_with_exit_3(engine: Engine) {
    let s = populated(engine);
    let before = s.dump();
    s.cmd()
        .args(["record", "acme", "-n", "991"])
        .assert()
        .code(3)
        .stderr(contains(
            "refused: recording 991 would pass acme's hard cap",
        ));
    assert_eq!(s.dump(), before);
    // Exactly up to the cap is still allowed.
    s.record("acme", 990);
}

fn duplicate_idempotency_key_counts_nothing(engine: Engine) {
    let s = populated(engine);
    let before = s.dump();
    let again = s.json(&[
        "record", "acme", "-n", "10", "--key", "k1", "--user", "alice", "--json",
    ]);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["recorded"], false);
    assert_eq!(again["event_id"], 1);
    assert_eq!(again["used"], 10);
    assert_eq!(s.dump(), before);
    refused(
        &s,
        &[
            "record", "globex", "-n", "10", "--key", "k1", "--user", "alice",
        ],
        2,
        "idempotency key \"k1\" was already used (event 1) with other parameters: \
         customer \"globex\" (was \"acme\")",
    );
}

fn a_key_reused_with_other_parameters_is_a_conflict(engine: Engine) {
    let s = populated(engine);
    let prefix = "idempotency key \"k1\" was already used (event 1) with other parameters: ";
    refused(
        &s,
        &[
            "record", "acme", "-n", "999", "--key", "k1", "--user", "alice",
        ],
        2,
        &format!("{prefix}quantity 999 (was 10); nothing recorded"),
    );
    refused(
        &s,
        &["record", "acme", "-n", "10", "--key", "k1", "--user", "bob"],
        2,
        &format!("{prefix}user \"bob\" (was \"alice\")"),
    );
    refused(
        &s,
        &["record", "acme", "-n", "10", "--key", "k1"],
        2,
        &format!("{prefix}user none (was \"alice\")"),
    );
    // An explicit time is part of the event.
    s.cmd()
        .args([
            "record",
            "acme",
            "--key",
            "k2",
            "--at",
            "2026-11-20T10:00:00Z",
        ])
        .assert()
        .success();
    refused(
        &s,
        &[
            "record",
            "acme",
            "--key",
            "k2",
            "--at",
            "2026-11-21T10:00:00Z",
        ],
        2,
        "time 2026-11-21T10:00:00Z (was 2026-11-20T10:00:00Z)",
    );
    // A retry without --at a minute later is the same event: the time was not given.
    s.cmd()
        .args(["record", "acme", "--key", "k3"])
        .assert()
        .success();
    let before = s.dump();
    s.cmd()
        .env("METERLINE_NOW", "2026-11-27T18:01:00Z")
        .args(["record", "acme", "--key", "k3"])
        .assert()
        .success()
        .stdout(contains("duplicate key"));
    assert_eq!(s.dump(), before);
    // The same parameters are a duplicate: exit 0, nothing counted.
    let before = s.dump();
    s.cmd()
        .args([
            "record",
            "acme",
            "--key",
            "k2",
            "--at",
            "2026-11-20T10:00:00Z",
        ])
        .assert()
        .success()
        .stdout(contains("duplicate key"));
    assert_eq!(s.dump(), before);
}

fn impossible_event_times_are_refused(engine: Engine) {
    let s = populated(engine);
    // NOW is 2026-11-27T18:00:00Z: five minutes ahead is the most Stripe takes.
    for at in [
        "2026-11-27T18:05:01Z",
        "9999-12-31T23:59:59Z",
        "2027-01-01T00:00:00Z",
    ] {
        refused(
            &s,
            &["record", "acme", "--at", at],
            2,
            "is in the future (now is 2026-11-27T18:00:00Z); events may be at most 5 minutes ahead",
        );
    }
    for at in [
        "2026-10-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
        "1970-01-01T00:00:00Z",
    ] {
        refused(
            &s,
            &["record", "acme", "--at", at],
            2,
            "is before customer \"acme\" starts (its billing anchor 2026-11-01)",
        );
    }
    s.cmd()
        .args(["record", "acme", "--at", "2026-11-27T18:05:00Z"])
        .assert()
        .success();
    s.cmd()
        .args(["record", "acme", "--at", "2026-11-01T00:00:00Z"])
        .assert()
        .success();
}

fn billing_anchors_are_bounded(engine: Engine) {
    let s = populated(engine);
    for anchor in ["2028-01-01", "9999-12-31", "1999-12-31", "0001-01-01"] {
        refused(
            &s,
            &[
                "customer", "add", "initech", "--plan", "free", "--anchor", anchor,
            ],
            2,
            &format!(
                "billing anchor {anchor} is out of range; it must be between 2000-01-01 and 2027-11-28"
            ),
        );
    }
    s.add_customer("initech", "free", "2027-11-28");
    s.add_customer("hooli", "free", "2000-01-01");
}

fn bad_customer_ids_and_stripe_ids(engine: Engine) {
    let s = populated(engine);
    refused(
        &s,
        &["customer", "add", "acme", "--plan", "pro"],
        2,
        "customer \"acme\" already exists",
    );
    refused(
        &s,
        &["customer", "add", "has space", "--plan", "free"],
        2,
        "customer id \"has space\" must be 1 to 100 characters without spaces",
    );
    for stripe in ["acme", "cus_", "cus_with space", "cus_ünï"] {
        let message = format!("\"{stripe}\" is not a Stripe customer id");
        refused(
            &s,
            &[
                "customer",
                "add",
                "initech",
                "--plan",
                "free",
                "--stripe-customer",
                stripe,
            ],
            2,
            &message,
        );
        refused(&s, &["customer", "set-stripe", "acme", stripe], 2, &message);
    }
}

#[test]
fn a_file_that_is_not_sqlite_is_left_untouched() {
    let s = Scratch::new();
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(&s.db, &garbage).unwrap();
    let files_before = std::fs::read_dir(s.dir.path()).unwrap().count();
    for args in [
        &["record", "acme"][..],
        &["check", "acme"],
        &["status"],
        &["customer", "add", "acme", "--plan", "free"],
    ] {
        s.cmd()
            .args(args)
            .assert()
            .code(1)
            .stderr(contains(
                "the file is not a meterline database (not SQLite, or encrypted)",
            ))
            .stderr(contains(s.db.display().to_string()));
    }
    assert_eq!(std::fs::read(&s.db).unwrap(), garbage);
    // No -wal or -shm file left beside it either.
    assert_eq!(
        std::fs::read_dir(s.dir.path()).unwrap().count(),
        files_before
    );
}

#[test]
fn a_read_only_database_refuses_writes_and_still_answers_reads() {
    let s = populated(Engine::Sqlite);
    let before = s.dump();
    let read_only = format!("file:{}?mode=ro", s.db.display());
    let writes = [
        &["record", "acme"][..],
        &["customer", "add", "initech", "--plan", "free"],
        &["customer", "set-plan", "acme", "pro"],
        &["customer", "set-stripe", "acme", "cus_Nffr2Hib"],
    ];
    for args in writes {
        s.cmd()
            .args(["--db", &read_only])
            .args(args)
            .assert()
            .code(1)
            .stderr(contains(
                "the database is read-only; meterline needs write access",
            ));
    }
    assert_eq!(s.dump(), before);
    s.cmd()
        .args(["--db", &read_only, "check", "acme", "--json"])
        .assert()
        .success()
        .stdout(contains("\"used\":10"));

    // The file itself read-only. Root writes anyway, so this part only means something
    // (and only runs) for other users.
    let mut perms = std::fs::metadata(&s.db).unwrap().permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&s.db, perms).unwrap();
    if std::fs::OpenOptions::new().write(true).open(&s.db).is_err() {
        for args in writes {
            s.cmd().args(args).assert().code(1).stderr(contains(
                "the database is read-only; meterline needs write access",
            ));
        }
        assert_eq!(s.dump(), before);
    }
}

fn a_database_locked_by_another_writer_waits_then_fails_clearly(engine: Engine) {
    let s = populated(engine);
    let before = s.dump();
    let holder = s.hold_write_lock();

    let started = Instant::now();
    s.cmd()
        .env("METERLINE_BUSY_TIMEOUT_MS", "300")
        .args(["record", "acme", "-n", "2"])
        .assert()
        .code(1)
        .stdout("")
        .stderr(contains(
            "the database is locked by another writer and stayed locked past the busy timeout",
        ));
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "gave up without waiting for the lock"
    );
    assert_eq!(s.dump(), before);
    // Every write queues behind the lock, not only the record path's.
    for args in [
        &["customer", "set-stripe", "acme", "cus_Nffr2Hib"][..],
        &["customer", "rename", "acme", "Acme Inc"],
        &["token", "create", "ci"],
    ] {
        s.cmd()
            .env("METERLINE_BUSY_TIMEOUT_MS", "300")
            .args(args)
            .assert()
            .code(1)
            .stdout("")
            .stderr(contains("the database is locked by another writer"));
    }
    assert_eq!(s.dump(), before);

    drop(holder);
    s.cmd()
        .env("METERLINE_BUSY_TIMEOUT_MS", "300")
        .args(["record", "acme", "-n", "2"])
        .assert()
        .success();
    assert_eq!(s.inspect().events_of("acme"), (2, 12));
}
