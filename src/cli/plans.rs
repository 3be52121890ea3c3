use std::process::ExitCode;

use super::{Context, output};
use crate::Result;
use crate::config::{AtLimit, Config, IMPLICIT_METER, MeterTerms, Rate};
use crate::sanitize::sanitize;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, help = super::JSON_HELP)]
    pub json: bool,
}

pub fn exec(ctx: &Context, args: Args) -> Result<ExitCode> {
    let config = ctx.config()?;
    // With a database present, the file must still define every plan a customer is on.
    let missing = if ctx.db.is_file() || ctx.on_postgres() {
        match ctx.store() {
            Ok(store) => store.customers_on_missing_plans(&config)?,
            // An empty PostgreSQL database, like a file not there yet: nobody to name.
            Err(crate::Error::NoDatabase) => Vec::new(),
            Err(e) => return Err(e),
        }
    } else {
        Vec::new()
    };
    // Counting that changed under the database: said, not refused (plans.toml is valid).
    if (ctx.db.is_file() || ctx.on_postgres())
        && let Ok(store) = ctx.store()
    {
        for sentence in store.meter_drift(&config)?.sentences(&config) {
            eprintln!("warning: {}", sanitize(&sentence));
        }
    }
    let code = if missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "{}: {} in {} {} on plans this file no longer defines:",
            sanitize(&ctx.plans.display().to_string()),
            crate::billing::count(missing.len() as i64, "customer"),
            ctx.db_shown(),
            is_are(missing.len())
        );
        for (customer, plan) in &missing {
            eprintln!("  {} (plan \"{}\")", sanitize(customer), sanitize(plan));
        }
        eprintln!(
            "put the plans back, or move each customer with `meterline customer set-plan CUSTOMER PLAN`"
        );
        ExitCode::from(2)
    };
    if args.json {
        if config.implicit_meter().is_some() {
            output::print_json(&config)?;
        } else {
            output::print_json(&plans_json(&config)?)?;
        }
        return Ok(code);
    }
    let shown = sanitize(&ctx.plans.display().to_string()).into_owned();
    if missing.is_empty() {
        outln!("{shown}: valid")?;
    } else {
        outln!(
            "{shown}: valid, but {} {} on plans it no longer defines",
            crate::billing::count(missing.len() as i64, "customer"),
            is_are(missing.len())
        )?;
    }
    if config.implicit_meter().is_none() {
        print_meter_table(&config)?;
    } else {
        print_plan_table(&config)?;
    }
    outln!(
        "thresholds: warning {:.0} %, critical {:.0} %, hard cap 100 %",
        config.thresholds.warning * 100.0,
        config.thresholds.critical * 100.0
    )?;
    // With `[[meters]]` each meter names its own event: the global one is not used.
    let meter_event = if config.implicit_meter().is_none() {
        String::new()
    } else {
        format!(" (meter event {})", sanitize(&config.stripe.meter_event))
    };
    outln!(
        "billing periods: {}, currency {}; stripe: {}{meter_event}",
        config.billing.period.as_str(),
        config.billing.currency,
        sanitize(&config.stripe.api_base),
    )?;
    Ok(code)
}

/// The verb after a count of `n`.
fn is_are(n: usize) -> &'static str {
    if n == 1 { "is" } else { "are" }
}

/// Without `[[meters]]`: a line per plan, its terms those of the one `usage` meter.
fn print_plan_table(config: &Config) -> Result<()> {
    outln!(
        "{:<10} {:<16} {:>10} {:>14} {:<8} {:>10}  METER EVENT",
        "ID",
        "NAME",
        "PRICE",
        "INCLUDED",
        "AT LIMIT",
        "RATE"
    )?;
    for p in &config.plans {
        let terms = Terms::of(config, p.meters.get(IMPLICIT_METER));
        outln!(
            "{:<10} {:<16} {:>10} {:>14} {:<8} {:>10}  {}",
            sanitize(&p.id),
            sanitize(&p.name),
            config.money(p.price),
            terms.included,
            terms.at_limit,
            terms.rate,
            sanitize(&p.meter_event),
        )?;
        print_limits(28, p.meters.get(IMPLICIT_METER))?;
    }
    Ok(())
}

/// A line per window limit of `terms`, under its plan's or meter's line from column `indent`:
/// "limit 1,000,000 per 5h sliding (block)".
fn print_limits(indent: usize, terms: Option<&MeterTerms>) -> Result<()> {
    for limit in terms.map_or(&[][..], |t| &t.limits) {
        let action = match limit.at_limit {
            crate::config::LimitAction::Block => "block",
            crate::config::LimitAction::Alert => "alert only",
        };
        let align = match limit.align {
            Some(crate::config::Align::Utc) => ", aligned on UTC",
            _ => "",
        };
        outln!(
            "{:<indent$}  limit {} per {} ({action}{align})",
            "",
            output::thousands(limit.limit),
            limit.name()
        )?;
    }
    Ok(())
}

