//! The dashboard's state and `update`: Actions (and data arriving from the watcher) change
//! the state and may ask for a `Effect`, which the loop carries out. No I/O happens here, so
//! every behaviour is testable by feeding actions.

use chrono::{DateTime, Utc};

use super::action::Action;
use super::data::{AlertsView, DataEvent};
use super::keys::Mode;
use super::sync_worker::SyncEvent;
use super::table::{Order, Table};
use super::theme::Theme;
use crate::Config;
use crate::billing::WarningLevel;
use crate::store::{
    Backlog, BacklogChange, CustomerDetail, Dashboard, DashboardRow, EventRow, SyncRun,
};
use crate::stripe::{SyncPreview, SyncProgress, SyncReport};

pub use super::table::SortKey;

/// How often at most windows moved by time alone are read again.
const WINDOWS_EVERY: chrono::TimeDelta = chrono::TimeDelta::seconds(5);

/// The tabs, in Tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Overview,
    Events,
    Plans,
}

impl View {
    pub(crate) const ALL: [View; 3] = [View::Overview, View::Events, View::Plans];

    pub(crate) fn title(self) -> &'static str {
        match self {
            View::Overview => "Overview",
            View::Events => "Events",
            View::Plans => "Plans",
        }
    }

    fn step(self, by: isize) -> View {
        let i = View::ALL.iter().position(|v| *v == self).unwrap_or(0) as isize;
        View::ALL[(i + by).rem_euclid(View::ALL.len() as isize) as usize]
    }
}

/// A selection in a list taller than the screen, and the first row shown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    pub selected: usize,
    pub offset: usize,
}

impl Cursor {
    pub(crate) fn move_by(&mut self, delta: isize, len: usize, page: usize) {
        let target = self.selected.saturating_add_signed(delta);
        self.select(target, len, page);
    }

    /// Select `index` (clamped) and scroll just enough to show it.
    pub(crate) fn select(&mut self, index: usize, len: usize, page: usize) {
        let page = page.max(1);
        self.selected = index.min(len.saturating_sub(1));
        if self.selected < self.offset {
            self.offset = self.selected;
        } else if self.selected >= self.offset + page {
            self.offset = self.selected + 1 - page;
        }
        self.offset = self.offset.min(len.saturating_sub(page));
    }
}

/// The customer detail popup; `data` is None while loading.
#[derive(Debug, Clone)]
pub struct Detail {
    pub customer_id: String,
    pub data: Option<Result<Box<CustomerDetail>, String>>,
}

/// The sync flow: prepare → confirm → running (with progress) → finished.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncPopup {
    Closed,
    Preparing,
    Unavailable(String),
    Confirm(SyncPreview),
    Running {
        progress: SyncProgress,
        cancelling: bool,
    },
    /// The engine's report, or why the run failed.
    Finished(Result<SyncReport, String>),
}

/// Granting credits from the keyboard: the amount as typed, then its confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantForm {
    pub customer_id: String,
    pub name: String,
    /// Money in the plans' currency, as typed; the store reads and bounds it.
    pub amount: String,
    /// The idempotency key, made when the confirmation opens: a confirmation sent twice
    /// grants once.
    pub confirming: Option<String>,
}

/// Work the loop carries out for `update`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Quit,
    LoadDetail(String),
    LoadEvents,
    /// Read these customers' fullest windows again: time alone moved them.
    LoadWindows(Vec<String>),
    Reload,
    PrepareSync,
    StartSync,
    CancelSync,
    /// Grant `amount` of money credits to the customer, under `key`.
    GrantCredits {
        customer_id: String,
        amount: String,
        key: String,
    },
}

/// Totals for the header, over all customers (not just the filtered ones).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// The customers the table lists (archived ones only while shown).
    pub customers: usize,
    /// Archived customers the table hides (`a` shows them).
    pub archived_hidden: usize,
    /// Customers at each level, indexed like `WarningLevel::ALL`.
    pub levels: [usize; 4],
    pub backlog: Backlog,
    /// Unreported events of customers without a Stripe customer id.
    pub unmapped: i64,
    /// Customers with money credits (granted, whatever is left): the Credits column shows
    /// only when there are some.
    pub with_credits: usize,
}

