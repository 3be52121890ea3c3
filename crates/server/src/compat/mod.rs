//! Routes that speak other services' ingestion protocols, so their official SDKs work with a
//! new base URL and a meterline token: Stripe meter events (`/stripe`), CloudEvents as
//! OpenMeter takes them (`/openmeter`) and Lago events (`/lago`).
//!
//! Each protocol module only parses its format into [`Candidate`]s and shapes answers and
//! errors its way. Everything else is shared: the native API's token check and body decoding
//! (`auth::guard`, each protocol giving only its error shape), and here the quantity rule, the
//! idempotency keys, mapping the protocol's names to customers and meters, and the commit
//! through the same group-commit writer as `/v1/events/batch` (there is no second write
//! path), all or nothing: the record path checks each event once (time, customer, meter,
//! properties) and its refusals, in its own words, are the answer.

mod cloudevents;
mod lago;
mod stripe;

use axum::Router;
use axum::middleware;
use axum::routing::post;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::AppState;
use super::auth;
use super::error::ApiError;
use crate::store::MAX_KEY_LEN;
use crate::store::record::{Field, PartOutcome, Refusal};
use crate::store::{IdempotencyKey, KeySource};
use crate::{Error, RecordOutcome, RecordRequest};

pub(crate) const STRIPE_METER_EVENTS: &str = "/stripe/v1/billing/meter_events";
pub(crate) const OPENMETER_EVENTS: &str = "/openmeter/api/v1/events";
pub(crate) const LAGO_EVENTS: &str = "/lago/api/v1/events";
pub(crate) const LAGO_EVENTS_BATCH: &str = "/lago/api/v1/events/batch";

pub(crate) fn router(state: AppState) -> Router<AppState> {
    // The native API's token check and body decoding; only the errors take each shape.
    let stripe = Router::new()
        .route(STRIPE_METER_EVENTS, post(stripe::create))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::guard::<stripe::StripeError>,
        ));
    let openmeter = Router::new()
        .route(OPENMETER_EVENTS, post(cloudevents::ingest_handler))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::guard::<cloudevents::ProblemDetails>,
        ));
    let lago = Router::new()
        .route(LAGO_EVENTS, post(lago::create))
        .route(LAGO_EVENTS_BATCH, post(lago::batch))
        .route_layer(middleware::from_fn_with_state(
            state,
            auth::guard::<lago::LagoError>,
        ));
    stripe.merge(openmeter).merge(lago)
}

/// Who an event is for, as the protocol names them.
#[derive(Debug, Clone)]
pub(crate) enum Who {
    /// A meterline customer id (CloudEvents `subject`, Lago `external_customer_id`).
    Customer(String),
    /// A Stripe customer id, mapped to the meterline customer that carries it.
    StripeCustomer(String),
}

/// One event parsed from a protocol, ready to be resolved and recorded.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub who: Who,
    /// The meter's name as the client sent it (Stripe `event_name`, CloudEvents `type`, Lago
    /// `code`): with `[[meters]]` a meter's id, or for Stripe a name its `stripe_event` makes
    /// (`tokens_large` for `tokens_{model}`); else the plan's meter event.
    pub meter: String,
    pub quantity: i64,
    /// The payload as the event's properties (only with `[[meters]]`; see [`has_meters`]).
    pub properties: crate::Properties,
    /// The idempotency key, built by [`key`]. Its source is also the protocol, which says
    /// how the meter is named and how fields are written in errors ([`Naming`]).
    pub key: IdempotencyKey,
    /// The event's time: the protocol's, or when it was received (`at_given` false).
    pub at: DateTime<Utc>,
    pub at_given: bool,
}

