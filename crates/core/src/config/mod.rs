//! plans.toml: parsed into raw serde types, then validated once into the types the rest of
//! meterline uses.

pub mod limits;
pub mod locate;
mod meters;
mod rates;
mod raw;
mod validate;

use std::path::Path;

use rust_decimal::Decimal;
use serde::Serialize;

use crate::billing::{PeriodKind, Thresholds, WarningLevel};

pub use limits::{Align, Limit, LimitAction, Window, WindowKind};
pub use locate::{EXAMPLE_PLANS, INIT_PLANS, PlansLocation};
pub use meters::{
    Aggregation, EventPart, IMPLICIT_METER, MAX_GROUP_BY, MAX_METERS_PER_TYPE, Meter, MeterTerms,
    MeterTermsMap, QUANTITY, event_parts, is_stripe_event_name, kept_meter_terms,
    stripe_event_values,
};
pub use rates::Rate;
pub use validate::ConfigError;

/// A duration in milliseconds from the environment variable `name`, if set. A value that is
/// not a whole number of milliseconds is an error (exit 2), never silently ignored.
pub fn millis_from_env(name: &str) -> crate::Result<Option<std::time::Duration>> {
    let Ok(text) = std::env::var(name) else {
        return Ok(None);
    };
    text.trim()
        .parse::<u64>()
        .map(|ms| Some(std::time::Duration::from_millis(ms)))
        .map_err(|_| {
            crate::Error::InvalidInput(format!(
                "{name}=\"{}\" is not a whole number of milliseconds",
                crate::sanitize::sanitize(&text)
            ))
        })
}

/// The default meter event name when plans.toml does not name one.
pub(crate) const DEFAULT_METER_EVENT: &str = "meterline_usage";
pub(crate) const DEFAULT_API_BASE: &str = "https://api.stripe.com";
/// The Stripe API version sent when plans.toml names none.
pub const DEFAULT_API_VERSION: &str = "2025-03-31.basil";

/// A validated plans.toml: what the rest of meterline reads.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub plans: Vec<Plan>,
    /// `[[meters]]` in order (the first is the default), or the implicit `usage` meter.
    pub meters: Vec<Meter>,
    /// True when plans.toml has `[[meters]]` (false: the implicit meter only). Asked through
    /// [`Config::implicit_meter`], the one place that knows.
    #[serde(skip)]
    pub(crate) explicit_meters: bool,
    pub thresholds: Thresholds,
    pub billing: BillingSettings,
    pub stripe: StripeSettings,
    pub ingest: IngestSettings,
    /// `[[alerts]]`: where level crossings are delivered.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<AlertRule>,
}

/// One `[[alerts]]` entry: a destination and which crossings it gets.
#[derive(Debug, Clone, Serialize)]
pub struct AlertRule {
    pub target: AlertTarget,
    /// The levels delivered (default: warning, critical, hard_cap; none for an entry with
    /// `credits_below` and no `levels`).
    pub levels: Vec<WarningLevel>,
    /// `credits_below`: the entry gets `credits.low` when a customer's available money
    /// credits fall below this, and `credits.exhausted` when they run out.
    #[serde(
        with = "rust_decimal::serde::str_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub credits_below: Option<Decimal>,
    /// The plans whose customers' crossings are delivered; `None` = every plan.
    pub plans: Option<Vec<String>>,
    /// `windows`: the window limits whose crossings the entry also gets (`[]`: none).
    #[serde(skip_serializing_if = "WindowAlerts::is_none")]
    pub windows: WindowAlerts,
    pub timeout_secs: f64,
    /// Attempts before a delivery is marked failed for good.
    pub max_attempts: u32,
}

/// Where an `[[alerts]]` entry delivers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertTarget {
    /// POST the alert JSON here (https, or plain http to this machine).
    Webhook(String),
    /// Run this program (no shell) with the alert JSON on stdin.
    Command(Vec<String>),
}

