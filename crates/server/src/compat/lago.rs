//! Lago events: `POST /lago/api/v1/events` (`{"event":{…}}`) and
//! `POST /lago/api/v1/events/batch` (`{"events":[…]}`). Answers in Lago's event response
//! shape; errors as Lago writes them: `{"status","error","code","error_details"}`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use super::{Candidate, Ingested, Naming, Problem, Who, ingest, key, payload_properties, quantity};
use crate::RecordOutcome;
use crate::auth::ErrorShape;
use crate::billing::parse_unix_seconds;
use crate::store::KeySource;
use crate::{ApiError, AppState, MAX_BATCH};

/// `{"status","error","code","error_details"}`, as Lago writes its errors.
pub(super) struct LagoError {
    status: StatusCode,
    code: Option<&'static str>,
    details: Value,
    retry_after: Option<u32>,
}

impl LagoError {
    fn new(status: StatusCode, code: Option<&'static str>, details: Value) -> LagoError {
        LagoError {
            status,
            code,
            details,
            retry_after: None,
        }
    }

    fn bad(message: impl Into<String>) -> LagoError {
        LagoError::new(
            StatusCode::BAD_REQUEST,
            Some("bad_request"),
            json!({ "message": message.into() }),
        )
    }

    /// `ids`: the transaction ids the problem is about.
    fn from_problem(problem: Problem, ids: &[String]) -> LagoError {
        let message = problem.message().to_string();
        let mut details = json!({ "message": message });
        if !ids.is_empty() {
            details["transaction_ids"] = json!(ids);
        }
        match problem {
            Problem::Invalid { param, .. } => {
                if let Some(param) = param {
                    details[param] = json!(["invalid_value"]);
                }
                LagoError::new(StatusCode::BAD_REQUEST, Some("bad_request"), details)
            }
            Problem::UnknownCustomer(_) => {
                LagoError::new(StatusCode::NOT_FOUND, Some("customer_not_found"), details)
            }
            Problem::UnknownMeter(_) => LagoError::new(
                StatusCode::NOT_FOUND,
                Some("billable_metric_not_found"),
                details,
            ),
            Problem::Conflict(_) => {
                details["transaction_id"] = json!(["value_already_exist"]);
                LagoError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Some("validation_errors"),
                    details,
                )
            }
            Problem::Capped(_, retry_after) => LagoError {
                retry_after,
                ..LagoError::new(
                    StatusCode::PAYMENT_REQUIRED,
                    Some("hard_cap_reached"),
                    details,
                )
            },
            Problem::Other(e) => LagoError {
                retry_after: e.retry_after,
                ..LagoError::new(e.status, Some(e.code), details)
            },
        }
    }
}

/// Lago's 401: the status and its name, no details (whatever was wrong with the token).
impl ErrorShape for LagoError {
    fn unauthorized(_message: &str) -> Response {
        LagoError::new(StatusCode::UNAUTHORIZED, None, Value::Null).into_response()
    }

    fn failed(error: ApiError) -> Response {
        LagoError::from_problem(Problem::Other(error), &[]).into_response()
    }
}

impl IntoResponse for LagoError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "status": self.status.as_u16(),
            "error": self.status.canonical_reason().unwrap_or("Error"),
        });
        if let Some(code) = self.code {
            body["code"] = json!(code);
        }
        if !self.details.is_null() {
            body["error_details"] = self.details;
        }
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

const KNOWN: [&str; 7] = [
    "transaction_id",
    "code",
    "external_customer_id",
    "external_subscription_id",
    "timestamp",
    "properties",
    "precise_total_amount_cents",
];

/// One Lago event as sent, kept for the answer.
struct LagoEvent {
    transaction_id: String,
    external_customer_id: Option<String>,
    external_subscription_id: Option<String>,
    code: String,
    properties: Value,
}

fn text(event: &Map<String, Value>, name: &str) -> Result<Option<String>, Problem> {
    match event.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(Problem::invalid(
            name,
            format!("{name} must be a non-empty string"),
        )),
    }
}

