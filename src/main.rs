use std::process::ExitCode;

use clap::Parser;
use meterline::cli::{Cli, run};
use meterline::sanitize::{sanitize, sanitize_lines};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let db = cli.db.clone();
    match run(cli) {
        Ok(code) => code,
        // The reader of the output went away: end quietly, as ripgrep does.
        Err(meterline::Error::OutputClosed) => ExitCode::SUCCESS,
        Err(e) => {
            // Messages echo ids, keys and server text: shown, never obeyed by the terminal.
            let message = sanitize_lines(&e.to_string());
            if e.is_database() {
                let db = sanitize(&db.to_string_lossy()).into_owned();
                eprintln!("error: {message}\n  database: {db}");
            } else {
                eprintln!("error: {message}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}
