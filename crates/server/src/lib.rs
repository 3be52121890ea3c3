//! `meterline serve`: the HTTP API (record, check, status, metrics) and the drop-in routes for
//! Stripe's, OpenMeter's and Lago's SDKs. axum routes, served by hyper on tokio; SQLite only on
//! the writer thread (group commit, see `writer`) and on blocking reader threads with their own
//! connections; alert delivery on its own thread when plans.toml has `[[alerts]]`.
//!
//! Entry point: [`run`] with [`ServeOptions`], until SIGINT or SIGTERM. [`ApiError`] is the
//! API's error answer, which `record --batch` shares.
#![deny(clippy::unwrap_used, clippy::expect_used)]
// Only what other crates use is `pub`; the rest is `pub(crate)` or private.
#![warn(unreachable_pub)]

use meterline_core::{
    Config, Error, Properties, RecordOutcome, RecordRequest, Result, billing, clock, sanitize,
};
use meterline_store::{self as store, Store};

mod alerts;
mod api;
mod auth;
mod body;
mod checks;
mod compat;
mod credits;
mod encoding;
mod error;
mod keep_alive;
mod listener;
mod metrics;
mod reservations;
mod writer;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use error::ApiError;

use crate::clock::Clock;

use crate::store::OpenOptions;

/// Everything `serve` needs; the CLI fills it from flags and the environment.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The database file.
    pub db: PathBuf,
    /// The validated plans.toml.
    pub config: Config,
    /// The address to listen on.
    pub listen: SocketAddr,
    /// Allow a non-loopback address (plain HTTP: put a TLS proxy in front).
    pub public: bool,
    /// Requests that may wait for the writer before new writes get 503.
    pub queue: usize,
    /// Connections open at once; the next accept waits for a free slot.
    pub max_connections: usize,
    /// The most a request may take (408 after), and the limit on reading its headers.
    pub request_timeout: Duration,
    /// A connection that neither reads nor writes for this long is closed.
    pub idle_timeout: Duration,
    /// `--now`: the clock starts there and advances in real time.
    pub now: Option<DateTime<Utc>>,
}

/// Largest request body (a full 1,000-event batch fits several times over).
pub(crate) const MAX_BODY: usize = 1024 * 1024;

/// The most events one batch request may carry (`/v1/events/batch` and the compatible routes).
pub(crate) const MAX_BATCH: usize = 1000;

/// What every handler shares; cloned (one reference count) for each request and middleware.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub(crate) struct Shared {
    db: Arc<PathBuf>,
    config: Arc<Config>,
    clock: Clock,
    writer: writer::Writer,
    /// On PostgreSQL, the checks waiting are answered together (`checks`).
    checks: Option<checks::Checks>,
    tokens: Arc<auth::Tokens>,
    metrics: Arc<metrics::Metrics>,
}

/// Run the server until SIGINT or SIGTERM; then stop accepting, answer every request already
/// accepted, commit, and return.
pub fn run(options: ServeOptions) -> Result<()> {
    if !options.listen.ip().is_loopback() && !options.public {
        return Err(Error::InvalidInput(format!(
            "{} is not a loopback address and the server speaks plain HTTP; pass --public \
             to listen there (behind a TLS reverse proxy)",
            options.listen
        )));
    }
    let store = Store::open(&options.db)?;
    let config = Arc::new(options.config.clone());
    let alerts = alerts::AlertLoop::start(options.db.clone(), config.clone())?;
    let clock = options.now.map_or_else(Clock::real, Clock::starting_at);
    let metrics = Arc::new(metrics::Metrics::with_meters(
        config.meters.iter().map(|m| m.id.as_str()),
    ));
    let (writer, writer_thread) = writer::Writer::start(
        store,
        config.clone(),
        clock,
        options.queue.max(1),
        metrics.clone(),
    )?;
    let checks = match options.db.to_str().filter(|db| store::is_postgres_url(db)) {
        Some(_) => Some(checks::Checks::start(
            options.db.clone(),
            config.clone(),
            clock,
        )?),
        None => None,
    };
    let state = AppState(Arc::new(Shared {
        db: Arc::new(options.db.clone()),
        config,
        clock,
        writer,
        checks,
        tokens: Arc::default(),
        metrics,
    }));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Reads (check, status, tokens) are short indexed queries: one reader thread per
        // core. More only wake and switch more threads per request; on 2 cores checks went
        // from 24,000-27,000 to 27,000-31,000 requests/s with 2 instead of 8 (benches/serve.rs).
        .max_blocking_threads(reader_threads())
        .thread_name("meterline-http")
        .build()
        .map_err(|e| Error::InvalidInput(format!("cannot start the runtime: {e}")))?;
    let served = runtime.block_on(serve(options, state));
    // Every connection is closed and every handler has its answer; the writer may still be
    // finishing a round that nobody waits for (a timed-out client): let it commit.
    runtime.shutdown_timeout(Duration::from_secs(5));
    writer_thread.join();
    if let Some(alerts) = alerts {
        alerts.stop();
    }
    served
}

