//! What the dashboard's tests share.

use meterline_core::Config;

#[path = "../../../../tests/common/mod.rs"]
mod common;
pub use common::repo_plans;

/// The shipped plans.
pub fn config() -> Config {
    Config::load(&repo_plans()).unwrap()
}

/// An AI API with three meters (tests/fixtures/plans/ai.toml): requests capped, tokens by
/// model with overage on pro, active users (not billed on pro).
pub const METER_PLANS: &str = common::AI_PLANS;

/// The three-meter plans.
pub fn meter_config() -> Config {
    Config::parse(METER_PLANS, "plans.toml").unwrap()
}
