//! Regenerates the README screenshots from the real rendering:
//! assets/overview.{txt,svg}, assets/detail.{txt,svg}, assets/events.{txt,svg} (an event
//! open in full) and assets/windows.{txt,svg} (on the plans `meterline init` writes, the
//! detail of the customer whose 5-hour window is full).
//!
//! A demo database with a fixed seed at a fixed instant, drawn on ratatui's TestBackend at
//! 120×40, so the same code always gives the same pictures:
//!
//!     cargo run --release --example screenshots

use std::error::Error;
use std::fmt::Write as _;
use std::path::Path;

use chrono::{DateTime, Utc};
use meterline::{Config, Store};
use meterline_store::demo::{DemoSpec, fill};
use meterline_tui::action::Action;
use meterline_tui::app::App;
use meterline_tui::data::{DataEvent, EVENTS_LIMIT};
use meterline_tui::theme::Theme;
use meterline_tui::ui;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier};

const WIDTH: u16 = 120;
const HEIGHT: u16 = 40;
const NOW: &str = "2026-11-27T18:00:00Z";
/// The organisation account: its detail shows members too.
const DETAIL_OF: &str = "globex-corporation";

fn main() -> Result<(), Box<dyn Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let now: DateTime<Utc> = DateTime::parse_from_rfc3339(NOW)?.with_timezone(&Utc);
    let config = Config::load(&root.join("plans.toml"))?;
    let dir = tempfile::tempdir()?;
    let mut store = Store::open(&dir.path().join("demo.db"))?;
    let spec = DemoSpec {
        customers: 40,
        events: 20_000,
        seed: 7,
    };
    fill(&mut store, &config, &spec, now)?;

    let mut app = app_on(&store, &config, now)?;
    save(root, "overview", &draw(&app))?;

    open_detail(&mut app, &store, &config, DETAIL_OF, now)?;
    save(root, "detail", &draw(&app))?;

    // The Events view with the first event (a failed one) open in full.
    app.update(Action::Close);
    app.update(Action::ShowEvents);
    app.apply(DataEvent::Events(store.problem_events(EVENTS_LIMIT, now)?));
    app.update(Action::Open);
    save(root, "events", &draw(&app))?;

    // Rolling windows: a demo on the plans `meterline init` writes, the detail of the
    // customer whose 5-hour token window is full.
    let config = Config::parse(meterline::config::INIT_PLANS, "init plans")?;
    let mut store = Store::open(&dir.path().join("windows.db"))?;
    fill(&mut store, &config, &spec, now)?;
    let mut full = None;
    for row in store.dashboard(&config, now)?.rows {
        let check = store.metered_check(&config, &row.customer_id, now)?;
        if check
            .meters
            .iter()
            .flat_map(|m| &m.windows)
            .any(|w| w.used >= w.limit)
        {
            full = Some(row.customer_id);
            break;
        }
    }
    let full = full.ok_or("no customer of the demo has a full window")?;
    let mut app = app_on(&store, &config, now)?;
    open_detail(&mut app, &store, &config, &full, now)?;
    save(root, "windows", &draw(&app))?;
    Ok(())
}

/// The dashboard on `store`'s demo at `now`, on its overview.
fn app_on(store: &Store, config: &Config, now: DateTime<Utc>) -> Result<App, Box<dyn Error>> {
    let dashboard = store.dashboard(config, now)?;
    let mut app = App::new(
        config.clone(),
        "demo.db".into(),
        "plans.toml".into(),
        Theme::COLOR,
        now,
        dashboard,
    );
    app.set_page(ui::list_rows(WIDTH, HEIGHT));
    Ok(app)
}

/// Move the selection down to `customer` and open its detail, as the keys would.
fn open_detail(
    app: &mut App,
    store: &Store,
    config: &Config,
    customer: &str,
    now: DateTime<Utc>,
) -> Result<(), Box<dyn Error>> {
    while app.selected_row().map(|r| r.customer_id.as_str()) != Some(customer) {
        let before = app.list.selected;
        app.update(Action::Down);
        if app.list.selected == before {
            return Err(format!("{customer} is not in the demo").into());
        }
    }
    app.update(Action::Open);
    let detail = store.customer_detail(config, customer, now).map(Box::new);
    app.apply(DataEvent::Detail {
        customer_id: customer.into(),
        detail: detail.map_err(|e| e.to_string()),
    });
    Ok(())
}

