//! Rendering with ratatui's TestBackend: text (insta snapshots where layout matters) and the
//! styles of gauges at every level, the over-limit case, the monochrome theme, a tiny
//! terminal, and hostile text from the database.

use crate::support::config;
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use meterline_core::Config;
use meterline_core::billing::Period;
use meterline_store::{Backlog, Dashboard, DashboardRow, NewCustomer, SyncRun};
use meterline_store::{RecordRequest, Store};
use meterline_stripe::{SyncPreview, SyncProgress, SyncReport};
use meterline_tui::action::Action;
use meterline_tui::app::App;
use meterline_tui::data::DataEvent;
use meterline_tui::sync_worker::SyncEvent;
use meterline_tui::theme::Theme;
use meterline_tui::ui;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier};

const HOSTILE: &str = "\x1b[2J\x1b]0;pwned\x07Evil\u{202e}Corp";

pub(crate) fn now() -> DateTime<Utc> {
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
        archived: false,
        meters: Vec::new(),
        shown: 0,
        credits: None,
        window: None,
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

pub(crate) fn render(app: &mut App, width: u16, height: u16) -> Buffer {
    app.set_page(ui::list_rows(width, height));
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| ui::draw(frame, app)).unwrap();
    terminal.backend().buffer().clone()
}

pub(crate) fn text(buffer: &Buffer) -> String {
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
pub(crate) fn row_of(buffer: &Buffer, needle: &str) -> u16 {
    let lines: Vec<String> = text(buffer).lines().map(str::to_string).collect();
    lines
        .iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle} not on screen:\n{}", text(buffer))) as u16
}

/// The cells of row `y` whose symbol is `symbol`.
pub(crate) fn cells_with(buffer: &Buffer, y: u16, symbol: &str) -> Vec<ratatui::buffer::Cell> {
    (0..buffer.area.width)
        .map(|x| buffer[(x, y)].clone())
        .filter(|c| c.symbol() == symbol)
        .collect()
}

/// The style of the first cell of `word` on row `y`.
pub(crate) fn style_of_word(buffer: &Buffer, y: u16, word: &str) -> ratatui::buffer::Cell {
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
        // An overage plan past its limit: the JSON level's word, marked as billing overage.
        ("Over Co", Color::Magenta, "■ HARD CAP+"),
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
    // The gauge is all filled and not one cell more.
    let full = cells_with(&buffer, over, "█").len();
    assert!(full >= 30, "the gauge has the room: {full} cells\n{line}");
    assert!(cells_with(&buffer, over, "░").is_empty());
    let half = row_of(&buffer, "Okay Corp");
    assert_eq!(cells_with(&buffer, half, "█").len(), full.div_ceil(2));
    assert_eq!(cells_with(&buffer, half, "░").len(), full / 2);
}

#[test]
fn unlimited_rows_show_the_count_and_the_word_once() {
    for width in [120, 80] {
        let buffer = render(&mut app(Theme::COLOR), width, 20);
        let endless = row_of(&buffer, "Endless LLC");
        let line = text(&buffer)
            .lines()
            .nth(endless as usize)
            .unwrap()
            .to_string();
        assert_eq!(line.matches("unlimited").count(), 1, "{line}");
        assert!(
            !line.contains('∞') && !line.contains(" / ") && !line.contains(" - "),
            "{line}"
        );
        assert!(cells_with(&buffer, endless, "█").is_empty(), "{line}");
        assert_eq!(line.contains("7,654,321"), width >= 110, "{line}");
        insta::assert_snapshot!(format!("unlimited_row_{width}"), line);
    }
}

