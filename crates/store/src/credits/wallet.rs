//! A customer's credits as the record path spends them: the grants in effect with what each
//! has left, in burn order, less what live reservations hold. A record batch reads a
//! customer's wallet once, while it holds the write lock, and decides every event on it in
//! memory; the burns become ledger entries written with the batch, so a credit is spent
//! inside the same transaction as the cap is decided, and never twice.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::decimal;
use crate::Result;
use crate::billing::format_ts;
use crate::config::Config;
use crate::db::{Connection, Param};
use meterline_core::{Amounts, Credits, Expiring};

/// A grant the wallet can spend from.
struct Spendable {
    id: i64,
    /// `None`: money.
    meter: Option<String>,
    remaining: Decimal,
    expires_at: Option<String>,
}

/// What one grant gave towards one event on one meter, and what it had left after.
#[derive(Debug, Clone, Copy)]
struct Take {
    grant: usize,
    amount: Decimal,
    remaining: Decimal,
}

/// What credits paid of the units one event used past a meter's `included`: `units` from
/// grants of that meter's units, `money_units` from money grants at the units' rate
/// (`money`). Taken from the wallet when decided; given back (`Wallet::undo`) if the event is
/// refused after all.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cover {
    pub(crate) units: i64,
    pub(crate) money_units: i64,
    pub(crate) money: Decimal,
    takes: Vec<Take>,
}

impl Cover {
    /// Every unit credits paid for.
    pub(crate) fn covered(&self) -> i64 {
        self.units.saturating_add(self.money_units)
    }
}

/// What live reservations hold of a customer's credits, and of each meter's total.
#[derive(Debug, Clone, Default)]
pub(crate) struct Held {
    pub(crate) money: Decimal,
    /// Meter -> units of its unit grants held.
    pub(crate) credit_units: HashMap<String, i64>,
    /// Period start × meter -> units held on that total.
    pub(crate) units: HashMap<(String, String), i64>,
}

/// One customer's spendable credits.
#[derive(Default)]
pub(crate) struct Wallet {
    grants: Vec<Spendable>,
    held: Held,
    /// `money_available` when it was read: the batch's before, for credit alerts.
    available_when_read: Decimal,
}

impl Wallet {
    /// The grants of `customer` in effect at `now` with something left, in burn order, and
    /// what its live reservations hold.
    pub(crate) fn load(conn: &Connection, customer: &str, now: DateTime<Utc>) -> Result<Wallet> {
        Ok(Wallet::load_all(conn, &[customer], now)?
            .remove(customer)
            .unwrap_or_default())
    }

    /// The same for each of `customers`, read at once.
    fn load_all(
        conn: &Connection,
        customers: &[&str],
        now: DateTime<Utc>,
    ) -> Result<HashMap<String, Wallet>> {
        let mut grants = spendable(conn, customers, now)?;
        let mut held = held(conn, customers, now)?;
        Ok(customers
            .iter()
            .map(|customer| {
                let mut wallet = Wallet {
                    grants: grants.remove(*customer).unwrap_or_default(),
                    held: held.remove(*customer).unwrap_or_default(),
                    available_when_read: Decimal::ZERO,
                };
                wallet.available_when_read = wallet.money_available();
                (customer.to_string(), wallet)
            })
            .collect())
    }

    /// Money that can still be spent: the money grants' remainders less what is held.
    pub(crate) fn money_available(&self) -> Decimal {
        let balance: Decimal = self
            .grants
            .iter()
            .filter(|g| g.meter.is_none())
            .map(|g| g.remaining)
            .sum();
        (balance - self.held.money).max(Decimal::ZERO)
    }

    /// Units of `meter` that can still be spent: its unit grants' remainders less what is held.
    pub(crate) fn units_available(&self, meter: &str) -> i64 {
        let balance: Decimal = self
            .grants
            .iter()
            .filter(|g| g.meter.as_deref() == Some(meter))
            .map(|g| g.remaining)
            .sum();
        let held = self.held.credit_units.get(meter).copied().unwrap_or(0);
        balance
            .trunc()
            .to_i64()
            .unwrap_or(i64::MAX)
            .saturating_sub(held)
            .max(0)
    }

    /// The money credits as `check --json` shows them, with the money that expires next.
    pub(crate) fn credits(&self) -> Credits {
        let mut credits = Credits::default();
        credits.money.hold(self.held.money);
        let money = self.grants.iter().filter(|g| g.meter.is_none());
        for grant in money.clone() {
            credits.money.add(grant.remaining);
        }
        let next = money.clone().filter_map(|g| g.expires_at.as_deref()).min();
        credits.expires_next = next.map(|at| Expiring {
            amount: money
                .filter(|g| g.expires_at.as_deref() == Some(at))
                .map(|g| g.remaining)
                .sum(),
            at: at.to_string(),
        });
        credits
    }

