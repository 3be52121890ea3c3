//! A database written by an older meterline (tests/fixtures/schema_v8, see its README) upgraded
//! in place by today's binary: every row of every table it had is still there, unchanged, and
//! still answers as it did.

use crate::support::cli::Scratch;
use rusqlite::Connection;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schema_v8");

/// A scratch directory holding a copy of the fixture database and its plans.toml.
fn fixture() -> Scratch {
    let s = Scratch::new();
    std::fs::copy(format!("{FIXTURE}/meterline.db"), &s.db).unwrap();
    std::fs::copy(format!("{FIXTURE}/plans.toml"), &s.plans).unwrap();
    s
}

/// Every table's rows, limited to the columns `shape` had: what an upgrade must keep.
fn rows(conn: &Connection, shape: &[(String, Vec<String>)]) -> Vec<(String, Vec<String>)> {
    shape
        .iter()
        .map(|(table, columns)| {
            let sql = format!(
                "SELECT {} FROM {table} ORDER BY 1",
                columns
                    .iter()
                    .map(|c| format!("quote({c})"))
                    .collect::<Vec<_>>()
                    .join(" || '|' || ")
            );
            let mut stmt = conn.prepare(&sql).unwrap();
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .unwrap()
                .collect::<rusqlite::Result<Vec<_>>>()
                .unwrap();
            (table.clone(), rows)
        })
        .collect()
}

/// `rows` after an upgrade, without the one row it adds: migration 11's mark that the periods
/// counted before it still have their meters' terms to keep (`period_terms_pending`).
fn old_rows(conn: &Connection, shape: &[(String, Vec<String>)]) -> Vec<(String, Vec<String>)> {
    let mut rows = rows(conn, shape);
    for (table, rows) in &mut rows {
        if table == "meterline_meta" {
            rows.retain(|r| !r.starts_with("'period_terms_pending'|"));
        }
    }
    rows
}

/// Each table of the database with its columns.
fn shape(conn: &Connection) -> Vec<(String, Vec<String>)> {
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap();
    let tables: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    tables
        .into_iter()
        .map(|table| {
            let mut stmt = conn
                .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
                .unwrap();
            let columns = stmt
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            (table, columns)
        })
        .collect()
}

#[test]
fn upgrade_keeps_every_row_of_an_older_database() {
    let s = fixture();
    let (shape, before) = {
        let conn = s.conn();
        let shape = shape(&conn);
        let before = rows(&conn, &shape);
        (shape, before)
    };
    for table in [
        "customers",
        "usage_events",
        "usage_records",
        "usage_members",
        "stripe_reports",
        "alerts",
        "alert_deliveries",
        "api_tokens",
        "sync_runs",
    ] {
        let (_, rows) = before.iter().find(|(t, _)| t == table).unwrap();
        assert!(!rows.is_empty(), "the fixture has no {table}");
    }
    s.cmd().arg("upgrade").assert().success();
    let conn = s.conn();
    assert_eq!(
        old_rows(&conn, &shape),
        before,
        "an upgrade changed old data"
    );
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, meterline::store::SCHEMA_VERSION);
    drop(conn);

    // The counters answer as they did.
    for (customer, used) in [("acme", 105_005), ("tiny", 970), ("org", 7)] {
        assert_eq!(
            s.json(&["check", customer, "--json"])["used"],
            used,
            "{customer}"
        );
    }
    // A second upgrade is a no-op.
    s.cmd().arg("upgrade").assert().success();
    assert_eq!(old_rows(&s.conn(), &shape), before);

    // The periods counted before migration 11 get their plan's terms for every meter at the
    // first record, and keep them from then on.
    let without_terms = |conn: &Connection| -> i64 {
        conn.query_row(
            "SELECT COUNT(*) FROM usage_records WHERE meter_terms IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert!(without_terms(&s.conn()) > 0);
    s.record("tiny", 1);
    assert_eq!(without_terms(&s.conn()), 0);
    let kept: String = s
        .conn()
        .query_row(
            "SELECT meter_terms FROM usage_records WHERE customer_id = 'acme' ORDER BY period_start LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let kept: serde_json::Value = serde_json::from_str(&kept).unwrap();
    assert!(kept["usage"]["at_limit"].is_string(), "{kept}");
}

#[test]
fn any_writing_command_upgrades_and_old_keys_still_answer_resends() {
    let s = fixture();
    // A resend of every old key, natively: a duplicate of its own event, nothing counted. The
    // keys spelled like a drop-in route's are still found (either side may have sent them).
    let before = crate::support::cli::dump(&s.conn());
    for (args, event) in [
        ("acme -n 400 --at 2026-10-10T08:00:00Z --key req-1", 1),
        (
            "acme -n 10000 --at 2026-11-07T09:00:00Z --user bob --key lago:2:t1",
            3,
        ),
        (
            "tiny -n 850 --at 2026-11-20T12:00:00Z --key ce:3:svc:2:e1",
            4,
        ),
    ] {
        let mut cmd = s.cmd();
        cmd.arg("record").args(args.split(' ')).arg("--json");
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            (json["duplicate"].as_bool(), json["event_id"].as_i64()),
            (Some(true), Some(event)),
            "{args}"
        );
    }
    let conn = s.conn();
    let sources: Vec<(String, String)> = conn
        .prepare(
            "SELECT idempotency_key, idempotency_source FROM usage_events
             WHERE idempotency_key IS NOT NULL ORDER BY id",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let sources: Vec<(&str, &str)> = sources
        .iter()
        .map(|(k, s)| (k.as_str(), s.as_str()))
        .filter(|(k, _)| !k.starts_with("lago-sha256:"))
        .collect();
    assert_eq!(
        sources,
        [
            ("req-1", "native"),
            ("lago:2:t1", "legacy"),
            ("ce:3:svc:2:e1", "legacy"),
            ("stripe:5:req-1", "legacy"),
            ("after-sync", "native"),
        ]
    );
    // Only the new column differs: the same events and counters.
    let after = crate::support::cli::dump(&conn);
    for ((table, old), (_, new)) in before.0.iter().zip(&after.0) {
        assert_eq!(old.len(), new.len(), "{table}");
    }
}