/// On a wide terminal the gauge is the widest column and long names end in "…".
#[test]
fn the_gauge_gets_the_room_and_long_names_are_cut_with_an_ellipsis() {
    let mut app = App::new(
        config(),
        "test.db".into(),
        "plans.toml".into(),
        Theme::COLOR,
        now(),
        Dashboard {
            rows: vec![
                row(
                    "Consolidated Amalgamated Universal Exports International",
                    "pro",
                    100_000,
                    Some(100_000),
                ),
                row("Short", "free", 500, Some(1000)),
            ],
            ..Dashboard::default()
        },
    );
    let buffer = render(&mut app, 140, 16);
    let shown = text(&buffer);
    let long = row_of(&buffer, "Consolidated");
    let gauge = cells_with(&buffer, long, "█").len();
    let line = shown.lines().nth(long as usize).unwrap();
    let name = line.split('…').next().unwrap().trim_start_matches('│');
    assert!(line.contains('…'), "{line}");
    assert!(
        gauge > name.chars().count() + 1,
        "gauge {gauge} cells, name {name:?}"
    );
    insta::assert_snapshot!("overview_140x16", shown);
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
    let okay = row_of(&buffer, "Okay Corp");
    assert_eq!(
        cells_with(&buffer, okay, "·").len(),
        cells_with(&buffer, okay, "█").len()
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

pub(crate) fn assert_no_escape(buffer: &Buffer) {
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
    // Shown as visible escapes (cut to the column with an ellipsis).
    let shown = text(&buffer);
    assert!(shown.contains("\\x1b[2J\\x1b]0;pwned…"), "{shown}");
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
pub(crate) fn app_with_detail(app: &mut App, store: &Store, id: &str) -> Option<()> {
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
fn the_detail_periods_are_readable_and_the_daily_chart_has_a_scale_and_days() {
    let (_dir, mut app) = detail_app(Theme::COLOR);
    let shown = text(&render(&mut app, 120, 40));
    // Periods: the month and year in words, no number touching a bar.
    assert!(shown.contains("Oct 2026 team"), "{shown}");
    assert!(!shown.contains("Oct 26"), "{shown}");
    for bar in ['█', '░'] {
        for (i, c) in shown.char_indices().filter(|(_, c)| *c == bar) {
            let next = shown[i + c.len_utf8()..].chars().next().unwrap_or(' ');
            assert!(!next.is_ascii_digit(), "a number glued to a bar:\n{shown}");
        }
    }
    // The per-day chart: its busiest day on the scale, 0 at the bottom, the days below.
    assert!(shown.contains("│4,750 ██"), "{shown}");
    assert!(shown.contains("│    0 ██"), "{shown}");
    assert!(shown.contains("5  6  7  8  9  10 11"), "{shown}");
}

#[test]
fn the_detail_gauge_is_clamped_and_coloured_and_hostile_errors_are_neutralised() {
    let (dir, mut app) = detail_app(Theme::COLOR);
    // Back to the list, then the hostile customer.
    app.update(meterline_tui::action::Action::Close);
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
fn a_cap_date_out_of_reach_shows_no_date_instead_of_crashing() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut store = Store::open(&dir.path().join("m.db")).unwrap();
    let config = Config::parse(
        "[[plans]]\nid = \"free\"\nname = \"Free\"\nprice = \"0\"\nincluded = 10000000\n",
        "plans.toml",
    )
    .unwrap();
    store
        .add_customer(
            &config,
            &NewCustomer {
                id: "slow".into(),
                name: None,
                plan_id: "free".into(),
                stripe_customer_id: None,
                billing_anchor: Some(NaiveDate::from_ymd_opt(2026, 10, 21).unwrap()),
            },
            now(),
        )
        .unwrap();
    // One unit, 30 days into the period (21 October to 21 November).
    let at = Utc.with_ymd_and_hms(2026, 10, 21, 1, 0, 0).unwrap();
    store
        .record(&config, &RecordRequest::new("slow", 1, at), now())
        .unwrap();
    let dashboard = store.dashboard(&config, now()).unwrap();
    let mut app = App::new(
        config,
        "m.db".into(),
        "plans.toml".into(),
        Theme::COLOR,
        now(),
        dashboard,
    );
    app_with_detail(&mut app, &store, "slow").unwrap();
    let text = text(&render(&mut app, 120, 40));
    assert!(
        text.contains("not reached this period at the current pace"),
        "{text}"
    );
}

#[test]
fn help_is_generated_from_the_keymap() {
    let mut app = app(Theme::COLOR);
    app.update(Action::Help);
    let help = text(&render(&mut app, 120, 40));
    for (keys, what) in meterline_tui::keys::help(meterline_tui::keys::Mode::Normal) {
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
        ..SyncPreview::default()
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
        ..SyncReport::default()
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
            Some(meterline_stripe::sync::CANCELLED),
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
    // The run's recorded outcome, the word `meterline status` prints.
    assert!(failed.contains("Sync aborted"), "{failed}");
    assert!(failed.contains("Stripe said \\x1b[2J"), "{failed}");
}

#[test]
fn without_a_key_the_popup_explains_how_to_set_one() {
    let buffer = sync_screen(
        Theme::COLOR,
        vec![SyncEvent::Unavailable(
            meterline_tui::sync_worker::NO_KEY.into(),
        )],
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
    app.on_sync(SyncEvent::Unavailable(
        meterline_tui::sync_worker::NO_KEY.into(),
    ));
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
    assert!(shown.contains("✗ aborted 2026-11-20 11:41"), "{shown}");
    assert!(shown.contains("· boom \\x1b[2J"), "{shown}");
    assert_eq!(style_of_word(&buffer, y, "✗ aborted").fg, Color::Red);
    assert_eq!(style_of_word(&buffer, y, "boom").fg, Color::Red);
    let (mono, y) = last_sync_line(Theme::MONOCHROME, Some(sync_run("aborted", Some("boom"))));
    assert!(
        style_of_word(&mono, y, "✗ aborted")
            .modifier
            .contains(Modifier::BOLD)
    );
}

/// 400 customers, one more used than the last, on a 30-row terminal.
fn long_app() -> App {
    let rows = (0..400)
        .map(|i| row(&format!("Customer {i:03}"), "free", 500 + i, Some(1000)))
        .collect();
    App::new(
        config(),
        "test.db".into(),
        "plans.toml".into(),
        Theme::MONOCHROME,
        now(),
        Dashboard {
            rows,
            ..Dashboard::default()
        },
    )
}

/// The name on the selected (reversed) row of the table.
fn selected_on_screen(buffer: &Buffer) -> Option<String> {
    (0..buffer.area.height).find_map(|y| {
        let cell = &buffer[(1, y)];
        cell.modifier.contains(Modifier::REVERSED).then(|| {
            (1..20)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
                .trim()
                .to_string()
        })
    })
}

#[test]
fn changing_the_sort_keeps_the_selection_on_screen_and_says_where_it_is() {
    let mut app = long_app();
    let buffer = render(&mut app, 100, 30);
    let shown = text(&buffer);
    // Most at risk first: the % column carries the arrow, the position is shown.
    assert!(shown.contains("%▼"), "{shown}");
    assert!(shown.contains(" 1/400 "), "{shown}");
    assert_eq!(selected_on_screen(&buffer).as_deref(), Some("Customer 399"));

    // By name, the riskiest (selected) customer is the last row: scrolled to, and said so.
    app.update(Action::CycleSort);
    let buffer = render(&mut app, 100, 30);
    let shown = text(&buffer);
    assert!(shown.contains("Customer▲"), "{shown}");
    assert!(!shown.contains("%▼"), "{shown}");
    assert!(shown.contains(" 400/400 "), "{shown}");
    assert_eq!(selected_on_screen(&buffer).as_deref(), Some("Customer 399"));
    assert!(
        !shown.contains("Customer 000"),
        "the top is scrolled off: {shown}"
    );

    // Reversed: the arrow turns and the selection is still in view, now first.
    app.update(Action::ReverseSort);
    let buffer = render(&mut app, 100, 30);
    let shown = text(&buffer);
    assert!(shown.contains("Customer▼"), "{shown}");
    assert!(shown.contains(" 1/400 "), "{shown}");
    assert_eq!(selected_on_screen(&buffer).as_deref(), Some("Customer 399"));

    // Moving down a page shows the new position.
    app.update(Action::PageDown);
    let shown = text(&render(&mut app, 100, 30));
    let page = ui::list_rows(100, 30);
    assert!(shown.contains(&format!(" {}/400 ", page + 1)), "{shown}");
}

/// A one-customer database (plan `plan`, `used` units this period) with its detail open.
fn single_detail(plan: &str, used: i64) -> (tempfile::TempDir, App) {
    let dir = tempfile::TempDir::new().unwrap();
    let mut store = Store::open(&dir.path().join("m.db")).unwrap();
    let config = config();
    let customer = NewCustomer {
        id: "solo".into(),
        name: None,
        plan_id: plan.into(),
        stripe_customer_id: Some("cus_solo".into()),
        billing_anchor: Some(NaiveDate::from_ymd_opt(2026, 10, 5).unwrap()),
    };
    store.add_customer(&config, &customer, now()).unwrap();
    let at = now() - Duration::hours(2);
    store
        .record(&config, &RecordRequest::new("solo", used, at), now())
        .unwrap();
    let dashboard = store.dashboard(&config, now()).unwrap();
    let mut app = App::new(
        config,
        "m.db".into(),
        "plans.toml".into(),
        Theme::COLOR,
        now(),
        dashboard,
    );
    app_with_detail(&mut app, &store, "solo").unwrap();
    (dir, app)
}

#[test]
fn past_the_limit_the_words_are_the_json_level_and_say_whether_overage_is_billed() {
    let (_dir, mut app) = single_detail("pro", 134_000);
    let shown = text(&render(&mut app, 120, 40));
    assert!(
        shown.contains("134,000 / 100,000 · 134 % · ■ HARD CAP (overage)"),
        "{shown}"
    );
    let (_dir, mut app) = single_detail("free", 1_000);
    let shown = text(&render(&mut app, 120, 40));
    assert!(
        shown.contains("1,000 / 1,000 · 100 % · ■ HARD CAP "),
        "{shown}"
    );
    assert!(shown.contains("hard cap: usage past the limit is refused"));
    assert!(!shown.contains("OVER LIMIT"));
}

fn event(id: i64, state: meterline_store::StripeState) -> meterline_store::EventRow {
    meterline_store::EventRow {
        id,
        customer_id: "acme".into(),
        customer_name: "Acme".into(),
        user_id: None,
        quantity: 3,
        meter_id: "usage".into(),
        amount: 3,
        event_type: None,
        meters: vec![("usage".into(), 3)],
        occurred_at: "2026-11-20T10:00:00Z".into(),
        attempts: 1,
        error: None,
        state,
    }
}

#[test]
fn the_help_explains_every_symbol_the_screens_show() {
    use meterline_store::StripeState;
    let mut with_help = app(Theme::COLOR);
    with_help.update(Action::Help);
    let help = text(&render(&mut with_help, 120, 40));
    for shown in [
        "✓ ok",
        "▲ warning",
        "◆ critical",
        "■ HARD CAP",
        "■ HARD CAP+",
        "■ HARD CAP (overage)",
        "✓ reported",
        "… pending",
        "✗ failed",
        "⌛",
        "? unmapped",
        "✓ completed",
        "… running",
        "! incomplete",
        "! cancelled",
        "✗ aborted",
        "✗ interrupted",
        "▼ ▲",
        "12/400",
        "∞ unlimited",
        "███░░░",
        "\"2 ?\"",
        "134 %",
        "magenta",
    ] {
        assert!(help.contains(shown), "{shown} not explained:\n{help}");
    }

    // Every symbol on every screen appears in the help (box drawing, bar-chart blocks and
    // the separators of prose aside).
    let mut screens = Vec::new();
    let mut overview = app(Theme::COLOR);
    overview.apply(DataEvent::LastSync(Some(sync_run("aborted", None))));
    screens.push(text(&render(&mut overview, 120, 20)));
    overview.update(Action::ShowEvents);
    overview.apply(DataEvent::Events(vec![
        event(1, StripeState::Failed),
        event(2, StripeState::Expired),
        event(3, StripeState::Pending),
        event(4, StripeState::Unmapped),
        event(5, StripeState::Reported),
    ]));
    screens.push(text(&render(&mut overview, 120, 20)));
    overview.update(Action::ShowPlans);
    screens.push(text(&render(&mut overview, 120, 20)));
    let (_dir, mut detail) = detail_app(Theme::COLOR);
    screens.push(text(&render(&mut detail, 120, 40)));
    let prose = |c: char| {
        ('\u{2500}'..='\u{257f}').contains(&c) // box drawing
            || ('\u{2581}'..='\u{2587}').contains(&c) // the daily bar chart's partial bars
            || "·×→…".contains(c)
    };
    for screen in &screens {
        for c in screen.chars().filter(|c| !c.is_ascii() && !prose(*c)) {
            assert!(help.contains(c), "{c:?} is not in the help:\n{screen}");
        }
    }
}

#[test]
fn on_a_small_terminal_the_help_scrolls_to_its_last_line() {
    let mut app = app(Theme::COLOR);
    app.update(Action::Help);
    let first = text(&render(&mut app, 80, 24));
    assert!(first.contains("↑↓ scroll"), "{first}");
    assert!(first.contains("q/Ctrl-c"), "{first}");
    assert!(!first.contains("✗ interrupted"), "{first}");
    for _ in 0..10 {
        app.update(Action::PageDown);
    }
    let last = text(&render(&mut app, 80, 24));
    assert!(last.contains("✗ interrupted"), "{last}");
    assert!(!last.contains("q/Ctrl-c"), "{last}");
    app.update(Action::Top);
    assert!(text(&render(&mut app, 80, 24)).contains("q/Ctrl-c"));
    app.update(Action::Close);
    assert!(!app.help);
}

/// The thumb's rows on the right border of the customers box.
fn thumb_rows(buffer: &Buffer) -> Vec<u16> {
    let x = buffer.area.width - 1;
    (0..buffer.area.height)
        .filter(|&y| buffer[(x, y)].symbol() == "┃")
        .collect()
}

#[test]
fn a_long_list_has_a_scrollbar_that_follows_the_selection() {
    let mut app = long_app();
    let top = thumb_rows(&render(&mut app, 100, 30));
    assert!(!top.is_empty(), "no scrollbar thumb");
    app.update(Action::Bottom);
    let bottom = thumb_rows(&render(&mut app, 100, 30));
    assert!(bottom[0] > top[0], "{top:?} then {bottom:?}");
    // Everything fits: no scrollbar.
    assert!(thumb_rows(&render(&mut self::app(Theme::COLOR), 120, 20)).is_empty());
}

/// The Events view with one event in each state; the failed one has a long, hostile error.
fn events_app() -> App {
    use meterline_store::StripeState;
    let mut app = app(Theme::COLOR);
    app.update(Action::ShowEvents);
    let mut failed = event(1, StripeState::Failed);
    failed.customer_name = "Consolidated Amalgamated Universal Exports".into();
    failed.user_id = Some("alice@example.com".into());
    failed.attempts = 5;
    failed.error = Some(
        "400 resource_missing: No such customer: 'cus_TEST123'; a similar object exists in live \
         mode, but a test mode key was used to make this request.\nrequest id req_abc\x1b]0;pwned\x07"
            .into(),
    );
    let mut expired = event(2, StripeState::Expired);
    expired.occurred_at = "2026-10-01T08:30:00Z".into();
    (expired.quantity, expired.amount) = (1_400, 1_400);
    let mut pending = event(3, StripeState::Pending);
    pending.attempts = 0;
    app.apply(DataEvent::Events(vec![
        failed,
        expired,
        pending,
        event(4, StripeState::Unmapped),
    ]));
    app
}

#[test]
fn the_events_view_is_a_table_with_a_header_row() {
    let buffer = render(&mut events_app(), 120, 20);
    assert_no_escape(&buffer);
    let shown = text(&buffer);
    let header = shown
        .lines()
        .nth(row_of(&buffer, "When (UTC)") as usize)
        .unwrap();
    for title in ["Customer", "Units", "State", "Tries", "Stripe's error"] {
        assert!(header.contains(title), "{header}");
    }
    insta::assert_snapshot!("events_120x20", shown);
}

#[test]
fn enter_on_an_event_shows_stripes_whole_error_made_safe() {
    let mut app = events_app();
    app.update(Action::Open);
    let buffer = render(&mut app, 120, 30);
    assert_no_escape(&buffer);
    let shown = text(&buffer);
    for part in [
        "Event #1",
        "Consolidated Amalgamated Universal Exports (acme)",
        "alice@example.com",
        "2026-11-20T10:00:00Z",
        "✗ failed",
        "Attempts    5",
        "but a test mode key was used to make this request.",
        "request id req_abc\\x1b]0;pwned\\x07",
    ] {
        assert!(shown.contains(part), "{part} missing:\n{shown}");
    }
    insta::assert_snapshot!("event_popup_120x30", shown);
    // The next event: the popup follows the selection.
    app.update(Action::Down);
    let shown = text(&render(&mut app, 120, 30));
    assert!(
        shown.contains("Event #2") && shown.contains("35-day window"),
        "{shown}"
    );
}

/// The footer's last line for what is open.
fn footer(app: &mut App) -> String {
    text(&render(app, 120, 30))
        .lines()
        .last()
        .unwrap()
        .to_string()
}

#[test]
fn the_footer_follows_the_open_popup() {
    let mut screens = Vec::new();
    let mut overview = app(Theme::COLOR);
    screens.push(("overview", footer(&mut overview)));
    overview.update(Action::Filter);
    screens.push(("filter", footer(&mut overview)));
    overview.update(Action::Close);
    overview.update(Action::Help);
    screens.push(("help", footer(&mut overview)));
    overview.update(Action::Close);
    overview.update(Action::Sync);
    overview.on_sync(SyncEvent::Ready(preview(false)));
    screens.push(("sync confirm", footer(&mut overview)));
    overview.update(Action::Confirm);
    screens.push(("sync running", footer(&mut overview)));
    let (_dir, mut detail) = detail_app(Theme::COLOR);
    screens.push(("detail", footer(&mut detail)));
    let mut events = events_app();
    screens.push(("events", footer(&mut events)));
    events.update(Action::Open);
    screens.push(("event detail", footer(&mut events)));
    let all: String = screens
        .iter()
        .map(|(name, line)| format!("{name:>13}: {line}\n"))
        .collect();
    insta::assert_snapshot!("footer_per_popup", all);
    // No two screens show the same keys.
    for (i, (a, line)) in screens.iter().enumerate() {
        for (b, other) in &screens[i + 1..] {
            assert_ne!(line, other, "{a} and {b}");
        }
    }
}

#[test]
fn money_is_shown_whole_in_the_plans_currency() {
    let text_of = std::fs::read_to_string(crate::support::repo_plans()).unwrap();
    let eur = Config::parse(
        &text_of.replace("currency = \"usd\"", "currency = \"eur\""),
        "plans.toml",
    )
    .unwrap();
    let mut app = app(Theme::COLOR);
    app.config = eur;
    app.update(Action::ShowPlans);
    let shown = text(&render(&mut app, 120, 20));
    for amount in ["999.00 EUR", "19.00 EUR", "0.0005 EUR", "0.00 EUR"] {
        assert!(shown.contains(amount), "{amount} not shown whole:\n{shown}");
    }
    let mut app = self::app(Theme::COLOR);
    app.update(Action::ShowPlans);
    let shown = text(&render(&mut app, 120, 20));
    assert!(
        shown.contains("$999.00") && shown.contains("$0.0005"),
        "{shown}"
    );
}

#[test]
fn an_unlimited_customers_detail_says_unlimited_once_without_a_dash() {
    let (_dir, mut app) = single_detail("business", 1_486_159);
    let shown = text(&render(&mut app, 120, 40));
    let gauge = shown
        .lines()
        .find(|l| l.contains("1,486,159"))
        .unwrap_or_else(|| panic!("no count:\n{shown}"));
    assert!(gauge.contains("1,486,159 · unlimited · ✓ ok"), "{gauge}");
    assert!(!gauge.contains('∞') && !gauge.contains(" - "), "{gauge}");
}

#[test]
fn reconcile_doubt_and_expiry_show_in_the_header_and_drifted_customers_are_marked() {
    let mut app = app(Theme::COLOR);
    let before = text(&render(&mut app, 140, 24));
    assert!(!before.contains("reconciled") && !before.contains("≠"));
    let mut by_customer = std::collections::HashMap::new();
    by_customer.insert("over-co".to_string(), (100, 117, "drift".to_string()));
    by_customer.insert("okay-corp".to_string(), (5, 5, "ok".to_string()));
    app.apply(DataEvent::Checks(Box::new(meterline_store::StripeChecks {
        last_reconcile: Some(meterline_store::ReconcileRun {
            finished_at: "2026-11-27T17:30:00Z".into(),
            rows: 2,
            drifted: 1,
            pending: 0,
            in_doubt: 0,
        }),
        by_customer,
        in_doubt: 4,
        expiring: 12,
    })));
    let screen = text(&render(&mut app, 140, 24));
    assert!(screen.contains("4 in doubt"), "{screen}");
    assert!(screen.contains("12 expiring"), "{screen}");
    assert!(
        screen.contains("reconciled") && screen.contains("1 drift"),
        "{screen}"
    );
    let marked: Vec<_> = screen.lines().filter(|l| l.contains("≠")).collect();
    assert_eq!(marked.len(), 1, "{screen}");
    assert!(marked[0].contains("≠ Over Co"), "{screen}");
}

#[test]
fn the_detail_shows_stripes_figure_beside_ours_after_a_reconcile() {
    let (_dir, mut app) = detail_app(Theme::COLOR);
    let before = text(&render(&mut app, 140, 40));
    assert!(!before.contains("(ours"), "{before}");
    let mut by_customer = std::collections::HashMap::new();
    by_customer.insert("globex".to_string(), (41_000, 41_250, "drift".to_string()));
    app.apply(DataEvent::Checks(Box::new(meterline_store::StripeChecks {
        by_customer,
        ..Default::default()
    })));
    let shown = text(&render(&mut app, 140, 40));
    assert!(
        shown.contains("Stripe 41,250 (ours 41,000, drift)"),
        "{shown}"
    );
}

#[test]
fn the_confirmation_shows_the_reports_that_would_go_out() {
    let aggregate = SyncPreview {
        mode: "aggregate",
        requests: 40,
        units: 98_765,
        ..preview(false)
    };
    let buffer = sync_screen(Theme::COLOR, vec![SyncEvent::Ready(aggregate)]);
    let shown = text(&buffer);
    assert!(shown.contains("as 40 reports (98,765 units)"), "{shown}");
}

/// With several meters the confirmation adds no units across them (requests, tokens and
/// users are not one number): it gives each meter's.
#[test]
fn the_confirmation_gives_units_per_meter_with_several_meters() {
    let aggregate = SyncPreview {
        mode: "aggregate",
        requests: 3,
        units: 1_203,
        units_by_meter: [("requests", 1), ("tokens", 1_200), ("users", 2)]
            .map(|(m, u)| (m.to_string(), u))
            .into(),
        ..preview(false)
    };
    let buffer = sync_screen(Theme::COLOR, vec![SyncEvent::Ready(aggregate)]);
    let shown = text(&buffer);
    assert!(shown.contains("as 3 reports, one per"), "{shown}");
    assert!(!shown.contains("1,203"), "{shown}");
    assert!(
        shown.contains("units by meter: requests 1 · tokens 1,200 · users 2"),
        "{shown}"
    );
}
