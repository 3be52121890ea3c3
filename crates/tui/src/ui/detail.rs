//! One customer: the period's gauge, usage per day, projection, overage, history by plan,
//! members and recent events with their Stripe state.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Bar, BarChart, BarGroup, Block, Cell, Gauge, Paragraph, Row, Table};

use super::format::{day, ellipsis, percent, stored_minute, thousands, used_of};
use super::overview::gauge_line;
use crate::app::{App, Detail};
use crate::sanitize::sanitize;
use crate::store::{CustomerDetail, EventRow, Projection, StripeState};
use crate::theme::{Theme, level_word};

pub(crate) fn draw(frame: &mut Frame, app: &App, detail: &Detail, area: Rect) {
    let block = Block::bordered().title(format!(" Customer {} ", sanitize(&detail.customer_id)));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    match &detail.data {
        None => frame.render_widget(Paragraph::new("loading…").style(app.theme.dim()), inner),
        Some(Err(message)) => frame.render_widget(
            Paragraph::new(format!("cannot load this customer: {}", sanitize(message)))
                .style(app.theme.error()),
            inner,
        ),
        Some(Ok(data)) => draw_detail(frame, app, data, inner),
    }
}

fn draw_detail(frame: &mut Frame, app: &App, d: &CustomerDetail, area: Rect) {
    if !d.meters.is_empty() {
        return super::detail_meters::draw(frame, app, d, area);
    }
    let [gauge, facts, credits, windows, charts, lists] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(3),
        Constraint::Length(super::credits::box_height(&d.credits)),
        Constraint::Length(super::windows::height(&d.windows)),
        Constraint::Fill(3),
        Constraint::Fill(2),
    ])
    .areas(area);
    draw_gauge(frame, app, d, gauge);
    draw_facts(frame, app, d, facts);
    super::credits::draw(frame, app, &d.credits, credits);
    super::windows::draw(frame, app, &d.windows, windows);
    let [daily, history] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(charts);
    draw_daily(frame, app.theme, d, daily);
    draw_history(frame, app, d, history);
    let [members, recent] =
        Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(lists);
    draw_members(frame, app.theme, d, members);
    draw_recent(frame, app, &d.recent, recent);
}

fn draw_gauge(frame: &mut Frame, app: &App, d: &CustomerDetail, area: Rect) {
    let c = &d.check;
    let theme = app.theme;
    let title = format!(
        " {} · plan {} · period {} → {} · {} left ",
        sanitize(&d.name),
        sanitize(&c.plan),
        day(c.period_start),
        day(c.period_end),
        crate::billing::count(
            crate::billing::Period {
                start: c.period_start,
                end: c.period_end
            }
            .days_left(app.now),
            "day"
        ),
    );
    let share = match c.limit {
        Some(_) => percent(c.used, c.limit),
        None => "unlimited".to_string(),
    };
    let label = Span::styled(
        format!(
            " {} · {share} · {} ",
            used_of(c.used, c.limit),
            level_word(c.level, c.overage_rate.is_some(), false)
        ),
        theme.level(c.level),
    );
    // ratatui's Gauge takes 0..=1: the bar is clamped, the label says the real figure.
    let gauge = Gauge::default()
        .block(Block::bordered().title(title))
        .gauge_style(theme.gauge(c.level))
        .ratio(c.ratio.unwrap_or(0.0).clamp(0.0, 1.0))
        .label(label);
    frame.render_widget(gauge, area);
}

fn draw_facts(frame: &mut Frame, app: &App, d: &CustomerDetail, area: Rect) {
    let theme = app.theme;
    let c = &d.check;
    let projection = match d.projection(app.now) {
        Projection::Unlimited => "unlimited plan: no cap".to_string(),
        Projection::AlreadyReached => "limit already reached".to_string(),
        Projection::NotThisPeriod => "not reached this period at the current pace".to_string(),
        Projection::On(at) => format!("reached around {} at the current pace", day(at)),
    };
    let overage = match c.overage_rate {
        Some(rate) => format!(
            "overage {} units × {} = {}",
            thousands(c.overage_units),
            app.config.money(rate),
            app.config.money(c.overage_amount)
        ),
        None if c.limit.is_some() => "hard cap: usage past the limit is refused".to_string(),
        None => "no overage".to_string(),
    };
    let lines = vec![
        Line::from(vec![
            Span::styled("Projection  ", theme.dim()),
            Span::raw(projection),
        ]),
        Line::from(vec![
            Span::styled("Overage     ", theme.dim()),
            Span::raw(overage),
        ]),
        reporting_line(app, d),
    ];
    frame.render_widget(Paragraph::new(lines), area);
}

