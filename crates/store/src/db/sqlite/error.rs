//! SQLite's errors as meterline's: the same kinds PostgreSQL's map to (`postgres/error.rs`),
//! so every caller (the CLI's exit codes, the server's 503s) treats both engines alike.

use rusqlite::ErrorCode;

use crate::Error;

/// An error of rusqlite, as meterline's.
pub(crate) fn from_sqlite(e: rusqlite::Error) -> Error {
    if matches!(e, rusqlite::Error::QueryReturnedNoRows) {
        return Error::NoRows;
    }
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Error::Locked,
        Some(ErrorCode::NotADatabase) => Error::NotADatabase,
        Some(ErrorCode::DatabaseCorrupt) => Error::Corrupt(e.to_string()),
        Some(ErrorCode::ReadOnly) => Error::ReadOnly,
        Some(ErrorCode::CannotOpen) => Error::CannotOpen(e.to_string()),
        Some(ErrorCode::DiskFull) => Error::DiskFull,
        // An I/O error right after the system said "no space left" (errno is per thread
        // and read at once; at worst this misses and the I/O error is shown as it is).
        Some(ErrorCode::SystemIoFailure)
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::StorageFull =>
        {
            Error::DiskFull
        }
        _ => Error::Database(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_full_reads_disk_full() {
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        );
        let err = from_sqlite(full);
        assert!(matches!(err, Error::DiskFull), "{err}");
        assert!(err.is_database() && err.exit_code() == 1);
    }

    #[test]
    fn no_row_and_busy_read_as_their_kinds() {
        assert!(matches!(
            from_sqlite(rusqlite::Error::QueryReturnedNoRows),
            Error::NoRows
        ));
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert!(matches!(from_sqlite(busy), Error::Locked));
    }
}
