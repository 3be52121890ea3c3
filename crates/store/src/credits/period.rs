//! `[plans.credits]`: money a plan grants each customer every period, at the first write of
//! the period (a record batch that reads the customer's wallet), once per customer × period
//! (the grant's key names the period). Up to `rollover` of the previous period's grant's
//! remainder carries over as a grant of its own, expiring at the end of this period; the rest
//! expires with its grant.

use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;

use super::{NewGrant, append_entry, grant_by_key, grant_state, insert_grant};
use crate::Result;
use crate::billing::{Period, format_ts, period_containing};
use crate::config::Config;
use crate::customers::Customer;
use crate::db::Connection;

/// The key of a period's plan grant, and of what carried into it.
fn period_key(period: &Period) -> String {
    format!("plan-credits:{}", format_ts(period.start))
}

fn rollover_key(period: &Period) -> String {
    format!("plan-rollover:{}", format_ts(period.start))
}

/// Grant `customer`'s plan credits for the period containing `now`, unless done.
pub(crate) fn grant_period_credits(
    conn: &Connection,
    config: &Config,
    customer: &Customer,
    now: DateTime<Utc>,
) -> Result<()> {
    let Some(credits) = config.plan(&customer.plan_id).and_then(|p| p.credits) else {
        return Ok(());
    };
    let kind = config.billing.period;
    let period = period_containing(customer.billing_anchor, kind, now);
    if grant_by_key(conn, &customer.id, &period_key(&period))?.is_some() {
        return Ok(());
    }
    let grant = |amount: Decimal, key: String, note: String| NewGrant {
        effective_at: Some(period.start),
        expires_at: Some(period.end),
        note: Some(note),
        key: Some(key),
        ..NewGrant::new(&customer.id, &amount.to_string())
    };
    let previous = period_containing(
        customer.billing_anchor,
        kind,
        period.start - TimeDelta::seconds(1),
    );
    if credits.rollover > Decimal::ZERO
        && let Some(old) = grant_by_key(conn, &customer.id, &period_key(&previous))?
    {
        let (remaining, _) = grant_state(conn, old.id)?;
        let carried = remaining.min(credits.rollover);
        if carried > Decimal::ZERO {
            append_entry(
                conn,
                &old,
                "rollover",
                -carried,
                remaining - carried,
                period.start,
            )?;
            let note = format!("rolled over from grant {}", old.id);
            insert_grant(
                conn,
                &grant(carried, rollover_key(&period), note),
                carried,
                now,
            )?;
        }
    }
    let note = format!("plan \"{}\" credits for this period", customer.plan_id);
    insert_grant(
        conn,
        &grant(credits.grant, period_key(&period), note),
        credits.grant,
        now,
    )?;
    Ok(())
}
