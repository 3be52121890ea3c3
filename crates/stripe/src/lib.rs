//! Reporting usage to Stripe Billing Meters: the API key, where to send, how each event is
//! named for Stripe, the HTTP client, the sync engine and reconciliation.
//!
//! Entry points: [`run`] (one sync run, [`SyncOptions`] → [`SyncReport`]) and
//! [`sync::preview_with`] (what it would send); [`reconcile::run`] (Stripe's totals against
//! what was reported); [`ApiKey::from_env`] and [`api_base`] for the key and where to send.
#![deny(clippy::unwrap_used, clippy::expect_used)]
// Only what other crates use is `pub`; the rest is `pub(crate)` or private.
#![warn(unreachable_pub)]

use meterline_core::{Config, Error, Result, billing, clock, config, net, sanitize};
use meterline_store::{self as store, Store};

mod client;
mod keyed_queue;
mod pipeline;
mod ratelimit;
pub mod reconcile;
pub mod sync;

use std::fmt;

use client::RetryPolicy;
pub use client::{Answer, Client, MeterEvent};
use ratelimit::RateLimiter;
pub use sync::{SyncOptions, SyncPreview, SyncProgress, SyncReport, run};

/// The Stripe secret key. It is only ever read from the environment, and neither `Debug` nor
/// `Display` shows it: the key must never reach output, logs, errors or the database.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    /// The key in `STRIPE_API_KEY`; missing or empty is a configuration error (exit 2).
    pub fn from_env() -> Result<ApiKey> {
        match std::env::var("STRIPE_API_KEY") {
            Ok(value) if !value.trim().is_empty() => ApiKey::new(value.trim()),
            _ => Err(Error::MissingApiKey),
        }
    }

    /// Check the shape of a key (never echoing it back in the error).
    pub fn new(secret: &str) -> Result<ApiKey> {
        let shaped = (secret.starts_with("sk_") || secret.starts_with("rk_"))
            && (8..=512).contains(&secret.len())
            && secret.chars().all(|c| c.is_ascii_graphic());
        if !shaped {
            return Err(Error::StripeConfig(
                "STRIPE_API_KEY does not look like a Stripe secret key (sk_live_..., sk_test_... \
                 or a restricted rk_... key); copy it again from Dashboard -> Developers -> API keys"
                    .into(),
            ));
        }
        Ok(ApiKey(secret.to_string()))
    }

    /// Live keys move real money; test keys go to the sandbox.
    pub fn is_live(&self) -> bool {
        self.0.starts_with("sk_live_") || self.0.starts_with("rk_live_")
    }

    pub(crate) fn secret(&self) -> &str {
        &self.0
    }

    /// `text` with the key blanked out in any letter case, and any other `sk_...`/`rk_...`
    /// token too: for messages that quote a server.
    pub fn redact(&self, text: &str) -> String {
        redact_tokens(&replace_ignoring_case(text, &self.0, "[redacted]"))
    }

    fn mode(&self) -> &'static str {
        if self.is_live() { "live" } else { "test" }
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({} mode, redacted)", self.mode())
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} mode key (redacted)", self.mode())
    }
}

/// Every occurrence of the ASCII `needle` in `text`, in any letter case, replaced.
fn replace_ignoring_case(text: &str, needle: &str, with: &str) -> String {
    if needle.is_empty() {
        return text.to_string();
    }
    // ASCII lowercasing keeps every byte offset, and an ASCII match starts and ends on char
    // boundaries, so offsets in `lower` slice `text` safely.
    let (lower, needle) = (text.to_ascii_lowercase(), needle.to_ascii_lowercase());
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    while let Some(at) = lower[from..].find(&needle) {
        out.push_str(&text[from..from + at]);
        out.push_str(with);
        from += at + needle.len();
    }
    out.push_str(&text[from..]);
    out
}

