use std::process::ExitCode;

use clap::Parser;
use meterline::cli::{Cli, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let db = cli.db.clone();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if e.is_database() {
                eprintln!("error: {e}\n  database: {}", db.display());
            } else {
                eprintln!("error: {e}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}
