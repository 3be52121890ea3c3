//! One customer: the period's gauge, usage per day, projection, overage, history by plan,
//! members and recent events with their Stripe state.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Bar, BarChart, BarGroup, Block, Gauge, Paragraph};

use super::format::{day, percent, stored_minute, thousands, used_of};
use crate::store::{CustomerDetail, EventRow, Projection, StripeState};
use crate::tui::app::{App, Detail};
use crate::tui::sanitize::sanitize;
use crate::tui::theme::{Theme, level_word};

pub fn draw(frame: &mut Frame, app: &App, detail: &Detail, area: Rect) {
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
    let [gauge, facts, charts, lists] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(3),
        Constraint::Fill(3),
        Constraint::Fill(2),
    ])
    .areas(area);
    draw_gauge(frame, app, d, gauge);
    draw_facts(frame, app, d, facts);
    let [daily, history] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(charts);
    draw_daily(frame, app.theme, d, daily);
    draw_history(frame, app, d, history);
    let [members, recent] =
        Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(lists);
    draw_members(frame, app.theme, d, members);
    draw_recent(frame, app.theme, &d.recent, recent);
}

fn draw_gauge(frame: &mut Frame, app: &App, d: &CustomerDetail, area: Rect) {
    let c = &d.check;
    let theme = app.theme;
    let title = format!(
        " {} · plan {} · period {} → {} · {} days left ",
        sanitize(&d.name),
        sanitize(&c.plan),
        day(c.period_start),
        day(c.period_end),
        crate::billing::Period {
            start: c.period_start,
            end: c.period_end
        }
        .days_left(app.now),
    );
    let label = Span::styled(
        format!(
            " {} · {} · {} ",
            used_of(c.used, c.limit),
            percent(c.used, c.limit),
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
    let stripe = match &d.stripe_customer_id {
        Some(id) => Span::raw(format!("Stripe {}", sanitize(id))),
        None => Span::styled("not mapped to a Stripe customer", theme.attention()),
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
        Line::from(vec![
            Span::styled("Reporting   ", theme.dim()),
            stripe,
            Span::raw(format!(
                " · {} unreported · {} failed · {} expired",
                thousands(d.backlog.unreported),
                thousands(d.backlog.failed),
                thousands(d.backlog.expired)
            )),
        ]),
    ];
    frame.render_widget(Paragraph::new(lines), area);
}

fn draw_daily(frame: &mut Frame, theme: Theme, d: &CustomerDetail, area: Rect) {
    let max = d.daily.iter().map(|(_, n)| *n).max().unwrap_or(0);
    let block = Block::bordered().title(format!(
        " Usage per day · busiest {} · today {} ",
        thousands(max),
        thousands(d.daily.last().map_or(0, |(_, n)| *n))
    ));
    let inner_width = block.inner(area).width;
    let days = d.daily.len().max(1) as u16;
    // Fit every day of the period: widest bars that fit with a one-cell gap.
    let bar_width = (inner_width / days).saturating_sub(1).max(1);
    let gap = u16::from(inner_width / days > 1);
    let bars: Vec<Bar> = d
        .daily
        .iter()
        .map(|(date, n)| {
            let label = if bar_width >= 2 {
                date.format("%d").to_string()
            } else {
                String::new()
            };
            Bar::default()
                .value(u64::try_from(*n).unwrap_or(0))
                .text_value(String::new())
                .label(Line::from(label))
        })
        .collect();
    let chart = BarChart::default()
        .block(block)
        .data(BarGroup::default().bars(&bars))
        .bar_width(bar_width)
        .bar_gap(gap)
        .bar_style(theme.bar());
    frame.render_widget(chart, area);
}

fn draw_history(frame: &mut Frame, app: &App, d: &CustomerDetail, area: Rect) {
    let theme = app.theme;
    // Horizontal bars: room for the period and the plan in force as the label.
    let bars: Vec<Bar> = d
        .history
        .iter()
        .map(|h| {
            let c = &h.check;
            Bar::default()
                .value(u64::try_from(c.used).unwrap_or(0))
                .text_value(format!(
                    "{} {}",
                    percent(c.used, c.limit),
                    thousands(c.used)
                ))
                .label(Line::from(format!(
                    "{} {}",
                    c.period_start.format("%b %y"),
                    sanitize(&c.plan)
                )))
                .style(theme.gauge(c.level))
                .value_style(theme.level(c.level))
        })
        .collect();
    let chart = BarChart::horizontal(bars)
        .block(Block::bordered().title(" Last periods · plan in force "))
        .bar_width(1)
        .bar_gap(1);
    frame.render_widget(chart, area);
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

fn draw_recent(frame: &mut Frame, theme: Theme, events: &[EventRow], area: Rect) {
    let block = Block::bordered().title(" Recent events ");
    let lines: Vec<Line> = if events.is_empty() {
        vec![Line::styled("no usage recorded yet", theme.dim())]
    } else {
        events.iter().map(|e| event_line(theme, e, false)).collect()
    };
    // Wrapped, so Stripe's error message shows in full.
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(ratatui::widgets::Wrap { trim: false })
            .block(block),
        area,
    );
}

/// An event on one line: when, how much, who, and its Stripe state in words.
pub fn event_line(theme: Theme, e: &EventRow, with_customer: bool) -> Line<'static> {
    let mut spans = vec![Span::raw(format!(
        "{}  {:>9}  ",
        stored_minute(&e.occurred_at),
        format!("×{}", thousands(e.quantity))
    ))];
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

pub fn state_label(theme: Theme, state: StripeState) -> (&'static str, ratatui::style::Style) {
    match state {
        StripeState::Reported => ("✓ reported", theme.good()),
        StripeState::Pending => ("… pending", theme.dim()),
        StripeState::Failed => ("✗ failed", theme.error()),
        StripeState::Expired => ("⌛ expired", theme.error()),
        StripeState::Unmapped => ("? unmapped", theme.attention()),
    }
}
