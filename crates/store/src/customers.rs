//! Customers: who is billed, on which plan, from which anchor date.

use crate::db::{Connection, OptionalExtension, params};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use super::Store;
use super::counters::CounterRow;
use super::meters::standing::allowance;
use crate::billing::{Period, UsageCheck, format_ts, period_containing};
use crate::config::{Config, Plan};
use crate::sanitize::{is_unsafe, sanitize};
use crate::{Error, Result};

/// A customer as stored: its plan, Stripe mapping, billing anchor and archive mark.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Customer {
    pub id: String,
    pub name: String,
    pub plan_id: String,
    pub stripe_customer_id: Option<String>,
    pub billing_anchor: NaiveDate,
    /// When it was archived (RFC3339 UTC); `None` while active.
    pub archived_at: Option<String>,
}

/// A customer to add; missing parts take their defaults.
#[derive(Debug, Clone)]
pub struct NewCustomer {
    pub id: String,
    pub name: Option<String>,
    pub plan_id: String,
    pub stripe_customer_id: Option<String>,
    /// Defaults to the day the customer is added.
    pub billing_anchor: Option<NaiveDate>,
}

const COLUMNS: &str = "id, name, plan_id, stripe_customer_id, billing_anchor, archived_at";
/// `COLUMNS` of a query that names the customers table `c`, for `from_row`.
pub(crate) const COLUMNS_OF_C: &str =
    "c.id, c.name, c.plan_id, c.stripe_customer_id, c.billing_anchor, c.archived_at";

pub(crate) fn from_row(r: &crate::db::Row) -> crate::Result<Customer> {
    let anchor: String = r.get(4)?;
    Ok(Customer {
        id: r.get(0)?,
        name: r.get(1)?,
        plan_id: r.get(2)?,
        stripe_customer_id: r.get(3)?,
        billing_anchor: NaiveDate::parse_from_str(&anchor, "%Y-%m-%d")
            .map_err(|e| crate::Error::Corrupt(format!("billing_anchor \"{anchor}\": {e}")))?,
        archived_at: r.get(5)?,
    })
}

pub(super) fn get(conn: &Connection, id: &str) -> Result<Customer> {
    // No customer id holds a NUL (`validate_id`), and PostgreSQL refuses one in any text:
    // unknown on both engines without asking.
    if id.contains('\0') {
        return Err(Error::UnknownCustomer(id.to_string()));
    }
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM customers WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?
        .ok_or_else(|| Error::UnknownCustomer(id.to_string()))
}

/// The customers `ids` name, in one query per 512 ids (`db::in_lists`): the record batch
/// reads its customers at once. `None` for an id no customer has. An id `validate_id` refuses
/// is not looked up, nor a row that does not read: `get` gives their answer.
pub(super) fn get_many(
    conn: &Connection,
    ids: &[&str],
) -> Result<std::collections::HashMap<String, Option<Customer>>> {
    let ids: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| validate_id("customer id", id).is_ok())
        .collect();
    let mut found = std::collections::HashMap::with_capacity(ids.len());
    let mut unreadable = std::collections::HashSet::new();
    for (list, params) in crate::db::in_lists(&ids) {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM customers WHERE id IN ({list})"
        ))?;
        let mut rows = stmt.query(params.as_slice())?;
        while let Some(row) = rows.next()? {
            match from_row(&row) {
                Ok(customer) => {
                    found.insert(customer.id.clone(), Some(customer));
                }
                Err(_) => {
                    unreadable.insert(row.get::<_, String>(0)?);
                }
            }
        }
    }
    for id in ids {
        if !unreadable.contains(id) {
            found.entry(id.to_string()).or_insert(None);
        }
    }
    Ok(found)
}

/// The customer's plan; `PlanMissing` when plans.toml no longer defines it.
pub(super) fn plan_of<'c>(config: &'c Config, customer: &Customer) -> Result<&'c Plan> {
    config
        .plan(&customer.plan_id)
        .ok_or_else(|| Error::PlanMissing {
            customer: customer.id.clone(),
            plan: customer.plan_id.clone(),
        })
}