/// Where the customer's usage goes: its Stripe id, the backlog, and Stripe's figure beside
/// ours from the last reconcile.
pub(super) fn reporting_line(app: &App, d: &CustomerDetail) -> Line<'static> {
    let theme = app.theme;
    let stripe = match &d.stripe_customer_id {
        Some(id) => Span::raw(format!("Stripe {}", sanitize(id))),
        None => Span::styled("not mapped to a Stripe customer", theme.attention()),
    };
    let mut line = Line::from(vec![
        Span::styled("Reporting   ", theme.dim()),
        stripe,
        Span::raw(format!(
            " · {} unreported · {} failed · {} expired",
            thousands(d.backlog.unreported),
            thousands(d.backlog.failed),
            thousands(d.backlog.expired)
        )),
    ]);
    if let Some((local, stripe, status)) = app.checks.by_customer.get(&d.check.customer) {
        let style = if status == "drift" || status == "in_doubt" {
            theme.error()
        } else {
            theme.dim()
        };
        line.push_span(Span::styled(
            format!(
                " · Stripe {} (ours {}, {})",
                thousands(*stripe),
                thousands(*local),
                status.replace('_', " ")
            ),
            style,
        ));
    }
    line
}

fn draw_daily(frame: &mut Frame, theme: Theme, d: &CustomerDetail, area: Rect) {
    let max = d.daily.iter().map(|(_, n)| *n).max().unwrap_or(0);
    let span = match (d.daily.first(), d.daily.last()) {
        (Some((first, _)), Some((last, _))) => {
            format!(" {} → {}", first.format("%b %-d"), last.format("%b %-d"))
        }
        _ => String::new(),
    };
    let block = Block::bordered().title(format!(
        " Usage per day{span} · busiest {} · today {} ",
        thousands(max),
        thousands(d.daily.last().map_or(0, |(_, n)| *n))
    ));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    // A y-scale on the left (the busiest day, half of it, 0), the days along the bottom.
    let top = thousands(max);
    let scale_width = u16::try_from(top.len())
        .unwrap_or(u16::MAX)
        .saturating_add(1);
    let [scale, plot] =
        Layout::horizontal([Constraint::Length(scale_width), Constraint::Fill(1)]).areas(inner);
    let [bars_area, axis] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(1)]).areas(plot);
    let mut marks = vec![Line::raw(""); usize::from(bars_area.height)];
    if let Some(last) = marks.len().checked_sub(1) {
        marks[last] = Line::raw("0");
        marks[0] = Line::raw(top);
        if last >= 4 {
            marks[last / 2] = Line::raw(thousands(max / 2));
        }
    }
    let marks: Vec<Line> = marks.into_iter().map(|l| l.right_aligned()).collect();
    let scale = Rect {
        width: scale_width.saturating_sub(1),
        ..scale
    };
    frame.render_widget(Paragraph::new(marks).style(theme.dim()), scale);

    let days = u16::try_from(d.daily.len()).unwrap_or(u16::MAX).max(1);
    // Fit every day of the period: widest bars that fit with a one-cell gap.
    let bar_width = (plot.width / days).saturating_sub(1).max(1);
    let gap = u16::from(plot.width / days > 1);
    let bars: Vec<Bar> = d
        .daily
        .iter()
        .map(|(_, n)| {
            Bar::default()
                .value(u64::try_from(*n).unwrap_or(0))
                .text_value(String::new())
        })
        .collect();
    let chart = BarChart::default()
        .data(BarGroup::default().bars(&bars))
        .max(u64::try_from(max).unwrap_or(0).max(1))
        .bar_width(bar_width)
        .bar_gap(gap)
        .bar_style(theme.bar());
    frame.render_widget(chart, bars_area);
    let dates: Vec<_> = d.daily.iter().map(|(date, _)| *date).collect();
    frame.render_widget(
        Paragraph::new(day_axis(&dates, bar_width + gap, axis.width)).style(theme.dim()),
        axis,
    );
}

/// Day numbers under the bars (`step` cells apart), as many as fit with a space between.
fn day_axis(dates: &[chrono::NaiveDate], step: u16, width: u16) -> String {
    let mut axis = String::new();
    for (i, date) in dates.iter().enumerate() {
        let x = usize::from(step) * i;
        let label = date.format("%-d").to_string();
        // Two cells apart from the previous label, and inside the chart.
        let start = if axis.is_empty() {
            0
        } else {
            axis.chars().count() + 1
        };
        if x >= start && x + label.len() <= usize::from(width) {
            axis.push_str(&" ".repeat(x - axis.chars().count()));
            axis.push_str(&label);
        }
    }
    axis
}

/// One line per period: when, the plan in force, a gauge against that period's limit, the
/// share and the units, in columns so no number touches a bar.
fn draw_history(frame: &mut Frame, app: &App, d: &CustomerDetail, area: Rect) {
    let theme = app.theme;
    let block = Block::bordered().title(" Last periods · plan in force ");
    let inner_width = block.inner(area).width;
    const MONTH: u16 = 8;
    const PLAN: u16 = 9;
    const PERCENT: u16 = 6;
    const USED: u16 = 11;
    let gauge_width = inner_width.saturating_sub(MONTH + PLAN + PERCENT + USED + 4);
    let rows = d.history.iter().map(|h| {
        let c = &h.check;
        let right = |text: String| Cell::from(Line::from(text).right_aligned());
        Row::new(vec![
            Cell::from(c.period_start.format("%b %Y").to_string()),
            Cell::from(ellipsis(&sanitize(&c.plan), PLAN)),
            Cell::from(gauge_line(theme, c.level, c.ratio, gauge_width)),
            right(if c.limit.is_some() {
                percent(c.used, c.limit)
            } else {
                String::new()
            }),
            right(thousands(c.used)),
        ])
    });
    let widths = [MONTH, PLAN, gauge_width, PERCENT, USED].map(Constraint::Length);
    let table = Table::new(rows, widths).block(block);
    frame.render_widget(table, area);
}

