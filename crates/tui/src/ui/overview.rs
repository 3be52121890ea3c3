//! The home screen: totals, then the customers table with a gauge per customer.

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};

use super::format::{ellipsis, minute, percent, stored_minute, thousands, used_of};
use super::{body_layout, list_rows};
use crate::action::Action;
use crate::app::App;
use crate::billing::WarningLevel;
use crate::keys::{self, Mode};
use crate::sanitize::sanitize;
use crate::store::{DashboardRow, TightestWindow};
use crate::table::SortKey;
use crate::theme::{Theme, level_label, level_word, outcome_label};

pub(crate) fn draw(frame: &mut Frame, app: &App, body: Rect) {
    let [header, list] = body_layout(body);
    draw_header(frame, app, header);
    draw_table(frame, app, list);
}

fn draw_header(frame: &mut Frame, app: &App, area: Rect) {
    let theme = app.theme;
    let s = &app.summary;
    let noun = if s.customers == 1 {
        "customer"
    } else {
        "customers"
    };
    let hidden = match s.archived_hidden {
        0 => String::new(),
        n => format!(" (+{} archived, a shows)", thousands(n as i64)),
    };
    let total = format!("{} {noun}{hidden}   ", thousands(s.customers as i64));
    let mut levels = vec![Span::raw(total)];
    for (i, level) in WarningLevel::ALL.iter().enumerate() {
        levels.push(Span::styled(
            format!("{} {}", level_label(*level), thousands(s.levels[i] as i64)),
            theme.level(*level),
        ));
        levels.push(Span::raw("  "));
    }
    levels.extend(alert_counts(app));
    let b = s.backlog;
    let count = |n: i64, word: &str, bad: Style| {
        let style = if n > 0 { bad } else { theme.dim() };
        Span::styled(format!("{} {word}", thousands(n)), style)
    };
    let stripe = Line::from(vec![
        Span::raw("Stripe  "),
        count(b.unreported, "unreported", theme.attention()),
        Span::raw(" · "),
        count(b.failed, "failed", theme.error()),
        Span::raw(" · "),
        count(b.expired, "expired", theme.error()),
        Span::raw(" · "),
        count(s.unmapped, "unmapped", theme.attention()),
    ]);
    let stripe = checks_spans(app, stripe);
    let lines = vec![
        Line::from(vec![
            Span::styled("db ", theme.dim()),
            Span::raw(sanitize(&app.db_label).into_owned()),
            Span::styled("   plans ", theme.dim()),
            Span::raw(sanitize(&app.plans_label).into_owned()),
            super::plans::stale_note(app),
            Span::styled("   now ", theme.dim()),
            Span::raw(minute(app.now)),
        ]),
        Line::from(levels),
        stripe,
        last_sync(app),
    ];
    frame.render_widget(Paragraph::new(lines).block(Block::bordered()), area);
}

/// Alert deliveries waiting and failed, once there are any alerts (the Plans view lists them).
fn alert_counts(app: &App) -> Vec<Span<'static>> {
    let c = app.alerts.counts;
    if c.pending + c.delivered + c.failed == 0 {
        return Vec::new();
    }
    let theme = app.theme;
    let count = |n: u64, word: &str, bad: Style| {
        let style = if n > 0 { bad } else { theme.dim() };
        Span::styled(format!("{} {word}", thousands(n as i64)), style)
    };
    vec![
        Span::raw("· alerts "),
        count(c.pending, "pending", theme.attention()),
        Span::raw(" · "),
        count(c.failed, "failed", theme.error()),
    ]
}

