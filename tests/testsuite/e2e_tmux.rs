//! End to end: the real binary in tmux, driven with send-keys and read with capture-pane.
//! Each test has its own tmux server (`-L` socket), killed when the test ends, and waits on
//! the screen with a bounded deadline rather than fixed sleeps.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::cli::{BIN, repo_plans as plans};
use crate::support::engine::{Engine, engine_tests};
use crate::support::postgres::PASSWORD;
use crate::support::tmux::{PROMPT_SHOWN, Tmux, require_tmux};
use tempfile::TempDir;

engine_tests!(
    open_navigate_detail_help_filter_views_and_quit,
    usage_recorded_by_another_process_shows_up_live,
);

/// The database a test on `engine` uses: `name` in `dir`, or a fresh PostgreSQL database.
fn database_on(engine: Engine, dir: &Path, name: &str) -> PathBuf {
    match engine {
        Engine::Sqlite => dir.join(name),
        Engine::Postgres => crate::support::postgres::server().fresh_database().into(),
    }
}

/// The header's database on a PostgreSQL URL: shown with the password as ***, never the
/// password itself (anywhere on screen).
fn assert_header_hides_the_password(engine: Engine, screen: &str) {
    assert!(
        !screen.contains(PASSWORD),
        "the password is on screen:\n{screen}"
    );
    if engine == Engine::Postgres {
        assert!(
            screen.contains("postgres://meterline:***@127.0.0.1:"),
            "the header does not show the database:\n{screen}"
        );
    }
}

/// A demo database file in `dir`, built by the real binary; `now`: its pretended time.
fn demo_db_at(dir: &Path, now: Option<&str>) -> PathBuf {
    demo_db_on(Engine::Sqlite, dir, now)
}

/// `demo_db_at` on `engine`.
fn demo_db_on(engine: Engine, dir: &Path, now: Option<&str>) -> PathBuf {
    let db = database_on(engine, dir, "demo.db");
    let mut demo = Command::new(BIN);
    demo.args(["demo", "--customers", "24", "--events", "4000", "--db"])
        .arg(&db)
        .arg("--plans")
        .arg(plans());
    if let Some(now) = now {
        demo.args(["--now", now]);
    }
    let status = demo.output().unwrap();
    assert!(status.status.success(), "{status:?}");
    db
}

fn demo_db(dir: &Path) -> PathBuf {
    demo_db_at(dir, None)
}

/// The dashboard on `db`, never with a Stripe key from the test's own environment.
fn dashboard_command(db: &Path) -> String {
    format!(
        "env -u STRIPE_API_KEY {}",
        dashboard_command_keeping_env(db)
    )
}

/// The dashboard on `db` with the shell's environment as it is.
fn dashboard_command_keeping_env(db: &Path) -> String {
    dashboard_command_with(db, &plans())
}

fn dashboard_command_with(db: &Path, plans: &Path) -> String {
    format!(
        "{BIN} {}--plans '{}'; echo \"exit=$?\"",
        db_option(db),
        plans.display()
    )
}

/// `--db 'FILE'`; nothing for a PostgreSQL URL, which holds the password: the shell has it as
/// METERLINE_DB ([`tmux_on`]), so it is never typed on screen.
pub(crate) fn db_option(db: &Path) -> String {
    if meterline::store::is_postgres_url(&db.to_string_lossy()) {
        String::new()
    } else {
        format!("--db '{}' ", db.display())
    }
}

/// A 120×40 shell in `dir` whose environment names `db` when it is a PostgreSQL URL.
pub(crate) fn tmux_on(name: &str, dir: &Path, db: &Path) -> Tmux {
    tmux_sized(name, dir, db, (120, 40))
}

/// [`tmux_on`] with a terminal of (width, height).
pub(crate) fn tmux_sized(name: &str, dir: &Path, db: &Path, (width, height): (u16, u16)) -> Tmux {
    let db = db.to_string_lossy();
    let env: &[(&str, &str)] = if meterline::store::is_postgres_url(&db) {
        &[("METERLINE_DB", &db)]
    } else {
        &[]
    };
    Tmux::start(name, width, height, dir, env)
}

