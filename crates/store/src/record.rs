//! Recording usage: one IMMEDIATE transaction per batch (a single event is a batch of one),
//! with dedup, the hard-cap check on the running counter and the event insert inside it.

use std::collections::HashMap;

use crate::db::{Behavior, Connection, OptionalExtension, params};
use chrono::{DateTime, TimeDelta, Utc};

use super::Store;
use super::counters::Counters;
use super::customers::Customer;
use super::meters::{Applied, MeterCounters};
use super::new_events::{NewEvent, NewEvents};
use crate::billing::{
    STRIPE_MAX_FUTURE_SECS, UsageCheck, format_ts, parse_ts, period_containing, whole_second,
};
use crate::config::{Config, IMPLICIT_METER, Meter};
use crate::{Error, IdempotencyKey, RecordOutcome, RecordRequest, Result};
use meterline_core::metering::{MeterValue, check_properties, group_key, meter_value};

/// The largest quantity one event may carry. Far beyond any real unit count, and small enough
/// that no counter can overflow from a handful of mistakes.
pub const MAX_QUANTITY: i64 = 1_000_000_000_000;

/// A new meter event identifier, stored with the event when it is recorded and sent on every
/// attempt, so a resend is recognised by Stripe. Random (UUIDv7), so a restored backup that
/// reuses event ids never sends new usage under an identifier Stripe already has. 39 chars.
/// Events recorded before migration 4 keep `ml-<database id>-<event id>`.
pub fn new_identifier() -> String {
    // Encoded straight into the string: one per event, and `format!` showed in the profile.
    let mut buffer = uuid::Uuid::encode_buffer();
    let uuid = uuid::Uuid::now_v7().hyphenated().encode_lower(&mut buffer);
    let mut identifier = String::with_capacity(3 + uuid.len());
    identifier.push_str("ml-");
    identifier.push_str(uuid);
    identifier
}

/// The event a reused idempotency key first recorded.
struct Original {
    id: i64,
    customer_id: String,
    quantity: i64,
    user_id: Option<String>,
    at: DateTime<Utc>,
    /// True when the event was recorded at its own time, i.e. without an explicit `--at`.
    at_was_now: bool,
    meter_id: String,
    /// The properties as stored (a JSON object), if any.
    properties: Option<String>,
}

impl Original {
    /// An event recorded earlier in the same batch (at `now`, so its time was "now" when
    /// it matches it).
    fn of_batch(event: &NewEvent, now: DateTime<Utc>) -> Original {
        Original {
            id: event.id,
            customer_id: event.customer_id.clone(),
            quantity: event.quantity,
            user_id: event.user_id.clone(),
            at: event.occurred_at,
            at_was_now: event.occurred_at == whole_second(now).unwrap_or(now),
            meter_id: event.meter_id.clone(),
            properties: event.properties.clone(),
        }
    }

    /// The event stored under `key` in its source's namespace. Keys kept from before the
    /// namespaces that look like a drop-in route's (`legacy`, migration 9) may have come from
    /// either side, so both sides still find them: a resend gets the answer it got before.
    fn find(conn: &Connection, key: &IdempotencyKey) -> Result<Option<Original>> {
        type Found = (
            i64,
            String,
            i64,
            Option<String>,
            String,
            String,
            String,
            Option<String>,
        );
        let row: Option<Found> = conn
            .prepare_cached(
                "SELECT id, customer_id, quantity, user_id, occurred_at, recorded_at, meter_id,
                        properties
                 FROM usage_events
                 WHERE idempotency_key = ?1 AND idempotency_source IN (?2, 'legacy')",
            )?
            .query_row(params![key.key, key.source.as_str()], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })
            .optional()?;
        Ok(row.map(
            |(id, customer_id, quantity, user_id, at, recorded_at, meter_id, properties)| {
                let at = parse_ts(&at).unwrap_or_default();
                Original {
                    id,
                    customer_id,
                    quantity,
                    user_id,
                    at_was_now: at == parse_ts(&recorded_at).unwrap_or_default(),
                    at,
                    meter_id,
                    properties,
                }
            },
        ))
    }

    /// A retry must repeat the original's parameters; anything else is a client bug that
    /// "duplicate" would hide. A time equal to the moment of recording means "no time given",
    /// so a retry without `--at` a minute later is still the same event.
    fn same_as(
        &self,
        req: &RecordRequest,
        meter_id: &str,
        properties: Option<&str>,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let key = req.idempotency_key.as_ref().map_or("", |k| k.key.as_str());
        let mut differences = Vec::new();
        if meter_id != self.meter_id {
            differences.push(format!("meter \"{meter_id}\" (was \"{}\")", self.meter_id));
        }
        if properties != self.properties.as_deref() {
            differences.push(format!(
                "properties {} (was {})",
                properties.unwrap_or("none"),
                self.properties.as_deref().unwrap_or("none")
            ));
        }
        if req.customer_id != self.customer_id {
            differences.push(format!(
                "customer \"{}\" (was \"{}\")",
                req.customer_id, self.customer_id
            ));
        }
        if req.quantity != self.quantity {
            differences.push(format!("quantity {} (was {})", req.quantity, self.quantity));
        }
        if req.user_id != self.user_id {
            let show = |u: &Option<String>| {
                u.as_deref()
                    .map_or("none".to_string(), |u| format!("\"{u}\""))
            };
            differences.push(format!(
                "user {} (was {})",
                show(&req.user_id),
                show(&self.user_id)
            ));
        }
        let explicit = at != whole_second(now).unwrap_or(now);
        if explicit && !self.at_was_now && at != self.at {
            differences.push(format!(
                "time {} (was {})",
                format_ts(at),
                format_ts(self.at)
            ));
        }
        if differences.is_empty() {
            return Ok(());
        }
        Err(Error::IdempotencyConflict(format!(
            "idempotency key \"{key}\" was already used (event {}) with other parameters: {}; \
             nothing recorded. Use a new key for a new event",
            self.id,
            differences.join(", ")
        )))
    }
}

