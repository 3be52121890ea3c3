//! A `postgres://` URL: parsed once, with its `sslmode`, and shown only without the password.

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
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
        let shown = crate::redact_db(url);
        // The driver knows the scheme in lower case only.
        let scheme = crate::postgres_scheme(url).unwrap_or(0);
        let url = format!("{}{}", url[..scheme].to_ascii_lowercase(), &url[scheme..]);
        let (base, query) = url.split_once('?').unwrap_or((&url, ""));
        let mut tls = Tls::Prefer;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                // The driver decodes option names: `ssl%6dode=require` would pass our reading
                // of sslmode by, and `pass%77ord` the masking of passwords.
                Some((name, _)) if name.contains('%') => {
                    return Err(Error::InvalidInput(format!(
                        "{shown} has an option name with a '%' in it; write option names \
                         without percent-encoding (password=…, sslmode=…)"
                    )));
                }
                Some(("sslmode", mode)) => tls = ssl_mode(mode)?,
                _ => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
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
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
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

    /// A new connection to the server, given up after `connect_timeout` as libpq does.
    ///
    /// The driver bounds only the TCP connect: a server that accepts and never answers (a
    /// wedged one, or not PostgreSQL at all) would hold the caller for good. So the attempt
    /// runs on a thread of its own, left behind when it is late; such a thread ends when the
    /// server closes the socket. While [`MAX_LATE_ATTEMPTS`] of them still wait, no new
    /// attempt is made: the server is unavailable at once.
    pub(crate) fn connect(&self) -> Result<postgres::Client> {
        let limit = *self
            .config
            .get_connect_timeout()
            .unwrap_or(&DEFAULT_CONNECT_TIMEOUT);
        let unanswered = Error::Unavailable(format!(
            "{} took the connection but did not answer within {} s (connect_timeout)",
            self.shown,
            limit.as_secs()
        ));
        if LATE_ATTEMPTS.load(Ordering::SeqCst) >= MAX_LATE_ATTEMPTS {
            return Err(unanswered);
        }
        let tls = match self.tls {
            Tls::Off => None,
            Tls::Prefer => Some(super::tls::encrypted_only()?),
            Tls::Require => Some(super::tls::verified()?),
        };
        let attempt = Arc::new((Mutex::new(Attempt::Waiting), Condvar::new()));
        let theirs = attempt.clone();
        let config = self.config.clone();
        std::thread::Builder::new()
            .name("pg-connect".into())
            .spawn(move || {
                let connected = match tls {
                    None => config.connect(postgres::NoTls),
                    Some(tls) => config.connect(tls),
                };
                let (state, done) = &*theirs;
                let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
                if matches!(*state, Attempt::Abandoned) {
                    LATE_ATTEMPTS.fetch_sub(1, Ordering::SeqCst);
                } else {
                    *state = Attempt::Done(Box::new(connected));
                    done.notify_one();
                }
            })
            .map_err(|e| Error::Unavailable(format!("cannot start a connection: {e}")))?;
        let (state, done) = &*attempt;
        let state = state.lock().unwrap_or_else(|e| e.into_inner());
        let (mut state, _) = done
            .wait_timeout_while(state, limit, |s| matches!(s, Attempt::Waiting))
            .unwrap_or_else(|e| e.into_inner());
        match std::mem::replace(&mut *state, Attempt::Abandoned) {
            Attempt::Done(connected) => {
                (*connected).map_err(|e| super::error::connect_error(e, self))
            }
            Attempt::Waiting | Attempt::Abandoned => {
                LATE_ATTEMPTS.fetch_add(1, Ordering::SeqCst);
                Err(unanswered)
            }
        }
    }
}

/// The connection's time limit when the URL sets none (`connect_timeout`), for the TCP
/// connect and for the whole.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connection attempts left waiting on silent servers, at most, per process.
const MAX_LATE_ATTEMPTS: usize = 8;
static LATE_ATTEMPTS: AtomicUsize = AtomicUsize::new(0);