impl AlertTarget {
    /// The stable name a delivery row is stored under ("webhook https://..." or
    /// "command [\"/bin/notify\",...]"): the same entry in plans.toml finds its rows again.
    pub fn key(&self) -> String {
        match self {
            AlertTarget::Webhook(url) => format!("webhook {url}"),
            AlertTarget::Command(argv) => format!(
                "command {}",
                serde_json::to_string(argv).unwrap_or_default()
            ),
        }
    }
}

/// Which window limits' crossings an `[[alerts]]` entry gets: `windows = true` (all) or a
/// list of windows (`["5h", "7d"]`); none without the key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum WindowAlerts {
    #[default]
    None,
    All,
    /// Window lengths in seconds.
    Only(Vec<i64>),
}

impl WindowAlerts {
    pub fn is_none(&self) -> bool {
        *self == WindowAlerts::None
    }

    /// True when the crossings of a window of `secs` seconds are wanted.
    pub fn selects(&self, secs: i64) -> bool {
        match self {
            WindowAlerts::None => false,
            WindowAlerts::All => true,
            WindowAlerts::Only(windows) => windows.contains(&secs),
        }
    }
}

impl AlertRule {
    /// True when a crossing to `level` by a customer on `plan` goes to this entry.
    pub fn matches(&self, plan: &str, level: WarningLevel) -> bool {
        self.levels.contains(&level) && self.covers_plan(plan)
    }

    /// True when a window of `window_secs` crossing to `level` goes to this entry.
    pub fn matches_window(&self, plan: &str, level: WarningLevel, window_secs: i64) -> bool {
        self.matches(plan, level) && self.windows.selects(window_secs)
    }

    /// True when this entry wants the alerts of customers on `plan`.
    pub fn covers_plan(&self, plan: &str) -> bool {
        self.plans
            .as_ref()
            .is_none_or(|plans| plans.iter().any(|p| p == plan))
    }
}

/// `[ingest]` in plans.toml.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestSettings {
    /// Meter event name -> the payload field that holds an event's quantity (CloudEvents
    /// `data`, Lago `properties`). A meter without an entry counts 1 per event.
    pub value_property: std::collections::BTreeMap<String, String>,
}

/// A plan: its price, included units, what happens at the limit, its meter event.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub id: String,
    pub name: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub price: Decimal,
    /// Units included per billing period; `None` is unlimited.
    pub included: Option<i64>,
    pub at_limit: AtLimit,
    #[serde(with = "rust_decimal::serde::str_option")]
    pub overage_rate: Option<Decimal>,
    /// The Stripe meter event name for this plan's usage (the global one unless overridden).
    pub meter_event: String,
    /// The plan's terms per meter id. A meter the plan does not name is recorded and shown
    /// as unbilled, never capped. Without `[[meters]]`: `usage` with the fields above.
    pub meters: MeterTermsMap,
    /// `[plans.credits]`: money credits granted to each customer every period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credits: Option<PlanCredits>,
    /// `meters` as a period keeps them (`usage_records.meter_terms`), made once here since
    /// every record batch writes them with the period's counter.
    #[serde(skip)]
    pub kept_meter_terms: String,
}

/// Money credits a plan grants each period: `grant` at the first write of each period,
/// expiring at its end, of which up to `rollover` carries into the next period.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PlanCredits {
    #[serde(with = "rust_decimal::serde::str")]
    pub grant: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub rollover: Decimal,
}

/// What a plan does when a customer reaches its included units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AtLimit {
    /// Hard cap: a record that would pass the limit is refused.
    Block,
    /// Keep recording; units past the limit are billed at `overage_rate`.
    Overage,
}

/// `[billing]`: how periods are cut and the currency prices are in.
#[derive(Debug, Clone, Serialize)]
pub struct BillingSettings {
    pub period: PeriodKind,
    /// Lower-case ISO 4217 code ("usd"), as Stripe writes it; prices are in this currency.
    pub currency: String,
}

/// The currency when plans.toml names none.
pub(crate) const DEFAULT_CURRENCY: &str = "usd";

