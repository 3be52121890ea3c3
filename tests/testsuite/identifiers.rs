//! Meter event identifiers never repeat for different usage, even when a backup is restored
//! (issue 7, item 5): the fake Stripe server must receive every unit.

use crate::support::engine::{Engine, engine_tests};
use crate::support::stripe::{Env, MAPPED, PLANS, aggregate_plans, json, now};
use chrono::Duration;

engine_tests!(each_event_gets_its_own_random_identifier);

fn record(env: &Env, quantities: &[i64]) -> i64 {
    let config = env.config();
    let mut store = env.store();
    for (i, &quantity) in quantities.iter().enumerate() {
        let at = now() - Duration::minutes(30) + Duration::seconds(i as i64);
        env.record(&mut store, &config, "acme", quantity, at);
    }
    quantities.iter().sum()
}

fn sync(env: &Env) {
    let output = env.run(&["sync", "--json"], &[]);
    assert!(output.status.success(), "{}", json(&output));
}

fn units_accepted(env: &Env) -> i64 {
    env.server.accepted().values().map(|a| a.value).sum()
}

#[test]
fn a_restored_backup_does_not_drop_new_usage() {
    let env = Env::new(PLANS);
    env.seed(&MAPPED[..1], Duration::hours(2));
    let mut sent: i64 = env.deliverable().iter().map(|e| e.4).sum();
    sync(&env);
    assert_eq!(units_accepted(&env), sent);

    let backup = env.dir.path().join("backup.db");
    std::fs::copy(&env.db, &backup).unwrap();
    sent += record(&env, &[5, 7, 11]);
    sync(&env);
    assert_eq!(units_accepted(&env), sent);

    // The backup comes back: its event ids are reused by the next events.
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", env.db.display()));
    }
    std::fs::copy(&backup, &env.db).unwrap();
    sent += record(&env, &[13, 17, 19]);
    sync(&env);
    assert_eq!(units_accepted(&env), sent, "every unit reaches Stripe");
    assert_eq!(env.server.accepted_count(), 40 + 3 + 3);
}

fn each_event_gets_its_own_random_identifier(engine: Engine) {
    let env = Env::on(engine, PLANS);
    env.seed(&MAPPED[..1], Duration::hours(1));
    let identifiers: Vec<String> = env.deliverable().into_iter().map(|e| e.1).collect();
    let distinct: std::collections::HashSet<&String> = identifiers.iter().collect();
    assert_eq!(distinct.len(), identifiers.len());
    assert!(
        identifiers
            .iter()
            .all(|id| id.starts_with("ml-") && id.len() == 39),
        "{identifiers:?}"
    );
}

/// Every `ml-<…>` form in README.md, ARCHITECTURE.md, docs/*.md and the rustdoc of src/, with
/// where it is (file:line) and the line itself.
fn documented_identifier_forms() -> Vec<(String, String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    let mut dirs = vec![root.join("docs"), root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            match path.extension().and_then(|e| e.to_str()) {
                _ if path.is_dir() => dirs.push(path),
                Some("md" | "rs") => files.push(path),
                _ => {}
            }
        }
    }
    let mut forms = Vec::new();
    for file in files {
        let rust = file.extension().is_some_and(|e| e == "rs");
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let doc = line.trim_start();
            if rust && !(doc.starts_with("///") || doc.starts_with("//!")) {
                continue;
            }
            for (at, _) in line.match_indices("`ml-<") {
                let form = line[at + 1..].split('`').next().unwrap_or_default();
                let place = format!("{}:{}", file.display(), n + 1);
                forms.push((place, form.to_string(), line.to_string()));
            }
        }
    }
    forms
}

/// The docs name the identifiers the code makes: a real aggregate sync stores `ml-<UUIDv7>` for
/// every event (made at record time) and for every report (made when the sync packs it), and
/// the older `ml-<database id>-<event id>` is named only as that of events recorded before
/// schema version 4 (said on the same line). (docs/sync.md gave the old form as today's.)
#[test]
fn the_docs_name_the_identifiers_the_code_makes() {
    let env = Env::new(&aggregate_plans());
    env.seed(&MAPPED[..1], Duration::hours(1));
    sync(&env);
    let conn = rusqlite::Connection::open(&env.db).unwrap();
    let column = |sql: &str| -> Vec<String> {
        let mut stmt = conn.prepare(sql).unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let events = column("SELECT stripe_identifier FROM usage_events");
    let reports = column("SELECT identifier FROM stripe_reports");
    assert!(!events.is_empty() && !reports.is_empty());
    for id in events.iter().chain(&reports) {
        let uuid = id
            .strip_prefix("ml-")
            .and_then(|u| uuid::Uuid::parse_str(u).ok())
            .unwrap_or_else(|| panic!("not ml-<UUID>: {id}"));
        assert_eq!(uuid.get_version_num(), 7, "{id}");
    }

    let forms = documented_identifier_forms();
    assert!(forms.iter().any(|(_, form, _)| form == "ml-<UUIDv7>"));
    for (place, form, line) in &forms {
        match form.as_str() {
            "ml-<UUIDv7>" => {}
            "ml-<database id>-<event id>" => assert!(
                line.contains("schema version 4") || line.contains("migration 4"),
                "{place}: the old form named as if current: {line}"
            ),
            other => panic!("{place}: an identifier form the code does not make: {other}"),
        }
    }
}