/// After quitting: the shell printed the exit code and a fresh prompt, on the normal screen.
pub(crate) fn assert_terminal_restored(tmux: &Tmux) {
    // The shell prints the exit code, then the prompt: wait for both, not the first alone.
    let screen = tmux.wait_for("the exit code and a fresh prompt", |s| {
        s.split("exit=0")
            .nth(1)
            .is_some_and(|after| after.contains(PROMPT_SHOWN))
    });
    assert!(!tmux.alternate_screen(), "still on the alternate screen");
    assert!(
        !screen.contains(PASSWORD),
        "the password is on screen:\n{screen}"
    );
}

fn open_navigate_detail_help_filter_views_and_quit(engine: Engine) {
    require_tmux();
    let dir = TempDir::new().unwrap();
    let db = demo_db_on(engine, dir.path(), None);
    let tmux = tmux_on("nav", dir.path(), &db);
    tmux.type_line(&dashboard_command(&db));
    let screen = tmux.wait_text("Customers 24/24 · sorted by risk");
    assert_header_hides_the_password(engine, &screen);
    assert!(tmux.alternate_screen());
    // Colour by default: the hard cap's magenta background is on screen.
    assert!(tmux.styled_screen().contains("48;5;5m"));

    tmux.keys(&["j", "j", "k", "Enter"]);
    // A capture can catch the detail half drawn: wait for all of its panels.
    tmux.wait_for("the whole detail", |s| {
        s.contains("Usage per day")
            && s.contains("Last periods · plan in force")
            && s.contains("Recent events")
    });

    tmux.keys(&["?"]);
    // A capture can catch the popup half drawn: wait for its last line too.
    tmux.wait_for("the whole help", |s| {
        s.contains("Help · Esc closes") && s.contains("filter by name or plan")
    });
    tmux.keys(&["Escape"]);
    // The help covers most of the detail: wait for the whole frame redrawn under it. Esc
    // closed only the help, so the detail is back.
    tmux.wait_for("help to close, the detail still open", |s| {
        !s.contains("Help · Esc closes") && s.contains("Usage per day")
    });
    tmux.keys(&["Escape"]);
    tmux.wait_text("Customers 24/24");

    tmux.keys(&["/"]);
    tmux.run(&["send-keys", "-l", "globex"]);
    // A capture can catch a frame half-written: wait for the whole of it.
    // At 120 columns the demo's Credits column cuts the name: "Globex Corporat…".
    tmux.wait_for("only Globex listed", |s| {
        s.contains("Customers 1/24")
            && s.contains("Globex Corporat")
            && !s.contains("Acme Robotics")
    });
    tmux.keys(&["Enter", "Enter"]);
    let globex = tmux.wait_text("Members this period");
    assert!(globex.contains("alice@globex.example"), "{globex}");
    // One Escape at a time: two in one read are one Alt-Escape to the terminal.
    tmux.keys(&["Escape"]);
    tmux.wait_for("the detail to close", |s| {
        !s.contains("Members this period")
    });
    tmux.keys(&["Escape"]);
    tmux.wait_text("Customers 24/24");

    tmux.keys(&["Tab"]);
    tmux.wait_text("Events needing attention");
    tmux.wait_text("✗ failed");
    tmux.keys(&["Tab"]);
    tmux.wait_text("Rate/unit");
    tmux.keys(&["s"]);
    tmux.wait_text("export STRIPE_API_KEY=sk_test_...");
    // One at a time: Esc and 1 arriving together read as Alt-1.
    tmux.keys(&["Escape"]);
    tmux.wait_for("the popup to close", |s| {
        !s.contains("export STRIPE_API_KEY")
    });
    tmux.keys(&["1"]);
    tmux.wait_text("Customers 24/24");

    tmux.keys(&["q"]);
    assert_terminal_restored(&tmux);
}

