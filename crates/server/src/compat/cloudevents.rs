//! CloudEvents 1.0 as OpenMeter ingests them: `POST /openmeter/api/v1/events` with
//! `application/cloudevents+json` (one event), `application/cloudevents-batch+json` (an
//! array) or `application/json` (either). Success is 204; errors are RFC 7807 problem
//! details, as OpenMeter answers.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::{Candidate, Ingested, Naming, Problem, Who, ingest, key, payload_properties, quantity};
use crate::auth::ErrorShape;
use crate::store::KeySource;
use crate::{ApiError, AppState, MAX_BATCH};

/// `application/problem+json`: type, title, status, detail, plus extension members.
pub(super) struct ProblemDetails {
    status: StatusCode,
    detail: String,
    extra: Map<String, Value>,
    retry_after: Option<u32>,
}

impl ProblemDetails {
    fn new(status: StatusCode, detail: impl Into<String>) -> ProblemDetails {
        ProblemDetails {
            status,
            detail: detail.into(),
            extra: Map::new(),
            retry_after: None,
        }
    }

    fn bad(detail: impl Into<String>) -> ProblemDetails {
        ProblemDetails::new(StatusCode::BAD_REQUEST, detail)
    }
}

/// A 401 as problem details, with `WWW-Authenticate: Bearer`.
impl ErrorShape for ProblemDetails {
    fn unauthorized(message: &str) -> Response {
        let mut response = ProblemDetails::new(StatusCode::UNAUTHORIZED, message).into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        response
    }

    fn failed(error: ApiError) -> Response {
        Problem::Other(error).into_problem(&[]).into_response()
    }
}

impl IntoResponse for ProblemDetails {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": "about:blank",
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let Value::Object(members) = &mut body {
            members.extend(self.extra);
        }
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl Problem {
    /// This problem as problem details; `events` are the (id, source) it is about.
    fn into_problem(self, events: &[(String, String)]) -> ProblemDetails {
        let status = match &self {
            Problem::Invalid { .. } | Problem::UnknownCustomer(_) | Problem::UnknownMeter(_) => {
                StatusCode::BAD_REQUEST
            }
            Problem::Conflict(_) => StatusCode::CONFLICT,
            Problem::Capped(..) => StatusCode::PAYMENT_REQUIRED,
            Problem::Other(e) => e.status,
        };
        let mut details = ProblemDetails::new(status, self.message());
        match &self {
            Problem::Other(e) => details.retry_after = e.retry_after,
            Problem::Capped(_, retry_after) => details.retry_after = *retry_after,
            _ => {}
        }
        if !events.is_empty() {
            let list = events
                .iter()
                .map(|(id, source)| json!({ "id": id, "source": source }))
                .collect();
            let name = if status == StatusCode::PAYMENT_REQUIRED {
                "refused"
            } else {
                "events"
            };
            details.extra.insert(name.into(), Value::Array(list));
        }
        details
    }
}

/// What the content type says the body holds.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    One,
    Batch,
    Either,
}

fn shape(headers: &HeaderMap) -> Result<Shape, ProblemDetails> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match media.as_deref() {
        Some("application/cloudevents+json") => Ok(Shape::One),
        Some("application/cloudevents-batch+json") => Ok(Shape::Batch),
        Some("application/json") => Ok(Shape::Either),
        other => Err(ProblemDetails::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "content type {} is not taken here; send application/cloudevents+json (one \
                 event), application/cloudevents-batch+json (an array) or application/json",
                other.unwrap_or("(none)")
            ),
        )),
    }
}

/// The context attributes CloudEvents 1.0 defines for the JSON format.
const KNOWN: [&str; 10] = [
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "data",
    "data_base64",
];

fn text<'a>(event: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, Problem> {
    match event.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Problem::invalid(name, format!("{name} must be a string"))),
    }
}

fn required<'a>(event: &'a Map<String, Value>, name: &str, why: &str) -> Result<&'a str, Problem> {
    text(event, name)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Problem::invalid(name, format!("{name} is required{why}")))
}

