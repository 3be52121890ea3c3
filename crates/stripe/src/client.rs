//! The HTTP side of Stripe: one ureq agent (keep-alive, timeouts), one meter event per request,
//! every answer classified, and the retry policy for transient failures.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ureq::http::Uri;
use ureq::http::header::{self, HeaderName, HeaderValue};

use super::{ApiBase, ApiKey, RateLimiter};
use crate::config::StripeSettings;
use crate::{Error, Result};

const STRIPE_VERSION: HeaderName = HeaderName::from_static("stripe-version");
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// One meter event as Stripe receives it.
#[derive(Debug, Clone)]
pub struct MeterEvent<'a> {
    /// The meter's event name.
    pub event_name: &'a str,
    /// Who it is billed to (`cus_...`).
    pub stripe_customer_id: &'a str,
    /// The units.
    pub value: i64,
    /// Stripe's deduplication key (`ml-<UUIDv7>`).
    pub identifier: &'a str,
    /// Unix seconds.
    pub timestamp: i64,
    /// The meter's `group_by` values, sent as payload keys (`payload[model]=small`): the
    /// Stripe meter's dimensions.
    pub dimensions: &'a [(String, String)],
}

impl MeterEvent<'_> {
    fn form(&self) -> Vec<(String, String)> {
        let mut form = vec![
            ("event_name".to_string(), self.event_name.to_string()),
            (
                "payload[stripe_customer_id]".to_string(),
                self.stripe_customer_id.to_string(),
            ),
            ("payload[value]".to_string(), self.value.to_string()),
        ];
        form.extend(
            self.dimensions
                .iter()
                .map(|(key, value)| (format!("payload[{key}]"), value.clone())),
        );
        form.push(("identifier".to_string(), self.identifier.to_string()));
        form.push(("timestamp".to_string(), self.timestamp.to_string()));
        form
    }

    /// The Idempotency-Key for this event. Deterministic, and tied to the exact parameters
    /// (a key reused with other parameters is an error at Stripe). Stripe replays a saved
    /// 5xx for the same key, so each 5xx moves to the next `generation`; the identifier still
    /// makes any resend a recognised duplicate.
    pub fn idempotency_key(&self, generation: u32) -> String {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325; // FNV-1a: stable across builds and platforms
        for (name, value) in self.form() {
            for byte in name
                .bytes()
                .chain([b'='])
                .chain(value.bytes())
                .chain([b'&'])
            {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        format!("{}-{hash:016x}-{generation}", self.identifier)
    }
}

/// How Stripe (or the network) answered one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 2xx: accepted for processing. `replayed`: Stripe answered from its idempotency cache,
    /// so an earlier request had already delivered it.
    Accepted { replayed: bool },
    /// "An event already exists with identifier …": delivered before.
    Duplicate,
    /// 401/403: the key is wrong or lacks permission; nothing else will succeed.
    Unauthorized { message: String },
    /// Any other refusal: this event will not go through as it is.
    Refused { message: String },
    /// Worth retrying: 409, 429, 400 rate_limit, 5xx, timeouts, resets (or Stripe said so).
    /// `server_error`: Stripe answered 5xx, which it saves under the idempotency key.
    Transient { message: String, server_error: bool },
    /// The request never reached the server (DNS failure, connection refused, unreachable
    /// network): retried like a transient failure, but counted apart from what reached Stripe.
    NotConnected { message: String },
    /// The connection itself cannot be trusted (a TLS or certificate error): retrying will not
    /// help, so the run stops at once with the reason.
    Fatal { message: String },
    /// Not sent: the run was stopping before this attempt.
    NotSent,
}

impl Answer {
    /// The request got to the server (whatever it answered, or even if the answer was lost).
    fn reached(&self) -> bool {
        !matches!(
            self,
            Answer::NotConnected { .. } | Answer::Fatal { .. } | Answer::NotSent
        )
    }
}

/// The delivery of one meter event: its final answer and how many requests it took.
#[derive(Debug, Clone)]
pub(crate) struct EventDelivery {
    pub answer: Answer,
    pub attempts: u32,
    /// At least one attempt reached the server.
    pub reached: bool,
}