/// Lago's `timestamp`: Unix seconds as a number or a numeric string, fractions dropped. A
/// string is read exactly; a JSON number as JSON parsers read it (a double).
fn timestamp(value: Option<&Value>, now: DateTime<Utc>) -> Result<DateTime<Utc>, Problem> {
    let at = match value {
        None | Some(Value::Null) => return Ok(now),
        Some(Value::Number(n)) => parse_unix_seconds(&n.to_string()),
        Some(Value::String(s)) => parse_unix_seconds(s.trim()),
        Some(_) => None,
    };
    at.ok_or_else(|| Problem::invalid("timestamp", "timestamp must be Unix seconds"))
}

fn parse_event(
    config: &crate::Config,
    value: &Value,
    now: DateTime<Utc>,
) -> Result<(Candidate, LagoEvent), Problem> {
    let Some(event) = value.as_object() else {
        return Err(Problem::invalid("event", "an event must be a JSON object"));
    };
    if let Some(unknown) = event.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(Problem::invalid(
            unknown,
            format!(
                "unknown field \"{}\"; an event takes {}",
                crate::sanitize::sanitize(unknown),
                KNOWN.join(", ")
            ),
        ));
    }
    let transaction_id = text(event, "transaction_id")?
        .ok_or_else(|| Problem::invalid("transaction_id", "transaction_id is required"))?;
    let code = text(event, "code")?
        .ok_or_else(|| Problem::invalid("code", "code is required (the meter event name)"))?;
    let external_customer_id = text(event, "external_customer_id")?;
    let external_subscription_id = text(event, "external_subscription_id")?;
    let customer = match (&external_customer_id, &external_subscription_id) {
        (Some(c), Some(s)) if c != s => {
            return Err(Problem::invalid(
                "external_subscription_id",
                "external_customer_id and external_subscription_id name different customers; \
                 both are the meterline customer id here",
            ));
        }
        (Some(c), _) | (None, Some(c)) => c.clone(),
        (None, None) => {
            return Err(Problem::invalid(
                "external_customer_id",
                "external_customer_id or external_subscription_id is required (the meterline \
                 customer id)",
            ));
        }
    };
    let properties = event.get("properties").cloned().unwrap_or(Value::Null);
    if !(properties.is_null() || properties.is_object()) {
        return Err(Problem::invalid(
            "properties",
            "properties must be a JSON object",
        ));
    }
    let at = timestamp(event.get("timestamp"), now)?;
    let quantity = quantity(config, &code, Some(&properties), "properties")?;
    let event_properties =
        payload_properties(config, Naming::protocol(KeySource::Lago), Some(&properties))?;
    let candidate = Candidate {
        who: Who::Customer(customer),
        meter: code.clone(),
        quantity,
        properties: event_properties,
        key: key(KeySource::Lago, &[&transaction_id]),
        at,
        at_given: !event.get("timestamp").is_none_or(Value::is_null),
    };
    Ok((
        candidate,
        LagoEvent {
            transaction_id,
            external_customer_id,
            external_subscription_id,
            code,
            properties,
        },
    ))
}

/// Lago's event object, complete enough for its clients' `EventResponse`.
fn event_out(
    event: &LagoEvent,
    customer: &str,
    at: DateTime<Utc>,
    outcome: &RecordOutcome,
    now: DateTime<Utc>,
) -> Value {
    json!({
        "lago_id": outcome.event_id.map(|id| id.to_string()),
        "transaction_id": event.transaction_id,
        "lago_customer_id": customer,
        "code": event.code,
        "timestamp": at.to_rfc3339_opts(SecondsFormat::Secs, true),
        "precise_total_amount_cents": Value::Null,
        "properties": if event.properties.is_null() { json!({}) } else { event.properties.clone() },
        "lago_subscription_id": Value::Null,
        "external_subscription_id": event.external_subscription_id.as_deref().unwrap_or(customer),
        "external_customer_id": event.external_customer_id.as_deref().unwrap_or(customer),
        "created_at": now.to_rfc3339_opts(SecondsFormat::Secs, true),
    })
}

