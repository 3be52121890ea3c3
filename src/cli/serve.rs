use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use super::Context;
use crate::Result;
use crate::server::{ServeOptions, run};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on, HOST:PORT; a host name is resolved (port 0 picks a free port; the
    /// address is printed on stderr).
    #[arg(long, env = "METERLINE_LISTEN", default_value = "127.0.0.1:8787",
          value_name = "HOST:PORT", value_parser = parse_listen)]
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

const LISTEN_HINT: &str = "write HOST:PORT, e.g. 127.0.0.1:8787 (port 0 picks a free one)";

/// `--listen`: an address, or a host name that resolves (std's `ToSocketAddrs`). Of several
/// addresses the first loopback one is bound, else the first: a name for this machine (say
/// `localhost`) stays on it.
fn parse_listen(text: &str) -> std::result::Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let shown = crate::sanitize::sanitize(text);
    let Some((host, port)) = text
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
    else {
        return Err(format!(
            "\"{shown}\" has no valid port (0 to 65535); {LISTEN_HINT}"
        ));
    };
    let host_shown = crate::sanitize::sanitize(host);
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve \"{host_shown}\": {e}; {LISTEN_HINT}"))?
        .collect();
    addrs
        .iter()
        .find(|addr| addr.ip().is_loopback())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("\"{host_shown}\" resolves to no address; {LISTEN_HINT}"))
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