fn lookup_plan<'c>(config: &'c Config, plan_id: &str) -> Result<&'c Plan> {
    config.plan(plan_id).ok_or_else(|| Error::UnknownPlan {
        plan: plan_id.to_string(),
        known: config
            .plans
            .iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// The longest customer or member id, in bytes: ids travel into terminals, URLs and Stripe.
pub(crate) const MAX_ID_LEN: usize = 100;
/// The longest display name, in characters.
pub(crate) const MAX_NAME_LEN: usize = 256;
/// The longest idempotency key, in bytes (Stripe's own limit for its keys).
pub const MAX_KEY_LEN: usize = 255;

/// Customer and member ids: 1 to 100 bytes, no spaces, and nothing a terminal obeys or that
/// makes one id pass for another (control, bidi and zero-width characters; the rule lives in
/// [`crate::sanitize::is_unsafe`]).
pub(crate) fn validate_id(kind: &str, id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > MAX_ID_LEN
        || id.chars().any(|c| c.is_whitespace() || is_unsafe(c))
    {
        return Err(Error::InvalidInput(format!(
            "{kind} \"{}\" must be 1 to {MAX_ID_LEN} characters without spaces, control, bidi \
             or zero-width characters",
            sanitize(id)
        )));
    }
    Ok(())
}

/// Idempotency keys: not empty, at most 255 bytes, no control, bidi or zero-width characters.
pub(crate) fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || key.chars().any(is_unsafe) {
        return Err(Error::InvalidInput(format!(
            "idempotency key \"{}\" must be 1 to {MAX_KEY_LEN} characters without control, bidi \
             or zero-width characters",
            sanitize(key)
        )));
    }
    Ok(())
}

/// The earliest billing anchor accepted: older dates are typos (0001-01-01, 1926 for 2026).
pub(crate) const EARLIEST_ANCHOR: NaiveDate =
    NaiveDate::from_ymd_opt(2000, 1, 1).expect("valid date");

/// Anchors are bounded: events before the anchor are refused, so a typo years ahead would
/// refuse everything and one in the distant past would open centuries of periods.
fn validate_anchor(anchor: NaiveDate, now: DateTime<Utc>) -> Result<()> {
    let latest = now
        .date_naive()
        .checked_add_days(chrono::Days::new(366))
        .unwrap_or(NaiveDate::MAX);
    if anchor < EARLIEST_ANCHOR || anchor > latest {
        return Err(Error::InvalidInput(format!(
            "billing anchor {anchor} is out of range; it must be between {EARLIEST_ANCHOR} and \
             {latest} (one year from today)"
        )));
    }
    Ok(())
}

fn validate_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(Error::InvalidInput(format!(
            "a customer name must be 1 to {MAX_NAME_LEN} characters (got {})",
            name.chars().count()
        )));
    }
    Ok(())
}

/// The free-text labels of a usage event: the member (`--user`) and the idempotency key.
pub(crate) fn validate_event_labels(user: Option<&str>, key: Option<&str>) -> Result<()> {
    if let Some(user) = user {
        validate_id("member id (--user)", user)?;
    }
    key.map_or(Ok(()), validate_key)
}

fn validate_stripe_id(id: &str) -> Result<()> {
    if !id.starts_with("cus_")
        || !(5..=255).contains(&id.len())
        || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(Error::InvalidInput(format!(
            "\"{}\" is not a Stripe customer id (they look like cus_NffrFeUfNV2Hib)",
            sanitize(id)
        )));
    }
    Ok(())
}

/// Customers; serves `customer`, serve's drop-in routes (resolving Stripe customer ids),
/// reconcile and doctor.
impl Store {
    /// Add a customer after validating its id, name, plan, Stripe id and anchor.
    pub fn add_customer(
        &mut self,
        config: &Config,
        new: &NewCustomer,
        now: DateTime<Utc>,
    ) -> Result<Customer> {
        validate_id("customer id", &new.id)?;
        if let Some(name) = &new.name {
            validate_name(name)?;
        }
        lookup_plan(config, &new.plan_id)?;
        if let Some(stripe) = &new.stripe_customer_id {
            validate_stripe_id(stripe)?;
        }
        if let Some(anchor) = new.billing_anchor {
            validate_anchor(anchor, now)?;
        }
        let customer = Customer {
            id: new.id.clone(),
            name: new.name.clone().unwrap_or_else(|| new.id.clone()),
            plan_id: new.plan_id.clone(),
            stripe_customer_id: new.stripe_customer_id.clone(),
            billing_anchor: new.billing_anchor.unwrap_or(now.date_naive()),
            archived_at: None,
        };
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT INTO customers (id, name, plan_id, stripe_customer_id, billing_anchor, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO NOTHING",
            )?
            .execute(params![
                customer.id,
                customer.name,
                customer.plan_id,
                customer.stripe_customer_id,
                customer.billing_anchor.format("%Y-%m-%d").to_string(),
                format_ts(now)
            ])?;
        if inserted == 0 {
            return Err(Error::InvalidInput(format!(
                "customer \"{}\" already exists",
                sanitize(&customer.id)
            )));
        }
        Ok(customer)
    }

