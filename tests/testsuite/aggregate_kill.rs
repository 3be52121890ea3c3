//! Aggregated reporting under kill -9 at random points (while reports are made, sent or
//! written back), repeated, with new usage recorded between the runs.

use std::process::Stdio;
use std::time::Duration;

use crate::support::engine::{Engine, engine_tests};
use crate::support::stripe::{Env, Seed, aggregate_plans, json, stderr};

engine_tests!(kill_9_at_random_points_then_rerun_bills_each_sum_once,);

const CUSTOMERS: usize = 120;

fn seeds() -> Vec<Seed> {
    (0..CUSTOMERS)
        .map(|i| Seed {
            id: Box::leak(format!("k{i:03}").into_boxed_str()),
            stripe: Some(Box::leak(format!("cus_Kill{i:04}").into_boxed_str())),
            plan: if i % 3 == 0 { "business" } else { "free" },
            events: 4,
        })
        .collect()
}

fn kill_9_at_random_points_then_rerun_bills_each_sum_once(engine: Engine) {
    let env = Env::on(engine, &aggregate_plans());
    let seeds = seeds();
    env.seed(&seeds, chrono::Duration::days(3));
    // A few milliseconds per answer: a run takes a while, so the kills land mid-run.
    env.server.set_delay(Duration::from_millis(20));
    let config = env.config();
    let mut killed_mid_run = 0;
    for round in 0..6 {
        let mut child = env
            .std_command(&["sync", "--json"], &[])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The first run has every report to send: killing it early makes sure at least one
        // kill lands mid-run, however fast the machine; later kills land anywhere.
        let wait = if round == 0 { 5..60 } else { 20..400 };
        std::thread::sleep(Duration::from_millis(fastrand::u64(wait)));
        child.kill().unwrap(); // SIGKILL: no cleanup of any kind
        let output = child.wait_with_output().unwrap();
        crate::support::stripe::assert_no_key(&output);
        if !output.status.success() {
            killed_mid_run += 1;
        }
        // Nothing is marked reported that Stripe does not have.
        let marked = env
            .inspect()
            .number("SELECT COUNT(*) FROM stripe_reports WHERE reported_at IS NOT NULL");
        assert!(
            marked as usize <= env.server.accepted_count(),
            "round {round}"
        );
        // Traffic goes on between the runs: new usage for some customers.
        let mut store = env.store();
        for seed in seeds.iter().skip(round).step_by(7) {
            let at = crate::support::stripe::now() - chrono::Duration::minutes(9 - round as i64);
            env.record(&mut store, &config, seed.id, 1 + round as i64, at);
        }
    }
    assert!(killed_mid_run > 0, "every kill came after the run finished");

    let output = env.run(&["sync", "--json"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(json(&output)["remaining"], 0);
    env.assert_sums_match();
    // Every report Stripe accepted is marked, and every marked one was accepted once.
    let db = env.inspect();
    let reported = db.number("SELECT COUNT(*) FROM stripe_reports WHERE reported_at IS NOT NULL");
    assert_eq!(reported as usize, env.server.accepted_count());
    // No event was ever put in two reports: the events' sum is the reports' sum.
    let events = db.number(
        "SELECT CAST(SUM(quantity) AS BIGINT) FROM usage_events WHERE stripe_report_id IS NOT NULL",
    );
    let reports = db.number("SELECT CAST(SUM(value) AS BIGINT) FROM stripe_reports");
    assert_eq!(events, reports);
    assert_eq!(env.server.max_in_flight_per_key(), 1);
}
