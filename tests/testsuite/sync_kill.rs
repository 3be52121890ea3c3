//! The real binary killed with SIGKILL in the middle of a large sync, and two syncs at once.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::engine::{Engine, engine_tests};
use crate::support::stripe::{Env, PLANS, Seed, json, stderr};

engine_tests!(
    kill_9_mid_sync_then_rerun_bills_each_event_exactly_once,
    a_second_sync_while_one_runs_exits_1_and_sends_nothing,
);

const CUSTOMERS: &[Seed] = &[
    Seed {
        id: "c1",
        stripe: Some("cus_Kill0001"),
        plan: "free",
        events: 500,
    },
    Seed {
        id: "c2",
        stripe: Some("cus_Kill0002"),
        plan: "free",
        events: 500,
    },
    Seed {
        id: "c3",
        stripe: Some("cus_Kill0003"),
        plan: "business",
        events: 500,
    },
    Seed {
        id: "c4",
        stripe: Some("cus_Kill0004"),
        plan: "free",
        events: 500,
    },
    Seed {
        id: "c5",
        stripe: Some("cus_Kill0005"),
        plan: "business",
        events: 500,
    },
    Seed {
        id: "c6",
        stripe: Some("cus_Kill0006"),
        plan: "free",
        events: 500,
    },
];
const TOTAL: usize = 3000;

fn spawn_sync(env: &Env) -> Child {
    env.std_command(&["sync", "--json"], &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait (bounded) until the server has accepted `n` events in all.
fn wait_for_accepted(env: &Env, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.server.accepted_count() < n {
        assert!(
            Instant::now() < deadline,
            "the sync stalled at {}",
            env.server.accepted_count()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn kill_9_mid_sync_then_rerun_bills_each_event_exactly_once(engine: Engine) {
    let env = Env::on(engine, PLANS);
    env.seed(CUSTOMERS, chrono::Duration::days(30));
    assert_eq!(env.deliverable().len(), TOTAL);
    // A couple of milliseconds per answer: the sync takes seconds, so the kills land mid-run.
    env.server.set_delay(Duration::from_millis(2));

    let mut interrupted = Vec::new();
    for threshold in [400, 1500] {
        let mut child = spawn_sync(&env);
        wait_for_accepted(&env, threshold);
        child.kill().unwrap(); // SIGKILL: no cleanup of any kind
        let output = child.wait_with_output().unwrap();
        assert!(!output.status.success());
        crate::support::stripe::assert_no_key(&output);
        let run = env.store().last_sync_run().unwrap().unwrap();
        assert_eq!(run.outcome, "running", "the killed run never finished");
        interrupted.push(run.id);
        let marked = env.count("stripe_reported_at IS NOT NULL") as usize;
        assert!(
            marked <= env.server.accepted_count(),
            "marked without Stripe's answer"
        );
    }
    assert!(
        env.server.accepted_count() < TOTAL,
        "the kills came too late to test anything"
    );

    // What Stripe has but the database did not record before the kill comes back as duplicates.
    let marked = env.count("stripe_reported_at IS NOT NULL") as u64;
    let at_stripe = env.server.accepted_count() as u64;
    let output = env.run(&["sync", "--json"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report = json(&output);
    assert_eq!(
        report["duplicates"].as_u64().unwrap(),
        at_stripe - marked,
        "{report}"
    );
    assert_eq!(
        report["accepted"].as_u64().unwrap(),
        TOTAL as u64 - at_stripe,
        "{report}"
    );
    assert_eq!(report["remaining"], 0);

    env.assert_exactly_once();
    assert_eq!(env.server.max_in_flight_per_key(), 1);
    // The killed runs were found dead and marked so; the lock was taken over.
    let db = env.inspect();
    for id in interrupted {
        let outcome = &db.rows(&format!("SELECT outcome FROM sync_runs WHERE id = {id}"))[0][0];
        assert_eq!(outcome, "interrupted");
    }
    assert_eq!(db.number("SELECT COUNT(*) FROM sync_lock"), 0);
    env.assert_key_not_in_files();
}

fn a_second_sync_while_one_runs_exits_1_and_sends_nothing(engine: Engine) {
    let env = Env::on(engine, PLANS);
    env.seed(&CUSTOMERS[..3], chrono::Duration::days(10));
    env.server.set_delay(Duration::from_millis(5));
    let first = spawn_sync(&env);
    wait_for_accepted(&env, 10);

    let second = env.run(&["sync"], &[]);
    assert_eq!(second.status.code(), Some(1));
    // The refusal happened while the first run was still sending (else it proves nothing).
    assert!(
        env.server.accepted_count() < 1500,
        "the first sync finished before the second started"
    );
    let err = stderr(&second);
    assert!(
        err.contains("another sync is already running") && err.contains("pid"),
        "{err}"
    );
    let also = env.run(&["--sync"], &[]);
    assert_eq!(also.status.code(), Some(1));

    let output = first.wait_with_output().unwrap();
    crate::support::stripe::assert_no_key(&output);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(json(&output)["accepted"], 1500);
    // Only the first sync ever sent: one request per event, and one run on record.
    assert_eq!(env.server.requests(), 1500);
    let runs = env.inspect().number("SELECT COUNT(*) FROM sync_runs");
    assert_eq!(runs, 1, "the refused syncs started no run");
    env.assert_exactly_once();
}

#[test]
fn the_lock_is_held_within_one_process_too() {
    // The dashboard syncs in a thread: a second sync from the same process is refused as well.
    let env = Env::new(PLANS);
    let mut a = env.store();
    let mut b = env.store();
    let me = meterline::store::LockHolder::this_process();
    let run = a
        .begin_sync_run(&me, crate::support::stripe::now())
        .unwrap();
    let err = b
        .begin_sync_run(&me, crate::support::stripe::now())
        .unwrap_err();
    assert_eq!(err.exit_code(), 1);
    assert!(err.to_string().contains("another sync is already running"));
    // A holder whose process is gone is taken over at once.
    let conn = rusqlite::Connection::open(&env.db).unwrap();
    conn.execute("UPDATE sync_lock SET pid = 999999999", [])
        .unwrap();
    let taken = b
        .begin_sync_run(&me, crate::support::stripe::now())
        .unwrap();
    assert!(taken > run);
    let old: String = conn
        .query_row("SELECT outcome FROM sync_runs WHERE id = ?1", [run], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(old, "interrupted");

    // A holder on another host cannot be checked: its heartbeat decides.
    conn.execute("UPDATE sync_lock SET host = 'elsewhere', pid = 1", [])
        .unwrap();
    let err = a
        .begin_sync_run(&me, crate::support::stripe::now())
        .unwrap_err();
    assert!(err.to_string().contains("pid 1 on elsewhere"), "{err}");
    let stale = chrono::Utc::now().timestamp() - meterline::store::LOCK_STALE_AFTER_SECS - 1;
    conn.execute("UPDATE sync_lock SET heartbeat = ?1", [stale])
        .unwrap();
    a.begin_sync_run(&me, crate::support::stripe::now())
        .unwrap();
}
