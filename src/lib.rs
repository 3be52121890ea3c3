//! meterline: exact usage metering over one SQLite file, enforced against the plans in
//! plans.toml and reported to Stripe Billing Meters.
//!
//! Embed it in a Rust product:
//!
//! ```no_run
//! use meterline::{Config, Store, RecordRequest};
//! let config = Config::load("plans.toml".as_ref())?;
//! let mut store = Store::open("meterline.db".as_ref())?;
//! let now = chrono::Utc::now();
//! let outcome = store.record(&config, &RecordRequest::new("acme", 1, now), now)?;
//! if !outcome.recorded { /* refused by the hard cap */ }
//! # Ok::<(), meterline::Error>(())
//! ```

pub mod alerts;
pub mod billing;
pub mod cli;
pub mod config;
pub mod demo;
mod error;
pub mod sanitize;
pub mod server;
pub mod store;
pub mod stripe;
pub mod tui;

pub use config::Config;
pub use error::{Error, Result};
pub use store::{RecordOutcome, RecordRequest, Store};
