//! The database side of the dashboard: a thread with its own connection that answers
//! requests (detail, events, reload) and watches for changes by other processes.
//!
//! `PRAGMA data_version` on this connection changes only when another connection commits, so
//! polling it every 250 ms costs nothing; only then are the change marks compared and just the
//! changed part read again (see store/dashboard.rs). The latest sync run is read then too (one
//! row by primary key), so the header's "last sync" follows syncs run anywhere.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::event::Event;
use crate::store::{
    BacklogChange, CustomerDetail, Dashboard, EventRow, Refresh, SyncRun, UsageChange,
};
use crate::{Config, Result, Store};

/// How often the watcher looks for commits by other processes.
pub const POLL: Duration = Duration::from_millis(250);
/// How many events the Events view lists.
pub const EVENTS_LIMIT: usize = 500;

/// The current time, or a pretended one (`--now`).
#[derive(Debug, Clone, Copy)]
pub struct Clock(pub Option<DateTime<Utc>>);

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        self.0.unwrap_or_else(Utc::now)
    }
}

#[derive(Debug)]
pub enum Request {
    Detail(String),
    Events,
    Reload,
}

#[derive(Debug)]
pub enum DataEvent {
    Loaded(Dashboard),
    Changed {
        usage: Vec<UsageChange>,
        backlog: Option<BacklogChange>,
    },
    Detail {
        customer_id: String,
        detail: std::result::Result<Box<CustomerDetail>, String>,
    },
    Events(Vec<EventRow>),
    /// The latest sync run changed (or was first read).
    LastSync(Option<SyncRun>),
    Failed(String),
}

/// Handle to the watcher thread.
pub struct DataWorker {
    requests: Sender<Request>,
}

impl DataWorker {
    /// Start watching `db` from the state `loaded` describes.
    pub fn spawn(
        db: PathBuf,
        config: Config,
        clock: Clock,
        loaded: &Dashboard,
        events: Sender<Event>,
    ) -> Result<DataWorker> {
        let store = Store::open(&db)?;
        let (requests, inbox) = channel();
        let mut watcher = Watcher {
            version: store.data_version()?,
            store,
            config,
            clock,
            marks: loaded.marks,
            rollover: loaded.next_rollover(),
            last_sync: None,
            events,
        };
        thread::spawn(move || watcher.run(inbox));
        Ok(DataWorker { requests })
    }

    pub fn request(&self, request: Request) {
        // Only fails once the watcher is gone, i.e. while quitting.
        let _ = self.requests.send(request);
    }
}

struct Watcher {
    store: Store,
    config: Config,
    clock: Clock,
    version: i64,
    marks: crate::store::ChangeMarks,
    rollover: Option<DateTime<Utc>>,
    last_sync: Option<SyncRun>,
    events: Sender<Event>,
}

impl Watcher {
    fn run(&mut self, inbox: Receiver<Request>) {
        let first = self.read_last_sync(true).map(|e| e.into_iter().collect());
        if !self.deliver(first) {
            return;
        }
        loop {
            let result = match inbox.recv_timeout(POLL) {
                Ok(request) => self.answer(request),
                Err(RecvTimeoutError::Timeout) => self.poll(),
                Err(RecvTimeoutError::Disconnected) => return,
            };
            if !self.deliver(result) {
                return;
            }
        }
    }

    /// Send the events (or the error) to the loop; false once the loop has gone.
    fn deliver(&self, result: Result<Vec<DataEvent>>) -> bool {
        let events = match result {
            Ok(events) => events,
            Err(e) => vec![DataEvent::Failed(e.to_string())],
        };
        events
            .into_iter()
            .all(|event| self.events.send(Event::Data(event)).is_ok())
    }

    /// The latest sync run, when it differs from the one last sent (or `always`).
    fn read_last_sync(&mut self, always: bool) -> Result<Option<DataEvent>> {
        let run = self.store.last_sync_run()?;
        if !always && run == self.last_sync {
            return Ok(None);
        }
        self.last_sync = run.clone();
        Ok(Some(DataEvent::LastSync(run)))
    }

    fn answer(&mut self, request: Request) -> Result<Vec<DataEvent>> {
        let now = self.clock.now();
        Ok(vec![match request {
            Request::Detail(customer_id) => {
                let detail = self
                    .store
                    .customer_detail(&self.config, &customer_id, now)
                    .map(Box::new)
                    .map_err(|e| e.to_string());
                DataEvent::Detail {
                    customer_id,
                    detail,
                }
            }
            Request::Events => DataEvent::Events(self.store.problem_events(EVENTS_LIMIT)?),
            Request::Reload => {
                let last_sync = self.read_last_sync(true)?;
                return Ok([Some(self.reload(now)?), last_sync]
                    .into_iter()
                    .flatten()
                    .collect());
            }
        }])
    }

    fn reload(&mut self, now: DateTime<Utc>) -> Result<DataEvent> {
        let dashboard = self.store.dashboard(&self.config, now)?;
        self.marks = dashboard.marks;
        self.rollover = dashboard.next_rollover();
        Ok(DataEvent::Loaded(dashboard))
    }

    /// Read again only what another process changed; reload when a period rolled over.
    fn poll(&mut self) -> Result<Vec<DataEvent>> {
        let now = self.clock.now();
        if self.rollover.is_some_and(|at| now >= at) {
            return Ok(vec![self.reload(now)?]);
        }
        let version = self.store.data_version()?;
        if version == self.version {
            return Ok(Vec::new());
        }
        self.version = version;
        let rows = match self
            .store
            .dashboard_refresh(&self.config, self.marks, now)?
        {
            Refresh::Unchanged => None,
            Refresh::Full(dashboard) => {
                self.marks = dashboard.marks;
                self.rollover = dashboard.next_rollover();
                Some(DataEvent::Loaded(dashboard))
            }
            Refresh::Partial {
                usage,
                backlog,
                marks,
            } => {
                self.marks = marks;
                Some(DataEvent::Changed { usage, backlog })
            }
        };
        Ok([rows, self.read_last_sync(false)?]
            .into_iter()
            .flatten()
            .collect())
    }
}
