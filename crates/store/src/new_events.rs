//! The events one record batch adds, written at its end with `Connection::insert_rows`: many
//! to a statement on SQLite (a statement journal per INSERT into a table with unique indexes;
//! one per few hundred events instead of one per event is most of the batch's speed), the
//! whole batch as one array per column on PostgreSQL (it parses and plans every statement
//! anew: 13 parameters instead of thousands).

use std::collections::HashMap;

use crate::db::{Connection, Param};
use chrono::{DateTime, Utc};

use crate::{IdempotencyKey, Result};

const COLUMNS: &[&str] = &[
    "id",
    "customer_id",
    "user_id",
    "quantity",
    "occurred_at",
    "recorded_at",
    "period_start",
    "idempotency_key",
    "idempotency_source",
    "stripe_identifier",
    "meter_id",
    "properties",
    "amount",
    "event_type",
    "event_of",
    "billable",
];

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
    /// The event's type, when it named one rather than a meter.
    pub event_type: Option<String>,
    /// A row of an event of a type after its first: the first's id (which has the key).
    pub event_of: Option<i64>,
    /// Of what it added, the units neither the allowance nor credits covered (`None`: a
    /// meter whose units are not split so, max and latest).
    pub billable: Option<i64>,
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

    /// The meters event `id` of this batch fed after its first row (an event of a type).
    pub(crate) fn members_of(&self, id: i64) -> Vec<String> {
        // Its rows follow it: the batch adds an event's rows together.
        let first = self.events.partition_point(|e| e.id <= id);
        self.events[first..]
            .iter()
            .take_while(|e| e.event_of == Some(id))
            .map(|e| e.meter_id.clone())
            .collect()
    }

    /// Insert every kept event, all recorded at `recorded_at`.
    pub(crate) fn write(&mut self, conn: &Connection, recorded_at: &str) -> Result<()> {
        let events = &self.events;
        let occurred: Vec<String> = events
            .iter()
            .map(|e| crate::billing::format_ts(e.occurred_at))
            .collect();
        let keys: Vec<(Option<&str>, Option<&str>)> = events
            .iter()
            .map(|e| match &e.idempotency_key {
                Some(k) => (Some(k.key.as_str()), Some(k.source.as_str())),
                None => (None, None),
            })
            .collect();
        let mut values: Vec<&dyn Param> = Vec::with_capacity(events.len() * COLUMNS.len());
        for ((e, occurred_at), (key, source)) in events.iter().zip(&occurred).zip(&keys) {
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
                &e.event_type,
                &e.event_of,
                &e.billable,
            ]);
        }
        conn.insert_rows("usage_events", COLUMNS, &values)?;
        self.events.clear();
        self.keys.clear();
        Ok(())
    }
}
