//! Raw plans.toml -> validated `Config`, with one precise message per mistake.

use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;

use rust_decimal::Decimal;

use super::meters::{
    Meter, MeterTerms, Mistake, implicit_meter, validate_meters, validate_plan_meters,
};
use super::raw::{RawAlert, RawAmount, RawConfig, RawIngest, RawPlan, RawStripe, RawWindowAlerts};
use super::{
    AlertRule, AlertTarget, AtLimit, BillingSettings, Config, DEFAULT_API_BASE,
    DEFAULT_API_VERSION, DEFAULT_CURRENCY, DEFAULT_METER_EVENT, IngestSettings, Plan,
    StripeSettings, WindowAlerts,
};
use crate::billing::{PeriodKind, Thresholds, WarningLevel};

/// Why plans.toml could not be used: unreadable, not TOML, or not valid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read plans file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{origin}: {message}")]
    Syntax { origin: String, message: String },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

pub(crate) fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        origin: origin.to_string(),
        message: e.to_string().trim_end().to_string(),
    })?;
    validate(raw, text).map_err(|message| ConfigError::Invalid {
        origin: origin.to_string(),
        message,
    })
}

/// "line L, column C: message" when the mistake's place is known (toml's own errors say
/// where too).
fn placed(text: &str, mistake: Mistake) -> String {
    let Some(span) = mistake.span else {
        return mistake.message;
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}: {}", mistake.message)
}

/// Ids of plans and meters: what a URL, a CLI argument and a database key all take as is.
pub(super) fn is_plain_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
}

