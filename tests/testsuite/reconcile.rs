//! `meterline reconcile` against the test Stripe: meters listed page by page, event summaries
//! per customer over the period, drift reported with exit 1, configuration errors with exit 2.

use crate::support::engine::{Engine, engine_tests};
use crate::support::stripe::{Env, Fault, MAPPED, aggregate_plans, json, stderr, stdout};

engine_tests!(
    no_drift_after_a_clean_sync_in_both_modes,
    usage_added_at_stripe_is_drift_naming_the_customer,
    a_plan_without_an_active_meter_is_a_configuration_error,
    faults_on_reads_are_retried_and_a_refused_key_exits_2,
    doctor_checks_with_the_key_that_stripe_has_every_plans_meter,
    sigint_and_sigterm_stop_after_the_customer_in_progress,
    a_list_that_never_advances_is_an_error_not_an_endless_loop,
);

/// Synced cleanly, with a meter for each plan's event name.
fn synced(engine: Engine, plans: &str) -> Env {
    let env = Env::on(engine, plans);
    env.seed(MAPPED, chrono::Duration::days(20));
    env.server.add_meter("meterline_usage");
    env.server.add_meter("meterline_usage_business");
    let output = env.run(&["sync"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    env
}

fn rows(output: &std::process::Output) -> Vec<serde_json::Value> {
    json(output).as_array().unwrap().clone()
}

fn no_drift_after_a_clean_sync_in_both_modes(engine: Engine) {
    for plans in [aggregate_plans(), crate::support::stripe::PLANS.to_string()] {
        let env = synced(engine, &plans);
        // One meter per page: the meter list is read over pages.
        env.server.set_page_size(1);
        let output = env.run(&["reconcile", "--json", "--grace", "0"], &[]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        let rows = rows(&output);
        assert_eq!(rows.len(), 3);
        for row in &rows {
            assert_eq!(row["drift"], 0, "{row}");
            assert_eq!(row["status"], "ok", "{row}");
            assert_eq!(row["local"], row["stripe"]);
            for key in [
                "customer",
                "stripe_customer",
                "meter_event",
                "period_start",
                "period_end",
            ] {
                assert!(row[key].is_string(), "{key} in {row}");
            }
        }
        let globex = rows.iter().find(|r| r["customer"] == "globex").unwrap();
        assert_eq!(globex["meter_event"], "meterline_usage_business");
        assert_eq!(globex["stripe_customer"], "cus_Globex002");
        // The previous period agrees as well.
        let previous = env.run(
            &[
                "reconcile",
                "--json",
                "--grace",
                "0",
                "--period",
                "previous",
            ],
            &[],
        );
        assert_eq!(previous.status.code(), Some(0), "{}", stderr(&previous));
        assert!(rows.iter().all(|r| r["drift"] == 0));
    }
}

fn usage_added_at_stripe_is_drift_naming_the_customer(engine: Engine) {
    let env = synced(engine, &aggregate_plans());
    let at = (crate::support::stripe::now() - chrono::Duration::minutes(30)).timestamp();
    env.server
        .add_usage("cus_Initech03", "meterline_usage", 17, at);
    // Just reported: within the default grace Stripe may still be aggregating.
    let pending = env.run(&["reconcile", "--json"], &[]);
    assert_eq!(pending.status.code(), Some(0), "{}", stderr(&pending));
    let initech = rows(&pending)
        .into_iter()
        .find(|r| r["customer"] == "initech")
        .unwrap();
    assert_eq!(initech["status"], "pending", "{initech}");

    let output = env.run(&["reconcile", "--grace", "0"], &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stdout(&output);
    let line = text
        .lines()
        .find(|l| l.starts_with("initech"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("+17") && line.contains("drift"), "{line}");
    assert!(text.contains("1 drift"), "{text}");
    let json_rows = rows(&env.run(&["reconcile", "--json", "--grace", "0"], &[]));
    let drifted: Vec<_> = json_rows
        .iter()
        .filter(|r| r["status"] == "drift")
        .collect();
    assert_eq!(drifted.len(), 1);
    assert_eq!(drifted[0]["customer"], "initech");
    assert_eq!(drifted[0]["drift"], 17);
    // --customer narrows it down; another customer agrees.
    let acme = env.run(&["reconcile", "--customer", "acme", "--grace", "0"], &[]);
    assert_eq!(acme.status.code(), Some(0));
    // Each run is recorded.
    let store = env.store();
    let last = store.last_reconcile().unwrap().unwrap();
    assert_eq!((last.rows, last.drifted), (1, 0));
    let by_customer = store.last_reconcile_by_customer().unwrap();
    assert_eq!(by_customer["acme"].2, "ok");
}

fn a_plan_without_an_active_meter_is_a_configuration_error(engine: Engine) {
    let env = Env::on(engine, &aggregate_plans());
    env.seed(MAPPED, chrono::Duration::days(2));
    env.server.add_meter("meterline_usage");
    env.server.add_meter("meterline_usage_business");
    env.server.deactivate_meter("meterline_usage_business");
    let output = env.run(&["reconcile"], &[]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(
        err.contains("no active meter") && err.contains("meterline_usage_business"),
        "{err}"
    );
    assert!(
        env.store().last_reconcile().unwrap().is_none(),
        "nothing recorded"
    );
    // An unknown customer is a usage mistake too.
    env.server.add_meter("meterline_usage_business");
    let unknown = env.run(&["reconcile", "--customer", "nobody"], &[]);
    assert_eq!(unknown.status.code(), Some(2), "{}", stderr(&unknown));
}

fn faults_on_reads_are_retried_and_a_refused_key_exits_2(engine: Engine) {
    let env = synced(engine, &aggregate_plans());
    // Three in a row on the first read: the fourth attempt (max_attempts = 4) gets through.
    for fault in [
        Fault::TooManyRequests,
        Fault::Drop,
        Fault::ServerError { should_retry: None },
    ] {
        env.server.inject(fault, 1);
    }
    let output = env.run(&["reconcile", "--json", "--grace", "0"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(env.server.faults_left(), 0);
    env.server.inject(Fault::Unauthorized, 1);
    let refused = env.run(&["reconcile"], &[]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("refused the API key"));
}

fn doctor_checks_with_the_key_that_stripe_has_every_plans_meter(engine: Engine) {
    let env = Env::on(engine, &aggregate_plans());
    env.seed(MAPPED, chrono::Duration::days(2));
    env.server.add_meter("meterline_usage");
    let output = env.run(&["doctor", "--json"], &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let findings = json(&output);
    let meters = findings
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "meters")
        .unwrap_or_else(|| panic!("no meters finding: {findings}"))
        .clone();
    assert_eq!(meters["verdict"], "problem", "{meters}");
    assert!(
        meters["detail"]
            .as_str()
            .unwrap()
            .contains("meterline_usage_business"),
        "{meters}"
    );
    env.server.add_meter("meterline_usage_business");
    let output = env.run(&["doctor"], &[]);
    assert!(
        stdout(&output).contains("Stripe has an active meter for every plan's event name"),
        "{}",
        stdout(&output)
    );
}

/// Ctrl-C or SIGTERM: the customer being compared finishes, the rest are left, what was
/// compared is printed and recorded, exit 1; a rerun compares everyone. (Before, the signal
/// killed it on the spot and nothing was recorded.)
fn sigint_and_sigterm_stop_after_the_customer_in_progress(engine: Engine) {
    let env = synced(engine, &aggregate_plans());
    // Slow answers: the signal comes while the first customer's summary is in flight.
    env.server.set_delay(std::time::Duration::from_millis(400));
    for signal in ["-INT", "-TERM"] {
        // After the meter list and the first summary (so the handlers are installed).
        let output = env.signal_after_requests(&["reconcile", "--json", "--grace", "0"], 2, signal);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{signal}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains("cancelled; 2 customers not compared"),
            "{signal}: {}",
            stderr(&output)
        );
        let compared = rows(&output);
        assert_eq!(compared.len(), 1, "{signal}: {compared:?}");
        assert_eq!(compared[0]["status"], "ok");
        let last = env.store().last_reconcile().unwrap().unwrap();
        assert_eq!(last.rows, 1, "{signal}");
    }
    env.server.set_delay(std::time::Duration::ZERO);
    let all = env.run(&["reconcile", "--json", "--grace", "0"], &[]);
    assert_eq!(all.status.code(), Some(0), "{}", stderr(&all));
    assert_eq!(rows(&all).len(), 3);
}

/// A Stripe (or a proxy in front of it) whose lists never end: `has_more` with the same page
/// again. reconcile stops with an error instead of asking forever (it looped before).
fn a_list_that_never_advances_is_an_error_not_an_endless_loop(engine: Engine) {
    let env = synced(engine, &aggregate_plans());
    env.server.set_stuck_pages();
    let reads = env.server.requests();
    let output = env.run_bounded(&["reconcile", "--grace", "0"], &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("Stripe's list of meters does not advance"),
        "{}",
        stderr(&output)
    );
    assert!(env.server.requests() - reads < 10);
    assert!(
        env.store().last_reconcile().unwrap().is_none(),
        "a run was recorded"
    );
}
