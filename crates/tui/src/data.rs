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

use super::notify::Notify;
use crate::store::{
    AlertCounts, BacklogChange, CreditColumn, CustomerDetail, Dashboard, EventRow, Granted,
    NewGrant, RecentAlert, Refresh, SyncRun, TightestWindow, UsageChange,
};
use crate::{Config, Result, Store};

/// How often the watcher looks for commits by other processes.
pub(crate) const POLL: Duration = Duration::from_millis(250);
/// How many events the Events view lists.
pub const EVENTS_LIMIT: usize = 500;
/// How many recent alerts the Plans view lists.
pub const ALERTS_LIMIT: usize = 20;

/// Usage alerts for the dashboard: delivery counts (header) and the latest alerts (Plans view).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertsView {
    pub counts: AlertCounts,
    pub recent: Vec<RecentAlert>,
}

pub use crate::clock::Clock;

#[derive(Debug)]
pub(crate) enum Request {
    Detail(String),
    Events,
    Reload,
    /// Grant credits (from the keyboard, confirmed).
    Grant(Box<NewGrant>),
    /// The fullest window of these customers again: time alone moved them.
    Windows(Vec<String>),
}

#[derive(Debug)]
pub enum DataEvent {
    Loaded(Dashboard),
    Changed {
        usage: Vec<UsageChange>,
        backlog: Option<BacklogChange>,
        credits: Option<CreditColumn>,
    },
    Detail {
        customer_id: String,
        detail: std::result::Result<Box<CustomerDetail>, String>,
    },
    Events(Vec<EventRow>),
    /// Customers' fullest windows read again ([`Request::Windows`]).
    Windows(Vec<(String, Option<TightestWindow>)>),
    /// plans.toml was read again (`r`); the rows that follow use it.
    Plans(Box<Config>),
    /// plans.toml could not be read again: why. The last good plans stay in use.
    PlansInvalid(String),
    /// The latest sync run changed (or was first read).
    LastSync(Option<SyncRun>),
    /// Alerts or their deliveries changed (or were first read).
    Alerts(AlertsView),
    /// Reconcile, doubt or expiry counts changed (or were first read).
    Checks(Box<crate::store::StripeChecks>),
    Failed(String),
    /// A grant made from the keyboard, or the store's reason for refusing it.
    Granted(std::result::Result<Box<Granted>, String>),
}

/// Handle to the watcher thread.
pub struct DataWorker {
    requests: Sender<Request>,
}

impl DataWorker {
    /// Start watching `db` from the state `loaded` describes. `plans` is the file a reload
    /// reads again (None: built-in plans, nothing to reload).
    pub fn spawn(
        db: PathBuf,
        plans: Option<PathBuf>,
        config: Config,
        clock: Clock,
        loaded: &Dashboard,
        events: impl Notify<DataEvent>,
    ) -> Result<DataWorker> {
        let mut watcher = Watcher::new(Store::open(&db)?, config, clock, loaded, Box::new(events))?;
        watcher.plans = plans;
        let (requests, inbox) = channel();
        thread::spawn(move || watcher.run(inbox));
        Ok(DataWorker { requests })
    }

    pub(crate) fn request(&self, request: Request) {
        // Only fails once the watcher is gone, i.e. while quitting.
        let _ = self.requests.send(request);
    }
}

struct Watcher {
    store: Store,
    plans: Option<PathBuf>,
    config: Config,
    clock: Clock,
    version: i64,
    marks: crate::store::ChangeMarks,
    rollover: Option<DateTime<Utc>>,
    last_sync: Option<SyncRun>,
    alerts: Option<AlertsView>,
    checks: Option<crate::store::StripeChecks>,
    events: Box<dyn Notify<DataEvent>>,
}

impl Watcher {
    fn new(
        store: Store,
        config: Config,
        clock: Clock,
        loaded: &Dashboard,
        events: Box<dyn Notify<DataEvent>>,
    ) -> Result<Watcher> {
        Ok(Watcher {
            version: store.data_version()?,
            store,
            plans: None,
            config,
            clock,
            marks: loaded.marks,
            rollover: loaded.next_rollover(),
            last_sync: None,
            alerts: None,
            checks: None,
            events,
        })
    }

    fn run(&mut self, inbox: Receiver<Request>) {
        let first = self
            .read_last_sync(true)
            .and_then(|sync| Ok(sync.into_iter().chain(self.read_alerts()?).collect()));
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
        events.into_iter().all(|event| self.events.notify(event))
    }