/// `[stripe]`: where and how the sync reports usage.
#[derive(Debug, Clone, Serialize)]
pub struct StripeSettings {
    pub meter_event: String,
    pub api_base: String,
    pub api_version: String,
    /// Requests per second; `None` = chosen by key mode, `Some(0)` = unlimited.
    pub rate_limit: Option<u32>,
    pub workers: usize,
    pub timeout_secs: f64,
    pub max_attempts: u32,
    /// One meter event per customer, meter and period, or one per usage event.
    pub report: ReportMode,
    /// Every unit, or only those neither the allowance nor credits covered.
    pub report_units: ReportUnits,
    /// Unreported events this many days from Stripe's 35-day limit count as expiring.
    pub expiry_warning_days: u32,
}

/// Which units a sync reports to Stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReportUnits {
    /// Every unit recorded: Stripe's prices apply the allowance (today's behaviour).
    #[default]
    All,
    /// Only the units past a meter's included that credits did not pay: Stripe bills each at
    /// a flat price. A `last` formula meter (max, unique_count, latest) reports its value.
    Billable,
}

/// How a sync reports usage to Stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReportMode {
    /// The unreported events of a customer, meter and billing period as one meter event.
    #[default]
    Aggregate,
    /// One meter event per usage event: Stripe holds every event.
    PerEvent,
}

impl ReportMode {
    /// The plans.toml spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportMode::Aggregate => "aggregate",
            ReportMode::PerEvent => "per_event",
        }
    }
}

impl Config {
    /// The payload field holding the quantity of `meter_event`'s events, if one is configured.
    pub fn value_property(&self, meter_event: &str) -> Option<&str> {
        self.ingest
            .value_property
            .get(meter_event)
            .map(String::as_str)
    }