/// The Stripe line's tail: events in doubt and expiring (when any), and the last reconcile.
fn checks_spans(app: &App, mut line: Line<'static>) -> Line<'static> {
    let (theme, c) = (app.theme, &app.checks);
    for (n, word) in [(c.in_doubt, "in doubt"), (c.expiring, "expiring")] {
        if n > 0 {
            line.push_span(Span::raw(" · "));
            line.push_span(Span::styled(
                format!("{} {word}", thousands(n as i64)),
                theme.error(),
            ));
        }
    }
    if let Some(run) = &c.last_reconcile {
        line.push_span(Span::styled(
            format!("   reconciled {}", stored_minute(&run.finished_at)),
            theme.dim(),
        ));
        let (text, style) = match run.drifted {
            0 => (" · no drift".to_string(), theme.good()),
            n => (format!(" · {n} drift"), theme.error()),
        };
        line.push_span(Span::styled(text, style));
    }
    line
}

/// When the latest sync ran (by any process) and how it ended; its error last, so a narrow
/// terminal cuts only the error.
fn last_sync(app: &App) -> Line<'static> {
    let theme = app.theme;
    let label = Span::styled("last sync  ", theme.dim());
    let Some(run) = &app.last_sync else {
        let key = keys::first_key(Mode::Normal, Action::Sync);
        return Line::from(vec![
            label,
            Span::styled(format!("never · {key} syncs to Stripe"), theme.dim()),
        ]);
    };
    let when = stored_minute(run.finished_at.as_deref().unwrap_or(&run.started_at));
    let (mut word, style) = outcome_label(theme, &run.outcome);
    if run.outcome == "running" {
        word.push_str(" since");
    }
    let mut spans = vec![
        label,
        Span::styled(word, style),
        Span::raw(format!(" {when}")),
    ];
    if run.outcome != "running" {
        spans.push(Span::raw(format!(
            " · {} sent, {} accepted, {} duplicates",
            thousands(run.attempted as i64),
            thousands(run.accepted as i64),
            thousands(run.duplicates as i64)
        )));
        for (n, word) in [(run.failed, "failed"), (run.remaining, "remaining")] {
            if n > 0 {
                spans.push(Span::styled(
                    format!(", {} {word}", thousands(n as i64)),
                    theme.attention(),
                ));
            }
        }
    }
    if let Some(error) = &run.error {
        spans.push(Span::styled(
            format!(" · {}", sanitize(error)),
            theme.error(),
        ));
    }
    Line::from(spans)
}

fn draw_table(frame: &mut Frame, app: &App, area: Rect) {
    let theme = app.theme;
    let inner_width = area.width.saturating_sub(2);
    let wide = inner_width >= 108;
    let meter_width = meter_width(app, wide);
    let shown = Shown {
        wide,
        meters: meter_width > 0,
        windows: app.config.has_windows(),
        credits: app.summary.with_credits > 0,
    };
    let mut columns = columns(shown);
    // The Credits column goes first when the name and the gauge would be left too little.
    if spare(&columns, inner_width, meter_width) < CREDITS_LEAVE {
        columns.retain(|c| *c != Column::Credits);
    }
    let widths = column_widths(&columns, inner_width, meter_width);
    let name_width = widths[0];
    let gauge_width = widths[columns
        .iter()
        .position(|c| *c == Column::Usage)
        .unwrap_or(0)];
    let page = list_rows(frame.area().width, frame.area().height).max(1);
    // The cursor keeps `selected` on screen; clamp again in case the size just changed.
    let offset = app
        .list
        .offset
        .max((app.list.selected + 1).saturating_sub(page))
        .min(app.list.selected);
    let rows = app.visible_rows(offset, page).enumerate().map(|(i, row)| {
        let cells = customer_cells(app, row, &columns, (name_width, gauge_width, meter_width));
        let r = Row::new(cells);
        if offset + i == app.list.selected {
            r.style(theme.selected())
        } else {
            r
        }
    });
    let marked = sorted_column(app.sort, wide);
    let header = Row::new(columns.iter().map(|&column| {
        let mut title = column.title().to_string();
        if column == marked {
            title.push_str(sort_arrow(app.sort, app.reverse));
        }
        Cell::from(Line::from(title).alignment(column.alignment()))
    }))
    .style(theme.header());
    let mut title = format!(
        " Customers {}/{} · sorted by {}{} ",
        thousands(app.visible_len() as i64),
        thousands(app.rows().len() as i64),
        app.sort.label(),
        if app.reverse { " (reversed)" } else { "" },
    );
    if app.several_meters() {
        let meter = app.meter_index().and_then(|i| app.config.meters.get(i));
        match meter {
            Some(m) => title.push_str(&format!("· meter {} ", sanitize(&m.name))),
            None => title.push_str("· meter nearest its limit "),
        }
    }
    if !app.filter.is_empty() {
        title.push_str(&format!("· filter \"{}\" ", sanitize(&app.filter)));
    }
    // Where the selection is in the whole list: rows above the screen are never a surprise.
    let mut block = Block::bordered().title(title);
    if app.visible_len() > 0 {
        block = block.title_bottom(
            Line::from(format!(
                " {}/{} ",
                thousands(app.list.selected as i64 + 1),
                thousands(app.visible_len() as i64)
            ))
            .right_aligned(),
        );
    }
    let widths = widths.into_iter().map(Constraint::Length);
    let table = Table::new(rows, widths).header(header).block(block);
    frame.render_widget(table, area);
    // On the right border, beside the rows only (not the header row).
    let rows_area = Rect {
        y: area.y + 2,
        height: area.height.saturating_sub(3),
        ..area
    };
    super::scrollbar(frame, app, rows_area, app.visible_len(), offset, page);
    if app.visible_len() == 0 {
        let message = if app.rows().is_empty() {
            "No customers yet. Add one: meterline customer add ID --plan free"
        } else {
            "No customer matches the filter (Esc clears it)."
        };
        let inner = area.inner(ratatui::layout::Margin::new(2, 2));
        frame.render_widget(Paragraph::new(message).style(theme.dim()), inner);
    }
}