fn usage_recorded_by_another_process_shows_up_live(engine: Engine) {
    require_tmux();
    let dir = TempDir::new().unwrap();
    let db = database_on(engine, dir.path(), "live.db");
    let meterline = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .arg("--db")
            .arg(&db)
            .arg("--plans")
            .arg(plans())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    meterline(&[
        "customer",
        "add",
        "acme",
        "--plan",
        "free",
        "--name",
        "Acme Live",
    ]);
    let tmux = tmux_on("live", dir.path(), &db);
    tmux.type_line(&dashboard_command(&db));
    let screen = tmux.wait_text("0 / 1,000");
    assert_header_hides_the_password(engine, &screen);
    meterline(&["record", "acme", "-n", "250"]);
    tmux.wait_text("250 / 1,000");
    meterline(&["record", "acme", "-n", "600"]);
    let screen = tmux.wait_text("850 / 1,000");
    assert!(screen.contains("▲ warning"), "{screen}");
    assert!(
        screen.contains("▲ warning 1"),
        "the header counts follow: {screen}"
    );
    meterline(&[
        "customer",
        "add",
        "globex",
        "--plan",
        "pro",
        "--name",
        "Globex Live",
    ]);
    tmux.wait_text("Globex Live");
    tmux.keys(&["C-c"]);
    assert_terminal_restored(&tmux);
}

#[test]
fn demo_runs_on_a_temporary_database_and_never_touches_meterline_db() {
    require_tmux();
    let cwd = TempDir::new().unwrap();
    std::fs::copy(plans(), cwd.path().join("plans.toml")).unwrap();
    let tmux = Tmux::start("demo", 140, 40, cwd.path(), &[("NO_COLOR", "1")]);
    tmux.type_line(&format!("{BIN} --demo; echo \"exit=$?\""));
    let screen = tmux.wait_text("(demo, deleted on exit)");
    tmux.wait_text("Customers 40/40");
    // NO_COLOR: not one colour on screen, the levels still in words.
    let styled = tmux.styled_screen();
    assert!(
        !styled.contains("38;5;") && !styled.contains("48;5;"),
        "{styled}"
    );
    assert!(screen.contains("■ HARD CAP"));
    let demo_db = screen
        .split_whitespace()
        .find(|w| w.ends_with("demo.db"))
        .map(PathBuf::from)
        .expect("the header names the demo database");
    assert!(demo_db.exists());
    tmux.keys(&["q"]);
    assert_terminal_restored(&tmux);
    assert!(!demo_db.exists(), "the demo database is removed on exit");
    assert!(!cwd.path().join("meterline.db").exists());
}

#[test]
fn a_tiny_terminal_says_the_size_needed_and_q_still_quits() {
    require_tmux();
    let dir = TempDir::new().unwrap();
    let db = demo_db(dir.path());
    let tmux = Tmux::start("tiny", 50, 12, dir.path(), &[]);
    tmux.type_line(&dashboard_command(&db));
    tmux.wait_text("Terminal too small: 50×12, need 60×16 · q quits");
    // Growing the window redraws the dashboard.
    tmux.run(&["resize-window", "-x", "100", "-y", "30"]);
    tmux.wait_text("Customers 24/24");
    tmux.run(&["resize-window", "-x", "40", "-y", "10"]);
    tmux.wait_text("Terminal too small: 40×10, need 60×16");
    tmux.keys(&["q"]);
    assert_terminal_restored(&tmux);
}

