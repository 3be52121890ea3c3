//! The events one record batch adds, written at its end in multi-row INSERTs. SQLite keeps a
//! statement journal for every INSERT into a table with unique indexes; one statement per few
//! hundred events instead of one per event is most of the batch's speed. PostgreSQL parses and
//! plans every statement anew (unnamed, for PgBouncer), so it gets the whole batch as one array
//! per column, unnested: 13 parameters instead of thousands.

use std::collections::HashMap;

use crate::db::{Connection, Engine, Param, params};
use chrono::{DateTime, Utc};

use crate::{IdempotencyKey, Result};

/// Rows per INSERT statement (13 parameters each, far below SQLite's limit).
const ROWS_PER_INSERT: usize = 250;
const COLUMNS: &str = "id, customer_id, user_id, quantity, occurred_at, recorded_at, \
                       period_start, idempotency_key, idempotency_source, stripe_identifier, \
                       meter_id, properties, amount";

/// One event the batch recorded.
pub(super) struct NewEvent {
    pub id: i64,
    pub customer_id: String,
    pub user_id: Option<String>,
    pub quantity: i64,
    pub occurred_at: DateTime<Utc>,
    pub period_start: String,
    pub idempotency_key: Option<IdempotencyKey>,
    pub stripe_identifier: String,
    pub meter_id: String,
    /// The properties as a JSON object, if any.
    pub properties: Option<String>,
    /// What it added to its meter, when that is not `quantity`.
    pub amount: Option<i64>,
}

#[derive(Default)]
pub(super) struct NewEvents {
    events: Vec<NewEvent>,
    /// Idempotency key -> position in `events`: a key repeated within the batch.
    keys: HashMap<IdempotencyKey, usize>,
    /// The id the next event gets, as SQLite itself would pick it; `None` when none is left.
    next_id: Option<i64>,
}

impl NewEvents {
    /// A batch's events, numbered on from `last_id`, the largest event id stored (read by the
    /// batch under the write lock, so nobody else adds events meanwhile).
    pub(crate) fn after(last_id: i64) -> NewEvents {
        NewEvents {
            next_id: last_id.checked_add(1),
            ..NewEvents::default()
        }
    }

    /// The id the next added event will have.
    pub(crate) fn next_id(&self) -> Result<i64> {
        self.next_id
            .ok_or_else(|| crate::Error::Database("usage_events has no event id left".into()))
    }

    /// Keep `event` (its id from `next_id`) until `write`.
    pub(crate) fn add(&mut self, event: NewEvent) {
        self.next_id = event.id.checked_add(1);
        if let Some(key) = &event.idempotency_key {
            self.keys.insert(key.clone(), self.events.len());
        }
        self.events.push(event);
    }

    /// The event of this batch that used `key`, if any.
    pub(crate) fn with_key(&self, key: &IdempotencyKey) -> Option<&NewEvent> {
        self.keys.get(key).map(|&i| &self.events[i])
    }

    /// Insert every kept event, all recorded at `recorded_at`.
    pub(crate) fn write(&mut self, conn: &Connection, recorded_at: &str) -> Result<()> {
        if conn.engine() == Engine::Postgres {
            self.write_arrays(conn, recorded_at)?;
        } else {
            self.write_rows(conn, recorded_at)?;
        }
        self.events.clear();
        self.keys.clear();
        Ok(())
    }

    /// Every event in one INSERT of arrays (PostgreSQL).
    fn write_arrays(&self, conn: &Connection, recorded_at: &str) -> Result<()> {
        if self.events.is_empty() {
            return Ok(());
        }
        let events = &self.events;
        let integers = |f: fn(&NewEvent) -> Option<i64>| events.iter().map(f).collect();
        let ids: Vec<Option<i64>> = integers(|e| Some(e.id));
        let quantities: Vec<Option<i64>> = integers(|e| Some(e.quantity));
        let amounts: Vec<Option<i64>> = integers(|e| e.amount);
        let occurred: Vec<String> = events
            .iter()
            .map(|e| crate::billing::format_ts(e.occurred_at))
            .collect();
        let texts = |f: fn(&NewEvent) -> Option<&str>| -> Vec<Option<&str>> {
            events.iter().map(f).collect()
        };
        let customer = texts(|e| Some(&e.customer_id));
        let user = texts(|e| e.user_id.as_deref());
        let occurred_at: Vec<Option<&str>> = occurred.iter().map(|t| Some(t.as_str())).collect();
        let recorded = vec![Some(recorded_at); events.len()];
        let period = texts(|e| Some(&e.period_start));
        let key = texts(|e| e.idempotency_key.as_ref().map(|k| k.key.as_str()));
        let source = texts(|e| e.idempotency_key.as_ref().map(|k| k.source.as_str()));
        let identifier = texts(|e| Some(&e.stripe_identifier));
        let meter = texts(|e| Some(&e.meter_id));
        let properties = texts(|e| e.properties.as_deref());
        conn.prepare_cached(&format!(
            "INSERT INTO usage_events ({COLUMNS})
             SELECT * FROM unnest(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
        ))?
        .execute(params![
            ids,
            customer,
            user,
            quantities,
            occurred_at,
            recorded,
            period,
            key,
            source,
            identifier,
            meter,
            properties,
            amounts
        ])?;
        Ok(())
    }

    /// The events a few hundred to an INSERT (SQLite).
    fn write_rows(&self, conn: &Connection, recorded_at: &str) -> Result<()> {
        for chunk in self.events.chunks(ROWS_PER_INSERT) {
            let occurred: Vec<String> = chunk
                .iter()
                .map(|e| crate::billing::format_ts(e.occurred_at))
                .collect();
            let keys: Vec<(Option<&str>, Option<&str>)> = chunk
                .iter()
                .map(|e| match &e.idempotency_key {
                    Some(k) => (Some(k.key.as_str()), Some(k.source.as_str())),
                    None => (None, None),
                })
                .collect();
            let mut values: Vec<&dyn Param> = Vec::with_capacity(chunk.len() * 13);
            for ((e, occurred_at), (key, source)) in chunk.iter().zip(&occurred).zip(&keys) {
                values.extend_from_slice(&[
                    &e.id as &dyn Param,
                    &e.customer_id,
                    &e.user_id,
                    &e.quantity,
                    occurred_at,
                    &recorded_at,
                    &e.period_start,
                    key,
                    source,
                    &e.stripe_identifier,
                    &e.meter_id,
                    &e.properties,
                    &e.amount,
                ]);
            }
            let rows = vec!["(?,?,?,?,?,?,?,?,?,?,?,?,?)"; chunk.len()].join(",");
            conn.prepare_cached(&format!(
                "INSERT INTO usage_events ({COLUMNS}) VALUES {rows}"
            ))?
            .execute(values.as_slice())?;
        }
        Ok(())
    }
}
