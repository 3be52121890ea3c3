//! Credits: grants of money or of a meter's units, kept as an append-only ledger. A grant's
//! remainder is its last ledger entry's `remaining`, and always the sum of its entries
//! (`check_ledger`, which doctor and backup run). Nothing is updated in place: a void is an
//! entry, and so will burns, expiries and rollovers be.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

mod period;
mod wallet;

pub(crate) use wallet::{Cover, Wallet, Wallets};

/// True when any customer has a grant or a live reservation (if none, no wallet is read):
/// an expression a query can add as a column.
pub(crate) const IN_USE: &str = "(EXISTS (SELECT 1 FROM credit_grants)
     OR EXISTS (SELECT 1 FROM reservations WHERE ended_at IS NULL))";

/// `check` with the customer's credits: its money credits, each meter's unit credits, and
/// `allowed` as a record would decide it: a capped meter takes more while its unit credits
/// last, and the units live reservations hold count as used.
pub(crate) fn with_credits(
    conn: &Connection,
    config: &Config,
    check: &mut meterline_core::MeteredCheck,
    now: DateTime<Utc>,
) -> Result<()> {
    let wallet = Wallet::load(conn, &check.check.customer, now)?;
    check.credits = wallet.credits();
    let period_start = format_ts(check.check.period_start);
    let terms = config.plan(&check.check.plan).map(|p| &p.meters);
    for meter in &mut check.meters {
        meter.credits = wallet.unit_amounts(&meter.meter);
        let capped = terms
            .and_then(|t| t.get(&meter.meter))
            .is_some_and(|t| t.at_limit == crate::config::AtLimit::Block);
        if let Some(limit) = meter.check.limit
            && capped
            && crate::meters::counting::adds_up(meter.aggregation)
            && !meter.check.plan_missing
        {
            let used = meter
                .check
                .used
                .saturating_add(wallet.held_on(&period_start, &meter.meter));
            meter.check.allowed = used < limit.saturating_add(wallet.units_available(&meter.meter));
        }
    }
    check.check.allowed = check.meters.iter().all(|m| m.check.allowed);
    Ok(())
}

use super::Store;
use crate::billing::format_ts;
use crate::config::Config;
use crate::db::{Connection, OptionalExtension, params};
use crate::sanitize::sanitize;
use crate::{Error, Result};

/// The largest amount one grant may carry: 10^12 (money or units).
const MAX_AMOUNT: Decimal = Decimal::from_parts(0xD4A5_1000, 0xE8, 0, false, 0);
/// The most decimals an amount may have.
const MAX_DECIMALS: u32 = 12;
/// The longest note, in characters.
const MAX_NOTE_LEN: usize = 1000;
/// A grant's priority when none is given.
pub const DEFAULT_PRIORITY: u8 = 100;

/// A grant to make; what is not given takes its default.
#[derive(Debug, Clone)]
pub struct NewGrant {
    pub customer: String,
    /// Money in the plans' currency, or with `meter` whole units of that meter, as typed.
    pub amount: String,
    pub meter: Option<String>,
    pub priority: u8,
    /// Defaults to now.
    pub effective_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub promotional: bool,
    pub note: Option<String>,
    /// A resend with the same key returns the same grant; other parameters are refused.
    pub key: Option<String>,
}

impl NewGrant {
    /// A paid money grant of `amount` at the default priority, effective now, never expiring.
    pub fn new(customer: &str, amount: &str) -> NewGrant {
        NewGrant {
            customer: customer.to_string(),
            amount: amount.to_string(),
            meter: None,
            priority: DEFAULT_PRIORITY,
            effective_at: None,
            expires_at: None,
            promotional: false,
            note: None,
            key: None,
        }
    }
}

/// A grant as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Grant {
    pub id: i64,
    pub customer_id: String,
    /// `None`: money.
    pub meter: Option<String>,
    pub amount: Decimal,
    pub priority: u8,
    pub effective_at: String,
    pub expires_at: Option<String>,
    pub promotional: bool,
    pub note: Option<String>,
    pub key: Option<String>,
    pub created_at: String,
}

