//! A round of reservation calls decided in one pass, the way `record_batch` decides events:
//! the reservations the round names are read at once, the events its reserves and settles
//! stand for go through one `Batch` (its customers, counters and wallets read once), each
//! call is decided in order in memory (a hold made or freed is seen by every call after it),
//! and the round's writes are made together at its end. On PostgreSQL, where each statement
//! is a round trip under the writers' lock, a round costs about as many however many calls
//! it has.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, TimeDelta, Utc};

use super::{
    HeldMeter, Released, Reservation, ReservationAnswer, ReservationCall, Reserved, Settled,
    Stored, event_of, read_named, settle_event, settle_key, settled_event, settled_properties,
    validate,
};
use crate::billing::format_ts;
use crate::config::Config;
use crate::db::{Connection, Param};
use crate::record::{Batch, Hold, Mode};
use crate::sanitize::sanitize;
use crate::{Error, RecordRequest, Result};
use meterline_core::Properties;

/// A call's answer before the round's writes: a resent reserve's standing is read after them.
/// Made once per call and answered at once: the size of an answer costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum Pending {
    Answer(ReservationAnswer),
    Resent(Reservation),
}

/// What a reserve's key already made.
enum Keyed<'r> {
    /// The reservation of the reserve's own customer.
    Own(&'r Reservation),
    /// The id of another customer's reservation.
    Another(&'r str),
}

/// What a round knows of the reservations it names, as its calls leave them.
#[derive(Default)]
struct Round {
    /// The stored reservations its settles, releases and resent reserves name, and those it
    /// made.
    known: HashMap<String, Stored>,
    /// The keyed reservations known, by key: one, or, made before keys were unique across
    /// customers (migration 20), one per customer.
    by_key: HashMap<String, Vec<String>>,
    /// The reservations the round made, in order: written at its end.
    made: Vec<String>,
    made_ids: HashSet<String>,
    /// Stored reservations the round ended (or gave an event): updated at its end.
    ended: Vec<String>,
    /// The event each settle of the round recorded: a resend sends it again.
    settled: HashMap<String, RecordRequest>,
}

/// `calls` in order inside `tx`, a write transaction, under `config` (which calls deciding
/// no event, releases, do without). Outer `Err`: the database failed and the transaction is
/// to be dropped; inner, a call's own error (it changed nothing).
pub(super) fn calls_in(
    tx: &Connection,
    config: Option<&Config>,
    calls: &[ReservationCall],
    now: DateTime<Utc>,
) -> Result<Vec<Result<ReservationAnswer>>> {
    let mut round = Round::read(tx, calls, now)?;
    let events = calls
        .iter()
        .map(|call| round.event_for(tx, call, now))
        .collect::<Result<Vec<_>>>()?;
    // A reserve's event is looked up under the key its settle will record it with: a key an
    // event holds already is refused now, not once the work is done.
    let requests: Vec<RecordRequest> = calls
        .iter()
        .zip(&events)
        .filter_map(|(call, event)| {
            let mut event = event.clone()?;
            if let ReservationCall::Reserve(r) = call {
                event.idempotency_key = r.key.as_deref().map(settle_key);
            }
            Some(event)
        })
        .collect();
    // A round that decides no event (releases only) reads no plan, no wallet, nothing.
    let mut batch = match config.filter(|_| !requests.is_empty()) {
        Some(config) => Some(Batch::begin(tx, config, &requests, now, true)?),
        None => None,
    };
    let mut pending = Vec::with_capacity(calls.len());
    for (call, event) in calls.iter().zip(events) {
        let batch = batch.as_mut();
        pending.push(match call {
            ReservationCall::Reserve(request) => round.reserve(batch, request, event, now)?,
            ReservationCall::Settle { id, properties } => {
                round.settle(batch, id, properties.as_ref(), event, now)?
            }
            ReservationCall::Release(id) => round.release(batch, id, now)?,
        });
    }
    if let Some(batch) = batch {
        batch.write()?;
    }
    round.write(tx)?;
    pending
        .into_iter()
        .map(|answer| {
            Ok(match answer {
                Ok(Pending::Answer(answer)) => Ok(answer),
                Ok(Pending::Resent(reservation)) => match config {
                    Some(config) => Ok(resent(tx, config, reservation, now)?),
                    None => Err(Error::Database("a reserve without plans".into())),
                },
                Err(e) => Err(e),
            })
        })
        .collect()
}

/// A reserve sent again under its key: the reservation it made, with its customer's standing.
fn resent(
    tx: &Connection,
    config: &Config,
    reservation: Reservation,
    now: DateTime<Utc>,
) -> Result<ReservationAnswer> {
    let check = crate::meters::standing::metered_check_in(tx, config, &reservation.customer, now)?;
    Ok(ReservationAnswer::Reserved(Reserved::Held {
        reservation,
        duplicate: true,
        outcome: crate::RecordOutcome {
            recorded: false,
            duplicate: true,
            event_id: None,
            check: check.check,
            meters: Vec::new(),
            refused_by: Vec::new(),
            refused_window: None,
        },
    }))
}

/// One meter's hold as the record path keeps it.
fn hold_of(held: &HeldMeter) -> Hold {
    Hold {
        meter: held.meter.clone(),
        units: held.units,
        credit_units: held.credit_units,
        credit_amount: held.credit_amount,
    }
}

impl Round {
    /// The stored reservations `calls` name, by id or by a reserve's key.
    fn read(tx: &Connection, calls: &[ReservationCall], now: DateTime<Utc>) -> Result<Round> {
        let mut ids = Vec::new();
        let mut keys = Vec::new();
        for call in calls {
            match call {
                ReservationCall::Reserve(r) => {
                    if let Some(key) = &r.key {
                        keys.push(key.as_str());
                    }
                }
                ReservationCall::Settle { id, .. } | ReservationCall::Release(id) => {
                    ids.push(id.as_str())
                }
            }
        }
        ids.sort_unstable();
        ids.dedup();
        keys.sort_unstable();
        keys.dedup();
        let known = if ids.is_empty() && keys.is_empty() {
            HashMap::new()
        } else {
            read_named(tx, &ids, &keys, now)?
        };
        let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
        for (r, _) in known.values() {
            if let Some(key) = &r.key {
                by_key.entry(key.clone()).or_default().push(r.id.clone());
            }
        }
        Ok(Round {
            known,
            by_key,
            ..Round::default()
        })
    }

    /// The reservation `id` as the round knows it: stored before it (one it made cannot be
    /// named, its id was not given out yet).
    fn stored(&self, id: &str) -> Result<&Stored> {
        self.known
            .get(id)
            .filter(|_| !self.made_ids.contains(id))
            .ok_or_else(|| Error::UnknownReservation(id.to_string()))
    }

    /// What `key` already made, if anything: `customer`'s own reservation, else another
    /// customer's.
    fn keyed(&self, customer: &str, key: &str) -> Option<Keyed<'_>> {
        let made: Vec<&Reservation> = self
            .by_key
            .get(key)?
            .iter()
            .map(|id| &self.known[id].0)
            .collect();
        match made.iter().find(|r| r.customer == customer) {
            Some(own) => Some(Keyed::Own(own)),
            None => made.first().map(|r| Keyed::Another(&r.id)),
        }
    }

    /// The event `call` will decide, as far as the stored reservations tell before the round:
    /// the batch reads its customers, counters and wallets for all of them at once.
    fn event_for(
        &self,
        tx: &Connection,
        call: &ReservationCall,
        now: DateTime<Utc>,
    ) -> Result<Option<RecordRequest>> {
        Ok(match call {
            ReservationCall::Reserve(r) => validate(r).is_ok().then(|| {
                event_of(
                    (&r.customer, &r.event_type, &r.meter),
                    r.properties.clone(),
                    now,
                )
            }),
            ReservationCall::Settle { id, properties } => match self.stored(id) {
                Ok((reservation, _)) if reservation.status != "released" => {
                    Some(match reservation.event_id {
                        // Sent again: the first settle's event, or what is given under its key.
                        Some(event_id) => {
                            let first = settled_event(tx, reservation, event_id, now)?;
                            sent_again(reservation, first, properties.as_ref(), now)
                        }
                        None => settle_event(
                            reservation,
                            settled_properties(reservation, properties.as_ref()),
                            now,
                        ),
                    })
                }
                _ => None,
            },
            ReservationCall::Release(_) => None,
        })
    }

    /// Hold what an event with `request`'s estimate would use, if a record of it would be
    /// taken; nothing is held otherwise (`Reserved::Refused`).
    fn reserve(
        &mut self,
        batch: Option<&mut Batch<'_, '_>>,
        request: &super::NewReservation,
        event: Option<RecordRequest>,
        now: DateTime<Utc>,
    ) -> Result<Result<Pending>> {
        if let Err(e) = validate(request) {
            return Ok(Err(e));
        }
        let keyed = request
            .key
            .as_deref()
            .and_then(|key| Some((key, self.keyed(&request.customer, key)?)));
        if let Some((key, Keyed::Another(other))) = keyed {
            return Ok(Err(Error::IdempotencyConflict(format!(
                "idempotency key \"{}\" already made reservation {other} for another customer; \
                 a settle records its event under the reservation's key, and event keys are \
                 unique across customers: use a new key",
                sanitize(key),
            ))));
        }
        if let Some((key, Keyed::Own(reservation))) = keyed {
            if reservation.event_type != request.event_type
                || reservation.meter != request.meter
                || reservation.properties != request.properties
            {
                return Ok(Err(Error::IdempotencyConflict(format!(
                    "idempotency key \"{}\" already made reservation {} with other parameters; \
                     use a new key for a new reservation",
                    sanitize(key),
                    reservation.id
                ))));
            }
            return Ok(Ok(Pending::Resent(reservation.clone())));
        }
        let (Some(event), Some(batch)) = (event, batch) else {
            return Err(Error::Database("a reserve without its event".into()));
        };
        if let Some(key) = &request.key
            && let Some(event_id) = batch.stored_event(&settle_key(key))
        {
            return Ok(Err(Error::IdempotencyConflict(format!(
                "idempotency key \"{}\" already recorded event {event_id}; a settle records \
                 its event under the reservation's key: use a new key",
                sanitize(key),
            ))));
        }
        batch.set_mode(Mode::Reserve);
        let outcome = match batch.decide(&event)? {
            Ok(outcome) => outcome,
            Err(refusal) => return Ok(Err(refusal.error)),
        };
        if !outcome.refused_by.is_empty() {
            return Ok(Ok(Pending::Answer(ReservationAnswer::Reserved(
                Reserved::Refused(outcome),
            ))));
        }
        let mut holds: Vec<HeldMeter> = batch
            .take_holds()
            .into_iter()
            .map(|h| HeldMeter {
                meter: h.meter,
                units: h.units,
                credit_units: h.credit_units,
                credit_amount: h.credit_amount.normalize(),
            })
            .collect();
        holds.sort_by(|a, b| a.meter.cmp(&b.meter));
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
            holds,
        };
        let id = reservation.id.clone();
        if let Some(key) = &request.key {
            self.by_key.entry(key.clone()).or_default().push(id.clone());
        }
        let period_start = format_ts(outcome.check.period_start);
        self.known
            .insert(id.clone(), (reservation.clone(), period_start));
        self.made_ids.insert(id.clone());
        self.made.push(id);
        Ok(Ok(Pending::Answer(ReservationAnswer::Reserved(
            Reserved::Held {
                reservation,
                duplicate: false,
                outcome,
            },
        ))))
    }

    /// Record the event a reservation stood for, with what the work really used (`given`,
    /// each in place of the estimate's), and free its hold. A settle is never refused by caps or
    /// credits. A resend answers with the event recorded the first time; a released
    /// reservation cannot be settled.
    fn settle(
        &mut self,
        batch: Option<&mut Batch<'_, '_>>,
        id: &str,
        given: Option<&Properties>,
        event: Option<RecordRequest>,
        now: DateTime<Utc>,
    ) -> Result<Result<Pending>> {
        let (reservation, period_start) = match self.stored(id) {
            Ok(stored) => stored.clone(),
            Err(e) => return Ok(Err(e)),
        };
        if reservation.status == "released" {
            return Ok(Err(Error::ReservationEnded(format!(
                "reservation {id} was released at {}: there is nothing to settle, and nothing \
                 was recorded; record the event itself if the work was done",
                reservation.ended_at.as_deref().unwrap_or("?")
            ))));
        }
        let (Some(mut event), Some(batch)) = (event, batch) else {
            return Err(Error::Database("a settle without its event".into()));
        };
        // Settled earlier in this round: that event again, or what is given under its key.
        if let Some(first) = self.settled.get(id) {
            event = sent_again(&reservation, first.clone(), given, now);
        }
        let live = reservation.status == "held";
        if live {
            self.change_holds(batch, &reservation, &period_start, -1)?;
        }
        batch.set_mode(Mode::Settle);
        let outcome = match batch.decide(&event)? {
            Ok(outcome) => outcome,
            Err(refusal) => {
                // Nothing was settled: the hold stands as it stood.
                if live {
                    self.change_holds(batch, &reservation, &period_start, 1)?;
                }
                return Ok(Err(refusal.error));
            }
        };
        self.settled.insert(id.to_string(), event);
        let mut reservation = reservation;
        let lapsed = reservation.status == "lapsed";
        reservation.status = "settled".into();
        reservation.ended_at.get_or_insert_with(|| format_ts(now));
        if reservation.event_id.is_none() {
            reservation.event_id = outcome.event_id;
        }
        self.end(&reservation);
        Ok(Ok(Pending::Answer(ReservationAnswer::Settled(Settled {
            reservation,
            outcome,
            lapsed,
        }))))
    }

    /// Free a reservation's hold. Releasing it again changes nothing (`already`); a settled
    /// reservation cannot be released.
    fn release(
        &mut self,
        batch: Option<&mut Batch<'_, '_>>,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<Pending>> {
        let (mut reservation, period_start) = match self.stored(id) {
            Ok(stored) => stored.clone(),
            Err(e) => return Ok(Err(e)),
        };
        match reservation.status.as_str() {
            "released" => {
                return Ok(Ok(Pending::Answer(ReservationAnswer::Released(Released {
                    reservation,
                    already: true,
                }))));
            }
            "settled" => {
                return Ok(Err(Error::ReservationEnded(format!(
                    "reservation {id} was settled at {} (event {}): its event is recorded and \
                     its hold already freed",
                    reservation.ended_at.as_deref().unwrap_or("?"),
                    reservation.event_id.unwrap_or_default()
                ))));
            }
            // Only the round's later events could see the hold: none, no batch.
            "held" => {
                if let Some(batch) = batch {
                    self.change_holds(batch, &reservation, &period_start, -1)?;
                }
            }
            _ => {}
        }
        reservation.status = "released".into();
        reservation.ended_at = Some(format_ts(now));
        self.end(&reservation);
        Ok(Ok(Pending::Answer(ReservationAnswer::Released(Released {
            reservation,
            already: false,
        }))))
    }

    /// Add `sign` times `reservation`'s holds to what the batch sees held.
    fn change_holds(
        &self,
        batch: &mut Batch<'_, '_>,
        reservation: &Reservation,
        period_start: &str,
        sign: i64,
    ) -> Result<()> {
        let made = crate::billing::parse_ts(&reservation.created_at)
            .map_err(|e| Error::Database(format!("reservations.created_at: {e}")))?;
        for held in &reservation.holds {
            batch.change_hold(
                &reservation.customer,
                period_start,
                made,
                &hold_of(held),
                sign,
            )?;
        }
        Ok(())
    }

    /// Keep `reservation` as the round leaves it, to be written at its end.
    fn end(&mut self, reservation: &Reservation) {
        if let Some((known, _)) = self.known.get_mut(&reservation.id) {
            *known = reservation.clone();
        }
        self.ended.push(reservation.id.clone());
    }

    /// The round's reservations and their holds, then each one it ended.
    fn write(&self, tx: &Connection) -> Result<()> {
        let made: Vec<&Stored> = self.made.iter().map(|id| &self.known[id]).collect();
        let properties: Vec<Option<String>> = made
            .iter()
            .map(|(r, _)| {
                (!r.properties.is_empty())
                    .then(|| serde_json::to_string(&r.properties))
                    .transpose()
                    .map_err(|e| Error::InvalidInput(e.to_string()))
            })
            .collect::<Result<_>>()?;
        let mut values: Vec<&dyn Param> = Vec::with_capacity(made.len() * 9);
        for ((r, period_start), properties) in made.iter().zip(&properties) {
            values.extend_from_slice(&[
                &r.id as &dyn Param,
                &r.customer,
                &r.key,
                &r.event_type,
                &r.meter,
                properties,
                period_start,
                &r.created_at,
                &r.expires_at,
            ]);
        }
        tx.insert_rows(
            "reservations",
            &[
                "id",
                "customer_id",
                "idempotency_key",
                "event_type",
                "meter_id",
                "properties",
                "period_start",
                "created_at",
                "expires_at",
            ],
            &values,
        )?;
        let amounts: Vec<Vec<String>> = made
            .iter()
            .map(|(r, _)| {
                r.holds
                    .iter()
                    .map(|h| h.credit_amount.to_string())
                    .collect()
            })
            .collect();
        let mut values: Vec<&dyn Param> = Vec::new();
        for ((r, _), amounts) in made.iter().zip(&amounts) {
            for (hold, amount) in r.holds.iter().zip(amounts) {
                values.extend_from_slice(&[
                    &r.id as &dyn Param,
                    &hold.meter,
                    &hold.units,
                    &hold.credit_units,
                    amount,
                ]);
            }
        }
        tx.insert_rows(
            "reservation_holds",
            &[
                "reservation_id",
                "meter_id",
                "units",
                "credit_units",
                "credit_amount",
            ],
            &values,
        )?;
        let mut ended: Vec<&str> = self.ended.iter().map(String::as_str).collect();
        ended.sort_unstable();
        ended.dedup();
        for chunk in ended.chunks(ENDED_PER_UPDATE) {
            let mut reservations: Vec<&Reservation> =
                chunk.iter().map(|id| &self.known[*id].0).collect();
            // Filled up with its last to one of a few lengths, as an `IN` list is: a handful
            // of texts, each kept in SQLite's statement cache, however many a round ends (the
            // last ended twice is set twice to the same).
            if let Some(&last) = reservations.last() {
                reservations.resize(crate::db::list_length(reservations.len()), last);
            }
            let mut values: Vec<&dyn Param> = Vec::with_capacity(reservations.len() * 7);
            let ended_at = case_of(&reservations, &mut values, |r| &r.ended_at);
            let ended_as = case_of(&reservations, &mut values, |r| &r.status);
            let event_id = case_of(&reservations, &mut values, |r| &r.event_id);
            values.extend(reservations.iter().map(|r| &r.id as &dyn Param));
            tx.write(
                &format!(
                    "UPDATE reservations SET ended_at = {ended_at}, ended_as = {ended_as},
                         event_id = {event_id}
                     WHERE id IN ({})",
                    vec!["?"; reservations.len()].join(",")
                ),
                values.as_slice(),
            )?;
        }
        Ok(())
    }
}

