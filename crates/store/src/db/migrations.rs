//! The migrations of both engines, read from `migrations/sqlite/` and `migrations/postgres/`
//! at build time (`build.rs`), and the one schema version they bring a database to.
//!
//! A file is `NNNN_name.sql`: its number is the schema version a database is at once it ran.
//! Up to 12 each engine numbered its own steps (SQLite 1-12, PostgreSQL 1-6, for one
//! schema); from 13 on both folders hold the same numbers, so a release shows one version on
//! both engines. A released file is never edited: `migrations/SHA256SUMS` pins each one (a
//! test compares), and a PostgreSQL database refuses a file whose checksum changed after it
//! ran.
//! The table and column names are a documented contract: self-hosters query them directly.

/// One numbered migration: `migrations/<engine>/NNNN_<name>.sql`, run once, in order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    /// The schema version a database is at once this migration has run.
    pub version: i64,
    /// The file name's part after the number.
    #[cfg_attr(
        not(any(test, feature = "postgres")),
        allow(dead_code, reason = "for the PostgreSQL runner's bookkeeping")
    )]
    pub name: &'static str,
    /// The file's text, run as one batch (a migration's comment heads its file).
    pub sql: &'static str,
}

// `SQLITE` and `POSTGRES`, each by number.
include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// The schema version this build creates and understands, on both engines.
pub const SCHEMA_VERSION: i64 = last(SQLITE);

const _: () = assert!(
    last(POSTGRES) == SCHEMA_VERSION,
    "each migration number from 13 on is a file in both migrations/sqlite/ and migrations/postgres/"
);

const fn last(migrations: &[Migration]) -> i64 {
    migrations[migrations.len() - 1].version
}

/// The SHA-256 of a migration's text, lowercase hex (as `sha256sum` prints it): how a runner
/// that records what it ran can tell a migration file edited after it was applied.
#[cfg_attr(
    not(any(test, feature = "postgres")),
    allow(dead_code, reason = "for the PostgreSQL runner's bookkeeping")
)]
pub(crate) fn checksum(sql: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(sql.as_bytes()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// The first version both folders share.
    const SHARED_FROM: i64 = 13;

    /// `sha256sum` lines of every released migration, relative to `migrations/`.
    const SHA256SUMS: &str = include_str!("../../migrations/SHA256SUMS");

    /// Each embedded file as its path under `migrations/` and its checksum.
    fn embedded() -> BTreeMap<String, String> {
        [("sqlite", SQLITE), ("postgres", POSTGRES)]
            .iter()
            .flat_map(|(engine, migrations)| {
                migrations.iter().map(move |m| {
                    (
                        format!("{engine}/{:04}_{}.sql", m.version, m.name),
                        checksum(m.sql),
                    )
                })
            })
            .collect()
    }

    /// A released migration is never edited nor removed, and every migration is pinned: a
    /// PostgreSQL database that ran a file refuses it once changed, and a SQLite database
    /// past its number never runs it again, so an edit would make two schemas for one number.
    #[test]
    fn released_migrations_keep_their_checksums() {
        let embedded = embedded();
        let mut unpinned = embedded.clone();
        for line in SHA256SUMS.lines().filter(|l| !l.trim().is_empty()) {
            let (sum, path) = line.split_once("  ").expect("`<sha256>  <path>` lines");
            match unpinned.remove(path) {
                None => panic!("{path} is pinned in migrations/SHA256SUMS but gone"),
                Some(now) => assert_eq!(
                    now, sum,
                    "{path} was edited after it was released: restore it, and make the \
                     change a new migration"
                ),
            }
        }
        let lines: Vec<String> = unpinned.iter().map(|(p, s)| format!("{s}  {p}")).collect();
        assert!(
            lines.is_empty(),
            "pin the new migrations: add to crates/store/migrations/SHA256SUMS\n{}",
            lines.join("\n")
        );
        assert!(!embedded.is_empty());
    }

    #[test]
    fn from_13_both_engines_have_the_same_steps() {
        let shared = |migrations: &[Migration]| -> Vec<(i64, &str)> {
            migrations
                .iter()
                .filter(|m| m.version >= SHARED_FROM)
                .map(|m| (m.version, m.name))
                .collect()
        };
        assert_eq!(shared(SQLITE), shared(POSTGRES));
        assert!(!shared(SQLITE).is_empty());
    }

    #[test]
    fn migrations_are_numbered_in_order_and_head_their_file_with_a_comment() {
        // SQLite's run without a gap: user_version is the last one run.
        let versions: Vec<i64> = SQLITE.iter().map(|m| m.version).collect();
        assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
        // Each file starts with its comment, `-- N: ...` (PostgreSQL's from before 13 as
        // they were released).
        let shared = POSTGRES.iter().filter(|m| m.version >= SHARED_FROM);
        for m in SQLITE.iter().chain(shared) {
            let head = format!("-- {}: ", m.version);
            assert!(m.sql.starts_with(&head), "{} {}", m.version, m.name);
        }
    }

    #[test]
    fn a_checksum_is_the_sha256_of_the_text() {
        assert_eq!(
            checksum(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