pub struct App {
    pub config: Config,
    pub db_label: String,
    pub plans_label: String,
    pub theme: Theme,
    pub now: DateTime<Utc>,
    /// The customers, and the ones the table lists in order.
    table: Table,
    pub summary: Summary,
    pub sort: SortKey,
    pub reverse: bool,
    pub filter: String,
    pub filtering: bool,
    /// Archived customers are listed only when this is on (`a`).
    pub show_archived: bool,
    /// The meter every gauge of the overview shows (its id), picked with `m`; `None`: each
    /// row shows its meter nearest its limit.
    pub meter: Option<String>,
    /// The meter picker is open, on this entry: 0 is "nearest its limit", then plans.toml's
    /// meters in order.
    pub meter_picker: Option<usize>,
    pub list: Cursor,
    pub view: View,
    pub detail: Option<Detail>,
    pub help: bool,
    /// Lines of the help scrolled off its top.
    pub help_scroll: u16,
    pub sync: SyncPopup,
    /// The latest recorded sync run (any process's), for the header; None before the first.
    pub last_sync: Option<SyncRun>,
    /// Usage alerts: delivery counts and the latest ones.
    pub alerts: AlertsView,
    /// Last reconcile, events in doubt, events close to Stripe's window.
    pub checks: crate::store::StripeChecks,
    pub events: Vec<EventRow>,
    pub events_loaded: bool,
    pub events_cursor: Cursor,
    /// The selected event's detail popup is open (Enter in the Events view); it follows the
    /// selection, so ↑/↓ step through the events.
    pub event_popup: bool,
    /// Rows the lists show at the current terminal size.
    pub page: usize,
    /// The last error from the database watcher, shown in the footer.
    pub status: Option<String>,
    /// Why plans.toml did not load on the last `r`; the plans in `config` are the last good
    /// ones. Cleared by a reload that works.
    pub plans_error: Option<String>,
    /// The popup showing `plans_error` is open.
    pub plans_popup: bool,
    /// Meters the database counts otherwise than plans.toml (the Plans view says so).
    pub meter_drift: crate::store::MeterDrift,
    /// Credits being granted from the keyboard (`c`).
    pub grant: Option<GrantForm>,
    /// What the last action did, in the footer until the next key (a grant made).
    pub notice: Option<String>,
    /// Windows moved by time alone are being read again (one request at a time).
    windows_asked: bool,
    /// Not before then are they asked for again: a busy customer's sliding window frees up
    /// every second, and its events refresh it anyway.
    windows_after: DateTime<Utc>,
    pub quit: bool,
}

impl App {
    pub fn new(
        config: Config,
        db_label: String,
        plans_label: String,
        theme: Theme,
        now: DateTime<Utc>,
        dashboard: Dashboard,
    ) -> App {
        let mut app = App {
            config,
            db_label,
            plans_label,
            theme,
            now,
            table: Table::default(),
            summary: Summary::default(),
            sort: SortKey::Risk,
            reverse: false,
            filter: String::new(),
            filtering: false,
            show_archived: false,
            meter: None,
            meter_picker: None,
            list: Cursor::default(),
            view: View::Overview,
            detail: None,
            help: false,
            help_scroll: 0,
            sync: SyncPopup::Closed,
            last_sync: None,
            alerts: AlertsView::default(),
            checks: crate::store::StripeChecks::default(),
            events: Vec::new(),
            events_loaded: false,
            events_cursor: Cursor::default(),
            event_popup: false,
            page: 20,
            status: None,
            plans_error: None,
            plans_popup: false,
            meter_drift: Default::default(),
            grant: None,
            notice: None,
            windows_asked: false,
            windows_after: now,
            quit: false,
        };
        app.meter_drift = dashboard.drift;
        app.set_rows(dashboard.rows);
        app
    }

