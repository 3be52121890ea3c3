//! Several meters to Stripe, through the real binary and the fake Stripe over loopback HTTP:
//! each meter to its own Stripe meter, sum and count as sum deltas (one report per group_by
//! group, its values as payload dimensions), unique_count, latest and max as their current
//! value to a `last` meter; a later sync sends only what is new; kill -9 mid-sync and a rerun
//! count nothing twice; reconcile agrees on every meter; doctor flags a wrong formula.

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::time::Duration;

use meterline::store::{NewCustomer, NewGrant};
use meterline::{Config, RecordRequest, Store};

use crate::support::engine::{Engine, engine_tests};
use crate::support::fake_stripe::Accepted;
use crate::support::stripe::{Env, json, now, stderr, stdout};

engine_tests!(
    each_meter_reports_its_delta_or_its_current_value_and_reconcile_agrees,
    per_event_mode_sends_sum_and_count_events_alone_and_the_others_as_reports,
    doctor_and_reconcile_flag_a_stripe_meter_with_the_wrong_formula,
    kill_9_mid_sync_then_resync_counts_nothing_twice_on_any_meter,
    usage_from_before_meters_still_reports_to_the_plans_meter_event,
    the_dry_run_shows_the_value_each_meter_sends_and_no_total_across_meters,
    each_model_reports_to_its_own_stripe_meter_once_and_reconcile_and_doctor_name_each,
    per_event_mode_sends_each_event_to_its_models_stripe_meter,
    a_group_without_a_valid_name_is_held_with_its_reason_and_sent_nowhere,
    kill_9_mid_sync_then_resync_counts_no_model_twice,
    one_event_of_a_type_reports_to_each_meters_stripe_meter_once,
    billable_units_report_only_what_neither_included_nor_credits_covered,
);

/// The fake Stripe's settings every plans.toml of this file starts with: a few fast workers
/// and attempts, no rate limit.
macro_rules! stripe_settings {
    () => {
        r#"
[stripe]
api_base = "https://api.stripe.com"
rate_limit = 0
workers = 4
timeout_secs = 1
max_attempts = 4
"#
    };
}

/// An AI API: requests counted, tokens summed by model, active users, seats as the latest
/// value, peak concurrency as the max.
const PLANS: &str = concat!(
    stripe_settings!(),
    r#"
[[meters]]
id = "requests"
aggregation = "count"

[[meters]]
id = "tokens"
aggregation = "sum"
property = "tokens"
group_by = ["model"]
stripe_event = "ai_tokens"

[[meters]]
id = "users"
aggregation = "unique_count"
property = "user"

[[meters]]
id = "seats"
aggregation = "latest"
property = "seats"

[[meters]]
id = "peak"
aggregation = "max"
property = "concurrency"

[[plans]]
id = "free"
[plans.meters.tokens]
included = 1000000
at_limit = "overage"
overage_rate = "0.001"
"#
);

/// The Stripe meters PLANS needs: (event name, formula).
const STRIPE_METERS: [(&str, &str); 5] = [
    ("requests", "sum"),
    ("ai_tokens", "sum"),
    ("users", "last"),
    ("seats", "last"),
    ("peak", "last"),
];

/// The fake Stripe with every meter PLANS needs, and `customers` mapped customers whose
/// period began 10 days ago (every event of these tests is in their current period).
fn env(engine: Engine, plans: &str, customers: &[(&str, &str)]) -> Env {
    with_meters(engine, plans, &STRIPE_METERS, customers)
}

/// `env` with these Stripe meters.
fn with_meters(
    engine: Engine,
    plans: &str,
    meters: &[(&str, &str)],
    customers: &[(&str, &str)],
) -> Env {
    let env = Env::on(engine, plans);
    for (event, formula) in meters {
        env.server.add_meter_with(event, formula);
    }
    let config = env.config();
    let mut store = env.store();
    for (id, stripe) in customers {
        store
            .add_customer(
                &config,
                &NewCustomer {
                    id: id.to_string(),
                    name: None,
                    plan_id: "free".into(),
                    stripe_customer_id: Some(stripe.to_string()),
                    billing_anchor: Some((now() - chrono::Duration::days(10)).date_naive()),
                },
                now() - chrono::Duration::days(10),
            )
            .unwrap();
    }
    env
}

/// One event on `meter` with `properties`, `minutes_ago` before the tests' now.
fn record(
    store: &mut Store,
    config: &Config,
    customer: &str,
    meter: &str,
    properties: &[(&str, &str)],
    minutes_ago: i64,
) {
    let mut request =
        RecordRequest::new(customer, 1, now() - chrono::Duration::minutes(minutes_ago));
    request.meter = Some(meter.into());
    request.properties = properties
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let outcome = store.record(config, &request, now()).unwrap();
    assert!(outcome.recorded, "{meter} {properties:?} refused");
}

/// What the fake Stripe accepted, in order of arrival, from `after` on.
fn sent(env: &Env, after: usize) -> Vec<Accepted> {
    let accepted = env.server.accepted();
    env.server.arrivals()[after..]
        .iter()
        .map(|id| accepted[id].clone())
        .collect()
}

/// The meter events of one event name, as (dimensions, value), sorted.
fn of(events: &[Accepted], name: &str) -> Vec<(BTreeMap<String, String>, i64)> {
    let mut found: Vec<_> = events
        .iter()
        .filter(|e| e.event_name == name)
        .map(|e| (e.dimensions.clone(), e.value))
        .collect();
    found.sort();
    found
}

