//! The dashboard's reads of credits: every customer's available money credits in one query
//! (the overview's column), and one customer's credits for the detail view. The balance rule
//! is `credits::credit_balance`'s: a grant counts while it is in effect (effective_at <= now,
//! no expiry or one after now), with its last ledger entry's `remaining`.

use std::collections::HashMap;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::Store;
use crate::billing::{format_ts, parse_ts};
use crate::credits::{CreditBalance, LedgerEntry};
use crate::db::params;
use crate::{Error, Result};

/// How many ledger entries the detail view lists.
pub const RECENT_LEDGER: usize = 5;

/// Money credits read for the overview, and when they next change by time alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreditColumn {
    /// Available money credits per customer. In a full load: every customer with a money
    /// grant (in effect or not, used up or not: zero when nothing is left). In a refresh:
    /// every customer whose ledger moved, `None` for those without a money grant.
    pub customers: HashMap<String, Option<Decimal>>,
    /// The soonest a grant takes effect or expires after now: the balance moves then
    /// without a write.
    pub next_change: Option<DateTime<Utc>>,
}

/// One customer's credits for the detail view.
#[derive(Debug, Clone, PartialEq)]
pub struct CreditDetail {
    /// The balance, held and available (money and each meter's units), and the live grants
    /// in burn order.
    pub balance: CreditBalance,
    /// The ledger's last entries, newest first (at most [`RECENT_LEDGER`]).
    pub recent: Vec<LedgerEntry>,
}

impl CreditDetail {
    /// True when the customer has never had a grant.
    pub fn is_empty(&self) -> bool {
        self.balance.grants.is_empty() && self.recent.is_empty()
    }
}

/// The last entry's remainder of a grant (the grant's id in `g`).
const LAST_REMAINING: &str = "(SELECT l.remaining FROM credit_ledger l WHERE l.grant_id = g.id
     ORDER BY l.id DESC LIMIT 1)";

fn decimal(text: Option<String>) -> Result<Decimal> {
    let text = text.unwrap_or_else(|| "0".to_string());
    Decimal::from_str(&text)
        .map_err(|e| Error::Corrupt(format!("credit_ledger.remaining \"{text}\": {e}")))
}

/// Adds a money grant's row (effective_at, expires_at, remaining) to `column` at `now`.
fn add_grant(
    column: &mut CreditColumn,
    customer: String,
    grant: Option<(String, Option<String>, Decimal)>,
    now: &str,
) {
    let entry = column.customers.entry(customer).or_default();
    let Some((effective_at, expires_at, remaining)) = grant else {
        return;
    };
    let available = entry.get_or_insert(Decimal::ZERO);
    let started = effective_at.as_str() <= now;
    let ended = expires_at.as_deref().is_some_and(|at| at <= now);
    if started && !ended {
        *available = available.saturating_add(remaining);
    }
    let upcoming = [Some(effective_at), expires_at]
        .into_iter()
        .flatten()
        .filter(|at| at.as_str() > now)
        .filter_map(|at| parse_ts(&at).ok());
    column.next_change = column.next_change.into_iter().chain(upcoming).min();
}

