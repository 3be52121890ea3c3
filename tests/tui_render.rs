//! Rendering with ratatui's TestBackend: text (insta snapshots where layout matters) and the
//! styles of gauges at every level, the over-limit case, the monochrome theme, a tiny
//! terminal, and hostile text from the database.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use meterline::billing::Period;
use meterline::store::{Backlog, Dashboard, DashboardRow, NewCustomer, SyncRun};
use meterline::stripe::{SyncPreview, SyncProgress, SyncReport};
use meterline::tui::action::Action;
use meterline::tui::app::App;
use meterline::tui::data::DataEvent;
use meterline::tui::sync::SyncEvent;
use meterline::tui::theme::Theme;
use meterline::tui::ui;
use meterline::{Config, RecordRequest, Store};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier};

const HOSTILE: &str = "\x1b[2J\x1b]0;pwned\x07Evil\u{202e}Corp";

fn config() -> Config {
    Config::load("plans.toml".as_ref()).unwrap()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap()
}

fn row(name: &str, plan: &str, used: i64, limit: Option<i64>) -> DashboardRow {
    DashboardRow {
        customer_id: name.to_lowercase().replace(' ', "-"),
        name: name.to_string(),
        plan_id: plan.to_string(),
        limit,
        mapped: plan != "starter",
        period: Period {
            start: Utc.with_ymd_and_hms(2026, 11, 5, 0, 0, 0).unwrap(),
            end: Utc.with_ymd_and_hms(2026, 12, 5, 0, 0, 0).unwrap(),
        },
        used,
        backlog: Backlog {
            unreported: used % 7,
            failed: i64::from(plan == "pro"),
            expired: 0,
        },
    }
}

/// One customer at each level, one over its limit, one unlimited.
fn app(theme: Theme) -> App {
    let rows = vec![
        row("Okay Corp", "starter", 5_000, Some(10_000)),
        row("Warned Ltd", "free", 850, Some(1000)),
        row("Critical AG", "pro", 96_000, Some(100_000)),
        row("Capped Inc", "free", 1000, Some(1000)),
        row("Over Co", "pro", 134_000, Some(100_000)),
        row("Endless LLC", "business", 7_654_321, None),
    ];
    App::new(
        config(),
        "test.db".into(),
        "plans.toml".into(),
        theme,
        now(),
        Dashboard {
            rows,
            ..Dashboard::default()
        },
    )
}

fn render(app: &mut App, width: u16, height: u16) -> Buffer {
    app.set_page(ui::list_rows(width, height));
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| ui::draw(frame, app)).unwrap();
    terminal.backend().buffer().clone()
}

