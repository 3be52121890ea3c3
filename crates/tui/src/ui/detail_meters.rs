//! One customer with several meters (`[[meters]]` in plans.toml): the period and where its
//! usage is reported, then a box per meter with its gauge (coloured by level, the level in
//! words), what the plan does at its limit, its usage per day and its largest groups.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Bar, BarChart, BarGroup, Block, Paragraph};

use super::format::{day, ellipsis, percent, thousands, used_of};
use super::overview::gauge_line;
use crate::app::App;
use crate::billing::Period;
use crate::config::{Aggregation, AtLimit};
use crate::sanitize::sanitize;
use crate::store::{CustomerDetail, MeterDetail, Projection, project};
use crate::theme::{Theme, level_word};

/// A meter's box: at least its gauge and one more line, at most what its groups need.
const MIN_BOX: u16 = 4;
const MAX_BOX: u16 = 12;
/// The recent events under the meters, in the height their boxes leave: a few lines at
/// least, at most the events the detail loads.
const MIN_RECENT: u16 = 5;
const MAX_RECENT: u16 = 14;
/// The widest a day's bar gets.
const MAX_BAR: u16 = 4;

pub(super) fn draw(frame: &mut Frame, app: &App, d: &CustomerDetail, area: Rect) {
    let count = d.meters.len();
    // The credits under the header, then the meters, each box as tall as it gets; the
    // recent events in what is left.
    let credits_height = super::credits::box_height(&d.credits);
    let windows_height = super::windows::height(&d.windows);
    let body = area
        .height
        .saturating_sub(2 + credits_height + windows_height);
    let boxes_height = body.min(
        u16::try_from(count)
            .unwrap_or(u16::MAX)
            .saturating_mul(MAX_BOX),
    );
    let wanted = u16::try_from(d.recent.len())
        .unwrap_or(u16::MAX)
        .saturating_add(2)
        .clamp(MIN_RECENT, MAX_RECENT);
    let recent_height = match (body - boxes_height).min(wanted) {
        fits if fits >= MIN_RECENT => fits,
        _ => 0,
    };
    let [header, credits, windows, boxes, recent, _] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(credits_height),
        Constraint::Length(windows_height),
        Constraint::Length(boxes_height),
        Constraint::Length(recent_height),
        Constraint::Fill(1),
    ])
    .areas(area);
    super::credits::draw(frame, app, &d.credits, credits);
    super::windows::draw(frame, app, &d.windows, windows);
    if recent_height > 0 {
        super::detail::draw_recent(frame, app, &d.recent, recent);
    }
    let fit = usize::from(boxes.height / MIN_BOX).min(count);
    let c = &d.check;
    let period = Period {
        start: c.period_start,
        end: c.period_end,
    };
    let mut first = format!(
        "{} · plan {} · period {} → {} · {} left · {count} meters",
        sanitize(&d.name),
        sanitize(&c.plan),
        day(c.period_start),
        day(c.period_end),
        crate::billing::count(period.days_left(app.now), "day"),
    );
    if fit < count {
        first.push_str(&format!(" (showing {fit}: a taller terminal shows all)"));
    }
    frame.render_widget(
        Paragraph::new(vec![
            Line::styled(first, app.theme.title()),
            super::detail::reporting_line(app, d),
        ]),
        header,
    );
    if fit == 0 {
        return;
    }
    let each = (boxes.height / u16::try_from(fit).unwrap_or(u16::MAX)).clamp(MIN_BOX, MAX_BOX);
    let mut constraints = vec![Constraint::Length(each); fit];
    constraints.push(Constraint::Fill(1));
    let areas = Layout::vertical(constraints).split(boxes);
    for (meter, area) in d.meters.iter().zip(areas.iter()) {
        draw_meter(frame, app, meter, *area);
    }
}

