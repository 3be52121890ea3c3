//! Usage alerts: each crossing of warning, critical or the hard cap is written once by the
//! record transaction that causes it (store::alerts), then delivered at least once, with a
//! stable id, to the `[[alerts]]` destinations: webhooks (signed) or commands.

// Detection helpers and signing: the record path and plans.toml use them. Delivery over
// HTTP and to commands, with its payload, is the meterline-alerts crate.
pub mod sign;

use std::time::Duration;

use http::Uri;

use crate::billing::WarningLevel;

pub use sign::{SECRET_ENV, Secret};

/// Attempts per delivery before it is marked failed (about 10 hours with the default backoff).
pub(crate) const DEFAULT_MAX_ATTEMPTS: u32 = 12;
/// The pause after the first failed attempt; doubled after each further one.
pub const BACKOFF_BASE: Duration = Duration::from_secs(30);
/// The longest pause between two attempts.
pub(crate) const BACKOFF_CAP: Duration = Duration::from_secs(3600);

/// The levels a move from `before` to `after` crosses, lowest first (none when it is not up).
pub fn levels_crossed(before: WarningLevel, after: WarningLevel) -> Vec<WarningLevel> {
    WarningLevel::ALL
        .into_iter()
        .filter(|level| *level > before && *level <= after && *level != WarningLevel::Ok)
        .collect()
}

/// A new alert id: random and time-ordered, the receivers' dedupe key.
pub fn new_id() -> String {
    format!("alrt_{}", uuid::Uuid::now_v7().simple())
}

/// The pause before attempt `attempts + 1`, after `attempts` failed ones.
pub fn backoff(base: Duration, attempts: u32) -> Duration {
    base.saturating_mul(1u32 << attempts.saturating_sub(1).min(16))
        .min(BACKOFF_CAP)
}

/// A webhook URL as the Stripe API base is checked: https, or plain http only to this machine
/// (the signed alert would cross the network in clear), no `user@` part.
pub(crate) fn check_webhook_url(text: &str) -> Result<String, String> {
    let url = text.trim().to_string();
    let shown = crate::sanitize::sanitize(&url).into_owned();
    let not_a_url = || {
        format!(
            "webhook = \"{shown}\" is not an http(s) URL like https://ops.example.com/meterline"
        )
    };
    use crate::net::{UrlProblem, parse_http_target};
    match parse_http_target(&url) {
        Ok(_) => Ok(url),
        Err(UrlProblem::NotHttp) => Err(not_a_url()),
        // Not echoed: the text before the `@` is a password.
        Err(UrlProblem::UserInfo) => Err(
            "webhook URL contains a user name or password (`...@host`); alerts are \
             signed instead (METERLINE_WEBHOOK_SECRET)"
                .to_string(),
        ),
        Err(UrlProblem::PlainHttpElsewhere { host }) => Err(format!(
            "webhook = \"{shown}\" uses plain http to {host}; alerts would cross the network \
             unencrypted. Use https (plain http is allowed only for 127.0.0.0/8, ::1 or localhost)"
        )),
    }
}

/// A delivery target as shown to people: a webhook by scheme and host only (chat webhook
/// URLs carry their own tokens in the path), a command by its program.
pub fn display_target(key: &str) -> String {
    if let Some(url) = key.strip_prefix("webhook ") {
        return match url.parse::<Uri>() {
            Ok(uri) => format!(
                "webhook {}://{}/…",
                uri.scheme_str().unwrap_or("https"),
                uri.authority().map_or("", |a| a.as_str())
            ),
            Err(_) => "webhook".into(),
        };
    }
    if let Some(argv) = key.strip_prefix("command ") {
        let argv: Vec<String> = serde_json::from_str(argv).unwrap_or_default();
        return format!(
            "command {}",
            crate::sanitize::sanitize(argv.first().map_or("", String::as_str))
        );
    }
    crate::sanitize::sanitize(key).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use WarningLevel::*;

    #[test]
    fn only_upward_moves_cross_levels() {
        assert_eq!(
            levels_crossed(Ok, HardCap),
            vec![Warning, Critical, HardCap]
        );
        assert_eq!(levels_crossed(Warning, Critical), vec![Critical]);
        assert!(levels_crossed(Critical, Critical).is_empty());
        assert!(levels_crossed(HardCap, Ok).is_empty());
    }

    #[test]
    fn webhook_urls_follow_the_api_base_rule() {
        assert!(check_webhook_url("https://ops.example.com/x").is_ok());
        assert!(check_webhook_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(check_webhook_url("http://[::1]:9000/").is_ok());
        assert!(
            check_webhook_url("http://ops.example.com/x")
                .unwrap_err()
                .contains("plain http")
        );
        assert!(
            check_webhook_url("https://u:p@ops.example.com/")
                .unwrap_err()
                .contains("user name")
        );
        assert!(check_webhook_url("ftp://x").is_err());
        assert!(check_webhook_url("not a url").is_err());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let base = Duration::from_secs(30);
        assert_eq!(backoff(base, 1), Duration::from_secs(30));
        assert_eq!(backoff(base, 3), Duration::from_secs(120));
        assert_eq!(backoff(base, 30), BACKOFF_CAP);
    }

    #[test]
    fn targets_are_shown_without_url_paths() {
        assert_eq!(
            display_target("webhook https://hooks.example.com/T0/B0/secretpath"),
            "webhook https://hooks.example.com/…"
        );
        assert_eq!(
            display_target("command [\"/bin/notify\",\"-x\"]"),
            "command /bin/notify"
        );
    }
}
