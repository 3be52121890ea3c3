//! meterline-tui's integration tests: one test binary over the dashboard's internals, without
//! a terminal (the root suite, tests/testsuite, runs the real binary in tmux).
//!
//! - `app`: the state machine driven by key presses, and the keymap against docs/dashboard.md;
//! - `render`: drawing on ratatui's TestBackend, cells and styles, insta snapshots in
//!   `snapshots/` (`testsuite__render__<name>.snap`);
//! - `support`: the shipped plans.
//!
//! Tests run in parallel threads of this one process: none changes its environment.

mod app;
mod render;

mod support;
