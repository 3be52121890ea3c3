//! The Stripe sync on both engines: every unit reaches the Stripe-like server exactly once, a
//! second run sends nothing, a run killed with -9 is finished by the next without counting
//! anything twice, and recording goes on while a sync of a large backlog runs.

use std::collections::HashMap;

use crate::support::engine::{Engine, engine_tests};
use crate::support::stripe::{Env, MAPPED, PLANS, Seed, aggregate_plans, json, stderr};

engine_tests!(
    sync_reports_every_unit_exactly_once,
    a_sync_killed_mid_run_is_finished_by_the_next_without_doubles,
    a_dry_run_previews_every_unit_and_sends_nothing,
    records_succeed_while_a_sync_of_a_large_backlog_runs,
    a_report_stands_for_at_most_10000_events,
);

/// Units per Stripe customer: what the database holds, and what the server accepted.
fn local_and_accepted(env: &Env) -> (HashMap<String, i64>, HashMap<String, i64>) {
    let local = env
        .inspect()
        .rows(
            "SELECT c.stripe_customer_id, CAST(SUM(e.quantity) AS BIGINT)
             FROM usage_events e JOIN customers c ON c.id = e.customer_id
             WHERE c.stripe_customer_id IS NOT NULL GROUP BY c.stripe_customer_id",
        )
        .into_iter()
        .map(|r| (r[0].clone(), r[1].parse().unwrap()))
        .collect();
    let mut accepted: HashMap<String, i64> = HashMap::new();
    for event in env.server.accepted().values() {
        *accepted.entry(event.customer.clone()).or_default() += event.value;
    }
    (local, accepted)
}

fn sync_reports_every_unit_exactly_once(engine: Engine) {
    let env = Env::seeded(engine, PLANS);
    let output = env.run(&["sync", "--json"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report = json(&output);
    assert_eq!(report["remaining"], 0, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    let (local, accepted) = local_and_accepted(&env);
    assert_eq!(local.len(), MAPPED.len());
    assert_eq!(accepted, local);
    assert_eq!(env.server.duplicates(), 0);

    let requests = env.server.requests();
    let again = env.run(&["sync", "--json"], &[]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(json(&again)["attempted"], 0);
    assert_eq!(env.server.requests(), requests);
}

fn a_sync_killed_mid_run_is_finished_by_the_next_without_doubles(engine: Engine) {
    let env = Env::seeded(engine, PLANS);
    env.server.set_delay(std::time::Duration::from_millis(30));
    let killed = env.signal_after_requests(&["sync"], 1, "-KILL");
    assert!(!killed.status.success());
    env.server.set_delay(std::time::Duration::ZERO);
    // The killed run's lock is taken over (its process is gone); the run finishes the work.
    let output = env.run(&["sync", "--json"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(json(&output)["remaining"], 0);
    let (local, accepted) = local_and_accepted(&env);
    assert_eq!(accepted, local, "a unit was lost or counted twice");
}

/// `sync --dry-run` on a plans.toml without `[[meters]]` (PostgreSQL refused its preview
/// query: a constant in GROUP BY): every unit the sync would send, and not one request.
fn a_dry_run_previews_every_unit_and_sends_nothing(engine: Engine) {
    let env = Env::seeded(engine, PLANS);
    let output = env.run(&["sync", "--dry-run", "--json"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let preview = json(&output);
    assert_eq!(env.server.requests(), 0);
    let (local, _) = local_and_accepted(&env);
    assert_eq!(
        preview["units"].as_i64(),
        Some(local.values().sum::<i64>()),
        "{preview}"
    );
    assert_eq!(
        preview["customers"].as_u64(),
        Some(MAPPED.len() as u64),
        "{preview}"
    );
}

/// While a sync packs and sends a backlog of 12,000 events, `meterline record` in another
/// process keeps succeeding (on PostgreSQL the packing held the writers' lock for its whole
/// length, quadratic in the events, and every record failed "locked"), and every unit,
/// recorded before or during the sync, reaches Stripe exactly once.
fn records_succeed_while_a_sync_of_a_large_backlog_runs(engine: Engine) {
    let env = Env::on(engine, &aggregate_plans());
    let customers: Vec<Seed> = MAPPED[..2]
        .iter()
        .map(|s| Seed { events: 0, ..*s })
        .collect();
    env.seed(&customers, chrono::Duration::days(20));
    env.record_many("acme", 10_000, chrono::Duration::days(20));
    env.record_many("globex", 2_000, chrono::Duration::days(20));
    env.server.set_delay(std::time::Duration::from_millis(20));

    let mut sync = env
        .std_command(&["sync", "--json"], &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut recorded = 0;
    while sync.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "the sync never ended");
        let customer = ["acme", "globex"][recorded % 2];
        let output = env.run(&["record", customer, "-n", "3"], &[]);
        assert!(
            output.status.success(),
            "record {recorded} during the sync: {}",
            stderr(&output)
        );
        recorded += 1;
    }
    let output = sync.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(recorded > 0, "the sync ended before any record");

    // What was recorded during the run goes with the next.
    let again = env.run(&["sync", "--json"], &[]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(json(&again)["remaining"], 0);
    let (local, accepted) = local_and_accepted(&env);
    assert_eq!(accepted, local, "a unit was lost or counted twice");
    assert_eq!(env.server.duplicates(), 0);
}

/// A `sum` report stands for at most 10,000 events (making it and marking its events are
/// transactions every writer waits for): 10,005 events of one customer go out as two reports
/// or more, as the dry run said, and Stripe's total is the events' total.
fn a_report_stands_for_at_most_10000_events(engine: Engine) {
    let env = Env::on(engine, &aggregate_plans());
    env.seed(
        &[Seed {
            events: 0,
            ..MAPPED[0]
        }],
        chrono::Duration::days(1),
    );
    env.record_many("acme", 10_005, chrono::Duration::hours(1));
    let preview = env.run(&["sync", "--dry-run", "--json"], &[]);
    assert!(preview.status.success(), "{}", stderr(&preview));
    let output = env.run(&["sync", "--json"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(json(&output)["events_reported"], 10_005);

    let db = env.inspect();
    let reports = db.number("SELECT COUNT(*) FROM stripe_reports");
    assert!(reports >= 2, "{reports} report(s)");
    assert!(db.number("SELECT MAX(events) FROM stripe_reports") <= 10_000);
    assert_eq!(json(&preview)["requests"], reports);
    let (local, accepted) = local_and_accepted(&env);
    assert_eq!(accepted, local, "a unit was lost or counted twice");
}