/// Turn an HTTP answer into an `Answer`. Pure, so every branch is unit-tested.
pub(crate) fn classify(
    status: u16,
    should_retry: Option<bool>,
    replayed: bool,
    body: &str,
) -> Answer {
    if (200..300).contains(&status) {
        return Answer::Accepted { replayed };
    }
    let error = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").cloned())
        .unwrap_or_default();
    let field = |name: &str| error.get(name).and_then(|v| v.as_str()).unwrap_or("");
    let (kind, code, text, param) = (
        field("type"),
        field("code"),
        field("message"),
        field("param"),
    );
    if status == 400 && text.contains("already exists with identifier") {
        return Answer::Duplicate;
    }
    let mut message = format!("HTTP {status}");
    for part in [kind, code] {
        if !part.is_empty() {
            message.push(' ');
            message.push_str(part);
        }
    }
    if !text.is_empty() {
        message.push_str(": ");
        message.push_str(text);
    } else if error.is_null() && !body.trim().is_empty() {
        message.push_str(": ");
        message.extend(body.trim().chars().take(200));
    }
    if !param.is_empty() {
        message.push_str(&format!(" (param {param})"));
    }
    if status == 401 || status == 403 {
        return Answer::Unauthorized { message };
    }
    let server_error = status >= 500;
    let transient = match should_retry {
        Some(verdict) => verdict,
        None => {
            status == 409
                || status == 429
                || server_error
                || (status == 400 && (code == "rate_limit" || kind == "rate_limit_error"))
        }
    };
    if transient {
        Answer::Transient {
            message,
            server_error,
        }
    } else {
        Answer::Refused { message }
    }
}

/// A transport failure. Could not connect (DNS, refused, unreachable): `NotConnected`. On a
/// TLS connection (`tls`) setting up, a TLS error (rustls reports handshake and certificate
/// errors as `InvalidData`): `Fatal`. Anything else (timeouts, resets, protocol garbage, a
/// body that is not text): `Transient`.
pub(crate) fn classify_transport(error: &ureq::Error, tls: bool) -> Answer {
    use std::io::ErrorKind;
    let not_connected = |why: String| Answer::NotConnected {
        message: format!("could not connect: {why}"),
    };
    let transient = |message: String| Answer::Transient {
        message,
        server_error: false,
    };
    match error {
        ureq::Error::HostNotFound => not_connected("host not found (DNS)".into()),
        ureq::Error::ConnectionFailed => not_connected("connection failed".into()),
        ureq::Error::Timeout(which @ (ureq::Timeout::Resolve | ureq::Timeout::Connect)) => {
            not_connected(format!("timed out ({which:?})"))
        }
        ureq::Error::Io(io)
            if matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::HostUnreachable
                    | ErrorKind::NetworkUnreachable
                    | ErrorKind::NetworkDown
                    | ErrorKind::AddrNotAvailable
            ) =>
        {
            not_connected(io.to_string())
        }
        ureq::Error::Io(io) if tls && io.kind() == ErrorKind::InvalidData => Answer::Fatal {
            message: format!("TLS error: {io}"),
        },
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => Answer::Fatal {
            message: format!("TLS error: {error}"),
        },
        ureq::Error::Timeout(which) => transient(format!("timed out ({which:?})")),
        ureq::Error::Io(io) => transient(format!("connection error: {io}")),
        other => transient(format!("network error: {other}")),
    }
}

/// Bounded attempts with exponential backoff and full jitter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl RetryPolicy {
    /// The first pause when the caller does not choose one.
    pub(crate) const DEFAULT_BACKOFF: Duration = Duration::from_millis(500);

    /// plans.toml's `max_attempts`; the backoff starts at `backoff` (500 ms unless the caller
    /// chooses, as tests do) and doubles up to 16 times that.
    pub(crate) fn from_settings(
        settings: &StripeSettings,
        backoff: Option<Duration>,
    ) -> RetryPolicy {
        let base = backoff.unwrap_or(Self::DEFAULT_BACKOFF);
        RetryPolicy {
            max_attempts: settings.max_attempts.max(1),
            base,
            cap: base.saturating_mul(16),
        }
    }

    /// The pause before retry number `retry` (1 = the first retry): a random time between
    /// half and all of `base * 2^(retry-1)`, capped, so workers that failed together spread out.
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16))
            .min(self.cap);
        exp / 2 + exp.mul_f64(fastrand::f64() / 2.0)
    }
}

/// The Stripe API over one keep-alive agent, shared by all workers.
pub struct Client {
    agent: ureq::Agent,
    /// Parsed once: these go out with every request.
    endpoint: Uri,
    /// https: TLS errors while connecting stop the run.
    tls: bool,
    authorization: HeaderValue,
    api_version: HeaderValue,
    key: ApiKey,
    /// The API base, for reads (`get_json`).
    base: String,
}