    /// Read and validate a plans file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: if e.kind() == std::io::ErrorKind::NotFound {
                // The first thing a new user meets after `meterline demo`: say the way out.
                format!(
                    "{e}; write the commented example with `meterline init`, or point --plans / \
                     METERLINE_PLANS at yours (also looked for: \
                     $XDG_CONFIG_HOME/meterline/plans.toml, /etc/meterline/plans.toml)"
                )
            } else {
                e.to_string()
            },
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Validate plans.toml text; `origin` names the file in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        validate::parse(text, origin)
    }

    /// An amount in the plans' currency, as people read it ("$17.00").
    pub fn money(&self, amount: Decimal) -> String {
        crate::billing::money(amount, &self.billing.currency)
    }

    /// The meter with this id.
    pub fn meter(&self, id: &str) -> Option<&Meter> {
        self.meters.iter().find(|m| m.id == id)
    }

    /// The meter with this id, or the error naming the meters there are (exit 2, HTTP 400).
    pub fn known_meter(&self, id: &str) -> crate::Result<&Meter> {
        self.meter(id).ok_or_else(|| {
            let known: Vec<&str> = self.meters.iter().map(|m| m.id.as_str()).collect();
            crate::Error::InvalidInput(format!(
                "meter \"{}\" is not in plans.toml; the meters are: {}",
                crate::sanitize::sanitize(id),
                known.join(", ")
            ))
        })
    }

    /// The event types plans.toml knows (each meter's `event`), each once, in meter order.
    pub fn event_types(&self) -> Vec<&str> {
        let mut types: Vec<&str> = Vec::new();
        for meter in &self.meters {
            if !types.contains(&meter.event.as_str()) {
                types.push(&meter.event);
            }
        }
        types
    }

    /// The meters an event of `event_type` feeds, in `[[meters]]` order, or the error naming
    /// the types there are (exit 2, HTTP 400).
    pub fn meters_of_type(&self, event_type: &str) -> crate::Result<Vec<&Meter>> {
        let meters: Vec<&Meter> = self
            .meters
            .iter()
            .filter(|m| m.event == event_type)
            .collect();
        if meters.is_empty() {
            return Err(crate::Error::InvalidInput(format!(
                "event type \"{}\" is not in plans.toml; the types are: {}",
                crate::sanitize::sanitize(event_type),
                self.event_types().join(", ")
            )));
        }
        Ok(meters)
    }

    /// The meters an event feeds: every meter of its type, the one it names, or the default
    /// meter. An error (exit 2, HTTP 400) for a type and a meter on one event, an unknown
    /// type or an unknown meter.
    pub fn meters_fed(&self, event: &crate::RecordRequest) -> crate::Result<Vec<&Meter>> {
        match (&event.event_type, &event.meter) {
            (Some(_), Some(_)) => Err(crate::Error::InvalidInput(
                "an event names a type or a meter, not both: a type feeds every meter of that \
                 type, a meter exactly that one"
                    .into(),
            )),
            (Some(event_type), None) => self.meters_of_type(event_type),
            (None, Some(id)) => Ok(vec![self.known_meter(id)?]),
            (None, None) => Ok(vec![self.default_meter()]),
        }
    }

    /// The one meter of a plans.toml without `[[meters]]` (the sum of `quantity` under the
    /// plan's own terms), or `None` with `[[meters]]`. It is an ordinary meter: this only
    /// tells how plans.toml spelled it, for the outputs that name meters and for the
    /// database columns that keep its total (`usage_records.used`, `usage_members`).
    pub fn implicit_meter(&self) -> Option<&Meter> {
        (!self.explicit_meters).then(|| self.default_meter())
    }

    /// True when some plan limits `meter` over a window: the record path then keeps the
    /// meter's usage over time (`window_buckets`).
    pub fn windowed(&self, meter: &str) -> bool {
        self.plans
            .iter()
            .any(|p| p.meters.get(meter).is_some_and(|t| !t.limits.is_empty()))
    }

    /// The longest window any plan sets on `meter`, in seconds.
    pub fn longest_window(&self, meter: &str) -> Option<i64> {
        self.plans
            .iter()
            .filter_map(|p| p.meters.get(meter))
            .flat_map(|t| &t.limits)
            .map(|l| l.window_secs)
            .max()
    }

    /// True when some plan limits some meter over a window.
    pub fn has_windows(&self) -> bool {
        self.meters.iter().any(|m| self.windowed(&m.id))
    }

    /// The meter an event names none of: the first in `[[meters]]`, or the implicit one.
    #[allow(clippy::expect_used)] // invariant: validation always leaves at least one meter
    pub fn default_meter(&self) -> &Meter {
        self.meters
            .first()
            .expect("validated config always has a meter")
    }

    /// The plan with this id, if plans.toml defines it.
    pub fn plan(&self, id: &str) -> Option<&Plan> {
        self.plans.iter().find(|p| p.id == id)
    }

    /// Every meter with `plan`'s terms for it and the Stripe event its usage is reported to:
    /// what `plans` and the dashboard's Plans view show, a line per meter.
    pub fn plan_meters<'a>(&'a self, plan: &'a Plan) -> impl Iterator<Item = PlanMeter<'a>> {
        self.meters.iter().map(move |meter| PlanMeter {
            meter,
            terms: plan.meters.get(&meter.id),
            // Without `[[meters]]` the implicit meter reports to the plan's own event.
            stripe_event: if self.explicit_meters {
                &meter.stripe_event
            } else {
                &plan.meter_event
            },
        })
    }
}

/// One meter as a plan bills it: [`Config::plan_meters`].
#[derive(Debug, Clone, Copy)]
pub struct PlanMeter<'a> {
    pub meter: &'a Meter,
    /// `None`: the plan does not name the meter, so it is recorded but not billed or capped.
    pub terms: Option<&'a MeterTerms>,
    pub stripe_event: &'a str,
}

impl AtLimit {
    /// The plans.toml spelling, also stored with each period's terms.
    pub fn as_str(self) -> &'static str {
        match self {
            AtLimit::Block => "block",
            AtLimit::Overage => "overage",
        }
    }
}

impl Plan {
    /// The plan's terms as billing sees them.
    pub fn allowance(&self) -> crate::billing::Allowance {
        crate::billing::Allowance {
            included: self.included,
            hard_cap: self.at_limit == AtLimit::Block,
            overage_rate: self.overage_rate,
        }
    }
}
