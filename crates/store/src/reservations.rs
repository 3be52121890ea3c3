//! Reservations: hold what an event would use before the work, settle with what it really
//! used after. A reserve is decided inside the write transaction exactly as a record of the
//! estimate would be (allowance, caps, credits, and every other live hold), so holds never
//! let the available balance go below zero. A hold counts until it is settled, released or
//! past its expiry: the expiry is compared at every read, with no job to end it.

use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use super::Store;
use crate::billing::format_ts;
use crate::config::Config;
use crate::db::{Behavior, Connection, OptionalExtension, params};
use crate::record::{Hold, Mode, decide_in};
use crate::sanitize::sanitize;
use crate::{Error, IdempotencyKey, KeySource, RecordOutcome, RecordRequest, Result};
use meterline_core::Properties;

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
fn read(conn: &Connection, id: &str, now: DateTime<Utc>) -> Result<Option<(Reservation, String)>> {
    let found = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM reservations WHERE id = ?1"))?
        .query_row([id], |r| {
            let properties: Option<String> = r.get(4)?;
            let expires_at: String = r.get(7)?;
            let ended_as: Option<String> = r.get(9)?;
            let status = match ended_as {
                Some(ended) => ended,
                None if expires_at <= format_ts(now) => "lapsed".to_string(),
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
                r.get::<_, String>(11)?,
            ))
        })
        .optional()?;
    let Some((mut reservation, period_start)) = found else {
        return Ok(None);
    };
    reservation.holds = conn
        .prepare_cached(
            "SELECT meter_id, units, credit_units, credit_amount FROM reservation_holds
             WHERE reservation_id = ?1 ORDER BY meter_id",
        )?
        .query_map([id], |r| {
            Ok(HeldMeter {
                meter: r.get(0)?,
                units: r.get(1)?,
                credit_units: r.get(2)?,
                credit_amount: crate::meters::standing::stored_amount(&r.get::<_, String>(3)?),
            })
        })?
        .collect::<Result<_>>()?;
    Ok(Some((reservation, period_start)))
}

/// The reservation `id`, or the 404 error naming it.
fn find(conn: &Connection, id: &str, now: DateTime<Utc>) -> Result<(Reservation, String)> {
    read(conn, id, now)?.ok_or_else(|| Error::UnknownReservation(id.to_string()))
}

/// The event a reservation stands for, with `properties`, under `key`.
/// A `quantity` property is the event's quantity, as `record -n` gives it (what a meter
/// without a property of its own sums, the implicit one too).
fn event_of(
    reservation: &Reservation,
    mut properties: Properties,
    now: DateTime<Utc>,
) -> RecordRequest {
    let quantity = properties
        .get(crate::config::QUANTITY)
        .and_then(|q| q.parse::<i64>().ok());
    if quantity.is_some() {
        properties.remove(crate::config::QUANTITY);
    }
    let mut event = RecordRequest::new(&reservation.customer, quantity.unwrap_or(1), now);
    event.at_given = false;
    event.event_type = reservation.event_type.clone();
    event.meter = reservation.meter.clone();
    event.properties = properties;
    event
}