/// The dashboard's credit reads; serves the tui.
impl Store {
    /// Every customer's available money credits at `now` (one query over the money grants),
    /// or with `since` (a ledger id) only the customers whose ledger has entries after it.
    /// Runs in the caller's read transaction when there is one.
    pub fn money_credits(&self, now: DateTime<Utc>, since: Option<i64>) -> Result<CreditColumn> {
        let sql = match since {
            None => format!(
                "SELECT g.customer_id, g.effective_at, g.expires_at, {LAST_REMAINING},
                        g.id IS NOT NULL
                 FROM credit_grants g WHERE g.meter_id IS NULL"
            ),
            // The customers touched, each with its money grants (none: one row of NULLs).
            Some(_) => format!(
                "SELECT t.customer_id, g.effective_at, g.expires_at, {LAST_REMAINING},
                        g.id IS NOT NULL
                 FROM (SELECT DISTINCT customer_id FROM credit_ledger WHERE id > ?1) t
                 LEFT JOIN credit_grants g
                   ON g.customer_id = t.customer_id AND g.meter_id IS NULL"
            ),
        };
        let mut column = CreditColumn::default();
        let at = format_ts(now);
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = match since {
            None => stmt.query(params![])?,
            Some(since) => stmt.query(params![since])?,
        };
        while let Some(r) = rows.next()? {
            let customer: String = r.get(0)?;
            let grant = if r.get::<_, bool>(4)? {
                Some((r.get(1)?, r.get(2)?, decimal(r.get(3)?)?))
            } else {
                None
            };
            add_grant(&mut column, customer, grant, &at);
        }
        Ok(column)
    }

    /// One customer's credits at `now`: the balance and the ledger's last entries.
    pub fn credit_detail(&self, customer: &str, now: DateTime<Utc>) -> Result<CreditDetail> {
        let balance = self.credit_balance(customer, now)?;
        let recent = self
            .conn
            .prepare_cached(
                "SELECT l.id, l.grant_id, l.customer_id, l.kind, l.amount, l.remaining,
                        g.meter_id, l.written_at
                 FROM credit_ledger l JOIN credit_grants g ON g.id = l.grant_id
                 WHERE l.customer_id = ?1
                 ORDER BY l.written_at DESC, l.id DESC LIMIT ?2",
            )?
            .query_map(params![customer, RECENT_LEDGER as i64], |r| {
                Ok(LedgerEntry {
                    id: r.get(0)?,
                    grant_id: r.get(1)?,
                    customer_id: r.get(2)?,
                    kind: r.get(3)?,
                    amount: decimal(r.get(4)?)?,
                    remaining: decimal(r.get(5)?)?,
                    meter: r.get(6)?,
                    at: r.get(7)?,
                })
            })?
            .collect::<Result<Vec<_>>>()?;
        Ok(CreditDetail { balance, recent })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(
        effective: &str,
        expires: Option<&str>,
        remaining: i64,
    ) -> Option<(String, Option<String>, Decimal)> {
        Some((
            effective.to_string(),
            expires.map(str::to_string),
            Decimal::from(remaining),
        ))
    }

    #[test]
    fn only_grants_in_effect_count_and_the_next_change_is_the_soonest() {
        let now = "2026-11-20T12:00:00Z";
        let mut column = CreditColumn::default();
        add_grant(
            &mut column,
            "a".into(),
            grant("2026-11-01T00:00:00Z", None, 5),
            now,
        );
        // Expired, not yet in effect, expiring later: only the last counts.
        add_grant(
            &mut column,
            "a".into(),
            grant("2026-11-01T00:00:00Z", Some("2026-11-20T12:00:00Z"), 7),
            now,
        );
        add_grant(
            &mut column,
            "a".into(),
            grant("2026-11-25T00:00:00Z", None, 11),
            now,
        );
        add_grant(
            &mut column,
            "a".into(),
            grant("2026-11-01T00:00:00Z", Some("2026-11-22T00:00:00Z"), 2),
            now,
        );
        // A customer whose only grant expired has credits: none left.
        add_grant(
            &mut column,
            "b".into(),
            grant("2026-11-01T00:00:00Z", Some("2026-11-02T00:00:00Z"), 3),
            now,
        );
        // A customer touched without a money grant.
        add_grant(&mut column, "c".into(), None, now);
        assert_eq!(column.customers["a"], Some(Decimal::from(7)));
        assert_eq!(column.customers["b"], Some(Decimal::ZERO));
        assert_eq!(column.customers["c"], None);
        assert_eq!(
            column.next_change.map(format_ts).as_deref(),
            Some("2026-11-22T00:00:00Z")
        );
    }
}