/// A connection attempt, as its thread and its caller share it.
enum Attempt {
    Waiting,
    Done(Box<std::result::Result<postgres::Client, postgres::Error>>),
    /// The caller stopped waiting: the thread drops what it gets.
    Abandoned,
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
            // Any option not known to be harmless, however the password is spelled.
            (
                "postgres://app@db/billing?pass%77ord=s3cret&sslmode=disable",
                "postgres://app@db/billing?pass%77ord=***&sslmode=disable",
            ),
            (
                "postgres://app@db/billing?PASSWORD=s3cret&connect_timeout=3",
                "postgres://app@db/billing?PASSWORD=***&connect_timeout=3",
            ),
            // Schemes in any case, and mistyped ones that will be taken for a file path.
            (
                "POSTGRES://app:s3cret@db/billing",
                "POSTGRES://app:***@db/billing",
            ),
            (
                "postgre://app:s3cret@db/billing",
                "postgre://app:***@db/billing",
            ),
            ("file:///srv/m.db?mode=ro", "file:///srv/m.db?mode=ro"),
            ("/srv/meterline.db", "/srv/meterline.db"),
        ] {
            assert_eq!(crate::redact_db(url), shown);
        }
    }

    #[test]
    fn the_scheme_is_read_in_any_case() {
        for url in [
            "POSTGRES://a:b@h/db",
            "PostgreSQL://a:b@h/db",
            "postgres://a:b@h/db",
        ] {
            assert!(crate::is_postgres_url(url), "{url}");
            let parsed = PgUrl::parse(url).unwrap();
            assert_eq!(parsed.config.get_dbname(), Some("db"));
        }
        for path in ["postgres:/a", "./postgres://x", "pg.db", ""] {
            assert!(!crate::is_postgres_url(path), "{path}");
        }
    }

    #[test]
    fn an_option_name_with_a_percent_is_refused() {
        for url in [
            "postgres://a@h/db?pass%77ord=secret",
            "postgres://a:secret@h/db?ssl%6dode=require",
        ] {
            let err = PgUrl::parse(url).err().unwrap().to_string();
            assert!(err.contains("without percent-encoding"), "{err}");
            assert!(!err.contains("secret"), "{err}");
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

    /// Attempts left waiting on a silent server are bounded, and counted off as it lets go.
    #[test]
    fn late_attempts_are_bounded_and_end_when_the_server_lets_go() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = Arc::new(Mutex::new(Vec::new()));
        let holder = held.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                holder.lock().unwrap().push(stream.unwrap());
            }
        });
        let accepted = || held.lock().unwrap().len();
        let url = PgUrl::parse(&format!(
            "postgres://u:p@127.0.0.1:{port}/db?sslmode=disable&connect_timeout=1"
        ))
        .unwrap();
        let attempts: Vec<_> = (0..MAX_LATE_ATTEMPTS)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || url.connect().err().unwrap())
            })
            .collect();
        for attempt in attempts {
            let err = attempt.join().unwrap();
            assert!(
                err.to_string().contains("did not answer within 1 s"),
                "{err}"
            );
        }
        assert_eq!(LATE_ATTEMPTS.load(Ordering::SeqCst), MAX_LATE_ATTEMPTS);
        assert_eq!(accepted(), MAX_LATE_ATTEMPTS);

        // One more is refused without a connection.
        assert!(matches!(url.connect(), Err(Error::Unavailable(_))));
        assert_eq!(accepted(), MAX_LATE_ATTEMPTS);

        // The server closes them: each thread ends and counts itself off; attempts resume.
        held.lock().unwrap().clear();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while LATE_ATTEMPTS.load(Ordering::SeqCst) > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "late attempts never ended"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(url.connect().is_err());
        assert_eq!(accepted(), 1);
    }
}