/// True when plans.toml defines `[[meters]]`. Without them there is one implicit `usage`
/// meter, and the drop-in routes behave as before meters existed: the event name must be
/// the plan's `meter_event`, `[ingest.value_property]` gives the quantity, and the payload
/// is not kept. (The validated config has no flag for it: the implicit meter is the only
/// one, `usage`, summing quantity, named "Usage", reporting to `[stripe] meter_event`.)
pub(crate) fn has_meters(config: &crate::Config) -> bool {
    config.implicit_meter().is_none()
}

/// How a protocol names meters and writes a payload member in its errors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Naming(KeySource);

impl Naming {
    pub(crate) fn of(event: &Candidate) -> Naming {
        Naming(event.key.source)
    }

    /// The naming of a protocol, by its key namespace.
    pub(crate) fn protocol(source: KeySource) -> Naming {
        Naming(source)
    }

    /// The payload as the protocol calls it.
    pub(crate) fn payload(self) -> &'static str {
        match self.0 {
            KeySource::Stripe => "payload",
            KeySource::Lago => "properties",
            _ => "data",
        }
    }

    /// One member of the payload as the protocol writes it: `payload[model]`, `data.model`.
    pub(crate) fn member(self, name: &str) -> String {
        let name = crate::sanitize::sanitize(name);
        match self.0 {
            KeySource::Stripe => format!("payload[{name}]"),
            _ => format!("{}.{name}", self.payload()),
        }
    }

    /// The event's time as the protocol calls it.
    fn time(self) -> &'static str {
        match self.0 {
            KeySource::CloudEvents => "time",
            _ => "timestamp",
        }
    }
}

/// A JSON payload (CloudEvents `data`, Lago `properties`) as the event's properties, with
/// `[[meters]]` only: strings and numbers (kept as their digits); a nested object, an array,
/// a bool or null is refused naming the field. Absent or null is no properties.
pub(crate) fn payload_properties(
    config: &crate::Config,
    naming: Naming,
    payload: Option<&serde_json::Value>,
) -> Result<crate::Properties, Problem> {
    if !has_meters(config) {
        return Ok(crate::Properties::default());
    }
    match payload {
        None | Some(serde_json::Value::Null) => Ok(crate::Properties::default()),
        Some(serde_json::Value::Object(object)) => {
            meterline_core::wire::property_texts_named(object.clone()).map_err(|bad| {
                Problem::invalid(
                    &naming.member(&bad.key),
                    format!("{}: {}", naming.member(&bad.key), bad.message),
                )
            })
        }
        Some(_) => Err(Problem::invalid(
            naming.payload(),
            format!(
                "{} must be a JSON object: its members are the event's properties",
                naming.payload()
            ),
        )),
    }
}

/// Why one event was not recorded. Each protocol maps these to its own status and shape.
#[derive(Debug, Clone)]
pub(crate) enum Problem {
    /// Malformed or out of range; `param` names the field when there is one.
    Invalid {
        param: Option<String>,
        message: String,
    },
    UnknownCustomer(String),
    /// No meter of plans.toml has this name (without `[[meters]]`: the name is not the meter
    /// event of the customer's plan).
    UnknownMeter(String),
    /// The idempotency key was used before with other parameters.
    Conflict(String),
    /// Refused by the customer's hard cap or a window limit (with when it would fit, for
    /// `Retry-After`).
    Capped(String, Option<u32>),
    /// Anything else (database busy, queue full, ...), as the native API would answer it.
    Other(ApiError),
}

impl Problem {
    pub(crate) fn invalid(param: &str, message: impl Into<String>) -> Problem {
        Problem::Invalid {
            param: Some(param.to_string()),
            message: message.into(),
        }
    }

    pub(crate) fn message(&self) -> &str {
        match self {
            Problem::Invalid { message, .. }
            | Problem::UnknownCustomer(message)
            | Problem::UnknownMeter(message)
            | Problem::Conflict(message)
            | Problem::Capped(message, _) => message,
            Problem::Other(e) => &e.message,
        }
    }
}

impl From<ApiError> for Problem {
    fn from(e: ApiError) -> Problem {
        Problem::Other(e)
    }
}