/// The properties of the event a settle recorded.
fn settled_properties(conn: &Connection, event_id: i64) -> Result<Properties> {
    let text: Option<String> = conn
        .prepare_cached("SELECT properties FROM usage_events WHERE id = ?1")?
        .query_row([event_id], |r| r.get(0))
        .optional()?
        .flatten();
    text.map_or(Ok(Properties::new()), |t| {
        serde_json::from_str(&t)
            .map_err(|e| Error::Corrupt(format!("usage_events.properties: {e}")))
    })
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

/// Hold what an event with `request`'s estimate would use, if a record of it would be taken;
/// nothing is held otherwise (`Reserved::Refused`). Inside `tx`, a write transaction.
fn reserve_in(
    tx: &Connection,
    config: &Config,
    request: &NewReservation,
    now: DateTime<Utc>,
) -> Result<Reserved> {
    validate(request)?;
    if let Some(key) = &request.key
        && let Some(id) = tx
            .prepare_cached(
                "SELECT id FROM reservations WHERE customer_id = ?1 AND idempotency_key = ?2",
            )?
            .query_row(params![request.customer, key], |r| r.get::<_, String>(0))
            .optional()?
    {
        let (reservation, _) = find(tx, &id, now)?;
        if reservation.event_type != request.event_type
            || reservation.meter != request.meter
            || reservation.properties != request.properties
        {
            return Err(Error::IdempotencyConflict(format!(
                "idempotency key \"{}\" already made reservation {} with other parameters; \
                     use a new key for a new reservation",
                sanitize(key),
                reservation.id
            )));
        }
        let outcome = RecordOutcome {
            recorded: false,
            duplicate: true,
            event_id: None,
            check: crate::meters::standing::metered_check_in(tx, config, &request.customer, now)?
                .check,
            meters: Vec::new(),
            refused_by: Vec::new(),
            refused_window: None,
        };
        return Ok(Reserved::Held {
            reservation,
            duplicate: true,
            outcome,
        });
    }
    let reservation = Reservation {
        id: format!("rsv_{}", uuid::Uuid::now_v7().simple()),
        customer: request.customer.clone(),
        event_type: request.event_type.clone(),
        meter: request.meter.clone(),
        properties: request.properties.clone(),
        key: request.key.clone(),
        created_at: format_ts(now),
        expires_at: format_ts(now + TimeDelta::seconds(request.ttl_secs)),
        status: "held".into(),
        ended_at: None,
        event_id: None,
        holds: Vec::new(),
    };
    let event = event_of(&reservation, request.properties.clone(), now);
    let (mut results, batch) =
        decide_in(tx, config, std::slice::from_ref(&event), now, Mode::Reserve)?;
    let outcome = results
        .pop()
        .ok_or_else(|| Error::Database("a reserve decided nothing".into()))?
        .map_err(|refusal| refusal.error)?;
    if !outcome.refused_by.is_empty() {
        return Ok(Reserved::Refused(outcome));
    }
    let holds = batch.write()?;
    let period_start = format_ts(outcome.check.period_start);
    insert(tx, &reservation, &period_start)?;
    for hold in &holds {
        insert_hold(tx, &reservation.id, hold)?;
    }
    // What was written, as `find` would read it back.
    let mut holds: Vec<HeldMeter> = holds
        .into_iter()
        .map(|h| HeldMeter {
            meter: h.meter,
            units: h.units,
            credit_units: h.credit_units,
            credit_amount: h.credit_amount.normalize(),
        })
        .collect();
    holds.sort_by(|a, b| a.meter.cmp(&b.meter));
    Ok(Reserved::Held {
        reservation: Reservation {
            holds,
            ..reservation
        },
        duplicate: false,
        outcome,
    })
}

fn insert(conn: &Connection, reservation: &Reservation, period_start: &str) -> Result<()> {
    let properties = (!reservation.properties.is_empty())
        .then(|| serde_json::to_string(&reservation.properties))
        .transpose()
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    conn.prepare_cached(
        "INSERT INTO reservations (id, customer_id, idempotency_key, event_type, meter_id,
             properties, period_start, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        reservation.id,
        reservation.customer,
        reservation.key,
        reservation.event_type,
        reservation.meter,
        properties,
        period_start,
        reservation.created_at,
        reservation.expires_at
    ])?;
    Ok(())
}

fn insert_hold(conn: &Connection, reservation: &str, hold: &Hold) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO reservation_holds (reservation_id, meter_id, units, credit_units,
             credit_amount)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        reservation,
        hold.meter,
        hold.units,
        hold.credit_units,
        hold.credit_amount.normalize().to_string()
    ])?;
    Ok(())
}