fn model(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("model".to_string(), name.to_string())])
}

fn reconcile_rows(env: &Env) -> Vec<serde_json::Value> {
    let output = env.run(&["reconcile", "--json", "--grace", "0"], &[]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        stdout(&output) + &stderr(&output)
    );
    json(&output).as_array().unwrap().clone()
}

fn sync(env: &Env) -> serde_json::Value {
    let output = env.run(&["sync", "--json"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    json(&output)
}

fn each_meter_reports_its_delta_or_its_current_value_and_reconcile_agrees(engine: Engine) {
    let env = env(engine, PLANS, &[("acme", "cus_Acme0001")]);
    let config = env.config();
    let mut store = env.store();
    let r = |store: &mut Store, meter: &str, props: &[(&str, &str)], ago: i64| {
        record(store, &config, "acme", meter, props, ago)
    };
    for ago in [50, 49, 48] {
        r(&mut store, "requests", &[], ago);
    }
    for (tokens, model) in [
        ("600", Some("small")),
        ("300", Some("large")),
        ("400", Some("small")),
        ("5", None),
    ] {
        let mut props = vec![("tokens", tokens)];
        props.extend(model.map(|m| ("model", m)));
        r(&mut store, "tokens", &props, 47);
    }
    for user in ["ann", "bob", "ann"] {
        r(&mut store, "users", &[("user", user)], 46);
    }
    // latest by event time: the 30-minutes-ago event comes in late.
    r(&mut store, "seats", &[("seats", "4")], 20);
    r(&mut store, "seats", &[("seats", "6")], 30);
    for value in ["3", "7", "5"] {
        r(&mut store, "peak", &[("concurrency", value)], 45);
    }

    let first = sync(&env);
    assert_eq!(
        (first["accepted"].clone(), first["events_reported"].clone()),
        (7.into(), 15.into()),
        "{first}"
    );
    let round1 = sent(&env, 0);
    let none = BTreeMap::new;
    assert_eq!(of(&round1, "requests"), [(none(), 3)]);
    assert_eq!(
        of(&round1, "ai_tokens"),
        [(none(), 5), (model("large"), 300), (model("small"), 1000)],
        "one report per group, its model as a dimension; none without one"
    );
    assert_eq!(of(&round1, "users"), [(none(), 2)]);
    assert_eq!(of(&round1, "seats"), [(none(), 4)]);
    assert_eq!(of(&round1, "peak"), [(none(), 7)]);
    assert!(round1.iter().all(|e| e.customer == "cus_Acme0001"));

    // More usage: a sum meter sends only its new amounts, a last meter its new value, dated
    // after its earlier report even when the event that changed it is older (peak 9 came
    // late; the late seats event changes nothing, seats 7 is the newest).
    for ago in [10, 9] {
        r(&mut store, "requests", &[], ago);
    }
    r(
        &mut store,
        "tokens",
        &[("tokens", "50"), ("model", "small")],
        8,
    );
    r(&mut store, "users", &[("user", "cat")], 7);
    r(&mut store, "users", &[("user", "ann")], 7);
    r(&mut store, "seats", &[("seats", "7")], 5);
    r(&mut store, "seats", &[("seats", "1")], 45);
    r(&mut store, "peak", &[("concurrency", "9")], 40);
    let second = sync(&env);
    assert_eq!(second["accepted"], 5, "{second}");
    let round2 = sent(&env, round1.len());
    assert_eq!(of(&round2, "requests"), [(none(), 2)]);
    assert_eq!(of(&round2, "ai_tokens"), [(model("small"), 50)]);
    assert_eq!(of(&round2, "users"), [(none(), 3)]);
    assert_eq!(of(&round2, "seats"), [(none(), 7)]);
    assert_eq!(of(&round2, "peak"), [(none(), 9)]);
    for name in ["users", "seats", "peak"] {
        let at = |events: &[Accepted]| {
            events
                .iter()
                .find(|e| e.event_name == name)
                .unwrap()
                .timestamp
        };
        assert!(
            at(&round2) > at(&round1),
            "{name}: the new value is the later one"
        );
    }
    // Nothing new: nothing sent.
    assert_eq!(sync(&env)["attempted"], 0);

    let rows = reconcile_rows(&env);
    let by_meter: HashMap<&str, &serde_json::Value> = rows
        .iter()
        .map(|r| (r["meter"].as_str().unwrap(), r))
        .collect();
    assert_eq!(rows.len(), 5, "{rows:?}");
    for (meter, event, local) in [
        ("requests", "requests", 5),
        ("tokens", "ai_tokens", 1355),
        ("users", "users", 3),
        ("seats", "seats", 7),
        ("peak", "peak", 9),
    ] {
        let row = by_meter[meter];
        assert_eq!(
            (
                row["meter_event"].as_str(),
                row["local"].as_i64(),
                row["stripe"].as_i64(),
                row["drift"].as_i64(),
                row["status"].as_str()
            ),
            (Some(event), Some(local), Some(local), Some(0), Some("ok")),
            "{row}"
        );
    }
    // A value Stripe lost is drift on that meter alone.
    let newest_seats = env
        .server
        .arrivals()
        .into_iter()
        .rev()
        .find(|id| env.server.accepted()[id].event_name == "seats")
        .unwrap();
    env.server.forget(&newest_seats);
    let output = env.run(&["reconcile", "--json", "--grace", "0"], &[]);
    assert_eq!(output.status.code(), Some(1));
    let drifted: Vec<_> = json(&output)
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "drift")
        .map(|r| (r["meter"].clone(), r["local"].clone(), r["stripe"].clone()))
        .collect();
    assert_eq!(drifted, [("seats".into(), 7.into(), 4.into())]);
}

fn per_event_mode_sends_sum_and_count_events_alone_and_the_others_as_reports(engine: Engine) {
    let plans = PLANS.replace("[stripe]\n", "[stripe]\nreport = \"per_event\"\n");
    let env = env(engine, &plans, &[("acme", "cus_Acme0001")]);
    let config = env.config();
    let mut store = env.store();
    record(&mut store, &config, "acme", "requests", &[], 30);
    record(&mut store, &config, "acme", "requests", &[], 29);
    record(
        &mut store,
        &config,
        "acme",
        "tokens",
        &[("tokens", "10"), ("model", "small")],
        28,
    );
    record(
        &mut store,
        &config,
        "acme",
        "tokens",
        &[("tokens", "20"), ("model", "large")],
        27,
    );
    record(&mut store, &config, "acme", "users", &[("user", "ann")], 26);
    record(&mut store, &config, "acme", "users", &[("user", "bob")], 25);
    record(&mut store, &config, "acme", "seats", &[("seats", "3")], 24);
    let preview = json(&env.run(&["sync", "--dry-run", "--json"], &[]));
    assert_eq!(
        (preview["requests"].clone(), preview["events"].clone()),
        (6.into(), 7.into()),
        "{preview}"
    );
    let report = sync(&env);
    assert_eq!(report["accepted"], 6, "{report}");
    let events = sent(&env, 0);
    let none = BTreeMap::new;
    assert_eq!(of(&events, "requests"), [(none(), 1), (none(), 1)]);
    assert_eq!(
        of(&events, "ai_tokens"),
        [(model("large"), 20), (model("small"), 10)]
    );
    assert_eq!(of(&events, "users"), [(none(), 2)]);
    assert_eq!(of(&events, "seats"), [(none(), 3)]);
    // The events sent one by one went under their own identifiers; the others as reports.
    let own = env.inspect().number(
        "SELECT COUNT(*) FROM usage_events WHERE meter_id IN ('requests', 'tokens')
         AND stripe_report_id IS NULL AND stripe_reported_at IS NOT NULL",
    );
    assert_eq!(own, 4);
    let reports: Vec<(String, String)> = env
        .inspect()
        .rows("SELECT meter_id, formula FROM stripe_reports ORDER BY meter_id")
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    assert_eq!(
        reports,
        [
            ("seats".into(), "last".into()),
            ("users".into(), "last".into())
        ]
    );
    assert!(
        reconcile_rows(&env)
            .iter()
            .all(|r| r["drift"] == 0 && r["status"] == "ok")
    );
}

fn doctor_and_reconcile_flag_a_stripe_meter_with_the_wrong_formula(engine: Engine) {
    // unique_count needs last (a sum meter would add the counts up); seats has none.
    let meters: Vec<(&str, &str)> = STRIPE_METERS
        .iter()
        .filter(|(event, _)| *event != "seats")
        .map(|&(event, formula)| (event, if event == "users" { "sum" } else { formula }))
        .collect();
    let env = with_meters(engine, PLANS, &meters, &[("acme", "cus_Acme0001")]);
    let output = env.run(&["doctor", "--json"], &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let findings = json(&output);
    let meters: Vec<String> = findings
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "meters" && f["verdict"] == "problem")
        .map(|f| {
            format!(
                "{} / fix: {}",
                f["detail"].as_str().unwrap(),
                f["fix"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(meters.len(), 2, "{meters:?}");
    assert!(
        meters
            .iter()
            .any(|m| m.contains("no active meter")
                && m.contains("meter \"seats\" reports to \"seats\"")),
        "{meters:?}"
    );
    let wrong = "meter \"users\" needs Stripe's meter \"users\" to aggregate by last; it \
                 aggregates by sum";
    assert!(
        meters
            .iter()
            .any(|m| m.contains(wrong) && m.contains("default_aggregation.formula = last")),
        "{meters:?}"
    );
    // reconcile refuses to compare against a meter that aggregates otherwise (exit 2).
    env.server.add_meter_with("seats", "last");
    let refused = env.run(&["reconcile"], &[]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("aggregates by sum"),
        "{}",
        stderr(&refused)
    );

    // Set up right: one line says so, with each meter's formula.
    let right = self::env(engine, PLANS, &[]);
    let output = right.run(&["doctor"], &[]);
    let text = stdout(&output);
    let fine = "Stripe has an active meter for every meter, each aggregating as it needs: \
                requests (sum), ai_tokens (sum), users (last), seats (last), peak (last)";
    assert!(text.contains(fine), "{text}");
}

/// Random kill -9s mid-sync over many customers and every kind of meter, with new usage
/// between the runs; then one clean run. Per customer and Stripe meter: a sum meter's total
/// is exactly the usage recorded, a last meter's value the meter's current value; every
/// accepted identifier is a report marked reported with that value; reconcile agrees.
fn kill_9_mid_sync_then_resync_counts_nothing_twice_on_any_meter(engine: Engine) {
    const CUSTOMERS: usize = 30;
    let ids: Vec<(String, String)> = (0..CUSTOMERS)
        .map(|i| (format!("m{i:02}"), format!("cus_Meter{i:04}")))
        .collect();
    let refs: Vec<(&str, &str)> = ids.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let env = env(engine, PLANS, &refs);
    let config = env.config();
    let traffic = |store: &mut Store, round: usize| {
        for (i, (customer, _)) in ids
            .iter()
            .enumerate()
            .skip(round % 3)
            .step_by(1 + round % 3)
        {
            let ago = 50 - round as i64 * 5;
            let n = (i + round) as i64;
            record(store, &config, customer, "requests", &[], ago);
            let tokens = (10 + n).to_string();
            let model = ["small", "large"][(i + round) % 2];
            record(
                store,
                &config,
                customer,
                "tokens",
                &[("tokens", &tokens), ("model", model)],
                ago,
            );
            let user = format!("u{}", n % 4);
            record(store, &config, customer, "users", &[("user", &user)], ago);
            let seats = (n % 9).to_string();
            // Sometimes late: an older time than the newest seats event.
            record(
                store,
                &config,
                customer,
                "seats",
                &[("seats", &seats)],
                ago + (n % 2) * 30,
            );
            let peak = (n * 7 % 11).to_string();
            record(
                store,
                &config,
                customer,
                "peak",
                &[("concurrency", &peak)],
                ago + 20,
            );
        }
    };
    traffic(&mut env.store(), 0);
    env.server.set_delay(Duration::from_millis(20));
    let mut killed_mid_run = 0;
    for round in 1..6 {
        let mut child = env
            .std_command(&["sync", "--json"], &[])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let wait = if round == 1 { 5..60 } else { 50..800 };
        std::thread::sleep(Duration::from_millis(fastrand::u64(wait)));
        child.kill().unwrap(); // SIGKILL: no cleanup of any kind
        let output = child.wait_with_output().unwrap();
        crate::support::stripe::assert_no_key(&output);
        if !output.status.success() {
            killed_mid_run += 1;
        }
        traffic(&mut env.store(), round);
    }
    assert!(killed_mid_run > 0, "every kill came after the run finished");
    env.server.set_delay(Duration::ZERO);
    let last = sync(&env);
    assert_eq!(last["remaining"], 0, "{last}");

    let db = env.inspect();
    let stripe_of: HashMap<String, String> = ids.iter().cloned().collect();
    let event_of = |meter: &str| {
        if meter == "tokens" {
            "ai_tokens".to_string()
        } else {
            meter.to_string()
        }
    };
    // What Stripe should hold: sums of amounts, and the meters' current values.
    let mut expected: HashMap<(String, String), i64> = HashMap::new();
    for row in db.rows(
        "SELECT customer_id, meter_id, CAST(SUM(COALESCE(amount, quantity)) AS BIGINT)
         FROM usage_events WHERE meter_id IN ('requests', 'tokens') GROUP BY 1, 2",
    ) {
        let (customer, meter, sum) = (&row[0], &row[1], row[2].parse().unwrap());
        expected.insert((stripe_of[customer].clone(), event_of(meter)), sum);
    }
    for row in db.rows(
        "SELECT customer_id, meter_id, used FROM meter_counters
         WHERE meter_id IN ('users', 'seats', 'peak') AND group_key = ''",
    ) {
        let (customer, meter, used) = (&row[0], &row[1], row[2].parse().unwrap());
        expected.insert((stripe_of[customer].clone(), meter.clone()), used);
    }
    let reports: HashMap<String, (i64, String)> = db
        .rows("SELECT identifier, value, reported_at FROM stripe_reports")
        .into_iter()
        .map(|r| (r[0].clone(), (r[1].parse().unwrap(), r[2].clone())))
        .collect();
    let accepted = env.server.accepted();
    let mut got: HashMap<(String, String), i64> = HashMap::new();
    let mut newest: HashMap<(String, String), (i64, u64, i64)> = HashMap::new();
    for (identifier, event) in &accepted {
        let key = (event.customer.clone(), event.event_name.clone());
        if ["requests", "ai_tokens"].contains(&event.event_name.as_str()) {
            *got.entry(key).or_default() += event.value;
        } else {
            let candidate = (event.timestamp, event.seq, event.value);
            let slot = newest.entry(key).or_insert(candidate);
            *slot = (*slot).max(candidate);
        }
        let (value, reported) = reports
            .get(identifier)
            .unwrap_or_else(|| panic!("accepted {identifier} is no report"));
        assert_eq!(*value, event.value, "{identifier}");
        assert!(!reported.is_empty(), "{identifier} accepted but not marked");
    }
    got.extend(newest.into_iter().map(|(k, (_, _, v))| (k, v)));
    assert_eq!(got, expected, "Stripe's figures vs the meters");
    let reported = db.number("SELECT COUNT(*) FROM stripe_reports WHERE reported_at IS NOT NULL");
    assert_eq!(reported as usize, accepted.len());
    // No event was in two reports: a sum report's value is its own events' amounts.
    let mismatched = db.number(
        "SELECT COUNT(*) FROM stripe_reports s WHERE s.formula = 'sum' AND s.value !=
             (SELECT SUM(COALESCE(amount, quantity)) FROM usage_events
              WHERE stripe_report_id = s.id)",
    );
    assert_eq!(mismatched, 0);
    assert_eq!(env.server.max_in_flight_per_key(), 1);
    let rows = reconcile_rows(&env);
    assert_eq!(rows.len(), CUSTOMERS * 5);
    assert!(rows.iter().all(|r| r["status"] == "ok"), "{rows:?}");
    // Timestamps of a meter's last reports only go forward.
    let backwards = db.number(
        "SELECT COUNT(*) FROM stripe_reports a JOIN stripe_reports b
             ON a.customer_id = b.customer_id AND a.meter_id = b.meter_id
            AND a.period_start = b.period_start AND b.id > a.id
         WHERE a.formula = 'last' AND b.occurred_at <= a.occurred_at",
    );
    assert_eq!(backwards, 0);
}

/// Usage counted before plans.toml had `[[meters]]` still goes out as it always did: to the
/// period's meter event (the plan's `meter_event`), beside the new meters' own; reconcile
/// compares it too.
fn usage_from_before_meters_still_reports_to_the_plans_meter_event(engine: Engine) {
    let old_plans = "[stripe]\napi_base = \"https://api.stripe.com\"\nrate_limit = 0\n\
                     [[plans]]\nid = \"free\"\n";
    let env = with_meters(
        engine,
        old_plans,
        &[("meterline_usage", "sum"), ("requests", "sum")],
        &[("acme", "cus_Acme0001")],
    );
    let mut store = env.store();
    for (quantity, ago) in [(5, 30), (7, 29)] {
        let request = RecordRequest::new("acme", quantity, now() - chrono::Duration::minutes(ago));
        assert!(
            store
                .record(&env.config(), &request, now())
                .unwrap()
                .recorded
        );
    }
    std::fs::write(
        &env.plans,
        format!("{old_plans}\n[[meters]]\nid = \"requests\"\naggregation = \"count\"\n"),
    )
    .unwrap();
    record(&mut store, &env.config(), "acme", "requests", &[], 20);
    sync(&env);
    let events = sent(&env, 0);
    assert_eq!(of(&events, "meterline_usage"), [(BTreeMap::new(), 12)]);
    assert_eq!(of(&events, "requests"), [(BTreeMap::new(), 1)]);
    let rows = reconcile_rows(&env);
    let meters: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r["meter"].clone(),
                r["meter_event"].clone(),
                r["drift"].clone(),
            )
        })
        .collect();
    assert_eq!(
        meters,
        [
            ("requests".into(), "requests".into(), 0.into()),
            ("usage".into(), "meterline_usage".into(), 0.into())
        ]
    );
}

/// `sync --dry-run` per customer and meter shows what the sync then sends: a max, latest or
/// unique_count meter's value, not the sum of its events (it showed 15 for a peak of 7), and
/// it adds no units across meters (requests, tokens and users are not one number).
fn the_dry_run_shows_the_value_each_meter_sends_and_no_total_across_meters(engine: Engine) {
    let env = env(engine, PLANS, &[("acme", "cus_Acme0001")]);
    let config = env.config();
    let mut store = env.store();
    let r = |store: &mut Store, meter: &str, props: &[(&str, &str)], ago: i64| {
        record(store, &config, "acme", meter, props, ago)
    };
    r(&mut store, "requests", &[], 50);
    r(
        &mut store,
        "tokens",
        &[("tokens", "1200"), ("model", "small")],
        49,
    );
    for user in ["ann", "bob", "ann"] {
        r(&mut store, "users", &[("user", user)], 46);
    }
    r(&mut store, "seats", &[("seats", "4")], 20);
    r(&mut store, "seats", &[("seats", "6")], 30);
    for value in ["3", "7", "5"] {
        r(&mut store, "peak", &[("concurrency", value)], 45);
    }
    let text = stdout(&env.run(&["sync", "--dry-run"], &[]));
    let units = |event: &str| -> String {
        let line = text
            .lines()
            .find(|l| l.starts_with("acme") && l.split_whitespace().nth(2) == Some(event));
        let line = line.unwrap_or_else(|| panic!("no {event} line in:\n{text}"));
        line.split_whitespace().nth(4).unwrap().to_string()
    };
    let shown: Vec<String> = ["requests", "ai_tokens", "users", "seats", "peak"]
        .into_iter()
        .map(units)
        .collect();
    assert_eq!(shown, ["1", "1,200", "2", "4", "7"], "{text}");
    assert!(text.contains("would send 5 reports (10 events)"), "{text}");
    assert!(
        text.contains("units by meter: peak 7 · requests 1 · seats 4 · tokens 1,200 · users 2"),
        "{text}"
    );
    // What the sync then sends.
    sync(&env);
    let round = sent(&env, 0);
    let none = BTreeMap::new;
    assert_eq!(of(&round, "peak"), [(none(), 7)]);
    assert_eq!(of(&round, "seats"), [(none(), 4)]);
    assert_eq!(of(&round, "users"), [(none(), 2)]);
}

/// Prices per model (docs/sync.md): tokens by model, each model to its own Stripe meter.
const PER_MODEL: &str = concat!(
    stripe_settings!(),
    r#"
[[meters]]
id = "requests"
aggregation = "count"

[[meters]]
id = "tokens"
aggregation = "sum"
property = "tokens"
group_by = ["model"]
stripe_event = "tokens_{model}"

[[plans]]
id = "free"
"#
);

const PER_MODEL_METERS: [(&str, &str); 3] = [
    ("requests", "sum"),
    ("tokens_small", "sum"),
    ("tokens_large", "sum"),
];

fn tokens(store: &mut Store, config: &Config, customer: &str, n: &str, model: &str, ago: i64) {
    record(
        store,
        config,
        customer,
        "tokens",
        &[("tokens", n), ("model", model)],
        ago,
    );
}

/// The meters check of `doctor --json`: (verdict, detail and fix).
fn doctor_meters(env: &Env) -> Vec<(String, String)> {
    let output = env.run(&["doctor", "--json"], &[]);
    json(&output)
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "meters")
        .map(|f| {
            (
                f["verdict"].as_str().unwrap().to_string(),
                format!("{} / {}", f["detail"].as_str().unwrap(), f["fix"]),
            )
        })
        .collect()
}

fn each_model_reports_to_its_own_stripe_meter_once_and_reconcile_and_doctor_name_each(
    engine: Engine,
) {
    let env = with_meters(
        engine,
        PER_MODEL,
        &PER_MODEL_METERS,
        &[("acme", "cus_Acme0001")],
    );
    // Before any token is counted, doctor says the pattern has no group yet.
    let fresh = doctor_meters(&env);
    assert!(
        fresh.iter().any(|(verdict, text)| verdict == "ok"
            && text.contains("tokens_{model} (sum; no group counted yet)")),
        "{fresh:?}"
    );
    let config = env.config();
    let mut store = env.store();
    record(&mut store, &config, "acme", "requests", &[], 50);
    tokens(&mut store, &config, "acme", "600", "small", 49);
    tokens(&mut store, &config, "acme", "300", "large", 48);
    tokens(&mut store, &config, "acme", "400", "small", 47);
    let first = sync(&env);
    assert_eq!(first["accepted"], 3, "{first}");
    let round1 = sent(&env, 0);
    assert_eq!(of(&round1, "tokens_small"), [(model("small"), 1000)]);
    assert_eq!(of(&round1, "tokens_large"), [(model("large"), 300)]);
    assert!(of(&round1, "tokens_{model}").is_empty());
    // Only what is new goes out, each model to its own meter; nothing twice.
    tokens(&mut store, &config, "acme", "50", "large", 10);
    let second = sync(&env);
    assert_eq!(second["accepted"], 1, "{second}");
    assert_eq!(
        of(&sent(&env, round1.len()), "tokens_large"),
        [(model("large"), 50)]
    );
    assert_eq!(sync(&env)["attempted"], 0);

    // reconcile compares each model's Stripe meter with what was reported to it.
    let rows = reconcile_rows(&env);
    let compared: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r["meter"].as_str().unwrap().to_string(),
                r["meter_event"].as_str().unwrap().to_string(),
                r["local"].as_i64().unwrap(),
                r["stripe"].as_i64().unwrap(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let row = |meter: &str, event: &str, n: i64| {
        (meter.to_string(), event.to_string(), n, n, "ok".to_string())
    };
    assert_eq!(
        compared,
        [
            row("requests", "requests", 1),
            row("tokens", "tokens_large", 350),
            row("tokens", "tokens_small", 1000),
        ]
    );
    // A meter event Stripe lost is drift on that model's meter alone.
    let lost = env
        .server
        .arrivals()
        .into_iter()
        .rev()
        .find(|id| env.server.accepted()[id].event_name == "tokens_large")
        .unwrap();
    env.server.forget(&lost);
    let output = env.run(&["reconcile", "--json", "--grace", "0"], &[]);
    assert_eq!(output.status.code(), Some(1));
    let drifted: Vec<_> = json(&output)
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "drift")
        .map(|r| {
            (
                r["meter_event"].clone(),
                r["local"].clone(),
                r["stripe"].clone(),
            )
        })
        .collect();
    assert_eq!(drifted, [("tokens_large".into(), 350.into(), 300.into())]);

    // doctor names each model's Stripe meter, and the pattern it comes from.
    let fine = doctor_meters(&env);
    assert!(
        fine.iter().any(|(verdict, text)| verdict == "ok"
            && text.contains(
                "requests (sum), tokens_large (sum, from tokens_{model}), \
                 tokens_small (sum, from tokens_{model})"
            )),
        "{fine:?}"
    );
    // A model whose Stripe meter is missing is named.
    let missing = with_meters(
        engine,
        PER_MODEL,
        &[("requests", "sum"), ("tokens_small", "sum")],
        &[("acme", "cus_Acme0001")],
    );
    let mut store = missing.store();
    tokens(&mut store, &missing.config(), "acme", "5", "small", 30);
    tokens(&mut store, &missing.config(), "acme", "7", "large", 30);
    let problems = doctor_meters(&missing);
    assert!(
        problems.iter().any(|(verdict, text)| verdict == "problem"
            && text.contains(
                "no active meter for: meter \"tokens\" reports to \"tokens_large\" \
                 (stripe_event \"tokens_{model}\")"
            )),
        "{problems:?}"
    );
    let refused = missing.run(&["reconcile"], &[]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("\"tokens_large\""),
        "{}",
        stderr(&refused)
    );
}

fn per_event_mode_sends_each_event_to_its_models_stripe_meter(engine: Engine) {
    let plans = PER_MODEL.replace("[stripe]\n", "[stripe]\nreport = \"per_event\"\n");
    let env = with_meters(
        engine,
        &plans,
        &PER_MODEL_METERS,
        &[("acme", "cus_Acme0001")],
    );
    let config = env.config();
    let mut store = env.store();
    tokens(&mut store, &config, "acme", "10", "small", 30);
    tokens(&mut store, &config, "acme", "20", "large", 29);
    tokens(&mut store, &config, "acme", "30", "small", 28);
    assert_eq!(sync(&env)["accepted"], 3);
    let events = sent(&env, 0);
    assert_eq!(
        of(&events, "tokens_small"),
        [(model("small"), 10), (model("small"), 30)]
    );
    assert_eq!(of(&events, "tokens_large"), [(model("large"), 20)]);
    assert_eq!(sync(&env)["attempted"], 0);
    let rows = reconcile_rows(&env);
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows.iter().all(|r| r["status"] == "ok"), "{rows:?}");
}