/// The record path; serves `record` and `record --batch`, serve's group-commit writer (the
/// native and drop-in routes), the demo, and products embedding the library.
impl Store {
    /// Record one event: a batch of one, so there is one write path.
    pub fn record(
        &mut self,
        config: &Config,
        req: &RecordRequest,
        now: DateTime<Utc>,
    ) -> Result<RecordOutcome> {
        self.record_batch(config, std::slice::from_ref(req), now)?
            .pop()
            .unwrap_or_else(|| Err(Error::Database("record_batch gave no result".into())))
    }

    /// Record many events in ONE IMMEDIATE transaction, decided in order as if recorded one
    /// after another. Each event has `record`'s exact semantics; a refused or invalid event has
    /// no effect at all (every check comes before its first write), the events around it do.
    ///
    /// Outer `Err`: the transaction failed and nothing was committed. Inner `Err`: the error
    /// this event would have had alone (unknown customer, invalid input, ...).
    pub fn record_batch(
        &mut self,
        config: &Config,
        requests: &[RecordRequest],
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<RecordOutcome>>> {
        let tx = self.conn.transaction_with_behavior(Behavior::Immediate)?;
        fill_pending_terms(&tx, config)?;
        let mut batch = Batch {
            conn: &tx,
            config,
            now,
            recorded_at: format_ts(now),
            customers: HashMap::new(),
            counters: Counters::default(),
            meters: MeterCounters::for_batch(config, requests),
            events: NewEvents::default(),
        };
        let mut results = Vec::with_capacity(requests.len());
        for req in requests {
            match batch.record(req) {
                // A database failure is the batch's failure: dropping `tx` rolls everything back.
                Err(e) if e.is_database() => return Err(e),
                other => results.push(other),
            }
        }
        batch.counters.flush(&tx)?;
        batch.meters.flush(&tx)?;
        batch.events.write(&tx, &batch.recorded_at)?;
        drop(batch);
        tx.commit()?;
        Ok(results)
    }
}

/// Counter rows from before migration 4 have no terms, and rows from before migration 11 no
/// terms for their meters: give them their plan's current terms once, at the first record
/// after the upgrade, so that later plans.toml edits no longer change them. One primary-key
/// lookup per batch when there is nothing to do.
fn fill_pending_terms(conn: &Connection, config: &Config) -> Result<()> {
    let pending = conn
        .prepare_cached("SELECT 1 FROM meterline_meta WHERE key = 'period_terms_pending'")?
        .exists([])?;
    if !pending {
        return Ok(());
    }
    for plan in &config.plans {
        conn.execute(
            "UPDATE usage_records SET included = ?2, at_limit = ?3, overage_rate = ?4, price = ?5
             WHERE at_limit IS NULL AND plan_id = ?1",
            params![
                plan.id,
                plan.included,
                plan.at_limit.as_str(),
                plan.overage_rate.map(|r| r.to_string()),
                plan.price.to_string()
            ],
        )?;
        conn.execute(
            "UPDATE usage_records SET meter_terms = ?2 WHERE meter_terms IS NULL AND plan_id = ?1",
            params![plan.id, plan.kept_meter_terms],
        )?;
    }
    conn.execute(
        "DELETE FROM meterline_meta WHERE key = 'period_terms_pending'",
        [],
    )?;
    Ok(())
}

/// Where an event on a meter other than `usage` counts, as `Batch::record` found it.
struct Placed {
    customer_id: String,
    /// The plan the period is billed under, its terms for the event's meter (kept by a closed
    /// period), and the period's start as stored.
    plan_id: String,
    terms: Option<crate::config::MeterTerms>,
    period: crate::billing::Period,
    period_start: String,
}

/// One batch's transaction and what it has read so far.
struct Batch<'t, 'c> {
    conn: &'t Connection,
    config: &'c Config,
    now: DateTime<Utc>,
    /// `now` in the database's text form, the recording time of every event.
    recorded_at: String,
    customers: HashMap<String, Customer>,
    counters: Counters<'c>,
    meters: MeterCounters,
    events: NewEvents,
}

impl<'c> Batch<'_, 'c> {
    /// One event. Writes only when it returns `recorded: true`.
    fn record(&mut self, req: &RecordRequest) -> Result<RecordOutcome> {
        let (conn, config, now) = (self.conn, self.config, self.now);
        if !(1..=MAX_QUANTITY).contains(&req.quantity) {
            return Err(Error::InvalidInput(format!(
                "quantity {} is out of range; it must be between 1 and {MAX_QUANTITY}",
                req.quantity
            )));
        }
        super::customers::validate_event_labels(
            req.user_id.as_deref(),
            req.idempotency_key.as_ref().map(|k| k.key.as_str()),
        )?;
        // Whole seconds: what the database stores and Stripe accepts.
        let occurred_at = whole_second(req.occurred_at)
            .ok_or_else(|| Error::InvalidInput("occurred_at out of range".into()))?;
        let latest = now
            .checked_add_signed(TimeDelta::seconds(STRIPE_MAX_FUTURE_SECS))
            .unwrap_or(now);
        if occurred_at > latest {
            return Err(Error::InvalidInput(format!(
                "event time {} is in the future (now is {}); events may be at most 5 minutes ahead",
                format_ts(occurred_at),
                format_ts(now)
            )));
        }

        let meter = match &req.meter {
            Some(id) => config.known_meter(id)?,
            None => config.default_meter(),
        };
        check_properties(&req.properties).map_err(Error::InvalidInput)?;
        let value =
            meter_value(meter, req.quantity, &req.properties).map_err(Error::InvalidInput)?;
        let properties = (!req.properties.is_empty())
            .then(|| serde_json::to_string(&req.properties))
            .transpose()
            .map_err(|e| Error::InvalidInput(e.to_string()))?;

        let original = match &req.idempotency_key {
            Some(key) => match self.events.with_key(key) {
                Some(event) => Some(Original::of_batch(event, now)),
                None => Original::find(conn, key)?,
            },
            None => None,
        };
        if let Some(original) = original {
            original.same_as(req, &meter.id, properties.as_deref(), occurred_at, now)?;
            // The standing is read from the database: bring it up to this event first.
            self.counters.flush(conn)?;
            return Ok(RecordOutcome {
                recorded: false,
                duplicate: true,
                event_id: Some(original.id),
                check: super::queries::check_in(conn, config, &req.customer_id, original.at, now)?,
            });
        }

        let customer = self.customer(&req.customer_id)?;
        if customer.archived_at.is_some() {
            return Err(Error::CustomerArchived(customer.id.clone()));
        }
        let plan = super::customers::plan_of(config, customer)?;
        let starts = customer
            .billing_anchor
            .and_time(chrono::NaiveTime::MIN)
            .and_utc();
        if occurred_at < starts {
            return Err(Error::InvalidInput(format!(
                "event time {} is before customer \"{}\" starts (its billing anchor {}); \
                 to import older usage, add the customer with an earlier --anchor",
                format_ts(occurred_at),
                customer.id,
                customer.billing_anchor
            )));
        }
        let period = period_containing(customer.billing_anchor, config.billing.period, occurred_at);
        let customer_id = customer.id.clone();
        let counter = self
            .counters
            .get(conn, config, &customer_id, plan, period, now)?;
        if meter.id != IMPLICIT_METER {
            // The period's row (plan, terms) exists whatever meter its events count on.
            counter.touch();
            let placed = Placed {
                plan_id: counter.plan_id.clone(),
                terms: counter.meter_terms.get(&meter.id).copied(),
                period_start: counter.period_start.clone(),
                customer_id,
                period,
            };
            return self.record_on_meter(req, meter, &value, properties, occurred_at, placed);
        }
        let MeterValue::Number(amount) = value else {
            return Err(Error::InvalidInput("the usage meter counts numbers".into()));
        };
        let before = counter.standing(&customer_id, counter.used, config);
        let would_be = counter.used.saturating_add(amount);
        if counter.allowance.hard_cap
            && counter
                .allowance
                .included
                .is_some_and(|limit| would_be > limit)
        {
            return Ok(RecordOutcome {
                recorded: false,
                duplicate: false,
                event_id: None,
                check: before,
            });
        }
        counter.add(amount)?;
        let after = counter.standing(&customer_id, counter.used, config);
        let period_start = counter.period_start.clone();

        let event_id = self.events.next_id(conn)?;
        self.events.add(NewEvent {
            id: event_id,
            customer_id: customer_id.clone(),
            user_id: req.user_id.clone(),
            quantity: req.quantity,
            occurred_at,
            period_start: period_start.clone(),
            idempotency_key: req.idempotency_key.clone(),
            stripe_identifier: new_identifier(),
            meter_id: meter.id.clone(),
            properties,
            amount: (amount != req.quantity).then_some(amount),
        });
        if period.contains(now) && after.level > before.level {
            // Only this transaction knows the counter before and after: the crossing is
            // written here or never. Events into a closed period alert nothing.
            super::alerts::record_crossings(
                conn,
                config,
                IMPLICIT_METER,
                before.level,
                &after,
                period,
                now,
            )?;
        }
        if let Some(user) = &req.user_id {
            conn.prepare_cached(
                "INSERT INTO usage_members (customer_id, period_start, user_id, used)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (customer_id, period_start, user_id) DO UPDATE
                     SET used = usage_members.used + excluded.used",
            )?
            .execute(params![customer_id, period_start, user, req.quantity])?;
        }
        Ok(RecordOutcome {
            recorded: true,
            duplicate: false,
            event_id: Some(event_id),
            check: after,
        })
    }

