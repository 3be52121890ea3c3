//! The dashboard's sync flow for real: key presses through the App, the SyncWorker running the
//! engine on its own thread against the Stripe-like server on loopback, the database watcher
//! bringing the new state and the last sync into the header, all on a real SQLite file. The
//! key is handed to the worker as the dashboard hands it the one in STRIPE_API_KEY, and the
//! fake server is plans.toml's `api_base`: nothing here touches the process's environment.

use std::collections::HashSet;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use crate::support::engine::{Engine, engine_tests};
use crate::support::stripe::{Env, Fault, KEY, PLANS, now};
use meterline::store::LockHolder;
use meterline::{Error, Result};
use meterline_stripe::{ApiKey, SyncProgress, SyncReport};
use meterline_tui::app::{App, SyncPopup};
use meterline_tui::data::{Clock, DataWorker};
use meterline_tui::event::Event;
use meterline_tui::sync_worker::{NO_KEY, SyncEvent, SyncWorker};
use meterline_tui::theme::Theme;
use meterline_tui::{apply_data, carry_out, keys, ui};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

engine_tests!(
    s_then_y_sends_every_event_once_with_progress_and_the_header_follows,
    esc_cancels_after_the_requests_in_flight_and_nothing_is_half_marked,
    without_a_key_s_explains_how_to_set_one_and_sends_nothing,
    a_sync_already_running_elsewhere_is_a_clear_message,
    a_refused_key_fails_cleanly_and_the_key_never_shows,
    unusable_settings_are_explained_in_the_popup_before_anything_is_sent,
    r_reloads_plans_toml_and_an_invalid_file_keeps_the_last_good_plans,
);

const DEADLINE: Duration = Duration::from_secs(30);

/// Events of three mapped customers, and plans.toml sending to the fake server.
fn seeded(engine: Engine) -> Env {
    let env = Env::seeded(engine, PLANS);
    env.plans_at_server();
    env
}

/// The test key, as the dashboard passes it when STRIPE_API_KEY holds it.
fn key() -> Result<ApiKey> {
    ApiKey::new(KEY)
}

/// The dashboard without a terminal: the app, its two workers and the loop's channel.
struct Dashboard {
    app: App,
    data: DataWorker,
    sync: SyncWorker,
    rx: Receiver<Event>,
    /// Every sync event seen, in order.
    seen: Vec<SyncEvent>,
}

impl Dashboard {
    /// The dashboard on `env` with `key` (`Err(Error::MissingApiKey)`: none set).
    fn open(env: &Env, key: Result<ApiKey>) -> Dashboard {
        let config = env.config();
        let clock = Clock::fixed(now());
        let loaded = env.store().dashboard(&config, now()).unwrap();
        let (tx, rx) = channel();
        let data = DataWorker::spawn(
            env.db.clone(),
            Some(env.plans.clone()),
            config.clone(),
            clock,
            &loaded,
            tx.clone(),
        )
        .unwrap();
        let options = meterline_stripe::SyncOptions {
            backoff: Some(Duration::from_millis(10)),
            ..Default::default()
        };
        let sync = SyncWorker::new(tx, env.db.clone(), config.clone(), key, options);
        let app = App::new(
            config,
            "test.db".into(),
            "plans.toml".into(),
            Theme::COLOR,
            now(),
            loaded,
        );
        Dashboard {
            app,
            data,
            sync,
            rx,
            seen: Vec::new(),
        }
    }

    /// A key press as the loop handles it.
    fn press(&mut self, code: KeyCode) {
        let key = KeyEvent::new(code, KeyModifiers::NONE);
        let command = keys::resolve(self.app.mode(), &key).and_then(|a| self.app.update(a));
        if let Some(command) = command {
            carry_out(command, &self.data, &mut self.sync);
        }
    }