impl Client {
    /// One HTTP agent sending to `api_base` with the key, under plans.toml's Stripe settings
    /// (API version, timeout, workers).
    pub fn new(api_base: &ApiBase, key: &ApiKey, settings: &StripeSettings) -> Result<Client> {
        if settings.api_version.is_empty() {
            return Err(Error::StripeConfig(
                "[stripe] api_version must not be empty".into(),
            ));
        }
        let timeout = Duration::from_secs_f64(settings.timeout_secs);
        let connections = settings.workers.max(1) * 2;
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(timeout.min(Duration::from_secs(10))))
            .timeout_per_read(Some(timeout))
            .timeout_per_write(Some(timeout))
            // An overall deadline per request: a server trickling bytes (each read within the
            // per-read timeout) cannot hold a worker forever.
            .timeout_global(Some(timeout))
            .max_idle_connections(connections)
            .max_idle_connections_per_host(connections)
            .max_redirects(0)
            .user_agent(concat!("meterline/", env!("CARGO_PKG_VERSION")));
        if api_base.is_plain_http() {
            // Plain http goes only to this machine: a proxy (HTTP_PROXY, ALL_PROXY) would see
            // the key in clear. For https ureq only tunnels (CONNECT), so TLS stays end to end.
            config = config.proxy(None);
        }
        let config = config.build();
        let endpoint = format!("{}/v1/billing/meter_events", api_base.as_str());
        let endpoint: Uri = endpoint.parse().map_err(|_| {
            Error::StripeConfig(format!("the Stripe endpoint {endpoint} is not a valid URL"))
        })?;
        // The key was checked to be printable ASCII, so this cannot fail; marked sensitive so
        // the header never shows in debug output.
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", key.secret()))
            .map_err(|_| Error::StripeConfig("STRIPE_API_KEY has unusable characters".into()))?;
        authorization.set_sensitive(true);
        let api_version = HeaderValue::from_str(&settings.api_version).map_err(|_| {
            Error::StripeConfig(format!(
                "[stripe] api_version = \"{}\" is not a valid header value",
                settings.api_version
            ))
        })?;
        Ok(Client {
            agent: ureq::Agent::new_with_config(config),
            endpoint,
            tls: !api_base.is_plain_http(),
            authorization,
            api_version,
            key: key.clone(),
            base: api_base.as_str().to_string(),
        })
    }

    /// One request, one classified answer. Never returns the key in a message.
    pub fn send(&self, event: &MeterEvent, idempotency_key: &str) -> Answer {
        let result = self
            .agent
            .post(self.endpoint.clone())
            .header(header::AUTHORIZATION, self.authorization.clone())
            .header(STRIPE_VERSION, self.api_version.clone())
            .header(IDEMPOTENCY_KEY, idempotency_key)
            .send_form(
                event
                    .form()
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_str())),
            );
        let answer = match result {
            Ok(mut response) => {
                let header = |name: &str| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(|v| v.trim().eq_ignore_ascii_case("true"))
                };
                let should_retry = header("stripe-should-retry");
                let replayed = header("idempotent-replayed").unwrap_or(false);
                let status = response.status().as_u16();
                // Reading the whole body returns the connection to the pool.
                match response
                    .body_mut()
                    .with_config()
                    .limit(64 * 1024)
                    .read_to_string()
                {
                    Ok(body) => classify(status, should_retry, replayed, &body),
                    // The status line said accepted; the body is only a receipt.
                    Err(_) if (200..300).contains(&status) => Answer::Accepted { replayed },
                    // The answer's body: past the TLS handshake, never fatal.
                    Err(e) => classify_transport(&e, false),
                }
            }
            Err(e) => classify_transport(&e, self.tls),
        };
        self.redacted(answer)
    }

    /// Server text made inert before it is stored or printed: keys redacted, control and
    /// escape characters made visible.
    fn redacted(&self, answer: Answer) -> Answer {
        let clean = |text: String| crate::sanitize::sanitize(&self.key.redact(&text)).into_owned();
        match answer {
            Answer::Unauthorized { message } => Answer::Unauthorized {
                message: clean(message),
            },
            Answer::Refused { message } => Answer::Refused {
                message: clean(message),
            },
            Answer::Transient {
                message,
                server_error,
            } => Answer::Transient {
                message: clean(message),
                server_error,
            },
            Answer::NotConnected { message } => Answer::NotConnected {
                message: clean(message),
            },
            Answer::Fatal { message } => Answer::Fatal {
                message: clean(message),
            },
            other => other,
        }
    }

    /// Send one event until it is settled or the attempts run out, pausing between attempts
    /// and taking a rate-limiter slot before each. `stop` abandons the backoff pauses.
    pub(crate) fn deliver(
        &self,
        event: &MeterEvent,
        policy: &RetryPolicy,
        limiter: &RateLimiter,
        stop: &AtomicBool,
    ) -> EventDelivery {
        let mut generation = 0;
        let mut last = Answer::NotSent;
        let mut reached = false;
        for attempt in 1..=policy.max_attempts {
            if attempt > 1 && !pause(policy.backoff(attempt - 1), stop) {
                return EventDelivery {
                    answer: last,
                    attempts: attempt - 1,
                    reached,
                };
            }
            limiter.acquire();
            last = self.send(event, &event.idempotency_key(generation));
            reached |= last.reached();
            match &last {
                Answer::Transient { server_error, .. } => {
                    if *server_error {
                        generation += 1;
                    }
                }
                Answer::NotConnected { .. } => {}
                _ => {
                    return EventDelivery {
                        answer: last,
                        attempts: attempt,
                        reached,
                    };
                }
            }
        }
        EventDelivery {
            answer: last,
            attempts: policy.max_attempts,
            reached,
        }
    }
}

