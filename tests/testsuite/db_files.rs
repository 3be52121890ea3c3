//! What meterline does with the file `--db` names: read commands never create or change one,
//! a write command that creates one says so, another program's SQLite file is refused untouched, an old meterline file is recognised,
//! and a full disk says so.

use std::path::Path;

use crate::support::cli::Scratch;
use meterline::store::{APPLICATION_ID, OpenOptions, SCHEMA_VERSION};
use meterline::{Error, Store};
use predicates::str::contains;

/// Every file in the directory, with its bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

const READS: [&[&str]; 7] = [
    &["check", "acme"],
    &["status"],
    &["history", "acme"],
    &["members", "acme"],
    &["customer", "list"],
    &["plans"],
    &["upgrade"],
];

#[test]
fn read_commands_on_a_missing_database_create_nothing_and_say_how_to_make_one() {
    let s = Scratch::new();
    let before = files(s.dir.path());
    for args in READS.iter().filter(|a| a[0] != "plans") {
        s.cmd()
            .args(*args)
            .assert()
            .code(2)
            .stdout("")
            .stderr(contains("there is no meterline database here"))
            .stderr(contains("meterline customer add ID"))
            .stderr(contains("meterline demo"))
            .stderr(contains(s.db.display().to_string()));
    }
    // The dashboard only reads too (refused before it looks for a terminal).
    s.cmd()
        .write_stdin("")
        .assert()
        .code(2)
        .stderr(contains("there is no meterline database here"));
    // `sync` (and its dry run) with no database: nothing to report, nothing created.
    for args in [&["sync", "--dry-run"][..], &["sync"], &["--sync"]] {
        s.cmd()
            .args(args)
            .env("STRIPE_API_KEY", "sk_test_51abcdefghijklmnop")
            .env("STRIPE_API_BASE", "http://127.0.0.1:9")
            .assert()
            .code(2)
            .stderr(contains("there is no meterline database here"));
    }
    // An empty file (e.g. `touch meterline.db`) is no database either, and stays empty.
    std::fs::write(&s.db, b"").unwrap();
    let before_empty = files(s.dir.path());
    s.cmd()
        .args(["status"])
        .assert()
        .code(2)
        .stderr(contains("there is no meterline database here"));
    assert_eq!(files(s.dir.path()), before_empty);
    std::fs::remove_file(&s.db).unwrap();
    assert_eq!(files(s.dir.path()), before, "a read command created a file");

    // A write command creates it.
    s.cmd().args(["customer", "add", "acme"]).assert().success();
    s.cmd().args(["status"]).assert().success();
}

#[test]
fn an_older_database_is_refused_by_reads_and_upgraded_by_writes() {
    let s = Scratch::new();
    // A database exactly as a version-2 meterline left it, with one customer's usage.
    let conn = s.conn();
    meterline::store::create_at_version(&conn, 2).unwrap();
    conn.execute_batch(
        "INSERT INTO customers VALUES ('acme', 'Acme', 'free', NULL, '2026-11-01', '2026-11-01T00:00:00Z');
         INSERT INTO usage_events (customer_id, quantity, occurred_at, recorded_at, period_start)
             VALUES ('acme', 5, '2026-11-02T00:00:00Z', '2026-11-02T00:00:00Z', '2026-11-01T00:00:00Z');
         INSERT INTO usage_records VALUES ('acme', '2026-11-01T00:00:00Z', '2026-12-01T00:00:00Z', 5, 'free', 'meterline_usage');",
    )
    .unwrap();
    drop(conn);
    let before = files(s.dir.path());
    for args in [&["check", "acme"][..], &["status"], &["customer", "list"]] {
        s.cmd()
            .args(args)
            .assert()
            .code(1)
            .stderr(contains("schema version 2, older than this meterline"))
            .stderr(contains("meterline upgrade"));
    }
    assert_eq!(
        files(s.dir.path()),
        before,
        "a read command changed the file"
    );

    s.cmd()
        .args(["upgrade"])
        .assert()
        .success()
        .stdout(contains(format!(
            "schema version {SCHEMA_VERSION}, up to date"
        )));
    let version: i64 = s
        .conn()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    s.cmd()
        .args(["check", "acme"])
        .assert()
        .success()
        .stdout(contains("used 5"));
}

