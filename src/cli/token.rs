use std::process::ExitCode;

use super::{Context, output};
use crate::Result;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a bearer token for `meterline serve`; the token alone goes to stdout, once.
    Create {
        /// A name to list and revoke it by (letters, digits, '-', '_', '.').
        name: String,
    },
    /// Names, creation and last use (never the tokens).
    List {
        #[arg(long, help = super::JSON_HELP)]
        json: bool,
    },
    /// Revoke a token; the server refuses it within a second.
    Revoke { name: String },
}

pub fn exec(ctx: &Context, command: Command) -> Result<ExitCode> {
    let mut store = ctx.write_store()?;
    match command {
        Command::Create { name } => {
            let token = store.create_token(&name, ctx.now)?;
            eprintln!(
                "created token \"{}\"; it is shown once and only its hash is stored. \
                 Send it as `Authorization: Bearer <token>`.",
                crate::sanitize::sanitize(&name)
            );
            outln!("{token}")?;
        }
        Command::List { json } => {
            let tokens = store.list_tokens()?;
            if json {
                return output::print_json(&tokens);
            }
            outln!("{:<24} {:<22} {:<22} STATE", "NAME", "CREATED", "LAST USED")?;
            for t in &tokens {
                outln!(
                    "{:<24} {:<22} {:<22} {}",
                    crate::sanitize::sanitize(&t.name),
                    t.created_at,
                    t.last_used_at.as_deref().unwrap_or("never"),
                    t.revoked_at
                        .as_ref()
                        .map_or_else(|| "active".to_string(), |at| format!("revoked {at}"))
                )?;
            }
        }
        Command::Revoke { name } => {
            if store.revoke_token(&name, ctx.now)? {
                eprintln!("revoked token \"{}\"", crate::sanitize::sanitize(&name));
            } else {
                eprintln!(
                    "token \"{}\" was already revoked",
                    crate::sanitize::sanitize(&name)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
