//! Where plain http is allowed: only to this machine (Stripe's API base, alert webhooks).

/// This machine: 127.0.0.0/8, ::1 and the name localhost.
pub fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// An http(s) URL that may be dialled: its host, and whether it is plain http.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    pub host: String,
    pub plain_http: bool,
}

/// Why a URL may not be dialled. Callers word the message (the Stripe base, a webhook).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlProblem {
    /// Not an http or https URL with a host.
    NotHttp,
    /// `user:password@host`: a check of the text before `@` would look at one host while the
    /// client dials another, and the part before it may be a password.
    UserInfo,
    /// Plain http to another machine: whatever it carries crosses the network in clear.
    PlainHttpElsewhere { host: String },
}

/// Parse `text` with the HTTP stack's own URI type and check the very host that will be
/// dialled: https anywhere, plain http only to this machine, never a `user@` part.
pub fn parse_http_target(text: &str) -> Result<HttpTarget, UrlProblem> {
    let uri: http::Uri = text.parse().map_err(|_| UrlProblem::NotHttp)?;
    let plain_http = match uri.scheme_str() {
        Some("https") => false,
        Some("http") => true,
        _ => return Err(UrlProblem::NotHttp),
    };
    let authority = uri.authority().ok_or(UrlProblem::NotHttp)?;
    if authority.as_str().contains('@') {
        return Err(UrlProblem::UserInfo);
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if host.is_empty() {
        return Err(UrlProblem::NotHttp);
    }
    if plain_http && !is_loopback(&host) {
        return Err(UrlProblem::PlainHttpElsewhere { host });
    }
    Ok(HttpTarget { host, plain_http })
}
