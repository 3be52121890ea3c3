//! Meter event identifiers never repeat for different usage, even when a backup is restored
//! (issue 7, item 5): the fake Stripe server must receive every unit.

mod support;

use chrono::Duration;
use support::stripe::{Env, MAPPED, PLANS, json, now};

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

#[test]
fn each_event_gets_its_own_random_identifier() {
    let env = Env::new(PLANS);
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