    /// Move a customer to another plan. The current period is billed under the plan in force
    /// at its end, so its counter row takes the new plan (and its meter event name) too.
    pub fn set_plan(
        &mut self,
        config: &Config,
        id: &str,
        plan_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Customer> {
        let plan = lookup_plan(config, plan_id)?;
        let tx = self.conn.transaction()?;
        let customer = get(&tx, id)?;
        tx.execute(
            "UPDATE customers SET plan_id = ?2 WHERE id = ?1",
            params![id, plan.id],
        )?;
        let period = period_containing(customer.billing_anchor, config.billing.period, now);
        // A new plan with a lower limit can move the customer up a level: that alerts too.
        if let Some(row) = super::counters::counter_row(&tx, id, period)? {
            meter_crossings_on_plan_change(&tx, config, id, &row, plan, period, now)?;
        }
        // The current period's terms follow (closed periods keep theirs).
        tx.execute(
            "UPDATE usage_records SET plan_id = ?3, meter_event_name = ?4, included = ?5,
                 at_limit = ?6, overage_rate = ?7, price = ?8, meter_terms = ?9
             WHERE customer_id = ?1 AND period_start = ?2",
            params![
                id,
                format_ts(period.start),
                plan.id,
                plan.meter_event,
                plan.included,
                plan.at_limit.as_str(),
                plan.overage_rate.map(|r| r.to_string()),
                plan.price.to_string(),
                plan.kept_meter_terms
            ],
        )?;
        tx.commit()?;
        Ok(Customer {
            plan_id: plan.id.clone(),
            ..customer
        })
    }

    /// Map a customer to its Stripe customer id (`cus_…`).
    pub fn set_stripe_customer(&mut self, id: &str, stripe_customer_id: &str) -> Result<Customer> {
        validate_stripe_id(stripe_customer_id)?;
        let customer = get(&self.conn, id)?;
        self.conn.execute(
            "UPDATE customers SET stripe_customer_id = ?2 WHERE id = ?1",
            params![id, stripe_customer_id],
        )?;
        Ok(Customer {
            stripe_customer_id: Some(stripe_customer_id.to_string()),
            ..customer
        })
    }

    /// The customer with this id.
    pub fn customer(&self, id: &str) -> Result<Customer> {
        get(&self.conn, id)
    }

    /// Give a customer a new display name (its id, usage and Stripe mapping stay).
    pub fn rename_customer(&mut self, id: &str, name: &str) -> Result<Customer> {
        validate_name(name)?;
        get(&self.conn, id)?;
        self.conn.execute(
            "UPDATE customers SET name = ?2 WHERE id = ?1",
            params![id, name],
        )?;
        get(&self.conn, id)
    }

    /// Archive (`Some(now)`) or take back (`None`) a customer. Archived customers are hidden
    /// from the dashboard and refuse new usage; their data and unreported usage stay, and the
    /// sync still reports what they recorded before.
    pub fn set_archived(&mut self, id: &str, at: Option<DateTime<Utc>>) -> Result<Customer> {
        get(&self.conn, id)?;
        self.conn.execute(
            "UPDATE customers SET archived_at = ?2 WHERE id = ?1",
            params![id, at.map(format_ts)],
        )?;
        get(&self.conn, id)
    }

    /// The customers mapped to a Stripe customer id (normally one), by id.
    pub fn customers_with_stripe_id(&self, stripe_customer_id: &str) -> Result<Vec<Customer>> {
        // Never stored (`validate_stripe_id`), and PostgreSQL refuses a NUL in any text.
        if stripe_customer_id.contains('\0') {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM customers WHERE stripe_customer_id = ?1 ORDER BY id"
        ))?;
        let rows = stmt.query_map([stripe_customer_id], from_row)?;
        rows.collect::<crate::Result<_>>()
    }

    /// Customers whose plan plans.toml no longer defines, as (customer id, plan id).
    pub fn customers_on_missing_plans(&self, config: &Config) -> Result<Vec<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, plan_id FROM customers ORDER BY plan_id, id")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut missing = Vec::new();
        for row in rows {
            let (id, plan) = row?;
            if config.plan(&plan).is_none() {
                missing.push((id, plan));
            }
        }
        Ok(missing)
    }

    /// Every customer, by id.
    pub fn customers(&self) -> Result<Vec<Customer>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM customers ORDER BY id"))?;
        let rows = stmt.query_map([], from_row)?;
        rows.collect::<crate::Result<_>>()
    }
}

/// Every meter whose level the new plan's terms
/// move up, from the terms the period's row kept (the plan being left): each such crossing
/// alerts, as a record crossing it would.
fn meter_crossings_on_plan_change(
    conn: &Connection,
    config: &Config,
    customer_id: &str,
    row: &CounterRow,
    plan: &Plan,
    period: Period,
    now: DateTime<Utc>,
) -> Result<()> {
    let totals: Vec<(String, i64)> = conn
        .prepare_cached(
            "SELECT meter_id, used FROM meter_counters
             WHERE customer_id = ?1 AND period_start = ?2 AND group_key = ''",
        )?
        .query_map(params![customer_id, format_ts(period.start)], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<_>>()?;
    let old = row.meter_terms(config, true);
    for (meter, used) in totals {
        let standing = |plan_id: &str, terms| {
            UsageCheck::compute(
                customer_id,
                plan_id,
                allowance(terms),
                period,
                used,
                &config.thresholds,
            )
        };
        let before = standing(&row.plan_id, old.as_ref().and_then(|t| t.get(&meter))).level;
        let after = standing(&plan.id, plan.meters.get(&meter));
        super::alerts::record_crossings(conn, config, &meter, before, &after, period, now)?;
    }
    Ok(())
}