    /// The latest sync run, when it differs from the one last sent (or `always`).
    fn read_last_sync(&mut self, always: bool) -> Result<Option<DataEvent>> {
        let run = self.store.last_sync_run()?;
        if let Some(checks) = self.read_checks()? {
            self.deliver(Ok(vec![checks]));
        }
        Ok(self.last_sync_event(run, always))
    }

    /// Reconcile, doubt and expiry counts, when they differ from the ones last sent.
    fn read_checks(&mut self) -> Result<Option<DataEvent>> {
        let days = self.config.stripe.expiry_warning_days;
        let checks = self.store.stripe_checks(self.clock.now(), days)?;
        if self.checks.as_ref() == Some(&checks) {
            return Ok(None);
        }
        self.checks = Some(checks.clone());
        Ok(Some(DataEvent::Checks(Box::new(checks))))
    }

    fn last_sync_event(&mut self, run: Option<SyncRun>, always: bool) -> Option<DataEvent> {
        if !always && run == self.last_sync {
            return None;
        }
        self.last_sync = run.clone();
        Some(DataEvent::LastSync(run))
    }

    /// Alerts and delivery counts, when they differ from what was last sent.
    fn read_alerts(&mut self) -> Result<Option<DataEvent>> {
        let view = AlertsView {
            counts: self.store.alert_counts()?,
            recent: self.store.recent_alerts(ALERTS_LIMIT)?,
        };
        if self.alerts.as_ref() == Some(&view) {
            return Ok(None);
        }
        self.alerts = Some(view.clone());
        Ok(Some(DataEvent::Alerts(view)))
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
            Request::Events => DataEvent::Events(self.store.problem_events(EVENTS_LIMIT, now)?),
            Request::Windows(customers) => {
                DataEvent::Windows(self.store.customer_windows(&self.config, &customers, now)?)
            }
            Request::Grant(grant) => {
                let granted = self.store.grant_credits(&self.config, &grant, now);
                let wrote = granted.is_ok();
                let mut events = vec![DataEvent::Granted(
                    granted.map(Box::new).map_err(|e| e.to_string()),
                )];
                // This connection's own commit does not move its data_version: read the
                // change now rather than wait for another process's.
                if wrote {
                    events.extend(self.refresh(self.store.data_version()?)?);
                }
                return Ok(events);
            }
            Request::Reload => {
                // Sent at once: the app must follow the watcher's plans even if the
                // database read below fails.
                if let Some(event) = self.reload_plans() {
                    self.deliver(Ok(vec![event]));
                }
                let last_sync = self.read_last_sync(true)?;
                return Ok([Some(self.reload(now)?), last_sync]
                    .into_iter()
                    .flatten()
                    .collect());
            }
        }])
    }

    /// Read plans.toml again; a file that does not load leaves the last good plans in use.
    fn reload_plans(&mut self) -> Option<DataEvent> {
        let path = self.plans.as_ref()?;
        Some(match Config::load(path) {
            Ok(config) => {
                self.config = config.clone();
                DataEvent::Plans(Box::new(config))
            }
            Err(e) => DataEvent::PlansInvalid(e.to_string()),
        })
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
        self.refresh(version)
    }

    /// Read what changed since the marks last read, then take `version` as seen.
    fn refresh(&mut self, version: i64) -> Result<Vec<DataEvent>> {
        let now = self.clock.now();
        let refresh = self
            .store
            .dashboard_refresh(&self.config, self.marks, now)?;
        let last_sync = self.store.last_sync_run()?;
        let alerts = self.read_alerts()?;
        let checks = self.read_checks()?;
        // Everything is read: only now does the watcher move on. A failure above leaves
        // version and marks as they were, so the next poll reads the same change again
        // instead of losing it (no other commit may come to announce it).
        self.version = version;
        let rows = match refresh {
            Refresh::Unchanged => None,
            Refresh::Full(dashboard) => {
                self.marks = dashboard.marks;
                self.rollover = dashboard.next_rollover();
                Some(DataEvent::Loaded(dashboard))
            }
            Refresh::Partial {
                usage,
                backlog,
                credits,
                marks,
            } => {
                self.marks = marks;
                // A grant made now may take effect or expire before the next reload.
                let next = credits.as_ref().and_then(|c| c.next_change);
                self.rollover = self.rollover.into_iter().chain(next).min();
                Some(DataEvent::Changed {
                    usage,
                    backlog,
                    credits,
                })
            }
        };
        Ok(
            [rows, self.last_sync_event(last_sync, false), alerts, checks]
                .into_iter()
                .flatten()
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::channel;

    use chrono::{Duration, NaiveDate, TimeZone, Utc};

    use super::{Clock, DataEvent, Watcher};
    use crate::store::{NewCustomer, SyncRun};
    use crate::{Config, Store};
    use meterline_core::RecordRequest;

    #[test]
    fn a_failed_refresh_is_tried_again_on_the_next_poll() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("m.db");
        let config = Config::parse(crate::config::EXAMPLE_PLANS, "example plans").unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap();
        let mut writer = Store::open(&path).unwrap();
        let acme = NewCustomer {
            id: "acme".into(),
            name: None,
            plan_id: "free".into(),
            stripe_customer_id: None,
            billing_anchor: Some(NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()),
        };
        writer.add_customer(&config, &acme, now).unwrap();
        let loaded = writer.dashboard(&config, now).unwrap();
        let (tx, _rx) = channel::<DataEvent>();
        let mut watcher = Watcher::new(
            Store::open(&path).unwrap(),
            config.clone(),
            Clock::fixed(now),
            &loaded,
            Box::new(tx),
        )
        .unwrap();

        // Another process records usage, and a sync run row the watcher cannot read yet.
        let request = RecordRequest::new("acme", 5, now - Duration::hours(1));
        writer.record(&config, &request, now).unwrap();
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute(
                "INSERT INTO sync_runs (id, started_at, outcome, attempted)
                 VALUES (1, '2026-11-20T11:00:00Z', 'running', 'not a number')",
                [],
            )
            .unwrap();
        assert!(watcher.poll().is_err());

        // The row is repaired through the watcher's own connection, whose commits do not
        // move its data_version: like a transient error clearing, nothing new announces
        // the change, so only a retry finds it.
        let run = SyncRun {
            id: 1,
            started_at: "2026-11-20T11:00:00Z".into(),
            finished_at: Some("2026-11-20T11:01:00Z".into()),
            outcome: "completed".into(),
            attempted: 0,
            accepted: 0,
            duplicates: 0,
            failed: 0,
            expired: 0,
            unmapped: 0,
            remaining: 0,
            error: None,
        };
        watcher.store.finish_sync_run(&run).unwrap();
        let events = watcher.poll().unwrap();
        assert!(
            events
                .iter()
                .any(|e| matches!(e, DataEvent::Changed { usage, .. }
                if usage.iter().any(|u| u.customer_id == "acme" && u.used == 5))),
            "{events:?}"
        );
        assert!(
            events
                .iter()
                .any(|e| matches!(e, DataEvent::LastSync(Some(r)) if r.outcome == "completed")),
            "{events:?}"
        );
        // And once read, the change is not reported twice.
        assert!(watcher.poll().unwrap().is_empty());
    }

    #[test]
    fn a_grant_from_the_keyboard_is_written_and_read_again_at_once() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("m.db");
        let config = Config::parse(crate::config::EXAMPLE_PLANS, "example plans").unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap();
        let mut writer = Store::open(&path).unwrap();
        let acme = NewCustomer {
            id: "acme".into(),
            name: None,
            plan_id: "pro".into(),
            stripe_customer_id: None,
            billing_anchor: Some(NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()),
        };
        writer.add_customer(&config, &acme, now).unwrap();
        let loaded = writer.dashboard(&config, now).unwrap();
        let (tx, _rx) = channel::<DataEvent>();
        let mut watcher = Watcher::new(
            Store::open(&path).unwrap(),
            config,
            Clock::fixed(now),
            &loaded,
            Box::new(tx),
        )
        .unwrap();

        // Its own commit does not move its data_version: the answer carries the new credits.
        let grant = crate::store::NewGrant::new("acme", "12.5");
        let events = watcher
            .answer(super::Request::Grant(Box::new(grant)))
            .unwrap();
        assert!(
            matches!(&events[0], DataEvent::Granted(Ok(g)) if g.grant.customer_id == "acme"),
            "{events:?}"
        );
        let credits = events.iter().find_map(|e| match e {
            DataEvent::Changed { credits, .. } => credits.clone(),
            _ => None,
        });
        assert_eq!(
            credits.map(|c| c.customers["acme"]),
            Some(Some(rust_decimal::Decimal::new(125, 1))),
            "{events:?}"
        );
        assert!(watcher.poll().unwrap().is_empty());

        // A refused grant: the store's words, nothing read again.
        let events = watcher
            .answer(super::Request::Grant(Box::new(
                crate::store::NewGrant::new("acme", "0"),
            )))
            .unwrap();
        assert!(
            matches!(&events[..], [DataEvent::Granted(Err(e))] if e.contains("more than 0")),
            "{events:?}"
        );
    }
}
