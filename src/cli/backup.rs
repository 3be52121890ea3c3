use std::path::PathBuf;
use std::process::ExitCode;

use super::{Context, output};
use crate::Result;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the copy; must not exist yet.
    pub path: PathBuf,
    #[arg(long, help = super::JSON_HELP)]
    pub json: bool,
}

/// A verified copy of the live database (writers may keep running).
pub fn exec(ctx: &Context, args: Args) -> Result<ExitCode> {
    let report = ctx.store()?.backup_to(&args.path)?;
    if args.json {
        return output::print_json(&report);
    }
    outln!(
        "{}: {} bytes, {} customers, {} events, schema {}; integrity ok, counters match events",
        args.path.display(),
        output::thousands(report.bytes as i64),
        output::thousands(report.customers),
        output::thousands(report.events),
        report.schema_version
    )?;
    Ok(ExitCode::SUCCESS)
}