    /// `meter`'s unit credits, if the customer has any.
    pub(crate) fn unit_amounts(&self, meter: &str) -> Option<Amounts> {
        let mut grants = self
            .grants
            .iter()
            .filter(|g| g.meter.as_deref() == Some(meter))
            .peekable();
        grants.peek()?;
        let mut amounts = Amounts::default();
        amounts.hold(Decimal::from(
            self.held.credit_units.get(meter).copied().unwrap_or(0),
        ));
        for grant in grants {
            amounts.add(grant.remaining);
        }
        Some(amounts)
    }

    /// Units held by live reservations on `meter`'s total in the period starting `start`.
    pub(crate) fn held_on(&self, period_start: &str, meter: &str) -> i64 {
        self.held
            .units
            .get(&(period_start.to_string(), meter.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Pay for as many of `units` (past `meter`'s included, each at `rate`) as the credits
    /// can: grants of the meter's units first, then money, whole units only, from the grants
    /// in burn order. Taken now.
    pub(crate) fn cover(&mut self, meter: &str, units: i64, rate: Option<Decimal>) -> Cover {
        let mut cover = Cover::default();
        let from_units = self.units_available(meter).min(units);
        cover.units = from_units;
        self.take(&mut cover, Some(meter), Decimal::from(from_units));
        let rest = units - from_units;
        if let Some(rate) = rate.filter(|r| *r > Decimal::ZERO)
            && rest > 0
        {
            let available = self.money_available();
            // Whole units: the most whose price the money pays in full.
            let mut affordable = available
                .checked_div(rate)
                .map_or(0, |q| q.trunc().to_i64().unwrap_or(i64::MAX));
            affordable = affordable.min(rest);
            while affordable > 0 && rate * Decimal::from(affordable) > available {
                affordable -= 1;
            }
            cover.money_units = affordable;
            cover.money = rate * Decimal::from(affordable);
            let money = cover.money;
            self.take(&mut cover, None, money);
        }
        cover
    }

    /// Take `amount` from the grants of `meter` (`None`: money) in burn order.
    fn take(&mut self, cover: &mut Cover, meter: Option<&str>, mut amount: Decimal) {
        for (i, grant) in self.grants.iter_mut().enumerate() {
            if amount <= Decimal::ZERO {
                break;
            }
            if grant.meter.as_deref() != meter || grant.remaining <= Decimal::ZERO {
                continue;
            }
            let taken = amount.min(grant.remaining);
            grant.remaining -= taken;
            amount -= taken;
            cover.takes.push(Take {
                grant: i,
                amount: taken,
                remaining: grant.remaining,
            });
        }
    }

    /// Give back what `cover` took: its event was refused.
    pub(crate) fn undo(&mut self, cover: &Cover) {
        for take in cover.takes.iter().rev() {
            self.grants[take.grant].remaining += take.amount;
        }
    }
}

/// The grants of each of `customers` in effect at `now` with a remainder (a debt's is below
/// zero), in burn order. Sorted here by `burn_key`, not by an ORDER BY: with one, SQLite
/// prepared the statement again on every run (a range on a bound time and a sort: most of a
/// check).
fn spendable(
    conn: &Connection,
    customers: &[&str],
    now: DateTime<Utc>,
) -> Result<HashMap<String, Vec<Spendable>>> {
    /// A grant with the keys of its place in the burn order.
    struct Keyed {
        grant: Spendable,
        priority: u8,
        promotional: bool,
        effective_at: String,
    }
    let now = format_ts(now);
    let mut found: HashMap<String, Vec<Keyed>> = HashMap::new();
    for (list, mut params) in crate::db::in_lists(customers) {
        params.push(&now);
        let at = params.len();
        let mut statement = conn.prepare_cached(&format!(
            "SELECT g.id, g.meter_id, g.expires_at,
                    (SELECT l.remaining FROM credit_ledger l WHERE l.grant_id = g.id
                     ORDER BY l.id DESC LIMIT 1),
                    g.priority, g.promotional, g.effective_at, g.customer_id
             FROM credit_grants g
             WHERE g.customer_id IN ({list}) AND g.effective_at <= ?{at}
               AND (g.expires_at IS NULL OR g.expires_at > ?{at})"
        ))?;
        let mut rows = statement.query(params.as_slice())?;
        while let Some(r) = rows.next()? {
            let remaining: Option<String> = r.get(3)?;
            let remaining = match remaining.as_deref() {
                None | Some("0") => Decimal::ZERO,
                Some(text) => decimal(text, "credit_ledger.remaining")?,
            };
            // A debt (a grant burnt below zero) lowers the balance until a grant pays it.
            if remaining.is_zero() {
                continue;
            }
            found.entry(r.get(7)?).or_default().push(Keyed {
                grant: Spendable {
                    id: r.get(0)?,
                    meter: r.get(1)?,
                    expires_at: r.get(2)?,
                    remaining,
                },
                priority: r.get::<_, u32>(4)?.try_into().unwrap_or(u8::MAX),
                promotional: r.get(5)?,
                effective_at: r.get(6)?,
            });
        }
    }
    fn key(k: &Keyed) -> impl Ord + '_ {
        super::burn_key(
            k.grant.meter.is_some(),
            k.priority,
            k.grant.expires_at.as_deref(),
            k.promotional,
            &k.effective_at,
            k.grant.id,
        )
    }
    Ok(found
        .into_iter()
        .map(|(customer, mut grants)| {
            grants.sort_unstable_by(|a, b| key(a).cmp(&key(b)));
            (customer, grants.into_iter().map(|k| k.grant).collect())
        })
        .collect())
}

/// What the live reservations of each of `customers` hold at `now`, added up.
pub(super) fn held(
    conn: &Connection,
    customers: &[&str],
    now: DateTime<Utc>,
) -> Result<HashMap<String, Held>> {
    let mut found: HashMap<String, Held> = HashMap::new();
    for hold in crate::reservations::live_holds(conn, customers, now)? {
        let held = found.entry(hold.customer).or_default();
        held.money += decimal(&hold.credit_amount, "reservation_holds.credit_amount")?;
        *held.credit_units.entry(hold.meter.clone()).or_default() += hold.credit_units;
        *held
            .units
            .entry((hold.period_start, hold.meter))
            .or_default() += hold.units;
    }
    Ok(found)
}

/// A burn to write: one grant's part of a batch's events (the last of them `event_id`).
struct Burn {
    customer: String,
    grant_id: i64,
    amount: Decimal,
    remaining: Decimal,
    event_id: i64,
}

/// The wallets of one record batch's customers, read on first use, and the burns its events
/// made, written with the batch: one entry per grant a batch burnt, however many of its
/// events did (a busy customer's ledger would otherwise grow by a row per event).
#[derive(Default)]
pub(crate) struct Wallets {
    /// False when the database has no grant and no live reservation: nothing to read.
    enabled: bool,
    wallets: HashMap<String, Wallet>,
    burns: Vec<Burn>,
    /// Grant id -> its burn in `burns`.
    burnt: HashMap<i64, usize>,
}

/// Ledger entries per INSERT (7 parameters each).
const BURNS_PER_INSERT: usize = 100;

impl Wallets {
    pub(crate) fn new(enabled: bool) -> Wallets {
        Wallets {
            enabled,
            ..Wallets::default()
        }
    }

    /// Read `customer`'s wallet for this batch, unless read: first its plan's credits for
    /// the period are granted and its grants that expired get their expiry entries.
    pub(crate) fn open(
        &mut self,
        conn: &Connection,
        config: &crate::config::Config,
        customer: &crate::customers::Customer,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.open_all(conn, config, &[customer], now)
    }

    /// The same for each of `customers`, read at once (on PostgreSQL, a few round trips for
    /// a whole round of serve's writer, not a few per customer).
    pub(crate) fn open_all(
        &mut self,
        conn: &Connection,
        config: &crate::config::Config,
        customers: &[&crate::customers::Customer],
        now: DateTime<Utc>,
    ) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        let mut ids = Vec::with_capacity(customers.len());
        for customer in customers {
            if !self.wallets.contains_key(&customer.id) {
                // Rolled over before the old grant's remainder expires.
                super::period::grant_period_credits(conn, config, customer, now)?;
                ids.push(customer.id.as_str());
            }
        }
        if ids.is_empty() {
            return Ok(());
        }
        super::expire_due(conn, &ids, now)?;
        self.wallets.extend(Wallet::load_all(conn, &ids, now)?);
        Ok(())
    }

    /// True when `customer`'s wallet is to be read and is not yet.
    pub(crate) fn wants(&self, customer: &str) -> bool {
        self.enabled && !self.wallets.contains_key(customer)
    }

    /// `customer`'s wallet, if read (`open`).
    pub(crate) fn get(&mut self, customer: &str) -> Option<&mut Wallet> {
        self.wallets.get_mut(customer)
    }

    /// Add `sign` (1 or -1) times `hold` to what `customer`'s live reservations hold, in the
    /// period starting `period_start`, if its wallet is read.
    pub(crate) fn hold(
        &mut self,
        customer: &str,
        period_start: &str,
        hold: &crate::record::Hold,
        sign: i64,
    ) {
        let Some(wallet) = self.wallets.get_mut(customer) else {
            return;
        };
        let held = &mut wallet.held;
        held.money += Decimal::from(sign) * hold.credit_amount;
        *held.credit_units.entry(hold.meter.clone()).or_default() += sign * hold.credit_units;
        *held
            .units
            .entry((period_start.to_string(), hold.meter.clone()))
            .or_default() += sign * hold.units;
    }

    /// Give back what `cover` took from `customer`'s wallet.
    pub(crate) fn undo(&mut self, customer: &str, cover: &Cover) {
        if let Some(wallet) = self.wallets.get_mut(customer) {
            wallet.undo(cover);
        }
    }

    /// `units` of `meter` that a settle used beyond every credit: owed, as a debt grant (of
    /// 0) burnt below zero, which the customer's next grant of the meter's units pays first
    /// (`repay_debts`). Added to `cover`, so the units count as paid by credits.
    pub(crate) fn borrow(
        &mut self,
        conn: &Connection,
        customer: &str,
        meter: &str,
        units: i64,
        now: DateTime<Utc>,
        cover: &mut Cover,
    ) -> Result<()> {
        let debt = super::NewGrant {
            meter: Some(meter.to_string()),
            note: Some("debt: a settle used more than the credits held".into()),
            ..super::NewGrant::new(customer, "0")
        };
        let grant = super::insert_grant(conn, &debt, Decimal::ZERO, now)?;
        let wallet = self.wallets.entry(customer.to_string()).or_default();
        let owed = Decimal::from(units);
        wallet.grants.push(Spendable {
            id: grant.id,
            meter: grant.meter,
            remaining: -owed,
            expires_at: None,
        });
        cover.takes.push(Take {
            grant: wallet.grants.len() - 1,
            amount: owed,
            remaining: -owed,
        });
        Ok(())
    }

    /// `cover` was spent by event `event_id`: its ledger entries, written by `flush`.
    pub(crate) fn burn(&mut self, customer: &str, cover: &Cover, event_id: i64) {
        let Some(wallet) = self.wallets.get(customer) else {
            return;
        };
        for take in &cover.takes {
            let grant_id = wallet.grants[take.grant].id;
            match self.burnt.get(&grant_id) {
                // Takes come in order: the last one's remainder is the grant's.
                Some(&at) => {
                    let burn = &mut self.burns[at];
                    burn.amount -= take.amount;
                    burn.remaining = take.remaining;
                    burn.event_id = event_id;
                }
                None => {
                    self.burnt.insert(grant_id, self.burns.len());
                    self.burns.push(Burn {
                        customer: customer.to_string(),
                        grant_id,
                        amount: -take.amount,
                        remaining: take.remaining,
                        event_id,
                    });
                }
            }
        }
    }

    /// Write the batch's burns, several to an INSERT, and the credit alerts they crossed.
    pub(crate) fn flush(
        &mut self,
        conn: &Connection,
        config: &Config,
        now: DateTime<Utc>,
        written_at: &str,
    ) -> Result<()> {
        let written_at = written_at.to_string();
        for chunk in self.burns.chunks(BURNS_PER_INSERT) {
            let texts: Vec<(String, String)> = chunk
                .iter()
                .map(|b| {
                    (
                        b.amount.normalize().to_string(),
                        b.remaining.normalize().to_string(),
                    )
                })
                .collect();
            let mut values: Vec<&dyn Param> = Vec::with_capacity(chunk.len() * 6);
            for (burn, (amount, remaining)) in chunk.iter().zip(&texts) {
                values.extend_from_slice(&[
                    &burn.customer as &dyn Param,
                    &burn.grant_id,
                    amount,
                    remaining,
                    &written_at,
                    &burn.event_id,
                ]);
            }
            let sql = format!(
                "INSERT INTO credit_ledger (customer_id, grant_id, kind, amount, remaining,
                                            written_at, event_id)
                 VALUES {}",
                vec!["(?, ?, 'burn', ?, ?, ?, ?)"; chunk.len()].join(",")
            );
            conn.write(&sql, values.as_slice())?;
        }
        self.burns.clear();
        self.burnt.clear();
        for (customer, wallet) in &self.wallets {
            let (before, after) = (wallet.available_when_read, wallet.money_available());
            crate::alerts::record_credit_crossings(conn, config, customer, before, after, now)?;
        }
        Ok(())
    }
}
