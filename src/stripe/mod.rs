//! Reporting usage to Stripe Billing Meters: the API key, where to send, how each event is
//! named for Stripe, the HTTP client and the sync engine.

pub mod client;
mod pipeline;
pub mod ratelimit;
pub mod sync;

use std::fmt;

use crate::config::Config;
use crate::{Error, Result};

pub use client::{Answer, Client, Delivery, MeterEvent, RetryPolicy};
pub use ratelimit::RateLimiter;
pub use sync::{SyncOptions, SyncPreview, SyncProgress, SyncReport, preview, run};

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

    /// `text` with every occurrence of the key blanked out: for messages that quote a server.
    pub fn redact(&self, text: &str) -> String {
        text.replace(&self.0, "[redacted]")
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

/// The API base to send to: `STRIPE_API_BASE` if set, else plans.toml's `api_base`.
/// Plain http is refused unless the host is this machine (a local Stripe-compatible server).
pub fn api_base(config: &Config) -> Result<String> {
    let base = std::env::var("STRIPE_API_BASE")
        .ok()
        .filter(|b| !b.trim().is_empty())
        .map(|b| b.trim().trim_end_matches('/').to_string())
        .unwrap_or_else(|| config.stripe.api_base.clone());
    let host = api_host(&base).ok_or_else(|| {
        Error::StripeConfig(format!(
            "Stripe API base \"{base}\" is not an http(s) URL like https://api.stripe.com"
        ))
    })?;
    if base.starts_with("http://") && !is_loopback(&host) {
        return Err(Error::StripeConfig(format!(
            "Stripe API base \"{base}\" uses plain http; the API key would cross the network \
             unencrypted. Use https (plain http is allowed only for 127.0.0.1, ::1 or localhost)"
        )));
    }
    Ok(base)
}

/// "https://api.stripe.com:443/x" -> "api.stripe.com"; "http://[::1]:8080" -> "::1".
pub fn api_host(base: &str) -> Option<String> {
    let rest = base
        .strip_prefix("https://")
        .or_else(|| base.strip_prefix("http://"))?;
    let authority = rest.split('/').next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.split(':').next()?,
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A new meter event identifier, stored with the event when it is recorded and sent on every
/// attempt, so a resend is recognised by Stripe. Random (UUIDv7), so a restored backup that
/// reuses event ids never sends new usage under an identifier Stripe already has. 39 chars.
/// Events recorded before migration 4 keep `ml-<database id>-<event id>`.
pub fn identifier() -> String {
    format!("ml-{}", uuid::Uuid::now_v7())
}

/// The requests per second to allow: plans.toml's `rate_limit`, or Stripe's limit for the
/// key's mode (1,000/s live, 25/s test). 0 lifts the limit.
pub fn rate_limit(config: &Config, key: &ApiKey) -> u32 {
    config
        .stripe
        .rate_limit
        .unwrap_or(if key.is_live() { 1000 } else { 25 })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(api_host("ftp://x"), None);
        assert!(is_loopback("127.0.0.1") && is_loopback("::1") && is_loopback("localhost"));
        assert!(!is_loopback("10.0.0.1") && !is_loopback("stripe.example"));
    }

    #[test]
    fn identifiers_are_short_and_never_repeat() {
        let id = identifier();
        assert_eq!(id.len(), 39, "{id}");
        assert!(id.starts_with("ml-"));
        assert_ne!(id, identifier());
    }
}
