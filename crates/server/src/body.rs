//! Request bodies, native and compatible routes alike: at most `MAX_BODY` bytes (a larger
//! announced length is refused before any of it is read), read with the one JSON error.

use axum::body::Bytes;
use axum::extract::Request;
use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::MAX_BODY;
use super::error::ApiError;

/// The 413 of a body past `MAX_BODY`.
pub(crate) fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the request body is larger than {MAX_BODY} bytes"),
    )
}

/// A body announced larger than the cap is refused before any of it is read.
pub(crate) async fn refuse_oversized(request: Request, next: Next) -> Response {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large().into_response();
    }
    next.run(request).await
}

/// The body, or the JSON error for a body that could not be read (413 when too large).
pub(crate) fn read(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        let status = e.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            ApiError::new(status, "bad_body", e.body_text())
        }
    })
}

/// The body, one JSON object with no key twice (`wire::strict_object`), as a `T`; or the 400
/// naming what is wrong with it.
pub(crate) fn object<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    meterline_core::wire::strict_object(&read(body)?).map_err(ApiError::bad_request)
}
