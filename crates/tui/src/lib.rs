//! meterline's dashboard: a live terminal UI over the database.
//!
//! Shape: key → `keys::resolve` → `Action` → `App::update` → `Effect` (carried out here) →
//! `ui::draw(&App)`. The state (`app.rs`, with the customer table's sort and filter in
//! `table.rs` and the help's content in `help.rs`) does no I/O and imports no drawing; `ui/`
//! only draws. One channel feeds the loop: input, a tick, the database watcher (`data.rs`) and
//! the sync worker (`sync_worker.rs`), each reporting through `notify::Notify`. Slow work never
//! runs on this thread.
#![warn(unreachable_pub)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

use meterline_core::{Config, Error, Result, billing, clock, config, sanitize};
use meterline_store::{self as store, Store};
use meterline_stripe as stripe;

pub mod action;
pub mod app;
pub mod data;
pub mod event;
mod help;
pub mod keys;
pub mod notify;
pub mod sync_worker;
mod table;
pub mod theme;
pub mod ui;

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use app::{App, Effect};
use data::{Clock, DataEvent, DataWorker, Request};
use event::Event;
use ratatui::DefaultTerminal;
use sync_worker::{QUIT_WAIT, SyncWorker};
use theme::Theme;

/// What the dashboard opens.
pub struct Options {
    pub db: PathBuf,
    /// How the header names the database (a demo says so).
    pub db_label: String,
    /// The plans file `r` reads again; None for the built-in example plans.
    pub plans: Option<PathBuf>,
    pub plans_label: String,
    pub config: Config,
    /// A pretended current time (`--now`); None follows the clock.
    pub now: Option<chrono::DateTime<chrono::Utc>>,
    pub theme: Theme,
}

/// Run the dashboard until the user quits. The terminal is restored on every exit path,
/// panics included.
pub fn run(options: Options) -> Result<()> {
    let clock = Clock::fixed_or_real(options.now);
    // Open and load before taking over the terminal, so a bad database is a plain error.
    let dashboard = Store::open(&options.db)?.dashboard(&options.config, clock.now())?;
    let (tx, rx) = channel();
    let data = DataWorker::spawn(
        options.db.clone(),
        options.plans.clone(),
        options.config.clone(),
        clock,
        &dashboard,
        tx.clone(),
    )?;
    // The sync runs on the real clock whatever `--now` says: its expiry marks are permanent.
    // The key is read from the environment here, once.
    let mut sync = SyncWorker::new(
        tx.clone(),
        options.db.clone(),
        options.config.clone(),
        crate::stripe::ApiKey::from_env(),
        crate::stripe::SyncOptions::default(),
    );
    let mut app = App::new(
        options.config,
        options.db_label,
        options.plans_label,
        options.theme,
        clock.now(),
        dashboard,
    );
    install_panic_message();
    // ratatui::try_init wraps the hook above with one that restores the terminal first.
    let mut terminal = match ratatui::try_init() {
        Ok(terminal) => terminal,
        Err(e) => {
            // Raw mode may be on already: leave the terminal as it was.
            if ratatui::crossterm::terminal::is_raw_mode_enabled().unwrap_or(false) {
                ratatui::restore();
            }
            return Err(terminal_error(e));
        }
    };
    let result = event_loop(&mut terminal, &mut app, &rx, tx, clock, &data, &mut sync);
    ratatui::restore();
    // The terminal is back; a sync cut short by quitting records its in-flight requests.
    sync.finish(QUIT_WAIT);
    result
}

fn event_loop(
    terminal: &mut DefaultTerminal,
    app: &mut App,
    rx: &Receiver<Event>,
    tx: Sender<Event>,
    clock: Clock,
    data: &DataWorker,
    sync: &mut SyncWorker,
) -> Result<()> {
    event::spawn_input(tx.clone());
    event::spawn_ticker(tx, Duration::from_secs(1));
    resize(terminal, app)?;
    loop {
        terminal
            .draw(|frame| ui::draw(frame, app))
            .map_err(terminal_error)?;
        let Ok(mut next) = rx.recv() else {
            return Ok(());
        };
        // Handle everything already queued, then draw once.
        loop {
            let command = match next {
                Event::Key(key) => keys::resolve(app.mode(), &key).and_then(|a| app.update(a)),
                Event::Resize => {
                    resize(terminal, app)?;
                    None
                }
                Event::Tick => app.tick(clock.now()),
                Event::Data(event) => apply_data(app, sync, event),
                Event::Sync(event) => {
                    app.on_sync(event);
                    None
                }
            };
            match command {
                Some(Effect::Quit) => return Ok(()),
                Some(command) => carry_out(command, data, sync),
                None => {}
            }
            match rx.try_recv() {
                Ok(event) => next = event,
                Err(_) => break,
            }
        }
    }
}

/// Data from the watcher: to the app, and reloaded plans to the sync worker too.
pub fn apply_data(app: &mut App, sync: &mut SyncWorker, event: DataEvent) -> Option<Effect> {
    if let DataEvent::Plans(config) = &event {
        sync.set_config(Config::clone(config));
    }
    app.apply(event)
}

/// Carry out what `App::update` asked for (Quit is the loop's own business).
pub fn carry_out(command: Effect, data: &DataWorker, sync: &mut SyncWorker) {
    match command {
        Effect::Quit => {}
        Effect::LoadDetail(id) => data.request(Request::Detail(id)),
        Effect::LoadEvents => data.request(Request::Events),
        Effect::LoadWindows(customers) => data.request(Request::Windows(customers)),
        Effect::Reload => data.request(Request::Reload),
        Effect::PrepareSync => sync.prepare(),
        Effect::StartSync => sync.start(),
        Effect::CancelSync => sync.cancel(),
        Effect::GrantCredits {
            customer_id,
            amount,
            key,
        } => {
            let mut grant = crate::store::NewGrant::new(&customer_id, &amount);
            grant.key = Some(key);
            data.request(Request::Grant(Box::new(grant)));
        }
    }
}

fn resize(terminal: &mut DefaultTerminal, app: &mut App) -> Result<()> {
    let size = terminal.size().map_err(terminal_error)?;
    app.set_page(ui::list_rows(size.width, size.height));
    Ok(())
}

fn terminal_error(e: std::io::Error) -> Error {
    Error::InvalidInput(format!(
        "the dashboard needs an interactive terminal ({e}); for scripts use `meterline status`"
    ))
}

/// Say where to look after a crash; the data is safe because every write is a transaction.
fn install_panic_message() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        eprintln!("meterline: the dashboard crashed; the database is unchanged by the dashboard.");
    }));
}
