//! Fairness: a customer with a large backlog (one request in flight at a time, as Stripe
//! allows per customer and meter) does not hold up everyone else's events.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::support::engine::{Engine, engine_tests};
use crate::support::stripe::{Env, PLANS, Seed};
use chrono::Duration as Span;

engine_tests!(small_customers_are_not_starved_by_one_large_backlog,);

fn small_customers_are_not_starved_by_one_large_backlog(engine: Engine) {
    const HOT: usize = 12_000;
    let env = Env::on(engine, PLANS);
    let seeds = [
        Seed {
            id: "hot",
            stripe: Some("cus_Hot00001"),
            plan: "free",
            events: 0,
        },
        Seed {
            id: "s1",
            stripe: Some("cus_Small001"),
            plan: "free",
            events: 0,
        },
        Seed {
            id: "s2",
            stripe: Some("cus_Small002"),
            plan: "free",
            events: 0,
        },
        Seed {
            id: "s3",
            stripe: Some("cus_Small003"),
            plan: "business",
            events: 0,
        },
    ];
    env.seed(&seeds, Span::days(1));
    // The hot customer's backlog is older than every small customer's event: read in time
    // order alone, it would fill the queue before any of theirs.
    let config = env.config();
    let mut store = env.store();
    let start = crate::support::stripe::now() - Span::days(3);
    for i in 0..HOT {
        env.record(
            &mut store,
            &config,
            "hot",
            1,
            start + Span::seconds(i as i64),
        );
    }
    for (n, small) in ["s1", "s2", "s3"].iter().enumerate() {
        for i in 0..10 {
            let at =
                crate::support::stripe::now() - Span::hours(1) + Span::seconds((n * 10 + i) as i64);
            env.record(&mut store, &config, small, 2, at);
        }
    }
    drop(store);
    let customers: HashMap<String, String> = env
        .deliverable()
        .into_iter()
        .map(|(_, identifier, customer, _, _)| (identifier, customer))
        .collect();
    // For each small event, how many hot events had arrived before it.
    let hot_before = |arrivals: &[String]| {
        let mut hot_seen = 0;
        let mut before = Vec::new();
        for identifier in arrivals {
            if customers[identifier] == "cus_Hot00001" {
                hot_seen += 1;
            } else {
                before.push(hot_seen);
            }
        }
        before
    };

    // Stop the run once every small event is in (the rest of the backlog is no news).
    let cancel = AtomicBool::new(false);
    let report = env
        .sync_lib(Default::default(), &cancel, &mut |_| {
            if hot_before(&env.server.arrivals()).len() == 30 {
                cancel.store(true, Ordering::Relaxed);
            }
        })
        .unwrap();
    let before = hot_before(&env.server.arrivals());
    assert_eq!(before.len(), 30, "{report:?}");
    let latest = *before.iter().max().unwrap();
    assert!(
        latest < HOT / 2,
        "the last small event arrived after {latest} of {HOT} hot events"
    );
    // What arrived is what is marked.
    assert_eq!(report.stopped.as_deref(), Some("cancelled"));
    assert_eq!(
        env.count("stripe_reported_at IS NOT NULL"),
        env.server.accepted_count() as i64
    );
}
