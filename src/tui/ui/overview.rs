//! The home screen: totals, then the customers table with a gauge per customer.

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};

use super::format::{minute, percent, stored_minute, thousands, used_of};
use super::{body_layout, list_rows};
use crate::billing::WarningLevel;
use crate::store::DashboardRow;
use crate::tui::action::Action;
use crate::tui::app::{App, SortKey};
use crate::tui::keys::{self, Mode};
use crate::tui::sanitize::sanitize;
use crate::tui::theme::{Theme, level_label, level_word, outcome_label};

pub fn draw(frame: &mut Frame, app: &App, body: Rect) {
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
    let total = format!("{} {noun}   ", thousands(s.customers as i64));
    let mut levels = vec![Span::raw(total)];
    for (i, level) in WarningLevel::ALL.iter().enumerate() {
        levels.push(Span::styled(
            format!("{} {}", level_label(*level), thousands(s.levels[i] as i64)),
            theme.level(*level),
        ));
        levels.push(Span::raw("  "));
    }
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
    let wide = area.width >= 110;
    let gauge_width: u16 = if wide { 20 } else { 10 };
    let page = list_rows(frame.area().width, frame.area().height).max(1);
    // The cursor keeps `selected` on screen; clamp again in case the size just changed.
    let offset = app
        .list
        .offset
        .max((app.list.selected + 1).saturating_sub(page))
        .min(app.list.selected);
    let rows = app.visible_rows(offset, page).enumerate().map(|(i, row)| {
        let cells = customer_cells(app, row, wide, gauge_width);
        let r = Row::new(cells);
        if offset + i == app.list.selected {
            r.style(theme.selected())
        } else {
            r
        }
    });
    let mut widths = vec![Constraint::Fill(1), Constraint::Length(9)];
    if wide {
        widths.push(Constraint::Length(23));
    }
    widths.extend([
        Constraint::Length(gauge_width),
        Constraint::Length(7),
        Constraint::Length(12),
        Constraint::Length(5),
        Constraint::Length(11),
    ]);
    let mut titles = vec![Column::Customer, Column::Plan];
    if wide {
        titles.push(Column::UsedOfLimit);
    }
    titles.extend([
        Column::Usage,
        Column::Percent,
        Column::Level,
        Column::Days,
        Column::Unreported,
    ]);
    let marked = sorted_column(app.sort, wide);
    let header = Row::new(titles.into_iter().map(|column| {
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
    let table = Table::new(rows, widths).header(header).block(block);
    frame.render_widget(table, area);
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

/// The columns of the customer table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Customer,
    Plan,
    UsedOfLimit,
    Usage,
    Percent,
    Level,
    Days,
    Unreported,
}

impl Column {
    fn title(self) -> &'static str {
        match self {
            Column::Customer => "Customer",
            Column::Plan => "Plan",
            Column::UsedOfLimit => "Used / limit",
            Column::Usage => "Usage",
            Column::Percent => "%",
            Column::Level => "Level",
            Column::Days => "Days",
            Column::Unreported => "Unreported",
        }
    }

    fn alignment(self) -> Alignment {
        match self {
            Column::Customer | Column::Plan | Column::Usage | Column::Level => Alignment::Left,
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
    }
}

/// ▼: highest first (most at risk, most used); ▲: lowest first (A to Z, fewest days left).
pub fn sort_arrow(sort: SortKey, reverse: bool) -> &'static str {
    let descending = matches!(sort, SortKey::Risk | SortKey::Used | SortKey::Unreported);
    if descending != reverse { "▼" } else { "▲" }
}

fn customer_cells<'a>(
    app: &App,
    row: &'a DashboardRow,
    wide: bool,
    gauge_width: u16,
) -> Vec<Cell<'a>> {
    let theme = app.theme;
    let level = app.level_of(row);
    let right = |text: String| Cell::from(Line::from(text).alignment(Alignment::Right));
    let mut cells = vec![
        Cell::from(sanitize(&row.name).into_owned()),
        Cell::from(sanitize(&row.plan_id).into_owned()),
    ];
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
        right(percent(row.used, row.limit)),
        Cell::from(Span::styled(
            level_word(level, app.overage_billed(row), true),
            theme.level(level),
        )),
        right(row.period.days_left(app.now).to_string()),
        right(unreported),
    ]);
    cells
}

/// A text gauge `width` cells wide, coloured by level. The bar is clamped at full; the
/// percentage beside it is not.
pub fn gauge_line(
    theme: Theme,
    level: WarningLevel,
    ratio: Option<f64>,
    width: u16,
) -> Line<'static> {
    let width = usize::from(width);
    let Some(ratio) = ratio else {
        let text = if width >= 11 { "∞ unlimited" } else { "∞" };
        return Line::from(Span::styled(text, theme.dim()));
    };
    let filled = ((ratio.clamp(0.0, 1.0) * width as f64).round() as usize).min(width);
    let empty = if theme.color { "░" } else { "·" };
    Line::from(vec![
        Span::styled("█".repeat(filled), theme.gauge(level)),
        Span::styled(empty.repeat(width - filled), theme.gauge_empty()),
    ])
}