/// The result of [`ingest`].
pub(crate) enum Ingested {
    /// Some events were refused (by the protocol's names or by the record path): nothing was
    /// recorded. (event index, problem), in order.
    Rejected(Vec<(usize, Problem)>),
    /// Committed: one answer per event, in order. `Ok` is recorded or a duplicate; `Err` a
    /// hard cap's refusal (`Problem::Capped`), which refuses its event alone.
    Decided(Vec<(String, Result<RecordOutcome, Problem>)>),
}

/// Map every event to meterline's customer and meter (`resolve`), then record them all or
/// none through the writer: the record path checks them, once, and its refusals become the
/// protocol's problems (`refused`). The answer carries each event's meterline customer id.
pub(crate) async fn ingest(state: &AppState, events: Vec<Candidate>) -> Result<Ingested, ApiError> {
    let resolved = resolve_all(state, &events).await?;
    let rejected: Vec<(usize, Problem)> = resolved
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().err().map(|p| (i, p.clone())))
        .collect();
    if !rejected.is_empty() {
        return Ok(Ingested::Rejected(rejected));
    }
    let namings: Vec<Naming> = events.iter().map(Naming::of).collect();
    let mut customers = Vec::with_capacity(events.len());
    let mut requests = Vec::with_capacity(events.len());
    for (
        mut event,
        Resolved {
            customer,
            meter,
            event_type,
            named,
        },
    ) in events.into_iter().zip(resolved.into_iter().flatten())
    {
        event.properties.extend(named);
        requests.push(RecordRequest {
            customer_id: customer.clone(),
            quantity: event.quantity,
            user_id: None,
            idempotency_key: Some(event.key),
            occurred_at: event.at,
            at_given: event.at_given,
            meter,
            event_type,
            properties: event.properties,
        });
        customers.push(customer);
    }
    Ok(match state.writer.commit_all_or_nothing(requests).await? {
        PartOutcome::Refused(refusals) => Ingested::Rejected(
            refusals
                .into_iter()
                .map(|(i, refusal)| (i, refused(namings[i], refusal)))
                .collect(),
        ),
        PartOutcome::Decided(outcomes) => Ingested::Decided(
            customers
                .into_iter()
                .zip(outcomes)
                .map(|(customer, outcome)| (customer, decided(outcome)))
                .collect(),
        ),
    })
}

/// A committed event's answer: recorded, a duplicate, or refused by a hard cap.
fn decided(outcome: crate::Result<RecordOutcome>) -> Result<RecordOutcome, Problem> {
    match outcome {
        Ok(o) if o.recorded || o.duplicate => Ok(o),
        Ok(o) if o.refused_window.is_some() => Err(Problem::Capped(
            format!(
                "customer \"{}\" reached a window limit of plan \"{}\" on {}; nothing recorded",
                o.check.customer,
                o.check.plan,
                o.refused_window
                    .as_ref()
                    .map(meterline_core::wire::refusing_window)
                    .unwrap_or_default()
            ),
            meterline_core::wire::retry_after(&o).and_then(|s| u32::try_from(s).ok()),
        )),
        Ok(o) if o.meters.is_empty() => Err(Problem::Capped(
            format!(
                "customer \"{}\" reached the hard cap of plan \"{}\" ({} of {} units used); \
             nothing recorded",
                o.check.customer,
                o.check.plan,
                o.check.used,
                o.check.limit.map_or("unlimited".into(), |n| n.to_string())
            ),
            None,
        )),
        Ok(o) => Err(Problem::Capped(
            format!(
                "customer \"{}\" reached the hard cap of plan \"{}\" on {}; nothing recorded on \
                 any meter",
                o.check.customer,
                o.check.plan,
                meterline_core::wire::refusing_meters(&o)
            ),
            None,
        )),
        // Never in an all-or-nothing part: an invalid event refuses the part.
        Err(e) => Err(Problem::Other(ApiError::from(e))),
    }
}

