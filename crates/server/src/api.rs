//! Routes and handlers. Handlers parse, hand events to the writer or a read to a reader
//! thread, and shape the answer; no SQL here.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tower_http::timeout::TimeoutLayer;

use super::error::{ApiError, ErrorBody};
use super::{AppState, MAX_BATCH, MAX_BODY, auth, read};
use crate::RecordOutcome;
use meterline_core::wire::{EventIn, EventOut, status_of};

const ROUTES: [&str; 14] = [
    "/healthz",
    "/metrics",
    "/v1/events",
    "/v1/events/batch",
    "/v1/customers/{id}/check",
    "/v1/customers/{id}/credits",
    "/v1/reservations",
    "/v1/reservations/{id}",
    "/v1/reservations/{id}/settle",
    "/v1/status",
    super::compat::STRIPE_METER_EVENTS,
    super::compat::OPENMETER_EVENTS,
    super::compat::LAGO_EVENTS,
    super::compat::LAGO_EVENTS_BATCH,
];

pub(crate) fn router(state: AppState, request_timeout: Duration) -> Router {
    let protected = Router::new()
        .route("/v1/events", post(post_event))
        .route("/v1/events/batch", post(post_batch))
        .route("/v1/customers/{id}/check", get(get_check))
        .route(
            "/v1/customers/{id}/credits",
            get(super::credits::get_credits).post(super::credits::post_credits),
        )
        .route(
            "/v1/reservations",
            post(super::reservations::post_reservation),
        )
        .route(
            "/v1/reservations/{id}",
            axum::routing::delete(super::reservations::delete_reservation),
        )
        .route(
            "/v1/reservations/{id}/settle",
            post(super::reservations::post_settle),
        )
        .route("/v1/status", get(get_status))
        .route("/metrics", get(get_metrics))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::guard::<ApiError>,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(protected)
        .merge(super::compat::router(state.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(super::body::refuse_oversized))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .layer(middleware::from_fn(super::keep_alive::close_if_body_unread))
        .with_state(state)
}

/// The native API's refusals: its JSON error, and `WWW-Authenticate: Bearer` on a 401.
impl auth::ErrorShape for ApiError {
    fn unauthorized(message: &str) -> Response {
        let mut response =
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        response
    }

    fn failed(error: ApiError) -> Response {
        error.into_response()
    }
}

async fn count_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|p| ROUTES.iter().find(|r| **r == p.as_str()).copied())
        .unwrap_or("other");
    let response = next.run(request).await;
    state.metrics.request(route, response.status().as_u16());
    response
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method",
    )
}

fn event_response(outcome: &RecordOutcome) -> Response {
    let status = StatusCode::from_u16(status_of(outcome)).unwrap_or(StatusCode::OK);
    let mut response = (status, Json(EventOut::new(outcome, None))).into_response();
    if let Some(secs) = meterline_core::wire::retry_after(outcome) {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, secs.into());
    }
    response
}

async fn post_event(
    State(state): State<AppState>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let event = EventIn::parse(&super::body::read(raw)?).map_err(ApiError::bad_request)?;
    let request = event.into_request(state.clock.now());
    let mut results = state.writer.commit(vec![request]).await?;
    match results.pop() {
        Some(Ok(outcome)) => Ok(event_response(&outcome)),
        Some(Err(e)) => Err(e.into()),
        None => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the writer returned no result",
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchIn {
    /// Each event's own text, parsed alone as `POST /v1/events` parses it.
    events: Vec<Box<serde_json::value::RawValue>>,
}

/// One entry of a batch answer.
#[derive(Serialize)]
#[serde(untagged)]
enum BatchItem<'a> {
    Event(EventOut<'a>),
    Error { status: u16, error: ErrorBody<'a> },
}

#[derive(Serialize)]
struct BatchOut<'a> {
    results: Vec<BatchItem<'a>>,
}

async fn post_batch(
    State(state): State<AppState>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // Each event's repeated keys fail it alone, when it is parsed.
    let batch: BatchIn =
        meterline_core::wire::object(&super::body::read(raw)?).map_err(ApiError::bad_request)?;
    if batch.events.is_empty() || batch.events.len() > MAX_BATCH {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "batch_size",
            format!(
                "a batch carries 1 to {MAX_BATCH} events, not {}",
                batch.events.len()
            ),
        ));
    }
    // An event that does not parse fails only itself; the others go to the writer in order.
    let now = state.clock.now();
    let parsed: Vec<Result<crate::RecordRequest, ApiError>> = batch
        .events
        .into_iter()
        .map(|raw| {
            EventIn::parse(raw.get().as_bytes())
                .map(|e| e.into_request(now))
                .map_err(ApiError::bad_request)
        })
        .collect();
    let valid: Vec<crate::RecordRequest> = parsed
        .iter()
        .filter_map(|p| p.as_ref().ok().cloned())
        .collect();
    let mut committed = if valid.is_empty() {
        Vec::new()
    } else {
        state.writer.commit(valid).await?
    }
    .into_iter();
    let decided: Vec<Result<RecordOutcome, ApiError>> = parsed
        .into_iter()
        .map(|p| match p {
            Ok(_) => match committed.next() {
                Some(Ok(outcome)) => Ok(outcome),
                Some(Err(e)) => Err(ApiError::from(e)),
                None => Err(ApiError::bad_request("missing result")),
            },
            Err(e) => Err(e),
        })
        .collect();
    let results: Vec<BatchItem> = decided
        .iter()
        .map(|d| match d {
            Ok(outcome) => BatchItem::Event(EventOut::new(outcome, Some(status_of(outcome)))),
            Err(e) => BatchItem::Error {
                status: e.status.as_u16(),
                error: e.body(),
            },
        })
        .collect();
    Ok(Json(BatchOut { results }).into_response())
}

/// `?meter=ID`: that meter's object alone, as `check --meter ID --json`.
#[derive(Deserialize)]
struct CheckQuery {
    meter: Option<String>,
}

async fn get_check(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<CheckQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    // axum's own answer to a bad path (e.g. invalid UTF-8) is plain text: give ours.
    let Path(id) = id.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if let Some(meter) = &query.meter {
        state.config.known_meter(meter)?;
    }
    let all = match &state.checks {
        Some(checks) => checks.check(id).await?,
        None => {
            let config = state.config.clone();
            let now = state.clock.now();
            read(&state, move |store| store.metered_check(&config, &id, now)).await?
        }
    };
    match &query.meter {
        Some(meter) => match all.meter(meter) {
            Some(one) => Ok(Json(one).into_response()),
            None => Err(ApiError::bad_request(format!(
                "meter \"{}\" is not in plans.toml",
                crate::sanitize::sanitize(meter)
            ))),
        },
        None => Ok(Json(all).into_response()),
    }
}

async fn get_status(State(state): State<AppState>) -> Result<Response, ApiError> {
    let config = state.config.clone();
    let now = state.clock.now();
    let rows = read(&state, move |store| store.status_entries(&config, now)).await?;
    Ok(Json(rows).into_response())
}

async fn healthz(State(state): State<AppState>) -> Response {
    match read(&state, |store| store.schema_version()).await {
        Ok(_) => Json(serde_json::json!({ "status": "ok" })).into_response(),
        // Anyone may ask: the answer says that, not why (an authenticated request's does).
        Err(e) => ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "database_unavailable",
            ..e
        }
        .for_anyone()
        .into_response(),
    }
}

async fn get_metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
