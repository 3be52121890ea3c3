use std::process::ExitCode;

use chrono::NaiveDate;

use super::{Context, output};
use crate::Result;
use crate::sanitize::sanitize;
use crate::store::{Customer, NewCustomer};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Add a customer.
    Add {
        id: String,
        /// The plan (default: free, the plan every plans.toml has).
        #[arg(long, default_value = "free")]
        plan: String,
        /// Display name (default: the id).
        #[arg(long)]
        name: Option<String>,
        /// The Stripe customer id (cus_…) its usage is reported under.
        #[arg(long)]
        stripe_customer: Option<String>,
        /// First day of its billing periods (default: today).
        #[arg(long, value_parser = parse_date)]
        anchor: Option<NaiveDate>,
        #[arg(long, help = super::JSON_HELP)]
        json: bool,
    },
    /// Move a customer to another plan.
    SetPlan {
        id: String,
        plan: String,
        #[arg(long, help = super::JSON_HELP)]
        json: bool,
    },
    /// Set the Stripe customer id its usage is reported under.
    SetStripe {
        id: String,
        stripe_customer: String,
        #[arg(long, help = super::JSON_HELP)]
        json: bool,
    },
    /// Give a customer a new display name.
    Rename {
        id: String,
        name: String,
        #[arg(long, help = super::JSON_HELP)]
        json: bool,
    },
    /// Archive a customer: hidden from the dashboard, new usage refused; data and unreported
    /// usage stay (still synced).
    Archive {
        id: String,
        #[arg(long, help = super::JSON_HELP)]
        json: bool,
    },
    /// Take an archived customer back.
    Unarchive {
        id: String,
        #[arg(long, help = super::JSON_HELP)]
        json: bool,
    },
    /// List customers.
    List {
        #[arg(long, help = super::JSON_HELP)]
        json: bool,
    },
}

fn parse_date(text: &str) -> std::result::Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|e| format!("{e}; expected YYYY-MM-DD, e.g. 2026-01-31"))
}

pub fn exec(ctx: &Context, command: Command) -> Result<ExitCode> {
    let config = ctx.config()?;
    let mut store = match command {
        Command::List { .. } => ctx.store()?,
        _ => ctx.write_store()?,
    };
    let (customer, json) = match command {
        Command::Add {
            id,
            plan,
            name,
            stripe_customer,
            anchor,
            json,
        } => {
            let new = NewCustomer {
                id,
                name,
                plan_id: plan,
                stripe_customer_id: stripe_customer,
                billing_anchor: anchor,
            };
            (store.add_customer(&config, &new, ctx.now)?, json)
        }
        Command::SetPlan { id, plan, json } => {
            (store.set_plan(&config, &id, &plan, ctx.now)?, json)
        }
        Command::SetStripe {
            id,
            stripe_customer,
            json,
        } => (store.set_stripe_customer(&id, &stripe_customer)?, json),
        Command::Rename { id, name, json } => (store.rename_customer(&id, &name)?, json),
        Command::Archive { id, json } => (store.set_archived(&id, Some(ctx.now))?, json),
        Command::Unarchive { id, json } => (store.set_archived(&id, None)?, json),
        Command::List { json } => {
            let customers = store.customers()?;
            if json {
                return output::print_json(&customers);
            }
            outln!(
                "{:<24} {:<28} {:<10} {:<11} STRIPE",
                "ID",
                "NAME",
                "PLAN",
                "ANCHOR"
            )?;
            for c in &customers {
                print_line(c)?;
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    if json {
        return output::print_json(&customer);
    }
    print_line(&customer)?;
    Ok(ExitCode::SUCCESS)
}

fn print_line(c: &Customer) -> Result<()> {
    outln!(
        "{:<24} {:<28} {:<10} {:<11} {}{}",
        sanitize(&c.id),
        sanitize(&c.name),
        sanitize(&c.plan_id),
        c.billing_anchor,
        sanitize(c.stripe_customer_id.as_deref().unwrap_or("(not mapped)")),
        if c.archived_at.is_some() {
            "  (archived)"
        } else {
            ""
        }
    )
}
