use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

use super::Cli;
use crate::Result;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to complete for.
    pub shell: Shell,
}

/// Shell completions on stdout, e.g. `meterline completions bash > /etc/bash_completion.d/meterline`.
pub fn exec(args: Args) -> Result<ExitCode> {
    let mut command = Cli::command();
    // Into a buffer first: `generate` panics when it cannot write (`| head -1`).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "meterline", &mut script);
    super::output::write_bytes(&script)?;
    Ok(ExitCode::SUCCESS)
}
