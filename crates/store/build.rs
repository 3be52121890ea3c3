//! Embeds the migration folders (`migrations/sqlite/`, `migrations/postgres/`) as
//! `$OUT_DIR/migrations.rs`: one `&[Migration]` per engine, each file's text included, in the
//! order of their numbers (as `sqlx::migrate!` does). A file named otherwise fails the build.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    // A directory: cargo rebuilds when any file in it changes, is added or removed.
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut out = String::new();
    for (constant, engine) in [("SQLITE", "sqlite"), ("POSTGRES", "postgres")] {
        writeln!(out, "pub(crate) const {constant}: &[Migration] = &[").unwrap();
        for (version, name, path) in migrations(&dir.join(engine)) {
            writeln!(
                out,
                "    Migration {{ version: {version}, name: {name:?}, sql: include_str!({path:?}) }},"
            )
            .unwrap();
        }
        writeln!(out, "];").unwrap();
    }
    let target = Path::new(&std::env::var("OUT_DIR").unwrap()).join("migrations.rs");
    std::fs::write(target, out).unwrap();
}

/// The `NNNN_name.sql` files of `dir` as (number, name, path), by number.
fn migrations(dir: &Path) -> Vec<(u32, String, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(stem) = file.strip_suffix(".sql") else {
            continue;
        };
        let Some((version, name)) = parse(stem) else {
            panic!(
                "{}: a migration is named NNNN_lowercase_name.sql",
                path.display()
            );
        };
        found.push((version, name.to_owned(), path.display().to_string()));
    }
    found.sort();
    for pair in found.windows(2) {
        assert!(
            pair[0].0 != pair[1].0,
            "{}: two migrations numbered {}",
            dir.display(),
            pair[0].0
        );
    }
    found
}

/// `0013_one_schema_version` as (13, "one_schema_version").
fn parse(stem: &str) -> Option<(u32, &str)> {
    let (number, name) = stem.split_once('_')?;
    let version: u32 = number.parse().ok()?;
    let named = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    (number.len() == 4 && version > 0 && named).then_some((version, name))
}
