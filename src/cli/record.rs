use std::process::ExitCode;

use super::{Context, output};
use crate::store::record::MAX_QUANTITY;
use crate::wire::EventOut;
use crate::{RecordRequest, Result};
use chrono::{DateTime, Utc};

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
    /// A property of the event, what its meter aggregates or groups by; repeat for more.
    #[arg(long = "property", value_name = "KEY=VALUE", value_parser = property)]
    pub properties: Vec<(String, String)>,
    #[arg(long)]
    pub json: bool,
    /// Record NDJSON events from FILE or `-` (stdin), one object a line with the fields of
    /// `POST /v1/events`, in transactions of up to 1,000 events.
    #[arg(long, value_name = "FILE|-", conflicts_with_all = ["customer", "user", "key", "at", "meter", "properties"])]
    pub batch: Option<std::path::PathBuf>,
}

/// The `--property` pairs as properties; a key given twice is a mistake, not "the last wins".
fn unique_properties(pairs: Vec<(String, String)>) -> Result<meterline_core::Properties> {
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
fn property(text: &str) -> std::result::Result<(String, String), String> {
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
        properties: unique_properties(args.properties)?,
    };
    let outcome = store.record(&config, &request, ctx.now)?;
    let refused = !outcome.recorded && !outcome.duplicate;
    if args.json {
        output::print_json(&EventOut::new(&outcome, None))?;
    } else if outcome.duplicate {
        outln!(
            "duplicate key: event {} was recorded before; nothing counted",
            outcome.event_id.unwrap_or_default()
        )?;
        out!(
            "{}",
            output::describe(&outcome.check, &config.billing.currency)
        )?;
    } else if refused {
        eprintln!(
            "refused: recording {} would pass {}'s hard cap",
            output::thousands(request.quantity),
            crate::sanitize::sanitize(&request.customer_id)
        );
        eprint!(
            "{}",
            output::describe(&outcome.check, &config.billing.currency)
        );
    } else {
        outln!(
            "recorded {} for {} (event {})",
            output::thousands(request.quantity),
            crate::sanitize::sanitize(&request.customer_id),
            outcome.event_id.unwrap_or_default()
        )?;
        out!(
            "{}",
            output::describe(&outcome.check, &config.billing.currency)
        )?;
    }
    Ok(if refused {
        ExitCode::from(output::REFUSED)
    } else {
        ExitCode::SUCCESS
    })
}
