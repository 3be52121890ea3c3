use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::INIT_PLANS;
use crate::{Error, Result};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write plans.toml (default: the current directory).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

/// Write the commented example plans.toml; an existing file is never touched.
pub fn exec(args: Args) -> Result<ExitCode> {
    let path = args.dir.join("plans.toml");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::InvalidInput(format!(
                "{} already exists; meterline init never overwrites it (check it with `meterline plans`)",
                path.display()
            )),
            _ => Error::InvalidInput(format!("cannot create {}: {e}", path.display())),
        })?;
    file.write_all(INIT_PLANS.as_bytes())
        .map_err(|e| Error::InvalidInput(format!("cannot write {}: {e}", path.display())))?;
    eprintln!("wrote {}", path.display());
    eprintln!("next:");
    eprintln!(
        "  1. edit the meters and plans (prices, included units, Stripe events) and check them: meterline plans"
    );
    eprintln!("  2. add a customer: meterline customer add acme --plan free --name \"Acme\"");
    eprintln!(
        "  3. record a call and watch it: meterline record acme --type completion --property tokens=500 --property model=small --property user=u_1 && meterline"
    );
    Ok(ExitCode::SUCCESS)
}
