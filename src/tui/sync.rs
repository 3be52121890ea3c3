//! The boundary between the dashboard and the Stripe sync engine.
//!
//! The app's sync popup is a state machine (app.rs `SyncPopup`): `s` asks this worker to
//! prepare, the worker answers with a plan to confirm (or why sync cannot run), a confirmed
//! sync runs on a worker thread with its own connection and reports progress into the event
//! channel, Esc asks it to cancel, and a final outcome closes the loop.
//!
//! TODO(sync, issue 3): the engine (`meterline::stripe::sync::{preview, run, SyncOptions,
//! SyncProgress, SyncReport, SyncPreview}`) is not on this branch yet. Wire it here only:
//! `prepare` → `preview` (no STRIPE_API_KEY → `Unavailable` explaining how to set one),
//! `start` → spawn a thread running `run` with a progress callback that sends
//! `SyncEvent::Progress` and checks `cancel`, then `SyncEvent::Finished` from its `SyncReport`.
//! Nothing else in the dashboard needs to change.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;

use super::event::Event;

/// What a confirmed sync would send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPlan {
    pub events: u64,
    pub customers: u64,
    /// A live key bills real customers; the confirmation says so.
    pub live: bool,
    pub api_host: String,
}

/// Counts so far of a running sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncProgress {
    pub total: u64,
    pub attempted: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub failed: u64,
}

/// How a sync ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncOutcome {
    pub accepted: u64,
    pub duplicates: u64,
    pub failed: u64,
    pub expired: u64,
    pub unmapped: u64,
    pub remaining: u64,
    pub duration_ms: u64,
    pub cancelled: bool,
    /// Set when the run stopped on an error (Stripe's message, sanitized when shown).
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncEvent {
    /// Why sync cannot run now (no key, nothing to send, not built in).
    Unavailable(String),
    Ready(SyncPlan),
    Progress(SyncProgress),
    Finished(SyncOutcome),
}

/// Starts and cancels syncs; results arrive as `Event::Sync`.
pub struct SyncWorker {
    events: Sender<Event>,
    cancel: Arc<AtomicBool>,
}

/// Shown until the sync engine is wired in (see the TODO above).
pub const NOT_AVAILABLE: &str = "Stripe sync is not available in this build yet. \
     Run `meterline sync` from a build that has it.";

impl SyncWorker {
    pub fn new(events: Sender<Event>) -> SyncWorker {
        SyncWorker {
            events,
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Work out what a sync would send, for the confirmation.
    pub fn prepare(&self) {
        self.send(SyncEvent::Unavailable(NOT_AVAILABLE.to_string()));
    }

    /// Run the confirmed sync on its own thread.
    pub fn start(&self) {
        self.cancel.store(false, Ordering::SeqCst);
        self.send(SyncEvent::Unavailable(NOT_AVAILABLE.to_string()));
    }

    /// Ask a running sync to stop after its in-flight requests.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    fn send(&self, event: SyncEvent) {
        // The loop is gone only while quitting; nothing to tell then.
        let _ = self.events.send(Event::Sync(event));
    }
}
