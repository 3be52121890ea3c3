//! PostgreSQL's errors as meterline's: the same kinds SQLite's map to, so every caller (the
//! CLI's exit codes, the server's 503s) treats both engines alike.

use postgres::error::SqlState;

use super::url::PgUrl;
use crate::Error;

/// An error of a statement on an open connection.
pub(crate) fn from_postgres(e: postgres::Error) -> Error {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let message = db.message().to_owned();
        return match code {
            c if *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::LOCK_NOT_AVAILABLE =>
            {
                Error::Locked
            }
            c if *c == SqlState::READ_ONLY_SQL_TRANSACTION => Error::ReadOnly,
            // Text SQLite stores and PostgreSQL cannot: a NUL, or a character outside the
            // database's encoding. Bad input, refused before anything is written.
            c if *c == SqlState::CHARACTER_NOT_IN_REPERTOIRE
                || *c == SqlState::UNTRANSLATABLE_CHARACTER =>
            {
                Error::InvalidInput(format!(
                    "a value holds a character this PostgreSQL database cannot store: {message}"
                ))
            }
            c if *c == SqlState::DISK_FULL => Error::DiskFull,
            c if *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
                || c.code().starts_with("08") =>
            {
                Error::Unavailable(message)
            }
            _ => Error::Database(format!("{message} ({})", code.code())),
        };
    }
    // No answer from the server at all: the connection broke or was never made.
    Error::Unavailable(plain(&e))
}

/// True when `e`, the error of a COMMIT, says nothing of the transaction's fate: no answer
/// (the connection broke), or the session's end (the server shutting down, or restarting
/// after a crash of another backend, as `kill -9` of one makes it) where the commit's answer
/// should have been. A COMMIT's own refusal (a serialization failure, a deferred constraint)
/// means it was rolled back.
pub(crate) fn commit_unanswered(e: &postgres::Error) -> bool {
    match e.as_db_error() {
        None => true,
        Some(db) => {
            let class = &db.code().code()[..2];
            class == "08" || class == "57" || matches!(db.severity(), "FATAL" | "PANIC")
        }
    }
}

/// An error while connecting: the server's refusal says why; no server at all is unavailable.
pub(crate) fn connect_error(e: postgres::Error, url: &PgUrl) -> Error {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            || *code == SqlState::INVALID_CATALOG_NAME
            || *code == SqlState::INSUFFICIENT_PRIVILEGE
        {
            return Error::CannotOpen(format!("{}: {}", url.shown(), db.message()));
        }
        if *code == SqlState::CANNOT_CONNECT_NOW || *code == SqlState::TOO_MANY_CONNECTIONS {
            return Error::Unavailable(format!("{}: {}", url.shown(), db.message()));
        }
        return from_postgres(e);
    }
    let text = plain(&e);
    if text.contains("certificate") {
        return Error::CannotOpen(format!(
            "{}: {text}; the server's certificate is not one this system's roots vouch for: \
             add its CA to the system's store (update-ca-certificates), or use sslmode=prefer \
             to encrypt without verifying it",
            url.shown()
        ));
    }
    if text.contains("TLS") || text.contains("tls") {
        return Error::CannotOpen(format!("{}: {text}", url.shown()));
    }
    Error::Unavailable(format!("cannot reach {}: {text}", url.shown()))
}

/// The error and its causes on one line (postgres' own Display stops at the first).
fn plain(e: &postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
