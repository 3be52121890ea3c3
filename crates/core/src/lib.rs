//! The core of meterline, which every other crate builds on: the billing rules (periods,
//! warning levels, money), plans.toml, the pretendable clock, the one character rule, the URL
//! policy, errors, the alert rules, and the model and wire types both the server and the CLI use.
//! No I/O beyond reading plans.toml.

// No unwrap/expect outside tests: a panic after a commit is a lie to the caller. The few
// documented invariants say why with a local `allow`.
#![warn(unreachable_pub)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod alerts;
pub mod billing;
pub mod clock;
pub mod config;
mod error;
pub mod metering;
pub mod model;
pub mod net;
pub mod sanitize;
pub mod wire;

pub use config::Config;
pub use error::{Error, Result};
pub use model::{
    Amounts, Credits, Expiring, FedMeter, GroupUsage, IdempotencyKey, KeySource, MeterCheck,
    MeteredCheck, Properties, RecordOutcome, RecordRequest, WindowRefusal, WindowUsage,
};
