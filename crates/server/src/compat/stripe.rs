//! Stripe Billing Meter Events: `POST /stripe/v1/billing/meter_events`, form-encoded as
//! Stripe's API and SDKs send it. Answers and errors in Stripe's shapes and status codes, so
//! the SDKs raise their usual exceptions (401 AuthenticationError, 400/404
//! InvalidRequestError, 402 CardError for a hard cap).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Candidate, Ingested, Problem, Who, ingest, key};
use crate::auth::ErrorShape;
use crate::store::KeySource;
use crate::{ApiError, AppState};

/// Stripe's limit for `event_name` and `identifier`.
const MAX_NAME: usize = 100;

/// `{"error":{"type","code","message","param"}}`, absent members left out as Stripe does.
#[derive(Debug)]
pub(super) struct StripeError {
    status: StatusCode,
    kind: &'static str,
    code: Option<&'static str>,
    message: String,
    param: Option<String>,
    retry_after: Option<u32>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    param: Option<&'a str>,
}

impl StripeError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> StripeError {
        StripeError {
            status,
            kind,
            code: None,
            message: message.into(),
            param: None,
            retry_after: None,
        }
    }

    fn invalid(code: &'static str, param: &str, message: impl Into<String>) -> StripeError {
        StripeError {
            code: Some(code),
            param: Some(param.to_string()),
            ..StripeError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
        }
    }

    fn missing(param: &str) -> StripeError {
        StripeError::invalid(
            "parameter_missing",
            param,
            format!("Missing required param: {param}."),
        )
    }
}

/// Stripe's 401s, as its SDKs raise AuthenticationError.
impl ErrorShape for StripeError {
    fn unauthorized(message: &str) -> Response {
        let message = if message.starts_with("missing") {
            "You did not provide an API key. Provide your meterline token as the API key \
             (Authorization: Bearer <token>)."
        } else {
            "Invalid API Key provided: the key is not an active meterline token."
        };
        StripeError::new(StatusCode::UNAUTHORIZED, "invalid_request_error", message).into_response()
    }

    fn failed(error: ApiError) -> Response {
        StripeError::from(Problem::Other(error)).into_response()
    }
}

impl From<Problem> for StripeError {
    fn from(problem: Problem) -> StripeError {
        let message = problem.message().to_string();
        match problem {
            Problem::Invalid { param, .. } => StripeError {
                code: Some("parameter_invalid"),
                param,
                ..StripeError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
            },
            Problem::UnknownCustomer(_) => StripeError {
                code: Some("resource_missing"),
                param: Some("payload[stripe_customer_id]".into()),
                ..StripeError::new(StatusCode::NOT_FOUND, "invalid_request_error", message)
            },
            Problem::UnknownMeter(_) => StripeError {
                code: Some("resource_missing"),
                param: Some("event_name".into()),
                ..StripeError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
            },
            // Never reached for Stripe: a reused identifier is answered "already exists"
            // (see `create`).
            Problem::Conflict(_) => {
                StripeError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
            }
            Problem::Capped(_, retry_after) => StripeError {
                code: Some("meterline_hard_cap_reached"),
                retry_after,
                ..StripeError::new(
                    StatusCode::PAYMENT_REQUIRED,
                    "invalid_request_error",
                    message,
                )
            },
            // A client's mistake (a 413, a 415) is an invalid request, as Stripe types it.
            Problem::Other(e) => StripeError {
                retry_after: e.retry_after,
                ..StripeError::new(
                    e.status,
                    if e.status.is_client_error() {
                        "invalid_request_error"
                    } else {
                        "api_error"
                    },
                    message,
                )
            },
        }
    }
}

impl IntoResponse for StripeError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            kind: self.kind,
            code: self.code,
            message: &self.message,
            param: self.param.as_deref(),
        };
        let mut response =
            (self.status, Json(serde_json::json!({ "error": body }))).into_response();
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        // Stripe's SDKs follow this header: retry only what may succeed on a retry (queue
        // full, shutting down, database busy), never a refusal.
        let retry = self.status.is_server_error();
        headers.insert(
            "stripe-should-retry",
            HeaderValue::from_static(if retry { "true" } else { "false" }),
        );
        response
    }
}