/// Record the event a reservation stood for, with what the work really used (`properties`;
/// the estimate's when `None`), and free its hold. A settle is never refused by caps or
/// credits. A resend answers with the event recorded the first time; a released reservation
/// cannot be settled. Inside `tx`, a write transaction.
fn settle_in(
    tx: &Connection,
    config: &Config,
    id: &str,
    properties: Option<Properties>,
    now: DateTime<Utc>,
) -> Result<Settled> {
    let (mut reservation, _) = find(tx, id, now)?;
    if reservation.status == "released" {
        return Err(Error::ReservationEnded(format!(
            "reservation {id} was released at {}: there is nothing to settle, and nothing \
                 was recorded; record the event itself if the work was done",
            reservation.ended_at.as_deref().unwrap_or("?")
        )));
    }
    let lapsed = reservation.status == "lapsed";
    if reservation.ended_at.is_none() {
        tx.prepare_cached(
            "UPDATE reservations SET ended_at = ?2, ended_as = 'settled' WHERE id = ?1",
        )?
        .execute(params![id, format_ts(now)])?;
    }
    let properties = match properties {
        Some(given) => given,
        // A resend without properties is the first settle's event.
        None => match reservation.event_id {
            Some(event_id) => settled_properties(tx, event_id)?,
            None => reservation.properties.clone(),
        },
    };
    let mut event = event_of(&reservation, properties, now);
    // The reservation's key, else its id: a settle sent twice records once.
    event.idempotency_key = Some(IdempotencyKey {
        key: reservation
            .key
            .clone()
            .unwrap_or_else(|| reservation.id.clone()),
        source: KeySource::Native,
    });
    let (mut results, batch) =
        decide_in(tx, config, std::slice::from_ref(&event), now, Mode::Settle)?;
    let outcome = results
        .pop()
        .ok_or_else(|| Error::Database("a settle decided nothing".into()))?
        .map_err(|refusal| refusal.error)?;
    batch.write()?;
    if let Some(event_id) = outcome.event_id.filter(|_| reservation.event_id.is_none()) {
        tx.prepare_cached("UPDATE reservations SET event_id = ?2 WHERE id = ?1")?
            .execute(params![id, event_id])?;
        reservation.event_id = Some(event_id);
    }
    // As written, without reading it back.
    reservation.status = "settled".into();
    reservation.ended_at.get_or_insert_with(|| format_ts(now));
    Ok(Settled {
        reservation,
        outcome,
        lapsed,
    })
}

/// Free a reservation's hold. Releasing it again changes nothing (`already`); a settled
/// reservation cannot be released. Inside `tx`, a write transaction.
fn release_in(tx: &Connection, id: &str, now: DateTime<Utc>) -> Result<Released> {
    let (mut reservation, _) = find(tx, id, now)?;
    match reservation.status.as_str() {
        "released" => {
            return Ok(Released {
                reservation,
                already: true,
            });
        }
        "settled" => {
            return Err(Error::ReservationEnded(format!(
                "reservation {id} was settled at {} (event {}): its event is recorded and \
                     its hold already freed",
                reservation.ended_at.as_deref().unwrap_or("?"),
                reservation.event_id.unwrap_or_default()
            )));
        }
        _ => {}
    }
    tx.prepare_cached(
        "UPDATE reservations SET ended_at = ?2, ended_as = 'released' WHERE id = ?1",
    )?
    .execute(params![id, format_ts(now)])?;
    reservation.status = "released".into();
    reservation.ended_at = Some(format_ts(now));
    Ok(Released {
        reservation,
        already: false,
    })
}

/// One meter's hold of a live reservation: made at `created_at`, in the period starting
/// `period_start`.
pub(crate) struct LiveHold {
    pub created_at: String,
    pub period_start: String,
    pub meter: String,
    pub units: i64,
    pub credit_units: i64,
    pub credit_amount: String,
}