/// What [`Store::grant_credits`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Granted {
    #[serde(flatten)]
    pub grant: Grant,
    /// True when the key had already made this grant: nothing was written.
    pub duplicate: bool,
}

/// A grant with credits left, and what is left.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveGrant {
    #[serde(flatten)]
    pub grant: Grant,
    pub remaining: Decimal,
}

pub use meterline_core::Amounts;

/// A customer's credits now: the money balance, each meter's units, and every grant not
/// expired that has something left, in burn order ([`burn_order`]). Grants not yet
/// effective are listed but not in the balance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CreditBalance {
    pub customer: String,
    #[serde(flatten)]
    pub money: Amounts,
    pub units: BTreeMap<String, Amounts>,
    pub grants: Vec<LiveGrant>,
}

/// One ledger entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LedgerEntry {
    pub id: i64,
    pub grant_id: i64,
    pub customer_id: String,
    /// `grant`, `void` (and, to come: `burn`, `expiry`, `rollover`).
    pub kind: String,
    /// Signed: what the entry added to the grant.
    pub amount: Decimal,
    /// The grant's remainder after it.
    pub remaining: Decimal,
    pub meter: Option<String>,
    pub at: String,
}

/// What [`Store::void_grant`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Voided {
    pub grant_id: i64,
    pub customer_id: String,
    /// `None`: money.
    pub meter: Option<String>,
    /// The remainder the void removed (what the grant already paid stays paid).
    pub removed: Decimal,
    /// True when the grant had been voided before: nothing was written.
    pub already: bool,
}

/// What [`Store::check_ledger`] found: every grant's entries folded in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LedgerCheck {
    pub grants: u64,
    pub entries: u64,
    /// Each grant whose ledger does not add up, or a customer whose balance differs from its
    /// ledger's sum, in words.
    pub mismatches: Vec<String>,
}

/// The burn order, fixed and documented: meter-unit grants before money grants, then lower
/// priority, then the soonest expiry (none last), then promotional before paid, then the
/// earlier effective_at, then the lower id.
pub fn burn_order(a: &Grant, b: &Grant) -> Ordering {
    fn key(g: &Grant) -> impl Ord + '_ {
        burn_key(
            g.meter.is_some(),
            g.priority,
            g.expires_at.as_deref(),
            g.promotional,
            &g.effective_at,
            g.id,
        )
    }
    key(a).cmp(&key(b))
}

/// A grant's place in the burn order, as a tuple that sorts in it (the one definition
/// `burn_order` and the record path's wallet share).
pub(crate) fn burn_key<'g>(
    units: bool,
    priority: u8,
    expires_at: Option<&'g str>,
    promotional: bool,
    effective_at: &'g str,
    id: i64,
) -> impl Ord + 'g {
    (
        !units,
        priority,
        expires_at.is_none(),
        expires_at,
        !promotional,
        effective_at,
        id,
    )
}

/// A grant's amount read and bounded: above 0, at most 10^12, at most 12 decimals, whole
/// for a meter's units.
fn parse_amount(text: &str, units: bool) -> Result<Decimal> {
    let invalid = |why: &str| {
        Error::InvalidInput(format!("credit amount \"{}\" {why}", sanitize(text.trim())))
    };
    let amount = Decimal::from_str(text.trim())
        .map_err(|_| invalid("is not a decimal number (e.g. 20 or 12.50)"))?;
    if amount <= Decimal::ZERO {
        return Err(invalid("must be more than 0"));
    }
    if amount > MAX_AMOUNT {
        return Err(invalid("is over 10^12, the most one grant may carry"));
    }
    let amount = amount.normalize();
    if amount.scale() > MAX_DECIMALS {
        return Err(invalid("has more than 12 decimals"));
    }
    if units && amount.scale() > 0 {
        return Err(invalid("must be a whole number of the meter's units"));
    }
    Ok(amount)
}

