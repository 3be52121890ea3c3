//! Recording usage: one IMMEDIATE transaction per batch (a single event is a batch of one),
//! with dedup, the hard-cap check on the running counter and the event insert inside it.

use std::collections::HashMap;

use crate::db::{Behavior, Connection, params};
use chrono::{DateTime, TimeDelta, Utc};

use super::Store;
use super::counters::Counters;
use super::customers::Customer;
use super::meters::counting::MeterCounters;
use super::new_events::{NewEvent, NewEvents};
use crate::billing::{
    STRIPE_MAX_FUTURE_SECS, format_ts, parse_ts, period_containing, whole_second,
};
use crate::config::{Config, Meter};
use crate::{Error, FedMeter, IdempotencyKey, RecordOutcome, RecordRequest, Result};
use meterline_core::WindowRefusal;
use meterline_core::metering::{MeterValue, check_properties, group_key, meter_value};

mod parts;
use parts::Decision;
pub use parts::{Atomicity, Field, Part, PartOutcome, Refusal};

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
#[derive(Clone)]
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
    /// The type it named, if it named one rather than a meter.
    event_type: Option<String>,
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
            event_type: event.event_type.clone(),
        }
    }

    /// The events stored under `keys`, each in its source's namespace: one query per
    /// 512 keys for the whole batch (`db::in_lists`), not one per event (on PostgreSQL each
    /// query is a round trip). The batch holds the write lock and writes its events only at
    /// its end, so what this reads stays true for every event of the batch. Keys kept from
    /// before the namespaces that look like a drop-in route's (`legacy`, migration 9) may have
    /// come from either side, so both sides still find them: a resend gets the answer it got
    /// before. A key its own source has wins over a `legacy` one.
    fn find_all<'k>(
        conn: &Connection,
        keys: impl IntoIterator<Item = &'k IdempotencyKey>,
    ) -> Result<HashMap<IdempotencyKey, Original>> {
        let mut wanted: HashMap<&str, Vec<&'k IdempotencyKey>> = HashMap::new();
        for key in keys {
            // A key the event's own checks refuse is never looked up (nor stored).
            if super::customers::validate_event_labels(None, Some(&key.key)).is_ok() {
                let sources = wanted.entry(key.key.as_str()).or_default();
                if !sources.contains(&key) {
                    sources.push(key);
                }
            }
        }
        let texts: Vec<&str> = wanted.keys().copied().collect();
        // The sources asked for and `legacy`: the index is on key and source.
        let mut sources: Vec<&str> = wanted
            .values()
            .flatten()
            .map(|k| k.source.as_str())
            .chain(["legacy"])
            .collect();
        sources.sort_unstable();
        sources.dedup();
        let mut found: HashMap<IdempotencyKey, (bool, Original)> = HashMap::new();
        for (list, key_params) in crate::db::in_lists(&texts) {
            for (source_list, source_params) in crate::db::in_lists(&sources) {
                let params: Vec<&dyn crate::db::Param> =
                    key_params.iter().chain(&source_params).copied().collect();
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT idempotency_key, idempotency_source, id, customer_id, quantity,
                            user_id, occurred_at, recorded_at, meter_id, properties, event_type
                     FROM usage_events
                     WHERE idempotency_key IN ({list}) AND idempotency_source IN ({source_list})"
                ))?;
                let mut rows = stmt.query(params.as_slice())?;
                while let Some(r) = rows.next()? {
                    let text: String = r.get(0)?;
                    let source: Option<String> = r.get(1)?;
                    let Some(source) = source else { continue };
                    let Some(asked) = wanted.get(text.as_str()) else {
                        continue;
                    };
                    for key in asked {
                        let own = key.source.as_str() == source;
                        if !own && source != "legacy" {
                            continue;
                        }
                        if found.get(*key).is_some_and(|(was_own, _)| *was_own) {
                            continue;
                        }
                        let at: String = r.get(6)?;
                        let recorded_at: String = r.get(7)?;
                        let at = parse_ts(&at).unwrap_or_default();
                        let original = Original {
                            id: r.get(2)?,
                            customer_id: r.get(3)?,
                            quantity: r.get(4)?,
                            user_id: r.get(5)?,
                            at_was_now: at == parse_ts(&recorded_at).unwrap_or_default(),
                            at,
                            meter_id: r.get(8)?,
                            properties: r.get(9)?,
                            event_type: r.get(10)?,
                        };
                        found.insert((*key).clone(), (own, original));
                    }
                }
            }
        }
        Ok(found.into_iter().map(|(k, (_, o))| (k, o)).collect())
    }

    /// A retry must repeat the original's parameters; anything else is a client bug that
    /// "duplicate" would hide. A retry without a time (`at_given` false) never differs in
    /// time: the time it carries is only when it was received, and a second may turn between
    /// that and this commit. A time given that equals the moment of recording also means "no
    /// time given" (a library caller passing its clock), so a retry a minute later is still
    /// the same event. A settle's conflict says so (`mode`): its key is the reservation's.
    fn same_as(
        &self,
        req: &RecordRequest,
        meter_id: &str,
        properties: Option<&str>,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
        mode: Mode,
    ) -> Result<()> {
        let key = req.idempotency_key.as_ref().map_or("", |k| k.key.as_str());
        let mut differences = Vec::new();
        let show = |u: &Option<String>| {
            u.as_deref()
                .map_or("none".to_string(), |u| format!("\"{u}\""))
        };
        if req.event_type != self.event_type {
            differences.push(format!(
                "type {} (was {})",
                show(&req.event_type),
                show(&self.event_type)
            ));
        } else if self.event_type.is_none() && meter_id != self.meter_id {
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
            differences.push(format!(
                "user {} (was {})",
                show(&req.user_id),
                show(&self.user_id)
            ));
        }
        let explicit = req.at_given && at != whole_second(now).unwrap_or(now);
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
        let (whose, remedy) = match mode {
            Mode::Settle => (
                "the settle's event key",
                "A settle sent again must name what it first named, or nothing",
            ),
            _ => ("idempotency key", "Use a new key for a new event"),
        };
        Err(Error::IdempotencyConflict(format!(
            "{whose} \"{key}\" was already used (event {}) with other parameters: {}; \
             nothing recorded. {remedy}",
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
    /// (`record_all_or_nothing` and `record_parts` record a part's events all or none.)
    ///
    /// Outer `Err`: the transaction failed and nothing was committed. Inner `Err`: the error
    /// this event would have had alone (unknown customer, invalid input, ...).
    pub fn record_batch(
        &mut self,
        config: &Config,
        requests: &[RecordRequest],
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<RecordOutcome>>> {
        let (results, _) = self.record_pass(config, requests, now, |_| true)?;
        Ok(results
            .into_iter()
            .map(|r| r.map_err(|refusal| refusal.error))
            .collect())
    }

    /// One transaction deciding `requests` in order; committed if `commit` says so of their
    /// decisions, else rolled back. The decisions, and whether they were committed.
    fn record_pass(
        &mut self,
        config: &Config,
        requests: &[RecordRequest],
        now: DateTime<Utc>,
        commit: impl FnOnce(&[Decision]) -> bool,
    ) -> Result<(Vec<Decision>, bool)> {
        let tx = self
            .conn
            .transaction_with_behavior(Behavior::ImmediateByKey)?;
        let (results, batch) = decide_in(&tx, config, requests, now)?;
        if !commit(&results) {
            return Ok((results, false));
        }
        batch.write()?;
        tx.commit()?;
        Ok((results, true))
    }
}

/// What a pass does with the events it decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Count them.
    Record,
    /// Decide each as a record would and hold what it would use, counting nothing (`reserve`).
    Reserve,
    /// Count them whatever the caps say: the work was done (`settle`).
    Settle,
}

/// What a reserved event would use of one meter: the units it would add to its total, and
/// the credits that would pay for those past `included`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Hold {
    pub meter: String,
    pub units: i64,
    pub credit_units: i64,
    pub credit_amount: rust_decimal::Decimal,
}

/// Record `requests` in order inside `tx` (which must hold the write lock); nothing is
/// written until [`Batch::write`].
fn decide_in<'t, 'c>(
    tx: &'t Connection,
    config: &'c Config,
    requests: &[RecordRequest],
    now: DateTime<Utc>,
) -> Result<(Vec<Decision>, Batch<'t, 'c>)> {
    let mut batch = Batch::begin(tx, config, requests, now, false)?;
    let mut results = Vec::with_capacity(requests.len());
    for req in requests {
        results.push(batch.decide(req)?);
    }
    Ok((results, batch))
}

impl<'t, 'c> Batch<'t, 'c> {
    /// A pass over `requests` inside `tx` (which must hold the write lock): what it reads once
    /// before its first event. `reservations`: the pass reserves, settles or releases, so
    /// every customer's live holds are read and kept up to date as it goes.
    pub(crate) fn begin(
        tx: &'t Connection,
        config: &'c Config,
        requests: &[RecordRequest],
        now: DateTime<Utc>,
        reservations: bool,
    ) -> Result<Batch<'t, 'c>> {
        let (last_event_id, terms_pending, credits) = batch_start(tx)?;
        if terms_pending {
            fill_pending_terms(tx, config)?;
        }
        let stored_keys = Original::find_all(
            tx,
            requests.iter().filter_map(|r| r.idempotency_key.as_ref()),
        )?;
        // A reservation round records no plain event; elsewhere keys are only held where a
        // reservation may be live.
        let reserved_keys = if credits && !reservations {
            keys_reserved(tx, requests)?
        } else {
            HashMap::new()
        };
        let mut meters = MeterCounters::for_batch(config, requests);
        let (customers, counters) = read_ahead(tx, config, requests, &mut meters, now)?;
        let holds = credits || reservations;
        let mut wallets = crate::credits::Wallets::new(
            // A settle may owe credits it has none of, and a reservation's holds are kept in
            // the wallet.
            holds || config.plans.iter().any(|p| p.credits.is_some()),
        );
        // The customers read ahead have their wallets read together too (sorted: the period
        // credits granted on the way get the same ids on every run).
        let mut live: Vec<&Customer> = customers
            .values()
            .flatten()
            .filter(|c| c.archived_at.is_none())
            .collect();
        live.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        wallets.open_all(tx, config, &live, now)?;
        Ok(Batch {
            stored_keys,
            reserved_keys,
            conn: tx,
            config,
            now,
            recorded_at: format_ts(now),
            customers,
            counters,
            meters,
            members: Members::default(),
            events: NewEvents::after(last_event_id),
            wallets,
            mode: Mode::Record,
            holds: Vec::new(),
            windows: crate::windows::Windows::new(config, holds, now)
                .reaching(requests.iter().map(|r| r.occurred_at).max()),
        })
    }

    /// Decide the next events as `mode` says.
    pub(crate) fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }

    /// Decide one event. Outer `Err`: the database failed, and with it the whole pass
    /// (dropping the transaction rolls everything back).
    pub(crate) fn decide(&mut self, req: &RecordRequest) -> Result<Decision> {
        match self.record(req) {
            Err(refusal) if refusal.error.is_database() => Err(refusal.error),
            decision => Ok(decision),
        }
    }

    /// The id of the event stored, or recorded by this batch, under `key`.
    pub(crate) fn stored_event(&self, key: &IdempotencyKey) -> Option<i64> {
        match self.events.with_key(key) {
            Some(event) => Some(event.id),
            None => self.stored_keys.get(key).map(|original| original.id),
        }
    }

    /// What the last reserved event would hold (`Mode::Reserve`).
    pub(crate) fn take_holds(&mut self) -> Vec<Hold> {
        std::mem::take(&mut self.holds)
    }
}

/// The native keys of `requests` that a reservation holds for its settle's event, each with
/// the reservation's id (`reservations::keys_held`).
fn keys_reserved(conn: &Connection, requests: &[RecordRequest]) -> Result<HashMap<String, String>> {
    let mut keys: Vec<&str> = requests
        .iter()
        .filter_map(|r| r.idempotency_key.as_ref())
        .filter(|k| k.source == crate::KeySource::Native)
        .map(|k| k.key.as_str())
        .collect();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    keys.sort_unstable();
    keys.dedup();
    crate::reservations::keys_held(conn, &keys)
}

/// The batch's customers, their counter rows and their meters' totals, read before its first
/// event: a query for all customers, one for all their rows and one for all their totals
/// rather than three per customer (on PostgreSQL, a round trip each). A batch of one customer
/// reads them as it goes: as many queries, and SQLite runs a primary-key lookup faster than a
/// list.
fn read_ahead<'c>(
    conn: &Connection,
    config: &Config,
    requests: &[RecordRequest],
    meters: &mut MeterCounters,
    now: DateTime<Utc>,
) -> Result<(HashMap<String, Option<Customer>>, Counters<'c>)> {
    let mut counters = Counters::default();
    let mut ids: Vec<&str> = requests.iter().map(|r| r.customer_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() < 2 {
        return Ok((HashMap::new(), counters));
    }
    let customers = super::customers::get_many(conn, &ids)?;
    let periods = periods_of(config, requests, &customers, now);
    counters.read_ahead(conn, &periods)?;
    meters.read_ahead(conn, &periods, &meters_of(config, requests))?;
    Ok((customers, counters))
}

/// The meters the batch's events feed, each once.
fn meters_of<'c>(config: &'c Config, requests: &[RecordRequest]) -> Vec<&'c str> {
    let mut ids: Vec<&str> = requests
        .iter()
        .flat_map(|r| config.meters_fed(r).unwrap_or_default())
        .map(|m| m.id.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The customer × period each event falls in, as `Batch::record` will find them (for an
/// event of a known customer, at a time within the customer's life and at most 5 minutes
/// ahead), each once: the batch reads their counter rows at once. An event refused before
/// its counter only cost a read.
fn periods_of<'r>(
    config: &Config,
    requests: &[RecordRequest],
    customers: &'r HashMap<String, Option<Customer>>,
    now: DateTime<Utc>,
) -> Vec<(&'r str, crate::billing::Period)> {
    let latest = now
        .checked_add_signed(TimeDelta::seconds(STRIPE_MAX_FUTURE_SECS))
        .unwrap_or(now);
    let mut periods = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut previous = None;
    for r in requests {
        // Most events of a batch are the one before's customer at the same time: no work.
        if previous == Some((r.customer_id.as_str(), r.occurred_at)) {
            continue;
        }
        previous = Some((r.customer_id.as_str(), r.occurred_at));
        let Some(Some(customer)) = customers.get(&r.customer_id) else {
            continue;
        };
        let Some(at) = whole_second(r.occurred_at) else {
            continue;
        };
        let starts = customer
            .billing_anchor
            .and_time(chrono::NaiveTime::MIN)
            .and_utc();
        if at < starts || at > latest {
            continue;
        }
        let period = period_containing(customer.billing_anchor, config.billing.period, at);
        if seen.insert((customer.id.as_str(), period.start)) {
            periods.push((customer.id.as_str(), period));
        }
    }
    periods
}

/// What a batch reads once before its first event, in one query (on PostgreSQL, one round
/// trip): the largest event id so far (the batch holds the write lock, so its events follow
/// it), whether counter rows still wait for their terms (`fill_pending_terms`), and whether
/// any customer has credits or a reservation (if none, no wallet is read).
fn batch_start(conn: &Connection) -> Result<(i64, bool, bool)> {
    conn.prepare_cached(&format!(
        "SELECT COALESCE(MAX(id), 0),
                EXISTS (SELECT 1 FROM meterline_meta WHERE key = 'period_terms_pending'),
                {}
         FROM usage_events",
        crate::credits::IN_USE
    ))?
    .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
}

/// Counter rows from before migration 4 have no terms, and rows from before migration 11 no
/// terms for their meters: give them their plan's current terms once, at the first record
/// after the upgrade, so that later plans.toml edits no longer change them. Nothing to do
/// (`batch_start` said so) on every later batch.
fn fill_pending_terms(conn: &Connection, config: &Config) -> Result<()> {
    keep_implicit_terms(conn, config)?;
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

/// Rows from migration 4 to 11 kept the implicit meter's terms in their own columns: with
/// plans.toml still without `[[meters]]`, those are the implicit meter's kept terms.
fn keep_implicit_terms(conn: &Connection, config: &Config) -> Result<()> {
    let Some(implicit) = config.implicit_meter() else {
        return Ok(());
    };
    // customer, period start, included, at_limit, overage_rate
    type KeptColumns = (String, String, Option<i64>, String, Option<String>);
    let rows: Vec<KeptColumns> = conn
        .prepare(
            "SELECT customer_id, period_start, included, at_limit, overage_rate
             FROM usage_records WHERE meter_terms IS NULL AND at_limit IS NOT NULL",
        )?
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_>>()?;
    for (customer, period_start, included, at_limit, rate) in rows {
        let terms = crate::config::MeterTerms {
            included,
            at_limit: if at_limit == "block" {
                crate::config::AtLimit::Block
            } else {
                crate::config::AtLimit::Overage
            },
            overage_rate: rate.and_then(|r| r.parse().ok()),
            rates: Vec::new(),
            limits: Vec::new(),
        };
        let kept = serde_json::to_string(&crate::config::MeterTermsMap::from([(
            implicit.id.clone(),
            terms,
        )]))
        .map_err(|e| Error::Database(e.to_string()))?;
        conn.execute(
            "UPDATE usage_records SET meter_terms = ?3 WHERE customer_id = ?1 AND period_start = ?2",
            params![customer, period_start, kept],
        )?;
    }
    Ok(())
}

/// A plan's terms for one meter as an event reads them: without the rate lines (a clone of
/// them per event would cost more than the rest of it), and the rate of this event's group.
struct Priced {
    terms: crate::config::MeterTerms,
    rate: Option<rust_decimal::Decimal>,
    /// A settle on a capped meter: what credits cannot pay of it is owed (a debt), since a
    /// capped meter bills no overage.
    owed: bool,
}

impl Priced {
    fn of(
        terms: &crate::config::MeterTerms,
        properties: &meterline_core::Properties,
        mode: Mode,
    ) -> Priced {
        Priced {
            terms: crate::config::MeterTerms {
                included: terms.included,
                // A settle is never refused: the work was done.
                at_limit: if mode == Mode::Settle {
                    crate::config::AtLimit::Overage
                } else {
                    terms.at_limit
                },
                overage_rate: terms.overage_rate,
                rates: Vec::new(),
                // Cloned only for a limited meter: an empty Vec allocates nothing.
                limits: terms.limits.clone(),
            },
            rate: terms.rate_for(|dim| properties.get(dim).map(String::as_str)),
            owed: mode == Mode::Settle && terms.at_limit == crate::config::AtLimit::Block,
        }
    }
}

/// The windows an event falls in on one of its meters (by index).
type WindowSteps<'l> = (usize, Vec<crate::windows::Step<'l>>);

/// Where an event counts, as `Batch::record` found it.
struct Placed {
    customer_id: String,
    /// The plan the period is billed under, its terms for each of the event's meters (kept
    /// by a closed period), and the period's start as stored.
    plan_id: String,
    terms: Vec<Option<Priced>>,
    period: crate::billing::Period,
    period_start: String,
}

/// One batch's transaction and what it has read so far.
pub(crate) struct Batch<'t, 'c> {
    conn: &'t Connection,
    config: &'c Config,
    now: DateTime<Utc>,
    /// `now` in the database's text form, the recording time of every event.
    recorded_at: String,
    /// The batch's customers, `None` for an id no customer has.
    customers: HashMap<String, Option<Customer>>,
    /// The batch's idempotency keys already stored before it began (`Original::find_all`).
    stored_keys: HashMap<IdempotencyKey, Original>,
    /// The batch's native keys that a live or lapsed reservation holds, with its id.
    reserved_keys: HashMap<String, String>,
    counters: Counters<'c>,
    meters: MeterCounters,
    members: Members,
    events: NewEvents,
    wallets: crate::credits::Wallets,
    mode: Mode,
    /// `Mode::Reserve`: what the last event decided would hold.
    holds: Vec<Hold>,
    windows: crate::windows::Windows,
}

impl Batch<'_, '_> {
    /// Write what the batch counted.
    pub(crate) fn write(mut self) -> Result<()> {
        let conn = self.conn;
        self.counters.flush(conn)?;
        self.meters.flush(conn)?;
        self.members.flush(conn)?;
        self.wallets
            .flush(conn, self.config, self.now, &self.recorded_at)?;
        self.windows.flush(conn)?;
        self.events.write(conn, &self.recorded_at)
    }
}

impl<'c> Batch<'_, 'c> {
    /// One event. Writes only when it returns `recorded: true`. A refusal says what it is
    /// about where its error's kind does not.
    fn record(&mut self, req: &RecordRequest) -> Decision {
        let (conn, config, now) = (self.conn, self.config, self.now);
        if !(1..=MAX_QUANTITY).contains(&req.quantity) {
            return Err(Error::InvalidInput(format!(
                "quantity {} is out of range; it must be between 1 and {MAX_QUANTITY}",
                req.quantity
            ))
            .into());
        }
        super::customers::validate_event_labels(
            req.user_id.as_deref(),
            req.idempotency_key.as_ref().map(|k| k.key.as_str()),
        )?;
        // Whole seconds: what the database stores and Stripe accepts.
        let occurred_at = whole_second(req.occurred_at).ok_or_else(|| {
            Refusal::about(
                Field::Time,
                Error::InvalidInput("occurred_at out of range".into()),
            )
        })?;
        let latest = now
            .checked_add_signed(TimeDelta::seconds(STRIPE_MAX_FUTURE_SECS))
            .unwrap_or(now);
        if occurred_at > latest {
            let message = format!(
                "event time {} is in the future (now is {}); events may be at most 5 minutes ahead",
                format_ts(occurred_at),
                format_ts(now)
            );
            return Err(Refusal::about(Field::Time, Error::InvalidInput(message)));
        }

        // An event of a type feeds every meter of it; each meter's value is found before
        // anything is decided, so a property one of them lacks refuses the event on all.
        let meters = config.meters_fed(req).map_err(|e| {
            let field = if req.event_type.is_some() && req.meter.is_none() {
                Field::Type
            } else {
                Field::Meter
            };
            Refusal::about(field, e)
        })?;
        let invalid = |field: Field, m: String| Refusal::about(field, Error::InvalidInput(m));
        check_properties(&req.properties).map_err(|m| invalid(Field::Properties, m))?;
        let mut values = Vec::with_capacity(meters.len());
        for meter in &meters {
            values.push(
                meter_value(meter, req.quantity, &req.properties).map_err(|m| {
                    let property = meter.property.as_deref().unwrap_or(crate::config::QUANTITY);
                    invalid(Field::Property(property.to_string()), m)
                })?,
            );
        }
        let properties = (!req.properties.is_empty())
            .then(|| serde_json::to_string(&req.properties))
            .transpose()
            .map_err(|e| invalid(Field::Properties, e.to_string()))?;

        let original = match &req.idempotency_key {
            Some(key) => match self.events.with_key(key) {
                Some(event) => Some(Original::of_batch(event, now)),
                None => self.stored_keys.get(key).cloned(),
            },
            None => None,
        };
        if let Some(original) = original {
            let meter = &meters[0].id;
            original.same_as(
                req,
                meter,
                properties.as_deref(),
                occurred_at,
                now,
                self.mode,
            )?;
            return self.duplicate(&original);
        }
        if let Some(key) = &req.idempotency_key
            && self.mode == Mode::Record
            && key.source == crate::KeySource::Native
            && let Some(reservation) = self.reserved_keys.get(&key.key)
        {
            return Err(Error::IdempotencyConflict(format!(
                "idempotency key \"{}\" is held by reservation {reservation}, whose settle \
                 records its event under it; nothing recorded. Settle the reservation, or use a \
                 new key for a new event",
                crate::sanitize::sanitize(&key.key)
            ))
            .into());
        }

        self.open_wallet(&req.customer_id)?;
        let customer = self.customer(&req.customer_id)?;
        if customer.archived_at.is_some() {
            return Err(Error::CustomerArchived(customer.id.clone()).into());
        }
        let plan = super::customers::plan_of(config, customer)?;
        let starts = customer
            .billing_anchor
            .and_time(chrono::NaiveTime::MIN)
            .and_utc();
        if occurred_at < starts {
            let message = format!(
                "event time {} is before customer \"{}\" starts (its billing anchor {}); \
                 to import older usage, add the customer with an earlier --anchor",
                format_ts(occurred_at),
                customer.id,
                customer.billing_anchor
            );
            return Err(Refusal::about(Field::Time, Error::InvalidInput(message)));
        }
        let period = period_containing(customer.billing_anchor, config.billing.period, occurred_at);
        let customer_id = customer.id.clone();
        let position = self
            .counters
            .find(conn, config, &customer_id, plan, period, now)?;
        let counter = self.counters.at(position);
        let placed = Placed {
            plan_id: counter.plan_id.clone(),
            // The rates are used once, to price the event, before anything else is decided.
            terms: meters
                .iter()
                .map(|m| {
                    let terms = counter.meter_terms.get(&m.id);
                    terms.map(|t| Priced::of(t, &req.properties, self.mode))
                })
                .collect(),
            period_start: counter.period_start.clone(),
            customer_id,
            period,
        };
        let (outcome, added) =
            self.record_on_meters(req, &meters, &values, properties, occurred_at, placed)?;
        if !outcome.recorded {
            return Ok(outcome);
        }
        // The period's row (plan, terms) is written whatever meter the event counted on.
        let counter = self.counters.at(position);
        counter.touch();
        if added > 0 && config.implicit_meter().is_some() {
            // The database contract's columns for a plans.toml without [[meters]]: the
            // implicit meter's total (usage_records.used) and each member's share of it.
            counter.add(added)?;
            let period_start = counter.period_start.clone();
            if let Some(user) = &req.user_id {
                self.members
                    .add(req.customer_id.clone(), period_start, user, added)?;
            }
        }
        Ok(outcome)
    }

    /// One event on its meters (one, or every meter of its type): each is decided first, its
    /// cap the plan's terms for it (a meter the plan does not name is never capped), and if
    /// any refuses, none is counted. Also what it added to the first meter's total (0 when
    /// refused).
    fn record_on_meters(
        &mut self,
        req: &RecordRequest,
        meters: &[&Meter],
        values: &[MeterValue],
        properties: Option<String>,
        occurred_at: DateTime<Utc>,
        placed: Placed,
    ) -> Result<(RecordOutcome, i64)> {
        let (conn, config) = (self.conn, self.config);
        let Placed {
            customer_id,
            plan_id,
            terms,
            period,
            period_start,
        } = placed;
        let allowances: Vec<_> = terms
            .iter()
            .map(|t| super::meters::standing::allowance(t.as_ref().map(|t| &t.terms)))
            .collect();
        let standing = |i: usize, used: i64| {
            super::meters::standing::standing(
                meters[i],
                &customer_id,
                &plan_id,
                allowances[i],
                period,
                used,
                &config.thresholds,
            )
        };
        let first_id = self.events.next_id()?;
        let id_of = |i: usize| {
            i64::try_from(i)
                .ok()
                .and_then(|i| first_id.checked_add(i))
                .ok_or_else(|| Error::Database("usage_events has no event id left".into()))
        };
        let mut decided = Vec::with_capacity(meters.len());
        for (i, ((meter, value), terms)) in meters.iter().zip(values).zip(&terms).enumerate() {
            let group = group_key(meter, &req.properties);
            let rate = terms.as_ref().and_then(|t| t.rate);
            // Credits pay for today's usage from today's balance, whatever period it is in.
            let wallet = self.wallets.get(&customer_id);
            let held = wallet
                .as_ref()
                .map_or(0, |w| w.held_on(&period_start, &meter.id));
            let decision = self.meters.decide(
                conn,
                meter,
                terms.as_ref().map(|t| &t.terms),
                (&customer_id, &period_start),
                group.as_deref(),
                value,
                rate,
                (occurred_at, id_of(i)?),
                held,
                |past| {
                    Ok(wallet
                        .map(|w| w.cover(&meter.id, past, rate))
                        .unwrap_or_default())
                },
            );
            match decision {
                Ok(d) => decided.push(d),
                Err(e) => {
                    self.undo_covers(&customer_id, &decided);
                    return Err(e);
                }
            }
        }
        let typed = req.event_type.is_some();
        let mut window_steps = Vec::new();
        // The caps first, then the windows of a meter the caps let through.
        let refused_by: Vec<usize> = (0..meters.len()).filter(|&i| decided[i].refused).collect();
        let (refused_by, refused_window) = if refused_by.is_empty() {
            let enforce = self.mode != Mode::Settle;
            match self.decide_windows(
                &customer_id,
                meters,
                &terms,
                &decided,
                occurred_at,
                period,
                enforce,
            )? {
                Ok(steps) => {
                    window_steps = steps;
                    (Vec::new(), None)
                }
                Err((i, refusal)) => (vec![i], Some(refusal)),
            }
        } else {
            (refused_by, None)
        };
        if let Some(&first) = refused_by.first() {
            // A refused event changed nothing: every meter stands where it stood.
            self.undo_covers(&customer_id, &decided);
            let counters = &self.meters;
            let unchanged = |i: usize| {
                let check = standing(i, decided[i].before);
                super::meters::standing::priced(check, counters.allocated(&decided[i]))
            };
            let checks = (0..meters.len()).map(unchanged).collect();
            let names = refused_by.iter().map(|&i| meters[i].id.clone()).collect();
            let (check, meters) = standings(meters, checks, first, typed);
            let outcome = RecordOutcome {
                recorded: false,
                duplicate: false,
                event_id: None,
                check,
                meters,
                refused_by: names,
                refused_window,
            };
            return Ok((outcome, 0));
        }
        if self.mode == Mode::Reserve {
            let at = (customer_id.as_str(), period_start.as_str());
            return Ok((self.hold(at, meters, &decided, standing)?, 0));
        }
        let mut fed = Vec::with_capacity(meters.len());
        for (i, ((meter, value), d)) in meters.iter().zip(values).zip(&mut decided).enumerate() {
            let event_id = id_of(i)?;
            if terms[i].as_ref().is_some_and(|t| t.owed) {
                let owed = d.owe();
                if owed > 0 {
                    let now = self.now;
                    self.wallets
                        .borrow(conn, &customer_id, &meter.id, owed, now, &mut d.cover)?;
                }
            }
            let d = &*d;
            self.meters.count(meter, value, d, occurred_at, event_id);
            let limited = terms[i]
                .as_ref()
                .is_some_and(|t| !t.terms.limits.is_empty());
            if limited || self.windows.keeps(&meter.id) {
                let units = d.added();
                self.windows
                    .add(&customer_id, &meter.id, occurred_at, units);
                let at = (customer_id.as_str(), plan_id.as_str(), meter.id.as_str());
                let steps = window_steps.iter().filter(|(m, _)| *m == i);
                for step in steps.flat_map(|(_, s)| s) {
                    if let Some(crossing) = step.crossing(at, units, &config.thresholds, self.now) {
                        crossing.record(conn, config, self.now)?;
                    }
                }
            }
            self.wallets.burn(&customer_id, &d.cover, event_id);
            let allocated = self.meters.allocated(d);
            let after = super::meters::standing::priced(standing(i, d.after()), allocated);
            let before = allowances[i].level_at(d.before, &config.thresholds);
            if period.contains(self.now) && after.level > before {
                // Only this transaction knows the counter before and after: the crossing is
                // written here or never. Events into a closed period alert nothing.
                super::alerts::record_crossings(
                    conn, config, &meter.id, before, &after, period, self.now,
                )?;
            }
            let amount = match value {
                MeterValue::Number(n) => *n,
                MeterValue::Distinct(_) => d.added(),
            };
            self.events.add(NewEvent {
                id: event_id,
                customer_id: customer_id.clone(),
                user_id: req.user_id.clone(),
                quantity: req.quantity,
                occurred_at,
                period_start: period_start.clone(),
                // One key covers the event: its first row carries it, the others point there.
                idempotency_key: if i == 0 {
                    req.idempotency_key.clone()
                } else {
                    None
                },
                stripe_identifier: new_identifier(),
                meter_id: meter.id.clone(),
                properties: properties.clone(),
                // Readers take the quantity where no amount is stored: the usual event stores none.
                amount: (amount != req.quantity).then_some(amount),
                event_type: req.event_type.clone(),
                event_of: if i == 0 { None } else { Some(first_id) },
                billable: crate::meters::counting::adds_up(meter.aggregation).then(|| d.billed()),
            });
            fed.push(after);
        }
        let added = decided[0].added();
        let (check, meters) = standings(meters, fed, 0, typed);
        let outcome = RecordOutcome {
            recorded: true,
            duplicate: false,
            event_id: Some(first_id),
            check,
            meters,
            refused_by: Vec::new(),
            refused_window: None,
        };
        Ok((outcome, added))
    }

    /// A reserved event of `customer` in the period starting `period_start`: what it would
    /// hold of each meter, counting nothing and burning nothing, and each meter's standing
    /// with it. The rest of the pass sees the held units and credits as used.
    fn hold(
        &mut self,
        (customer, period_start): (&str, &str),
        meters: &[&Meter],
        decided: &[crate::meters::counting::Decided],
        standing: impl Fn(usize, i64) -> crate::billing::UsageCheck,
    ) -> Result<RecordOutcome> {
        let holds: Vec<Hold> = meters
            .iter()
            .zip(decided)
            .map(|(meter, d)| Hold {
                meter: meter.id.clone(),
                units: if crate::meters::counting::adds_up(meter.aggregation) {
                    d.added()
                } else {
                    0
                },
                credit_units: d.cover.units,
                credit_amount: d.cover.money,
            })
            .collect();
        // What it took from the grants is held instead, as a stored hold is: a later burn of
        // the pass leaves each grant's remainder as the ledger adds it up.
        self.undo_covers(customer, decided);
        for hold in &holds {
            self.change_hold(customer, period_start, self.now, hold, 1)?;
        }
        self.holds = holds;
        let checks = (0..meters.len())
            .map(|i| standing(i, decided[i].after()))
            .collect();
        let (check, fed) = standings(meters, checks, 0, true);
        Ok(RecordOutcome {
            recorded: false,
            duplicate: false,
            event_id: None,
            check,
            meters: fed,
            refused_by: Vec::new(),
            refused_window: None,
        })
    }

    /// Add `sign` (1 or -1) times `hold`, made at `made` on `customer`'s total in the period
    /// starting `period_start`, to what the pass sees held: a settle or release frees a live
    /// hold before its event is decided, and gives it back if that event is refused.
    pub(crate) fn change_hold(
        &mut self,
        customer: &str,
        period_start: &str,
        made: DateTime<Utc>,
        hold: &Hold,
        sign: i64,
    ) -> Result<()> {
        self.open_wallet(customer)?;
        self.wallets.hold(customer, period_start, hold, sign);
        let (conn, now) = (self.conn, self.now);
        self.windows
            .hold(conn, (customer, &hold.meter), made, sign * hold.units, now)
    }

    /// Read `customer`'s wallet for this pass, if credits are in use and it is not yet read.
    fn open_wallet(&mut self, customer_id: &str) -> Result<()> {
        if self.wallets.wants(customer_id) {
            let customer = self.customer(customer_id)?.clone();
            if customer.archived_at.is_none() {
                self.wallets
                    .open(self.conn, self.config, &customer, self.now)?;
            }
        }
        Ok(())
    }

    /// The event's units on each meter under the windows of its terms: the first meter
    /// (its index) whose blocking window it would pass, and the limit, when `enforce`.
    #[allow(clippy::too_many_arguments)]
    fn decide_windows<'l>(
        &mut self,
        customer: &str,
        meters: &[&Meter],
        terms: &'l [Option<Priced>],
        decided: &[crate::meters::counting::Decided],
        occurred_at: DateTime<Utc>,
        period: crate::billing::Period,
        enforce: bool,
    ) -> Result<std::result::Result<Vec<WindowSteps<'l>>, (usize, WindowRefusal)>> {
        let mut steps = Vec::new();
        for (i, (meter, priced)) in meters.iter().zip(terms).enumerate() {
            let Some(priced) = priced.as_ref().filter(|t| !t.terms.limits.is_empty()) else {
                continue;
            };
            let units = decided[i].added();
            let decision = self.windows.decide(
                self.conn,
                (customer, &meter.id),
                &priced.terms.limits,
                units,
                occurred_at,
                period,
                self.now,
                enforce,
            )?;
            match decision {
                Ok(found) => steps.push((i, found)),
                Err(mut refusal) => {
                    refusal.retry_after =
                        self.wait_on_every_meter(customer, meters, terms, decided, period)?;
                    return Ok(Err((i, refusal)));
                }
            }
        }
        Ok(Ok(steps))
    }

    /// `Retry-After` for an event its windows refused: until every window of every meter it
    /// feeds takes its units (one meter's window may free room long before another's).
    fn wait_on_every_meter(
        &mut self,
        customer: &str,
        meters: &[&Meter],
        terms: &[Option<Priced>],
        decided: &[crate::meters::counting::Decided],
        period: crate::billing::Period,
    ) -> Result<Option<i64>> {
        let mut wait = crate::windows::Wait::Now;
        for (i, (meter, terms)) in meters.iter().zip(terms).enumerate() {
            let Some(terms) = terms.as_ref() else {
                continue;
            };
            let units = decided[i].added();
            let at = (customer, meter.id.as_str());
            let limits = &terms.terms.limits;
            wait = wait.and(
                self.windows
                    .wait_for_all(self.conn, at, limits, units, self.now, period)?,
            );
        }
        Ok(wait.seconds())
    }

    /// Give back to the wallet what `decided` took: their event was refused.
    fn undo_covers(&mut self, customer: &str, decided: &[crate::meters::counting::Decided]) {
        for d in decided.iter().rev() {
            self.wallets.undo(customer, &d.cover);
        }
    }

    /// A duplicate's answer: the standing of every meter its original fed.
    fn duplicate(&mut self, original: &Original) -> Decision {
        let check = self.standing_of(original, &original.meter_id)?;
        let mut meters = Vec::new();
        if original.event_type.is_some() {
            meters.push(FedMeter {
                meter: original.meter_id.clone(),
                check: check.clone(),
            });
            for meter in self.members_of(original.id)? {
                let check = self.standing_of(original, &meter)?;
                meters.push(FedMeter { meter, check });
            }
        }
        Ok(RecordOutcome {
            recorded: false,
            duplicate: true,
            event_id: Some(original.id),
            check,
            meters,
            refused_by: Vec::new(),
            refused_window: None,
        })
    }

    /// The meters event `id` fed after its first row, in order: from this batch, or stored.
    fn members_of(&self, id: i64) -> Result<Vec<String>> {
        let in_batch = self.events.members_of(id);
        if !in_batch.is_empty() {
            return Ok(in_batch);
        }
        // An event's rows are written together, with the ids after its own: found through
        // the primary key, with no index of their own to keep up on every write.
        let last = id.saturating_add(crate::config::MAX_METERS_PER_TYPE as i64);
        self.conn
            .prepare_cached(
                "SELECT meter_id FROM usage_events
                 WHERE id > ?1 AND id <= ?2 AND event_of = ?1 ORDER BY id",
            )?
            .query_map(params![id, last], |r| r.get(0))?
            .collect()
    }

    /// `meter_id`'s standing in the period of `original`, with the batch's events so far. In
    /// the current period the total is the batch's own counter (read once per batch, and no
    /// write or read per duplicate: on PostgreSQL each was a round trip every other request
    /// waited for); a closed period is read from the database, brought up to this event
    /// first.
    fn standing_of(
        &mut self,
        original: &Original,
        meter_id: &str,
    ) -> Result<crate::billing::UsageCheck> {
        let (conn, config, now) = (self.conn, self.config, self.now);
        let customer = self.customer(&original.customer_id)?.clone();
        let period = period_containing(customer.billing_anchor, config.billing.period, original.at);
        if period.end <= now {
            self.counters.flush(conn)?;
            self.meters.flush(conn)?;
            return super::meters::standing::meter_standing_in(
                conn,
                config,
                &original.customer_id,
                meter_id,
                original.at,
                now,
            );
        }
        let frame = super::meters::standing::Frame::of(config, &customer, period, None, now);
        let (used, allocated) =
            self.meters
                .priced_total(conn, &customer.id, &format_ts(period.start), meter_id)?;
        Ok(super::meters::standing::priced(
            frame.standing_of(meter_id, used),
            allocated,
        ))
    }

    /// The customer, read once per batch (all the batch's customers at its start).
    fn customer(&mut self, id: &str) -> Result<&Customer> {
        if !self.customers.contains_key(id) {
            let customer = super::customers::get(self.conn, id)?;
            self.customers.insert(id.to_string(), Some(customer));
        }
        match &self.customers[id] {
            Some(customer) => Ok(customer),
            None => Err(Error::UnknownCustomer(id.to_string())),
        }
    }
}

