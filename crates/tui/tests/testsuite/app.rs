//! The dashboard's state machine driven by key presses, without a terminal.

use std::collections::HashMap;

use crate::support::config;
use chrono::{DateTime, TimeZone, Utc};
use meterline_core::billing::Period;
use meterline_store::{Backlog, BacklogChange, Dashboard, DashboardRow, UsageChange};
use meterline_stripe::{SyncPreview, SyncProgress, SyncReport};
use meterline_tui::app::{App, Effect, SortKey, SyncPopup, View};
use meterline_tui::data::DataEvent;
use meterline_tui::keys::{self, Mode};
use meterline_tui::sync_worker::SyncEvent;
use meterline_tui::theme::Theme;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap()
}

fn row(id: &str, plan: &str, used: i64, limit: Option<i64>) -> DashboardRow {
    DashboardRow {
        customer_id: id.to_string(),
        name: format!("{id} Inc"),
        plan_id: plan.to_string(),
        limit,
        mapped: true,
        period: Period {
            start: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
            end: Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
        },
        used,
        backlog: Backlog::default(),
        archived: false,
        meters: Vec::new(),
        shown: 0,
        credits: None,
        window: None,
    }
}

/// Five customers; by risk: delta (134 %), alpha (97 %), echo (85 %), bravo (10 %), charlie (∞).
fn app() -> App {
    let rows = vec![
        row("alpha", "free", 970, Some(1000)),
        row("bravo", "starter", 1000, Some(10_000)),
        row("charlie", "business", 5_000_000, None),
        row("delta", "pro", 134_000, Some(100_000)),
        row("echo", "pro", 85_000, Some(100_000)),
    ];
    let dashboard = Dashboard {
        rows,
        ..Dashboard::default()
    };
    let mut app = App::new(
        config(),
        "test.db".into(),
        "plans.toml".into(),
        Theme::COLOR,
        now(),
        dashboard,
    );
    app.set_page(3);
    app
}

/// Press keys as the loop does: resolve in the current mode, then update.
fn press(app: &mut App, keys: &[KeyEvent]) -> Vec<Effect> {
    keys.iter()
        .filter_map(|k| keys::resolve(app.mode(), k).and_then(|a| app.update(a)))
        .collect()
}

