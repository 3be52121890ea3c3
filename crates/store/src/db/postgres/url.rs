//! A `postgres://` URL: parsed once, with its `sslmode`, and shown only without the password.

use std::str::FromStr;
use std::time::Duration;

use crate::{Error, Result};

/// A parsed PostgreSQL URL.
#[derive(Clone)]
pub(crate) struct PgUrl {
    pub(crate) config: postgres::Config,
    pub(crate) tls: Tls,
    shown: String,
}

/// How the connection is encrypted, after libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tls {
    /// `disable`: never.
    Off,
    /// `allow` and `prefer` (the default): TLS when the server offers it, its certificate
    /// not verified (as libpq).
    Prefer,
    /// `require`, `verify-ca`, `verify-full`: TLS verified against the system's roots, or no
    /// connection.
    Require,
}

impl PgUrl {
    pub(crate) fn parse(url: &str) -> Result<PgUrl> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut tls = Tls::Prefer;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sslmode", mode)) => tls = ssl_mode(mode)?,
                _ => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let shown = crate::redact_db(url);
        let mut config = postgres::Config::from_str(&rest).map_err(|e| {
            Error::InvalidInput(format!("{shown} is not a valid PostgreSQL URL: {e}"))
        })?;
        if config.get_hosts().is_empty() {
            return Err(Error::InvalidInput(format!(
                "{shown} names no host; write postgres://USER:PASSWORD@HOST:PORT/DATABASE"
            )));
        }
        // The driver ends the password at the first '@', so an unencoded one leaves the rest
        // of the password in the host name.
        let host_with_at = config
            .get_hosts()
            .iter()
            .any(|h| matches!(h, postgres::config::Host::Tcp(name) if name.contains('@')));
        if host_with_at {
            return Err(Error::InvalidInput(format!(
                "{shown} has more than one '@' before its host; write an '@' in the password as %40"
            )));
        }
        if config.get_dbname().is_none() {
            return Err(Error::InvalidInput(format!(
                "{shown} names no database; write postgres://USER:PASSWORD@HOST:PORT/DATABASE"
            )));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.application_name("meterline");
        config.ssl_mode(match tls {
            Tls::Off => postgres::config::SslMode::Disable,
            Tls::Prefer => postgres::config::SslMode::Prefer,
            Tls::Require => postgres::config::SslMode::Require,
        });
        Ok(PgUrl { config, tls, shown })
    }

    /// The URL without its password: what every message, log line and header shows.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    /// A new connection to the server.
    pub(crate) fn connect(&self) -> Result<postgres::Client> {
        let connected = match self.tls {
            Tls::Off => self.config.connect(postgres::NoTls),
            Tls::Prefer => self.config.connect(super::tls::encrypted_only()?),
            Tls::Require => self.config.connect(super::tls::verified()?),
        };
        connected.map_err(|e| super::error::connect_error(e, self))
    }
}

fn ssl_mode(mode: &str) -> Result<Tls> {
    Ok(match mode {
        "disable" => Tls::Off,
        "allow" | "prefer" => Tls::Prefer,
        "require" | "verify-ca" | "verify-full" => Tls::Require,
        other => {
            return Err(Error::InvalidInput(format!(
                "unknown sslmode \"{}\"; use one of disable, allow, prefer, require, verify-ca, verify-full",
                crate::sanitize::sanitize(other)
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_shows() {
        for (url, shown) in [
            (
                "postgres://app:s3cret@db.example:5432/billing",
                "postgres://app:***@db.example:5432/billing",
            ),
            (
                "postgresql://app:p@ss@db/billing?sslmode=require",
                "postgresql://app:***@db/billing?sslmode=require",
            ),
            (
                "postgres://db/billing?user=app&password=s3cret",
                "postgres://db/billing?user=app&password=***",
            ),
            ("postgres://app@db/billing", "postgres://app@db/billing"),
            // Passwords typed without percent-encoding: the driver reads them to the first '@'.
            (
                "postgres://app:pa/ss@db/billing",
                "postgres://app:***@db/billing",
            ),
            (
                "postgres://app:pa?ss&password=x@db:5432/billing",
                "postgres://app:***@db:5432/billing",
            ),
            (
                "postgres://app:a#b@db/billing?password=s3cret&sslmode=disable",
                "postgres://app:***@db/billing?password=***&sslmode=disable",
            ),
            (
                "postgres://db/billing?password=s3cret&user=me@corp",
                "postgres://db/billing?password=***&user=me@corp",
            ),
            ("postgres://db/billing", "postgres://db/billing"),
        ] {
            assert_eq!(crate::redact_db(url), shown);
        }
    }

    #[test]
    fn sslmode_is_checked_and_taken_out_of_the_url() {
        let url = PgUrl::parse("postgres://a:b@h/db?sslmode=verify-full").unwrap();
        assert_eq!(url.tls, Tls::Require);
        assert_eq!(
            PgUrl::parse("postgres://a:b@h/db").unwrap().tls,
            Tls::Prefer
        );
        let err = PgUrl::parse("postgres://a:secret@h/db?sslmode=strict")
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("unknown sslmode \"strict\""),
            "{err}"
        );
        assert!(!err.to_string().contains("secret"));
    }

    #[test]
    fn a_malformed_url_is_refused_without_its_password() {
        for url in [
            "postgres://a:secret@h:notaport/db",
            "postgres://a:secret@h/db?colour=blue",
            "postgres://a:secret@h",
            "postgres://a:sec@ret@h/db",
        ] {
            let err = PgUrl::parse(url).err().unwrap();
            assert!(matches!(err, Error::InvalidInput(_)), "{url}: {err}");
            assert!(!err.to_string().contains("secret"), "{err}");
        }
    }
}