/// Parse, record, answer. `Ok` holds one event object per event, in order.
async fn record(state: &AppState, events: &[Value]) -> Result<Vec<Value>, LagoError> {
    let now = state.clock.now();
    let mut candidates = Vec::with_capacity(events.len());
    let mut parsed = Vec::with_capacity(events.len());
    for event in events {
        let (candidate, lago) =
            parse_event(&state.config, event, now).map_err(|p| LagoError::from_problem(p, &[]))?;
        candidates.push(candidate);
        parsed.push(lago);
    }
    let times: Vec<DateTime<Utc>> = candidates.iter().map(|c| c.at).collect();
    let ingested = ingest(state, candidates)
        .await
        .map_err(|e| LagoError::from_problem(Problem::Other(e), &[]))?;
    let decided = match ingested {
        // Nothing recorded: the first refused event's problem, naming every refused event.
        Ingested::Rejected(problems) => {
            let ids: Vec<String> = problems
                .iter()
                .map(|(i, _)| parsed[*i].transaction_id.clone())
                .collect();
            return Err(LagoError::from_problem(problems[0].1.clone(), &ids));
        }
        Ingested::Decided(decided) => decided,
    };
    let failed: Vec<(usize, &Problem)> = decided
        .iter()
        .enumerate()
        .filter_map(|(i, (_, d))| d.as_ref().err().map(|p| (i, p)))
        .collect();
    if !failed.is_empty() {
        // The others are recorded; a hard cap alone → 402 listing the refused ids.
        let ids = |only_caps: bool| -> Vec<String> {
            failed
                .iter()
                .filter(|(_, p)| !only_caps || matches!(p, Problem::Capped(..)))
                .map(|(i, _)| parsed[*i].transaction_id.clone())
                .collect()
        };
        let first = failed
            .iter()
            .find(|(_, p)| !matches!(p, Problem::Capped(..)))
            .unwrap_or(&failed[0]);
        let all_caps = failed.iter().all(|(_, p)| matches!(p, Problem::Capped(..)));
        return Err(LagoError::from_problem(first.1.clone(), &ids(all_caps)));
    }
    // Every failure was answered above: only recorded or duplicate events remain.
    Ok(decided
        .iter()
        .zip(&parsed)
        .zip(times)
        .filter_map(|(((customer, outcome), lago), at)| {
            let outcome = outcome.as_ref().ok()?;
            Some(event_out(lago, customer, at, outcome, now))
        })
        .collect())
}

fn json_body(raw: Result<Bytes, BytesRejection>) -> Result<Value, LagoError> {
    let body =
        crate::body::read(raw).map_err(|e| LagoError::from_problem(Problem::Other(e), &[]))?;
    let value = serde_json::from_slice(&body)
        .map_err(|e| LagoError::bad(format!("the body is not JSON: {e}")))?;
    meterline_core::wire::refuse_repeated_keys(&body).map_err(LagoError::bad)?;
    Ok(value)
}

pub(super) async fn create(
    State(state): State<AppState>,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let answer = async {
        let body = json_body(raw)?;
        let event = body
            .get("event")
            .filter(|_| body.as_object().is_some_and(|o| o.len() == 1))
            .ok_or_else(|| LagoError::bad("the body must be {\"event\": {…}}"))?;
        let mut events = record(&state, std::slice::from_ref(event)).await?;
        Ok::<_, LagoError>(Json(json!({ "event": events.remove(0) })).into_response())
    };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}

pub(super) async fn batch(
    State(state): State<AppState>,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let answer = async {
        let body = json_body(raw)?;
        let events = body
            .get("events")
            .filter(|_| body.as_object().is_some_and(|o| o.len() == 1))
            .and_then(Value::as_array)
            .ok_or_else(|| LagoError::bad("the body must be {\"events\": [ … ]}"))?;
        if events.is_empty() || events.len() > MAX_BATCH {
            return Err(LagoError::bad(format!(
                "a batch carries 1 to {MAX_BATCH} events, not {}",
                events.len()
            )));
        }
        let events = record(&state, events).await?;
        Ok(Json(json!({ "events": events })).into_response())
    };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}