/// Whether any plan prices units (a rate per group or an `overage_rate`): a money grant
/// buys nothing otherwise.
fn something_is_priced(config: &Config) -> bool {
    config.plans.iter().any(|plan| {
        plan.overage_rate.is_some()
            || plan
                .meters
                .values()
                .any(|terms| terms.overage_rate.is_some() || !terms.rates.is_empty())
    })
}

/// `request` checked against plans.toml and bounded, before anything is read or written.
fn validate(config: &Config, request: &NewGrant, now: DateTime<Utc>) -> Result<Decimal> {
    crate::customers::validate_id("customer id", &request.customer)?;
    let amount = parse_amount(&request.amount, request.meter.is_some())?;
    match &request.meter {
        Some(meter) => {
            config.known_meter(meter)?;
        }
        None if !something_is_priced(config) => {
            return Err(Error::InvalidInput(
                "a money grant buys nothing here: no plan in plans.toml has rates or an \
                 overage_rate, so no unit has a price; grant a meter's units instead \
                 (--meter ID), or give a plan an overage_rate"
                    .into(),
            ));
        }
        None => {}
    }
    let effective_at = request.effective_at.unwrap_or(now);
    if let Some(expires) = request.expires_at
        && expires <= effective_at
    {
        return Err(Error::InvalidInput(format!(
            "the grant expires at {} but takes effect at {}: its expiry must come after",
            format_ts(expires),
            format_ts(effective_at)
        )));
    }
    if let Some(key) = &request.key {
        crate::customers::validate_key(key)?;
    }
    if let Some(note) = &request.note
        && note.chars().count() > MAX_NOTE_LEN
    {
        return Err(Error::InvalidInput(format!(
            "a grant's note is at most {MAX_NOTE_LEN} characters"
        )));
    }
    Ok(amount)
}

const GRANT_COLUMNS: &str = "g.id, g.customer_id, g.meter_id, g.amount, g.priority, \
     g.effective_at, g.expires_at, g.promotional, g.note, g.idempotency_key, g.created_at";

fn decimal(text: &str, what: &str) -> Result<Decimal> {
    Decimal::from_str(text).map_err(|e| Error::Corrupt(format!("{what} \"{text}\": {e}")))
}

fn grant_from_row(r: &crate::db::Row) -> Result<Grant> {
    Ok(Grant {
        id: r.get(0)?,
        customer_id: r.get(1)?,
        meter: r.get(2)?,
        amount: decimal(&r.get::<_, String>(3)?, "credit_grants.amount")?,
        priority: r.get::<_, u32>(4)?.try_into().unwrap_or(u8::MAX),
        effective_at: r.get(5)?,
        expires_at: r.get(6)?,
        promotional: r.get(7)?,
        note: r.get(8)?,
        key: r.get(9)?,
        created_at: r.get(10)?,
    })
}

/// The grant `key` made for `customer`, if any.
fn grant_by_key(conn: &Connection, customer: &str, key: &str) -> Result<Option<Grant>> {
    conn.prepare_cached(&format!(
        "SELECT {GRANT_COLUMNS} FROM credit_grants g
         WHERE g.customer_id = ?1 AND g.idempotency_key = ?2"
    ))?
    .query_row(params![customer, key], grant_from_row)
    .optional()
}

/// True when `stored` is what `request` (amount read) asks for. A resend without an
/// effective_at asks for the stored one, whenever it was sent first.
fn same_grant(stored: &Grant, request: &NewGrant, amount: Decimal) -> bool {
    stored.amount == amount
        && stored.meter == request.meter
        && stored.priority == request.priority
        && request
            .effective_at
            .is_none_or(|at| format_ts(at) == stored.effective_at)
        && stored.expires_at == request.expires_at.map(format_ts)
        && stored.promotional == request.promotional
        && stored.note == request.note
}

