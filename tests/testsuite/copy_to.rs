//! `meterline copy-to URL`: an SQLite database moved into an empty PostgreSQL one. The copy
//! answers every read exactly as the source did (checks, status, history, exports, old keys,
//! tokens) and takes new usage under fresh ids; a non-empty or wrong target, a PostgreSQL
//! source, a failure or a kill midway leave the target empty and the source untouched; the
//! password never shows.

use std::path::Path;
use std::process::Output;

use crate::support::cli::Scratch;
use crate::support::postgres::{PASSWORD, server};
use crate::support::serve::{Client, Server};
use crate::support::stripe::{Env, KEY, json, stderr, stdout};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schema_v8");

/// The output, checked for the database password (and, through `Env::run`, the Stripe key).
fn checked(output: Output) -> Output {
    for text in [stdout(&output), stderr(&output)] {
        assert!(!text.contains(PASSWORD), "the password shows: {text}");
    }
    output
}

/// `meterline copy-to URL` from the scratch database.
fn copy(s: &Scratch, url: &str) -> Output {
    checked(s.std_cmd().args(["copy-to", url]).output().unwrap())
}

/// `meterline ARGS` on `db` (the scratch's file or a URL): exit code and stdout.
fn on(s: &Scratch, db: &str, args: &[&str]) -> (i32, String) {
    let out = checked(
        s.std_cmd()
            .env("METERLINE_DB", db)
            .args(args)
            .output()
            .unwrap(),
    );
    (out.status.code().unwrap(), stdout(&out))
}

/// The same commands on both databases answer the same, byte for byte (and each succeeds).
fn same_answers(s: &Scratch, target: &str, commands: &[&[&str]]) {
    let source = s.db.to_string_lossy().into_owned();
    for args in commands {
        let (code, theirs) = on(s, &source, args);
        assert_eq!(code, 0, "{args:?} on the source: {theirs}");
        assert_eq!(on(s, target, args), (0, theirs), "{args:?}");
    }
}

/// Every row of every table of a PostgreSQL database, as text: equal before and after means
/// nothing was written.
fn pg_rows(url: &str) -> Vec<(String, String)> {
    let db = url.rsplit('/').next().unwrap();
    let tables = server().psql(
        db,
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
    );
    tables
        .lines()
        .map(|table| {
            let rows = server().psql(db, &format!("SELECT * FROM {table} ORDER BY 1"));
            (table.to_string(), rows)
        })
        .collect()
}

/// Rows in the target's meterline tables other than the ones its schema writes itself.
fn rows_in(url: &str) -> i64 {
    pg_rows(url)
        .iter()
        .filter(|(table, _)| {
            ![
                "meterline_meta",
                "change_counters",
                "meterline_migrations",
                "meterline_changes",
            ]
            .contains(&table.as_str())
        })
        .map(|(_, rows)| rows.lines().count() as i64)
        .sum()
}

/// `copy-to URL` refused with `code`, saying `says`: every row of the target as it was.
fn refused(s: &Scratch, url: &str, code: i32, says: &str) {
    let before = pg_rows(url);
    let out = copy(s, url);
    assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
    assert!(stderr(&out).contains(says), "{}", stderr(&out));
    assert_eq!(pg_rows(url), before);
}

/// An AI API with meters (a count, a sum by model, a sum, a unique count), mapped to the
/// fake Stripe, with alerts delivered by a command.
fn meters_env() -> Env {
    let plans = format!(
        "[stripe]\napi_base = \"https://api.stripe.com\"\nrate_limit = 0\nworkers = 2\n\
         timeout_secs = 1\nmax_attempts = 2\n{}\n[[alerts]]\ncommand = [\"true\"]\n",
        crate::support::meters::PLANS
    );
    let env = Env::new(&plans);
    for event in ["api_requests", "ai_tokens", "credits_used"] {
        env.server.add_meter_with(event, "sum");
    }
    env
}