/// Anything shaped like a Stripe secret or restricted key (`sk_`/`rk_` at the start of a word,
/// then at least four key characters) becomes `[redacted]`: a server may echo another key.
pub(crate) fn redact_tokens(text: &str) -> String {
    let bytes = text.as_bytes();
    let key_char = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'*';
    let mut out = String::with_capacity(text.len());
    let (mut copied, mut i) = (0, 0);
    while i + 3 <= bytes.len() {
        let prefix = bytes[i..i + 3].to_ascii_lowercase();
        let word_start = i == 0 || !key_char(bytes[i - 1]);
        if word_start && (prefix == b"sk_" || prefix == b"rk_") {
            let end = i + 3 + bytes[i + 3..].iter().take_while(|b| key_char(**b)).count();
            if end - i >= 7 {
                out.push_str(&text[copied..i]);
                out.push_str("[redacted]");
                copied = end;
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out.push_str(&text[copied..]);
    out
}

/// Where the sync sends: the API base parsed once with the HTTP stack's own URI type, so the
/// host checked here is the very host the client connects to.
#[derive(Debug, Clone)]
pub struct ApiBase {
    /// The base as given, without a trailing slash: what the endpoint is built from.
    text: String,
    /// Lowercase, without IPv6 brackets: "api.stripe.com", "::1".
    host: String,
    plain_http: bool,
}

impl ApiBase {
    /// Parse and check a base. Refused: anything but http(s), userinfo (`user@host`: a guard
    /// reading the text before the `@` would check one host while the client dials another),
    /// and plain http to anything but this machine (the key would cross the network in clear).
    pub fn parse(base: &str) -> Result<ApiBase> {
        let text = base.trim().trim_end_matches('/').to_string();
        let shown = crate::sanitize::sanitize(&text).into_owned();
        let HttpTarget { host, plain_http } = parse_http_target(&text).map_err(|problem| {
            Error::StripeConfig(match problem {
                UrlProblem::NotHttp => format!(
                    "Stripe API base \"{shown}\" is not an http(s) URL like https://api.stripe.com"
                ),
                UrlProblem::UserInfo => format!(
                    "Stripe API base \"{shown}\" contains a user name or password (`...@host`); \
                         give only the scheme and host, like https://api.stripe.com (the key \
                         travels in a header)"
                ),
                UrlProblem::PlainHttpElsewhere { host } => format!(
                    "Stripe API base \"{shown}\" uses plain http to {host}; the API key would \
                         cross the network unencrypted. Use https (plain http is allowed only for \
                         127.0.0.0/8, ::1 or localhost)"
                ),
            })
        })?;
        Ok(ApiBase {
            text,
            host,
            plain_http,
        })
    }

    /// The host the client connects to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Plain http (only ever to this machine): no proxy is used then.
    pub(crate) fn is_plain_http(&self) -> bool {
        self.plain_http
    }

    /// The base as given, without a trailing slash.
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }
}

/// The API base to send to: `STRIPE_API_BASE` if set, else plans.toml's `api_base`, checked
/// by `ApiBase::parse`.
pub fn api_base(config: &Config) -> Result<ApiBase> {
    let base = std::env::var("STRIPE_API_BASE")
        .ok()
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| config.stripe.api_base.clone());
    ApiBase::parse(&base)
}

use crate::net::{HttpTarget, UrlProblem, parse_http_target};

/// A new Stripe event identifier (`ml-<UUIDv7>`), as the store makes them at record time.
pub use crate::store::record::new_identifier as identifier;

/// The requests per second to allow: plans.toml's `rate_limit`, or Stripe's limit for the
/// key's mode (1,000/s live, 25/s test). 0 lifts the limit.
pub(crate) fn rate_limit(config: &Config, key: &ApiKey) -> u32 {
    config
        .stripe
        .rate_limit
        .unwrap_or(if key.is_live() { 1000 } else { 25 })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host of an API base ("https://api.stripe.com:443/x" -> "api.stripe.com"), `None`
    /// if the base is refused.
    fn api_host(base: &str) -> Option<String> {
        ApiBase::parse(base).ok().map(|b| b.host)
    }

    #[test]
    fn the_key_never_shows() {
        let key = ApiKey::new("sk_test_51abcdefSECRET").unwrap();
        assert!(!format!("{key:?} {key}").contains("SECRET"));
        assert_eq!(
            key.redact("bad key sk_test_51abcdefSECRET!"),
            "bad key [redacted]!"
        );
        assert!(!key.is_live());
        assert!(ApiKey::new("sk_live_51abcdef").unwrap().is_live());
    }

    #[test]
    fn redaction_ignores_case_and_catches_other_keys() {
        let key = ApiKey::new("sk_test_51abcdefSECRET").unwrap();
        assert_eq!(
            key.redact("echo SK_TEST_51ABCDEFsecret and sk_test_51AbCdEfSeCrEt."),
            "echo [redacted] and [redacted]."
        );
        assert_eq!(
            key.redact("other keys: rk_live_9zz9zz9zz, sk_test_****, Sk_Live_abcd; desk_top sk_x"),
            "other keys: [redacted], [redacted], [redacted]; desk_top sk_x"
        );
        assert_eq!(key.redact("ümlaut sk_test_1234 ü"), "ümlaut [redacted] ü");
    }

    #[test]
    fn malformed_keys_are_refused_without_echo() {
        for bad in ["pk_test_123456", "sk_te st_123", "sk_x", "hello"] {
            let err = ApiKey::new(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(!err.to_string().contains(bad));
        }
    }

    #[test]
    fn hosts_and_loopback() {
        assert_eq!(
            api_host("https://api.stripe.com").as_deref(),
            Some("api.stripe.com")
        );
        assert_eq!(
            api_host("http://127.0.0.1:8080/x").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(api_host("http://[::1]:9/").as_deref(), Some("::1"));
        assert_eq!(api_host("http://LOCALHOST:9").as_deref(), Some("localhost"));
        assert_eq!(api_host("http://127.8.9.10").as_deref(), Some("127.8.9.10"));
        assert_eq!(api_host("ftp://x"), None);
        assert!(
            crate::net::is_loopback("127.0.0.1")
                && crate::net::is_loopback("::1")
                && crate::net::is_loopback("localhost")
        );
        assert!(!crate::net::is_loopback("10.0.0.1") && !crate::net::is_loopback("stripe.example"));
    }

    #[test]
    fn userinfo_never_passes_the_plain_http_guard() {
        for base in [
            "http://localhost:1@example.com",
            "http://[::1]@example.com",
            "http://127.0.0.1:9@example.com",
            "http://127.0.0.1@example.com:80/v1",
            "https://user:pass@api.stripe.com",
        ] {
            let err = ApiBase::parse(base).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{base}");
            assert!(
                err.to_string().contains("user name or password"),
                "{base}: {err}"
            );
        }
        for base in [
            "http://localhost.example.com",
            "http://127.0.0.1.example.com",
            "http://10.0.0.1:8080",
        ] {
            assert!(
                ApiBase::parse(base)
                    .unwrap_err()
                    .to_string()
                    .contains("plain http")
            );
        }
        let https = ApiBase::parse("https://api.stripe.com/").unwrap();
        assert_eq!(
            (https.host(), https.is_plain_http()),
            ("api.stripe.com", false)
        );
        assert_eq!(https.as_str(), "https://api.stripe.com");
        assert!(ApiBase::parse("http://[::1]:8080").unwrap().is_plain_http());
    }

    #[test]
    fn identifiers_are_short_and_never_repeat() {
        let id = identifier();
        assert_eq!(id.len(), 39, "{id}");
        assert!(id.starts_with("ml-"));
        assert_ne!(id, identifier());
    }
}