/// The last entry of a grant: its remainder, and whether it was voided.
fn grant_state(conn: &Connection, grant_id: i64) -> Result<(Decimal, bool)> {
    let remaining: String = conn
        .prepare_cached(
            "SELECT remaining FROM credit_ledger WHERE grant_id = ?1 ORDER BY id DESC LIMIT 1",
        )?
        .query_row([grant_id], |r| r.get(0))
        .optional()?
        .ok_or_else(|| Error::Corrupt(format!("credit grant {grant_id} has no ledger entry")))?;
    let voided = conn
        .prepare_cached("SELECT 1 FROM credit_ledger WHERE grant_id = ?1 AND kind = 'void'")?
        .exists([grant_id])?;
    Ok((decimal(&remaining, "credit_ledger.remaining")?, voided))
}

fn append_entry(
    conn: &Connection,
    grant: &Grant,
    kind: &str,
    amount: Decimal,
    remaining: Decimal,
    now: DateTime<Utc>,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO credit_ledger (customer_id, grant_id, kind, amount, remaining, written_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        grant.customer_id,
        grant.id,
        kind,
        amount.to_string(),
        remaining.to_string(),
        format_ts(now)
    ])?;
    Ok(())
}

/// Write an `expiry` entry for each grant of `customers` that expired by `now` with credits
/// left: their remainder leaves the balance in the ledger, at the instant it expired. Run by
/// the writes that read a balance (a record batch, a grant), so no job is needed.
pub(crate) fn expire_due(conn: &Connection, customers: &[&str], now: DateTime<Utc>) -> Result<()> {
    let now_text = format_ts(now);
    let mut due: Vec<(Grant, String)> = Vec::new();
    for (list, mut params) in crate::db::in_lists(customers) {
        params.push(&now_text);
        let at = params.len();
        let mut statement = conn.prepare_cached(&format!(
            "SELECT {GRANT_COLUMNS}, (SELECT l.remaining FROM credit_ledger l
                                     WHERE l.grant_id = g.id ORDER BY l.id DESC LIMIT 1)
             FROM credit_grants g
             WHERE g.customer_id IN ({list}) AND g.expires_at <= ?{at}"
        ))?;
        let rows = statement.query_map(params.as_slice(), |r| {
            Ok((
                grant_from_row(r)?,
                r.get::<_, Option<String>>(11)?.unwrap_or_default(),
            ))
        })?;
        for row in rows {
            due.push(row?);
        }
    }
    for (grant, remaining) in due {
        let remaining = decimal(&remaining, "credit_ledger.remaining")?;
        if remaining > Decimal::ZERO {
            let at = grant
                .expires_at
                .as_deref()
                .and_then(|t| crate::billing::parse_ts(t).ok())
                .unwrap_or(now);
            append_entry(conn, &grant, "expiry", -remaining, Decimal::ZERO, at)?;
        }
    }
    Ok(())
}

/// Write a grant of `amount` (checked) and its ledger entry.
fn insert_grant(
    tx: &Connection,
    request: &NewGrant,
    amount: Decimal,
    now: DateTime<Utc>,
) -> Result<Grant> {
    let effective_at = format_ts(request.effective_at.unwrap_or(now));
    let id: i64 = tx.query_row(
        "INSERT INTO credit_grants (customer_id, meter_id, amount, priority, effective_at,
                 expires_at, promotional, note, idempotency_key, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING id",
        params![
            request.customer,
            request.meter,
            amount.to_string(),
            i64::from(request.priority),
            effective_at,
            request.expires_at.map(format_ts),
            request.promotional,
            request.note,
            request.key,
            format_ts(now)
        ],
        |r| r.get(0),
    )?;
    let grant = Grant {
        id,
        customer_id: request.customer.clone(),
        meter: request.meter.clone(),
        amount,
        priority: request.priority,
        effective_at,
        expires_at: request.expires_at.map(format_ts),
        promotional: request.promotional,
        note: request.note.clone(),
        key: request.key.clone(),
        created_at: format_ts(now),
    };
    append_entry(tx, &grant, "grant", amount, amount, now)?;
    Ok(grant)
}