fn k(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn code(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn typed(text: &str) -> Vec<KeyEvent> {
    text.chars().map(k).collect()
}

fn order(app: &App) -> Vec<String> {
    app.visible_rows(0, usize::MAX)
        .map(|r| r.customer_id.clone())
        .collect()
}

fn selected(app: &App) -> String {
    app.selected_row().unwrap().customer_id.clone()
}

#[test]
fn rows_are_sorted_by_risk_with_unlimited_last() {
    let app = app();
    assert_eq!(order(&app), ["delta", "alpha", "echo", "bravo", "charlie"]);
    assert_eq!(app.summary.customers, 5);
    // ok: bravo, charlie; warning: echo; critical: alpha; hard cap: delta.
    assert_eq!(app.summary.levels, [2, 1, 1, 1]);
}

#[test]
fn arrows_vim_keys_and_paging_move_the_selection_within_bounds() {
    let mut app = app();
    assert_eq!(selected(&app), "delta");
    press(&mut app, &[k('j'), code(KeyCode::Down)]);
    assert_eq!(selected(&app), "echo");
    press(&mut app, &[k('k')]);
    assert_eq!(selected(&app), "alpha");
    press(
        &mut app,
        &[KeyEvent::new(KeyCode::Char('G'), KeyModifiers::SHIFT)],
    );
    assert_eq!(selected(&app), "charlie");
    // Page of 3: the last row is on screen, the first shown is the third.
    assert_eq!(app.list.offset, 2);
    press(&mut app, &[k('j'), k('j')]);
    assert_eq!(selected(&app), "charlie", "never past the end");
    press(&mut app, &[code(KeyCode::PageUp)]);
    assert_eq!(selected(&app), "alpha");
    press(&mut app, &[k('g'), k('k')]);
    assert_eq!(selected(&app), "delta", "never before the start");
    assert_eq!(app.list.offset, 0);
    press(&mut app, &[code(KeyCode::PageDown)]);
    assert_eq!(selected(&app), "bravo");
}

#[test]
fn sort_orders_cycle_and_reverse_keeping_the_selection() {
    let mut app = app();
    press(&mut app, &[k('j')]);
    assert_eq!(selected(&app), "alpha");
    press(&mut app, &[k('o')]);
    assert_eq!(app.sort, SortKey::Name);
    assert_eq!(order(&app), ["alpha", "bravo", "charlie", "delta", "echo"]);
    assert_eq!(selected(&app), "alpha", "the same customer stays selected");
    press(&mut app, &[k('O')]);
    assert_eq!(order(&app), ["echo", "delta", "charlie", "bravo", "alpha"]);
    press(&mut app, &[k('o')]);
    assert_eq!(app.sort, SortKey::Plan);
}

#[test]
fn filter_by_name_or_plan_while_typing_then_esc_clears_it() {
    let mut app = app();
    press(&mut app, &[k('/')]);
    assert_eq!(app.mode(), Mode::Filter);
    press(&mut app, &typed("PRO"));
    assert_eq!(
        order(&app),
        ["delta", "echo"],
        "plan matches, case-insensitive"
    );
    // q is text while typing a filter, not quit.
    press(&mut app, &[k('q')]);
    assert!(!app.quit);
    assert_eq!(app.filter, "PROq");
    assert_eq!(app.visible_len(), 0);
    press(&mut app, &[code(KeyCode::Backspace), code(KeyCode::Enter)]);
    assert_eq!(app.mode(), Mode::Normal);
    assert_eq!(order(&app), ["delta", "echo"], "Enter keeps the filter");
    press(&mut app, &[k('/')]);
    press(&mut app, &typed("x"));
    assert_eq!(app.filter, "PROx");
    press(&mut app, &[code(KeyCode::Esc)]);
    assert_eq!(app.filter, "");
    assert_eq!(app.visible_len(), 5);
    // Filter by name, kept, then Esc in the list clears it too.
    press(&mut app, &[k('/')]);
    press(&mut app, &typed("bravo inc"));
    press(&mut app, &[code(KeyCode::Enter)]);
    assert_eq!(order(&app), ["bravo"]);
    press(&mut app, &[code(KeyCode::Esc)]);
    assert_eq!(app.visible_len(), 5);
}

#[test]
fn enter_opens_the_detail_and_esc_closes_the_top_popup_first() {
    let mut app = app();
    press(&mut app, &[k('/')]);
    press(&mut app, &typed("pro"));
    press(&mut app, &[code(KeyCode::Enter), k('j')]);
    let commands = press(&mut app, &[code(KeyCode::Enter)]);
    assert_eq!(commands, [Effect::LoadDetail("echo".into())]);
    assert_eq!(app.detail.as_ref().unwrap().customer_id, "echo");
    // Moving with the detail open shows the neighbour's detail.
    let commands = press(&mut app, &[k('k')]);
    assert_eq!(commands, [Effect::LoadDetail("delta".into())]);
    press(&mut app, &[k('?')]);
    assert!(app.help);
    press(&mut app, &[code(KeyCode::Esc)]);
    assert!(!app.help, "help closes first");
    assert!(app.detail.is_some());
    press(&mut app, &[code(KeyCode::Esc)]);
    assert!(app.detail.is_none(), "then the detail");
    assert_eq!(app.filter, "pro");
    press(&mut app, &[code(KeyCode::Esc)]);
    assert_eq!(app.filter, "", "then the filter");
}

#[test]
fn tab_cycles_the_views_and_the_events_view_loads_its_list() {
    let mut app = app();
    let commands = press(&mut app, &[code(KeyCode::Tab)]);
    assert_eq!(app.view, View::Events);
    assert_eq!(commands, [Effect::LoadEvents]);
    press(&mut app, &[code(KeyCode::Tab)]);
    assert_eq!(app.view, View::Plans);
    press(&mut app, &[code(KeyCode::Tab)]);
    assert_eq!(app.view, View::Overview);
    press(&mut app, &[code(KeyCode::BackTab)]);
    assert_eq!(app.view, View::Plans);
    press(&mut app, &[k('1')]);
    assert_eq!(app.view, View::Overview);
    press(&mut app, &[k('e')]);
    assert_eq!(app.view, View::Events);
    // Enter on an empty events list opens nothing.
    assert!(press(&mut app, &[code(KeyCode::Enter)]).is_empty());
    assert!(!app.event_popup);
}

fn event(id: i64, error: Option<&str>) -> meterline_store::EventRow {
    meterline_store::EventRow {
        id,
        customer_id: "alpha".into(),
        customer_name: "alpha Inc".into(),
        user_id: None,
        quantity: 3,
        meter_id: "usage".into(),
        amount: 3,
        event_type: None,
        meters: vec![("usage".into(), 3)],
        occurred_at: "2026-11-20T10:00:00Z".into(),
        attempts: 2,
        error: error.map(str::to_string),
        state: meterline_store::StripeState::Failed,
    }
}

#[test]
fn enter_on_an_event_opens_its_detail_which_follows_the_selection_and_esc_closes() {
    let mut app = app();
    press(&mut app, &[k('e')]);
    app.apply(DataEvent::Events(vec![
        event(1, Some("No such customer")),
        event(2, None),
    ]));
    assert!(press(&mut app, &[code(KeyCode::Enter)]).is_empty());
    assert!(app.event_popup);
    assert_eq!(app.selected_event().unwrap().id, 1);
    // ↓ shows the next event's detail.
    press(&mut app, &[k('j')]);
    assert!(app.event_popup);
    assert_eq!(app.selected_event().unwrap().id, 2);
    // Help over the popup closes first, then the popup.
    press(&mut app, &[k('?'), code(KeyCode::Esc)]);
    assert!(app.event_popup);
    press(&mut app, &[code(KeyCode::Esc)]);
    assert!(!app.event_popup);
    assert_eq!(app.view, View::Events);

    // Leaving the view closes it; a reload with nothing left to show closes it too.
    press(&mut app, &[code(KeyCode::Enter), k('1')]);
    assert!(!app.event_popup);
    press(&mut app, &[k('e'), code(KeyCode::Enter)]);
    assert!(app.event_popup);
    app.apply(DataEvent::Events(Vec::new()));
    assert!(!app.event_popup);
}

#[test]
fn q_and_ctrl_c_quit() {
    let mut app = app();
    assert_eq!(press(&mut app, &[k('q')]), [Effect::Quit]);
    assert!(app.quit);
    let mut app = app_with_filter_open();
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(press(&mut app, &[ctrl_c]), [Effect::Quit]);
}

fn app_with_filter_open() -> App {
    let mut app = app();
    press(&mut app, &[k('/')]);
    app
}

#[test]
fn sync_flow_prepare_confirm_progress_cancel_finish() {
    let mut app = app();
    assert_eq!(press(&mut app, &[k('s')]), [Effect::PrepareSync]);
    assert_eq!(app.sync, SyncPopup::Preparing);
    app.on_sync(SyncEvent::Ready(SyncPreview {
        events: 10,
        customers: 2,
        unmapped: 0,
        expired: 0,
        api_host: "127.0.0.1".into(),
        live: false,
        future: 0,
        failed_waiting: 0,
        groups: Vec::new(),
        ..SyncPreview::default()
    }));
    assert_eq!(app.mode(), Mode::Confirm);
    // Keys other than the answers do nothing in a confirmation.
    assert!(press(&mut app, &[k('j'), k('q')]).is_empty());
    assert_eq!(press(&mut app, &[k('y')]), [Effect::StartSync]);
    assert!(matches!(app.sync, SyncPopup::Running { .. }));
    let progress = SyncProgress {
        total: 10,
        attempted: 4,
        accepted: 3,
        duplicates: 1,
        failed: 0,
    };
    app.on_sync(SyncEvent::Progress(progress.clone()));
    assert_eq!(press(&mut app, &[code(KeyCode::Esc)]), [Effect::CancelSync]);
    assert_eq!(
        app.sync,
        SyncPopup::Running {
            progress,
            cancelling: true
        }
    );
    let report = SyncReport {
        attempted: 4,
        accepted: 3,
        duplicates: 1,
        failed: 0,
        expired: 0,
        unmapped: 0,
        remaining: 6,
        duration_ms: 120,
        undelivered: 0,
        future: 0,
        failed_waiting: 0,
        stopped: Some(meterline_stripe::sync::CANCELLED.into()),
        reached: 4,
        error: None,
        dry_run: false,
        ..SyncReport::default()
    };
    app.on_sync(SyncEvent::Finished(Ok(report.clone())));
    assert_eq!(app.sync, SyncPopup::Finished(Ok(report)));
    // Only Esc closes the result; other keys leave it on screen.
    assert!(press(&mut app, &[k('j'), k('s')]).is_empty());
    assert!(matches!(app.sync, SyncPopup::Finished(_)));
    press(&mut app, &[code(KeyCode::Esc)]);
    assert_eq!(app.sync, SyncPopup::Closed);
    // The next `s` starts over.
    assert_eq!(press(&mut app, &[k('s')]), [Effect::PrepareSync]);
}

#[test]
fn a_failed_sync_shows_its_error_and_the_confirmation_can_be_declined() {
    let mut app = app();
    press(&mut app, &[k('s')]);
    app.on_sync(SyncEvent::Ready(SyncPreview {
        events: 1,
        customers: 1,
        unmapped: 0,
        expired: 0,
        api_host: "api.stripe.com".into(),
        live: true,
        future: 0,
        failed_waiting: 0,
        groups: Vec::new(),
        ..SyncPreview::default()
    }));
    // n declines: nothing is started.
    assert!(press(&mut app, &[k('n')]).is_empty());
    assert_eq!(app.sync, SyncPopup::Closed);
    press(&mut app, &[k('s')]);
    app.on_sync(SyncEvent::Unavailable("x".into()));
    press(&mut app, &[code(KeyCode::Esc), k('s')]);
    assert_eq!(app.sync, SyncPopup::Preparing);
    app.on_sync(SyncEvent::Finished(Err(
        "another sync is already running".into()
    )));
    assert_eq!(
        app.sync,
        SyncPopup::Finished(Err("another sync is already running".into()))
    );
    // Progress arriving after the end does not reopen the gauge.
    app.on_sync(SyncEvent::Progress(SyncProgress::default()));
    assert!(matches!(app.sync, SyncPopup::Finished(Err(_))));
}

#[test]
fn the_last_sync_arrives_with_the_data() {
    let mut app = app();
    assert_eq!(app.last_sync, None);
    let run = meterline_store::SyncRun {
        id: 7,
        started_at: "2026-11-20T11:58:00Z".into(),
        finished_at: Some("2026-11-20T11:59:00Z".into()),
        outcome: "completed".into(),
        attempted: 5,
        accepted: 5,
        duplicates: 0,
        failed: 0,
        expired: 0,
        unmapped: 0,
        remaining: 0,
        error: None,
    };
    assert_eq!(app.apply(DataEvent::LastSync(Some(run.clone()))), None);
    assert_eq!(app.last_sync, Some(run));
}

#[test]
fn sync_unavailable_explains_and_closes() {
    let mut app = app();
    press(&mut app, &[k('s')]);
    app.on_sync(SyncEvent::Unavailable("no STRIPE_API_KEY".into()));
    assert_eq!(app.sync, SyncPopup::Unavailable("no STRIPE_API_KEY".into()));
    press(&mut app, &[code(KeyCode::Esc)]);
    assert_eq!(app.sync, SyncPopup::Closed);
    // A late answer after closing does not reopen it.
    app.on_sync(SyncEvent::Unavailable("late".into()));
    assert_eq!(app.sync, SyncPopup::Closed);
}

#[test]
fn live_changes_update_counters_resort_and_keep_the_selection() {
    let mut app = app();
    press(&mut app, &[k('j'), k('j'), k('j')]);
    assert_eq!(selected(&app), "bravo");
    let command = app.apply(DataEvent::Changed {
        usage: vec![UsageChange {
            customer_id: "bravo".into(),
            new_events: 2,
            new_expired: 0,
            used: 20_000,
            meters: Vec::new(),
            window: None,
        }],
        backlog: None,
        credits: None,
    });
    assert_eq!(command, None);
    assert_eq!(order(&app), ["bravo", "delta", "alpha", "echo", "charlie"]);
    assert_eq!(selected(&app), "bravo");
    assert_eq!(app.summary.backlog.unreported, 2);
    assert_eq!(app.summary.levels, [1, 1, 1, 2]);

    // Recounted customers' backlogs replace the incremental counts; others keep theirs.
    let echo = Backlog {
        unreported: 5,
        failed: 1,
        expired: 0,
    };
    let counts = HashMap::from([("echo".to_string(), echo)]);
    app.apply(DataEvent::Changed {
        usage: vec![],
        backlog: Some(BacklogChange::Customers(counts.clone())),
        credits: None,
    });
    assert_eq!(app.summary.backlog.unreported, 7);
    assert_eq!(app.summary.backlog.failed, 1);
    // A full recount: customers absent from it have no backlog.
    app.apply(DataEvent::Changed {
        usage: vec![],
        backlog: Some(BacklogChange::All(counts)),
        credits: None,
    });
    assert_eq!(app.summary.backlog.unreported, 5);

    // A watcher error shows until data flows again.
    app.apply(DataEvent::Failed("database is locked".into()));
    assert_eq!(app.status.as_deref(), Some("database is locked"));
    app.apply(DataEvent::Changed {
        usage: vec![],
        backlog: None,
        credits: None,
    });
    assert_eq!(app.status, None);

    // With the detail open, a change reloads it.
    press(&mut app, &[code(KeyCode::Enter)]);
    let command = app.apply(DataEvent::Changed {
        usage: vec![],
        backlog: None,
        credits: None,
    });
    assert_eq!(command, Some(Effect::LoadDetail("bravo".into())));
}

#[test]
fn a_refresh_moving_a_few_rows_orders_exactly_like_a_full_sort() {
    let mut rng = fastrand::Rng::with_seed(4);
    let plans = [
        ("free", Some(1000)),
        ("pro", Some(100_000)),
        ("business", None),
    ];
    let rows: Vec<DashboardRow> = (0..600)
        .map(|i| {
            let (plan, limit) = plans[i % plans.len()];
            // Many equal ratios, so the id tie-break matters.
            let used = limit.map_or(rng.i64(0..10), |l| l / 10 * rng.i64(0..13));
            row(
                &format!("c{:05}-{i}", rng.u32(0..100_000)),
                plan,
                used,
                limit,
            )
        })
        .collect();
    for sort_presses in 0..3 {
        let mut app = App::new(
            config(),
            String::new(),
            String::new(),
            Theme::COLOR,
            now(),
            Dashboard {
                rows: rows.clone(),
                ..Dashboard::default()
            },
        );
        for _ in 0..sort_presses {
            press(&mut app, &[k('o')]);
        }
        let mut changes = Vec::new();
        let mut after = rows.clone();
        for _ in 0..40 {
            let i = rng.usize(..rows.len());
            let used = rng.i64(0..150_000);
            after[i].used = used;
            after[i].backlog.unreported += 1;
            changes.push(UsageChange {
                customer_id: rows[i].customer_id.clone(),
                new_events: 1,
                new_expired: 0,
                used,
                meters: Vec::new(),
                window: None,
            });
        }
        app.apply(DataEvent::Changed {
            usage: changes,
            backlog: None,
            credits: None,
        });
        let mut fresh = App::new(
            config(),
            String::new(),
            String::new(),
            Theme::COLOR,
            now(),
            Dashboard {
                rows: after,
                ..Dashboard::default()
            },
        );
        for _ in 0..sort_presses {
            press(&mut fresh, &[k('o')]);
        }
        assert_eq!(order(&app), order(&fresh), "sort {:?}", app.sort);
    }
}

#[test]
fn the_key_reference_in_the_docs_matches_the_keymap() {
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/dashboard.md"
    ))
    .unwrap();
    for mode in [Mode::Normal, Mode::Filter, Mode::Amount, Mode::Confirm] {
        for (keys, what) in keys::help(mode) {
            let line = format!("| `{keys}` | {what} |");
            assert!(docs.contains(&line), "docs/dashboard.md lacks {line}");
        }
    }
}

