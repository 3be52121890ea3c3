//! Credit crossings: `credits.low` when a customer's available money credits (balance less
//! what live reservations hold) fall from at least an `[[alerts]]` entry's `credits_below` to
//! below it, `credits.exhausted` when they fall from above 0 to 0. Written inside the
//! transaction that spent them (a record batch's or a settle's burns, a reservation's hold, a
//! void), the only one that knows the balance before and after, as rows of `alerts` with their
//! deliveries: the one outbox every alert is delivered from. Once per crossing: a row of
//! `credit_alerts_sent` stands for each one sent until a grant brings the available credits
//! back over its mark (re-armed).

use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::billing::{format_ts, period_containing};
use crate::config::Config;
use crate::credits::Wallet;
use crate::db::{Connection, params};
use crate::{Error, Result};

/// The level (and payload `type`) of a fall below `credits_below`.
pub(crate) const LOW: &str = "credits.low";
/// The level of a fall to 0; its threshold is 0.
pub(crate) const EXHAUSTED: &str = "credits.exhausted";

/// True when `available` stands over the mark of `level`: at least `threshold` for
/// `credits.low`, above 0 for `credits.exhausted`. A crossing goes from over to not over; a
/// grant that leaves the credits over the mark re-arms it.
fn over(level: &str, threshold: Decimal, available: Decimal) -> bool {
    if level == EXHAUSTED {
        available > Decimal::ZERO
    } else {
        available >= threshold
    }
}

/// The crossings from `before` to `after`: a `credits.low` per threshold fallen below, and
/// `credits.exhausted` on reaching 0.
fn crossings(
    thresholds: &[Decimal],
    before: Decimal,
    after: Decimal,
) -> Vec<(&'static str, Decimal)> {
    thresholds
        .iter()
        .map(|t| (LOW, *t))
        .chain([(EXHAUSTED, Decimal::ZERO)])
        .filter(|(level, t)| over(level, *t, before) && !over(level, *t, after))
        .collect()
}

/// The distinct `credits_below` of plans.toml's `[[alerts]]` entries, smallest first.
fn thresholds(config: &Config) -> Vec<Decimal> {
    let mut thresholds: Vec<Decimal> = config
        .alerts
        .iter()
        .filter_map(|rule| rule.credits_below)
        .collect();
    thresholds.sort_unstable();
    thresholds.dedup();
    thresholds
}

/// A decimal as stored in `alerts` and `credit_alerts_sent`: no trailing zeros, so "5.00"
/// and "5" in plans.toml are one threshold.
fn stored(amount: Decimal) -> String {
    amount.normalize().to_string()
}

/// `customer`'s available money credits at `now`.
fn available(conn: &Connection, customer: &str, now: DateTime<Utc>) -> Result<Decimal> {
    Ok(Wallet::load(conn, customer, now)?.money_available())
}

/// Inside the caller's transaction: the credit alerts of `customer`'s available money going
/// from `before` to `after`, each unless it was sent and not re-armed since, with a delivery
/// row for every `[[alerts]]` entry that wants it. Reads nothing unless a mark was crossed.
pub(crate) fn record_credit_crossings(
    conn: &Connection,
    config: &Config,
    customer: &str,
    before: Decimal,
    after: Decimal,
    now: DateTime<Utc>,
) -> Result<()> {
    let thresholds = thresholds(config);
    // No entry wants credit alerts: none are recorded (a usage crossing is, for status).
    if thresholds.is_empty() {
        return Ok(());
    }
    let crossed = crossings(&thresholds, before, after);
    if crossed.is_empty() {
        return Ok(());
    }
    let customer = crate::customers::get(conn, customer)?;
    let period = period_containing(customer.billing_anchor, config.billing.period, now);
    for (level, threshold) in crossed {
        let sent = conn
            .prepare_cached(
                "SELECT 1 FROM credit_alerts_sent
                 WHERE customer_id = ?1 AND level = ?2 AND threshold = ?3",
            )?
            .exists(params![customer.id, level, stored(threshold)])?;
        if sent {
            continue; // Sent before, and no grant has re-armed it since.
        }
        let id = meterline_core::alerts::new_id();
        conn.prepare_cached(
            "INSERT INTO alerts (id, customer_id, plan_id, period_start, period_end, level,
                 previous_level, used, occurred_at, meter_id, threshold, available)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, '', 0, ?7, NULL, ?8, ?9)",
        )?
        .execute(params![
            id,
            customer.id,
            customer.plan_id,
            format_ts(period.start),
            format_ts(period.end),
            level,
            format_ts(now),
            stored(threshold),
            stored(after)
        ])?;
        conn.prepare_cached(
            "INSERT INTO credit_alerts_sent (customer_id, level, threshold, alert_id)
             VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![customer.id, level, stored(threshold), id])?;
        let wanted = config.alerts.iter().filter(|rule| {
            rule.covers_plan(&customer.plan_id)
                && rule
                    .credits_below
                    .is_some_and(|t| level == EXHAUSTED || t == threshold)
        });
        for rule in wanted {
            conn.prepare_cached(
                "INSERT INTO alert_deliveries (alert_id, target) VALUES (?1, ?2)
                 ON CONFLICT DO NOTHING",
            )?
            .execute(params![id, rule.target.key()])?;
        }
    }
    Ok(())
}

