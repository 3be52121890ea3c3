//! Usage alert delivery: each alert the record path wrote (meterline-store) is delivered at
//! least once, under its stable id, to the `[[alerts]]` destinations: webhooks (signed) or
//! commands. The rules (levels, ids, backoff, the webhook URL rule) and signing are the core's
//! (`meterline_core::alerts`).
//!
//! Entry points: [`run`] (one delivery run, as `meterline alerts` and `serve` do it) with
//! [`RunOptions::from_env`], [`preview`] (what a run would attempt), and [`check_secret`]
//! (refuse webhooks without a signing secret before anything starts).
#![deny(clippy::unwrap_used, clippy::expect_used)]
// Only what other crates use is `pub`; the rest is `pub(crate)` or private.
#![warn(unreachable_pub)]

mod command;
mod deliver;
mod payload;
mod webhook;

use meterline_core::{Error, Result, config, sanitize};
use meterline_store::{self as store, Store};

pub use deliver::{Preview, PreviewRow, RunOptions, RunReport, check_secret, preview, run};
use meterline_core::alerts::*;
