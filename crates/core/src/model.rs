//! The model types every layer shares: an event to record, its idempotency key, and the
//! outcome of recording it.

use chrono::{DateTime, Utc};

use crate::billing::UsageCheck;

/// One usage event to record: who, how much, when, and its idempotency key.
#[derive(Debug, Clone)]
pub struct RecordRequest {
    pub customer_id: String,
    pub quantity: i64,
    /// The member of an organisation account who used it.
    pub user_id: Option<String>,
    /// A repeated key counts nothing and returns the original event.
    pub idempotency_key: Option<IdempotencyKey>,
    pub occurred_at: DateTime<Utc>,
    /// False when the caller gave no time and `occurred_at` is when the event was received:
    /// a retry without a time is then the same event whenever it comes, never a conflict.
    pub at_given: bool,
    /// The meter it counts on; `None` is the default meter (the first in `[[meters]]`), or
    /// every meter of `event_type`.
    pub meter: Option<String>,
    /// The event's type: it feeds every meter whose `event` is this type, all or nothing.
    /// An event names a type or a meter, never both.
    pub event_type: Option<String>,
    /// The event's properties: what its meter aggregates and groups by.
    pub properties: Properties,
}

/// An event's properties, key → value as text (a JSON number is kept as its digits).
pub type Properties = std::collections::BTreeMap<String, String>;

impl RecordRequest {
    /// An event of `quantity` units for `customer_id` at `occurred_at`, without member or key.
    /// The time counts as given; a caller that means "now" sets `at_given` to false.
    pub fn new(customer_id: &str, quantity: i64, occurred_at: DateTime<Utc>) -> Self {
        RecordRequest {
            customer_id: customer_id.to_string(),
            quantity,
            user_id: None,
            idempotency_key: None,
            occurred_at,
            at_given: true,
            meter: None,
            event_type: None,
            properties: Properties::new(),
        }
    }
}

/// Where an idempotency key came from. Each source has a namespace of its own, so a key sent
/// to one can never take the identity of another's event (a native key `lago:2:t1` once
/// swallowed the Lago event whose transaction id is `t1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeySource {
    /// `record --key`, `record --batch`, `POST /v1/events` and the library.
    Native,
    /// The Stripe meter events route.
    Stripe,
    /// The CloudEvents (OpenMeter) route.
    CloudEvents,
    /// The Lago route.
    Lago,
}

impl KeySource {
    /// The text stored in `usage_events.idempotency_source`; the drop-in routes also prefix
    /// their derived keys with it.
    pub fn as_str(self) -> &'static str {
        match self {
            KeySource::Native => "native",
            KeySource::Stripe => "stripe",
            KeySource::CloudEvents => "ce",
            KeySource::Lago => "lago",
        }
    }
}

/// An idempotency key within its source's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    pub source: KeySource,
    pub key: String,
}

impl From<&str> for IdempotencyKey {
    /// A key the caller chose: the native namespace.
    fn from(key: &str) -> Self {
        key.to_string().into()
    }
}

impl From<String> for IdempotencyKey {
    fn from(key: String) -> Self {
        IdempotencyKey {
            source: KeySource::Native,
            key,
        }
    }
}

/// What recording one event did, with the customer's standing after it.
#[derive(Debug, Clone)]
pub struct RecordOutcome {
    /// False when refused by the hard cap or when the key was seen before.
    pub recorded: bool,
    pub duplicate: bool,
    pub event_id: Option<i64>,
    /// The customer's standing in the event's period after this call: on the meter the
    /// event counted on, or, for an event of a type, its first meter (or the first that
    /// refused it).
    pub check: UsageCheck,
    /// An event of a type: every meter it fed (or would have), in `[[meters]]` order, with
    /// its standing after this call. Empty for an event on one meter.
    pub meters: Vec<FedMeter>,
    /// The meters whose hard cap refused the event (empty unless refused).
    pub refused_by: Vec<String>,
    /// The window limit that refused it, when one did.
    pub refused_window: Option<WindowRefusal>,
}

/// A window limit that refused an event: which, how full, and when the event would fit.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WindowRefusal {
    pub meter: String,
    /// "5h", "7d".
    pub window: String,
    pub kind: crate::config::WindowKind,
    pub limit: i64,
    /// The most the window holds where the event would fall, before it.
    pub used: i64,
    /// Seconds until the refused amount would fit (HTTP's `Retry-After`); none when waiting
    /// cannot make it fit (more than the limit, or a late event).
    pub retry_after: Option<i64>,
}