/// Inside the caller's transaction: run `change` (a write that may lower `customer`'s
/// available money credits) and record the credit crossings it made. Reads nothing when no
/// `[[alerts]]` entry has `credits_below` (or there is no plans.toml: `None`).
pub(crate) fn around_credit_change<T>(
    conn: &Connection,
    config: Option<&Config>,
    customer: &str,
    now: DateTime<Utc>,
    change: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let Some(config) = config.filter(|c| !thresholds(c).is_empty()) else {
        return change();
    };
    let before = available(conn, customer, now)?;
    let changed = change()?;
    let after = available(conn, customer, now)?;
    record_credit_crossings(conn, config, customer, before, after, now)?;
    Ok(changed)
}

/// Inside a grant's transaction: the credit alerts sent to `customer` whose mark its
/// available money credits are back over are re-armed (a later fall sends again). One read
/// when nothing was sent.
pub(crate) fn rearm_credit_alerts(
    conn: &Connection,
    customer: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    let sent: Vec<(String, String)> = conn
        .prepare_cached("SELECT level, threshold FROM credit_alerts_sent WHERE customer_id = ?1")?
        .query_map([customer], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_>>()?;
    if sent.is_empty() {
        return Ok(());
    }
    let available = available(conn, customer, now)?;
    for (level, text) in sent {
        let threshold = Decimal::from_str(&text)
            .map_err(|e| Error::Corrupt(format!("credit_alerts_sent.threshold \"{text}\": {e}")))?;
        if over(&level, threshold, available) {
            conn.prepare_cached(
                "DELETE FROM credit_alerts_sent
                 WHERE customer_id = ?1 AND level = ?2 AND threshold = ?3",
            )?
            .execute(params![customer, level, text])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    #[test]
    fn a_fall_below_a_threshold_is_one_low_and_a_fall_to_zero_is_exhausted() {
        let thresholds = [d("5"), d("20")];
        // From at least the threshold to below it: one per threshold crossed.
        assert_eq!(crossings(&thresholds, d("25"), d("10")), [(LOW, d("20"))]);
        assert_eq!(crossings(&thresholds, d("5"), d("4.99")), [(LOW, d("5"))]);
        // Already below: nothing more, however far it falls, until 0.
        assert!(crossings(&thresholds, d("4.99"), d("0.01")).is_empty());
        assert_eq!(
            crossings(&thresholds, d("4.99"), d("0")),
            [(EXHAUSTED, Decimal::ZERO)]
        );
        // One fall across everything: each threshold and exhausted.
        assert_eq!(
            crossings(&thresholds, d("30"), d("0")),
            [(LOW, d("5")), (LOW, d("20")), (EXHAUSTED, Decimal::ZERO)]
        );
        // Staying over, rising, or staying at 0: nothing.
        assert!(crossings(&thresholds, d("20"), d("20")).is_empty());
        assert!(crossings(&thresholds, d("3"), d("30")).is_empty());
        assert!(crossings(&thresholds, d("0"), d("0")).is_empty());
    }

    #[test]
    fn a_mark_is_over_at_its_threshold_and_exhausted_over_zero() {
        assert!(over(LOW, d("5"), d("5")));
        assert!(!over(LOW, d("5"), d("4.999")));
        assert!(over(EXHAUSTED, Decimal::ZERO, d("0.000001")));
        assert!(!over(EXHAUSTED, Decimal::ZERO, Decimal::ZERO));
    }
}