impl Client {
    /// One GET of Stripe's API (reconcile's reads), answered as JSON: retried like a meter
    /// event (same policy, a limiter slot before each attempt). `Err` is the last answer.
    pub(crate) fn get_json(
        &self,
        path_and_query: &str,
        policy: &RetryPolicy,
        limiter: &RateLimiter,
        stop: &AtomicBool,
    ) -> std::result::Result<serde_json::Value, Answer> {
        let uri: Uri = format!("{}{path_and_query}", self.base)
            .parse()
            .map_err(|_| Answer::Refused {
                message: format!("not a valid URL path: {path_and_query}"),
            })?;
        let mut last = Answer::NotSent;
        for attempt in 1..=policy.max_attempts {
            if attempt > 1 && !pause(policy.backoff(attempt - 1), stop) {
                break;
            }
            limiter.acquire();
            let result = self
                .agent
                .get(uri.clone())
                .header(header::AUTHORIZATION, self.authorization.clone())
                .header(STRIPE_VERSION, self.api_version.clone())
                .call();
            last = match result {
                Ok(mut response) => {
                    let should_retry = response
                        .headers()
                        .get("stripe-should-retry")
                        .and_then(|v| v.to_str().ok())
                        .map(|v| v.trim().eq_ignore_ascii_case("true"));
                    let status = response.status().as_u16();
                    match response
                        .body_mut()
                        .with_config()
                        .limit(4 * 1024 * 1024)
                        .read_to_string()
                    {
                        Ok(body) if (200..300).contains(&status) => {
                            match serde_json::from_str(&body) {
                                Ok(value) => return Ok(value),
                                Err(e) => Answer::Transient {
                                    message: format!("Stripe's answer is not JSON: {e}"),
                                    server_error: false,
                                },
                            }
                        }
                        Ok(body) => classify(status, should_retry, false, &body),
                        Err(e) => classify_transport(&e, false),
                    }
                }
                Err(e) => classify_transport(&e, self.tls),
            };
            last = self.redacted(last);
            if !matches!(last, Answer::Transient { .. } | Answer::NotConnected { .. }) {
                break;
            }
        }
        Err(last)
    }
}

