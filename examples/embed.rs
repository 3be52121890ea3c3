//! Embedding meterline's core in a Rust product: plans, a store, recording with a hard cap,
//! a batch, and the "may they do more?" check. Builds without the default features:
//!
//! ```sh
//! cargo run --example embed --no-default-features -- /tmp/embed.db
//! ```

use meterline::store::NewCustomer;
use meterline::{Config, RecordRequest, Result, Store};

fn main() -> Result<()> {
    let db = std::env::args().nth(1).unwrap_or_else(|| "embed.db".into());
    // A product ships its own plans.toml; the example plans are built in.
    let config = Config::parse(meterline::config::EXAMPLE_PLANS, "example plans")?;
    let mut store = Store::open(db.as_ref())?;
    let now = chrono::Utc::now();
    if store.customers()?.iter().all(|c| c.id != "acme") {
        store.add_customer(
            &config,
            &NewCustomer {
                id: "acme".into(),
                name: Some("Acme Robotics".into()),
                plan_id: "free".into(),
                stripe_customer_id: None,
                billing_anchor: None,
            },
            now,
        )?;
    }

    // Before doing work for the customer, ask; after doing it, record.
    let before = store.check(&config, "acme", now)?;
    if !before.allowed {
        println!(
            "acme is at its hard cap ({} used); refusing work",
            before.used
        );
        return Ok(());
    }
    let outcome = store.record(&config, &RecordRequest::new("acme", 40, now), now)?;
    println!(
        "recorded: {}, acme has used {} of {:?} ({})",
        outcome.recorded,
        outcome.check.used,
        outcome.check.limit,
        outcome.check.level.as_str()
    );

    // An import: one transaction, each event with record's exact rules.
    let batch: Vec<RecordRequest> = (0..5)
        .map(|_| RecordRequest::new("acme", 100, now))
        .collect();
    for (i, result) in store.record_batch(&config, &batch, now)?.iter().enumerate() {
        match result {
            Ok(o) if o.recorded => println!("batch event {i}: recorded"),
            Ok(_) => println!("batch event {i}: refused by the hard cap"),
            Err(e) => println!("batch event {i}: {e}"),
        }
    }
    Ok(())
}