    /// Which keymap applies now.
    pub fn mode(&self) -> Mode {
        if matches!(self.sync, SyncPopup::Confirm(_)) {
            Mode::Confirm
        } else if let Some(form) = &self.grant {
            match form.confirming {
                Some(_) => Mode::Confirm,
                None => Mode::Amount,
            }
        } else if self.filtering {
            Mode::Filter
        } else {
            Mode::Normal
        }
    }

    pub fn rows(&self) -> &[DashboardRow] {
        self.table.rows()
    }

    /// The customer's row, hidden by the filter or not.
    pub fn row_of(&self, customer_id: &str) -> Option<&DashboardRow> {
        self.table
            .index_of(customer_id)
            .and_then(|i| self.rows().get(i))
    }

    /// How many rows pass the filter.
    pub fn visible_len(&self) -> usize {
        self.table.len()
    }

    /// The rows of the table from `start`, at most `count`: only these are ever rendered.
    pub fn visible_rows(&self, start: usize, count: usize) -> impl Iterator<Item = &DashboardRow> {
        self.table.listed(start, count)
    }

    /// The event the Events view's cursor is on.
    pub fn selected_event(&self) -> Option<&EventRow> {
        self.events.get(self.events_cursor.selected)
    }

    pub fn selected_row(&self) -> Option<&DashboardRow> {
        self.table.get(self.list.selected)
    }

    pub(crate) fn level_of(&self, row: &DashboardRow) -> WarningLevel {
        row.level(&self.config)
    }

    /// True when the customer's plan bills usage of the row's shown meter past its limit
    /// instead of refusing it.
    pub(crate) fn overage_billed(&self, row: &DashboardRow) -> bool {
        let Some(plan) = self.config.plan(&row.plan_id) else {
            return false;
        };
        let terms = self
            .config
            .meters
            .get(row.shown)
            .and_then(|m| plan.meters.get(&m.id));
        match terms {
            Some(terms) => terms.at_limit == crate::config::AtLimit::Overage,
            // The implicit meter's terms are the plan's own.
            None if row.meters.is_empty() => plan.at_limit == crate::config::AtLimit::Overage,
            None => false,
        }
    }

    /// True when plans.toml has several meters: the overview says which one each gauge
    /// shows, and `m` picks one.
    pub fn several_meters(&self) -> bool {
        self.config.meters.len() > 1
    }

    /// The picked meter's place in plans.toml's meters (`None`: nearest its limit).
    pub(crate) fn meter_index(&self) -> Option<usize> {
        let id = self.meter.as_deref()?;
        self.config.meters.iter().position(|m| m.id == id)
    }

    /// The terminal now shows `page` rows per list.
    pub fn set_page(&mut self, page: usize) {
        self.page = page.max(1);
        let (len, events) = (self.table.len(), self.events.len());
        self.list.select(self.list.selected, len, self.page);
        self.events_cursor
            .select(self.events_cursor.selected, events, self.page);
    }

