//! Expiry warnings: unreported events close to Stripe's 35-day window are counted
//! "expiring" in status and sync --json, so the usage is sent before it is lost.

use crate::support::engine::{Engine, engine_tests};
use crate::support::stripe::{Env, aggregate_plans, json, stderr, stdout};

engine_tests!(
    events_near_stripes_window_are_counted_expiring_until_sent,
    the_warning_distance_is_configurable,
    a_bad_report_mode_is_a_configuration_error,
);

/// Acme has 5 events 33 days old (2 days from the limit) and 5 from today.
fn env(engine: Engine, plans: &str) -> Env {
    let env = Env::on(engine, plans);
    env.seed(
        &crate::support::stripe::MAPPED[..1],
        chrono::Duration::hours(1),
    );
    let config = env.config();
    let mut store = env.store();
    for i in 0..5 {
        let at = crate::support::stripe::now()
            - chrono::Duration::days(33)
            - chrono::Duration::minutes(i);
        env.record(&mut store, &config, "acme", 2, at);
    }
    env
}

fn events_near_stripes_window_are_counted_expiring_until_sent(engine: Engine) {
    let env = env(engine, &aggregate_plans());
    let preview = json(&env.run(&["sync", "--dry-run", "--json"], &[]));
    assert_eq!(preview["expiring"], 5, "{preview}");
    let status = stdout(&env.run(&["status"], &[]));
    assert!(status.contains("5 expiring"), "{status}");
    // status --json says whose they are.
    let entries = json(&env.run(&["status", "--json"], &[]));
    let acme = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["customer"] == "acme")
        .unwrap();
    assert_eq!(acme["stripe"]["expiring"], 5, "{acme}");
    let text = stdout(&env.run(&["sync", "--dry-run"], &[]));
    assert!(text.contains("expiring: 5 unreported events"), "{text}");
    // A sync sends them: nothing is expiring any more.
    let output = env.run(&["sync", "--json"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(json(&output)["expiring"], 0);
    assert!(!stdout(&env.run(&["status"], &[])).contains("expiring"));
}

fn the_warning_distance_is_configurable(engine: Engine) {
    let plans =
        aggregate_plans().replace("rate_limit = 0", "rate_limit = 0\nexpiry_warning_days = 1");
    let env = env(engine, &plans);
    let preview = json(&env.run(&["sync", "--dry-run", "--json"], &[]));
    assert_eq!(
        preview["expiring"], 0,
        "33 days old is 2 days from the limit"
    );
    let wide =
        aggregate_plans().replace("rate_limit = 0", "rate_limit = 0\nexpiry_warning_days = 40");
    std::fs::write(&env.plans, wide).unwrap();
    let output = env.run(&["status"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("expiry_warning_days = 40"));
}

fn a_bad_report_mode_is_a_configuration_error(engine: Engine) {
    let plans = aggregate_plans().replace("rate_limit = 0", "rate_limit = 0\nreport = \"batched\"");
    let env = Env::on(engine, &plans);
    let output = env.run(&["plans"], &[]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(
        err.contains("report = \"batched\"") && err.contains("per_event"),
        "{err}"
    );
}
