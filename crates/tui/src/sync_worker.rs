//! The boundary between the dashboard and the Stripe sync engine.
//!
//! The app's sync popup is a state machine (app.rs `SyncPopup`): `s` asks this worker to
//! prepare, the worker answers with the engine's preview to confirm (or why sync cannot run),
//! a confirmed sync runs `stripe::sync::run` on a worker thread with its own connection and
//! reports progress into the event channel, Esc asks it to cancel (requests in flight finish
//! and are recorded, so nothing is left half-marked), and the engine's report closes the loop.
//! Both steps run off the UI thread: the preview reads the outbox, which can be large.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::notify::Notify;
use crate::stripe::{self, ApiKey, SyncOptions, SyncPreview, SyncProgress, SyncReport};
use crate::{Config, Error, Store};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncEvent {
    /// Why sync cannot run now (no key, a bad setting, nothing to send).
    Unavailable(String),
    /// What a confirmed sync would send (totals only: `groups` is left empty).
    Ready(SyncPreview),
    Progress(SyncProgress),
    /// The engine's report, or why the run failed (never containing the key).
    Finished(Result<SyncReport, String>),
}

/// Shown instead of an error when STRIPE_API_KEY is not set. Lines are shown as they are.
pub const NO_KEY: &str = "Stripe sync needs your Stripe secret key, read from the environment.\n\
     Quit (q), set it in the shell, and open the dashboard again:\n\
     \n\
     \x20 export STRIPE_API_KEY=sk_test_...   (sk_live_... bills real customers)\n\
     \x20 export STRIPE_API_BASE=https://...  (optional: a Stripe-compatible server)\n\
     \n\
     `meterline sync` sends the same events from a shell or a cron job.";

/// The key syncs send with: `None` without one, or why the one given is unusable (never
/// containing it).
type Key = Result<Option<ApiKey>, String>;

/// How long quitting waits for a cancelled sync to record its in-flight requests.
pub(crate) const QUIT_WAIT: Duration = Duration::from_secs(15);

/// Starts and cancels syncs; results arrive as `SyncEvent`s through its `Notify`.
pub struct SyncWorker {
    events: Arc<dyn Notify<SyncEvent> + Sync>,
    db: PathBuf,
    config: Config,
    /// Without a key the popup says how to set one.
    key: Key,
    /// The dashboard passes the defaults: the real clock, whatever `--now` says (expiry
    /// marks are permanent). Tests may pretend a time or shorten the backoff here.
    options: SyncOptions,
    cancel: Arc<AtomicBool>,
    running: Option<JoinHandle<()>>,
}

impl SyncWorker {
    /// `key` is what the dashboard read from the environment when it opened
    /// (`ApiKey::from_env()`): passed in, so the worker never reads the process's environment
    /// and tests give their own. `Error::MissingApiKey` is no key, which is no error until a
    /// sync is confirmed.
    pub fn new(
        events: impl Notify<SyncEvent> + Sync,
        db: PathBuf,
        config: Config,
        key: crate::Result<ApiKey>,
        options: SyncOptions,
    ) -> SyncWorker {
        let key = match key {
            Ok(key) => Ok(Some(key)),
            Err(Error::MissingApiKey) => Ok(None),
            Err(e) => Err(e.to_string()),
        };
        SyncWorker {
            events: Arc::new(events),
            db,
            config,
            key,
            options,
            cancel: Arc::new(AtomicBool::new(false)),
            running: None,
        }
    }

    /// Plans reloaded with `r`: the next sync uses them (a running one keeps its own).
    pub(crate) fn set_config(&mut self, config: Config) {
        self.config = config;
    }

    /// Work out what a sync would send, for the confirmation.
    pub(crate) fn prepare(&self) {
        let (db, config, key, options, events) = (
            self.db.clone(),
            self.config.clone(),
            self.key.clone(),
            self.options.clone(),
            self.events.clone(),
        );
        thread::spawn(move || send(&events, plan(&db, &config, key, &options)));
    }

