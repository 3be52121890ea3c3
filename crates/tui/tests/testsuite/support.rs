//! What the dashboard's tests share.

use std::path::{Path, PathBuf};

use meterline_core::Config;

/// The plans.toml shipped at the repository root.
pub fn repo_plans() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plans.toml")
}

/// The shipped plans.
pub fn config() -> Config {
    Config::load(&repo_plans()).unwrap()
}