/// The form fields of one meter event, checked as Stripe checks them.
struct MeterEventIn {
    event_name: String,
    stripe_customer_id: String,
    value: i64,
    identifier: Option<String>,
    timestamp: Option<DateTime<Utc>>,
    /// Every `payload[...]` member, echoed in the answer as Stripe does.
    payload: BTreeMap<String, String>,
}

fn parse(fields: Vec<(String, String)>) -> Result<MeterEventIn, StripeError> {
    let mut event_name = None;
    let mut identifier = None;
    let mut timestamp = None;
    let mut payload = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for (name, value) in fields {
        // Stripe's form takes each parameter once: which of two values would count?
        if !seen.insert(name.clone()) {
            let param = crate::sanitize::sanitize(&name).into_owned();
            return Err(StripeError::invalid(
                "parameter_invalid",
                &param,
                format!("Invalid {param}: given twice; each parameter may appear once."),
            ));
        }
        if let Some(member) = name
            .strip_prefix("payload[")
            .and_then(|m| m.strip_suffix(']'))
        {
            payload.insert(member.to_string(), value);
            continue;
        }
        match name.as_str() {
            "event_name" => event_name = Some(value),
            "identifier" => identifier = Some(value),
            "timestamp" => timestamp = Some(value),
            _ => {
                return Err(StripeError::invalid(
                    "parameter_unknown",
                    &name,
                    format!(
                        "Received unknown parameter: {}",
                        crate::sanitize::sanitize(&name)
                    ),
                ));
            }
        }
    }
    let event_name = event_name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| StripeError::missing("event_name"))?;
    if event_name.len() > MAX_NAME {
        return Err(StripeError::invalid(
            "parameter_invalid_string",
            "event_name",
            format!("event_name must be at most {MAX_NAME} characters."),
        ));
    }
    let stripe_customer_id = payload
        .get("stripe_customer_id")
        .filter(|c| !c.is_empty())
        .cloned()
        .ok_or_else(|| StripeError::missing("payload[stripe_customer_id]"))?;
    let value_text = payload
        .get("value")
        .cloned()
        .ok_or_else(|| StripeError::missing("payload[value]"))?;
    let value = value_text
        .parse::<i64>()
        .ok()
        .filter(|v| (1..=crate::store::record::MAX_QUANTITY).contains(v))
        .ok_or_else(|| {
            StripeError::invalid(
                "parameter_invalid_integer",
                "payload[value]",
                format!(
                    "Invalid payload[value]: must be a whole number between 1 and {} (got '{}').",
                    crate::store::record::MAX_QUANTITY,
                    crate::sanitize::sanitize(&value_text)
                ),
            )
        })?;
    if let Some(id) = &identifier
        && (id.is_empty() || id.len() > MAX_NAME)
    {
        return Err(StripeError::invalid(
            "parameter_invalid_string",
            "identifier",
            format!("identifier must be 1 to {MAX_NAME} characters."),
        ));
    }
    let timestamp = match timestamp {
        None => None,
        // A fraction is dropped, as every event time is kept (Stripe itself takes integers).
        Some(text) => Some(crate::billing::parse_unix_seconds(&text).ok_or_else(|| {
            StripeError::invalid(
                "parameter_invalid_integer",
                "timestamp",
                "Invalid integer: timestamp must be Unix seconds.",
            )
        })?),
    };
    Ok(MeterEventIn {
        event_name,
        stripe_customer_id,
        value,
        identifier,
        timestamp,
        payload,
    })
}

