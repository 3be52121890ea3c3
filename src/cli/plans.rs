use std::process::ExitCode;

use super::{Context, output};
use crate::Result;
use crate::config::AtLimit;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub json: bool,
}

pub fn exec(ctx: &Context, args: Args) -> Result<ExitCode> {
    let config = ctx.config()?;
    if args.json {
        return output::print_json(&config);
    }
    println!("{}: valid", ctx.plans.display());
    println!(
        "{:<10} {:<16} {:>10} {:>14} {:<8} {:>10}  METER EVENT",
        "ID", "NAME", "PRICE", "INCLUDED", "AT LIMIT", "RATE"
    );
    for p in &config.plans {
        println!(
            "{:<10} {:<16} {:>10} {:>14} {:<8} {:>10}  {}",
            p.id,
            p.name,
            config.money(p.price),
            p.included.map_or("unlimited".into(), output::thousands),
            match (p.included, p.at_limit) {
                (None, _) => "-",
                (Some(_), AtLimit::Block) => "block",
                (Some(_), AtLimit::Overage) => "overage",
            },
            p.overage_rate.map_or("-".into(), |r| config.money(r)),
            p.meter_event,
        );
    }
    println!(
        "thresholds: warning {:.0} %, critical {:.0} %, hard cap 100 %",
        config.thresholds.warning * 100.0,
        config.thresholds.critical * 100.0
    );
    println!(
        "billing periods: {}, currency {}; stripe: {} (meter event {})",
        config.billing.period.as_str(),
        config.billing.currency,
        config.stripe.api_base,
        config.stripe.meter_event
    );
    Ok(ExitCode::SUCCESS)
}