/// What `customer`'s live reservations hold at `now`: its reservations not ended, then the
/// holds of each not expired. Two plain statements: SQLite prepared their JOIN again on every
/// run (a tenth of a check), and a customer has few live reservations at once.
pub(crate) fn live_holds(
    conn: &Connection,
    customer: &str,
    now: DateTime<Utc>,
) -> Result<Vec<LiveHold>> {
    let now = format_ts(now);
    let live: Vec<(String, String, String, String)> = conn
        .prepare_cached(
            "SELECT id, expires_at, period_start, created_at FROM reservations
             WHERE customer_id = ?1 AND ended_at IS NULL",
        )?
        .query_map(params![customer], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<Result<_>>()?;
    let mut holds = Vec::new();
    for (id, expires_at, period_start, created_at) in live {
        if expires_at <= now {
            continue;
        }
        let mut statement = conn.prepare_cached(
            "SELECT meter_id, units, credit_units, credit_amount FROM reservation_holds
             WHERE reservation_id = ?1",
        )?;
        let rows = statement.query_map(params![id], |r| {
            Ok(LiveHold {
                created_at: created_at.clone(),
                period_start: period_start.clone(),
                meter: r.get(0)?,
                units: r.get(1)?,
                credit_units: r.get(2)?,
                credit_amount: r.get(3)?,
            })
        })?;
        for hold in rows {
            holds.push(hold?);
        }
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

fn call_in(
    tx: &Connection,
    config: &Config,
    call: &ReservationCall,
    now: DateTime<Utc>,
) -> Result<ReservationAnswer> {
    Ok(match call {
        ReservationCall::Reserve(request) => {
            ReservationAnswer::Reserved(reserve_in(tx, config, request, now)?)
        }
        ReservationCall::Settle { id, properties } => {
            ReservationAnswer::Settled(settle_in(tx, config, id, properties.clone(), now)?)
        }
        ReservationCall::Release(id) => ReservationAnswer::Released(release_in(tx, id, now)?),
    })
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
        self.in_write(|tx| reserve_in(tx, config, request, now))
    }

    /// Record what a reserved event really used and free its hold, in one transaction
    /// (see `settle_in`).
    pub fn settle(
        &mut self,
        config: &Config,
        id: &str,
        properties: Option<Properties>,
        now: DateTime<Utc>,
    ) -> Result<Settled> {
        self.in_write(|tx| settle_in(tx, config, id, properties, now))
    }

    /// Free a reservation's hold (see `release_in`).
    pub fn release(&mut self, id: &str, now: DateTime<Utc>) -> Result<Released> {
        self.in_write(|tx| release_in(tx, id, now))
    }

    /// `calls` in one write transaction, each all or nothing on its own (a savepoint): serve's
    /// group commit, so that many clients' calls share one commit. Outer `Err`: the
    /// transaction failed and nothing was committed.
    pub fn reservation_calls(
        &mut self,
        config: &Config,
        calls: &[ReservationCall],
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<ReservationAnswer>>> {
        self.in_write(|tx| {
            let mut answers = Vec::with_capacity(calls.len());
            for call in calls {
                tx.execute("SAVEPOINT reservation_call", [])?;
                match call_in(tx, config, call, now) {
                    Err(e) if e.is_database() => return Err(e),
                    Err(e) => {
                        tx.execute("ROLLBACK TO reservation_call", [])?;
                        tx.execute("RELEASE reservation_call", [])?;
                        answers.push(Err(e));
                    }
                    Ok(answer) => {
                        tx.execute("RELEASE reservation_call", [])?;
                        answers.push(Ok(answer));
                    }
                }
            }
            Ok(answers)
        })
    }

    /// `f` in a write transaction, committed if it succeeds.
    fn in_write<T>(&mut self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let tx = self
            .conn
            .transaction_with_behavior(Behavior::ImmediateByKey)?;
        let answer = f(&tx)?;
        tx.commit()?;
        Ok(answer)
    }

    /// A reservation as it stands at `now`.
    pub fn reservation(&self, id: &str, now: DateTime<Utc>) -> Result<Reservation> {
        Ok(find(&self.conn, id, now)?.0)
    }
}
