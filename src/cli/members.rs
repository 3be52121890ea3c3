use std::process::ExitCode;

use super::{Context, output};
use crate::Result;

pub use super::check::Args;

pub fn exec(ctx: &Context, args: Args) -> Result<ExitCode> {
    let config = ctx.config()?;
    let summary = ctx.store()?.members(&config, &args.customer, ctx.now)?;
    if args.json {
        return output::print_json(&summary);
    }
    print!(
        "{}",
        output::describe(&summary.check, &config.billing.currency)
    );
    println!("{:<32} {:>14} {:>7}", "MEMBER", "USED", "SHARE");
    for m in &summary.members {
        println!(
            "{:<32} {:>14} {:>6.1}%",
            m.user_id.as_deref().unwrap_or("(no member)"),
            output::thousands(m.used),
            m.share * 100.0
        );
    }
    Ok(ExitCode::SUCCESS)
}