fn draw(app: &App) -> Buffer {
    // The TestBackend cannot fail.
    let mut terminal =
        Terminal::new(TestBackend::new(WIDTH, HEIGHT)).unwrap_or_else(|never| match never {});
    terminal
        .draw(|frame| ui::draw(frame, app))
        .unwrap_or_else(|never| match never {});
    terminal.backend().buffer().clone()
}

fn save(root: &Path, name: &str, buffer: &Buffer) -> std::io::Result<()> {
    let assets = root.join("assets");
    std::fs::create_dir_all(&assets)?;
    std::fs::write(assets.join(format!("{name}.txt")), text(buffer))?;
    std::fs::write(assets.join(format!("{name}.svg")), svg(buffer))?;
    println!("wrote assets/{name}.txt and assets/{name}.svg");
    Ok(())
}

fn text(buffer: &Buffer) -> String {
    let mut out = String::new();
    for y in 0..buffer.area.height {
        let line: String = (0..buffer.area.width)
            .map(|x| buffer[(x, y)].symbol())
            .collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The buffer as an SVG: one monospace cell per character, with its colours and weight, on
/// a dark background.
fn svg(buffer: &Buffer) -> String {
    const CELL_W: f32 = 8.4;
    const CELL_H: f32 = 17.0;
    let (w, h) = (buffer.area.width, buffer.area.height);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{:.0}" height="{:.0}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="14">"#,
        f32::from(w) * CELL_W,
        f32::from(h) * CELL_H
    );
    let _ = writeln!(
        out,
        r##"<rect width="100%" height="100%" fill="#1e1e1e"/>"##
    );
    for y in 0..h {
        for x in 0..w {
            let cell = &buffer[(x, y)];
            let reversed = cell.modifier.contains(Modifier::REVERSED);
            let (mut fg, mut bg) = (rgb(cell.fg, "#d4d4d4"), rgb(cell.bg, "#1e1e1e"));
            if reversed {
                std::mem::swap(&mut fg, &mut bg);
            }
            let (px, py) = (f32::from(x) * CELL_W, f32::from(y) * CELL_H);
            if bg != "#1e1e1e" {
                let _ = writeln!(
                    out,
                    r#"<rect x="{px:.1}" y="{py:.1}" width="{CELL_W}" height="{CELL_H}" fill="{bg}"/>"#
                );
            }
            let symbol = cell.symbol();
            if symbol.trim().is_empty() {
                continue;
            }
            // Block elements fill the cell, so bars read as solid.
            if symbol == "█" {
                let _ = writeln!(
                    out,
                    r#"<rect x="{px:.1}" y="{py:.1}" width="{CELL_W}" height="{CELL_H}" fill="{fg}"/>"#
                );
                continue;
            }
            let weight = if cell.modifier.contains(Modifier::BOLD) {
                r#" font-weight="bold""#
            } else {
                ""
            };
            let _ = writeln!(
                out,
                r#"<text x="{px:.1}" y="{:.1}" fill="{fg}"{weight}>{}</text>"#,
                py + CELL_H * 0.78,
                escape(symbol)
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

fn rgb(color: Color, reset: &'static str) -> &'static str {
    match color {
        Color::Reset => reset,
        Color::Black => "#000000",
        Color::Red => "#f14c4c",
        Color::Green => "#23d18b",
        Color::Yellow => "#f5f543",
        Color::Blue => "#3b8eea",
        Color::Magenta => "#d670d6",
        Color::Cyan => "#29b8db",
        Color::Gray => "#cccccc",
        Color::DarkGray => "#767676",
        Color::White => "#ffffff",
        _ => reset,
    }
}

fn escape(symbol: &str) -> String {
    symbol
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
