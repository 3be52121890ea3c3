//! The shape of plans.toml exactly as written. Only `config::validate` looks at these types;
//! everything else sees the validated `Config`.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub thresholds: RawThresholds,
    #[serde(default)]
    pub billing: RawBilling,
    #[serde(default)]
    pub stripe: RawStripe,
    #[serde(default)]
    pub plans: Vec<RawPlan>,
    #[serde(default)]
    pub ingest: RawIngest,
    #[serde(default)]
    pub alerts: Vec<RawAlert>,
    #[serde(default)]
    pub meters: Vec<RawMeter>,
}

/// One `[[meters]]` entry. Spanned where validation may point at it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMeter {
    pub id: Spanned<String>,
    pub name: Option<String>,
    pub aggregation: Spanned<String>,
    pub property: Option<Spanned<String>>,
    pub group_by: Option<Spanned<Vec<String>>>,
    pub stripe_event: Option<Spanned<String>>,
    /// The event type the meter counts (default: its id).
    pub event: Option<Spanned<String>>,
}

/// One `[plans.meters.ID]` table: a plan's terms for one meter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlanMeter {
    pub included: Option<i64>,
    pub at_limit: Option<String>,
    pub overage_rate: Option<RawAmount>,
    pub rates: Option<Vec<RawRate>>,
    pub limits: Option<Vec<RawLimit>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimit {
    pub window: Spanned<String>,
    pub kind: Option<Spanned<String>>,
    pub limit: Spanned<i64>,
    pub at_limit: Option<Spanned<String>>,
    pub align: Option<Spanned<String>>,
}

/// One `[[plans.meters.ID.rates]]` line: the rate of the groups its `where` matches.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRate {
    #[serde(rename = "where")]
    pub when: Spanned<std::collections::BTreeMap<Spanned<String>, OneOrMany>>,
    pub rate: Spanned<RawAmount>,
}

/// A `where` value: one group value or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// One `[[alerts]]` entry. The URL and the levels are checked while parsing, so a mistake is
/// reported with its line and column.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAlert {
    pub webhook: Option<RawWebhookUrl>,
    pub command: Option<Vec<String>>,
    pub levels: Option<Vec<RawLevel>>,
    pub plans: Option<Vec<String>>,
    pub timeout_secs: Option<f64>,
    pub max_attempts: Option<i64>,
    /// Money: deliver `credits.low` when a customer's available credits fall below it.
    pub credits_below: Option<Spanned<RawAmount>>,
    pub windows: Option<RawWindowAlerts>,
}

/// `windows = true` or `windows = ["5h", "7d"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawWindowAlerts {
    All(bool),
    Only(Vec<String>),
}

#[derive(Debug)]
pub(crate) struct RawWebhookUrl(pub String);

impl<'de> Deserialize<'de> for RawWebhookUrl {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        crate::alerts::check_webhook_url(&text)
            .map(RawWebhookUrl)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug)]
pub(crate) struct RawLevel(pub crate::billing::WarningLevel);

impl<'de> Deserialize<'de> for RawLevel {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use crate::billing::WarningLevel;
        let text = String::deserialize(deserializer)?;
        match text.as_str() {
            "warning" => Ok(RawLevel(WarningLevel::Warning)),
            "critical" => Ok(RawLevel(WarningLevel::Critical)),
            "hard_cap" => Ok(RawLevel(WarningLevel::HardCap)),
            _ => Err(serde::de::Error::custom(format!(
                "level \"{}\" is not known; use \"warning\", \"critical\" or \"hard_cap\"",
                text.escape_debug()
            ))),
        }
    }
}

/// `[ingest]`: how events arriving through the compatible routes (CloudEvents, Lago) are read.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIngest {
    /// Meter event name -> the payload field holding the quantity.
    #[serde(default)]
    pub value_property: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawThresholds {
    pub warning: Option<f64>,
    pub critical: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBilling {
    pub period: Option<String>,
    pub currency: Option<RawCurrency>,
}

/// A currency as Stripe writes it: three lower-case letters ("usd"). Checked while parsing,
/// so a mistake is reported with its line and column.
#[derive(Debug)]
pub(crate) struct RawCurrency(pub String);

impl<'de> Deserialize<'de> for RawCurrency {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.len() == 3 && text.bytes().all(|b| b.is_ascii_lowercase()) {
            Ok(RawCurrency(text))
        } else {
            Err(serde::de::Error::custom(format!(
                "currency = \"{}\" is not a currency code; write the three-letter ISO 4217 code in lower case, as Stripe does, e.g. \"usd\" or \"eur\"",
                text.escape_debug()
            )))
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStripe {
    pub meter_event: Option<String>,
    pub api_base: Option<String>,
    pub api_version: Option<String>,
    /// Requests per second; absent = by key mode (25 test, 1000 live); 0 = no limit.
    pub rate_limit: Option<i64>,
    pub workers: Option<i64>,
    pub timeout_secs: Option<f64>,
    pub max_attempts: Option<i64>,
    /// "aggregate" (default) or "per_event".
    pub report: Option<String>,
    /// "all" (default) or "billable".
    pub report_units: Option<String>,
    /// Days before Stripe's 35-day window closes that unreported events count as expiring.
    pub expiry_warning_days: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPlan {
    pub id: String,
    pub name: Option<String>,
    pub price: Option<RawAmount>,
    pub included: Option<i64>,
    pub at_limit: Option<String>,
    pub overage_rate: Option<RawAmount>,
    pub meter_event: Option<String>,
    pub meters: Option<std::collections::BTreeMap<Spanned<String>, Spanned<RawPlanMeter>>>,
    pub credits: Option<RawPlanCredits>,
    /// Without `[[meters]]`: the implicit meter's window limits.
    pub limits: Option<Vec<RawLimit>>,
}

/// `[plans.credits]`: money granted each period, and how much of its remainder carries over.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPlanCredits {
    pub grant: RawAmount,
    pub rollover: Option<RawAmount>,
}

/// Money as written: a string ("0.015") or a whole number. Floats are caught in validation
/// so that no amount ever passes through binary floating point.
#[derive(Debug)]
pub(crate) enum RawAmount {
    Text(String),
    Whole(i64),
    Float(f64),
}

/// By hand rather than `#[serde(untagged)]`, whose error for a wrong type ("data did not match
/// any variant") names neither the field's meaning nor what to write.
impl<'de> Deserialize<'de> for RawAmount {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AmountVisitor;
        impl serde::de::Visitor<'_> for AmountVisitor {
            type Value = RawAmount;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an exact decimal string like \"0.015\" or a whole number")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawAmount, E> {
                Ok(RawAmount::Text(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawAmount, E> {
                Ok(RawAmount::Whole(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawAmount, E> {
                i64::try_from(v)
                    .map(RawAmount::Whole)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<RawAmount, E> {
                Ok(RawAmount::Float(v))
            }
        }
        deserializer.deserialize_any(AmountVisitor)
    }
}
