//! Reservations: hold what an event would use before the work, settle with what it really
//! used after. A reserve is decided inside the write transaction exactly as a record of the
//! estimate would be (allowance, caps, credits, and every other live hold), so holds never
//! let the available balance go below zero. A hold counts until it is settled, released or
//! past its expiry: the expiry is compared at every read, with no job to end it.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use super::Store;
use crate::billing::format_ts;
use crate::config::Config;
use std::collections::HashMap;

use crate::db::{Behavior, Connection, OptionalExtension};
use crate::{Error, IdempotencyKey, KeySource, RecordOutcome, RecordRequest, Result};
use meterline_core::Properties;

mod round;

/// A hold's time to live when none is given, and the longest allowed.
pub const DEFAULT_TTL_SECS: i64 = 600;
pub const MAX_TTL_SECS: i64 = 3600;

/// A reservation to make.
#[derive(Debug, Clone)]
pub struct NewReservation {
    pub customer: String,
    /// A type (every meter of it), or one meter; neither is the default meter.
    pub event_type: Option<String>,
    pub meter: Option<String>,
    /// The estimate: the properties the event is expected to have.
    pub properties: Properties,
    pub ttl_secs: i64,
    /// A resend with the same key returns the same reservation; other parameters are refused.
    pub key: Option<String>,
}

/// What one reservation holds of one meter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldMeter {
    pub meter: String,
    /// Units held on the meter's total.
    pub units: i64,
    /// Of the units past `included`, those the meter's unit credits pay for, and the money
    /// credits held for the rest.
    pub credit_units: i64,
    #[serde(with = "rust_decimal::serde::str")]
    pub credit_amount: Decimal,
}

/// A reservation as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reservation {
    pub id: String,
    pub customer: String,
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    pub meter: Option<String>,
    pub properties: Properties,
    pub key: Option<String>,
    pub created_at: String,
    pub expires_at: String,
    /// `held`, `lapsed` (past its expiry, never settled or released), `settled` or
    /// `released`.
    pub status: String,
    pub ended_at: Option<String>,
    /// A settled reservation's event.
    pub event_id: Option<i64>,
    pub holds: Vec<HeldMeter>,
}

/// What [`Store::reserve`] decided. Made once per call and answered at once: the size of
/// the held variant costs nothing worth a box.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum Reserved {
    /// Held (or, `duplicate`, held before under the same key).
    Held {
        reservation: Reservation,
        duplicate: bool,
        /// Each meter's standing with the hold.
        outcome: RecordOutcome,
    },
    /// A record of the estimate would be refused: nothing is held.
    Refused(RecordOutcome),
}

/// What [`Store::settle`] did.
#[derive(Debug, Clone)]
pub struct Settled {
    pub reservation: Reservation,
    /// The recorded event's answer (a duplicate's when the settle is a resend).
    pub outcome: RecordOutcome,
    /// True when the hold had lapsed before the settle: the event is recorded all the same.
    pub lapsed: bool,
}

/// What [`Store::release`] did.
#[derive(Debug, Clone, Serialize)]
pub struct Released {
    #[serde(flatten)]
    pub reservation: Reservation,
    /// True when it had been released before: nothing was written.
    pub already: bool,
}

impl Reserved {
    /// The answer `reserve --json` prints and `POST /v1/reservations` sends: the reservation
    /// and each meter's standing with it, or a refusal as a record's.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Reserved::Held {
                reservation,
                duplicate,
                outcome,
            } => {
                let mut answer = serde_json::to_value(reservation).unwrap_or_default();
                answer["duplicate"] = (*duplicate).into();
                answer["meters"] = serde_json::to_value(&outcome.meters).unwrap_or_default();
                answer
            }
            Reserved::Refused(outcome) => {
                serde_json::to_value(meterline_core::wire::EventOut::new(outcome, None))
                    .unwrap_or_default()
            }
        }
    }
}

