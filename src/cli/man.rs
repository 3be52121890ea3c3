use std::process::ExitCode;

use clap::CommandFactory;

use super::Cli;
use crate::{Error, Result};

/// The man page (roff) on stdout: `meterline man > /usr/local/share/man/man1/meterline.1`.
pub fn exec() -> Result<ExitCode> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .map_err(|e| Error::Output(format!("cannot write the man page: {e}")))?;
    super::output::write_bytes(&page)?;
    Ok(ExitCode::SUCCESS)
}
