use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use super::Context;
use crate::Result;
use crate::server::{ServeOptions, run};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (port 0 picks a free port; the address is printed on stderr).
    #[arg(long, env = "METERLINE_LISTEN", default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,
    /// Allow a non-loopback address. The server speaks plain HTTP: put a TLS proxy in front.
    #[arg(long)]
    pub public: bool,
    /// Write requests that may wait for the writer; beyond it writes get 503 + Retry-After.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub queue: u32,
    /// Open connections at most; further clients wait in the kernel's backlog.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Seconds one request may take, body included (then 408).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout: u64,
    /// Seconds a connection may stay silent before it is closed.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout: u64,
}

pub fn exec(
    ctx: &Context,
    args: Args,
    pinned_now: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<ExitCode> {
    run(ServeOptions {
        db: ctx.db.clone(),
        config: ctx.config()?,
        listen: args.listen,
        public: args.public,
        queue: args.queue as usize,
        max_connections: args.max_connections as usize,
        request_timeout: Duration::from_secs(args.request_timeout),
        idle_timeout: Duration::from_secs(args.idle_timeout),
        now: pinned_now,
    })?;
    Ok(ExitCode::SUCCESS)
}