/// The record path's refusal of one event as the protocol's problem: the store's message,
/// what it is about named as the protocol names it (`payload[tokens]`, `data`, `timestamp`).
fn refused(naming: Naming, refusal: Refusal) -> Problem {
    match (refusal.error, refusal.field) {
        (e @ Error::UnknownCustomer(_), _) => Problem::UnknownCustomer(e.to_string()),
        (Error::IdempotencyConflict(m), _) => Problem::Conflict(m),
        (Error::InvalidInput(m), Some(Field::Meter | Field::Type)) => Problem::UnknownMeter(m),
        (Error::InvalidInput(m), Some(Field::Time)) => Problem::invalid(naming.time(), m),
        (Error::InvalidInput(m), Some(Field::Properties)) => {
            let param = naming.payload();
            Problem::invalid(param, format!("{param}: {m}"))
        }
        (Error::InvalidInput(m), Some(Field::Property(name))) => {
            let param = naming.member(&name);
            Problem::invalid(&param, format!("{param}: {m}"))
        }
        (Error::InvalidInput(m), None) => Problem::Invalid {
            param: None,
            message: m,
        },
        (e, _) => Problem::Other(ApiError::from(e)),
    }
}

/// Whom and what an event counts for.
struct Resolved {
    /// The meterline customer id.
    customer: String,
    /// The meter's id; `None` without `[[meters]]` (the implicit `usage` meter) and for an
    /// event of a type.
    meter: Option<String>,
    /// The event's type (CloudEvents `type`, which feeds every meter of that type).
    event_type: Option<String>,
    /// Properties the event's name gives: a Stripe `event_name` made by a `stripe_event`
    /// pattern gives its placeholders' dimensions (`tokens_large`: model = "large").
    named: crate::Properties,
}

/// Every event's customer and meter. Only the protocol's names are mapped here; whether the
/// customer, the meter, the time and the properties are valid is the record path's to say.
/// The database is read only for what the event does not name itself: a Stripe customer,
/// and without `[[meters]]` the customer's plan (whose meter event the name must be).
async fn resolve_all(
    state: &AppState,
    events: &[Candidate],
) -> Result<Vec<Result<Resolved, Problem>>, ApiError> {
    let config = state.config.clone();
    let named = |event: &Candidate| match &event.who {
        Who::Customer(id) if has_meters(&config) => Some(with_meter(&config, event, id.clone())),
        _ => None,
    };
    if let Some(all) = events.iter().map(named).collect::<Option<Vec<_>>>() {
        return Ok(all);
    }
    let events = events.to_vec();
    super::read(state, move |store| {
        events
            .iter()
            .map(|event| resolve(store, &config, event))
            .collect::<crate::Result<Vec<_>>>()
    })
    .await
}

/// The meterline customer and meter of `event`, or why the protocol's names map to none.
/// Outer `Err`: the database failed.
fn resolve(
    store: &crate::Store,
    config: &crate::Config,
    event: &Candidate,
) -> crate::Result<Result<Resolved, Problem>> {
    let customer = match &event.who {
        Who::Customer(id) => id.clone(),
        Who::StripeCustomer(stripe_id) => {
            let mut found = store.customers_with_stripe_id(stripe_id)?;
            match found.len() {
                1 => found.remove(0).id,
                0 => {
                    return Ok(Err(Problem::UnknownCustomer(format!(
                        "No such customer: '{}' (no meterline customer is mapped to it; \
                         map one with `meterline customer set-stripe ID {0}`)",
                        crate::sanitize::sanitize(stripe_id)
                    ))));
                }
                n => {
                    return Ok(Err(Problem::invalid(
                        "payload[stripe_customer_id]",
                        format!(
                            "{n} meterline customers are mapped to '{}'; map it to one only",
                            crate::sanitize::sanitize(stripe_id)
                        ),
                    )));
                }
            }
        }
    };
    if has_meters(config) {
        return Ok(with_meter(config, event, customer));
    }
    // Without [[meters]] the name is the meter event of the customer's plan. A customer or
    // plan the record path refuses is left to it, and its message.
    let plan = match store.customer(&customer) {
        Ok(found) => config.plan(&found.plan_id),
        Err(Error::UnknownCustomer(_)) => None,
        Err(e) => return Err(e),
    };
    if let Some(plan) = plan
        && plan.meter_event != event.meter
    {
        return Ok(Err(Problem::UnknownMeter(format!(
            "no meter \"{}\" for customer \"{}\": their plan \"{}\" meters \"{}\"",
            crate::sanitize::sanitize(&event.meter),
            crate::sanitize::sanitize(&customer),
            plan.id,
            plan.meter_event
        ))));
    }
    Ok(Ok(Resolved {
        customer,
        meter: None,
        event_type: None,
        named: crate::Properties::default(),
    }))
}

