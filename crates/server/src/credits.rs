//! `POST /v1/customers/{id}/credits` (grant) and `GET /v1/customers/{id}/credits` (balance).
//! Parsing and answers only: the store decides and writes.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::ApiError;
use super::{AppState, read, write};
use meterline_core::billing::parse_ts;
use meterline_store::{DEFAULT_PRIORITY, NewGrant};

/// An amount as JSON gives it: `"12.50"` or `12.50` (read as written, never as a float).
#[derive(Deserialize)]
#[serde(untagged)]
enum AmountIn {
    Text(String),
    Number(serde_json::Number),
}

/// The grant's body: every field but `amount` optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantIn {
    amount: AmountIn,
    meter: Option<String>,
    priority: Option<u8>,
    expires_at: Option<String>,
    effective_at: Option<String>,
    #[serde(default)]
    promotional: bool,
    note: Option<String>,
    key: Option<String>,
}

fn instant(
    field: &str,
    text: Option<String>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    text.map(|t| parse_ts(&t).map_err(|e| ApiError::bad_request(format!("{field}: {e}"))))
        .transpose()
}

impl GrantIn {
    fn into_grant(self, customer: String) -> Result<NewGrant, ApiError> {
        Ok(NewGrant {
            customer,
            amount: match self.amount {
                AmountIn::Text(text) => text,
                AmountIn::Number(number) => number.to_string(),
            },
            meter: self.meter,
            priority: self.priority.unwrap_or(DEFAULT_PRIORITY),
            effective_at: instant("effective_at", self.effective_at)?,
            expires_at: instant("expires_at", self.expires_at)?,
            promotional: self.promotional,
            note: self.note,
            key: self.key,
        })
    }
}

/// A grant: 201 with the grant, or 200 with it when its key had already made it.
pub(crate) async fn post_credits(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let body: GrantIn = super::body::object(raw)?;
    let request = body.into_grant(id)?;
    let config = state.config.clone();
    let now = state.clock.now();
    let granted = write(&state, move |store| {
        store.grant_credits(&config, &request, now)
    })
    .await?;
    let status = if granted.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(granted)).into_response())
}

/// The customer's balance, held and available credits, and each live grant.
pub(crate) async fn get_credits(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let now = state.clock.now();
    let balance = read(&state, move |store| store.credit_balance(&id, now)).await?;
    Ok(Json(balance).into_response())
}