    /// Handle events as the loop does until `done` holds.
    fn until(&mut self, what: &str, done: impl Fn(&App) -> bool) {
        let start = Instant::now();
        while !done(&self.app) {
            assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting for {what}; popup: {:?}",
                self.app.sync
            );
            let command = match self.rx.recv_timeout(Duration::from_millis(50)) {
                Ok(Event::Sync(event)) => {
                    self.seen.push(event.clone());
                    self.app.on_sync(event);
                    None
                }
                Ok(Event::Data(event)) => apply_data(&mut self.app, &mut self.sync, event),
                Ok(_) | Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => panic!("the workers went away"),
            };
            if let Some(command) = command {
                carry_out(command, &self.data, &mut self.sync);
            }
        }
    }

    /// `s`, then wait for the confirmation.
    fn open_confirmation(&mut self) {
        self.press(KeyCode::Char('s'));
        self.until("the confirmation", |app| {
            matches!(app.sync, SyncPopup::Confirm(_))
        });
    }

    fn finished(&mut self) -> Result<SyncReport, String> {
        self.until("the sync to finish", |app| {
            matches!(app.sync, SyncPopup::Finished(_))
        });
        match &self.app.sync {
            SyncPopup::Finished(result) => result.clone(),
            _ => unreachable!(),
        }
    }

    fn progress(&self) -> Vec<SyncProgress> {
        self.seen
            .iter()
            .filter_map(|e| match e {
                SyncEvent::Progress(p) => Some(p.clone()),
                _ => None,
            })
            .collect()
    }
}

fn identifiers_reported(env: &Env) -> HashSet<String> {
    env.inspect()
        .rows("SELECT stripe_identifier FROM usage_events WHERE stripe_reported_at IS NOT NULL")
        .into_iter()
        .map(|r| r[0].clone())
        .collect()
}

fn s_then_y_sends_every_event_once_with_progress_and_the_header_follows(engine: Engine) {
    let env = seeded(engine);
    env.server.set_delay(Duration::from_millis(2));
    let mut dash = Dashboard::open(&env, key());
    assert_eq!(dash.app.summary.backlog.unreported, 90);
    assert_eq!(dash.app.last_sync, None);

    dash.press(KeyCode::Char('s'));
    assert_eq!(dash.app.sync, SyncPopup::Preparing);
    dash.until("the confirmation", |app| {
        matches!(app.sync, SyncPopup::Confirm(_))
    });
    let SyncPopup::Confirm(preview) = &dash.app.sync else {
        unreachable!()
    };
    assert_eq!(
        (
            preview.events,
            preview.customers,
            preview.live,
            preview.api_host.as_str()
        ),
        (90, 3, false, "127.0.0.1")
    );
    assert!(preview.groups.is_empty(), "totals only in the popup");
    assert_eq!(env.server.requests(), 0, "the preview sends nothing");

    dash.press(KeyCode::Char('y'));
    let report = dash.finished().expect("the sync succeeds");
    assert_eq!(
        (
            report.attempted,
            report.accepted,
            report.failed,
            report.remaining
        ),
        (90, 90, 0, 0)
    );
    assert!(report.all_delivered());
    env.assert_exactly_once();
    // Progress came in steps, never went back, and ended at the total.
    let progress = dash.progress();
    assert!(progress.len() >= 2, "{progress:?}");
    assert!(
        progress
            .windows(2)
            .all(|w| w[0].attempted <= w[1].attempted)
    );
    let last = progress.last().unwrap();
    assert_eq!((last.total, last.attempted, last.accepted), (90, 90, 90));

    // The watcher sees the sync's commits: backlog gone, the run in the header.
    dash.until("the header to show the sync", |app| {
        app.summary.backlog.unreported == 0
            && app
                .last_sync
                .as_ref()
                .is_some_and(|r| r.outcome == "completed" && r.accepted == 90)
    });
    dash.press(KeyCode::Esc);
    assert_eq!(dash.app.sync, SyncPopup::Closed);
}