impl Settled {
    /// The answer `settle --json` prints and the settle route sends: the record answer, with
    /// the reservation and whether its hold had lapsed.
    pub fn to_json(&self) -> serde_json::Value {
        let mut answer =
            serde_json::to_value(meterline_core::wire::EventOut::new(&self.outcome, None))
                .unwrap_or_default();
        answer["reservation"] = serde_json::to_value(&self.reservation).unwrap_or_default();
        answer["lapsed"] = self.lapsed.into();
        answer
    }
}

const COLUMNS: &str = "id, customer_id, event_type, meter_id, properties, idempotency_key, \
     created_at, expires_at, ended_at, ended_as, event_id, period_start";

/// A stored reservation and the period start its units are held in.
type Stored = (Reservation, String);

/// A reservation from a row of `COLUMNS` (its holds left empty).
fn from_row(r: &crate::db::Row<'_>, now: &str) -> Result<Stored> {
    let properties: Option<String> = r.get(4)?;
    let expires_at: String = r.get(7)?;
    let ended_as: Option<String> = r.get(9)?;
    let status = match ended_as {
        Some(ended) => ended,
        None if expires_at.as_str() <= now => "lapsed".to_string(),
        None => "held".to_string(),
    };
    Ok((
        Reservation {
            id: r.get(0)?,
            customer: r.get(1)?,
            event_type: r.get(2)?,
            meter: r.get(3)?,
            properties: properties
                .map(|p| serde_json::from_str(&p))
                .transpose()
                .map_err(|e| Error::Corrupt(format!("reservations.properties: {e}")))?
                .unwrap_or_default(),
            key: r.get(5)?,
            created_at: r.get(6)?,
            expires_at,
            status,
            ended_at: r.get(8)?,
            event_id: r.get(10)?,
            holds: Vec::new(),
        },
        r.get(11)?,
    ))
}

/// The stored reservations named by `ids`, or by `keys` (of any customer), with their holds:
/// two queries for up to 512 of each (each a round trip on PostgreSQL).
pub(super) fn read_named(
    conn: &Connection,
    ids: &[&str],
    keys: &[&str],
    now: DateTime<Utc>,
) -> Result<HashMap<String, Stored>> {
    let now = format_ts(now);
    let mut found = HashMap::with_capacity(ids.len() + keys.len());
    let id_chunks: Vec<_> = crate::db::in_lists(ids).collect();
    let key_chunks: Vec<_> = crate::db::in_lists(keys).collect();
    for i in 0..id_chunks.len().max(key_chunks.len()) {
        let mut wanted = Vec::new();
        let mut params: Vec<&dyn crate::db::Param> = Vec::new();
        if let Some((list, id_params)) = id_chunks.get(i) {
            wanted.push(format!("id IN ({list})"));
            params.extend_from_slice(id_params);
        }
        if let Some((list, key_params)) = key_chunks.get(i) {
            wanted.push(format!("idempotency_key IN ({list})"));
            params.extend_from_slice(key_params);
        }
        let wanted = wanted.join(" OR ");
        let mut statement = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM reservations WHERE {wanted}"
        ))?;
        let mut rows = statement.query(params.as_slice())?;
        while let Some(row) = rows.next()? {
            let stored = from_row(&row, &now)?;
            found.insert(stored.0.id.clone(), stored);
        }
    }
    let read: Vec<&str> = found.keys().map(String::as_str).collect();
    for (id, hold) in holds_of(conn, &read)? {
        if let Some((reservation, _)) = found.get_mut(&id) {
            reservation.holds.push(HeldMeter {
                meter: hold.meter,
                units: hold.units,
                credit_units: hold.credit_units,
                credit_amount: crate::meters::standing::stored_amount(&hold.credit_amount),
            });
        }
    }
    Ok(found)
}

/// Of `keys`, those a reservation not yet settled nor released holds, each with its
/// reservation's id: its settle records its event under its key (else under its id), so an
/// event recorded under one first would refuse that settle once the work is done. One query
/// per 512 keys.
pub(crate) fn keys_held(conn: &Connection, keys: &[&str]) -> Result<HashMap<String, String>> {
    let mut held = HashMap::new();
    for (list, params) in crate::db::in_lists(keys) {
        let both: Vec<&dyn crate::db::Param> = params.iter().chain(&params).copied().collect();
        let mut statement = conn.prepare_cached(&format!(
            "SELECT COALESCE(idempotency_key, id), id FROM reservations
             WHERE (idempotency_key IN ({list}) OR (idempotency_key IS NULL AND id IN ({list})))
               AND ended_at IS NULL"
        ))?;
        let mut rows = statement.query(both.as_slice())?;
        while let Some(row) = rows.next()? {
            held.insert(row.get(0)?, row.get(1)?);
        }
    }
    Ok(held)
}