/// One window limit of a meter, as `check` shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WindowUsage {
    /// "5h", "7d".
    pub window: String,
    pub kind: crate::config::WindowKind,
    pub at_limit: crate::config::LimitAction,
    pub used: i64,
    pub limit: i64,
    pub remaining: i64,
    pub level: crate::billing::WarningLevel,
    /// A fixed window: when it ends and the next starts empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resets_at: Option<String>,
    /// A sliding window: the next instant `remaining` grows,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frees_at: Option<String>,
    /// and by how much.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frees_units: Option<i64>,
}

impl WindowUsage {
    /// True when the window takes no more: a blocking limit that is full.
    pub fn full(&self) -> bool {
        self.at_limit == crate::config::LimitAction::Block && self.remaining == 0
    }
}

/// One meter an event of a type fed: [`RecordOutcome::meters`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct FedMeter {
    pub meter: String,
    #[serde(flatten)]
    pub check: UsageCheck,
}

/// One meter's standing in a customer's current period: `check --json` per meter.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MeterCheck {
    pub meter: String,
    pub aggregation: crate::config::Aggregation,
    #[serde(flatten)]
    pub check: UsageCheck,
    /// The `group_by` breakdown, largest first.
    pub groups: Vec<GroupUsage>,
    /// The customer's credits in this meter's units, when it has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credits: Option<Amounts>,
    /// The plan's window limits of this meter.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<WindowUsage>,
}

/// A credit balance in one unit (money, or one meter's units): what the live grants have
/// left, what reservations hold of it, and what can still be spent.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Amounts {
    #[serde(with = "rust_decimal::serde::str")]
    pub balance: rust_decimal::Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub held: rust_decimal::Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub available: rust_decimal::Decimal,
}

impl Amounts {
    /// `amount` more in the balance.
    pub fn add(&mut self, amount: rust_decimal::Decimal) {
        self.balance = self.balance.saturating_add(amount);
        self.available = self
            .balance
            .saturating_sub(self.held)
            .max(rust_decimal::Decimal::ZERO);
    }

    /// `amount` more held.
    pub fn hold(&mut self, amount: rust_decimal::Decimal) {
        self.held = self.held.saturating_add(amount);
        self.add(rust_decimal::Decimal::ZERO);
    }
}

/// A customer's money credits in `check --json`: the balance, what is held and available,
/// and the money that expires next.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Credits {
    #[serde(flatten)]
    pub money: Amounts,
    pub expires_next: Option<Expiring>,
}

/// Money that expires at one instant.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Expiring {
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: rust_decimal::Decimal,
    pub at: String,
}

/// One group of a meter: its `group_by` values and its usage.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GroupUsage {
    /// The group's `group_by` values as stored, a JSON object (`{"model":"small"}`): kept
    /// as its text, since a check reads many groups and parsing each was a fifth of it.
    pub key: Box<serde_json::value::RawValue>,
    pub used: i64,
    /// The units past the meter's `included` that this group's events used, priced at the
    /// group's rate when each was recorded.
    pub overage_units: i64,
    #[serde(with = "rust_decimal::serde::str")]
    pub overage_amount: rust_decimal::Decimal,
}

impl GroupUsage {
    /// The group's `group_by` values, parsed.
    pub fn values(&self) -> serde_json::Value {
        serde_json::from_str(self.key.get()).unwrap_or(serde_json::Value::Null)
    }
}

/// A customer's standing on every meter: `check --json` without `--meter` and
/// `GET /v1/customers/{id}/check`. The default meter's fields at the top level, as before
/// meters existed, except `allowed`, which is false when any capped meter refuses more.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MeteredCheck {
    #[serde(flatten)]
    pub check: UsageCheck,
    /// The overage of every meter in the period, exact.
    #[serde(with = "rust_decimal::serde::str")]
    pub overage_total: rust_decimal::Decimal,
    /// The customer's money credits.
    pub credits: Credits,
    /// The default meter's window limits, as in its entry of `meters`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<WindowUsage>,
    pub meters: Vec<MeterCheck>,
}

impl MeteredCheck {
    /// From every meter's check, the default (first) one first; `None` without meters.
    pub fn new(meters: Vec<MeterCheck>) -> Option<MeteredCheck> {
        let mut check = meters.first()?.check.clone();
        check.allowed = meters.iter().all(|m| m.check.allowed);
        let overage_total = meters.iter().map(|m| m.check.overage_amount).sum();
        Some(MeteredCheck {
            check,
            overage_total,
            credits: Credits::default(),
            windows: Vec::new(),
            meters,
        })
    }

    /// One meter's check, by id.
    pub fn meter(&self, id: &str) -> Option<&MeterCheck> {
        self.meters.iter().find(|m| m.meter == id)
    }
}
