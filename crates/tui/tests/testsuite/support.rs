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

/// An AI API with three meters: requests capped, tokens by model with overage on pro,
/// active users (not billed on pro).
pub const METER_PLANS: &str = r#"
[thresholds]
warning = 0.80
critical = 0.95

[[meters]]
id = "requests"
name = "API requests"
aggregation = "count"

[[meters]]
id = "tokens"
name = "Tokens"
aggregation = "sum"
property = "tokens"
group_by = ["model"]

[[meters]]
id = "users"
name = "Active users"
aggregation = "unique_count"
property = "user"

[[plans]]
id = "free"
name = "Free"
price = "0"
[plans.meters.requests]
included = 100
[plans.meters.tokens]
included = 10000
[plans.meters.users]
included = 4

[[plans]]
id = "pro"
name = "Pro"
price = "49.00"
[plans.meters.requests]
included = 10000
[plans.meters.tokens]
included = 1000000
at_limit = "overage"
overage_rate = "0.00002"
"#;

/// The three-meter plans.
pub fn meter_config() -> Config {
    Config::parse(METER_PLANS, "plans.toml").unwrap()
}