/// The room the name and the gauge keep beside the Credits column; narrower, it is left out.
const CREDITS_LEAVE: u16 = 36;

/// Which of the optional columns the table has.
#[derive(Debug, Clone, Copy)]
struct Shown {
    /// "Used / limit", on wide terminals.
    wide: bool,
    /// "Meter", with several meters.
    meters: bool,
    /// "Window", when plans.toml has rolling windows.
    windows: bool,
    /// "Credits", when a customer has money credits.
    credits: bool,
}

fn columns(shown: Shown) -> Vec<Column> {
    let mut columns = vec![Column::Customer, Column::Plan];
    if shown.meters {
        columns.push(Column::Meter);
    }
    if shown.wide {
        columns.push(Column::UsedOfLimit);
    }
    columns.extend([Column::Usage, Column::Percent, Column::Level]);
    if shown.windows {
        columns.push(Column::Window);
    }
    columns.extend([Column::Days, Column::Unreported]);
    if shown.credits {
        columns.push(Column::Credits);
    }
    columns
}

/// The room `columns` leave the name and the gauge in a table `width` cells wide.
fn spare(columns: &[Column], width: u16, meter: u16) -> u16 {
    let gaps = columns.len().saturating_sub(1) as u16;
    let fixed: u16 = columns.iter().filter_map(|c| c.width()).sum::<u16>()
        + if columns.contains(&Column::Meter) {
            meter
        } else {
            0
        };
    width.saturating_sub(fixed + gaps)
}

/// Column widths for a table `width` cells wide. Every column but the name and the gauge has
/// the width of its widest content; of the room left the name gets two fifths (at most 28: longer
/// names end in "…") and the gauge the rest, so on wide terminals the gauge is the widest.
/// `meter`: the Meter column's width, from its content.
fn column_widths(columns: &[Column], width: u16, meter: u16) -> Vec<u16> {
    let spare = spare(columns, width, meter);
    let name = (spare * 2 / 5).clamp(spare.saturating_sub(10).min(16), 28);
    columns
        .iter()
        .map(|c| match c {
            Column::Customer => name,
            Column::Usage => spare - name,
            Column::Meter => meter,
            other => other.width().unwrap_or(0),
        })
        .collect()
}

