use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::{Context, output};
use crate::store::{CopyProgress, OpenOptions, is_postgres_url, shown_db};
use crate::{Error, Result, Store};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The PostgreSQL database to fill (postgres://USER:PASSWORD@HOST/DATABASE); it must be
    /// empty.
    #[arg(value_name = "URL")]
    pub url: String,
    #[arg(long, help = super::JSON_HELP)]
    pub json: bool,
}

/// Copy the SQLite database `--db` into an empty PostgreSQL database, checked before it
/// commits. Interrupted (Ctrl-C, a lost connection), the transaction is never committed and
/// the target stays empty.
pub fn exec(ctx: &Context, args: Args) -> Result<ExitCode> {
    if ctx.on_postgres() {
        return Err(Error::InvalidInput(format!(
            "copy-to copies an SQLite file into PostgreSQL, and --db is already a PostgreSQL \
             database ({}); point --db at the SQLite file to copy",
            ctx.db_shown()
        )));
    }
    if !is_postgres_url(&args.url) {
        // Not echoed: whatever it is, it may hold a password.
        return Err(Error::InvalidInput(
            "copy-to needs a PostgreSQL URL as its target (postgres://USER:PASSWORD@HOST/DATABASE \
             or postgresql://…); to copy into another SQLite file use `meterline backup PATH`"
                .into(),
        ));
    }
    let target_shown = shown_db(Path::new(&args.url));
    // The source is brought to the current schema (as every write command does), the target
    // is created at it: the two schemas then match column for column.
    let source = ctx.existing_store()?;
    let target = match Store::open_with(
        Path::new(&args.url),
        OpenOptions {
            busy_timeout: ctx.busy_timeout,
            ..OpenOptions::default()
        },
    ) {
        Ok(target) => target,
        Err(e) => return failed(e, &target_shown),
    };
    let mut last = Instant::now();
    let copied = source.copy_to(&target, &mut |p: CopyProgress<'_>| {
        if last.elapsed() >= Duration::from_secs(5) {
            eprintln!(
                "copy-to: {} {}/{} rows",
                p.table,
                output::thousands(p.copied as i64),
                output::thousands(p.total as i64)
            );
            last = Instant::now();
        }
    });
    let report = match copied {
        Ok(report) => report,
        Err(e) => return failed(e, &format!("{} -> {target_shown}", ctx.db_shown())),
    };
    for skipped in report.not_copied.iter().filter(|t| t.rows > 0) {
        eprintln!(
            "note: {} (a run lock of a process on this machine) was not copied; stop the sync \
             and alert runs on the source before moving over",
            skipped.table
        );
    }
    if !report.committed() {
        eprintln!(
            "error: the copy in {target_shown} differs from {}, so nothing was committed; \
             the target is still empty:",
            ctx.db_shown()
        );
        for mismatch in &report.mismatches {
            eprintln!("  {mismatch}");
        }
    }
    if args.json {
        output::print_json(&report)?;
    } else if report.committed() {
        outln!(
            "{} -> {target_shown}: {} tables, {} rows copied; checked: every table's row count \
             and {} counters match",
            ctx.db_shown(),
            report.tables.len(),
            output::thousands(report.rows as i64),
            output::thousands(report.counters as i64)
        )?;
    }
    Ok(if report.committed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A database error, shown as `main` shows one but naming the databases it concerns (`main`
/// names `--db` only, and here most failures are the target's); other errors go to `main`.
fn failed(e: Error, concerns: &str) -> Result<ExitCode> {
    if !e.is_database() {
        return Err(e);
    }
    eprintln!(
        "error: {}\n  database: {concerns}",
        crate::sanitize::sanitize_lines(&e.to_string())
    );
    Ok(ExitCode::from(e.exit_code()))
}
