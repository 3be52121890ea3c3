use std::process::ExitCode;

use super::{Context, output};
use crate::Result;
use crate::sanitize::sanitize;

pub use super::check::Args;

pub fn exec(ctx: &Context, args: Args) -> Result<ExitCode> {
    let config = ctx.config()?;
    // The usage meter without [[meters]]; else --meter's, or the default (first) meter's.
    let meter = args.meter.as_deref().unwrap_or(&config.default_meter().id);
    let summary = ctx
        .store()?
        .meter_members(&config, &args.customer, meter, ctx.now)?;
    if args.json {
        return output::print_json(&summary);
    }
    if config.implicit_meter().is_none() {
        outln!("meter {}", sanitize(meter))?;
    }
    out!(
        "{}",
        output::describe(&summary.check, &config.billing.currency)
    )?;
    outln!("{:<32} {:>14} {:>7}", "MEMBER", "USED", "SHARE")?;
    for m in &summary.members {
        outln!(
            "{:<32} {:>14} {:>6.1}%",
            sanitize(m.user_id.as_deref().unwrap_or("(no member)")),
            output::thousands(m.used),
            m.share * 100.0
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
