use std::process::ExitCode;

use super::{Context, output};
use crate::billing::UsageCheck;
use crate::config::{Aggregation, Meter};
use crate::sanitize::sanitize;
use crate::store::record::MAX_QUANTITY;
use crate::wire::EventOut;
use crate::{Config, RecordRequest, Result};
use chrono::{DateTime, Utc};
use meterline_core::metering::{self, MeterValue};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The customer id.
    #[arg(required_unless_present = "batch")]
    pub customer: Option<String>,
    /// Units used.
    #[arg(short = 'n', long = "quantity", default_value_t = 1, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i64).range(1..=MAX_QUANTITY))]
    pub quantity: i64,
    /// The member of an organisation account who used it.
    #[arg(long)]
    pub user: Option<String>,
    /// A repeated key records nothing and returns the original event.
    #[arg(long)]
    pub key: Option<String>,
    /// When it happened (default: now), RFC3339 in whole seconds: a fraction is dropped, a leap
    /// second (:60) is the next second. Late events count in their own period.
    #[arg(long, value_parser = crate::billing::parse_ts)]
    pub at: Option<DateTime<Utc>>,
    /// The meter it counts on (default: the first in plans.toml's [[meters]]).
    #[arg(long, value_name = "ID")]
    pub meter: Option<String>,
    /// The event's type: it feeds every meter whose `event` is this type, all or nothing.
    #[arg(long = "type", value_name = "TYPE", conflicts_with = "meter")]
    pub event_type: Option<String>,
    /// A property of the event, what its meter aggregates or groups by; repeat for more.
    #[arg(long = "property", value_name = "KEY=VALUE", value_parser = property)]
    pub properties: Vec<(String, String)>,
    #[arg(long, help = super::JSON_HELP)]
    pub json: bool,
    /// Record NDJSON events from FILE or `-` (stdin), one object a line with the fields of
    /// `POST /v1/events`, in transactions of up to 1,000 events.
    #[arg(long, value_name = "FILE|-", conflicts_with_all = ["customer", "user", "key", "at", "meter", "event_type", "properties"])]
    pub batch: Option<std::path::PathBuf>,
}

/// The `--property` pairs as properties; a key given twice is a mistake, not "the last wins".
pub(super) fn unique_properties(
    pairs: Vec<(String, String)>,
) -> Result<meterline_core::Properties> {
    let mut properties = meterline_core::Properties::new();
    for (key, value) in pairs {
        if properties.contains_key(&key) {
            return Err(crate::Error::InvalidInput(format!(
                "--property {} is given twice",
                crate::sanitize::sanitize(&key)
            )));
        }
        properties.insert(key, meterline_core::wire::property_text(value));
    }
    Ok(properties)
}

/// `KEY=VALUE`, split at the first `=`.
pub(super) fn property(text: &str) -> std::result::Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("\"{text}\" is not KEY=VALUE"))
}

pub fn exec(ctx: &Context, args: Args) -> Result<ExitCode> {
    if let Some(path) = &args.batch {
        return super::record_batch::exec(ctx, path, args.json);
    }
    let config = ctx.config()?;
    let mut store = ctx.write_store()?;
    let request = RecordRequest {
        customer_id: args.customer.unwrap_or_default(),
        quantity: args.quantity,
        user_id: args.user,
        idempotency_key: args.key.map(Into::into),
        occurred_at: args.at.unwrap_or(ctx.now),
        at_given: args.at.is_some(),
        meter: args.meter,
        event_type: args.event_type,
        properties: unique_properties(args.properties)?,
    };
    let outcome = store.record(&config, &request, ctx.now)?;
    let refused = !outcome.recorded && !outcome.duplicate;
    let standing = || standing_after(&config, &outcome);
    if args.json {
        output::print_json(&EventOut::new(&outcome, None))?;
    } else if outcome.duplicate {
        outln!(
            "duplicate key: event {} was recorded before; nothing counted",
            outcome.event_id.unwrap_or_default()
        )?;
        out!("{}", standing())?;
    } else if refused {
        for why in refusals(&config, &request, &outcome) {
            eprintln!("refused: {why}");
        }
        eprint!("{}", standing());
    } else {
        outln!(
            "recorded {} for {} (event {})",
            contributions(&config, &request),
            crate::sanitize::sanitize(&request.customer_id),
            outcome.event_id.unwrap_or_default()
        )?;
        out!("{}", standing())?;
    }
    Ok(if refused {
        ExitCode::from(output::REFUSED)
    } else {
        ExitCode::SUCCESS
    })
}

/// The standing after `outcome`: its meter's, or for an event of a type every meter's.
pub(super) fn standing_after(config: &Config, outcome: &meterline_core::RecordOutcome) -> String {
    let currency = &config.billing.currency;
    if outcome.meters.is_empty() {
        return output::describe(&outcome.check, currency);
    }
    output::describe_fed(config, &outcome.meters, currency)
}