fn text(buffer: &Buffer) -> String {
    let area = buffer.area;
    (0..area.height)
        .map(|y| {
            let line: String = (0..area.width).map(|x| buffer[(x, y)].symbol()).collect();
            line.trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The row on screen whose text contains `needle`.
fn row_of(buffer: &Buffer, needle: &str) -> u16 {
    let lines: Vec<String> = text(buffer).lines().map(str::to_string).collect();
    lines
        .iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle} not on screen:\n{}", text(buffer))) as u16
}

/// The cells of row `y` whose symbol is `symbol`.
fn cells_with(buffer: &Buffer, y: u16, symbol: &str) -> Vec<ratatui::buffer::Cell> {
    (0..buffer.area.width)
        .map(|x| buffer[(x, y)].clone())
        .filter(|c| c.symbol() == symbol)
        .collect()
}

/// The style of the first cell of `word` on row `y`.
fn style_of_word(buffer: &Buffer, y: u16, word: &str) -> ratatui::buffer::Cell {
    let line: Vec<&str> = (0..buffer.area.width)
        .map(|x| buffer[(x, y)].symbol())
        .collect();
    let joined = line.concat();
    let byte = joined.find(word).unwrap();
    // Columns, not bytes: count the symbols before it.
    let column = joined[..byte].chars().count() as u16;
    buffer[(column, y)].clone()
}

#[test]
fn overview_layout() {
    let buffer = render(&mut app(Theme::COLOR), 120, 20);
    insta::assert_snapshot!("overview_120x20", text(&buffer));
}

#[test]
fn overview_narrow_layout_drops_the_used_column() {
    let buffer = render(&mut app(Theme::COLOR), 80, 20);
    insta::assert_snapshot!("overview_80x20", text(&buffer));
}

#[test]
fn gauges_are_coloured_by_level_with_the_level_in_words() {
    let buffer = render(&mut app(Theme::COLOR), 120, 20);
    for (name, colour, word) in [
        ("Okay Corp", Color::Green, "✓ ok"),
        ("Warned Ltd", Color::Yellow, "▲ warning"),
        ("Critical AG", Color::Red, "◆ critical"),
        ("Capped Inc", Color::Magenta, "■ HARD CAP"),
        ("Over Co", Color::Magenta, "■ OVER LIMIT"),
    ] {
        let y = row_of(&buffer, name);
        let filled = cells_with(&buffer, y, "█");
        assert!(!filled.is_empty(), "{name} has a bar");
        assert!(filled.iter().all(|c| c.fg == colour), "{name}: {filled:?}");
        let label = style_of_word(&buffer, y, word);
        assert_eq!(
            label.fg,
            if colour == Color::Magenta {
                Color::White
            } else {
                colour
            }
        );
    }
    // The hard cap is a distinct strong style: a background, bold.
    let capped = style_of_word(&buffer, row_of(&buffer, "Capped Inc"), "■ HARD CAP");
    assert_eq!(capped.bg, Color::Magenta);
    assert!(capped.modifier.contains(Modifier::BOLD));
}

#[test]
fn over_limit_shows_the_real_percentage_with_the_bar_clamped() {
    let buffer = render(&mut app(Theme::COLOR), 120, 20);
    let over = row_of(&buffer, "Over Co");
    let line = text(&buffer)
        .lines()
        .nth(over as usize)
        .unwrap()
        .to_string();
    assert!(line.contains("134 %"), "{line}");
    assert!(line.contains("134,000 / 100,000"), "{line}");
    // Wide layout: a 20-cell gauge, all of it filled and not one cell more.
    assert_eq!(cells_with(&buffer, over, "█").len(), 20);
    assert!(cells_with(&buffer, over, "░").is_empty());
    let half = row_of(&buffer, "Okay Corp");
    assert_eq!(cells_with(&buffer, half, "█").len(), 10);
    assert_eq!(cells_with(&buffer, half, "░").len(), 10);
    assert!(text(&buffer).contains("∞ unlimited"));
}

#[test]
fn monochrome_has_no_colour_and_every_level_stays_readable() {
    let buffer = render(&mut app(Theme::MONOCHROME), 120, 20);
    for cell in buffer.content() {
        assert_eq!((cell.fg, cell.bg), (Color::Reset, Color::Reset), "{cell:?}");
    }
    let word = |name, word| style_of_word(&buffer, row_of(&buffer, name), word).modifier;
    assert!(word("Warned Ltd", "▲ warning").contains(Modifier::BOLD));
    assert!(word("Critical AG", "◆ critical").contains(Modifier::UNDERLINED));
    assert!(word("Capped Inc", "■ HARD CAP").contains(Modifier::REVERSED));
    // Empty gauge cells are dots rather than a colour.
    assert_eq!(
        cells_with(&buffer, row_of(&buffer, "Okay Corp"), "·").len(),
        10
    );
    insta::assert_snapshot!("overview_monochrome", text(&buffer));
}

#[test]
fn a_tiny_terminal_gets_one_line_saying_the_size_needed() {
    let buffer = render(&mut app(Theme::COLOR), 50, 10);
    let text = text(&buffer);
    assert!(
        text.contains("Terminal too small: 50×10, need 60×16"),
        "{text}"
    );
    assert!(text.contains("q quits"), "{text}");
    // Degenerate sizes do not panic.
    for (w, h) in [(1, 1), (0, 0), (60, 15), (59, 16), (60, 16), (200, 3)] {
        render(&mut app(Theme::COLOR), w, h);
    }
}

#[test]
fn the_selected_row_is_reversed() {
    let mut app = app(Theme::COLOR);
    let buffer = render(&mut app, 120, 20);
    let first = row_of(&buffer, "Over Co");
    assert!(buffer[(3, first)].modifier.contains(Modifier::REVERSED));
    let second = row_of(&buffer, "Capped Inc");
    assert!(!buffer[(3, second)].modifier.contains(Modifier::REVERSED));
}

fn assert_no_escape(buffer: &Buffer) {
    for cell in buffer.content() {
        assert!(
            !cell
                .symbol()
                .chars()
                .any(|c| c.is_control() || c == '\u{202e}'),
            "raw control character on screen: {:?}",
            cell.symbol()
        );
    }
}

#[test]
fn hostile_names_are_shown_not_obeyed() {
    let mut app = App::new(
        config(),
        "test.db".into(),
        "plans.toml".into(),
        Theme::COLOR,
        now(),
        Dashboard {
            rows: vec![row(HOSTILE, "pro", 10, Some(100_000))],
            ..Dashboard::default()
        },
    );
    let buffer = render(&mut app, 120, 20);
    assert_no_escape(&buffer);
    // Shown as visible escapes (truncated to the column).
    let shown = text(&buffer);
    assert!(shown.contains("\\x1b[2J\\x1b]0;pwned\\x07Evi"), "{shown}");
}

/// A real database: a customer with a hostile name, members, history and a failed event.
fn detail_app(theme: Theme) -> (tempfile::TempDir, App) {
    let dir = tempfile::TempDir::new().unwrap();
    let mut store = Store::open(&dir.path().join("m.db")).unwrap();
    let config = config();
    for (id, name, plan, stripe) in [
        ("globex", "Globex Corporation", "team", Some("cus_globex")),
        ("evil", HOSTILE, "pro", Some("cus_evil")),
    ] {
        store
            .add_customer(
                &config,
                &NewCustomer {
                    id: id.into(),
                    name: Some(name.into()),
                    plan_id: plan.into(),
                    stripe_customer_id: stripe.map(str::to_string),
                    billing_anchor: Some(NaiveDate::from_ymd_opt(2026, 3, 5).unwrap()),
                },
                now(),
            )
            .unwrap();
    }
    let members = ["alice@globex.example", "bob@globex.example"];
    for day in 0..40 {
        let at = now() - Duration::days(day) - Duration::hours(3);
        let mut request = RecordRequest::new("globex", 1_000 + day * 250, at);
        request.user_id = (day % 3 != 0).then(|| members[(day % 2) as usize].to_string());
        store.record(&config, &request, now()).unwrap();
        store
            .record(&config, &RecordRequest::new("evil", 2_000, at), now())
            .unwrap();
    }
    let raw = rusqlite::Connection::open(dir.path().join("m.db")).unwrap();
    raw.execute(
        "UPDATE usage_events SET stripe_attempts = 2, stripe_failed_at = '2026-11-20T11:00:00Z',
             stripe_error = ?1
         WHERE id = (SELECT MIN(id) FROM usage_events WHERE customer_id = 'evil')",
        [format!(
            "No such customer: '\x1b[31mcus_evil\x1b[0m' {HOSTILE}"
        )],
    )
    .unwrap();
    let dashboard = store.dashboard(&config, now()).unwrap();
    let mut app = App::new(
        config.clone(),
        "m.db".into(),
        "plans.toml".into(),
        theme,
        now(),
        dashboard,
    );
    (
        dir,
        app_with_detail(&mut app, &store, "globex")
            .map(|_| app)
            .unwrap(),
    )
}

/// Select `id`, press Enter, and hand the app what the watcher would load.
fn app_with_detail(app: &mut App, store: &Store, id: &str) -> Option<()> {
    app.update(Action::Top);
    for _ in 0..app.visible_len() {
        if app.selected_row()?.customer_id == id {
            break;
        }
        app.update(Action::Down);
    }
    assert_eq!(app.selected_row()?.customer_id, id);
    app.update(Action::Open)?;
    let detail = store.customer_detail(&app.config, id, now()).map(Box::new);
    app.apply(DataEvent::Detail {
        customer_id: id.into(),
        detail: detail.map_err(|e| e.to_string()),
    });
    Some(())
}

#[test]
fn detail_layout() {
    let (_dir, mut app) = detail_app(Theme::COLOR);
    let buffer = render(&mut app, 120, 40);
    let text = text(&buffer);
    assert!(text.contains("Globex Corporation · plan team"), "{text}");
    assert!(text.contains("alice@globex.example"));
    insta::assert_snapshot!("detail_120x40", text);
}

#[test]
fn the_detail_gauge_is_clamped_and_coloured_and_hostile_errors_are_neutralised() {
    let (dir, mut app) = detail_app(Theme::COLOR);
    // Back to the list, then the hostile customer.
    app.update(meterline::tui::action::Action::Close);
    let store = Store::open(&dir.path().join("m.db")).unwrap();
    app_with_detail(&mut app, &store, "evil").unwrap();
    let buffer = render(&mut app, 120, 40);
    assert_no_escape(&buffer);
    let text = text(&buffer);
    assert!(text.contains("\\x1b[2J\\x1b]0;pwned\\x07Evil\\u{202e}Corp · plan pro"));
    // 16 days of 2,000 in this period, of 100,000: ok.
    assert!(text.contains("32,000 / 100,000 · 32 % · ✓ ok"), "{text}");
    // Wrapped onto a second line, in full.
    assert!(
        text.contains("✗ failed (2 attempts) No such customer:"),
        "{text}"
    );
    assert!(
        text.contains("'\\x1b[31mcus_evil\\x1b[0m' \\x1b[2J"),
        "{text}"
    );
    let gauge_row = row_of(&buffer, "32,000 / 100,000");
    let filled = cells_with(&buffer, gauge_row, "█");
    assert!(filled.len() > 30 && filled.iter().all(|c| c.fg == Color::Green));
}

#[test]
fn help_is_generated_from_the_keymap() {
    let mut app = app(Theme::COLOR);
    app.update(Action::Help);
    let help = text(&render(&mut app, 120, 40));
    for (keys, what) in meterline::tui::keys::help(meterline::tui::keys::Mode::Normal) {
        assert!(
            help.contains(&format!("{keys:<20}{what}")),
            "{keys} {what}\n{help}"
        );
    }
}

fn preview(live: bool) -> SyncPreview {
    SyncPreview {
        events: 1234,
        customers: 17,
        unmapped: 40,
        expired: 2,
        api_host: "api.stripe.com".into(),
        live,
        future: 0,
        failed_waiting: 3,
        groups: Vec::new(),
    }
}

fn report(failed: u64, stopped: Option<&str>) -> SyncReport {
    SyncReport {
        attempted: 1234,
        accepted: 1200,
        duplicates: 34 - failed,
        failed,
        expired: 2,
        unmapped: 40,
        remaining: failed,
        duration_ms: 4321,
        undelivered: 0,
        future: 0,
        failed_waiting: 0,
        stopped: stopped.map(str::to_string),
        reached: 1234,
        error: None,
        dry_run: false,
    }
}

/// The app with the sync popup in the state `events` lead to, rendered at 100×24.
fn sync_screen(theme: Theme, events: Vec<SyncEvent>) -> Buffer {
    let mut app = app(theme);
    app.update(Action::Sync);
    for event in events {
        if matches!(event, SyncEvent::Progress(_) | SyncEvent::Finished(_)) {
            app.update(Action::Confirm);
        }
        app.on_sync(event);
    }
    render(&mut app, 100, 24)
}

#[test]
fn the_confirmation_shows_count_customers_key_mode_and_host() {
    let buffer = sync_screen(Theme::COLOR, vec![SyncEvent::Ready(preview(false))]);
    insta::assert_snapshot!("sync_confirm_test_key", text(&buffer));
    let live = sync_screen(Theme::COLOR, vec![SyncEvent::Ready(preview(true))]);
    let y = row_of(&live, "LIVE key");
    let cell = style_of_word(&live, y, "LIVE");
    assert_eq!(cell.fg, Color::Red, "a live key is flagged");
    assert!(text(&live).contains("Send 1,234 events of 17 customers to api.stripe.com"));
}

#[test]
fn progress_shows_a_gauge_with_the_counts_and_how_to_cancel() {
    let progress = SyncProgress {
        total: 200,
        attempted: 100,
        accepted: 90,
        duplicates: 6,
        failed: 4,
    };
    let buffer = sync_screen(
        Theme::COLOR,
        vec![
            SyncEvent::Ready(preview(false)),
            SyncEvent::Progress(progress),
        ],
    );
    insta::assert_snapshot!("sync_running", text(&buffer));
    let shown = text(&buffer);
    assert!(shown.contains("50%"), "{shown}");
    assert!(shown.contains("100 / 200 sent · 90 accepted · 6 duplicates · 4 failed"));
}

#[test]
fn the_result_summary_says_how_it_ended() {
    let done = sync_screen(Theme::COLOR, vec![SyncEvent::Finished(Ok(report(0, None)))]);
    insta::assert_snapshot!("sync_finished", text(&done));
    let refused = text(&sync_screen(
        Theme::COLOR,
        vec![SyncEvent::Finished(Ok(report(3, None)))],
    ));
    assert!(refused.contains("Sync incomplete"), "{refused}");
    assert!(refused.contains("3 refused by Stripe; their messages are in the Events view (2)"));
    let cancelled = text(&sync_screen(
        Theme::MONOCHROME,
        vec![SyncEvent::Finished(Ok(report(
            0,
            Some(meterline::stripe::sync::CANCELLED),
        )))],
    ));
    assert!(cancelled.contains("Sync cancelled"), "{cancelled}");
    assert!(cancelled.contains("requests in flight finished and were recorded"));
    // An error from the run is shown safely, in full.
    let failed = sync_screen(
        Theme::COLOR,
        vec![SyncEvent::Finished(Err(format!("Stripe said {HOSTILE}")))],
    );
    assert_no_escape(&failed);
    let failed = text(&failed);
    assert!(failed.contains("Sync failed"), "{failed}");
    assert!(failed.contains("Stripe said \\x1b[2J"), "{failed}");
}

#[test]
fn without_a_key_the_popup_explains_how_to_set_one() {
    let buffer = sync_screen(
        Theme::COLOR,
        vec![SyncEvent::Unavailable(meterline::tui::sync::NO_KEY.into())],
    );
    insta::assert_snapshot!("sync_no_key", text(&buffer));
    let shown = text(&buffer);
    assert!(
        shown.contains("export STRIPE_API_KEY=sk_test_..."),
        "{shown}"
    );
    assert!(shown.contains("export STRIPE_API_BASE="), "{shown}");
    // Narrow terminals wrap the explanation rather than cutting it.
    let mut app = app(Theme::COLOR);
    app.update(Action::Sync);
    app.on_sync(SyncEvent::Unavailable(meterline::tui::sync::NO_KEY.into()));
    let narrow = text(&render(&mut app, 60, 24));
    assert!(narrow.contains("Esc closes"), "{narrow}");
}

fn sync_run(outcome: &str, error: Option<&str>) -> SyncRun {
    SyncRun {
        id: 3,
        started_at: "2026-11-20T11:40:00Z".into(),
        finished_at: (outcome != "running").then(|| "2026-11-20T11:41:30Z".into()),
        outcome: outcome.into(),
        attempted: 120,
        accepted: 110,
        duplicates: 5,
        failed: 5,
        expired: 0,
        unmapped: 7,
        remaining: 5,
        error: error.map(str::to_string),
    }
}

/// The header's last-sync line after the watcher delivered `run`.
fn last_sync_line(theme: Theme, run: Option<SyncRun>) -> (Buffer, u16) {
    let mut app = app(theme);
    app.apply(DataEvent::LastSync(run));
    let buffer = render(&mut app, 120, 20);
    let y = row_of(&buffer, "last sync");
    (buffer, y)
}

#[test]
fn the_header_shows_when_the_last_sync_ran_and_how_it_ended() {
    let line = |run| {
        let (buffer, y) = last_sync_line(Theme::COLOR, run);
        text(&buffer)
            .lines()
            .nth(usize::from(y))
            .unwrap()
            .to_string()
    };
    assert!(line(None).contains("last sync  never · s syncs to Stripe"));
    let completed = line(Some(SyncRun {
        failed: 0,
        remaining: 0,
        ..sync_run("completed", None)
    }));
    assert!(
        completed.contains("✓ completed 2026-11-20 11:41 · 120 sent, 110 accepted, 5 duplicates"),
        "{completed}"
    );
    assert!(!completed.contains("failed"), "{completed}");
    let incomplete = line(Some(sync_run("incomplete", None)));
    assert!(
        incomplete.contains("! incomplete 2026-11-20 11:41"),
        "{incomplete}"
    );
    assert!(
        incomplete.contains(", 5 failed, 5 remaining"),
        "{incomplete}"
    );
    assert!(line(Some(sync_run("running", None))).contains("… running since 2026-11-20 11:40"));

    // A failed run: its error, made safe, in the error style.
    let (buffer, y) = last_sync_line(
        Theme::COLOR,
        Some(sync_run("aborted", Some(&format!("boom {HOSTILE}")))),
    );
    assert_no_escape(&buffer);
    let shown = text(&buffer)
        .lines()
        .nth(usize::from(y))
        .unwrap()
        .to_string();
    assert!(shown.contains("✗ failed 2026-11-20 11:41"), "{shown}");
    assert!(shown.contains("· boom \\x1b[2J"), "{shown}");
    assert_eq!(style_of_word(&buffer, y, "✗ failed").fg, Color::Red);
    assert_eq!(style_of_word(&buffer, y, "boom").fg, Color::Red);
    let (mono, y) = last_sync_line(Theme::MONOCHROME, Some(sync_run("aborted", Some("boom"))));
    assert!(
        style_of_word(&mono, y, "✗ failed")
            .modifier
            .contains(Modifier::BOLD)
    );
}