    /// One event on a meter other than `usage`: its counters are `meter_counters`, the cap
    /// the plan's terms for that meter (a meter the plan does not name is never capped).
    fn record_on_meter(
        &mut self,
        req: &RecordRequest,
        meter: &Meter,
        value: &MeterValue,
        properties: Option<String>,
        occurred_at: DateTime<Utc>,
        placed: Placed,
    ) -> Result<RecordOutcome> {
        let (conn, config) = (self.conn, self.config);
        let Placed {
            customer_id,
            plan_id,
            terms,
            period,
            period_start,
        } = placed;
        let allowance = super::meter_reads::allowance(terms.as_ref());
        let standing = |used| {
            UsageCheck::compute(
                &customer_id,
                &plan_id,
                allowance,
                period,
                used,
                &config.thresholds,
            )
        };
        let event_id = self.events.next_id(conn)?;
        let group = group_key(meter, &req.properties);
        let applied = self.meters.apply(
            conn,
            meter,
            terms.as_ref(),
            &customer_id,
            &period_start,
            group.as_deref(),
            value,
            occurred_at,
            event_id,
        )?;
        let (before, after) = match applied {
            Applied::Refused { used } => {
                return Ok(RecordOutcome {
                    recorded: false,
                    duplicate: false,
                    event_id: None,
                    check: standing(used),
                });
            }
            Applied::Counted { before, after } => (before, after),
        };
        let amount = match value {
            MeterValue::Number(n) => *n,
            MeterValue::Distinct(_) => after.saturating_sub(before),
        };
        let (before, after) = (standing(before), standing(after));
        if period.contains(self.now) && after.level > before.level {
            super::alerts::record_crossings(
                conn,
                config,
                &meter.id,
                before.level,
                &after,
                period,
                self.now,
            )?;
        }
        self.events.add(NewEvent {
            id: event_id,
            customer_id: customer_id.clone(),
            user_id: req.user_id.clone(),
            quantity: req.quantity,
            occurred_at,
            period_start,
            idempotency_key: req.idempotency_key.clone(),
            stripe_identifier: new_identifier(),
            meter_id: meter.id.clone(),
            properties,
            amount: Some(amount),
        });
        Ok(RecordOutcome {
            recorded: true,
            duplicate: false,
            event_id: Some(event_id),
            check: after,
        })
    }

    /// The customer, read once per batch.
    fn customer(&mut self, id: &str) -> Result<&Customer> {
        if !self.customers.contains_key(id) {
            let customer = super::customers::get(self.conn, id)?;
            self.customers.insert(id.to_string(), customer);
        }
        Ok(&self.customers[id])
    }
}
