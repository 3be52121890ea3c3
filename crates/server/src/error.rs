//! The one error body every endpoint returns: `{"error":{"code":"…","message":"…"}}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::Error;

/// An error answer of the HTTP API (also how `record --batch` classifies a failed line).
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The machine-readable code (`invalid_input`, `unknown_customer`, …).
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// Seconds for a `Retry-After` header (503s).
    pub(crate) retry_after: Option<u32>,
}

#[derive(Serialize)]
pub(crate) struct ErrorBody<'a> {
    pub code: &'a str,
    pub message: &'a str,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", message)
    }

    pub(crate) fn unavailable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }

    /// This error as a caller without a valid token may see it (and `/healthz`): its status,
    /// code and Retry-After, and a message that names nothing of the database. A database
    /// error names its URL, and so its user, host and database, which only callers holding a
    /// token may learn.
    pub(crate) fn for_anyone(self) -> ApiError {
        ApiError {
            message: "the server cannot use its database right now; retry later".into(),
            ..self
        }
    }

    pub(crate) fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            code: self.code,
            message: &self.message,
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let status = match &e {
            Error::UnknownCustomer(_) => (StatusCode::NOT_FOUND, "unknown_customer"),
            Error::InvalidInput(_) => (StatusCode::BAD_REQUEST, "invalid_input"),
            Error::IdempotencyConflict(_) => (StatusCode::CONFLICT, "idempotency_conflict"),
            Error::UnknownReservation(_) => (StatusCode::NOT_FOUND, "unknown_reservation"),
            Error::ReservationEnded(_) => (StatusCode::CONFLICT, "reservation_ended"),
            Error::UnknownPlan { .. } | Error::PlanMissing { .. } => {
                (StatusCode::CONFLICT, "plan_missing")
            }
            Error::CustomerArchived(_) => (StatusCode::CONFLICT, "customer_archived"),
            Error::Locked => return ApiError::unavailable("database_locked", e.to_string()),
            Error::Unavailable(_) => {
                return ApiError::unavailable("database_unavailable", e.to_string());
            }
            // Perhaps written: the message says to resend with the same idempotency key.
            Error::OutcomeUnknown(_) => {
                return ApiError::unavailable("outcome_unknown", e.to_string());
            }
            // Nothing of the request was written; it can succeed once space is freed.
            Error::DiskFull => {
                return ApiError::unavailable(
                    "disk_full",
                    "the disk holding the database is full; nothing of this request was \
                     written: retry once space is freed",
                );
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status.0, status.1, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(serde_json::json!({ "error": self.body() })),
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
