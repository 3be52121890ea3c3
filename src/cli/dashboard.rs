//! `meterline` with no subcommand: the dashboard on --db, or on a fresh demo database.

use std::path::Path;
use std::process::ExitCode;

use chrono::{DateTime, Utc};

use super::Context;
use crate::demo::DemoSpec;
use crate::tui::{self, theme::Theme};
use crate::{Config, Result, Store};

/// The demo the README's first command opens: every plan and level, quick to build.
const DEMO: DemoSpec = DemoSpec {
    customers: 40,
    events: 20_000,
    seed: 7,
};

use crate::config::EXAMPLE_PLANS;

pub fn exec(
    ctx: &Context,
    demo: bool,
    fixed_now: Option<DateTime<Utc>>,
    no_color: bool,
) -> Result<ExitCode> {
    let theme = Theme::from_env(no_color);
    if !demo {
        let config = ctx.config()?;
        // The dashboard only reads: no database there is an error, not a new file.
        drop(ctx.store()?);
        tui::run(tui::Options {
            db: ctx.db.clone(),
            db_label: ctx.db_shown(),
            plans: Some(ctx.plans.clone()),
            plans_label: ctx.plans.display().to_string(),
            config,
            now: fixed_now,
            theme,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let (config, plans_label) = demo_plans(&ctx.plans)?;
    // A temporary directory, so the -wal and -shm files go with the database.
    let dir = tempfile::Builder::new()
        .prefix("meterline-demo-")
        .tempdir()
        .map_err(|e| crate::Error::CannotOpen(format!("temporary directory: {e}")))?;
    let db = dir.path().join("demo.db");
    eprintln!("meterline: building a demo database in {} …", db.display());
    let mut store = Store::open(&db)?;
    crate::demo::fill(&mut store, &config, &DEMO, ctx.now)?;
    drop(store);
    tui::run(tui::Options {
        db_label: format!("{} (demo, deleted on exit)", db.display()),
        db,
        // The file the demo's plans came from, if any: `r` reads it again.
        plans: ctx.plans.exists().then(|| ctx.plans.clone()),
        plans_label,
        config,
        now: fixed_now,
        theme,
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The plans file if there is one, else the example plans built into meterline
/// (`--demo` and `meterline demo` alike).
pub(super) fn demo_plans(path: &Path) -> Result<(Config, String)> {
    if path.exists() {
        return Ok((Config::load(path)?, path.display().to_string()));
    }
    Ok((
        Config::parse(EXAMPLE_PLANS, "built-in example plans")?,
        "built-in example plans".to_string(),
    ))
}