/// What `request` adds to the sum or count meter `meter_id`: its value, or 1 for a count.
fn window_units(config: &Config, request: &RecordRequest, meter_id: &str) -> i64 {
    match meter_value(config, request, config.meter(meter_id)) {
        Some((_, MeterValue::Number(n))) => n,
        _ => request.quantity,
    }
}

/// Why `outcome` was refused, a line each: the window that would not take it, else each
/// meter whose cap refused it.
pub(super) fn refusals(
    config: &Config,
    request: &RecordRequest,
    outcome: &meterline_core::RecordOutcome,
) -> Vec<String> {
    if let Some(window) = &outcome.refused_window {
        let units = window_units(config, request, &window.meter);
        return vec![output::window_refusal(&request.customer_id, units, window)];
    }
    refusing(config, request, outcome)
        .into_iter()
        .map(|meter| refusal(config, request, meter, &outcome.check))
        .collect()
}

/// The meters whose cap refused `outcome` (`None`: the event's one meter).
fn refusing<'c>(
    config: &'c Config,
    request: &RecordRequest,
    outcome: &meterline_core::RecordOutcome,
) -> Vec<Option<&'c Meter>> {
    if request.event_type.is_none() {
        return vec![None];
    }
    outcome
        .refused_by
        .iter()
        .filter_map(|id| config.meter(id))
        .map(Some)
        .collect()
}

/// What `request` adds to each meter it feeds, in words: "1,200 on tokens", "user \"ann\" on
/// active_users", "30 on peak (max)", a type's each after its name ("completion: 1 on
/// requests, 1,200 on tokens"); without `[[meters]]` the quantity alone, as before meters.
fn contributions(config: &Config, request: &RecordRequest) -> String {
    let Some(event_type) = &request.event_type else {
        return contribution(config, request, None);
    };
    let meters = config.meters_of_type(event_type).unwrap_or_default();
    let each: Vec<String> = meters
        .into_iter()
        .map(|m| contribution(config, request, Some(m)))
        .collect();
    format!("{}: {}", sanitize(event_type), each.join(", "))
}

/// What `request` adds to `meter` (`None`: the meter it names, or the default one).
fn contribution(config: &Config, request: &RecordRequest, meter: Option<&Meter>) -> String {
    let Some((meter, value)) = meter_value(config, request, meter) else {
        return output::thousands(request.quantity);
    };
    let id = sanitize(&meter.id);
    match (value, meter.aggregation) {
        (MeterValue::Distinct(v), _) => format!(
            "{} \"{}\" on {id}",
            meter.property.as_deref().unwrap_or_default(),
            sanitize(&v)
        ),
        (MeterValue::Number(n), Aggregation::Sum | Aggregation::Count) => {
            format!("{} on {id}", output::thousands(n))
        }
        (MeterValue::Number(n), aggregation) => {
            format!(
                "{} on {id} ({})",
                output::thousands(n),
                aggregation.as_str()
            )
        }
    }
}

/// Why a hard cap refused `request` on `meter` (`None`: the one meter it names, or the
/// default): what it would have added or set, and the limit. `check` is the standing of the
/// first meter that refused, as the refusal left it.
fn refusal(
    config: &Config,
    request: &RecordRequest,
    meter: Option<&Meter>,
    check: &UsageCheck,
) -> String {
    let customer = sanitize(&request.customer_id);
    let of_limit = check
        .limit
        .map_or(String::new(), |l| format!(" of {}", output::thousands(l)));
    let Some((meter, value)) = meter_value(config, request, meter) else {
        return format!(
            "recording {} would pass {customer}'s hard cap{of_limit}",
            output::thousands(request.quantity)
        );
    };
    let id = sanitize(&meter.id);
    match (value, meter.aggregation) {
        (MeterValue::Distinct(v), _) => format!(
            "{id}: {} \"{}\" would be one past {customer}'s hard cap{of_limit}",
            meter.property.as_deref().unwrap_or_default(),
            sanitize(&v)
        ),
        (MeterValue::Number(n), Aggregation::Sum | Aggregation::Count) => format!(
            "{id}: {} more would pass {customer}'s hard cap{of_limit}",
            output::thousands(n)
        ),
        // max and latest: the value itself is what passes the cap.
        (MeterValue::Number(n), _) => format!(
            "{id}: {} would pass {customer}'s hard cap{of_limit}",
            output::thousands(n)
        ),
    }
}

/// With `[[meters]]`: the event's meter (`meter`, else the one it names or the default) and
/// what it adds to it (`None` without `[[meters]]`, or for an event its meter does not take,
/// which was never recorded).
fn meter_value<'c>(
    config: &'c Config,
    request: &RecordRequest,
    meter: Option<&'c Meter>,
) -> Option<(&'c Meter, MeterValue)> {
    if config.implicit_meter().is_some() {
        return None;
    }
    let meter = match (meter, &request.meter) {
        (Some(meter), _) => meter,
        (None, Some(id)) => config.meter(id)?,
        (None, None) => config.default_meter(),
    };
    let value = metering::meter_value(meter, request.quantity, &request.properties).ok()?;
    Some((meter, value))
}