/// With `[[meters]]`: a line per plan and meter, the plan's terms for it, the event type it
/// counts and its Stripe event, then a line per rate of the plan for that meter.
fn print_meter_table(config: &Config) -> Result<()> {
    outln!(
        "{:<10} {:<16} {:>10}  {:<14} {:<12} {:>12} {:<8} {:>10}  STRIPE EVENT",
        "ID",
        "NAME",
        "PRICE",
        "METER",
        "TYPE",
        "INCLUDED",
        "AT LIMIT",
        "RATE"
    )?;
    for p in &config.plans {
        for (i, line) in config.plan_meters(p).enumerate() {
            // The plan's own columns on its first line only.
            let (id, name, price) = if i == 0 {
                (
                    sanitize(&p.id).into_owned(),
                    sanitize(&p.name).into_owned(),
                    config.money(p.price),
                )
            } else {
                Default::default()
            };
            let terms = Terms::of(config, line.terms);
            outln!(
                "{id:<10} {name:<16} {price:>10}  {:<14} {:<12} {:>12} {:<8} {:>10}  {}",
                sanitize(&line.meter.id),
                sanitize(&line.meter.event),
                terms.included,
                terms.at_limit,
                terms.rate,
                sanitize(line.stripe_event),
            )?;
            print_limits(40, line.terms)?;
            for rate in line.terms.map_or(&[][..], |t| &t.rates) {
                // Under the meter, the rate in the RATE column: the plan and meter columns
                // are 40 wide, METER to AT LIMIT 49.
                outln!(
                    "{:<40}  {:<47} {:>10}",
                    "",
                    where_text(rate),
                    config.money(rate.rate)
                )?;
            }
        }
    }
    Ok(())
}

/// A rate line's `where`, as plans.toml writes it: `where model = "large"`,
/// `where model = ["small", "tiny"], region = "eu"`.
fn where_text(rate: &Rate) -> String {
    let dimensions: Vec<String> = rate
        .when
        .iter()
        .map(|(dimension, values)| {
            let quoted: Vec<String> = values
                .iter()
                .map(|v| format!("{:?}", sanitize(v)))
                .collect();
            let values = match quoted.as_slice() {
                [one] => one.clone(),
                many => format!("[{}]", many.join(", ")),
            };
            format!("{} = {values}", sanitize(dimension))
        })
        .collect();
    format!("where {}", dimensions.join(", "))
}

/// A plan's terms for one meter, as the tables print them.
struct Terms {
    included: String,
    at_limit: &'static str,
    rate: String,
}

impl Terms {
    fn of(config: &Config, terms: Option<&MeterTerms>) -> Terms {
        let Some(terms) = terms else {
            // A meter the plan does not name: recorded, never billed nor capped.
            return Terms {
                included: "not billed".into(),
                at_limit: "-",
                rate: "-".into(),
            };
        };
        Terms {
            included: terms.included.map_or("unlimited".into(), output::thousands),
            at_limit: match (terms.included, terms.at_limit) {
                (None, _) => "-",
                (Some(_), AtLimit::Block) => "block",
                (Some(_), AtLimit::Overage) => "overage",
            },
            rate: terms.overage_rate.map_or("-".into(), |r| config.money(r)),
        }
    }
}

/// plans.toml with `[[meters]]` as JSON: each meter names its Stripe event and a plan's own
/// `meter_event` is not used, so it is left out rather than shown as the default's.
fn plans_json(config: &crate::Config) -> Result<serde_json::Value> {
    let mut json = serde_json::to_value(config)
        .map_err(|e| crate::Error::InvalidInput(format!("plans.toml as JSON: {e}")))?;
    if let Some(plans) = json.get_mut("plans").and_then(|p| p.as_array_mut()) {
        for plan in plans.iter_mut().filter_map(|p| p.as_object_mut()) {
            plan.remove("meter_event");
        }
    }
    Ok(json)
}

#[cfg(test)]
mod tests {
    use crate::config::Rate;

    #[test]
    fn a_rates_where_reads_as_plans_toml_writes_it() {
        let rate = Rate {
            when: [
                ("model".to_string(), vec!["large".to_string()]),
                (
                    "region".to_string(),
                    vec!["eu".to_string(), "us".to_string()],
                ),
            ]
            .into(),
            rate: "0.00001".parse().unwrap(),
        };
        assert_eq!(
            super::where_text(&rate),
            r#"where model = "large", region = ["eu", "us"]"#
        );
    }
}
