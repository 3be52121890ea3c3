//! `meterline reserve`, `settle` and `release`: hold what an event would use before the work,
//! record what it really used after, or free the hold.

use std::process::ExitCode;

use super::{Context, output};
use crate::Result;
use crate::sanitize::sanitize;
use crate::store::{NewReservation, Reservation, Reserved};

#[derive(Debug, clap::Args)]
pub struct ReserveArgs {
    /// The customer id.
    customer: String,
    /// The event's type: hold on every meter of it.
    #[arg(long = "type", value_name = "TYPE", conflicts_with = "meter")]
    event_type: Option<String>,
    /// The one meter to hold on (default: the first in plans.toml's [[meters]]).
    #[arg(long, value_name = "ID")]
    meter: Option<String>,
    /// An estimated property of the event; repeat for more.
    #[arg(long = "property", value_name = "KEY=VALUE", value_parser = super::record::property)]
    properties: Vec<(String, String)>,
    /// Units the event would use, as `record -n`: the same as --property quantity=N.
    #[arg(short = 'n', long, value_name = "N")]
    quantity: Option<i64>,
    /// How long the hold lasts unless settled or released: 90s, 10m, 1h (at most 1h).
    #[arg(long, value_parser = ttl, default_value = "10m")]
    ttl: i64,
    /// A repeated key returns the same reservation; a settle records its event under it, so
    /// one that another customer or an event holds is refused, and no record may take it
    /// until the reservation is settled or released.
    #[arg(long)]
    key: Option<String>,
    #[arg(long, help = super::JSON_HELP)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct SettleArgs {
    /// The reservation id `reserve` printed.
    reservation: String,
    /// What the work really used, each in place of the estimate's (the rest is kept); repeat
    /// for more.
    #[arg(long = "property", value_name = "KEY=VALUE", value_parser = super::record::property)]
    properties: Vec<(String, String)>,
    /// Units the work really used, as `record -n`: the same as --property quantity=N.
    #[arg(short = 'n', long, value_name = "N")]
    quantity: Option<i64>,
    #[arg(long, help = super::JSON_HELP)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ReleaseArgs {
    /// The reservation id `reserve` printed.
    reservation: String,
    #[arg(long, help = super::JSON_HELP)]
    json: bool,
}

/// The `--property` pairs, with `-n N` as the `quantity` property (given once: by one or
/// the other).
fn properties(
    mut pairs: Vec<(String, String)>,
    quantity: Option<i64>,
) -> Result<meterline_core::Properties> {
    if let Some(n) = quantity {
        if pairs.iter().any(|(key, _)| key == crate::config::QUANTITY) {
            return Err(crate::Error::InvalidInput(
                "the quantity is given twice: -n N or --property quantity=N, not both".into(),
            ));
        }
        pairs.push((crate::config::QUANTITY.to_string(), n.to_string()));
    }
    super::record::unique_properties(pairs)
}

/// A ttl in seconds from `10m`, `90s`, `1h` (or a bare number of seconds).
fn ttl(text: &str) -> std::result::Result<i64, String> {
    let seconds = match text.parse::<u64>() {
        Ok(seconds) => seconds,
        Err(_) => humantime::parse_duration(text)
            .map_err(|e| format!("\"{text}\" is not a duration like 90s, 10m or 1h: {e}"))?
            .as_secs(),
    };
    i64::try_from(seconds).map_err(|_| format!("{text} is too long"))
}

pub fn reserve(ctx: &Context, args: ReserveArgs) -> Result<ExitCode> {
    let config = ctx.config()?;
    let request = NewReservation {
        customer: args.customer,
        event_type: args.event_type,
        meter: args.meter,
        properties: properties(args.properties, args.quantity)?,
        ttl_secs: args.ttl,
        key: args.key,
    };
    let reserved = ctx.write_store()?.reserve(&config, &request, ctx.now)?;
    if args.json {
        output::print_json(&reserved.to_json())?;
    }
    match &reserved {
        Reserved::Held {
            reservation,
            duplicate,
            ..
        } => {
            if !args.json {
                // The id alone on stdout, for `R=$(meterline reserve …)`; the rest for people.
                if *duplicate {
                    eprintln!("duplicate key: reservation made before");
                }
                outln!("{}", reservation.id)?;
                eprint!("{}", describe(reservation));
            }
            Ok(ExitCode::SUCCESS)
        }
        Reserved::Refused(outcome) => {
            if !args.json {
                eprintln!(
                    "refused: a record of this estimate would pass the cap of {}; nothing is held",
                    outcome.refused_by.join(", ")
                );
            }
            Ok(ExitCode::from(output::REFUSED))
        }
    }
}

pub fn settle(ctx: &Context, args: SettleArgs) -> Result<ExitCode> {
    let config = ctx.config()?;
    let properties = if args.properties.is_empty() && args.quantity.is_none() {
        None
    } else {
        Some(properties(args.properties, args.quantity)?)
    };
    let settled = ctx
        .write_store()?
        .settle(&config, &args.reservation, properties, ctx.now)?;
    if args.json {
        output::print_json(&settled.to_json())?;
        return Ok(ExitCode::SUCCESS);
    }
    let outcome = &settled.outcome;
    if outcome.duplicate {
        outln!(
            "settled before: event {} was recorded; nothing counted",
            outcome.event_id.unwrap_or_default()
        )?;
    } else {
        outln!(
            "settled {}: event {}",
            settled.reservation.id,
            outcome.event_id.unwrap_or_default()
        )?;
    }
    if settled.lapsed {
        outln!(
            "note: the hold had lapsed at {}; the event is recorded all the same",
            settled.reservation.expires_at
        )?;
    }
    out!("{}", super::record::standing_after(&config, outcome))?;
    Ok(ExitCode::SUCCESS)
}

pub fn release(ctx: &Context, args: ReleaseArgs) -> Result<ExitCode> {
    let released = ctx.write_store()?.release(&args.reservation, ctx.now)?;
    if args.json {
        output::print_json(&released)?;
    } else if released.already {
        outln!(
            "{} was released before; nothing changed",
            released.reservation.id
        )?;
    } else {
        outln!("released {}", released.reservation.id)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// What a reservation holds, a line per meter, and until when.
fn describe(reservation: &Reservation) -> String {
    let mut out = String::new();
    for hold in &reservation.holds {
        out.push_str(&format!(
            "holds {} {}",
            output::thousands(hold.units),
            sanitize(&hold.meter)
        ));
        if hold.credit_units > 0 {
            out.push_str(&format!(" ({} paid by unit credits)", hold.credit_units));
        }
        if !hold.credit_amount.is_zero() {
            out.push_str(&format!(" ({} of credits)", hold.credit_amount));
        }
        out.push('\n');
    }
    out.push_str(&format!("until {}\n", reservation.expires_at));
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_ttl_default_is_the_stores_and_durations_read_as_seconds() {
        assert_eq!(super::ttl("10m"), Ok(crate::store::DEFAULT_TTL_SECS));
        assert_eq!(super::ttl("1h"), Ok(crate::store::MAX_TTL_SECS));
        assert_eq!(super::ttl("90"), Ok(90));
        assert!(super::ttl("soon").is_err());
    }
}