/// One `reservation_holds` row as stored.
struct StoredHold {
    meter: String,
    units: i64,
    credit_units: i64,
    credit_amount: String,
}

/// The holds of the reservations `ids`, each with its reservation's id, by meter: probes of
/// the holds' primary key. (Asked through a subquery on `reservations`, PostgreSQL scanned
/// every hold ever made, and a round slowed as the table grew.)
fn holds_of(conn: &Connection, ids: &[&str]) -> Result<Vec<(String, StoredHold)>> {
    let mut holds = Vec::new();
    for (list, params) in crate::db::in_lists(ids) {
        let mut statement = conn.prepare_cached(&format!(
            "SELECT reservation_id, meter_id, units, credit_units, credit_amount
             FROM reservation_holds WHERE reservation_id IN ({list})
             ORDER BY reservation_id, meter_id"
        ))?;
        let mut rows = statement.query(params.as_slice())?;
        while let Some(r) = rows.next()? {
            holds.push((
                r.get(0)?,
                StoredHold {
                    meter: r.get(1)?,
                    units: r.get(2)?,
                    credit_units: r.get(3)?,
                    credit_amount: r.get(4)?,
                },
            ));
        }
    }
    Ok(holds)
}

/// The reservation `id`, or the 404 error naming it.
fn find(conn: &Connection, id: &str, now: DateTime<Utc>) -> Result<Stored> {
    read_named(conn, &[id], &[], now)?
        .remove(id)
        .ok_or_else(|| Error::UnknownReservation(id.to_string()))
}

/// The event a reservation of `customer` (of a type, a meter or neither) stands for, with
/// `properties`. A `quantity` property is the event's quantity, as `record -n` gives it
/// (what a meter without a property of its own sums, the implicit one too).
fn event_of(
    (customer, event_type, meter): (&str, &Option<String>, &Option<String>),
    mut properties: Properties,
    now: DateTime<Utc>,
) -> RecordRequest {
    let quantity = properties
        .get(crate::config::QUANTITY)
        .and_then(|q| q.parse::<i64>().ok());
    if quantity.is_some() {
        properties.remove(crate::config::QUANTITY);
    }
    let mut event = RecordRequest::new(customer, quantity.unwrap_or(1), now);
    event.at_given = false;
    event.event_type = event_type.clone();
    event.meter = meter.clone();
    event.properties = properties;
    event
}

