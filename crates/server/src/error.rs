//! The one error body every endpoint returns: `{"error":{"code":"…","message":"…"}}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::Error;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (503s).
    pub retry_after: Option<u32>,
}

#[derive(Serialize)]
pub struct ErrorBody<'a> {
    pub code: &'a str,
    pub message: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", message)
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }

    pub fn body(&self) -> ErrorBody<'_> {
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
            Error::UnknownPlan { .. } | Error::PlanMissing { .. } => {
                (StatusCode::CONFLICT, "plan_missing")
            }
            Error::CustomerArchived(_) => (StatusCode::CONFLICT, "customer_archived"),
            Error::Locked => return ApiError::unavailable("database_locked", e.to_string()),
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
