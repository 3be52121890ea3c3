use std::process::ExitCode;

use clap::CommandFactory;

use super::Cli;
use crate::{Error, Result};

/// The man page (roff) on stdout: `meterline man > /usr/local/share/man/man1/meterline.1`.
pub fn exec() -> Result<ExitCode> {
    clap_mangen::Man::new(Cli::command())
        .render(&mut std::io::stdout())
        .map_err(|e| Error::InvalidInput(format!("cannot write the man page: {e}")))?;
    Ok(ExitCode::SUCCESS)
}