/// Pay the customer's debts in `grant`'s unit (grants burnt below zero by a settle) from
/// `grant`, oldest first, as far as it goes: a burn on each side, the new grant's down and
/// the debt's back towards zero.
fn repay_debts(conn: &Connection, grant: &Grant, now: DateTime<Utc>) -> Result<()> {
    let debts: Vec<(Grant, String)> = conn
        .prepare_cached(&format!(
            "SELECT {GRANT_COLUMNS}, (SELECT l.remaining FROM credit_ledger l
                                     WHERE l.grant_id = g.id ORDER BY l.id DESC LIMIT 1)
             FROM credit_grants g
             WHERE g.customer_id = ?1 AND g.meter_id = ?2 AND g.id <> ?3 AND g.amount = '0'
             ORDER BY g.id"
        ))?
        .query_map(params![grant.customer_id, grant.meter, grant.id], |r| {
            Ok((
                grant_from_row(r)?,
                r.get::<_, Option<String>>(11)?.unwrap_or_default(),
            ))
        })?
        .collect::<Result<_>>()?;
    let mut left = grant.amount;
    for (debt, remaining) in debts {
        let owed = -decimal(&remaining, "credit_ledger.remaining")?;
        if owed <= Decimal::ZERO || left <= Decimal::ZERO {
            continue;
        }
        let paid = owed.min(left);
        left -= paid;
        append_entry(conn, grant, "burn", -paid, left, now)?;
        append_entry(conn, &debt, "burn", paid, paid - owed, now)?;
    }
    Ok(())
}

/// Credits; serves `credits`, `export credits`, serve's credits routes, doctor and backup.
impl Store {
    /// Give a customer credits: a grant and its ledger entry, in one write transaction. A
    /// key already used for this customer returns its grant (`duplicate`) if the parameters
    /// are the same, and is [`Error::IdempotencyConflict`] otherwise.
    pub fn grant_credits(
        &mut self,
        config: &Config,
        request: &NewGrant,
        now: DateTime<Utc>,
    ) -> Result<Granted> {
        let amount = validate(config, request, now)?;
        let tx = self.conn.transaction()?;
        crate::customers::get(&tx, &request.customer)?;
        expire_due(&tx, &[&request.customer], now)?;
        if let Some(key) = &request.key
            && let Some(stored) = grant_by_key(&tx, &request.customer, key)?
        {
            if !same_grant(&stored, request, amount) {
                return Err(Error::IdempotencyConflict(format!(
                    "idempotency key \"{}\" already made credit grant {} for customer \"{}\" \
                     with other parameters; use a new key for a new grant",
                    sanitize(key),
                    stored.id,
                    sanitize(&request.customer)
                )));
            }
            return Ok(Granted {
                grant: stored,
                duplicate: true,
            });
        }
        let grant = insert_grant(&tx, request, amount, now)?;
        repay_debts(&tx, &grant, now)?;
        crate::alerts::rearm_credit_alerts(&tx, &grant.customer_id, now)?;
        tx.commit()?;
        Ok(Granted {
            grant,
            duplicate: false,
        })
    }

    /// Void a grant: an entry removes its remainder (what it already paid stays paid), and
    /// the credit alerts plans.toml (`config`, when there is one) wants of the fall.
    /// Voiding a voided grant writes nothing and says so (`already`).
    pub fn void_grant(
        &mut self,
        config: Option<&Config>,
        grant_id: i64,
        now: DateTime<Utc>,
    ) -> Result<Voided> {
        let tx = self.conn.transaction()?;
        let grant = tx
            .prepare_cached(&format!(
                "SELECT {GRANT_COLUMNS} FROM credit_grants g WHERE g.id = ?1"
            ))?
            .query_row([grant_id], grant_from_row)
            .optional()?
            .ok_or_else(|| Error::InvalidInput(format!("no credit grant {grant_id}")))?;
        let (remaining, voided) = grant_state(&tx, grant_id)?;
        let mut outcome = Voided {
            grant_id,
            customer_id: grant.customer_id.clone(),
            meter: grant.meter.clone(),
            removed: remaining,
            already: voided,
        };
        if voided {
            outcome.removed = Decimal::ZERO;
            return Ok(outcome);
        }
        crate::alerts::around_credit_change(&tx, config, &grant.customer_id, now, || {
            append_entry(&tx, &grant, "void", -remaining, Decimal::ZERO, now)
        })?;
        tx.commit()?;
        Ok(outcome)
    }