fn validate(raw: RawConfig, text: &str) -> Result<Config, String> {
    let thresholds = Thresholds {
        warning: raw.thresholds.warning.unwrap_or(0.80),
        critical: raw.thresholds.critical.unwrap_or(0.95),
    };
    for (name, value) in [
        ("warning", thresholds.warning),
        ("critical", thresholds.critical),
    ] {
        if !(value > 0.0 && value < 1.0) {
            return Err(format!(
                "[thresholds] {name} = {value} must be between 0 and 1 (exclusive), e.g. 0.80"
            ));
        }
    }
    if thresholds.warning >= thresholds.critical {
        return Err(format!(
            "[thresholds] warning ({}) must be below critical ({})",
            thresholds.warning, thresholds.critical
        ));
    }

    let period = match raw.billing.period.as_deref() {
        None | Some("anniversary") => PeriodKind::Anniversary,
        Some("calendar") => PeriodKind::Calendar,
        Some(other) => {
            return Err(format!(
                "[billing] period = \"{other}\" is not known; use \"anniversary\" or \"calendar\""
            ));
        }
    };

    let currency = raw
        .billing
        .currency
        .map_or_else(|| DEFAULT_CURRENCY.to_string(), |c| c.0);
    let stripe = validate_stripe(raw.stripe)?;
    let explicit_meters = !raw.meters.is_empty();
    let meters = if explicit_meters {
        validate_meters(raw.meters, check_meter_event).map_err(|m| placed(text, m))?
    } else {
        vec![implicit_meter(&stripe.meter_event)]
    };

    if raw.plans.is_empty() {
        return Err("no [[plans]] defined; a plan with id = \"free\" is required".into());
    }
    let mut seen = HashSet::new();
    let mut plans = Vec::with_capacity(raw.plans.len());
    for (index, raw_plan) in raw.plans.into_iter().enumerate() {
        let plan = validate_plan(raw_plan, &stripe.meter_event, &meters, explicit_meters).map_err(
            |m| {
                let message = format!("[[plans]] #{}: {}", index + 1, m.message);
                placed(text, Mistake { message, ..m })
            },
        )?;
        if !seen.insert(plan.id.clone()) {
            return Err(format!(
                "[[plans]] #{}: duplicate plan id \"{}\"",
                index + 1,
                plan.id
            ));
        }
        plans.push(plan);
    }
    if !seen.contains("free") {
        return Err(
            "no plan with id = \"free\"; the free plan is required (it is the default for new customers)"
                .into(),
        );
    }
    let alerts = raw
        .alerts
        .into_iter()
        .enumerate()
        .map(|(index, mut alert)| {
            let numbered = |message: String| format!("[[alerts]] #{}: {message}", index + 1);
            let credits_below = alert
                .credits_below
                .take()
                .map(|amount| {
                    let span = Some(amount.span());
                    credit_threshold(amount.into_inner()).map_err(|m| {
                        let message = numbered(m);
                        placed(text, Mistake { span, message })
                    })
                })
                .transpose()?;
            validate_alert(alert, credits_below, &seen).map_err(numbered)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ingest = validate_ingest(raw.ingest, &plans)?;
    Ok(Config {
        plans,
        meters,
        explicit_meters,
        thresholds,
        billing: BillingSettings { period, currency },
        stripe,
        alerts,
        ingest,
    })
}

/// Every `[ingest.value_property]` key must be a meter event some plan uses (a typo would
/// silently count 1 per event), and every field name must be non-empty.
fn validate_ingest(raw: RawIngest, plans: &[Plan]) -> Result<IngestSettings, String> {
    for (meter, field) in &raw.value_property {
        if !plans.iter().any(|p| &p.meter_event == meter) {
            let mut known: Vec<&str> = plans.iter().map(|p| p.meter_event.as_str()).collect();
            known.sort_unstable();
            known.dedup();
            return Err(format!(
                "[ingest.value_property] \"{}\" is not the meter event of any plan; \
                 the plans use: {}",
                meter.escape_debug(),
                known.join(", ")
            ));
        }
        if field.trim().is_empty() || field.len() > 100 {
            return Err(format!(
                "[ingest.value_property] {meter} = \"{}\" must name a payload field \
                 (1 to 100 characters)",
                field.escape_debug()
            ));
        }
    }
    Ok(IngestSettings {
        value_property: raw.value_property,
    })
}

/// `credits_below`: money above 0, bounded like a credit grant (at most 10^12, 12 decimals).
fn credit_threshold(raw: RawAmount) -> Result<Decimal, String> {
    let threshold = amount_within(raw, "credits_below", MAX_CREDIT_AMOUNT)?;
    if threshold.is_zero() {
        return Err(
            "credits_below = 0 would never alert; give the balance to warn below, e.g. \"5.00\""
                .into(),
        );
    }
    Ok(threshold.normalize())
}

fn validate_alert(
    raw: RawAlert,
    credits_below: Option<Decimal>,
    plan_ids: &HashSet<String>,
) -> Result<AlertRule, String> {
    let target = match (raw.webhook, raw.command) {
        (Some(url), None) => AlertTarget::Webhook(url.0),
        (None, Some(argv)) if argv.first().is_some_and(|p| !p.trim().is_empty()) => {
            AlertTarget::Command(argv)
        }
        (None, Some(_)) => {
            return Err(
                "command = [] needs the program first, e.g. command = [\"/usr/local/bin/notify\", \"--channel\", \"billing\"]"
                    .into(),
            );
        }
        (Some(_), Some(_)) => {
            return Err(
                "has both webhook and command; give one per [[alerts]] entry (add another entry for the other)"
                    .into(),
            );
        }
        (None, None) => {
            return Err(
                "needs webhook = \"https://...\" or command = [\"/path/to/program\", ...]".into(),
            );
        }
    };
    let levels = match raw.levels {
        // An entry for credits gets usage levels only when it names them.
        None if credits_below.is_some() => Vec::new(),
        None => vec![
            WarningLevel::Warning,
            WarningLevel::Critical,
            WarningLevel::HardCap,
        ],
        Some(levels) if levels.is_empty() => {
            return Err(
                "levels = [] delivers nothing; leave levels out for all three, or remove the entry"
                    .into(),
            );
        }
        Some(levels) => {
            let mut out: Vec<WarningLevel> = Vec::new();
            for level in levels {
                if out.contains(&level.0) {
                    return Err(format!("levels names \"{}\" twice", level.0.as_str()));
                }
                out.push(level.0);
            }
            out
        }
    };
    if let Some(plans) = &raw.plans {
        if plans.is_empty() {
            return Err(
                "plans = [] delivers nothing; leave plans out for every plan, or remove the entry"
                    .into(),
            );
        }
        if let Some(unknown) = plans.iter().find(|p| !plan_ids.contains(p.as_str())) {
            return Err(format!(
                "plans names \"{unknown}\", which is not a plan id in this file"
            ));
        }
    }
    let timeout_secs = match raw.timeout_secs {
        None => 10.0,
        Some(t) if t > 0.0 && t <= 600.0 => t,
        Some(t) => {
            return Err(format!(
                "timeout_secs = {t} must be above 0 and at most 600"
            ));
        }
    };
    let max_attempts = match raw.max_attempts {
        None => crate::alerts::DEFAULT_MAX_ATTEMPTS,
        Some(n) if (1..=1000).contains(&n) => n as u32,
        Some(n) => return Err(format!("max_attempts = {n} must be between 1 and 1000")),
    };
    let windows = match raw.windows {
        None | Some(RawWindowAlerts::All(false)) => WindowAlerts::None,
        Some(RawWindowAlerts::All(true)) => WindowAlerts::All,
        Some(RawWindowAlerts::Only(windows)) if windows.is_empty() => {
            return Err(
                "windows = [] selects no window; leave it out, or write windows = true for all"
                    .into(),
            );
        }
        Some(RawWindowAlerts::Only(windows)) => WindowAlerts::Only(
            windows
                .iter()
                .map(|w| super::limits::parse_window(w))
                .collect::<Result<_, _>>()?,
        ),
    };
    Ok(AlertRule {
        target,
        levels,
        credits_below,
        plans: raw.plans,
        windows,
        timeout_secs,
        max_attempts,
    })
}

fn validate_stripe(raw: RawStripe) -> Result<StripeSettings, String> {
    let meter_event = raw
        .meter_event
        .unwrap_or_else(|| DEFAULT_METER_EVENT.to_string());
    check_meter_event(&meter_event).map_err(|m| format!("[stripe] {m}"))?;
    let api_base = raw
        .api_base
        .unwrap_or_else(|| DEFAULT_API_BASE.to_string())
        .trim_end_matches('/')
        .to_string();
    if !(api_base.starts_with("https://") || api_base.starts_with("http://")) {
        return Err(format!(
            "[stripe] api_base = \"{api_base}\" must be an http(s) URL"
        ));
    }
    let rate_limit = match raw.rate_limit {
        None => None,
        Some(n) if (0..=1_000_000).contains(&n) => Some(n as u32),
        Some(n) => {
            return Err(format!(
                "[stripe] rate_limit = {n} must be between 0 (no limit) and 1000000 requests/s"
            ));
        }
    };
    let workers = match raw.workers {
        None => 8,
        Some(n) if (1..=256).contains(&n) => n as usize,
        Some(n) => return Err(format!("[stripe] workers = {n} must be between 1 and 256")),
    };
    let timeout_secs = match raw.timeout_secs {
        None => 10.0,
        Some(t) if t > 0.0 && t <= 600.0 => t,
        Some(t) => {
            return Err(format!(
                "[stripe] timeout_secs = {t} must be above 0 and at most 600"
            ));
        }
    };
    let max_attempts = match raw.max_attempts {
        None => 5,
        Some(n) if (1..=100).contains(&n) => n as u32,
        Some(n) => {
            return Err(format!(
                "[stripe] max_attempts = {n} must be between 1 and 100"
            ));
        }
    };
    let report = match raw.report.as_deref() {
        None | Some("aggregate") => super::ReportMode::Aggregate,
        Some("per_event") => super::ReportMode::PerEvent,
        Some(other) => {
            return Err(format!(
                "[stripe] report = \"{}\" must be \"aggregate\" (one meter event per customer, \
                 meter and period) or \"per_event\" (one per usage event)",
                other.escape_debug()
            ));
        }
    };
    let report_units = match raw.report_units.as_deref() {
        None | Some("all") => super::ReportUnits::All,
        Some("billable") => super::ReportUnits::Billable,
        Some(other) => {
            return Err(format!(
                "[stripe] report_units = \"{}\" must be \"all\" (every unit) or \"billable\" \
                 (only the units neither the allowance nor credits covered)",
                other.escape_debug()
            ));
        }
    };
    let expiry_warning_days = match raw.expiry_warning_days {
        None => 3,
        Some(n) if (0..=34).contains(&n) => n as u32,
        Some(n) => {
            return Err(format!(
                "[stripe] expiry_warning_days = {n} must be between 0 and 34"
            ));
        }
    };
    Ok(StripeSettings {
        report,
        report_units,
        expiry_warning_days,
        meter_event,
        api_base,
        api_version: raw
            .api_version
            .unwrap_or_else(|| DEFAULT_API_VERSION.to_string()),
        rate_limit,
        workers,
        timeout_secs,
        max_attempts,
    })
}

/// The largest price or overage rate plans.toml accepts.
pub(crate) const MAX_AMOUNT: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);
/// The largest credit amount: 10^12, as for a credit grant.
const MAX_CREDIT_AMOUNT: Decimal = Decimal::from_parts(0xD4A5_1000, 0xE8, 0, false, 0);
/// The most decimal places of a price or overage rate.
pub(crate) const MAX_DECIMALS: u32 = 12;
/// The most units a plan may include per period.
pub(crate) const MAX_INCLUDED: i64 = 1_000_000_000_000_000;

fn validate_plan(
    raw: RawPlan,
    global_meter_event: &str,
    meters: &[Meter],
    explicit_meters: bool,
) -> Result<Plan, Mistake> {
    let id = raw.id.trim().to_string();
    if !is_plain_id(&id) {
        return Err(unplaced(format!(
            "plan id \"{}\" must be non-empty letters, digits, '-' or '_'",
            raw.id
        )));
    }
    let at = |m: String| format!("plan \"{id}\": {m}");
    let price = match raw.price {
        None => Decimal::ZERO,
        Some(amount) => amount_of(amount, "price").map_err(|m| unplaced(at(m)))?,
    };
    let top_level = raw.included.is_some()
        || raw.at_limit.is_some()
        || raw.overage_rate.is_some()
        || raw.limits.is_some();
    let meter_terms = match raw.meters {
        Some(_) | None if explicit_meters && top_level => {
            return Err(unplaced(at(
                "with [[meters]], a plan's included, at_limit, overage_rate and limits go \
                 under [plans.meters.ID], one table per meter"
                    .into(),
            )));
        }
        Some(tables) if explicit_meters => validate_plan_meters(tables, meters, terms, |a| {
            amount_of(a, "rate")
        })
        .map_err(|m| Mistake {
            message: at(m.message),
            ..m
        })?,
        Some(_) => {
            return Err(unplaced(at(
                "[plans.meters.…] needs the meters defined in [[meters]]".into(),
            )));
        }
        None if explicit_meters => BTreeMap::new(),
        None => {
            let mut usage =
                terms(raw.included, raw.at_limit, raw.overage_rate).map_err(|m| unplaced(at(m)))?;
            if let (Some(limits), Some(implicit)) = (raw.limits, meters.first()) {
                usage.limits =
                    super::limits::validate_limits(limits, implicit).map_err(|m| Mistake {
                        message: at(m.message),
                        ..m
                    })?;
            }
            meters
                .iter()
                .map(|implicit| (implicit.id.clone(), usage.clone()))
                .collect()
        }
    };
    let meter_event = raw
        .meter_event
        .unwrap_or_else(|| global_meter_event.to_string());
    check_meter_event(&meter_event).map_err(|m| unplaced(at(m)))?;
    let credits = raw
        .credits
        .map(|c| plan_credits(c, &meter_terms))
        .transpose()
        .map_err(|m| unplaced(at(m)))?;
    // The plan's own terms are its default meter's (the first), as a check's are.
    let usage = meters.first().and_then(|m| meter_terms.get(&m.id));
    Ok(Plan {
        name: raw.name.unwrap_or_else(|| id.clone()),
        id,
        price,
        included: usage.and_then(|t| t.included),
        at_limit: usage.map_or(AtLimit::Block, |t| t.at_limit),
        overage_rate: usage.and_then(|t| t.overage_rate),
        meter_event,
        kept_meter_terms: super::meters::keep_meter_terms(&meter_terms),
        meters: meter_terms,
        credits,
    })
}

/// `[plans.credits]` checked: a grant above 0 that can buy something (a price on one of the
/// plan's meters), and a rollover of at most the grant.
fn plan_credits(
    raw: super::raw::RawPlanCredits,
    terms: &super::MeterTermsMap,
) -> Result<super::PlanCredits, String> {
    let grant = amount_of(raw.grant, "[plans.credits] grant")?;
    let rollover = raw
        .rollover
        .map(|r| amount_of(r, "[plans.credits] rollover"))
        .transpose()?
        .unwrap_or(Decimal::ZERO);
    if grant.is_zero() {
        return Err("[plans.credits] grant must be more than 0".into());
    }
    if rollover > grant {
        return Err(format!(
            "[plans.credits] rollover = {rollover} is more than the grant ({grant}); at most \
             the grant's remainder can carry over"
        ));
    }
    if !terms
        .values()
        .any(|t| t.overage_rate.is_some() || !t.rates.is_empty())
    {
        return Err(
            "[plans.credits] grants money, but no meter of the plan has a price \
             (overage_rate or rates) for it to pay"
                .into(),
        );
    }
    Ok(super::PlanCredits {
        grant: grant.normalize(),
        rollover: rollover.normalize(),
    })
}

fn unplaced(message: String) -> Mistake {
    Mistake {
        span: None,
        message,
    }
}

/// A plan's terms for one meter (or, without `[[meters]]`, for its usage).
fn terms(
    included: Option<i64>,
    at_limit: Option<String>,
    overage_rate: Option<RawAmount>,
) -> Result<MeterTerms, String> {
    if let Some(included) = included
        && !(0..=MAX_INCLUDED).contains(&included)
    {
        return Err(format!(
            "included = {included} must be between 0 and {MAX_INCLUDED} (leave it out for unlimited)"
        ));
    }
    let at_limit = match at_limit.as_deref() {
        None | Some("block") => AtLimit::Block,
        Some("overage") => AtLimit::Overage,
        Some(other) => {
            return Err(format!(
                "at_limit = \"{other}\" is not known; use \"block\" (hard cap) or \"overage\""
            ));
        }
    };
    let overage_rate = overage_rate
        .map(|r| amount_of(r, "overage_rate"))
        .transpose()?;
    match (at_limit, overage_rate) {
        (AtLimit::Overage, None) if included.is_some() => {
            return Err(
                "at_limit = \"overage\" needs overage_rate, the price per extra unit, e.g. \"0.015\""
                    .into(),
            );
        }
        (AtLimit::Block, Some(_)) => {
            return Err(
                "overage_rate is set but at_limit is \"block\"; set at_limit = \"overage\" or remove the rate"
                    .into(),
            );
        }
        _ => {}
    }
    Ok(MeterTerms {
        included,
        at_limit,
        overage_rate,
        rates: Vec::new(),
        limits: Vec::new(),
    })
}

/// Exact, non-negative money. Floats are refused: 0.1 in binary is not 0.1.
fn amount_of(raw: RawAmount, field: &str) -> Result<Decimal, String> {
    amount_within(raw, field, MAX_AMOUNT)
}

/// [`amount_of`] with its own upper bound.
fn amount_within(raw: RawAmount, field: &str, max: Decimal) -> Result<Decimal, String> {
    let value = match raw {
        RawAmount::Whole(n) => Decimal::from(n),
        RawAmount::Text(text) => Decimal::from_str(text.trim()).map_err(|_| {
            format!("{field} = \"{text}\" is not a number; write an exact decimal like \"0.015\"")
        })?,
        RawAmount::Float(f) => {
            return Err(format!(
                "{field} = {f} is a float; write money as an exact decimal string: {field} = \"{f}\""
            ));
        }
    };
    if value.is_sign_negative() && !value.is_zero() {
        return Err(format!("{field} = {value} must not be negative"));
    }
    // Bounds keep every amount computed from them representable: the whole part of the
    // largest overage, MAX_AMOUNT x i64::MAX units, fits rust_decimal's 96 bits.
    if value > max {
        return Err(format!("{field} = {value} is too large; at most {max}"));
    }
    if value.normalize().scale() > MAX_DECIMALS {
        return Err(format!(
            "{field} = {value} has too many decimal places; at most {MAX_DECIMALS}"
        ));
    }
    Ok(value)
}

fn check_meter_event(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 100 {
        return Err(format!(
            "meter_event \"{name}\" must be 1 to 100 characters (Stripe's limit)"
        ));
    }
    if !super::meters::is_stripe_event_name(name) {
        return Err(format!(
            "meter_event \"{name}\" may only contain letters, digits, '_', '-', '.', ':'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alerts_of(entries: &str) -> Vec<AlertRule> {
        let text = format!("[[plans]]\nid = \"free\"\n{entries}");
        parse(&text, "plans.toml").unwrap().alerts
    }

    #[test]
    fn an_entry_with_credits_below_gets_usage_levels_only_when_it_names_them() {
        let rules = alerts_of(
            "[[alerts]]\nwebhook = \"https://a.example.com/h\"\ncredits_below = \"5.00\"\n\
             [[alerts]]\nwebhook = \"https://b.example.com/h\"\ncredits_below = 20\n\
             levels = [\"hard_cap\"]\n\
             [[alerts]]\nwebhook = \"https://c.example.com/h\"\n",
        );
        assert_eq!(rules[0].credits_below, Some(Decimal::new(5, 0)));
        assert!(rules[0].levels.is_empty());
        assert_eq!(rules[1].credits_below, Some(Decimal::new(20, 0)));
        assert_eq!(rules[1].levels, [WarningLevel::HardCap]);
        assert_eq!(rules[2].credits_below, None);
        assert_eq!(rules[2].levels.len(), 3);
    }
}