/// The columns of the customer table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Customer,
    Plan,
    Meter,
    UsedOfLimit,
    Usage,
    Percent,
    Level,
    Window,
    Days,
    Unreported,
    Credits,
}

impl Column {
    fn title(self) -> &'static str {
        match self {
            Column::Customer => "Customer",
            Column::Plan => "Plan",
            Column::Meter => "Meter",
            Column::UsedOfLimit => "Used / limit",
            Column::Usage => "Usage",
            Column::Percent => "%",
            Column::Level => "Level",
            Column::Window => "Window",
            Column::Days => "Days",
            Column::Unreported => "Unreported",
            Column::Credits => "Credits",
        }
    }

    /// Fixed widths; None for the two that share the room left (name and gauge) and the
    /// meter's, which follows the meters' names.
    fn width(self) -> Option<u16> {
        Some(match self {
            Column::Customer | Column::Usage | Column::Meter => return None,
            Column::Plan => 9,
            // "1,486,159 / 500,000"
            Column::UsedOfLimit => 19,
            Column::Percent => 6,
            Column::Level => 11,
            // "5h 100 %"; "31d 134 %"
            Column::Window => 9,
            Column::Days => 4,
            Column::Unreported => 10,
            // "$12,345.67"; more ends in "…"
            Column::Credits => CREDITS_WIDTH,
        })
    }

    fn alignment(self) -> Alignment {
        match self {
            Column::Customer | Column::Plan | Column::Meter | Column::Usage | Column::Level => {
                Alignment::Left
            }
            _ => Alignment::Right,
        }
    }
}

/// The column whose title carries the sort arrow.
fn sorted_column(sort: SortKey, wide: bool) -> Column {
    match sort {
        SortKey::Risk => Column::Percent,
        SortKey::Name => Column::Customer,
        SortKey::Plan => Column::Plan,
        SortKey::Used if wide => Column::UsedOfLimit,
        SortKey::Used => Column::Usage,
        SortKey::Unreported => Column::Unreported,
        SortKey::DaysLeft => Column::Days,
        SortKey::Window => Column::Window,
    }
}

/// ▼: highest first (most at risk, most used); ▲: lowest first (A to Z, fewest days left).
pub(crate) fn sort_arrow(sort: SortKey, reverse: bool) -> &'static str {
    let descending = matches!(
        sort,
        SortKey::Risk | SortKey::Used | SortKey::Unreported | SortKey::Window
    );
    if descending != reverse { "▼" } else { "▲" }
}

/// The widest a meter's label may be: "Tokens · 3 meters" on wide terminals, the name alone
/// on narrow ones.
const METER_WIDE: u16 = 24;
const METER_NARROW: u16 = 12;

/// The Meter column's width: its widest label within its cap; 0 without several meters.
fn meter_width(app: &App, wide: bool) -> u16 {
    if !app.several_meters() {
        return 0;
    }
    let widest = (0..app.config.meters.len())
        .map(|i| Span::raw(meter_label(app, i, wide)).width())
        .max()
        .unwrap_or(0)
        .max(Column::Meter.title().len());
    let cap = if wide { METER_WIDE } else { METER_NARROW };
    u16::try_from(widest).unwrap_or(u16::MAX).min(cap)
}

/// What the Meter column says of meter `index`: its name (cut to fit) and, on wide
/// terminals, how many meters there are.
fn meter_label(app: &App, index: usize, wide: bool) -> String {
    let name = app
        .config
        .meters
        .get(index)
        .map_or_else(String::new, |m| sanitize(&m.name).into_owned());
    if !wide {
        return ellipsis(&name, METER_NARROW);
    }
    let count = format!(
        " · {}",
        crate::billing::count(app.config.meters.len() as i64, "meter")
    );
    let count_width = u16::try_from(Span::raw(count.as_str()).width()).unwrap_or(u16::MAX);
    let room = METER_WIDE.saturating_sub(count_width);
    format!("{}{count}", ellipsis(&name, room))
}

