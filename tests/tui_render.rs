//! Rendering with ratatui's TestBackend: text (insta snapshots where layout matters) and the
//! styles of gauges at every level, the over-limit case, the monochrome theme, a tiny
//! terminal, and hostile text from the database.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use meterline::billing::Period;
use meterline::store::{Backlog, Dashboard, DashboardRow, NewCustomer};
use meterline::tui::app::App;
use meterline::tui::data::DataEvent;
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
    use meterline::tui::action::Action;
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
fn help_is_generated_from_the_keymap_and_the_sync_popup_says_it_is_unavailable() {
    use meterline::tui::action::Action;
    use meterline::tui::sync::{NOT_AVAILABLE, SyncEvent};
    let mut app = app(Theme::COLOR);
    app.update(Action::Help);
    let help = text(&render(&mut app, 120, 40));
    for (keys, what) in meterline::tui::keys::help(meterline::tui::keys::Mode::Normal) {
        assert!(
            help.contains(&format!("{keys:<20}{what}")),
            "{keys} {what}\n{help}"
        );
    }
    app.update(Action::Close);
    app.update(Action::Sync);
    app.on_sync(SyncEvent::Unavailable(NOT_AVAILABLE.into()));
    let popup = text(&render(&mut app, 120, 40));
    assert!(
        popup.contains("Stripe sync is not available in this build"),
        "{popup}"
    );
}