fn esc_cancels_after_the_requests_in_flight_and_nothing_is_half_marked(engine: Engine) {
    let env = seeded(engine);
    // Three customers, one request in flight each: about 30 rounds of 40 ms.
    env.server.set_delay(Duration::from_millis(40));
    let mut dash = Dashboard::open(&env, key());
    dash.open_confirmation();
    dash.press(KeyCode::Enter);
    dash.until(
        "some progress",
        |app| matches!(&app.sync, SyncPopup::Running { progress, .. } if progress.attempted >= 6),
    );
    dash.press(KeyCode::Esc);
    assert!(matches!(
        dash.app.sync,
        SyncPopup::Running {
            cancelling: true,
            ..
        }
    ));
    // Keys other than quit wait for the worker while it winds down.
    dash.press(KeyCode::Esc);
    dash.press(KeyCode::Char('s'));
    let report = dash.finished().expect("a cancelled sync is not an error");
    assert_eq!(
        report.stopped.as_deref(),
        Some(meterline_stripe::sync::CANCELLED)
    );
    assert!(report.attempted >= 6 && report.attempted < 90, "{report:?}");

    // What Stripe has is exactly what the database marks reported: nothing half-marked.
    let accepted: HashSet<String> = env.server.accepted().into_keys().collect();
    assert_eq!(accepted.len() as u64, report.accepted);
    assert_eq!(identifiers_reported(&env), accepted);
    assert!(env.server.posts().values().all(|&n| n == 1));
    dash.until("the header to say cancelled", |app| {
        app.last_sync
            .as_ref()
            .is_some_and(|r| r.outcome == "cancelled")
    });

    // A second sync sends the rest; each event still reaches Stripe once.
    env.server.set_delay(Duration::ZERO);
    dash.press(KeyCode::Esc);
    dash.press(KeyCode::Char('s'));
    dash.until(
        "the confirmation",
        |app| matches!(&app.sync, SyncPopup::Confirm(p) if p.events == 90 - report.accepted),
    );
    dash.press(KeyCode::Char('y'));
    let rest = dash.finished().unwrap();
    assert_eq!(rest.accepted + report.accepted, 90);
    env.assert_exactly_once();
}

fn without_a_key_s_explains_how_to_set_one_and_sends_nothing(engine: Engine) {
    let env = seeded(engine);
    let mut dash = Dashboard::open(&env, Err(Error::MissingApiKey));
    dash.press(KeyCode::Char('s'));
    dash.until("the explanation", |app| {
        matches!(app.sync, SyncPopup::Unavailable(_))
    });
    // The preview needs no key: the counts are there, with how to set one.
    let SyncPopup::Unavailable(text) = &dash.app.sync else {
        unreachable!()
    };
    assert!(
        text.starts_with("90 events of 3 customers to send to "),
        "{text}"
    );
    assert!(text.ends_with(NO_KEY), "{text}");
    assert!(NO_KEY.contains("export STRIPE_API_KEY=sk_test_..."));
    assert!(NO_KEY.contains("STRIPE_API_BASE"));
    dash.press(KeyCode::Esc);
    assert_eq!(dash.app.sync, SyncPopup::Closed);
    assert_eq!(env.server.requests(), 0);
    assert_eq!(env.count("stripe_reported_at IS NULL"), 90);
}

fn a_sync_already_running_elsewhere_is_a_clear_message(engine: Engine) {
    let env = seeded(engine);
    // This process holds the lock, as a `meterline sync` in another terminal would (on
    // PostgreSQL for as long as its connection lives).
    let mut holder = env.store();
    holder
        .begin_sync_run(&LockHolder::this_process(), now())
        .unwrap();
    let mut dash = Dashboard::open(&env, key());
    dash.open_confirmation();
    dash.press(KeyCode::Char('y'));
    let error = dash.finished().unwrap_err();
    assert!(error.contains("another sync is already running"), "{error}");
    assert_eq!(env.server.requests(), 0);
    assert_eq!(env.count("stripe_reported_at IS NULL"), 90);
    // The header shows the other process's run.
    dash.until("the running sync in the header", |app| {
        app.last_sync
            .as_ref()
            .is_some_and(|r| r.outcome == "running")
    });
}

fn a_refused_key_fails_cleanly_and_the_key_never_shows(engine: Engine) {
    let env = seeded(engine);
    env.server.inject(Fault::Unauthorized, 1000);
    let mut dash = Dashboard::open(&env, key());
    dash.open_confirmation();
    dash.press(KeyCode::Char('y'));
    let error = dash.finished().unwrap_err();
    assert!(error.contains("Stripe refused the API key"), "{error}");
    assert!(!error.contains(&KEY[8..]), "{error}");
    dash.until("the failed run in the header", |app| {
        app.last_sync
            .as_ref()
            .is_some_and(|r| r.outcome == "aborted" && r.error.is_some())
    });
    let recorded = format!("{:?}", dash.app.last_sync);
    assert!(!recorded.contains(&KEY[8..]), "{recorded}");
    assert_eq!(env.count("stripe_reported_at IS NOT NULL"), 0);
    env.assert_key_not_in_files();
}

