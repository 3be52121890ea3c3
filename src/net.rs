//! Where plain http is allowed: only to this machine (Stripe's API base, alert webhooks).

/// This machine: 127.0.0.0/8, ::1 and the name localhost.
pub fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