fn draw_meter(frame: &mut Frame, app: &App, m: &MeterDetail, area: Rect) {
    let theme = app.theme;
    let mut title = format!(" {} · {}", sanitize(&m.name), m.aggregation.as_str());
    if !m.group_by.is_empty() {
        title.push_str(&format!(" · by {}", sanitize(&m.group_by.join(", "))));
    }
    title.push(' ');
    let block = Block::bordered().title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let constraints = if m.group_by.is_empty() {
        vec![Constraint::Percentage(45), Constraint::Fill(1)]
    } else {
        vec![
            Constraint::Percentage(45),
            Constraint::Percentage(30),
            Constraint::Fill(1),
        ]
    };
    let columns = Layout::horizontal(constraints).spacing(2).split(inner);
    draw_standing(frame, app, m, columns[0]);
    draw_daily(frame, theme, m, columns[1]);
    if let Some(groups) = columns.get(2) {
        draw_groups(frame, app, m, *groups);
    }
}

/// The gauge, the figures with the level in words, what happens at the limit, the pace.
fn draw_standing(frame: &mut Frame, app: &App, m: &MeterDetail, area: Rect) {
    let theme = app.theme;
    let c = &m.check;
    let terms = app
        .config
        .plan(&c.plan)
        .and_then(|p| p.meters.get(&m.meter));
    let overage = terms.is_some_and(|t| t.at_limit == AtLimit::Overage);
    let share = match c.limit {
        Some(_) => percent(c.used, c.limit),
        None => "unlimited".to_string(),
    };
    let mut lines = vec![
        gauge_line(theme, c.level, c.ratio, area.width),
        Line::from(vec![
            Span::raw(format!("{} · {share} · ", used_of(c.used, c.limit))),
            Span::styled(level_word(c.level, overage, false), theme.level(c.level)),
        ]),
    ];
    let at_limit = match (terms, c.overage_rate) {
        (None, _) => format!("not billed on plan {}: never capped", sanitize(&c.plan)),
        // Priced per group (rates): each group's units at its own rate, not one for all.
        (Some(_), Some(_)) if c.priced_per_group() => format!(
            "overage {} = {} at each group's rate",
            thousands(c.overage_units),
            app.config.money(c.overage_amount)
        ),
        (Some(_), Some(rate)) => format!(
            "overage {} × {} = {}",
            thousands(c.overage_units),
            app.config.money(rate),
            app.config.money(c.overage_amount)
        ),
        (Some(t), None) if t.included.is_none() => "unlimited: no cap".to_string(),
        (Some(t), None) if t.at_limit == AtLimit::Block => {
            "hard cap: usage past the limit is refused".to_string()
        }
        (Some(_), None) => "past the limit: recorded, no overage rate".to_string(),
    };
    lines.push(Line::styled(at_limit, theme.dim()));
    // A pace only means something for what adds up over the period.
    if matches!(m.aggregation, Aggregation::Sum | Aggregation::Count) && c.limit.is_some() {
        let pace = match project(c, app.now) {
            Projection::Unlimited => None,
            Projection::AlreadyReached => Some("limit already reached".to_string()),
            Projection::NotThisPeriod => Some("not reached this period at this pace".to_string()),
            Projection::On(at) => Some(format!("reached around {} at this pace", day(at))),
        };
        lines.extend(pace.map(|p| Line::styled(p, theme.dim())));
    }
    frame.render_widget(Paragraph::new(lines), area);
}