#[test]
fn a_bad_database_is_a_plain_error_before_the_terminal_is_touched() {
    let dir = TempDir::new().unwrap();
    let not_db = dir.path().join("notes.db");
    std::fs::write(
        &not_db,
        "this is not sqlite, just a long enough text file to be read".repeat(20),
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("--db")
        .arg(&not_db)
        .arg("--plans")
        .arg(plans())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a meterline database"), "{stderr}");
    assert!(
        !stderr.contains("\x1b[?1049h"),
        "never entered the alternate screen"
    );
}

/// Events a sync at `crate::support::stripe::now()` must send: of mapped customers, pending, not resting after
/// a refusal, inside Stripe's window. (id, identifier)
fn sendable(db: &Path) -> Vec<(i64, String)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT e.id, e.stripe_identifier FROM usage_events e JOIN customers c ON c.id = e.customer_id
             WHERE c.stripe_customer_id IS NOT NULL AND e.stripe_reported_at IS NULL
               AND e.stripe_expired_at IS NULL AND e.stripe_failed_at IS NULL
             ORDER BY e.id",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn count(db: &Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Neither the key nor its secret part is anywhere in the pane, scrollback included.
fn assert_key_not_on_screen(tmux: &Tmux) {
    let all = tmux
        .run(&["capture-pane", "-p", "-S", "-", "-E", "-"])
        .stdout;
    let all = String::from_utf8_lossy(&all);
    assert!(
        !all.contains(&crate::support::stripe::KEY[8..]),
        "the key is on screen:\n{all}"
    );
}

/// A demo database at `crate::support::stripe::now()`, the fake Stripe server (answering after `delay`) and
/// the dashboard open on both in tmux; also the events a sync must send.
struct SyncSession {
    dir: TempDir,
    db: PathBuf,
    sendable: Vec<(i64, String)>,
    server: crate::support::stripe::FakeStripe,
    tmux: Tmux,
}

/// `report`: plans.toml's `[stripe] report` for the session (the shipped file otherwise).
fn sync_session(name: &str, delay: Duration, report: Option<&str>) -> SyncSession {
    let dir = TempDir::new().unwrap();
    let plans_file = match report {
        None => plans(),
        Some(mode) => {
            let shipped = std::fs::read_to_string(plans()).unwrap();
            let path = dir.path().join("plans.toml");
            let edited = shipped.replace("[stripe]\n", &format!("[stripe]\nreport = \"{mode}\"\n"));
            std::fs::write(&path, edited).unwrap();
            path
        }
    };
    let db = demo_db_at(dir.path(), Some(crate::support::stripe::now_text()));
    let sendable = sendable(&db);
    assert!(sendable.len() >= 3, "the demo leaves recent events to send");
    let server = crate::support::stripe::FakeStripe::start(
        crate::support::stripe::KEY,
        crate::support::stripe::now(),
    );
    server.set_delay(delay);
    let base = server.base();
    let tmux = Tmux::start(
        name,
        120,
        40,
        dir.path(),
        &[
            ("STRIPE_API_KEY", crate::support::stripe::KEY),
            ("STRIPE_API_BASE", &base),
            ("METERLINE_NOW", crate::support::stripe::now_text()),
        ],
    );
    tmux.type_line(&dashboard_command_with(&db, &plans_file));
    tmux.wait_text("last sync  never");
    SyncSession {
        dir,
        db,
        sendable,
        server,
        tmux,
    }
}

#[test]
fn s_syncs_to_the_stripe_server_from_the_keyboard_and_the_events_are_reported() {
    require_tmux();
    let SyncSession {
        dir: _dir,
        db,
        sendable: expected,
        server,
        tmux,
    } = sync_session("sync", Duration::ZERO, None);

    tmux.keys(&["s"]);
    let n = expected.len();
    // Wait for the whole popup: a capture can catch it half drawn.
    let confirm = tmux.wait_for("the confirmation", |s| {
        s.contains("Sync to Stripe?") && s.contains("y/Enter sync · n/Esc cancel")
    });
    assert!(
        confirm.contains(&format!("Send {n} events of")) && confirm.contains("to 127.0.0.1"),
        "{confirm}"
    );
    assert!(confirm.contains("with a test key"), "{confirm}");
    assert_eq!(server.requests(), 0, "nothing is sent before confirming");

    // Aggregate mode (the default): one report per customer, meter and period.
    assert!(confirm.contains(" reports ("), "{confirm}");

    tmux.keys(&["y"]);
    let result = tmux.wait_for("the result", |s| {
        s.contains("Sync completed") && s.contains("Esc closes")
    });
    let reports = count(&db, "SELECT COUNT(*) FROM stripe_reports");
    assert!(
        reports >= 1 && reports < n as i64,
        "{reports} reports for {n} events"
    );
    assert!(
        result.contains(&format!(
            "{reports} sent · {reports} accepted · 0 duplicates · 0 failed"
        )),
        "{result}"
    );
    tmux.keys(&["Escape"]);
    // The header follows: the run, and the backlog of mapped customers gone.
    // (The sync runs on the real clock, so its time is not the dashboard's pretend one.)
    tmux.wait_text("last sync  ✓ completed ");
    tmux.wait_text(&format!(" · {reports} sent"));
    assert_key_not_on_screen(&tmux);
    tmux.keys(&["q"]);
    assert_terminal_restored(&tmux);
    assert_key_not_on_screen(&tmux);

    // Stripe has each report's identifier exactly once, and the database marks exactly the
    // events they carry reported.
    let accepted: HashSet<String> = server.accepted().into_keys().collect();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let wanted: HashSet<String> = conn
        .prepare("SELECT identifier FROM stripe_reports")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(accepted, wanted);
    assert!(
        server.posts().values().all(|&n| n == 1),
        "{:?}",
        server.posts()
    );
    let ids = expected
        .iter()
        .map(|(id, _)| id.to_string())
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT COUNT(*) FROM usage_events WHERE id IN ({ids}) AND stripe_reported_at IS NOT NULL"
            )
        ),
        n as i64
    );
    assert!(sendable(&db).is_empty(), "nothing sendable left pending");
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM sync_runs WHERE outcome = 'completed'"
        ),
        1
    );
    let stored = std::fs::read(&db).unwrap();
    assert!(
        !stored
            .windows(crate::support::stripe::KEY.len())
            .any(|w| w == crate::support::stripe::KEY.as_bytes()),
        "the key is not stored"
    );
}