/// An answer's standings from each meter's check, in the event's meter order: `headline`'s
/// on top and, for an event of a type (`typed`), every meter's with its id.
fn standings(
    meters: &[&Meter],
    mut checks: Vec<crate::billing::UsageCheck>,
    headline: usize,
    typed: bool,
) -> (crate::billing::UsageCheck, Vec<FedMeter>) {
    if !typed {
        return (checks.swap_remove(headline), Vec::new());
    }
    let check = checks[headline].clone();
    let fed = meters
        .iter()
        .zip(checks)
        .map(|(meter, check)| FedMeter {
            meter: meter.id.clone(),
            check,
        })
        .collect();
    (check, fed)
}

/// The member counters (`usage_members`) one batch adds to, kept in memory and written once
/// at its end, as the period counters are: one upsert per member row per batch.
#[derive(Default)]
struct Members {
    /// customer × period start × member → this batch's increment.
    added: HashMap<(String, String, String), i64>,
}

/// Member rows per upsert statement (4 parameters each).
const MEMBERS_PER_UPSERT: usize = 250;

impl Members {
    fn add(
        &mut self,
        customer_id: String,
        period_start: String,
        user: &str,
        quantity: i64,
    ) -> Result<()> {
        let added = self
            .added
            .entry((customer_id, period_start, user.to_string()))
            .or_insert(0);
        // The stored counter takes the same check: an overflow fails the batch.
        *added = added
            .checked_add(quantity)
            .ok_or_else(|| Error::Database("usage_members.used would overflow".into()))?;
        Ok(())
    }

    fn flush(&mut self, conn: &Connection) -> Result<()> {
        let rows: Vec<_> = self.added.drain().collect();
        for chunk in rows.chunks(MEMBERS_PER_UPSERT) {
            let mut values: Vec<&dyn crate::db::Param> = Vec::with_capacity(chunk.len() * 4);
            for ((customer_id, period_start, user), used) in chunk {
                values.extend_from_slice(&[
                    customer_id as &dyn crate::db::Param,
                    period_start,
                    user,
                    used,
                ]);
            }
            let sql = format!(
                "INSERT INTO usage_members (customer_id, period_start, user_id, used)
                 VALUES {}
                 ON CONFLICT (customer_id, period_start, user_id) DO UPDATE
                     SET used = usage_members.used + excluded.used",
                vec!["(?,?,?,?)"; chunk.len()].join(",")
            );
            // One row (the usual batch) is the cached statement; longer lists are run once.
            let mut stmt = if chunk.len() == 1 {
                conn.prepare_cached(&sql)?
            } else {
                conn.prepare(&sql)?
            };
            stmt.execute(values.as_slice())?;
        }
        Ok(())
    }
}