/// Reservations ended per UPDATE (7 parameters each), one of `db::list_length`'s lengths.
const ENDED_PER_UPDATE: usize = 64;

/// `CASE id WHEN … THEN … END`: each of `reservations`' `column`, its parameters added to
/// `values`. One UPDATE sets a column to a different value in each row, on both engines.
fn case_of<'r>(
    reservations: &[&'r Reservation],
    values: &mut Vec<&'r dyn Param>,
    column: fn(&'r Reservation) -> &'r dyn Param,
) -> String {
    for r in reservations {
        values.extend_from_slice(&[&r.id as &dyn Param, column(r)]);
    }
    format!(
        "CASE id {} END",
        vec!["WHEN ? THEN ?"; reservations.len()].join(" ")
    )
}

/// A settle of `reservation` sent again after `first` recorded it: that event again, or
/// `given` properties under its key (the same work is a duplicate, other work a conflict).
fn sent_again(
    reservation: &Reservation,
    first: RecordRequest,
    given: Option<&Properties>,
    now: DateTime<Utc>,
) -> RecordRequest {
    match given {
        Some(given) => RecordRequest {
            idempotency_key: first.idempotency_key,
            ..settle_event(
                reservation,
                settled_properties(reservation, Some(given)),
                now,
            )
        },
        None => first,
    }
}