fn unusable_settings_are_explained_in_the_popup_before_anything_is_sent(engine: Engine) {
    let env = seeded(engine);
    let plans = std::fs::read_to_string(&env.plans).unwrap();
    let cases = [
        (
            "api_base",
            plans.replace(&env.server.base(), "http://10.0.0.1:8080"),
            KEY,
            "uses plain http",
        ),
        (
            "STRIPE_API_KEY",
            plans.clone(),
            "pk_test_publishable123",
            "does not look like",
        ),
    ];
    for (name, plans, key, says) in cases {
        std::fs::write(&env.plans, plans).unwrap();
        let mut dash = Dashboard::open(&env, ApiKey::new(key));
        dash.press(KeyCode::Char('s'));
        dash.until("the explanation", |app| {
            matches!(app.sync, SyncPopup::Unavailable(_))
        });
        let SyncPopup::Unavailable(why) = &dash.app.sync else {
            unreachable!()
        };
        assert!(why.contains(says), "{name}: {why}");
        assert!(!why.contains("publishable123"), "the key is not echoed");
    }
    assert_eq!(env.server.requests(), 0);
}

fn r_reloads_plans_toml_and_an_invalid_file_keeps_the_last_good_plans(engine: Engine) {
    let env = seeded(engine);
    // Stripe's own API base at first, so a sync shows which plans it used.
    std::fs::write(&env.plans, PLANS).unwrap();
    let mut dash = Dashboard::open(&env, key());
    let acme_limit = |app: &App| {
        app.rows()
            .iter()
            .find(|r| r.customer_id == "acme")
            .and_then(|r| r.limit)
    };
    assert_eq!(acme_limit(&dash.app), Some(1_000_000));

    // plans.toml changes: a smaller allowance, and the fake Stripe as the API base.
    let edited = PLANS
        .replace("included = 1000000", "included = 1000")
        .replace(
            "api_base = \"https://api.stripe.com\"",
            &format!("api_base = \"{}\"", env.server.base()),
        );
    std::fs::write(&env.plans, &edited).unwrap();
    dash.press(KeyCode::Char('r'));
    dash.until("the reloaded plans", |app| acme_limit(app) == Some(1000));
    assert_eq!(dash.app.config.plan("free").unwrap().included, Some(1000));
    assert_eq!(dash.app.plans_error, None);

    // A broken file: the error is shown, the last good plans stay in use.
    std::fs::write(&env.plans, "[[plans]]\nid = \n").unwrap();
    dash.press(KeyCode::Char('r'));
    dash.until("the plans error", |app| app.plans_error.is_some());
    let mut terminal = ratatui::Terminal::new(ratatui::backend::TestBackend::new(100, 30)).unwrap();
    terminal.draw(|frame| ui::draw(frame, &dash.app)).unwrap();
    let shown: String = terminal
        .backend()
        .buffer()
        .content()
        .iter()
        .map(|c| c.symbol())
        .collect();
    assert!(shown.contains("not reloaded"), "{shown}");
    assert!(shown.contains("The last good plans stay in use"), "{shown}");
    assert!(
        shown.contains("reload failed: last good plans in use"),
        "{shown}"
    );
    // The loaded rows that follow still use the last good plans.
    dash.until("the rows after the failed reload", |app| {
        acme_limit(app) == Some(1000)
    });
    assert_eq!(dash.app.config.plan("free").unwrap().included, Some(1000));
    dash.press(KeyCode::Esc);
    assert!(!dash.app.plans_popup);
    assert!(dash.app.plans_error.is_some(), "the header keeps saying so");

    // A sync from the dashboard uses the reloaded plans too: their API base.
    dash.open_confirmation();
    let SyncPopup::Confirm(preview) = &dash.app.sync else {
        unreachable!()
    };
    assert_eq!(preview.api_host, "127.0.0.1");
    dash.press(KeyCode::Char('y'));
    let report = dash.finished().expect("the sync succeeds");
    assert_eq!((report.accepted, report.failed), (90, 0));
}