/// The event a settle of `reservation` recorded (event `event_id`), as a settle sent again
/// sends it: its properties, its quantity among them as `event_of` takes it, and its key.
fn settled_event(
    conn: &Connection,
    reservation: &Reservation,
    event_id: i64,
    now: DateTime<Utc>,
) -> Result<RecordRequest> {
    let found: Option<(Option<String>, i64, Option<String>)> = conn
        .prepare_cached(
            "SELECT properties, quantity, idempotency_key FROM usage_events WHERE id = ?1",
        )?
        .query_row([event_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((text, quantity, key)) = found else {
        return Err(Error::Corrupt(format!(
            "reservation {} was settled by event {event_id}, which is not stored",
            reservation.id
        )));
    };
    let mut properties: Properties = text
        .map(|t| serde_json::from_str(&t))
        .transpose()
        .map_err(|e| Error::Corrupt(format!("usage_events.properties: {e}")))?
        .unwrap_or_default();
    properties.insert(crate::config::QUANTITY.to_string(), quantity.to_string());
    let mut event = settle_event(reservation, properties, now);
    // The key it was recorded under.
    if let Some(key) = key {
        event.idempotency_key = Some(IdempotencyKey {
            key,
            source: KeySource::Native,
        });
    }
    Ok(event)
}

/// The event a settle of `reservation` records, with `properties`, under the reservation's
/// key, else its id: a settle sent twice records once.
fn settle_event(
    reservation: &Reservation,
    properties: Properties,
    now: DateTime<Utc>,
) -> RecordRequest {
    let mut event = event_of(
        (
            &reservation.customer,
            &reservation.event_type,
            &reservation.meter,
        ),
        properties,
        now,
    );
    event.idempotency_key = Some(settle_key(
        reservation.key.as_deref().unwrap_or(&reservation.id),
    ));
    event
}

/// The properties a settle records: the estimate's, each of `given` in its place. A settle
/// names what the work changed (the tokens it used) and keeps the rest (the model, the user).
fn settled_properties(reservation: &Reservation, given: Option<&Properties>) -> Properties {
    let mut properties = reservation.properties.clone();
    if let Some(given) = given {
        properties.extend(given.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    properties
}

/// The key a settle records its event under: the reservation's (else its id), a native one.
fn settle_key(key: &str) -> IdempotencyKey {
    IdempotencyKey {
        key: key.to_string(),
        source: KeySource::Native,
    }
}

fn validate(request: &NewReservation) -> Result<()> {
    crate::customers::validate_id("customer id", &request.customer)?;
    if !(1..=MAX_TTL_SECS).contains(&request.ttl_secs) {
        return Err(Error::InvalidInput(format!(
            "a reservation's ttl is between 1 second and 1 hour; {} seconds is not",
            request.ttl_secs
        )));
    }
    if request.event_type.is_some() && request.meter.is_some() {
        return Err(Error::InvalidInput(
            "a reservation names a type or a meter, not both".into(),
        ));
    }
    if let Some(key) = &request.key {
        crate::customers::validate_key(key)?;
    }
    Ok(())
}

/// One meter's hold of a live reservation of `customer`: made at `created_at`, in the
/// period starting `period_start`.
pub(crate) struct LiveHold {
    pub customer: String,
    pub created_at: String,
    pub period_start: String,
    pub meter: String,
    pub units: i64,
    pub credit_units: i64,
    pub credit_amount: String,
}

/// What the live reservations of `customers` hold at `now`: their reservations not ended
/// nor expired, then the holds of those. Two plain statements however many customers: SQLite
/// prepared their JOIN again on every run (a tenth of a check).
///
/// The expiry bounds the index range (`reservations_held`): reservations that lapsed without
/// a settle or a release stay unended for good, and are never read again.
pub(crate) fn live_holds(
    conn: &Connection,
    customers: &[&str],
    now: DateTime<Utc>,
) -> Result<Vec<LiveHold>> {
    let now = format_ts(now);
    // Reservation id -> (customer, period start, created at).
    let mut live: HashMap<String, (String, String, String)> = HashMap::new();
    let mut holds = Vec::new();
    for (list, mut params) in crate::db::in_lists(customers) {
        let mut statement = conn.prepare_cached(&format!(
            "SELECT id, period_start, created_at, customer_id FROM reservations
             WHERE customer_id IN ({list}) AND ended_at IS NULL AND expires_at > ?"
        ))?;
        params.push(&now);
        let mut rows = statement.query(params.as_slice())?;
        while let Some(r) = rows.next()? {
            live.insert(r.get(0)?, (r.get(3)?, r.get(1)?, r.get(2)?));
        }
    }
    let ids: Vec<&str> = live.keys().map(String::as_str).collect();
    for (id, hold) in holds_of(conn, &ids)? {
        let (customer, period_start, created_at) = &live[&id];
        holds.push(LiveHold {
            customer: customer.clone(),
            created_at: created_at.clone(),
            period_start: period_start.clone(),
            meter: hold.meter,
            units: hold.units,
            credit_units: hold.credit_units,
            credit_amount: hold.credit_amount,
        });
    }
    Ok(holds)
}

/// One reservation call, as serve's writer gathers them.
#[derive(Debug, Clone)]
pub enum ReservationCall {
    Reserve(NewReservation),
    Settle {
        id: String,
        properties: Option<Properties>,
    },
    Release(String),
}

/// A reservation call's answer.
#[derive(Debug, Clone)]
pub enum ReservationAnswer {
    Reserved(Reserved),
    Settled(Settled),
    Released(Released),
}

/// Reservations; serves `reserve`, `settle`, `release` and serve's reservation routes.
impl Store {
    /// Hold what an event with `request`'s estimate would use, if a record of it would be
    /// taken; nothing is held otherwise (`Reserved::Refused`).
    pub fn reserve(
        &mut self,
        config: &Config,
        request: &NewReservation,
        now: DateTime<Utc>,
    ) -> Result<Reserved> {
        match self.one_call(config, ReservationCall::Reserve(request.clone()), now)? {
            ReservationAnswer::Reserved(reserved) => Ok(reserved),
            _ => Err(Error::Database("a reserve answered as another call".into())),
        }
    }

    /// Record what a reserved event really used and free its hold, in one transaction. A
    /// settle is never refused by caps or credits; a resend answers with the event recorded
    /// the first time; a released reservation cannot be settled.
    pub fn settle(
        &mut self,
        config: &Config,
        id: &str,
        properties: Option<Properties>,
        now: DateTime<Utc>,
    ) -> Result<Settled> {
        let call = ReservationCall::Settle {
            id: id.to_string(),
            properties,
        };
        match self.one_call(config, call, now)? {
            ReservationAnswer::Settled(settled) => Ok(settled),
            _ => Err(Error::Database("a settle answered as another call".into())),
        }
    }

    /// Free a reservation's hold. Releasing it again changes nothing (`already`); a settled
    /// reservation cannot be released.
    pub fn release(&mut self, id: &str, now: DateTime<Utc>) -> Result<Released> {
        // A release alone decides no event: no plan is needed.
        let call = ReservationCall::Release(id.to_string());
        match self.in_round(None, std::slice::from_ref(&call), now)?.pop() {
            Some(Ok(ReservationAnswer::Released(released))) => Ok(released),
            Some(Err(e)) => Err(e),
            _ => Err(Error::Database("a release answered as another call".into())),
        }
    }

    /// Reservations neither settled nor released at `now`: those still held, and those that
    /// lapsed (they hold nothing, and their keys stay taken until they are settled or
    /// released). For `doctor`.
    pub fn open_reservations(&self, now: DateTime<Utc>) -> Result<(i64, i64)> {
        let now = format_ts(now);
        self.conn
            .prepare_cached(
                "SELECT COUNT(*) FILTER (WHERE expires_at > ?1),
                        COUNT(*) FILTER (WHERE expires_at <= ?1)
                 FROM reservations WHERE ended_at IS NULL",
            )?
            .query_row([&now], |r| Ok((r.get(0)?, r.get(1)?)))
    }

    fn one_call(
        &mut self,
        config: &Config,
        call: ReservationCall,
        now: DateTime<Utc>,
    ) -> Result<ReservationAnswer> {
        self.reservation_calls(config, std::slice::from_ref(&call), now)?
            .pop()
            .unwrap_or_else(|| Err(Error::Database("a reservation call had no answer".into())))
    }

    /// `calls` in one write transaction, decided in order in one pass (`round::calls_in`),
    /// each all or nothing on its own: serve's group commit, so that many clients' calls
    /// share one commit and one read of what they name. Outer `Err`: the transaction failed
    /// and nothing was committed.
    pub fn reservation_calls(
        &mut self,
        config: &Config,
        calls: &[ReservationCall],
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<ReservationAnswer>>> {
        self.in_round(Some(config), calls, now)
    }

    fn in_round(
        &mut self,
        config: Option<&Config>,
        calls: &[ReservationCall],
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<ReservationAnswer>>> {
        let tx = self
            .conn
            .transaction_with_behavior(Behavior::ImmediateByKey)?;
        let answers = round::calls_in(&tx, config, calls, now)?;
        tx.commit()?;
        Ok(answers)
    }

    /// A reservation as it stands at `now`.
    pub fn reservation(&self, id: &str, now: DateTime<Utc>) -> Result<Reservation> {
        Ok(find(&self.conn, id, now)?.0)
    }
}
