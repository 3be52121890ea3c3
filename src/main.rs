use std::process::ExitCode;

mod cli;

use clap::Parser;
// The layers below under the names the CLI's modules use (`crate::store`, `crate::stripe`, …).
use meterline_core::{Config, Error, RecordRequest, Result, billing, config, sanitize, wire};
use meterline_store::{self as store, Store, demo};
use {
    meterline_alerts as alerts, meterline_server as server, meterline_stripe as stripe,
    meterline_tui as tui,
};

use cli::{Cli, run};
use sanitize::sanitize_lines;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let db = cli.db.clone();
    match run(cli) {
        Ok(code) => code,
        // The reader of the output went away: end quietly, as ripgrep does.
        Err(Error::OutputClosed) => ExitCode::SUCCESS,
        Err(e) => {
            // Messages echo ids, keys and server text: shown, never obeyed by the terminal.
            let message = sanitize_lines(&e.to_string());
            if e.is_database() {
                let db = store::shown_db(&db);
                eprintln!("error: {message}\n  database: {db}");
            } else {
                eprintln!("error: {message}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}
