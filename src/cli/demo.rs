use std::process::ExitCode;

use super::Context;
use crate::Result;
use crate::demo::DemoSpec;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many customers.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub customers: u32,
    /// Roughly how many usage events in all.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub events: u64,
    /// Random seed: the same seed gives the same data.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

pub fn exec(ctx: &Context, args: Args) -> Result<ExitCode> {
    let (config, plans_label) = super::dashboard::demo_plans(&ctx.plans)?;
    let mut store = ctx.write_store()?;
    let spec = DemoSpec {
        customers: args.customers as usize,
        events: args.events,
        seed: args.seed,
    };
    let summary = crate::demo::fill(&mut store, &config, &spec, ctx.now)?;
    outln!(
        "demo database {}: {} customers, {} events ({} unreported to Stripe)",
        ctx.db_shown(),
        summary.customers,
        summary.events,
        summary.unreported
    )?;
    outln!("plans: {plans_label}")?;
    outln!("try: meterline --db {} status", ctx.db_shown())?;
    Ok(ExitCode::SUCCESS)
}