    /// Run the confirmed sync on its own thread.
    pub(crate) fn start(&mut self) {
        if self.running.as_ref().is_some_and(|t| !t.is_finished()) {
            // The popup allows one sync at a time; the engine's lock would refuse a second.
            return;
        }
        self.cancel.store(false, Ordering::SeqCst);
        let (db, config, key, options, events, cancel) = (
            self.db.clone(),
            self.config.clone(),
            self.key.clone(),
            self.options.clone(),
            self.events.clone(),
            Arc::clone(&self.cancel),
        );
        self.running = Some(thread::spawn(move || {
            let report = sync_now(&db, &config, key, &options, &cancel, &events);
            send(&events, SyncEvent::Finished(report));
        }));
    }

    /// Ask a running sync to stop after its in-flight requests.
    pub(crate) fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    /// On quit: cancel a running sync and give it up to `wait` to record what is in flight.
    /// (Were it cut off, the next run would resend those events and Stripe would recognise
    /// them; waiting just keeps the sync log tidy.)
    pub(crate) fn finish(mut self, wait: Duration) {
        let Some(thread) = self.running.take() else {
            return;
        };
        self.cancel();
        let deadline = Instant::now() + wait;
        while !thread.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
    }
}

fn send(events: &Arc<dyn Notify<SyncEvent> + Sync>, event: SyncEvent) {
    // The loop is gone only while quitting; nothing to tell then.
    let _ = events.notify(event);
}

/// The confirmation's content, or why there is nothing to confirm. Without a key the counts
/// are still shown, with how to set one (a real sync needs it).
fn plan(db: &std::path::Path, config: &Config, key: Key, options: &SyncOptions) -> SyncEvent {
    let key = match key {
        Ok(key) => key,
        Err(why) => return SyncEvent::Unavailable(why),
    };
    let preview = Store::open(db)
        .and_then(|store| stripe::sync::preview_with(&store, config, key.as_ref(), options));
    match (preview, key) {
        (Ok(preview), _) if preview.events == 0 && preview.expired == 0 => {
            SyncEvent::Unavailable(nothing_to_send(&preview))
        }
        (Ok(preview), None) => SyncEvent::Unavailable(format!(
            "{} of {} to send to {}.\n\n{NO_KEY}",
            crate::billing::count(preview.events as i64, "event"),
            crate::billing::count(preview.customers as i64, "customer"),
            preview.api_host
        )),
        (Ok(mut preview), Some(_)) => {
            // The popup shows totals; the per-customer list can be long.
            preview.groups = Vec::new();
            SyncEvent::Ready(preview)
        }
        (Err(e), key) => SyncEvent::Unavailable(match key {
            Some(key) => key.redact(&e.to_string()),
            None => e.to_string(),
        }),
    }
}

fn nothing_to_send(preview: &SyncPreview) -> String {
    let mut text = format!(
        "Nothing to send to {}: every event of a customer with a Stripe id is reported.",
        preview.api_host
    );
    let notes = [
        (
            preview.unmapped,
            "events of customers without a Stripe customer id wait \
             (map them: meterline customer set-stripe ID cus_...)",
        ),
        (
            preview.failed_waiting,
            "events Stripe refused within the hour rest before the next try \
             (meterline sync --retry-failed sends them now)",
        ),
        (
            preview.future,
            "events dated ahead of now go out when their time comes",
        ),
    ];
    for (count, why) in notes {
        if count > 0 {
            text.push_str(&format!("\n{count} {why}."));
        }
    }
    text
}

fn sync_now(
    db: &std::path::Path,
    config: &Config,
    key: Key,
    options: &SyncOptions,
    cancel: &AtomicBool,
    events: &Arc<dyn Notify<SyncEvent> + Sync>,
) -> Result<SyncReport, String> {
    let key = key?.ok_or_else(|| Error::MissingApiKey.to_string())?;
    let mut on_progress = |p: &SyncProgress| send(events, SyncEvent::Progress(p.clone()));
    stripe::run(db, config, &key, options, cancel, &mut on_progress)
        .map_err(|e| key.redact(&e.to_string()))
}