/// With `[[meters]]`: the meters `event` feeds (which the record path checks): for
/// CloudEvents every meter of its `type`, as OpenMeter meters event types; for Lago the meter
/// whose id is its `code`; for Stripe the meter whose `stripe_event` makes its name.
fn with_meter(
    config: &crate::Config,
    event: &Candidate,
    customer: String,
) -> Result<Resolved, Problem> {
    let (meter, event_type, named) = match event.key.source {
        KeySource::Stripe => {
            let (meter, named) = stripe_meter(config, event)?;
            (Some(meter), None, named)
        }
        KeySource::CloudEvents => (None, Some(event.meter.clone()), Default::default()),
        _ => (Some(event.meter.clone()), None, Default::default()),
    };
    Ok(Resolved {
        customer,
        meter,
        event_type,
        named,
    })
}

/// The meter whose `stripe_event` makes Stripe's `event_name`, and the values the name gives
/// its placeholders (none for a plain name). A payload member that names one of those
/// dimensions with another value is refused: the event cannot be in two groups.
fn stripe_meter(
    config: &crate::Config,
    event: &Candidate,
) -> Result<(String, crate::Properties), Problem> {
    let name = event.meter.as_str();
    for meter in &config.meters {
        let values = meterline_core::config::stripe_event_values(&meter.stripe_event, name)
            .map_err(|ambiguous| Problem::invalid("event_name", ambiguous))?;
        let Some(values) = values else { continue };
        let mut named = crate::Properties::default();
        for (dim, value) in values {
            // As a payload member's value would be kept (one spelling per word).
            let value = meterline_core::wire::property_text(value.to_string());
            if let Some(given) = event.properties.get(dim)
                && *given != value
            {
                let param = Naming::of(event).member(dim);
                return Err(Problem::invalid(
                    &param,
                    format!(
                        "{param} is \"{}\", but event_name \"{}\" names {dim} \"{}\" \
                         (stripe_event \"{}\"); send one value, or leave {param} out",
                        crate::sanitize::sanitize(given),
                        crate::sanitize::sanitize(name),
                        crate::sanitize::sanitize(&value),
                        meter.stripe_event
                    ),
                ));
            }
            named.insert(dim.to_string(), value);
        }
        return Ok((meter.id.clone(), named));
    }
    let known: Vec<&str> = config
        .meters
        .iter()
        .map(|m| m.stripe_event.as_str())
        .collect();
    Err(Problem::UnknownMeter(format!(
        "no meter \"{}\": event_name is a meter's stripe_event in plans.toml; they are: {}",
        crate::sanitize::sanitize(name),
        known.join(", ")
    )))
}

