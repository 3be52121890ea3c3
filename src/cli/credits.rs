//! `meterline credits`: grant, show, list the ledger of and void prepaid credits.

use std::process::ExitCode;

use chrono::{DateTime, Utc};

use super::{Context, output};
use crate::Result;
use crate::sanitize::sanitize;
use crate::store::{Amounts, DEFAULT_PRIORITY, NewGrant};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// The customer whose balance, held and available credits and live grants to show.
    #[arg(required = true)]
    customer: Option<String>,
    #[arg(long, help = super::JSON_HELP)]
    json: bool,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Give a customer credits: money in the plans' currency, or with --meter that meter's units.
    Grant(GrantArgs),
    /// A customer's ledger: every grant, void (and later burn, expiry, rollover), oldest first.
    Ledger {
        customer: String,
        /// From this instant (inclusive).
        #[arg(long, value_parser = crate::billing::parse_ts)]
        since: Option<DateTime<Utc>>,
        #[arg(long, help = super::JSON_HELP)]
        json: bool,
    },
    /// Void a grant: its remainder is removed by a ledger entry; what it paid stays paid.
    Void {
        grant_id: i64,
        #[arg(long, help = super::JSON_HELP)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
struct GrantArgs {
    customer: String,
    /// An exact decimal above 0, at most 10^12 and 12 decimals (whole units with --meter).
    #[arg(allow_negative_numbers = true)]
    amount: String,
    /// Units of this meter instead of money.
    #[arg(long)]
    meter: Option<String>,
    /// Lower burns first (0-255).
    #[arg(long, default_value_t = DEFAULT_PRIORITY)]
    priority: u8,
    /// When the credits expire (RFC3339); never by default.
    #[arg(long, value_parser = crate::billing::parse_ts)]
    expires: Option<DateTime<Utc>>,
    /// When the credits take effect (RFC3339); now by default.
    #[arg(long, value_parser = crate::billing::parse_ts)]
    effective: Option<DateTime<Utc>>,
    /// Promotional credits (burnt before paid ones of the same priority and expiry).
    #[arg(long)]
    promotional: bool,
    #[arg(long)]
    note: Option<String>,
    /// An idempotency key: a resend returns the same grant, other parameters are refused.
    #[arg(long)]
    key: Option<String>,
    #[arg(long, help = super::JSON_HELP)]
    json: bool,
}

pub fn exec(ctx: &Context, args: Args) -> Result<ExitCode> {
    match (args.command, args.customer) {
        (Some(Command::Grant(grant)), _) => exec_grant(ctx, grant),
        (
            Some(Command::Ledger {
                customer,
                since,
                json,
            }),
            _,
        ) => ledger(ctx, &customer, since, json),
        (Some(Command::Void { grant_id, json }), _) => void(ctx, grant_id, json),
        (None, Some(customer)) => balance(ctx, &customer, args.json),
        (None, None) => Err(crate::Error::InvalidInput(
            "name a customer: `meterline credits CUSTOMER`".into(),
        )),
    }
}

fn exec_grant(ctx: &Context, args: GrantArgs) -> Result<ExitCode> {
    let config = ctx.config()?;
    let request = NewGrant {
        customer: args.customer,
        amount: args.amount,
        meter: args.meter,
        priority: args.priority,
        effective_at: args.effective,
        expires_at: args.expires,
        promotional: args.promotional,
        note: args.note,
        key: args.key,
    };
    let granted = ctx
        .write_store()?
        .grant_credits(&config, &request, ctx.now)?;
    if args.json {
        return output::print_json(&granted);
    }
    let grant = &granted.grant;
    let amount = output::shown(Some(&config), grant.meter.as_deref(), grant.amount);
    if granted.duplicate {
        outln!(
            "grant {} already gave {amount} to \"{}\" under this key; nothing written",
            grant.id,
            sanitize(&grant.customer_id)
        )?;
    } else {
        outln!(
            "granted {amount} to \"{}\": grant {}",
            sanitize(&grant.customer_id),
            grant.id
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn balance(ctx: &Context, customer: &str, json: bool) -> Result<ExitCode> {
    let balance = ctx.store()?.credit_balance(customer, ctx.now)?;
    if json {
        return output::print_json(&balance);
    }
    // Without a readable plans.toml the amounts still show, without their currency.
    let config = ctx.config().ok();
    let line = |meter: Option<&str>, amounts: &Amounts| {
        output::credit_amounts(config.as_ref(), meter, amounts)
    };
    outln!("{}: {}", sanitize(customer), line(None, &balance.money))?;
    for (meter, amounts) in &balance.units {
        outln!("{}: {}", sanitize(meter), line(Some(meter), amounts))?;
    }
    if balance.grants.is_empty() {
        outln!("no live grants")?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{:<8} {:<24} {:>8} {:<22} {:<22} KIND",
        "GRANT",
        "REMAINING",
        "PRIORITY",
        "EXPIRES",
        "EFFECTIVE"
    )?;
    for live in &balance.grants {
        let g = &live.grant;
        outln!(
            "{:<8} {:<24} {:>8} {:<22} {:<22} {}",
            g.id,
            output::shown(config.as_ref(), g.meter.as_deref(), live.remaining),
            g.priority,
            g.expires_at.as_deref().unwrap_or("never"),
            g.effective_at,
            if g.promotional { "promotional" } else { "paid" }
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn ledger(
    ctx: &Context,
    customer: &str,
    since: Option<DateTime<Utc>>,
    json: bool,
) -> Result<ExitCode> {
    let entries = ctx.store()?.credit_ledger(customer, since)?;
    if json {
        return output::print_json(&entries);
    }
    let config = ctx.config().ok();
    outln!(
        "{:<8} {:<8} {:<8} {:<24} {:<24} AT",
        "ENTRY",
        "GRANT",
        "KIND",
        "AMOUNT",
        "REMAINING"
    )?;
    for e in &entries {
        let shown = |amount| output::shown(config.as_ref(), e.meter.as_deref(), amount);
        outln!(
            "{:<8} {:<8} {:<8} {:<24} {:<24} {}",
            e.id,
            e.grant_id,
            e.kind,
            shown(e.amount),
            shown(e.remaining),
            e.at
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn void(ctx: &Context, grant_id: i64, json: bool) -> Result<ExitCode> {
    let config = ctx.config().ok();
    let voided = ctx
        .write_store()?
        .void_grant(config.as_ref(), grant_id, ctx.now)?;
    if json {
        return output::print_json(&voided);
    }
    if voided.already {
        outln!("grant {grant_id} was already voided; nothing written")?;
    } else {
        outln!(
            "voided grant {grant_id} of \"{}\": removed {} (what it paid stays paid)",
            sanitize(&voided.customer_id),
            output::shown(config.as_ref(), voided.meter.as_deref(), voided.removed)
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