    /// A customer's credits at `now`: every grant not expired with something left, in burn
    /// order, and the balances of those in effect.
    pub fn credit_balance(&self, customer: &str, now: DateTime<Utc>) -> Result<CreditBalance> {
        let read = self.conn.unchecked_transaction()?;
        crate::customers::get(&read, customer)?;
        let at = format_ts(now);
        let mut grants = read
            .prepare_cached(&format!(
                "SELECT {GRANT_COLUMNS},
                        (SELECT l.remaining FROM credit_ledger l WHERE l.grant_id = g.id
                         ORDER BY l.id DESC LIMIT 1)
                 FROM credit_grants g
                 WHERE g.customer_id = ?1 AND (g.expires_at IS NULL OR g.expires_at > ?2)"
            ))?
            .query_map(params![customer, at], |r| {
                let remaining: Option<String> = r.get(11)?;
                Ok(LiveGrant {
                    grant: grant_from_row(r)?,
                    remaining: decimal(
                        remaining.as_deref().unwrap_or("0"),
                        "credit_ledger.remaining",
                    )?,
                })
            })?
            .filter(|g| g.as_ref().map_or(true, |g| !g.remaining.is_zero()))
            .collect::<Result<Vec<_>>>()?;
        let held = wallet::held(&read, &[customer], now)?
            .remove(customer)
            .unwrap_or_default();
        read.finish()?;
        grants.sort_by(|a, b| burn_order(&a.grant, &b.grant));
        let mut balance = CreditBalance {
            customer: customer.to_string(),
            money: Amounts::default(),
            units: BTreeMap::new(),
            grants: Vec::new(),
        };
        for live in grants.iter().filter(|g| g.grant.effective_at <= at) {
            match &live.grant.meter {
                None => balance.money.add(live.remaining),
                Some(meter) => balance
                    .units
                    .entry(meter.clone())
                    .or_default()
                    .add(live.remaining),
            }
        }
        balance.money.hold(held.money);
        // A live hold on a meter without unit credits holds none of them: not a line.
        for (meter, units) in held.credit_units.into_iter().filter(|(_, u)| *u != 0) {
            balance
                .units
                .entry(meter)
                .or_default()
                .hold(Decimal::from(units));
        }
        balance.grants = grants;
        Ok(balance)
    }