#[test]
fn s_without_a_key_explains_how_to_set_one() {
    require_tmux();
    let dir = TempDir::new().unwrap();
    let db = demo_db(dir.path());
    let tmux = Tmux::start("nokey", 100, 30, dir.path(), &[]);
    tmux.type_line(&dashboard_command(&db));
    tmux.wait_text("Customers 24/24");
    tmux.keys(&["s"]);
    let screen = tmux.wait_for("the explanation", |s| {
        s.contains("export STRIPE_API_KEY=sk_test_...") && s.contains("Esc closes")
    });
    assert!(
        screen.contains("Stripe sync needs your Stripe secret key"),
        "{screen}"
    );
    assert!(screen.contains("STRIPE_API_BASE"), "{screen}");
    tmux.keys(&["Escape"]);
    tmux.wait_for("the popup to close", |s| {
        !s.contains("export STRIPE_API_KEY")
    });
    // The dashboard is still running and answers keys.
    tmux.keys(&["q"]);
    assert_terminal_restored(&tmux);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM sync_runs"),
        0,
        "nothing was attempted"
    );
}

#[test]
fn quitting_during_a_sync_cancels_it_after_the_requests_in_flight() {
    require_tmux();
    // Slow answers: the sync is still running when q is pressed.
    let SyncSession {
        dir: _dir,
        db,
        sendable: expected,
        server,
        tmux,
    } = sync_session("quit", Duration::from_millis(1200), Some("per_event"));
    tmux.keys(&["s"]);
    tmux.wait_text("y/Enter sync");
    tmux.keys(&["y"]);
    tmux.wait_text("Syncing to Stripe");
    tmux.keys(&["q"]);
    assert_terminal_restored(&tmux);
    assert_key_not_on_screen(&tmux);

    // What Stripe accepted is exactly what the database marks reported; the rest is pending.
    let accepted: HashSet<String> = server.accepted().into_keys().collect();
    assert!(accepted.len() < expected.len(), "the sync was cut short");
    let reported: HashSet<String> = expected
        .iter()
        .filter(|(id, _)| {
            count(
                &db,
                &format!(
                    "SELECT COUNT(*) FROM usage_events WHERE id = {id} AND stripe_reported_at IS NOT NULL"
                ),
            ) == 1
        })
        .map(|(_, identifier)| identifier.clone())
        .collect();
    assert_eq!(reported, accepted);
    assert_eq!(sendable(&db).len(), expected.len() - accepted.len());
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM sync_runs WHERE outcome = 'cancelled'"
        ),
        1,
        "the run was recorded as cancelled, not left running"
    );
}

