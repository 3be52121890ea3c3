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

/// The AI API whose `completion` event feeds three meters, tokens priced per model
/// (tests/fixtures/plans/ai_priced.toml).
pub fn priced_config() -> Config {
    Config::parse(common::AI_PRICED_PLANS, "plans.toml").unwrap()
}
