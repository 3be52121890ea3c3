//! meterline: exact usage metering over one SQLite file, enforced against the plans in
//! plans.toml and reported to Stripe Billing Meters.
//!
//! Embed it in a Rust product (`meterline = { version = "0.1", default-features = false }`
//! builds only this core: no dashboard, command line, Stripe client or HTTP server):
//!
//! ```
//! use meterline::store::NewCustomer;
//! use meterline::{Config, RecordRequest, Store};
//!
//! // In a product: Config::load("plans.toml".as_ref()) and Store::open("meterline.db".as_ref()).
//! let config = Config::parse(meterline::config::EXAMPLE_PLANS, "example plans")?;
//! let mut store = Store::open_in_memory()?;
//! let now = chrono::Utc::now();
//! store.add_customer(
//!     &config,
//!     &NewCustomer {
//!         id: "acme".into(),
//!         name: Some("Acme Robotics".into()),
//!         plan_id: "free".into(), // 1,000 units a month, hard cap
//!         stripe_customer_id: None,
//!         billing_anchor: None,
//!     },
//!     now,
//! )?;
//!
//! // One event: counted exactly once, refused at the hard cap.
//! let mut request = RecordRequest::new("acme", 990, now);
//! request.idempotency_key = Some("req-7f3a".into()); // a retry with this key counts nothing
//! let outcome = store.record(&config, &request, now)?;
//! assert!(outcome.recorded);
//! assert_eq!(outcome.check.remaining, Some(10));
//!
//! // Many events in one transaction, each decided as if recorded alone.
//! let batch = [RecordRequest::new("acme", 5, now), RecordRequest::new("acme", 50, now)];
//! let results = store.record_batch(&config, &batch, now)?;
//! assert!(results[0].as_ref().is_ok_and(|o| o.recorded));
//! assert!(results[1].as_ref().is_ok_and(|o| !o.recorded)); // past the cap: refused
//!
//! // "May this customer do more?"
//! let check = store.check(&config, "acme", now)?;
//! assert_eq!((check.used, check.allowed), (995, true));
//! # Ok::<(), meterline::Error>(())
//! ```

pub use meterline_core::{
    Config, Error, IdempotencyKey, KeySource, RecordOutcome, RecordRequest, Result, billing, config,
};
pub use meterline_store::{self as store, NewCustomer, Store};