#[test]
fn archived_customers_are_hidden_until_a_shows_them() {
    let mut archived = row("foxtrot", "free", 10, Some(1000));
    archived.archived = true;
    let mut rows = vec![row("alpha", "free", 970, Some(1000)), archived];
    rows.push(row("bravo", "starter", 1000, Some(10_000)));
    let mut app = App::new(
        config(),
        "test.db".into(),
        "plans.toml".into(),
        Theme::COLOR,
        now(),
        Dashboard {
            rows,
            ..Dashboard::default()
        },
    );
    let ids = |app: &App| -> Vec<String> {
        app.visible_rows(0, 10)
            .map(|r| r.customer_id.clone())
            .collect()
    };
    assert_eq!(ids(&app), ["alpha", "bravo"]);
    // The header counts what the table lists, and says what it hides.
    assert_eq!((app.summary.customers, app.summary.archived_hidden), (2, 1));
    assert_eq!(app.summary.levels.iter().sum::<usize>(), 2);
    press(&mut app, &[k('a')]);
    assert!(ids(&app).contains(&"foxtrot".to_string()));
    assert_eq!(app.visible_len(), 3);
    assert_eq!((app.summary.customers, app.summary.archived_hidden), (3, 0));
    press(&mut app, &[k('a')]);
    assert_eq!(app.visible_len(), 2);
    assert_eq!(app.summary.customers, 2);
}

