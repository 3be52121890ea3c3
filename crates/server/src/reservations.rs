//! `POST /v1/reservations` (reserve), `POST /v1/reservations/{id}/settle` and
//! `DELETE /v1/reservations/{id}` (release). Parsing and answers only: the writer's group
//! commit runs the calls (`writer::Writer::call`), the store decides them in the write
//! transaction the caps are decided in.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use meterline_store::{
    DEFAULT_TTL_SECS, NewReservation, ReservationAnswer, ReservationCall, Reserved,
};

/// A reservation's body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReserveIn {
    customer: String,
    #[serde(rename = "type")]
    event_type: Option<String>,
    meter: Option<String>,
    #[serde(default, deserialize_with = "meterline_core::wire::properties")]
    properties: meterline_core::Properties,
    ttl_seconds: Option<i64>,
    key: Option<String>,
}

/// A settle's body: what the work really used (the estimate when absent).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SettleIn {
    #[serde(default, deserialize_with = "meterline_core::wire::properties")]
    properties: meterline_core::Properties,
}

/// A reservation: 201 with it, 200 when its key had made it before, 402 (the record answer
/// of the estimate) when a record of it would be refused.
pub(crate) async fn post_reservation(
    State(state): State<AppState>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body: ReserveIn = super::body::object(raw)?;
    let request = NewReservation {
        customer: body.customer,
        event_type: body.event_type,
        meter: body.meter,
        properties: body.properties,
        ttl_secs: body.ttl_seconds.unwrap_or(DEFAULT_TTL_SECS),
        key: body.key,
    };
    let ReservationAnswer::Reserved(reserved) =
        state.writer.call(ReservationCall::Reserve(request)).await?
    else {
        return Err(unexpected());
    };
    let status = match &reserved {
        Reserved::Held {
            duplicate: true, ..
        } => StatusCode::OK,
        Reserved::Held { .. } => StatusCode::CREATED,
        Reserved::Refused(_) => StatusCode::PAYMENT_REQUIRED,
    };
    let mut response = (status, Json(reserved.to_json())).into_response();
    if let Reserved::Refused(outcome) = &reserved
        && let Some(secs) = meterline_core::wire::retry_after(outcome)
    {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, secs.into());
    }
    Ok(response)
}

/// A settle: the record answer with the reservation and whether its hold had lapsed.
pub(crate) async fn post_settle(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let bytes = super::body::read(raw)?;
    let body: SettleIn = if bytes.iter().all(u8::is_ascii_whitespace) {
        SettleIn::default()
    } else {
        meterline_core::wire::strict_object(&bytes).map_err(ApiError::bad_request)?
    };
    let properties = (!body.properties.is_empty()).then_some(body.properties);
    let ReservationAnswer::Settled(settled) = state
        .writer
        .call(ReservationCall::Settle { id, properties })
        .await?
    else {
        return Err(unexpected());
    };
    Ok(Json(settled.to_json()).into_response())
}

/// A release: the reservation, and whether it had been released before.
pub(crate) async fn delete_reservation(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let ReservationAnswer::Released(released) =
        state.writer.call(ReservationCall::Release(id)).await?
    else {
        return Err(unexpected());
    };
    Ok(Json(released).into_response())
}

/// The writer answered a call with another call's answer: a bug.
fn unexpected() -> ApiError {
    ApiError::from(meterline_core::Error::Database(
        "the writer answered a reservation call with another call's answer".into(),
    ))
}
