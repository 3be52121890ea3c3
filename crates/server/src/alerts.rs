//! The background alert delivery of `serve`: every few seconds, deliver what is due, on its
//! own thread and connection (never the writer's). The lock makes it safe next to a cron
//! `meterline alerts`: whoever holds it delivers, the other waits for the next round.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::store::OpenOptions;
use crate::{Config, Error, Result, Store};
use meterline_alerts::RunOptions;

/// How often the outbox is looked at (one indexed query when nothing is due).
const POLL: Duration = Duration::from_secs(2);

/// The alert delivery thread of a running server.
pub(crate) struct AlertLoop {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl AlertLoop {
    /// Start delivering, or `None` when plans.toml has no `[[alerts]]`. Refused before the
    /// server listens when webhooks are configured without a signing secret.
    pub(crate) fn start(db: PathBuf, config: Arc<Config>) -> Result<Option<AlertLoop>> {
        if config.alerts.is_empty() {
            return Ok(None);
        }
        // The same settings as `meterline alerts`, read the same way.
        let options = RunOptions::from_env()?;
        meterline_alerts::check_secret(&config, options.secret.as_ref())?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("meterline-alerts".into())
            .spawn(move || deliver_until(&db, &config, &options, &flag))
            .map_err(|e| Error::InvalidInput(format!("cannot start alert delivery: {e}")))?;
        Ok(Some(AlertLoop { stop, thread }))
    }

    /// Finish the attempts in flight (at most one per destination) and stop.
    pub(crate) fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

fn deliver_until(db: &std::path::Path, config: &Config, options: &RunOptions, stop: &AtomicBool) {
    let mut store = None;
    while !stop.load(Ordering::Relaxed) {
        if store.is_none() {
            store = Store::open_with(db, OpenOptions::existing())
                .map_err(|e| eprintln!("meterline serve: alerts: {e}"))
                .ok();
        }
        if let Some(s) = store.as_mut() {
            match meterline_alerts::run(s, config, options, stop) {
                Ok(report) => {
                    for line in &report.errors {
                        eprintln!("meterline serve: alert not delivered: {line}");
                    }
                }
                // A cron `meterline alerts` holds the lock: it delivers this round.
                Err(Error::AlertsRunning(_)) => {}
                Err(e) => {
                    eprintln!("meterline serve: alerts: {e}");
                    if e.is_database() {
                        store = None;
                    }
                }
            }
        }
        // Sleep in small steps so a shutdown does not wait a whole round.
        let mut slept = Duration::ZERO;
        while slept < POLL && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            slept += Duration::from_millis(100);
        }
    }
}