    /// The clock moved: rows whose windows moved with time alone (a sliding window freed
    /// up, a fixed one reset) are read again.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Option<Effect> {
        self.now = now;
        if self.windows_asked || now < self.windows_after {
            return None;
        }
        let moved: Vec<String> = self
            .rows()
            .iter()
            .filter(|r| {
                let moves_at = r.window.as_ref().and_then(|w| w.moves_at);
                moves_at.is_some_and(|at| at <= now)
            })
            .map(|r| r.customer_id.clone())
            .collect();
        if moved.is_empty() {
            return None;
        }
        self.windows_asked = true;
        Some(Effect::LoadWindows(moved))
    }

    pub fn update(&mut self, action: Action) -> Option<Effect> {
        if action == Action::Quit {
            self.quit = true;
            return Some(Effect::Quit);
        }
        self.notice = None;
        if self.sync != SyncPopup::Closed {
            return self.update_sync(action);
        }
        if self.grant.is_some() {
            return self.update_grant(action);
        }
        if self.help {
            // On a short terminal the help scrolls; drawing stops it at the last line.
            let page = u16::try_from(self.page).unwrap_or(u16::MAX);
            match action {
                Action::Close | Action::Help => self.help = false,
                Action::Up => self.help_scroll = self.help_scroll.saturating_sub(1),
                Action::Down => self.help_scroll = self.help_scroll.saturating_add(1),
                Action::PageUp => self.help_scroll = self.help_scroll.saturating_sub(page),
                Action::PageDown => self.help_scroll = self.help_scroll.saturating_add(page),
                Action::Top => self.help_scroll = 0,
                _ => {}
            }
            let last = super::help::lines(self.theme).saturating_sub(1);
            self.help_scroll = self.help_scroll.min(last);
            return None;
        }
        if self.plans_popup {
            if matches!(action, Action::Close | Action::Open) {
                self.plans_popup = false;
            }
            return None;
        }
        if let Some(entry) = self.meter_picker {
            self.update_picker(entry, action);
            return None;
        }
        if self.filtering {
            return self.update_filter(action);
        }
        let page = self.page as isize;
        match action {
            Action::Up => self.move_by(-1),
            Action::Down => self.move_by(1),
            Action::PageUp => self.move_by(-page),
            Action::PageDown => self.move_by(page),
            Action::Top => self.move_by(isize::MIN / 2),
            Action::Bottom => self.move_by(isize::MAX / 2),
            Action::NextView => self.show(self.view.step(1)),
            Action::PrevView => self.show(self.view.step(-1)),
            Action::ShowOverview => self.show(View::Overview),
            Action::ShowEvents => self.show(View::Events),
            Action::ShowPlans => self.show(View::Plans),
            Action::Open => self.open_detail(),
            Action::Close if self.event_popup => {
                self.event_popup = false;
                None
            }
            Action::Close => {
                if self.detail.take().is_none() {
                    if !self.filter.is_empty() {
                        self.set_filter(String::new());
                    } else if self.meter.is_some() && self.view == View::Overview {
                        // Back to each row's meter nearest its limit.
                        self.pick_meter(None);
                    }
                }
                None
            }
            Action::PickMeter => {
                if self.several_meters() && self.view == View::Overview && self.detail.is_none() {
                    self.meter_picker = Some(self.meter_index().map_or(0, |i| i + 1));
                }
                None
            }
            Action::Help => {
                self.help = true;
                self.help_scroll = 0;
                None
            }
            Action::Filter => {
                self.detail = None;
                self.event_popup = false;
                self.view = View::Overview;
                self.filtering = true;
                None
            }
            Action::CycleSort => {
                self.sort = self.sort.next(self.config.has_windows());
                self.resort();
                None
            }
            Action::ToggleArchived => {
                self.show_archived = !self.show_archived;
                self.table.refilter();
                self.summarize();
                self.resort();
                None
            }
            Action::ReverseSort => {
                self.reverse = !self.reverse;
                self.resort();
                None
            }
            Action::Refresh => Some(Effect::Reload),
            Action::GrantCredits => {
                self.open_grant();
                None
            }
            Action::Sync => {
                self.sync = SyncPopup::Preparing;
                Some(Effect::PrepareSync)
            }
            Action::Quit
            | Action::FilterChar(_)
            | Action::FilterBackspace
            | Action::FilterDone
            | Action::AmountChar(_)
            | Action::AmountBackspace
            | Action::AmountDone
            | Action::Confirm => None,
        }
    }

    /// Start granting credits to the customer whose detail is open, or the selected one in
    /// the overview.
    fn open_grant(&mut self) {
        let customer_id = match &self.detail {
            Some(detail) => Some(detail.customer_id.clone()),
            None if self.view == View::Overview => {
                self.selected_row().map(|r| r.customer_id.clone())
            }
            None => None,
        };
        let Some(customer_id) = customer_id else {
            return;
        };
        let name = self
            .row_of(&customer_id)
            .map_or_else(|| customer_id.clone(), |r| r.name.clone());
        self.status = None;
        self.grant = Some(GrantForm {
            customer_id,
            name,
            amount: String::new(),
            confirming: None,
        });
    }

    /// A key while granting credits: typing the amount, then answering its confirmation.
    fn update_grant(&mut self, action: Action) -> Option<Effect> {
        let form = self.grant.as_mut()?;
        match (action, &form.confirming) {
            (Action::AmountChar(c), None) => form.amount.push(c),
            (Action::AmountBackspace, None) => {
                form.amount.pop();
            }
            (Action::AmountDone, None) if !form.amount.trim().is_empty() => {
                form.confirming = Some(format!("dashboard-{}", uuid::Uuid::new_v4()));
            }
            (Action::Confirm, Some(key)) => {
                let effect = Effect::GrantCredits {
                    customer_id: form.customer_id.clone(),
                    amount: form.amount.trim().to_string(),
                    key: key.clone(),
                };
                self.grant = None;
                return Some(effect);
            }
            (Action::Close, _) => self.grant = None,
            _ => {}
        }
        None
    }

    /// A key in the meter picker, open on `entry`.
    fn update_picker(&mut self, entry: usize, action: Action) {
        let last = self.config.meters.len();
        let entry = match action {
            Action::Up => entry.saturating_sub(1),
            Action::Down => (entry + 1).min(last),
            Action::PageUp | Action::Top => 0,
            Action::PageDown | Action::Bottom => last,
            Action::Open => {
                self.meter_picker = None;
                self.pick_meter(entry.checked_sub(1));
                return;
            }
            Action::Close | Action::PickMeter => {
                self.meter_picker = None;
                return;
            }
            _ => entry,
        };
        self.meter_picker = Some(entry);
    }

    /// Show meter `index` (of plans.toml's) on every row, or each row's nearest its limit.
    fn pick_meter(&mut self, index: Option<usize>) {
        self.meter = index
            .and_then(|i| self.config.meters.get(i))
            .map(|m| m.id.clone());
        let index = self.meter_index();
        for row in self.table.rows_mut() {
            row.show_meter(index);
        }
        self.summarize();
        self.resort();
    }

    fn update_filter(&mut self, action: Action) -> Option<Effect> {
        match action {
            Action::FilterChar(c) => {
                let mut filter = std::mem::take(&mut self.filter);
                filter.push(c);
                self.set_filter(filter);
            }
            Action::FilterBackspace => {
                let mut filter = std::mem::take(&mut self.filter);
                filter.pop();
                self.set_filter(filter);
            }
            Action::FilterDone => self.filtering = false,
            Action::Close => {
                self.filtering = false;
                self.set_filter(String::new());
            }
            Action::Up => return self.move_by(-1),
            Action::Down => return self.move_by(1),
            _ => {}
        }
        None
    }

    fn update_sync(&mut self, action: Action) -> Option<Effect> {
        match (&mut self.sync, action) {
            (SyncPopup::Confirm(_), Action::Confirm) => {
                self.sync = SyncPopup::Running {
                    progress: SyncProgress::default(),
                    cancelling: false,
                };
                Some(Effect::StartSync)
            }
            (SyncPopup::Running { cancelling, .. }, Action::Close) => {
                // In-flight requests finish; the worker reports how far it got.
                *cancelling = true;
                Some(Effect::CancelSync)
            }
            (SyncPopup::Running { .. }, _) => None,
            (_, Action::Close | Action::Confirm) => {
                self.sync = SyncPopup::Closed;
                None
            }
            _ => None,
        }
    }

    /// A report from the sync worker.
    pub fn on_sync(&mut self, event: SyncEvent) {
        self.sync = match (event, &self.sync) {
            // A popup closed meanwhile stays closed, unless a sync is running.
            (SyncEvent::Unavailable(_) | SyncEvent::Ready(_), SyncPopup::Closed) => return,
            (SyncEvent::Unavailable(why), _) => SyncPopup::Unavailable(why),
            (SyncEvent::Ready(plan), _) => SyncPopup::Confirm(plan),
            (SyncEvent::Progress(progress), SyncPopup::Running { cancelling, .. }) => {
                SyncPopup::Running {
                    progress,
                    cancelling: *cancelling,
                }
            }
            (SyncEvent::Progress(_), _) => return,
            (SyncEvent::Finished(outcome), _) => SyncPopup::Finished(outcome),
        };
    }

    /// Data from the watcher; may ask to reload an open detail or events list.
    pub fn apply(&mut self, event: DataEvent) -> Option<Effect> {
        match event {
            DataEvent::Loaded(dashboard) => {
                self.status = None;
                self.meter_drift = dashboard.drift;
                self.set_rows(dashboard.rows);
                self.follow_changes()
            }
            DataEvent::Changed {
                usage,
                backlog,
                credits,
            } => {
                self.status = None;
                let mut changed = Vec::new();
                for (customer_id, credits) in credits.map(|c| c.customers).unwrap_or_default() {
                    if let Some(i) = self.table.index_of(&customer_id) {
                        self.table.row_mut(i).credits = credits;
                    }
                }
                let pick = self.meter_index();
                for change in usage {
                    if let Some(i) = self.table.index_of(&change.customer_id) {
                        let row = self.table.row_mut(i);
                        row.used = change.used;
                        row.window = change.window;
                        if !change.meters.is_empty() {
                            row.meters = change.meters;
                            row.show_meter(pick);
                        }
                        row.backlog.unreported += change.new_events;
                        row.backlog.expired += change.new_expired;
                        changed.push(i);
                    }
                }
                let mut everyone = false;
                match backlog {
                    Some(BacklogChange::Customers(counts)) => {
                        for (customer_id, backlog) in counts {
                            if let Some(i) = self.table.index_of(&customer_id) {
                                self.table.row_mut(i).backlog = backlog;
                                changed.push(i);
                            }
                        }
                    }
                    Some(BacklogChange::All(counts)) => {
                        everyone = true;
                        for row in self.table.rows_mut() {
                            row.backlog = counts.get(&row.customer_id).copied().unwrap_or_default();
                        }
                    }
                    None => {}
                }
                self.summarize();
                self.reorder((!everyone).then_some(&changed[..]));
                self.follow_changes()
            }
            DataEvent::Detail {
                customer_id,
                detail,
            } => {
                if let Some(open) = &mut self.detail
                    && open.customer_id == customer_id
                {
                    open.data = Some(detail);
                }
                None
            }
            DataEvent::Windows(windows) => {
                self.windows_asked = false;
                self.windows_after = self.now + WINDOWS_EVERY;
                let mut changed = Vec::with_capacity(windows.len());
                for (customer_id, window) in windows {
                    if let Some(i) = self.table.index_of(&customer_id) {
                        self.table.row_mut(i).window = window;
                        changed.push(i);
                    }
                }
                self.reorder(Some(&changed));
                None
            }
            DataEvent::Events(events) => {
                self.events = events;
                self.events_loaded = true;
                // Nothing left to show: every event was reported meanwhile.
                self.event_popup &= !self.events.is_empty();
                let len = self.events.len();
                self.events_cursor
                    .select(self.events_cursor.selected, len, self.page);
                None
            }
            DataEvent::Plans(config) => {
                // The rows reloaded with these plans follow.
                self.config = *config;
                // A picked meter gone from plans.toml: back to the nearest its limit.
                if self.meter_index().is_none() {
                    self.meter = None;
                }
                if !self.several_meters() {
                    self.meter_picker = None;
                }
                if self.sort == SortKey::Window && !self.config.has_windows() {
                    self.sort = SortKey::Risk;
                }
                self.plans_error = None;
                self.plans_popup = false;
                None
            }
            DataEvent::PlansInvalid(message) => {
                self.plans_error = Some(message);
                self.plans_popup = true;
                None
            }
            DataEvent::Alerts(alerts) => {
                self.alerts = alerts;
                None
            }
            DataEvent::LastSync(run) => {
                self.last_sync = run;
                None
            }
            DataEvent::Checks(checks) => {
                self.checks = *checks;
                None
            }
            DataEvent::Failed(message) => {
                self.status = Some(message);
                // Whatever failed, windows may be asked for again.
                self.windows_asked = false;
                None
            }
            DataEvent::Granted(Ok(granted)) => {
                let amount = self.config.money(granted.grant.amount);
                self.notice = Some(format!(
                    "granted {amount} of credits to {}: grant {}",
                    granted.grant.customer_id, granted.grant.id
                ));
                None
            }
            DataEvent::Granted(Err(message)) => {
                self.status = Some(message);
                None
            }
        }
    }

    /// After a change, what is open on screen is read again too.
    fn follow_changes(&self) -> Option<Effect> {
        if let Some(detail) = &self.detail {
            Some(Effect::LoadDetail(detail.customer_id.clone()))
        } else if self.view == View::Events {
            Some(Effect::LoadEvents)
        } else {
            None
        }
    }

    fn show(&mut self, view: View) -> Option<Effect> {
        self.detail = None;
        self.event_popup = false;
        self.view = view;
        (view == View::Events).then_some(Effect::LoadEvents)
    }

    fn open_detail(&mut self) -> Option<Effect> {
        if self.view == View::Events {
            self.event_popup = !self.events.is_empty();
            return None;
        }
        if self.view != View::Overview || self.detail.is_some() {
            return None;
        }
        let id = self.selected_row()?.customer_id.clone();
        self.detail = Some(Detail {
            customer_id: id.clone(),
            data: None,
        });
        Some(Effect::LoadDetail(id))
    }

    fn move_by(&mut self, delta: isize) -> Option<Effect> {
        match self.view {
            View::Events => {
                let len = self.events.len();
                self.events_cursor.move_by(delta, len, self.page);
                None
            }
            View::Plans => None,
            View::Overview => {
                let len = self.table.len();
                self.list.move_by(delta, len, self.page);
                // With the detail open, moving shows the next customer's detail.
                let id = self.selected_row()?.customer_id.clone();
                let detail = self.detail.as_mut()?;
                if detail.customer_id == id {
                    return None;
                }
                *detail = Detail {
                    customer_id: id.clone(),
                    data: None,
                };
                Some(Effect::LoadDetail(id))
            }
        }
    }

    fn set_rows(&mut self, mut rows: Vec<DashboardRow>) {
        // Rows are loaded showing each one's meter nearest its limit.
        if let Some(pick) = self.meter_index() {
            for row in &mut rows {
                row.show_meter(Some(pick));
            }
        }
        self.table.set_rows(rows);
        self.summarize();
        self.resort();
    }

    fn set_filter(&mut self, filter: String) {
        self.filter = filter;
        self.resort();
    }

    fn summarize(&mut self) {
        let mut summary = Summary::default();
        for row in self.table.rows() {
            // Their unreported usage is still synced: the Stripe counts keep them.
            summary.backlog += row.backlog;
            summary.with_credits += usize::from(row.credits.is_some());
            if !row.mapped {
                summary.unmapped += row.backlog.unreported;
            }
            if row.archived && !self.show_archived {
                summary.archived_hidden += 1;
                continue;
            }
            summary.customers += 1;
            let level = row.level(&self.config);
            summary.levels[WarningLevel::ALL
                .iter()
                .position(|l| *l == level)
                .unwrap_or(0)] += 1;
        }
        self.summary = summary;
    }

    /// Filter and sort again, keeping the selected customer selected.
    fn resort(&mut self) {
        self.reorder(None);
    }

    /// Put the table in order again, keeping the selected customer selected. `changed`: the
    /// only rows whose sort keys changed (after a refresh).
    fn reorder(&mut self, changed: Option<&[usize]>) {
        let order = Order {
            sort: self.sort,
            reverse: self.reverse,
            filter: &self.filter,
            show_archived: self.show_archived,
            now: self.now,
        };
        let selected = self.table.reorder(&order, changed, self.list.selected);
        let len = self.table.len();
        self.list.select(selected, len, self.page);
    }
}
