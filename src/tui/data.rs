//! The database side of the dashboard: a thread with its own connection that answers
//! requests (detail, events, reload) and watches for changes by other processes.
//!
//! `PRAGMA data_version` on this connection changes only when another connection commits, so
//! polling it every 250 ms costs nothing; only then are the change marks compared and just the
//! changed part read again (see store/dashboard.rs).

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::event::Event;
use crate::store::{BacklogChange, CustomerDetail, Dashboard, EventRow, Refresh, UsageChange};
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
    events: Sender<Event>,
}

impl Watcher {
    fn run(&mut self, inbox: Receiver<Request>) {
        loop {
            let result = match inbox.recv_timeout(POLL) {
                Ok(request) => self.answer(request),
                Err(RecvTimeoutError::Timeout) => self.poll(),
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let sent = match result {
                Ok(Some(event)) => self.events.send(Event::Data(event)),
                Ok(None) => Ok(()),
                Err(e) => self
                    .events
                    .send(Event::Data(DataEvent::Failed(e.to_string()))),
            };
            if sent.is_err() {
                return;
            }
        }
    }

    fn answer(&mut self, request: Request) -> Result<Option<DataEvent>> {
        let now = self.clock.now();
        Ok(Some(match request {
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
            Request::Reload => self.reload(now)?,
        }))
    }

    fn reload(&mut self, now: DateTime<Utc>) -> Result<DataEvent> {
        let dashboard = self.store.dashboard(&self.config, now)?;
        self.marks = dashboard.marks;
        self.rollover = dashboard.next_rollover();
        Ok(DataEvent::Loaded(dashboard))
    }

    /// Read again only what another process changed; reload when a period rolled over.
    fn poll(&mut self) -> Result<Option<DataEvent>> {
        let now = self.clock.now();
        if self.rollover.is_some_and(|at| now >= at) {
            return self.reload(now).map(Some);
        }
        let version = self.store.data_version()?;
        if version == self.version {
            return Ok(None);
        }
        self.version = version;
        Ok(
            match self
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
            },
        )
    }
}