/// Another program's SQLite file: same bytes after every command, no -wal/-shm beside it.
#[test]
fn a_foreign_sqlite_file_is_refused_and_left_byte_for_byte() {
    let s = Scratch::new();
    let conn = rusqlite::Connection::open(&s.db).unwrap();
    conn.execute_batch(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);
         INSERT INTO notes (body) VALUES ('keep me');",
    )
    .unwrap();
    drop(conn);
    let before = files(s.dir.path());
    let writes: [&[&str]; 4] = [
        &["record", "acme"],
        &["customer", "add", "acme"],
        &["demo", "--customers", "2", "--events", "10"],
        &["upgrade"],
    ];
    for args in READS
        .iter()
        .filter(|a| a[0] != "plans")
        .chain(writes.iter())
    {
        s.cmd()
            .args(*args)
            .assert()
            .code(2)
            .stderr(contains("an SQLite database of another program"))
            .stderr(contains(s.db.display().to_string()));
    }
    assert_eq!(files(s.dir.path()), before);

    // The library refuses it too, and so does another id set by another program.
    let err = Store::open(&s.db).err().expect("refused");
    assert!(matches!(err, Error::ForeignDatabase), "{err}");
    let conn = rusqlite::Connection::open(&s.db).unwrap();
    conn.pragma_update(None, "application_id", 42).unwrap();
    drop(conn);
    let other = tempfile::tempdir().unwrap();
    let copy = other.path().join("x.db");
    std::fs::copy(&s.db, &copy).unwrap();
    assert!(matches!(Store::open(&copy), Err(Error::ForeignDatabase)));
}

/// A write command that creates the database says so on stderr with the full path (a typo
/// in --db used to start a second database silently); on an existing one it says nothing.
#[test]
fn a_write_command_that_creates_a_database_says_where() {
    let s = Scratch::new();
    let typo = s.dir.path().join("meterlin.db");
    let creates = |args: &[&str]| {
        let out = s.cmd().arg("--db").arg(&typo).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stderr).unwrap()
    };
    assert_eq!(
        creates(&["customer", "add", "acme", "--plan", "free"]),
        format!("created a new meterline database: {}\n", typo.display())
    );
    assert_eq!(creates(&["record", "acme"]), "");
    std::fs::remove_file(&typo).unwrap();
    assert!(creates(&["token", "create", "ci"]).starts_with("created a new meterline database: "));
}

#[test]
fn a_new_database_carries_the_application_id_and_an_old_one_gets_it() {
    let s = Scratch::new();
    s.add_customer("acme", "free", "2026-11-01");
    let id = |s: &Scratch| -> i32 {
        s.conn()
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(id(&s), APPLICATION_ID);
    // A meterline database from before the id: recognised by its tables, read as it is,
    // and marked by the next write.
    s.conn().pragma_update(None, "application_id", 0).unwrap();
    s.cmd().args(["check", "acme"]).assert().success();
    assert_eq!(id(&s), 0, "a read command wrote the id");
    s.record("acme", 1);
    assert_eq!(id(&s), APPLICATION_ID);
}

#[test]
fn the_library_open_options_are_explicit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    assert!(matches!(
        Store::open_with(&path, OpenOptions::existing()),
        Err(Error::NoDatabase)
    ));
    assert!(!path.exists());
    drop(Store::open(&path).unwrap());
    Store::open_with(&path, OpenOptions::existing()).unwrap();
}

#[test]
fn a_malformed_busy_timeout_is_a_usage_error() {
    let s = Scratch::new();
    s.add_customer("acme", "free", "2026-11-01");
    for bad in ["soon", "-5", "0", ""] {
        s.cmd()
            .env("METERLINE_BUSY_TIMEOUT_MS", bad)
            .args(["check", "acme"])
            .assert()
            .code(2)
            .stdout("")
            .stderr(contains("busy-timeout-ms"));
    }
    s.cmd()
        .env("METERLINE_BUSY_TIMEOUT_MS", "250")
        .args(["check", "acme"])
        .assert()
        .success();
}

/// A real full disk: a 512 KiB tmpfs mounted in a private mount namespace (no root needed,
/// nothing to clean up: the mount ends with the process).
#[test]
fn a_full_disk_says_disk_full() {
    let s = Scratch::new();
    let mut command = s.on_small_disk(
        "512k",
        &format!(
            "exec '{}' --db \"$SMALL/m.db\" demo --customers 50 --events 200000",
            crate::support::cli::BIN
        ),
    );
    let out = command.output().expect("unshare (util-linux) runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("mount:") && !stderr.contains("unshare:"),
        "could not mount a small tmpfs: {stderr}"
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the disk holding the database is full"),
        "{stderr}"
    );
    assert!(!stderr.contains("disk I/O error"), "{stderr}");
}