#[test]
fn a_realistic_database_answers_the_same_after_the_copy_and_takes_new_usage() {
    let env = meters_env();
    let run = |args: &[&str]| -> Output {
        let out = checked(env.run(args, &[]));
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        out
    };
    run(&[
        "customer",
        "add",
        "acme",
        "--plan",
        "pro",
        "--stripe-customer",
        "cus_Acme0001",
    ]);
    run(&[
        "customer",
        "add",
        "capped",
        "--plan",
        "free",
        "--stripe-customer",
        "cus_Capd0002",
    ]);
    run(&[
        "customer", "add", "gone", "--plan", "free", "--name", "Gone Ltd",
    ]);
    for (customer, args) in [
        ("acme", "--meter requests --key req-1"),
        ("acme", "--meter requests --key req-2 --user ann"),
        (
            "acme",
            "--meter tokens --property tokens=1200 --property model=gpt --key tok-1",
        ),
        (
            "acme",
            "--meter tokens --property tokens=300 --property model=claude",
        ),
        ("acme", "--meter credits -n 40"),
        ("acme", "--meter users --property user=ann"),
        ("capped", "--meter requests"),
        ("capped", "--meter requests"),
        ("capped", "--meter requests --key cap-3"),
        ("capped", "--meter users --property user=bob"),
        ("capped", "--meter users --property user=eve"),
        ("gone", "--meter requests"),
    ] {
        let mut all = vec!["record", customer, "--json"];
        all.extend(args_of(args));
        run(&all);
    }
    // A fourth request on capped's 3 is refused by the cap, and writes nothing.
    assert_eq!(
        env.run(&["record", "capped", "--meter", "requests"], &[])
            .status
            .code(),
        Some(3)
    );
    run(&["customer", "archive", "gone"]);
    let token = stdout(&run(&["token", "create", "ci"])).trim().to_string();
    let sync = json(&run(&["sync", "--json"]));
    assert!(sync["accepted"].as_i64().unwrap() > 0, "{sync}");
    run(&["alerts"]);
    let count = |sql: &str| -> i64 {
        let conn = rusqlite::Connection::open(&env.db).unwrap();
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    };
    for table in [
        "stripe_reports",
        "alerts",
        "alert_deliveries",
        "alert_runs",
        "sync_runs",
    ] {
        assert!(
            count(&format!("SELECT COUNT(*) FROM {table}")) > 0,
            "no {table}"
        );
    }
    let source_events = count("SELECT COUNT(*) FROM usage_events");
    let source_max = count("SELECT MAX(id) FROM usage_events");

    let url = server().fresh_database();
    let out = checked(env.run(&["copy-to", &url], &[]));
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(
        said.contains("rows copied") && said.contains("counters match"),
        "{said}"
    );
    assert!(said.contains("meterline:***@"), "{said}");

    // Every answer the same on both.
    let source = env.db.to_string_lossy().into_owned();
    let answer = |db: &str, args: &[&str]| -> String {
        let out = checked(env.run(args, &[("METERLINE_DB", Some(db))]));
        assert!(out.status.success(), "{args:?} on {db}: {}", stderr(&out));
        stdout(&out)
    };
    for args in [
        &["check", "acme", "--json"][..],
        &["check", "capped", "--json"],
        &["check", "acme", "--meter", "tokens", "--json"],
        &["status", "--json"],
        &["history", "acme", "--json"],
        &["history", "gone", "--json"],
        &["members", "acme", "--json"],
        &["customer", "list", "--json"],
        &["token", "list", "--json"],
        &["export", "usage", "--format", "json"],
        &["export", "events", "--format", "json"],
        &["sync", "--dry-run", "--json"],
        &["alerts", "--dry-run", "--json"],
        &[
            "record", "acme", "--meter", "requests", "--key", "req-2", "--user", "ann", "--json",
        ],
        &[
            "record",
            "acme",
            "--meter",
            "tokens",
            "--property",
            "tokens=1200",
            "--property",
            "model=gpt",
            "--key",
            "tok-1",
            "--json",
        ],
    ] {
        assert_eq!(answer(&url, args), answer(&source, args), "{args:?}");
    }
    let resent: serde_json::Value = serde_json::from_str(&answer(
        &url,
        &[
            "record", "acme", "--meter", "requests", "--key", "req-1", "--json",
        ],
    ))
    .unwrap();
    assert_eq!(resent["duplicate"], true, "{resent}");
    // The cap still holds on the copy.
    assert_eq!(
        env.run(
            &["record", "capped", "--meter", "requests"],
            &[("METERLINE_DB", Some(&url))]
        )
        .status
        .code(),
        Some(3)
    );

    // New usage gets a fresh id, past every copied one; a new report and run as well.
    let new: serde_json::Value = serde_json::from_str(&answer(
        &url,
        &[
            "record",
            "acme",
            "--meter",
            "requests",
            "--key",
            "after-copy",
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(new["recorded"], true, "{new}");
    assert!(new["event_id"].as_i64().unwrap() > source_max, "{new}");
    let inspect = crate::support::engine::Inspect::of(Path::new(&url));
    assert_eq!(
        inspect.number("SELECT COUNT(*) FROM usage_events"),
        source_events + 1
    );
    let synced = env.run(&["sync", "--json"], &[("METERLINE_DB", Some(&url))]);
    assert!(synced.status.success(), "{}", stderr(&synced));
    assert_eq!(json(&synced)["accepted"], 1, "{}", stdout(&synced));
    assert!(!stdout(&synced).contains(KEY));
    let made = env.run(
        &["token", "create", "after-copy"],
        &[("METERLINE_DB", Some(&url))],
    );
    assert!(made.status.success(), "{}", stderr(&made));

    // The token made on the source opens the API served from the copy.
    let mut serve = env.std_command(
        &["serve", "--listen", "127.0.0.1:0"],
        &[("METERLINE_DB", Some(&url))],
    );
    serve.env_remove("STRIPE_API_KEY");
    let served = Server::spawn(serve);
    assert_eq!(
        Client::new(&served.base, Some(&token))
            .get("/v1/status")
            .status,
        200
    );
    assert_eq!(
        Client::new(&served.base, Some("mlt_wrong"))
            .get("/v1/status")
            .status,
        401
    );
    drop(served);
    // The source was only read.
    assert_eq!(count("SELECT COUNT(*) FROM usage_events"), source_events);
}

/// `"a b c"` as `["a", "b", "c"]`.
fn args_of(args: &str) -> Vec<&str> {
    args.split(' ').collect()
}

/// A small database on the shipped plans: customers with members, keyed events.
fn small() -> Scratch {
    let s = Scratch::new();
    s.add_customer("acme", "pro", "2026-10-01");
    s.add_customer("tiny", "free", "2026-11-10");
    for (customer, args) in [
        ("acme", "-n 500 --user ann --key k1"),
        ("acme", "-n 250 --user bob"),
        ("acme", "-n 40 --at 2026-10-20T10:00:00Z"),
        ("tiny", "-n 900 --key k2"),
    ] {
        s.cmd()
            .args(["record", customer])
            .args(args_of(args))
            .assert()
            .success();
    }
    s
}

#[test]
fn a_target_that_is_not_empty_is_refused_and_nothing_is_written() {
    let s = small();
    let url = server().fresh_database();
    // A target some host already records into.
    let (code, _) = on(&s, &url, &["customer", "add", "other", "--plan", "free"]);
    assert_eq!(code, 0);
    let source = s.dump();
    refused(&s, &url, 2, "not empty (customers");
    assert_eq!(s.dump(), source);

    // A finished copy is not copied over either.
    let fresh = server().fresh_database();
    assert!(copy(&s, &fresh).status.success());
    refused(
        &s,
        &fresh,
        2,
        "not empty (alerts, customers, meter_counters, usage_events",
    );
}

#[test]
fn a_wrong_target_or_a_postgres_source_is_refused_with_exit_2() {
    let s = small();
    let source = s.dump();
    for target in [
        format!("mysql://meterline:{PASSWORD}@127.0.0.1/meterline"),
        s.dir.path().join("other.db").to_string_lossy().into_owned(),
    ] {
        let out = copy(&s, &target);
        assert_eq!(out.status.code(), Some(2), "{target}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("needs a PostgreSQL URL"),
            "{}",
            stderr(&out)
        );
    }
    assert!(!s.dir.path().join("other.db").exists());
    let url = server().fresh_database();
    let out = checked(
        s.std_cmd()
            .env("METERLINE_DB", &url)
            .args(["copy-to", &server().fresh_database()])
            .output()
            .unwrap(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("already a PostgreSQL database"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("meterline:***@"), "{}", stderr(&out));
    // A wrong password: refused by the server, and not shown.
    let db = url.rsplit('/').next().unwrap();
    let wrong = server().url_as("meterline", "not-the-password", db);
    let out = copy(&s, &wrong);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("database: postgres://meterline:***@"),
        "{}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains("not-the-password"),
        "{}",
        stderr(&out)
    );
    assert_eq!(s.dump(), source);
}

/// A fresh database with meterline's schema and no rows (a write made it, then went): its
/// URL and name.
fn schema_only(s: &Scratch) -> (String, String) {
    let url = server().fresh_database();
    assert_eq!(
        on(s, &url, &["customer", "add", "tmp", "--plan", "free"]).0,
        0
    );
    let db = url.rsplit('/').next().unwrap().to_string();
    server().psql(&db, "DELETE FROM customers");
    (url, db)
}

#[test]
fn a_column_a_later_migration_adds_is_copied_and_one_the_target_lacks_is_refused() {
    let s = small();
    s.conn()
        .execute_batch(
            "ALTER TABLE usage_records ADD COLUMN later_column TEXT;
             UPDATE usage_records SET later_column = 'kept ' || used;",
        )
        .unwrap();
    let source = s.dump();
    let (url, db) = schema_only(&s);
    refused(
        &s,
        &url,
        1,
        "usage_records.later_column is not in the target",
    );

    server().psql(
        &db,
        "ALTER TABLE usage_records ADD COLUMN later_column TEXT",
    );
    let out = copy(&s, &url);
    assert!(out.status.success(), "{}", stderr(&out));
    let terms = |db: &str| {
        crate::support::engine::Inspect::of(Path::new(db))
            .rows("SELECT customer_id, period_start, later_column FROM usage_records ORDER BY 1, 2")
    };
    assert_eq!(terms(&url), terms(&s.db.to_string_lossy()));
    assert_eq!(terms(&url).len(), 3);
    assert_eq!(s.dump(), source);
}

#[test]
fn a_copy_that_fails_midway_leaves_the_target_empty_and_a_retry_works() {
    let s = small();
    let (url, db) = schema_only(&s);
    // A constraint the last tables' rows break: usage_records is copied after the customers,
    // events and members.
    server().psql(
        &db,
        "ALTER TABLE usage_records ADD CONSTRAINT copy_breaks CHECK (plan_id = 'none') NOT VALID",
    );
    let source = s.dump();
    let out = copy(&s, &url);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("copy_breaks"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("meterline.db -> postgres://meterline:***@"),
        "{}",
        stderr(&out)
    );
    assert_eq!(rows_in(&url), 0, "{:?}", pg_rows(&url));
    assert_eq!(s.dump(), source);

    server().psql(&db, "ALTER TABLE usage_records DROP CONSTRAINT copy_breaks");
    let out = copy(&s, &url);
    assert!(out.status.success(), "{}", stderr(&out));
    same_answers(
        &s,
        &url,
        &[
            &["status", "--json"],
            &["check", "acme", "--json"],
            &["history", "acme", "--json"],
            &["members", "acme", "--json"],
            &["export", "usage"],
            &["record", "tiny", "-n", "900", "--key", "k2", "--json"],
        ],
    );
}

#[test]
fn a_copy_killed_midway_commits_nothing() {
    let s = small();
    let (url, db) = schema_only(&s);
    let db = db.as_str();
    // Hold usage_records against writers (readers pass), so the copy waits in the middle,
    // with the customers and events already inserted in its transaction.
    let mut holder = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    holder
        .batch_execute("BEGIN; LOCK TABLE usage_records IN EXCLUSIVE MODE")
        .unwrap();
    let source = s.dump();
    let mut child = s
        .std_cmd()
        .args(["--busy-timeout-ms", "60000", "copy-to", &url])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // pg_locks and pg_stat_activity are cluster-wide and other tests share the server:
    // look only for this database's INSERT waiting on a lock.
    let waiting_insert = "SELECT COUNT(*) FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event_type = 'Lock'
           AND query LIKE 'INSERT INTO \"usage_records\"%'";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while server().psql(db, waiting_insert) != "1" {
        assert!(
            std::time::Instant::now() < deadline,
            "the copy never waited on its usage_records insert"
        );
        assert!(child.try_wait().unwrap().is_none(), "the copy ended");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let out = checked(child.wait_with_output().unwrap());
    assert!(!out.status.success());
    holder.batch_execute("ROLLBACK").unwrap();
    assert_eq!(rows_in(&url), 0, "{:?}", pg_rows(&url));
    assert_eq!(s.dump(), source);
    assert!(copy(&s, &url).status.success());
}

#[test]
fn a_database_written_by_an_older_meterline_is_upgraded_and_copied() {
    let s = Scratch::new();
    std::fs::copy(format!("{FIXTURE}/meterline.db"), &s.db).unwrap();
    std::fs::copy(format!("{FIXTURE}/plans.toml"), &s.plans).unwrap();
    let url = server().fresh_database();
    let out = checked(
        s.std_cmd()
            .args(["copy-to", &url, "--json"])
            .output()
            .unwrap(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report = json(&out);
    let tables = report["tables"].as_array().unwrap();
    let rows: u64 = tables.iter().map(|t| t["rows"].as_u64().unwrap()).sum();
    assert_eq!(report["rows"].as_u64(), Some(rows), "{report}");
    let events = tables
        .iter()
        .find(|t| t["table"] == "usage_events")
        .unwrap();
    assert_eq!(events["rows"], 8, "{report}");
    let counters: i64 = ["usage_records", "usage_members", "meter_counters"]
        .iter()
        .map(|t| {
            s.conn()
                .query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| {
                    r.get::<_, i64>(0)
                })
                .unwrap()
        })
        .sum();
    assert!(counters > 0);
    assert_eq!(report["counters"].as_i64(), Some(counters), "{report}");
    assert_eq!(report["mismatches"], serde_json::json!([]), "{report}");
    let not_copied: Vec<&str> = report["not_copied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    assert_eq!(not_copied, ["alert_lock", "sync_lock"], "{report}");
    same_answers(
        &s,
        &url,
        &[
            &["status", "--json"],
            &["check", "acme", "--json"],
            &["check", "tiny", "--json"],
            &["history", "acme", "--json"],
            &["history", "gone", "--json"],
            &["members", "org", "--json"],
            &["customer", "list", "--json"],
            &["token", "list", "--json"],
            &["export", "usage", "--format", "json"],
            &["export", "events", "--format", "json"],
            &["alerts", "--dry-run", "--json"],
            &[
                "record",
                "acme",
                "-n",
                "400",
                "--at",
                "2026-10-10T08:00:00Z",
                "--key",
                "req-1",
                "--json",
            ],
            &[
                "record",
                "tiny",
                "-n",
                "850",
                "--at",
                "2026-11-20T12:00:00Z",
                "--key",
                "ce:3:svc:2:e1",
                "--json",
            ],
        ],
    );
    let inspect = crate::support::engine::Inspect::of(Path::new(&url));
    assert_eq!(inspect.counters_disagreeing_with_events(), 0);
    assert_eq!(
        inspect.number("SELECT COUNT(*) FROM stripe_reports"),
        s.conn()
            .query_row("SELECT COUNT(*) FROM stripe_reports", [], |r| r
                .get::<_, i64>(0))
            .unwrap()
    );
    // The copy is at the database's id: old events' Stripe identifiers stay what they were.
    let id = |db: &str| -> String {
        let rows = crate::support::engine::Inspect::of(Path::new(db))
            .rows("SELECT value FROM meterline_meta WHERE key = 'database_id'");
        rows[0][0].clone()
    };
    assert_eq!(id(&url), id(&s.db.to_string_lossy()));
}