/// The blocking threads that run reads, each with its own connection: one per core, at
/// least two so one slow read (a large status) never holds up every check.
fn reader_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().max(2))
}

async fn serve(options: ServeOptions, state: AppState) -> Result<()> {
    let tcp = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| Error::InvalidInput(format!("cannot listen on {}: {e}", options.listen)))?;
    let addr = tcp
        .local_addr()
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    eprintln!("meterline serve: listening on http://{addr}");
    let mut listener =
        listener::CappedListener::new(tcp, options.max_connections.max(1), options.idle_timeout);
    let app = api::router(state, options.request_timeout);
    // hyper itself, not `axum::serve`: only hyper's builder takes a timer, which the header
    // read timeout needs. Without it a client trickling header bytes holds its connection
    // (and one of the capped slots) forever.
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(options.request_timeout);
    let connections = hyper_util::server::graceful::GracefulShutdown::new();
    let mut stop = std::pin::pin!(shutdown_signal());
    loop {
        tokio::select! {
            conn = listener.accept() => {
                let service = hyper_util::service::TowerToHyperService::new(app.clone());
                let served = connections.watch(
                    http.serve_connection(hyper_util::rt::TokioIo::new(conn), service),
                );
                // A connection's errors (a client gone, a timeout) end that connection only.
                tokio::spawn(async move {
                    let _ = served.await;
                });
            }
            () = &mut stop => break,
        }
    }
    // No new connections; each open one finishes the request it has and closes.
    drop(listener);
    connections.shutdown().await;
    eprintln!("meterline serve: stopped; every accepted request was answered");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    // Without a SIGTERM handler (never on Linux) Ctrl-C still stops the server.
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    eprintln!("meterline serve: stopping (no new connections; finishing requests in flight)");
}

thread_local! {
    /// Each blocking reader thread keeps its own read connection.
    static READER: RefCell<Option<Store>> = const { RefCell::new(None) };
}

/// Run a read on a blocking thread with that thread's own connection.
pub(crate) async fn read<T, F>(state: &AppState, f: F) -> std::result::Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Store) -> Result<T> + Send + 'static,
{
    on_reader(state, move |store: &mut Store| f(store)).await
}

/// Run a write that is not an event (a credit grant) on a reader thread's connection: it
/// takes the writers' lock like any write, and waits its turn behind the writer's rounds.
pub(crate) async fn write<T, F>(state: &AppState, f: F) -> std::result::Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut Store) -> Result<T> + Send + 'static,
{
    on_reader(state, f).await
}

/// `f` on a blocking thread with that thread's own connection.
async fn on_reader<T, F>(state: &AppState, f: F) -> std::result::Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut Store) -> Result<T> + Send + 'static,
{
    let db = state.db.clone();
    let joined = tokio::task::spawn_blocking(move || {
        READER.with(|cell| {
            let mut slot = cell.borrow_mut();
            let mut store = match slot.take() {
                Some(store) => store,
                None => Store::open_with(&db, OpenOptions::existing())?,
            };
            let result = f(&mut store);
            *slot = Some(store);
            if result.as_ref().is_err_and(Error::is_database) {
                // Reopen next time: the file may have been replaced or repaired.
                *slot = None;
            }
            result
        })
    })
    .await;
    match joined {
        Ok(result) => result.map_err(ApiError::from),
        Err(e) => Err(ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("reader failed: {e}"),
        )),
    }
}
