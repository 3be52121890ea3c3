//! Recording usage: one transaction per event, with dedup, the counter increment and the
//! hard-cap check all inside it.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::Store;
use crate::billing::{UsageCheck, format_ts, period_containing};
use crate::config::Config;
use crate::{Error, Result};

/// The largest quantity one event may carry. Far beyond any real unit count, and small enough
/// that no counter can overflow from a handful of mistakes.
pub const MAX_QUANTITY: i64 = 1_000_000_000_000;

#[derive(Debug, Clone)]
pub struct RecordRequest {
    pub customer_id: String,
    pub quantity: i64,
    /// The member of an organisation account who used it.
    pub user_id: Option<String>,
    /// A repeated key counts nothing and returns the original event.
    pub idempotency_key: Option<String>,
    pub occurred_at: DateTime<Utc>,
}

impl RecordRequest {
    pub fn new(customer_id: &str, quantity: i64, occurred_at: DateTime<Utc>) -> Self {
        RecordRequest {
            customer_id: customer_id.to_string(),
            quantity,
            user_id: None,
            idempotency_key: None,
            occurred_at,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RecordOutcome {
    /// False when refused by the hard cap or when the key was seen before.
    pub recorded: bool,
    pub duplicate: bool,
    pub event_id: Option<i64>,
    /// The customer's standing in the event's period after this call.
    pub check: UsageCheck,
}

impl Store {
    pub fn record(
        &mut self,
        config: &Config,
        req: &RecordRequest,
        now: DateTime<Utc>,
    ) -> Result<RecordOutcome> {
        if !(1..=MAX_QUANTITY).contains(&req.quantity) {
            return Err(Error::InvalidInput(format!(
                "quantity {} is out of range; it must be between 1 and {MAX_QUANTITY}",
                req.quantity
            )));
        }
        super::customers::validate_event_labels(
            req.user_id.as_deref(),
            req.idempotency_key.as_deref(),
        )?;
        // Whole seconds: what the database stores and Stripe accepts.
        let occurred_at = DateTime::from_timestamp(req.occurred_at.timestamp(), 0)
            .ok_or_else(|| Error::InvalidInput("occurred_at out of range".into()))?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;

        if let Some(key) = &req.idempotency_key {
            let original: Option<(i64, String, String)> = tx
                .prepare_cached(
                    "SELECT id, customer_id, occurred_at FROM usage_events WHERE idempotency_key = ?1",
                )?
                .query_row([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            if let Some((event_id, customer_id, original_at)) = original {
                drop(tx);
                if customer_id != req.customer_id {
                    return Err(Error::InvalidInput(format!(
                        "idempotency key \"{key}\" was already used for customer \"{customer_id}\""
                    )));
                }
                let at = DateTime::parse_from_rfc3339(&original_at)
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or(now);
                return Ok(RecordOutcome {
                    recorded: false,
                    duplicate: true,
                    event_id: Some(event_id),
                    check: self.check_at(config, &req.customer_id, at)?,
                });
            }
        }

        let customer = super::customers::get(&tx, &req.customer_id)?;
        let plan = super::customers::plan_of(config, &customer)?;
        let period = period_containing(customer.billing_anchor, config.billing.period, occurred_at);
        let period_start = format_ts(period.start);

        let used: i64 = tx
            .prepare_cached(
                "INSERT INTO usage_records
                     (customer_id, period_start, period_end, used, plan_id, meter_event_name)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (customer_id, period_start) DO UPDATE SET used = used + excluded.used
                 RETURNING used",
            )?
            .query_row(
                params![
                    customer.id,
                    period_start,
                    format_ts(period.end),
                    req.quantity,
                    plan.id,
                    plan.meter_event
                ],
                |r| r.get(0),
            )?;
        let allowance = plan.allowance();
        let check = |used| {
            UsageCheck::compute(
                &customer.id,
                &plan.id,
                allowance,
                period,
                used,
                &config.thresholds,
            )
        };
        if allowance.hard_cap && allowance.included.is_some_and(|limit| used > limit) {
            // Dropping the transaction rolls the increment back: nothing is written.
            drop(tx);
            return Ok(RecordOutcome {
                recorded: false,
                duplicate: false,
                event_id: None,
                check: check(used - req.quantity),
            });
        }

        let event_id: i64 = tx
            .prepare_cached(
                "INSERT INTO usage_events
                     (customer_id, user_id, quantity, occurred_at, recorded_at, period_start,
                      idempotency_key)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 RETURNING id",
            )?
            .query_row(
                params![
                    customer.id,
                    req.user_id,
                    req.quantity,
                    format_ts(occurred_at),
                    format_ts(now),
                    period_start,
                    req.idempotency_key
                ],
                |r| r.get(0),
            )?;
        if let Some(user) = &req.user_id {
            tx.prepare_cached(
                "INSERT INTO usage_members (customer_id, period_start, user_id, used)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (customer_id, period_start, user_id) DO UPDATE
                     SET used = used + excluded.used",
            )?
            .execute(params![customer.id, period_start, user, req.quantity])?;
        }
        tx.commit()?;
        Ok(RecordOutcome {
            recorded: true,
            duplicate: false,
            event_id: Some(event_id),
            check: check(used),
        })
    }
}