/// The meter's aggregation per day, newest on the right: every day of the period so far
/// when they fit (as many of the latest as fit otherwise), spread over the width.
fn draw_daily(frame: &mut Frame, theme: Theme, m: &MeterDetail, area: Rect) {
    let [caption, chart] =
        Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(area);
    let shown = &m.daily[m.daily.len().saturating_sub(usize::from(chart.width))..];
    let max = shown.iter().map(|(_, n)| *n).max().unwrap_or(0);
    let word = match m.aggregation {
        Aggregation::Sum | Aggregation::Count => "per day",
        Aggregation::Max => "max per day",
        Aggregation::Latest => "latest per day",
        Aggregation::UniqueCount => "distinct per day",
    };
    let top = format!(" · top {}", thousands(max));
    let text = match (shown.first(), shown.last()) {
        (Some((first, _)), Some((last, _))) => {
            let dated = format!(
                "{word} {} → {}{top}",
                first.format("%b %-d"),
                last.format("%b %-d")
            );
            // The dates go first when the line is short of room.
            if Span::raw(dated.as_str()).width() <= usize::from(caption.width) {
                dated
            } else {
                format!("{word}{top}")
            }
        }
        _ => format!("{word}{top}"),
    };
    frame.render_widget(
        Line::styled(ellipsis(&text, caption.width), theme.dim()),
        caption,
    );
    let days = u16::try_from(shown.len()).unwrap_or(u16::MAX).max(1);
    // At most 4 cells a day: the first days of a period are not one wide block.
    let bar_width = (chart.width / days).saturating_sub(1).clamp(1, MAX_BAR);
    let gap = u16::from(chart.width / days > 1);
    let bars: Vec<Bar> = shown
        .iter()
        .map(|(_, n)| {
            Bar::default()
                .value(u64::try_from(*n).unwrap_or(0))
                .text_value(String::new())
        })
        .collect();
    frame.render_widget(
        BarChart::default()
            .data(BarGroup::default().bars(&bars))
            .max(u64::try_from(max).unwrap_or(0).max(1))
            .bar_width(bar_width)
            .bar_gap(gap)
            .bar_style(theme.bar()),
        chart,
    );
}

/// The largest groups, one a line with its usage on the right, and how many more. A meter
/// billed past its limit shows each group's units over `included` and their money too
/// (priced at the group's rate when each event was recorded), under a header line.
fn draw_groups(frame: &mut Frame, app: &App, m: &MeterDetail, area: Rect) {
    let theme = app.theme;
    let rows = usize::from(area.height);
    if rows == 0 {
        return;
    }
    if m.groups.is_empty() {
        frame.render_widget(Line::styled("no groups yet", theme.dim()), area);
        return;
    }
    let priced = m.check.overage_rate.is_some();
    let mut table: Vec<[String; 3]> = m
        .groups
        .iter()
        .map(|g| {
            [
                thousands(g.used),
                thousands(g.overage_units),
                app.config.money(g.overage_amount),
            ]
        })
        .collect();
    let header = ["used".to_string(), "over".into(), "money".into()];
    // The header takes a line; room for the "more" line when some do not fit.
    let room = rows - usize::from(priced).min(rows);
    let hidden_after = |listed: usize| m.more_groups + (m.groups.len() - listed);
    let mut listed = m.groups.len().min(room);
    if hidden_after(listed) > 0 && listed == room && listed > 0 {
        listed -= 1;
    }
    table.truncate(listed);
    let figures = if priced { 3 } else { 1 };
    let widths: Vec<usize> = (0..figures)
        .map(|i| {
            table
                .iter()
                .chain(priced.then_some(&header))
                .map(|row| row[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let width = usize::from(area.width);
    // A label, then the figures right-aligned in their columns at the right edge.
    let line = |label: &str, cells: &[String; 3]| {
        let right = cells[..figures]
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:>w$}"))
            .collect::<Vec<_>>()
            .join(" ");
        let room = width.saturating_sub(right.chars().count() + 1);
        let label = ellipsis(label, u16::try_from(room).unwrap_or(u16::MAX));
        let pad = width.saturating_sub(Span::raw(label.as_str()).width() + right.chars().count());
        format!("{label}{}{right}", " ".repeat(pad))
    };
    let mut lines = Vec::with_capacity(rows);
    if priced && rows > 0 {
        lines.push(Line::styled(line("", &header), theme.dim()));
    }
    lines.extend(m.groups.iter().zip(&table).map(|(g, cells)| {
        let label = g
            .values
            .iter()
            .map(|v| v.as_deref().map_or("(none)".into(), sanitize))
            .collect::<Vec<_>>()
            .join(" · ");
        Line::from(line(&label, cells))
    }));
    let more = hidden_after(listed);
    if more > 0 {
        lines.push(Line::styled(
            format!("+{} more", thousands(more as i64)),
            theme.dim(),
        ));
    }
    frame.render_widget(Paragraph::new(lines), area);
}
