//! Usage alert delivery: each alert the record path wrote (meterline-store) is delivered at
//! least once, under its stable id, to the `[[alerts]]` destinations: webhooks (signed) or
//! commands. The rules (levels, ids, backoff, the webhook URL rule) and signing
//! are the core's (`meterline_core::alerts`), re-exported here.
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod command;
pub mod deliver;
pub mod payload;
mod webhook;

use meterline_core::{Error, Result, config, sanitize};
use meterline_store::{self as store, Store};

pub use deliver::{Preview, RunOptions, RunReport, preview, run};
pub use meterline_core::alerts::*;