/// The idempotency key for a protocol's event identity. Each part is length-prefixed so that
/// no two different identities give the same text (CloudEvents' `source` + `id` = "a:b" + "c"
/// or "a" + "b:c"). A key that would break the store's key rules (longer than 255 bytes, or
/// with control, bidi or zero-width characters) is replaced by its SHA-256. The key lives in
/// the protocol's own namespace ([`KeySource`]), apart from native keys and other protocols'.
pub(crate) fn key(source: KeySource, parts: &[&str]) -> IdempotencyKey {
    let protocol = source.as_str();
    let mut text = protocol.to_string();
    for part in parts {
        text.push(':');
        text.push_str(&part.len().to_string());
        text.push(':');
        text.push_str(part);
    }
    let key = if text.len() <= MAX_KEY_LEN && !text.chars().any(crate::sanitize::is_unsafe) {
        text
    } else {
        format!(
            "{protocol}-sha256:{}",
            hex::encode(Sha256::digest(text.as_bytes()))
        )
    };
    IdempotencyKey { source, key }
}

/// The quantity of a CloudEvents / Lago event: the configured payload field of its meter,
/// or 1 when none is configured. `field_path` is how the protocol names the payload
/// ("data", "properties") in error messages.
pub(crate) fn quantity(
    config: &crate::Config,
    meter: &str,
    payload: Option<&serde_json::Value>,
    field_path: &str,
) -> Result<i64, Problem> {
    // With [[meters]] each meter reads its own property from the event's properties.
    let field = match config.value_property(meter) {
        Some(field) if !has_meters(config) => field,
        _ => return Ok(1),
    };
    let param = format!("{field_path}.{field}");
    let value = payload
        .and_then(|p| p.as_object())
        .and_then(|p| p.get(field));
    let Some(value) = value else {
        return Err(Problem::invalid(
            &param,
            format!(
                "{param} is missing: plans.toml [ingest.value_property] takes the quantity of \
                 \"{meter}\" events from it"
            ),
        ));
    };
    whole_quantity(value).ok_or_else(|| {
        Problem::invalid(
            &param,
            format!(
                "{param} = {value} is not a whole number between 1 and {}",
                crate::store::record::MAX_QUANTITY
            ),
        )
    })
}

/// A JSON number or numeric string that is a whole number in the store's quantity range.
fn whole_quantity(value: &serde_json::Value) -> Option<i64> {
    let n = match value {
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => i,
            None => {
                let f = n.as_f64()?;
                if f.fract() != 0.0 || f.abs() > 1e15 {
                    return None;
                }
                f as i64
            }
        },
        serde_json::Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()?
        }
        _ => return None,
    };
    (1..=crate::store::record::MAX_QUANTITY)
        .contains(&n)
        .then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_unambiguous_and_bounded() {
        let ce = |parts: &[&str]| key(KeySource::CloudEvents, parts).key;
        assert_ne!(ce(&["a:b", "c"]), ce(&["a", "b:c"]));
        let lago = key(KeySource::Lago, &["t1"]);
        assert_eq!(
            (lago.source, lago.key.as_str()),
            (KeySource::Lago, "lago:2:t1")
        );
        let long = "x".repeat(300);
        let hashed = ce(&["src", &long]);
        assert!(hashed.starts_with("ce-sha256:") && hashed.len() < MAX_KEY_LEN);
        assert_eq!(hashed, ce(&["src", &long]));
        assert!(ce(&["src", "a\u{202e}b"]).starts_with("ce-sha256:"));
    }

    #[test]
    fn quantities_are_whole_numbers_in_range() {
        assert_eq!(whole_quantity(&json!(12)), Some(12));
        assert_eq!(whole_quantity(&json!("12")), Some(12));
        assert_eq!(whole_quantity(&json!(3.0)), Some(3));
        for bad in [
            json!(0),
            json!(-1),
            json!(1.5),
            json!("1.5"),
            json!("x"),
            json!(null),
            json!(true),
            json!(""),
            json!("-3"),
            json!(1e300),
        ] {
            assert_eq!(whole_quantity(&bad), None, "{bad}");
        }
        assert_eq!(
            whole_quantity(&json!(crate::store::record::MAX_QUANTITY + 1)),
            None
        );
    }
}