    /// A customer's ledger, oldest first, from `since` (inclusive) when given.
    pub fn credit_ledger(
        &self,
        customer: &str,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<LedgerEntry>> {
        let read = self.conn.unchecked_transaction()?;
        crate::customers::get(&read, customer)?;
        let entries = read
            .prepare_cached(
                "SELECT l.id, l.grant_id, l.customer_id, l.kind, l.amount, l.remaining,
                        g.meter_id, l.written_at
                 FROM credit_ledger l JOIN credit_grants g ON g.id = l.grant_id
                 WHERE l.customer_id = ?1 AND (?2 IS NULL OR l.written_at >= ?2)
                 ORDER BY l.id",
            )?
            .query_map(params![customer, since.map(format_ts)], |r| {
                Ok(LedgerEntry {
                    id: r.get(0)?,
                    grant_id: r.get(1)?,
                    customer_id: r.get(2)?,
                    kind: r.get(3)?,
                    amount: decimal(&r.get::<_, String>(4)?, "credit_ledger.amount")?,
                    remaining: decimal(&r.get::<_, String>(5)?, "credit_ledger.remaining")?,
                    meter: r.get(6)?,
                    at: r.get(7)?,
                })
            })?
            .collect::<Result<Vec<_>>>()?;
        read.finish()?;
        Ok(entries)
    }

    /// Whether the ledger adds up, for every grant and customer (doctor; backup runs the same
    /// on its copy).
    pub fn check_ledger(&self) -> Result<LedgerCheck> {
        let read = self.conn.unchecked_transaction()?;
        let check = check_ledger(&read)?;
        read.finish()?;
        Ok(check)
    }
}

/// Every ledger entry folded per grant, in order: each entry's `remaining` must be the sum of
/// the grant's entries so far, the first must be the grant itself with its amount, and each
/// customer's balance (its grants' last remainders) the sum of its whole ledger. Streamed:
/// memory holds one grant and a sum per customer and unit.
pub(crate) fn check_ledger(conn: &Connection) -> Result<LedgerCheck> {
    let mut check = LedgerCheck::default();
    let mut grant: Option<(i64, Decimal)> = None;
    // Per customer and unit (meter or money): (the balance, the ledger's sum).
    let mut customers: BTreeMap<(String, Option<String>), (Decimal, Decimal)> = BTreeMap::new();
    conn.for_each_row(
        "SELECT l.grant_id, l.id, l.customer_id, l.kind, l.amount, l.remaining, g.amount,
                g.meter_id,
                (SELECT MAX(last.id) FROM credit_ledger last WHERE last.grant_id = l.grant_id)
         FROM credit_ledger l JOIN credit_grants g ON g.id = l.grant_id
         ORDER BY l.grant_id, l.id",
        params![],
        |r| {
            let grant_id: i64 = r.get(0)?;
            let entry: i64 = r.get(1)?;
            let customer: String = r.get(2)?;
            let kind: String = r.get(3)?;
            let amount = decimal(&r.get::<_, String>(4)?, "credit_ledger.amount")?;
            let remaining = decimal(&r.get::<_, String>(5)?, "credit_ledger.remaining")?;
            let granted = decimal(&r.get::<_, String>(6)?, "credit_grants.amount")?;
            let last: i64 = r.get(8)?;
            check.entries += 1;
            let sum = match grant {
                Some((id, sum)) if id == grant_id => sum.saturating_add(amount),
                _ => {
                    check.grants += 1;
                    if kind != "grant" || amount != granted {
                        check.mismatches.push(format!(
                            "credit grant {grant_id} of \"{}\" grants {granted}, but its first \
                             ledger entry ({entry}) is a {kind} of {amount}",
                            sanitize(&customer)
                        ));
                    }
                    amount
                }
            };
            if remaining != sum {
                check.mismatches.push(format!(
                    "credit grant {grant_id} of \"{}\": ledger entry {entry} leaves {remaining}, \
                     but its entries add up to {sum}",
                    sanitize(&customer)
                ));
            }
            grant = Some((grant_id, sum));
            let totals = customers.entry((customer, r.get(7)?)).or_default();
            totals.1 = totals.1.saturating_add(amount);
            if entry == last {
                totals.0 = totals.0.saturating_add(remaining);
            }
            Ok(())
        },
    )?;
    let orphans: i64 = conn.query_row(
        "SELECT COUNT(*) FROM credit_grants g
         WHERE NOT EXISTS (SELECT 1 FROM credit_ledger l WHERE l.grant_id = g.id)",
        [],
        |r| r.get(0),
    )?;
    if orphans > 0 {
        check
            .mismatches
            .push(format!("{orphans} credit grants have no ledger entry"));
    }
    for ((customer, meter), (balance, sum)) in customers {
        if balance != sum {
            check.mismatches.push(format!(
                "customer \"{}\": a {} balance of {balance}, but its ledger adds up to {sum}",
                sanitize(&customer),
                meter.map_or_else(|| "money".to_string(), |m| format!("\"{}\"", sanitize(&m)))
            ));
        }
    }
    Ok(check)
}