#[test]
fn r_reloads_plans_toml_and_keeps_the_last_good_plans_when_it_is_broken() {
    require_tmux();
    let dir = TempDir::new().unwrap();
    let db = demo_db(dir.path());
    let plans_file = dir.path().join("plans.toml");
    let shipped = std::fs::read_to_string(plans()).unwrap();
    std::fs::write(&plans_file, &shipped).unwrap();
    let tmux = Tmux::start("reload", 120, 40, dir.path(), &[]);
    tmux.type_line(&format!(
        "env -u STRIPE_API_KEY {BIN} --db '{}' --plans '{}'; echo \"exit=$?\"",
        db.display(),
        plans_file.display()
    ));
    tmux.wait_text("Customers 24/24");
    tmux.keys(&["3"]);
    tmux.wait_text("Rate/unit");

    // The file is edited while the dashboard runs: `r` shows the new allowance.
    let edited = shipped.replacen("included = 1000\n", "included = 7777\n", 1);
    assert_ne!(
        edited, shipped,
        "the free plan's allowance is in the shipped file"
    );
    std::fs::write(&plans_file, &edited).unwrap();
    tmux.keys(&["r"]);
    tmux.wait_text("7,777");

    // Broken: the reason is shown and the last good plans stay.
    std::fs::write(&plans_file, "[[plans]]\nid = \n").unwrap();
    tmux.keys(&["r"]);
    let broken = tmux.wait_for("the reload error", |s| {
        s.contains("not reloaded") && s.contains("The last good plans stay in use")
    });
    assert!(broken.contains("plans.toml"), "{broken}");
    tmux.keys(&["Escape"]);
    let after = tmux.wait_for("the popup to close", |s| {
        !s.contains("not reloaded") && s.contains("Rate/unit")
    });
    assert!(after.contains("7,777"), "{after}");
    assert!(
        after.contains("reload failed: last good plans in use"),
        "{after}"
    );
    tmux.keys(&["q"]);
    assert_terminal_restored(&tmux);
}