/// A token event without a model, or with a model that makes no Stripe event name, is held:
/// failed with its reason (status and doctor count it), sent to no Stripe meter; the other
/// models go out as usual.
fn a_group_without_a_valid_name_is_held_with_its_reason_and_sent_nowhere(engine: Engine) {
    let env = with_meters(
        engine,
        PER_MODEL,
        &PER_MODEL_METERS,
        &[("acme", "cus_Acme0001")],
    );
    let config = env.config();
    let mut store = env.store();
    tokens(&mut store, &config, "acme", "10", "small", 30);
    tokens(&mut store, &config, "acme", "20", "gpt 4", 29);
    record(
        &mut store,
        &config,
        "acme",
        "tokens",
        &[("tokens", "5")],
        28,
    );
    // Not all delivered: exit 1, as for any refused event.
    let output = env.run(&["sync", "--json"], &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report = json(&output);
    assert_eq!(
        (report["accepted"].clone(), report["failed"].clone()),
        (1.into(), 2.into()),
        "{report}"
    );
    let names: Vec<String> = sent(&env, 0).into_iter().map(|e| e.event_name).collect();
    assert_eq!(names, ["tokens_small"]);
    let errors = env.inspect().rows(
        "SELECT stripe_error FROM usage_events WHERE meter_id = 'tokens'
         AND stripe_reported_at IS NULL ORDER BY amount",
    );
    let errors: Vec<&str> = errors.iter().map(|r| r[0].as_str()).collect();
    assert!(
        errors[0].contains("held, not sent: \"tokens_{model}\" is no Stripe event name")
            && errors[0].contains("no value for a placeholder"),
        "{errors:?}"
    );
    assert!(
        errors[1].contains("\"tokens_gpt 4\" is no Stripe event name"),
        "{errors:?}"
    );
    let status = stdout(&env.run(&["status"], &[]));
    assert!(status.contains("(2 failed"), "{status}");
    let problems = doctor_meters(&env);
    assert!(
        problems.iter().any(|(verdict, text)| verdict == "problem"
            && text.contains(
                "a group makes \"tokens_gpt 4\" (stripe_event \"tokens_{model}\"), \
                              which is no Stripe event name"
            )),
        "{problems:?}"
    );
    // reconcile compares the models that report, and is not stopped by the held ones.
    let rows = reconcile_rows(&env);
    let events: Vec<&str> = rows
        .iter()
        .map(|r| r["meter_event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["requests", "tokens_small"]);
    // A retry holds them again: nothing goes out.
    let retried = env.run(&["sync", "--json", "--retry-failed"], &[]);
    assert_eq!(json(&retried)["accepted"], 0, "{}", stdout(&retried));
    assert_eq!(env.server.accepted_count(), 1);
}

/// kill -9 mid-sync over many customers and two models, new usage between the runs, then a
/// clean run: Stripe's total per customer and model is exactly the tokens recorded.
fn kill_9_mid_sync_then_resync_counts_no_model_twice(engine: Engine) {
    const CUSTOMERS: usize = 20;
    let ids: Vec<(String, String)> = (0..CUSTOMERS)
        .map(|i| (format!("p{i:02}"), format!("cus_Model{i:04}")))
        .collect();
    let refs: Vec<(&str, &str)> = ids.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let env = with_meters(engine, PER_MODEL, &PER_MODEL_METERS, &refs);
    let config = env.config();
    let traffic = |store: &mut Store, round: usize| {
        for (i, (customer, _)) in ids.iter().enumerate() {
            let model = ["small", "large"][(i + round) % 2];
            let n = (10 + i + round).to_string();
            tokens(store, &config, customer, &n, model, 50 - round as i64 * 5);
        }
    };
    traffic(&mut env.store(), 0);
    // Slow enough that the run outlasts the latest kill (400 ms): 20 ms let a fast run end
    // first, and a test whose every kill came late proves nothing (it failed so, now and then).
    env.server.set_delay(Duration::from_millis(100));
    let mut killed_mid_run = 0;
    for round in 1..5 {
        let mut child = env
            .std_command(&["sync", "--json"], &[])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(fastrand::u64(20..400)));
        child.kill().unwrap(); // SIGKILL: no cleanup of any kind
        if !child.wait_with_output().unwrap().status.success() {
            killed_mid_run += 1;
        }
        traffic(&mut env.store(), round);
    }
    assert!(killed_mid_run > 0, "every kill came after the run finished");
    env.server.set_delay(Duration::ZERO);
    assert_eq!(sync(&env)["remaining"], 0);

    let stripe_of: HashMap<String, String> = ids.iter().cloned().collect();
    let mut expected: HashMap<(String, String), i64> = HashMap::new();
    for row in env
        .inspect()
        .rows("SELECT customer_id, properties, amount FROM usage_events WHERE meter_id = 'tokens'")
    {
        let properties: serde_json::Value = serde_json::from_str(&row[1]).unwrap();
        let name = format!("tokens_{}", properties["model"].as_str().unwrap());
        *expected
            .entry((stripe_of[&row[0]].clone(), name))
            .or_default() += row[2].parse::<i64>().unwrap();
    }
    let mut got: HashMap<(String, String), i64> = HashMap::new();
    for event in env.server.accepted().values() {
        *got.entry((event.customer.clone(), event.event_name.clone()))
            .or_default() += event.value;
    }
    assert_eq!(got, expected, "Stripe's totals per customer and model");
    let rows = reconcile_rows(&env);
    assert!(rows.iter().all(|r| r["status"] == "ok"), "{rows:?}");
    // Each customer: requests, and each model.
    assert_eq!(rows.len(), CUSTOMERS * 3);
}

/// tests/fixtures/plans/ai_types.toml with the fake Stripe's settings: one `completion`
/// event feeds requests, tokens by model (`tokens_{model}`) and active_users.
const TYPED: &str = concat!(
    stripe_settings!(),
    include_str!("../fixtures/plans/ai_types.toml")
);

fn one_event_of_a_type_reports_to_each_meters_stripe_meter_once(engine: Engine) {
    let env = with_meters(
        engine,
        TYPED,
        &[
            ("api_requests", "sum"),
            ("tokens_small", "sum"),
            ("tokens_large", "sum"),
            ("api_active_users", "last"),
            ("api_images", "sum"),
        ],
        &[("acme", "cus_Acme0001")],
    );
    let config = env.config();
    let mut store = env.store();
    for (tokens, model, user, ago) in [
        ("600", "small", "ann", 50),
        ("300", "large", "bob", 49),
        ("40", "small", "ann", 48),
    ] {
        let mut request = RecordRequest::new("acme", 1, now() - chrono::Duration::minutes(ago));
        request.event_type = Some("completion".into());
        request.properties = [("tokens", tokens), ("model", model), ("user", user)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let outcome = store.record(&config, &request, now()).unwrap();
        assert!(outcome.recorded);
        assert_eq!(outcome.meters.len(), 3);
    }
    let first = sync(&env);
    assert_eq!(first["failed"], 0, "{first}");
    let round1 = sent(&env, 0);
    assert_eq!(of(&round1, "api_requests"), [(BTreeMap::new(), 3)]);
    assert_eq!(of(&round1, "tokens_small"), [(model("small"), 640)]);
    assert_eq!(of(&round1, "tokens_large"), [(model("large"), 300)]);
    assert_eq!(of(&round1, "api_active_users"), [(BTreeMap::new(), 2)]);
    assert_eq!(round1.len(), 4, "one report per meter and group");
    // Nothing twice.
    assert_eq!(sync(&env)["attempted"], 0);
    assert_eq!(sent(&env, 0).len(), 4);
    let rows = reconcile_rows(&env);
    assert!(rows.iter().all(|r| r["status"] == "ok"), "{rows:?}");
}

/// `[stripe] report_units = "billable"`: Stripe gets only the units past the included ones that
/// credits did not pay, in both report modes, and reconcile agrees with what it got.
fn billable_units_report_only_what_neither_included_nor_credits_covered(engine: Engine) {
    for mode in ["aggregate", "per_event"] {
        let plans = PLANS.replace(
            "[stripe]\n",
            &format!("[stripe]\nreport = \"{mode}\"\nreport_units = \"billable\"\n"),
        );
        let env = env(engine, &plans, &[("acme", "cus_Acme0001")]);
        let config = env.config();
        let mut store = env.store();
        // 999,990 of the 1,000,000 included tokens; then 50: 10 included, 20 paid by $0.02
        // of credits at 0.001, 20 billable.
        let tokens = |store: &mut Store, n: &str, model: &str, ago: i64| {
            record(
                store,
                &config,
                "acme",
                "tokens",
                &[("tokens", n), ("model", model)],
                ago,
            )
        };
        tokens(&mut store, "999990", "small", 30);
        store
            .grant_credits(&config, &NewGrant::new("acme", "0.02"), now())
            .unwrap();
        tokens(&mut store, "50", "large", 20);
        let report = sync(&env);
        assert_eq!(report["failed"], 0, "{mode}: {report}");
        let events = sent(&env, 0);
        let billed: i64 = of(&events, "ai_tokens").iter().map(|(_, v)| v).sum();
        assert_eq!(billed, 20, "{mode}: {:?}", of(&events, "ai_tokens"));
        assert!(
            of(&events, "ai_tokens").contains(&(model("large"), 20)),
            "{mode}: {:?}",
            of(&events, "ai_tokens")
        );
        assert!(
            reconcile_rows(&env)
                .iter()
                .all(|r| r["drift"] == 0 && r["status"] == "ok"),
            "{mode}: {:?}",
            reconcile_rows(&env)
        );
    }
}
