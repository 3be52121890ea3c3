//! Bearer tokens: the active tokens' hashes live in memory for a second; an unknown token
//! rereads them at once (a new token works immediately, a revoked one stops within a second).
//! A presented token is hashed and compared with every active hash in constant time.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;
use crate::store::{ActiveToken, token_hash};

const RELOAD_EVERY: Duration = Duration::from_secs(1);
/// `last_used_at` is written at most this often per token.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// Read on every request by both runtime threads, written about once a second: read-write
/// locks, so readers never queue behind each other.
#[derive(Default)]
pub(crate) struct Tokens {
    cache: RwLock<Option<(Instant, Arc<Vec<ActiveToken>>)>>,
    touched: RwLock<HashMap<String, Instant>>,
}

impl Tokens {
    fn fresh(&self) -> Option<Arc<Vec<ActiveToken>>> {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        cache
            .as_ref()
            .filter(|(at, _)| at.elapsed() < RELOAD_EVERY)
            .map(|(_, tokens)| tokens.clone())
    }

    fn store(&self, tokens: Vec<ActiveToken>) -> Arc<Vec<ActiveToken>> {
        let tokens = Arc::new(tokens);
        *self.cache.write().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), tokens.clone()));
        tokens
    }

    /// True when this token's last use should be written now.
    fn should_touch(&self, name: &str) -> bool {
        let recent = |touched: &HashMap<String, Instant>| {
            touched
                .get(name)
                .is_some_and(|at| at.elapsed() < TOUCH_EVERY)
        };
        if recent(&self.touched.read().unwrap_or_else(|e| e.into_inner())) {
            return false;
        }
        // Checked again under the write lock: only one request touches.
        let mut touched = self.touched.write().unwrap_or_else(|e| e.into_inner());
        if recent(&touched) {
            return false;
        }
        touched.insert(name.to_string(), Instant::now());
        true
    }
}

/// The name of the token whose hash matches, looking at every token (no early exit).
fn matching<'a>(tokens: &'a [ActiveToken], presented: &str) -> Option<&'a str> {
    let hash = token_hash(presented);
    let mut found = None;
    for token in tokens {
        if bool::from(token.sha256.ct_eq(&hash)) {
            found = Some(token.name.as_str());
        }
    }
    found
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is case-insensitive
/// (RFC 9110 11.1): some clients send `bearer`.
fn bearer_credentials(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Why a request was not let through.
enum Denied {
    /// 401: the message says what was wrong (never the token itself).
    Unauthorized(&'static str),
    /// The token table could not be read.
    Failed(ApiError),
}

/// Check the request's bearer token.
async fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), Denied> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_credentials);
    let Some(presented) = presented.filter(|t| !t.is_empty()) else {
        return Err(Denied::Unauthorized(
            "missing bearer token: send `Authorization: Bearer <token>`",
        ));
    };
    // A cached miss rereads the table once: a token created a moment ago works at once.
    let cached = state.tokens.fresh();
    let mut name = cached
        .as_ref()
        .and_then(|tokens| matching(tokens, presented).map(str::to_string));
    if name.is_none() {
        let tokens = match super::read(state, |store| store.active_tokens()).await {
            Ok(tokens) => state.tokens.store(tokens),
            Err(e) => return Err(Denied::Failed(e)),
        };
        name = matching(&tokens, presented).map(str::to_string);
    }
    let Some(name) = name else {
        return Err(Denied::Unauthorized("unknown or revoked token"));
    };
    if state.tokens.should_touch(&name) {
        state.writer.touch(&name);
    }
    Ok(())
}

/// How a family of routes answers a request the guard stops: the native API's JSON error, or
/// a compatible protocol's own shape (its SDK raises its usual exception).
pub(crate) trait ErrorShape {
    /// The 401; `message` says what was wrong (never the token itself).
    fn unauthorized(message: &str) -> Response;
    /// Any other error: the token table could not be read, or the body not decoded (413, 415).
    fn failed(error: ApiError) -> Response;
}

/// The guard of every route that needs a token, native and compatible: the bearer token
/// checked, then the body's `Content-Encoding` undone (only then: an unauthenticated body is
/// never inflated), with the errors in `S`'s shape.
pub(crate) async fn guard<S: ErrorShape>(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match authorize(&state, request.headers()).await {
        Ok(()) => match super::encoding::decode(request).await {
            Ok(request) => next.run(request).await,
            Err(e) => S::failed(e),
        },
        Err(Denied::Unauthorized(message)) => S::unauthorized(message),
        // The token could not be checked: the caller may hold none, so nothing of the database.
        Err(Denied::Failed(e)) => S::failed(e.for_anyone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in [
            "Bearer mlt_a",
            "bearer mlt_a",
            "BEARER  mlt_a ",
            " Bearer mlt_a",
        ] {
            assert_eq!(bearer_credentials(value), Some("mlt_a"), "{value:?}");
        }
        for value in ["Basic mlt_a", "Bearermlt_a", "mlt_a", "Bearer"] {
            assert_eq!(bearer_credentials(value), None, "{value:?}");
        }
        assert_eq!(bearer_credentials("Bearer "), Some(""));
    }

    #[test]
    fn only_the_matching_token_is_found() {
        let tokens: Vec<ActiveToken> = ["mlt_a", "mlt_b", "mlt_c"]
            .iter()
            .map(|t| ActiveToken {
                name: format!("n{t}"),
                sha256: token_hash(t),
            })
            .collect();
        assert_eq!(matching(&tokens, "mlt_b"), Some("nmlt_b"));
        assert_eq!(matching(&tokens, "mlt_c"), Some("nmlt_c"));
        assert_eq!(matching(&tokens, "mlt_"), None);
        assert_eq!(matching(&tokens, "MLT_A"), None);
        assert_eq!(matching(&[], "mlt_a"), None);
    }
}