#[test]
fn enter_on_an_event_shows_it_in_full_and_esc_closes_it() {
    require_tmux();
    let dir = TempDir::new().unwrap();
    let db = demo_db(dir.path());
    let tmux = Tmux::start("event", 120, 40, dir.path(), &[]);
    tmux.type_line(&dashboard_command(&db));
    tmux.wait_text("Customers 24/24 · sorted by risk");

    tmux.keys(&["2"]);
    // The table: its header row, failed events first.
    tmux.wait_for("the events table", |s| {
        s.contains("When (UTC)") && s.contains("Stripe's error") && s.contains("✗ failed")
    });
    tmux.keys(&["Enter"]);
    let popup = tmux.wait_for("the event popup", |s| {
        s.contains("Attempts") && s.contains("previous / next event")
    });
    let title = popup
        .lines()
        .find_map(|l| l.split("┌ Event #").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no event popup title:\n{popup}"))
        .to_string();
    assert!(
        popup.contains("Stripe's error"),
        "a failed event shows its error:\n{popup}"
    );
    // ↓ shows the next event in the popup.
    tmux.keys(&["j"]);
    tmux.wait_for("the next event", |s| {
        s.contains("┌ Event #") && !s.contains(&format!("┌ Event #{title} "))
    });
    tmux.keys(&["Escape"]);
    let closed = tmux.wait_for("the popup to close", |s| {
        !s.contains("┌ Event #") && s.contains("Enter event detail")
    });
    assert!(
        closed.contains("When (UTC)"),
        "still on the events view:\n{closed}"
    );

    tmux.keys(&["q"]);
    assert_terminal_restored(&tmux);
}

#[test]
fn archived_customers_are_hidden_until_a_shows_them() {
    require_tmux();
    let dir = TempDir::new().unwrap();
    let db = demo_db(dir.path());
    let list = Command::new(BIN)
        .args(["customer", "list", "--json", "--db"])
        .arg(&db)
        .arg("--plans")
        .arg(plans())
        .output()
        .unwrap();
    let customers: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let id = customers[0]["id"].as_str().unwrap().to_string();
    let archived = Command::new(BIN)
        .args(["customer", "archive", &id, "--db"])
        .arg(&db)
        .arg("--plans")
        .arg(plans())
        .output()
        .unwrap();
    assert!(archived.status.success(), "{archived:?}");

    let tmux = Tmux::start("archived", 120, 40, dir.path(), &[]);
    tmux.type_line(&dashboard_command(&db));
    // 23 of 24 listed: the archived one is hidden, and the count says so.
    let screen = tmux.wait_text("Customers 23/24 · sorted by risk");
    assert!(!screen.contains("[archived]"), "{screen}");
    // The header counts what the table lists and names what it hides.
    assert!(
        screen.contains("23 customers (+1 archived, a shows)"),
        "{screen}"
    );
    tmux.keys(&["a"]);
    tmux.wait_for("the archived customer listed", |s| {
        s.contains("Customers 24/24") && s.contains("[archived]") && s.contains("24 customers ")
    });
    tmux.keys(&["a"]);
    tmux.wait_text("Customers 23/24");
    tmux.keys(&["q"]);
}

#[test]
fn several_meters_show_the_nearest_and_m_picks_one_for_every_gauge() {
    require_tmux();
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("meters.db");
    let plans = dir.path().join("plans.toml");
    // Three meters: an AI API (requests capped, tokens by model, active users).
    std::fs::write(&plans, crate::support::common::AI_PLANS).unwrap();
    let meterline = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .arg("--db")
            .arg(&db)
            .arg("--plans")
            .arg(&plans)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
    };
    for (id, name) in [("acme", "Acme Meters"), ("globex", "Globex Meters")] {
        meterline(&["customer", "add", id, "--plan", "free", "--name", name]);
    }
    // Acme: 9 of 100 requests (nearest); Globex: 9,500 of 10,000 tokens over two models, and
    // 1 of 4 active users.
    for _ in 0..9 {
        meterline(&["record", "acme", "--meter", "requests"]);
    }
    meterline(&[
        "record",
        "globex",
        "--meter",
        "users",
        "--property",
        "user=ann",
    ]);
    for (tokens, model) in [("7000", "large"), ("2500", "small")] {
        let tokens = format!("tokens={tokens}");
        let model = format!("model={model}");
        meterline(&[
            "record",
            "globex",
            "--meter",
            "tokens",
            "--property",
            &tokens,
            "--property",
            &model,
        ]);
    }

    let tmux = Tmux::start("meters", 120, 40, dir.path(), &[]);
    tmux.type_line(&dashboard_command_with(&db, &plans));
    let screen = tmux.wait_for("the overview with its meters", |s| {
        s.contains("· meter nearest its limit")
            && s.contains("API requests · 3 meters")
            && s.contains("Tokens · 3 meters")
    });
    assert!(screen.contains("9 / 100"), "{screen}");
    assert!(screen.contains("9,500 / 10,000"), "{screen}");
    assert!(
        screen.contains(" m meter "),
        "the footer names the picker: {screen}"
    );

    tmux.keys(&["m"]);
    tmux.wait_for("the picker", |s| {
        s.contains("Gauges show") && s.contains("unique_count · users")
    });
    // The last entry: active users, on every gauge.
    tmux.keys(&["G"]);
    tmux.keys(&["Enter"]);
    let users = tmux.wait_for("every gauge on active users", |s| {
        s.contains("· meter Active users") && !s.contains("Gauges show")
    });
    assert!(users.contains("1 / 4"), "{users}");
    assert!(users.contains("0 / 4"), "{users}");
    assert!(!users.contains("Tokens · 3 meters"), "{users}");

    // The detail shows every meter, the groups of tokens.
    tmux.keys(&["/"]);
    tmux.run(&["send-keys", "-l", "globex"]);
    tmux.keys(&["Enter"]);
    tmux.wait_text("Customers 1/2");
    tmux.keys(&["Enter"]);
    let detail = tmux.wait_for("the detail's meters", |s| {
        s.contains("Tokens · sum · by model") && s.contains("Active users · unique_count")
    });
    assert!(detail.contains("large"), "{detail}");
    assert!(
        detail.contains("9,500 / 10,000 · 95 % · ◆ critical"),
        "{detail}"
    );
    // Esc: the detail, then the filter, then back to each customer's nearest meter.
    for wait in ["Customers 1/2", "Customers 2/2", "meter nearest its limit"] {
        tmux.keys(&["Escape"]);
        tmux.wait_text(wait);
    }
    tmux.keys(&["q"]);
    assert_terminal_restored(&tmux);
}
