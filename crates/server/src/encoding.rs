//! Request bodies sent with a `Content-Encoding`: `gzip` is decoded before any handler sees the
//! body, `identity` is the body as it is, anything else is a 415. The body limit applies to the
//! decoded bytes, so a small gzip bomb cannot pass it.

use std::io::Read;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};

use super::MAX_BODY;
use super::error::ApiError;

/// The request with its body decoded, or the error to answer (in the route's own shape:
/// `auth::guard` calls this after the token check).
pub(crate) async fn decode(request: Request) -> Result<Request, ApiError> {
    // An empty body has nothing encoded (a GET, a bodiless POST).
    if hyper::body::Body::is_end_stream(request.body()) {
        return Ok(request);
    }
    let Some(value) = request.headers().get(header::CONTENT_ENCODING) else {
        return Ok(request);
    };
    if is_gzip(value)? {
        gunzip(request).await
    } else {
        Ok(request)
    }
}

/// True for gzip (`x-gzip` is its old name), false for identity; anything else, or gzip twice,
/// is refused.
fn is_gzip(value: &HeaderValue) -> Result<bool, ApiError> {
    let text = value.to_str().unwrap_or("(not text)");
    let codings: Vec<String> = text
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "identity")
        .collect();
    match codings.as_slice() {
        [] => Ok(false),
        [one] if one == "gzip" || one == "x-gzip" => Ok(true),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
            format!(
                "Content-Encoding \"{}\" is not supported; send the body as identity (not \
                 encoded) or gzip",
                crate::sanitize::sanitize(text)
            ),
        )),
    }
}

async fn gunzip(request: Request) -> Result<Request, ApiError> {
    let (mut parts, body) = request.into_parts();
    // Read as the handlers read bodies: the same limit on the compressed bytes, the same 413.
    let raw = Bytes::from_request(Request::from_parts(parts.clone(), body), &()).await;
    let compressed = super::body::read(raw)?;
    let mut decoded = Vec::new();
    // One byte past the limit is enough to refuse: a bomb is never inflated further. At most
    // 1 MiB of work, so it runs in place rather than on a blocking thread.
    flate2::read::MultiGzDecoder::new(&compressed[..])
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut decoded)
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("the body is not valid gzip (Content-Encoding: gzip): {e}"),
            )
        })?;
    if decoded.len() > MAX_BODY {
        return Err(super::body::too_large());
    }
    parts.headers.remove(header::CONTENT_ENCODING);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(decoded.len()));
    Ok(Request::from_parts(parts, Body::from(decoded)))
}