/// The Credits column's width.
const CREDITS_WIDTH: u16 = 10;

/// What the Credits column says: the money credits available, "—" without a grant.
fn credits_cell(app: &App, credits: Option<rust_decimal::Decimal>) -> String {
    credits.map_or_else(
        || "—".to_string(),
        |amount| ellipsis(&app.config.money(amount), CREDITS_WIDTH),
    )
}

/// What the Window column says: the fullest window and its share, coloured by its level;
/// empty for a customer without windows.
fn window_cell(theme: Theme, window: Option<&TightestWindow>) -> Cell<'static> {
    let Some(w) = window else {
        return Cell::from("");
    };
    let text = format!("{} {}", sanitize(&w.window), percent(w.used, Some(w.limit)));
    Cell::from(Line::styled(text, theme.level(w.level)).alignment(Alignment::Right))
}

fn customer_cells<'a>(
    app: &App,
    row: &'a DashboardRow,
    columns: &[Column],
    (name_width, gauge_width, meter_width): (u16, u16, u16),
) -> Vec<Cell<'a>> {
    let wide = columns.contains(&Column::UsedOfLimit);
    let theme = app.theme;
    let level = app.level_of(row);
    let right = |text: String| Cell::from(Line::from(text).alignment(Alignment::Right));
    // A customer whose last reconcile drifted is marked.
    let drifted = app
        .checks
        .by_customer
        .get(&row.customer_id)
        .is_some_and(|c| c.2 == "drift");
    let name = match drifted {
        true => format!("≠ {}", sanitize(&row.name)),
        false => sanitize(&row.name).into_owned(),
    };
    let mut cells = vec![
        Cell::from(ellipsis(
            &if row.archived {
                format!("[archived] {name}")
            } else {
                name
            },
            name_width,
        )),
        Cell::from(ellipsis(&sanitize(&row.plan_id), 9)),
    ];
    if meter_width > 0 {
        cells.push(Cell::from(meter_label(app, row.shown, wide)));
    }
    if wide {
        cells.push(right(used_of(row.used, row.limit)));
    }
    let unreported = if row.mapped {
        thousands(row.backlog.unreported)
    } else {
        format!("{} ?", thousands(row.backlog.unreported))
    };
    cells.extend([
        Cell::from(gauge_line(theme, level, row.ratio(), gauge_width)),
        right(if row.limit.is_some() {
            percent(row.used, row.limit)
        } else {
            String::new()
        }),
        Cell::from(Span::styled(
            level_word(level, app.overage_billed(row), true),
            theme.level(level),
        )),
    ]);
    if columns.contains(&Column::Window) {
        cells.push(window_cell(theme, row.window.as_ref()));
    }
    cells.extend([
        right(row.period.days_left(app.now).to_string()),
        right(unreported),
    ]);
    if columns.contains(&Column::Credits) {
        cells.push(right(credits_cell(app, row.credits)));
    }
    cells
}

/// A text gauge `width` cells wide, coloured by level. The bar is clamped at full; the
/// percentage beside it is not.
pub(crate) fn gauge_line(
    theme: Theme,
    level: WarningLevel,
    ratio: Option<f64>,
    width: u16,
) -> Line<'static> {
    let width = usize::from(width);
    // Unlimited: no bar to fill, the word once (the count is in "Used / limit").
    let Some(ratio) = ratio else {
        let text = if width >= 9 { "unlimited" } else { "∞" };
        return Line::from(Span::styled(text, theme.dim()));
    };
    let filled = ((ratio.clamp(0.0, 1.0) * width as f64).round() as usize).min(width);
    let empty = if theme.color { "░" } else { "·" };
    Line::from(vec![
        Span::styled("█".repeat(filled), theme.gauge(level)),
        Span::styled(empty.repeat(width - filled), theme.gauge_empty()),
    ])
}
