//! meterline-tui's integration tests: one test binary over the dashboard's internals, without
//! a terminal (the root suite, tests/testsuite, runs the real binary in tmux).
//!
//! - `app`: the state machine driven by key presses, and the keymap against docs/dashboard.md;
//! - `credits`: granting credits from the keyboard, the Credits column, the detail's credits;
//! - `render`: drawing on ratatui's TestBackend, cells and styles, insta snapshots in
//!   `snapshots/` (`testsuite__render__<name>.snap`);
//! - `meters`: several meters: the overview's meter per row, the picker (`m`), the detail;
//! - `priced`: events of a type and prices per model: the detail's groups with their money,
//!   Events one line per event with its type and meters, the Plans view's rates;
//! - `support`: the shipped plans, and three-meter plans (`METER_PLANS`, `priced_config`).
//!
//! Tests run in parallel threads of this one process: none changes its environment.

mod app;
mod credits;
mod meters;
mod priced;
mod render;

mod support;