/// A customer's fullest window on the Max plan of the init plans: `used` of 100, moving
/// (freeing up) `minutes` from now.
fn windowed(id: &str, used: i64, minutes: i64) -> DashboardRow {
    let mut r = row(id, "max", 10, Some(1000));
    r.window = Some(meterline_store::TightestWindow {
        meter: "tokens".into(),
        window: "5h".into(),
        used,
        limit: 100,
        level: meterline_core::billing::WarningLevel::Ok,
        moves_at: Some(now() + chrono::Duration::minutes(minutes)),
    });
    r
}

/// With windows in plans.toml, `o` reaches the sort by the tightest window; a window that
/// moves with time alone (a sliding one freeing up) is read again once its moment passes,
/// one request at a time, and the order follows the answer.
#[test]
fn windows_moved_by_time_alone_are_read_again_and_the_order_follows() {
    let config = meterline_core::Config::parse(meterline_core::config::INIT_PLANS, "init").unwrap();
    let dashboard = Dashboard {
        rows: vec![windowed("alpha", 100, 10), windowed("bravo", 50, 60)],
        ..Dashboard::default()
    };
    let mut app = App::new(
        config,
        "t".into(),
        "p".into(),
        Theme::COLOR,
        now(),
        dashboard,
    );
    for _ in 0..6 {
        press(&mut app, &[k('o')]);
    }
    assert_eq!(app.sort, SortKey::Window);
    assert_eq!(order(&app), ["alpha", "bravo"]);

    let minutes = |m: i64| now() + chrono::Duration::minutes(m);
    assert_eq!(app.tick(minutes(5)), None);
    assert_eq!(
        app.tick(minutes(10)),
        Some(Effect::LoadWindows(vec!["alpha".to_string()]))
    );
    // Asked once: nothing more until the answer.
    assert_eq!(app.tick(minutes(11)), None);
    let freed = windowed("alpha", 40, 300).window;
    app.apply(DataEvent::Windows(vec![("alpha".into(), freed)]));
    assert_eq!(order(&app), ["bravo", "alpha"]);
    assert_eq!(app.tick(minutes(12)), None);
    assert_eq!(
        app.tick(minutes(60)),
        Some(Effect::LoadWindows(vec!["bravo".to_string()]))
    );
    // A busy customer's sliding window frees up again a second later: asked again no sooner
    // than 5 seconds after the answer.
    let mut busy = windowed("bravo", 50, 60).window.unwrap();
    let seconds = |s: i64| minutes(60) + chrono::Duration::seconds(s);
    busy.moves_at = Some(seconds(1));
    app.apply(DataEvent::Windows(vec![("bravo".into(), Some(busy))]));
    assert_eq!(app.tick(seconds(2)), None);
    assert_eq!(
        app.tick(seconds(5)),
        Some(Effect::LoadWindows(vec!["bravo".to_string()]))
    );
}
