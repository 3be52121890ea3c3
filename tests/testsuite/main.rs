//! meterline's integration tests: one test binary (as cargo and ripgrep have), so the support
//! code and the real binary are built and linked once, and every test runs in one process.
//!
//! - `tests/testsuite/<area>.rs`: one module per area, driving the real `meterline` binary,
//!   the fake Stripe server, `meterline serve` or tmux (and the dashboard's workers against
//!   the fake Stripe, `tui_sync`);
//! - `tests/testsuite/support/`: the helpers they share (`crate::support::…`);
//! - `tests/testsuite/snapshots/`: insta snapshots, named `testsuite__<module>__<name>.snap`;
//! - `tests/fixtures`, `tests/invalid_plans`, `tests/compat_sdk`: data the tests read.
//!
//! Tests of one crate's library alone live in that crate, each crate with one such binary
//! too: `crates/store/tests/testsuite` (the store on SQLite files), `crates/tui/tests/testsuite`
//! (the dashboard's state, keymap and drawing), besides the unit tests in `crates/*/src`.
//! `cargo test` at the root runs them all; `cargo test --test testsuite NAME_FILTER` runs the
//! matching tests of the three suites, `cargo test -p meterline-tui` one crate's.
//!
//! Tests run in parallel threads of one process: none may change the process's environment
//! or working directory. Settings and secrets go to a child through `Command::env`, and to a
//! library call as arguments.

mod aggregate;
mod aggregate_expiry;
mod aggregate_kill;
mod alerts;
mod alerts_delivery;
mod alerts_tui;
mod bad_input;
mod cli_output;
mod compat;
mod compat_meters;
mod compat_refusals;
mod compat_sdk;
mod concurrency;
mod copy_to;
mod credit_alerts;
mod credit_burns;
mod credits;
mod credits_tmux;
mod db_files;
mod demo;
mod e2e_tmux;
mod engine_ops;
mod event_times;
mod event_types;
mod export_pages;
mod identifiers;
mod input_rules;
mod json_shapes;
mod layers;
mod lifecycle;
mod live_changes;
mod meters;
mod meters_serve;
mod nul_bytes;
mod one_meter;
mod period_terms;
mod pgbouncer;
mod plan_shapes;
mod plans;
mod postgres_bad_input;
mod postgres_collation;
mod postgres_restart;
mod postgres_tls;
mod postgres_trust;
mod priced_reads;
mod priced_tmux;
mod reconcile;
mod reconcile_in_doubt;
mod record_all_or_nothing;
mod record_keys;
mod reservations;
mod serve;
mod serve_encoding;
mod serve_kill;
mod serve_limits;
mod serve_record_batch;
mod standing_answers;
mod sync;
mod sync_engines;
mod sync_fair;
mod sync_faults;
mod sync_kill;
mod sync_meters;
mod sync_tmux;
mod sync_trust;
mod tui_cli;
mod tui_sync;
mod upgrade;
mod window_alerts;
mod window_retention;
mod windows;
mod windows_http;
mod windows_tmux;
mod words;

mod support;