fn draw_members(frame: &mut Frame, theme: Theme, d: &CustomerDetail, area: Rect) {
    let block = Block::bordered().title(" Members this period ");
    let attributed = d.members.iter().any(|m| m.user_id.is_some());
    let lines: Vec<Line> = if !attributed {
        vec![Line::styled(
            "no members: usage recorded without --user",
            theme.dim(),
        )]
    } else {
        d.members
            .iter()
            .map(|m| {
                let who = m
                    .user_id
                    .as_deref()
                    .map_or_else(|| "(no member)".to_string(), |u| sanitize(u).into_owned());
                Line::from(format!(
                    "{:>11} {:>4.0} %  {who}",
                    thousands(m.used),
                    m.share * 100.0
                ))
            })
            .collect()
    };
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

pub(super) fn draw_recent(frame: &mut Frame, app: &App, events: &[EventRow], area: Rect) {
    let theme = app.theme;
    // With [[meters]], each event names its meter.
    let named = app.config.implicit_meter().is_none();
    let block = Block::bordered().title(" Recent events ");
    let lines: Vec<Line> = if events.is_empty() {
        vec![Line::styled("no usage recorded yet", theme.dim())]
    } else {
        events
            .iter()
            .map(|e| event_line(theme, e, named, false))
            .collect()
    };
    // Wrapped, so Stripe's error message shows in full.
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(ratatui::widgets::Wrap { trim: false })
            .block(block),
        area,
    );
}

/// An event on one line: when, how much (and on which meter, when `named`), who, and its
/// Stripe state in words.
pub(crate) fn event_line(
    theme: Theme,
    e: &EventRow,
    named: bool,
    with_customer: bool,
) -> Line<'static> {
    // An event of a type added something else to each meter: its meters say it, no one
    // amount does.
    let amount = match e.event_type {
        Some(_) => String::new(),
        None => format!("×{}", thousands(e.amount)),
    };
    let mut spans = vec![Span::raw(format!(
        "{}  {amount:>9}  ",
        stored_minute(&e.occurred_at),
    ))];
    if named {
        spans.push(Span::raw(format!("{}  ", fed(e))));
    }
    if with_customer {
        spans.push(Span::raw(format!("{}  ", sanitize(&e.customer_name))));
    }
    let (label, style) = state_label(theme, e.state);
    spans.push(Span::styled(label, style));
    if let Some(error) = &e.error
        && e.state != StripeState::Reported
    {
        spans.push(Span::styled(
            format!(
                " ({} attempt{}) {}",
                e.attempts,
                if e.attempts == 1 { "" } else { "s" },
                sanitize(error)
            ),
            style,
        ));
    }
    if let (false, Some(user)) = (with_customer, &e.user_id) {
        spans.push(Span::styled(format!("  {}", sanitize(user)), theme.dim()));
    }
    Line::from(spans)
}

/// The meter an event counted on, or for an event of a type its type and every meter it
/// fed: `completion → requests, tokens, active_users`.
pub(crate) fn fed(e: &EventRow) -> String {
    match &e.event_type {
        None => sanitize(&e.meter_id).into_owned(),
        Some(kind) => {
            let meters: Vec<_> = e.meters.iter().map(|(m, _)| sanitize(m)).collect();
            format!("{} → {}", sanitize(kind), meters.join(", "))
        }
    }
}

pub(crate) fn state_label(
    theme: Theme,
    state: StripeState,
) -> (&'static str, ratatui::style::Style) {
    match state {
        StripeState::Reported => ("✓ reported", theme.good()),
        StripeState::Pending => ("… pending", theme.dim()),
        StripeState::Failed => ("✗ failed", theme.error()),
        StripeState::Expired => ("⌛ expired", theme.error()),
        StripeState::Unmapped => ("? unmapped", theme.attention()),
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    #[test]
    fn day_labels_skip_days_rather_than_touch() {
        let dates: Vec<NaiveDate> = (1..=12)
            .map(|d| NaiveDate::from_ymd_opt(2026, 11, d).unwrap())
            .collect();
        assert_eq!(
            super::day_axis(&dates, 3, 40),
            "1  2  3  4  5  6  7  8  9  10 11 12"
        );
        // One cell per day: every other label.
        assert_eq!(super::day_axis(&dates, 1, 40), "1 3 5 7 9 11");
        // Nothing past the chart's edge.
        assert_eq!(super::day_axis(&dates, 3, 10), "1  2  3  4");
    }
}
