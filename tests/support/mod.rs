//! The one support module of the integration tests. Each test binary declares `mod support;`
//! and uses the parts it needs:
//! - `cli`: a scratch directory, the real binary with a pinned clock, database dumps;
//! - `stripe`: a database with known events, the fake Stripe server, key-leak checks;
//! - `fake_stripe`: the fake Stripe server itself;
//! - `serve`: the real `meterline serve` and a small blocking client;
//! - `alerts`: a loopback webhook receiver;
//! - `tmux`: the real binary on a real terminal.
#![allow(dead_code, unused_imports)] // each test binary uses its own subset

pub mod alerts;
pub mod cli;
pub mod fake_stripe;
pub mod serve;
pub mod stripe;
pub mod tmux;