/// With `[[meters]]`, the payload's members other than `stripe_customer_id` and `value` (the
/// quantity) are the event's properties. Stripe's form encoding nests with brackets
/// (`payload[a][b]`): a nested member is refused, naming it. Without `[[meters]]` the payload
/// is only echoed, as before meters existed.
fn properties(
    config: &crate::Config,
    payload: &BTreeMap<String, String>,
) -> Result<crate::Properties, StripeError> {
    if !super::has_meters(config) {
        return Ok(crate::Properties::default());
    }
    let mut properties = crate::Properties::default();
    for (name, value) in payload {
        if name == "stripe_customer_id" || name == "value" {
            continue;
        }
        if name.contains(['[', ']']) {
            let param = format!("payload[{}]", crate::sanitize::sanitize(name));
            return Err(StripeError::invalid(
                "parameter_invalid",
                &param,
                format!(
                    "Invalid {param}: a payload member is a string (nested objects are not \
                     event properties)."
                ),
            ));
        }
        properties.insert(
            name.clone(),
            meterline_core::wire::property_text(value.clone()),
        );
    }
    Ok(properties)
}

/// Stripe's window: at most 35 days in the past and 5 minutes in the future.
fn event_time(
    timestamp: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, StripeError> {
    let Some(at) = timestamp else {
        return Ok(now);
    };
    let (oldest, newest) = crate::billing::stripe_window(now);
    if oldest <= at && at <= newest {
        return Ok(at);
    }
    Err(StripeError::invalid(
        "timestamp_outside_window",
        "timestamp",
        format!(
            "Timestamp {} is outside the allowed window: events may be at most {} days in the \
             past and {} seconds in the future.",
            at.timestamp(),
            crate::billing::STRIPE_MAX_AGE_DAYS,
            crate::billing::STRIPE_MAX_FUTURE_SECS
        ),
    ))
}

pub(super) async fn create(
    State(state): State<AppState>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    match create_inner(&state, form).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn create_inner(
    state: &AppState,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response, StripeError> {
    let Form(fields) = form.map_err(|e| {
        let status = e.status();
        StripeError::new(
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                status
            } else {
                StatusCode::BAD_REQUEST
            },
            "invalid_request_error",
            format!(
                "Send the meter event form-encoded (application/x-www-form-urlencoded), as \
                 Stripe's API takes it: {}",
                e.body_text()
            ),
        )
    })?;
    let event = parse(fields)?;
    let now = state.clock.now();
    let at = event_time(event.timestamp, now)?;
    // Stripe makes up an identifier when none is given; so do we, so that the answer names it.
    let identifier = event
        .identifier
        .clone()
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let candidate = Candidate {
        who: Who::StripeCustomer(event.stripe_customer_id.clone()),
        meter: event.event_name.clone(),
        quantity: event.value,
        properties: properties(&state.config, &event.payload)?,
        key: key(KeySource::Stripe, &[&identifier]),
        at,
        at_given: event.timestamp.is_some(),
    };
    let decided = match ingest(state, vec![candidate])
        .await
        .map_err(Problem::Other)?
    {
        Ingested::Rejected(mut problems) => Err(problems.remove(0).1),
        Ingested::Decided(mut decided) => decided.remove(0).1,
    };
    match decided {
        Ok(outcome) if outcome.duplicate => Err(already_exists(&identifier)),
        Err(Problem::Conflict(_)) => Err(already_exists(&identifier)),
        Err(problem) => Err(problem.into()),
        Ok(_) => Ok(Json(MeterEventOut {
            object: "billing.meter_event",
            created: now.timestamp(),
            event_name: &event.event_name,
            identifier: &identifier,
            livemode: false,
            payload: &event.payload,
            timestamp: at.timestamp(),
        })
        .into_response()),
    }
}

/// Stripe's answer to a known identifier, whatever the other parameters.
fn already_exists(identifier: &str) -> StripeError {
    StripeError::new(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        format!(
            "An event already exists with identifier {}.",
            crate::sanitize::sanitize(identifier)
        ),
    )
}

/// Stripe's `billing.meter_event` object.
#[derive(Serialize)]
struct MeterEventOut<'a> {
    object: &'static str,
    created: i64,
    event_name: &'a str,
    identifier: &'a str,
    livemode: bool,
    payload: &'a BTreeMap<String, String>,
    timestamp: i64,
}