/// `text` percent-encoded for a URL query value.
pub(crate) fn query_value(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Sleep for `total` unless `stop` is raised; true when the full pause elapsed.
fn pause(total: Duration, stop: &AtomicBool) -> bool {
    let deadline = std::time::Instant::now() + total;
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUPLICATE: &str = r#"{"error":{"type":"invalid_request_error","message":"An event already exists with identifier ml-1-2."}}"#;

    fn transient(answer: &Answer) -> bool {
        matches!(answer, Answer::Transient { .. })
    }

    #[test]
    fn success_and_replays_are_accepted() {
        assert_eq!(
            classify(200, None, false, "{}"),
            Answer::Accepted { replayed: false }
        );
        assert_eq!(
            classify(200, None, true, "{}"),
            Answer::Accepted { replayed: true }
        );
    }

    #[test]
    fn a_known_identifier_means_delivered() {
        assert_eq!(
            classify(400, Some(false), false, DUPLICATE),
            Answer::Duplicate
        );
        assert_eq!(classify(400, None, false, DUPLICATE), Answer::Duplicate);
    }

    #[test]
    fn auth_failures_stop_everything() {
        let body =
            r#"{"error":{"type":"invalid_request_error","message":"Invalid API Key provided"}}"#;
        assert!(matches!(
            classify(401, Some(false), false, body),
            Answer::Unauthorized { .. }
        ));
        assert!(matches!(
            classify(403, None, false, "{}"),
            Answer::Unauthorized { .. }
        ));
    }

    #[test]
    fn transient_classes() {
        for status in [409, 429, 500, 502, 503, 504] {
            assert!(transient(&classify(status, None, false, "{}")), "{status}");
        }
        let rate = r#"{"error":{"type":"invalid_request_error","code":"rate_limit","message":"slow down"}}"#;
        assert!(transient(&classify(400, None, false, rate)));
        assert!(matches!(
            classify(500, None, false, "{}"),
            Answer::Transient {
                server_error: true,
                ..
            }
        ));
    }

    #[test]
    fn the_should_retry_header_overrides_the_guess() {
        assert!(matches!(
            classify(500, Some(false), false, "{}"),
            Answer::Refused { .. }
        ));
        assert!(transient(&classify(400, Some(true), false, "{}")));
    }

    #[test]
    fn other_client_errors_are_refusals_with_stripes_message() {
        let body = r#"{"error":{"type":"invalid_request_error","message":"No such customer: 'cus_x'","param":"payload[stripe_customer_id]"}}"#;
        match classify(400, Some(false), false, body) {
            Answer::Refused { message } => {
                assert!(message.contains("No such customer: 'cus_x'"), "{message}");
                assert!(message.contains("payload[stripe_customer_id]"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(404, None, false, "not json"),
            Answer::Refused { .. }
        ));
    }

    #[test]
    fn transport_errors_split_into_not_connected_tls_and_transient() {
        use std::io::{Error as IoError, ErrorKind};
        let not_connected = |e: ureq::Error| matches!(classify_transport(&e, true), Answer::NotConnected { message } if message.starts_with("could not connect"));
        assert!(not_connected(ureq::Error::HostNotFound));
        assert!(not_connected(ureq::Error::Io(IoError::from(
            ErrorKind::ConnectionRefused
        ))));
        assert!(not_connected(ureq::Error::Timeout(ureq::Timeout::Connect)));
        // rustls reports handshake and certificate failures as InvalidData.
        let bad_cert = IoError::new(
            ErrorKind::InvalidData,
            "invalid peer certificate: UnknownIssuer",
        );
        assert!(matches!(
            classify_transport(&ureq::Error::Io(bad_cert), true),
            Answer::Fatal { message } if message.contains("certificate")
        ));
        assert!(matches!(
            classify_transport(&ureq::Error::Tls("bad"), true),
            Answer::Fatal { .. }
        ));
        for e in [
            ureq::Error::Timeout(ureq::Timeout::Global),
            ureq::Error::Io(IoError::from(ErrorKind::ConnectionReset)),
        ] {
            assert!(transient(&classify_transport(&e, true)));
        }
        // InvalidData without TLS (a body that is not UTF-8) is nothing to stop for.
        let not_text = IoError::new(ErrorKind::InvalidData, "stream did not contain valid UTF-8");
        assert!(transient(&classify_transport(
            &ureq::Error::Io(not_text),
            false
        )));
    }

    #[test]
    fn backoff_grows_with_jitter_and_a_cap() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(100),
            cap: Duration::from_millis(800),
        };
        for _ in 0..100 {
            let first = policy.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = policy.backoff(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            assert!(policy.backoff(30) <= Duration::from_millis(800));
        }
    }

    #[test]
    fn idempotency_keys_follow_the_parameters_and_generation() {
        let event = MeterEvent {
            event_name: "meterline_usage",
            stripe_customer_id: "cus_1",
            value: 3,
            identifier: "ml-ab-1",
            timestamp: 1_700_000_000,
            dimensions: &[],
        };
        let key = event.idempotency_key(0);
        assert!(key.starts_with("ml-ab-1-") && key.len() <= 255);
        assert_eq!(key, event.idempotency_key(0));
        assert_ne!(key, event.idempotency_key(1));
        let other = MeterEvent {
            value: 4,
            ..event.clone()
        };
        assert_ne!(key, other.idempotency_key(0));
        let grouped = [("model".to_string(), "small".to_string())];
        let dimensioned = MeterEvent {
            dimensions: &grouped,
            ..event.clone()
        };
        assert_ne!(key, dimensioned.idempotency_key(0));
        assert!(
            dimensioned
                .form()
                .contains(&("payload[model]".to_string(), "small".to_string()))
        );
    }
}