/// One CloudEvent, checked as the spec says, mapped to a candidate. Also returns (id, source).
fn parse_event(
    config: &crate::Config,
    value: &Value,
    now: DateTime<Utc>,
) -> Result<(Candidate, (String, String)), Problem> {
    let Some(event) = value.as_object() else {
        return Err(Problem::invalid(
            "event",
            "each event must be a JSON object",
        ));
    };
    let version = required(event, "specversion", "")?;
    if version != "1.0" {
        return Err(Problem::invalid(
            "specversion",
            format!("specversion \"{version}\" is not supported; use \"1.0\""),
        ));
    }
    let id = required(event, "id", "")?;
    let source = required(event, "source", "")?;
    let meter = required(event, "type", " (the meter event name)")?;
    let subject = required(event, "subject", " (the meterline customer id)")?;
    for name in event.keys() {
        let extension = !KNOWN.contains(&name.as_str());
        if extension
            && (name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        {
            return Err(Problem::invalid(
                name,
                format!(
                    "\"{}\" is not a valid attribute name: CloudEvents names are lower-case \
                     letters and digits",
                    crate::sanitize::sanitize(name)
                ),
            ));
        }
    }
    text(event, "dataschema")?;
    if let Some(media) = text(event, "datacontenttype")? {
        let media = media.split(';').next().unwrap_or("").trim();
        if media != "application/json" && !media.ends_with("+json") {
            return Err(Problem::invalid(
                "datacontenttype",
                format!("datacontenttype \"{media}\" is not JSON; data must be JSON here"),
            ));
        }
    }
    if event.contains_key("data_base64") {
        return Err(Problem::invalid(
            "data_base64",
            "data_base64 is not taken here; send the payload as JSON in data",
        ));
    }
    let time = text(event, "time")?;
    let at = match time {
        None => now,
        Some(time) => crate::billing::parse_ts(time).map_err(|e| {
            Problem::invalid("time", format!("time \"{time}\" is not RFC 3339: {e}"))
        })?,
    };
    let quantity = quantity(config, meter, event.get("data"), "data")?;
    let properties = payload_properties(
        config,
        Naming::protocol(KeySource::CloudEvents),
        event.get("data"),
    )?;
    let candidate = Candidate {
        who: Who::Customer(subject.to_string()),
        meter: meter.to_string(),
        quantity,
        properties,
        key: key(KeySource::CloudEvents, &[source, id]),
        at,
        at_given: time.is_some(),
    };
    Ok((candidate, (id.to_string(), source.to_string())))
}

async fn ingest_route(
    state: &AppState,
    headers: &HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ProblemDetails> {
    let shape = shape(headers)?;
    let body = crate::body::read(raw).map_err(|e| Problem::Other(e).into_problem(&[]))?;
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ProblemDetails::bad(format!("the body is not JSON: {e}")))?;
    meterline_core::wire::refuse_repeated_keys(&body).map_err(ProblemDetails::bad)?;
    let events = match (shape, value) {
        (Shape::Batch | Shape::Either, Value::Array(events)) => events,
        (Shape::One | Shape::Either, event @ Value::Object(_)) => vec![event],
        (Shape::Batch, _) => {
            return Err(ProblemDetails::bad(
                "application/cloudevents-batch+json takes a JSON array of events",
            ));
        }
        _ => {
            return Err(ProblemDetails::bad(
                "the body must be one CloudEvent (a JSON object) or, as a batch, an array",
            ));
        }
    };
    if events.is_empty() || events.len() > MAX_BATCH {
        return Err(ProblemDetails::bad(format!(
            "a batch carries 1 to {MAX_BATCH} events, not {}",
            events.len()
        )));
    }
    let now = state.clock.now();
    let mut candidates = Vec::with_capacity(events.len());
    let mut names = Vec::with_capacity(events.len());
    for (index, event) in events.iter().enumerate() {
        let (candidate, name) = parse_event(&state.config, event, now).map_err(|p| {
            let mut details = p.into_problem(&[]);
            details.extra.insert("index".into(), json!(index));
            details
        })?;
        candidates.push(candidate);
        names.push(name);
    }
    match ingest(state, candidates)
        .await
        .map_err(|e| Problem::Other(e).into_problem(&[]))?
    {
        // Nothing recorded: the first refused event's problem, and every refused event.
        Ingested::Rejected(problems) => {
            let (index, first) = problems[0].clone();
            let mut details = first.into_problem(&[names[index].clone()]);
            details.extra.insert("index".into(), json!(index));
            details
                .extra
                .insert("failed".into(), failed_list(&problems, &names));
            Err(details)
        }
        Ingested::Decided(decided) => {
            // OpenMeter drops a duplicate id + source silently: a retry is a success.
            let failed: Vec<(usize, Problem)> = decided
                .into_iter()
                .enumerate()
                .filter_map(|(i, (_, d))| d.err().map(|p| (i, p)))
                .collect();
            if failed.is_empty() {
                return Ok(StatusCode::NO_CONTENT.into_response());
            }
            Err(batch_failure(&failed, &names))
        }
    }
}

/// The answer when some committed events failed: the others are recorded. All refused by a
/// hard cap → 402 listing them; otherwise the first other failure's status, listing all.
fn batch_failure(failed: &[(usize, Problem)], names: &[(String, String)]) -> ProblemDetails {
    let capped: Vec<(String, String)> = failed
        .iter()
        .filter(|(_, p)| matches!(p, Problem::Capped(..)))
        .map(|(i, _)| names[*i].clone())
        .collect();
    let first_other = failed
        .iter()
        .find(|(_, p)| !matches!(p, Problem::Capped(..)));
    let mut details = match first_other {
        None => {
            let mut d = failed[0].1.clone().into_problem(&capped);
            d.detail = format!(
                "{} of {} events refused by a hard cap; the others were recorded. {}",
                capped.len(),
                names.len(),
                d.detail
            );
            d
        }
        Some((_, problem)) => {
            let mut d = problem.clone().into_problem(&[]);
            d.detail = format!("some events failed; the others were recorded. {}", d.detail);
            d
        }
    };
    details
        .extra
        .insert("failed".into(), failed_list(failed, names));
    if !capped.is_empty() {
        details.extra.insert(
            "refused".into(),
            capped
                .iter()
                .map(|(id, source)| json!({ "id": id, "source": source }))
                .collect(),
        );
    }
    details
}

/// `[{"index", "id", "source", "detail"}, …]`: the events that failed and why.
fn failed_list(failed: &[(usize, Problem)], names: &[(String, String)]) -> Value {
    failed
        .iter()
        .map(|(i, p)| {
            json!({ "index": i, "id": names[*i].0, "source": names[*i].1, "detail": p.message() })
        })
        .collect()
}

pub(super) async fn ingest_handler(
    State(state): State<AppState>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    match ingest_route(&state, &headers, raw).await {
        Ok(response) => response,
        Err(details) => details.into_response(),
    }
}
