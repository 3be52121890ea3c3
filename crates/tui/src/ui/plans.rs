//! The plans from plans.toml: limits, prices, rates, thresholds, and how many customers each.

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, Wrap};

use super::format::thousands;
use super::{body_layout, popup};
use crate::action::Action;
use crate::app::App;
use crate::config::{AtLimit, Config, MeterTerms, Rate};
use crate::keys::{self, Mode};
use crate::sanitize::sanitize;

pub(crate) fn draw(frame: &mut Frame, app: &App, body: Rect) {
    let theme = app.theme;
    let config = &app.config;
    let [header, list] = body_layout(body);
    let t = config.thresholds;
    let lines = vec![
        Line::from(format!(
            "warning from {:.0} % · critical from {:.0} % · hard cap at 100 %",
            t.warning * 100.0,
            t.critical * 100.0
        )),
        Line::from(format!(
            "billing periods: {:?} · Stripe {}{}",
            config.billing.period,
            sanitize(&config.stripe.api_base),
            // With `[[meters]]` each meter names its own event (the table's last column).
            if config.implicit_meter().is_none() {
                String::new()
            } else {
                format!(" · meter event {}", sanitize(&config.stripe.meter_event))
            }
        )),
        Line::from(vec![
            Span::styled(format!("from {}", sanitize(&app.plans_label)), theme.dim()),
            stale_note(app),
            drift_note(app),
        ]),
    ];
    frame.render_widget(Paragraph::new(lines).block(Block::bordered()), header);

    let right = |text: String| Cell::from(Line::from(text).alignment(Alignment::Right));
    // A line per plan and meter; the plan's own cells on its first line only.
    let rows = config.plans.iter().flat_map(|plan| {
        let customers = app.rows().iter().filter(|r| r.plan_id == plan.id).count();
        config
            .plan_meters(plan)
            .enumerate()
            .flat_map(move |(i, line)| {
                let plan_cells = if i == 0 {
                    [
                        Cell::from(sanitize(&plan.id).into_owned()),
                        Cell::from(sanitize(&plan.name).into_owned()),
                        right(config.money(plan.price)),
                    ]
                } else {
                    [Cell::from(""), Cell::from(""), Cell::from("")]
                };
                let (included, at_limit, rate) = terms_cells(config, line.terms);
                let mut cells = Vec::from(plan_cells);
                cells.extend([
                    Cell::from(sanitize(&line.meter.id).into_owned()),
                    right(included),
                    Cell::from(at_limit),
                    right(rate),
                    Cell::from(sanitize(line.stripe_event).into_owned()),
                    right(if i == 0 {
                        thousands(customers as i64)
                    } else {
                        String::new()
                    }),
                ]);
                // Its rates per dimension under it, each with the groups it prices.
                let rates = line.terms.map_or(&[][..], |t| t.rates.as_slice());
                std::iter::once(Row::new(cells)).chain(rates.iter().map(move |rate| {
                    let mut cells = vec![Cell::from(""); 3];
                    cells.extend([
                        Cell::from(rate_label(rate)),
                        Cell::from(""),
                        Cell::from(""),
                        right(config.money(rate.rate)),
                    ]);
                    Row::new(cells)
                }))
            })
    });
    let header = Row::new(
        [
            "Plan",
            "Name",
            "Price",
            "Meter",
            "Included",
            "At limit",
            "Rate/unit",
            "Stripe event",
            "Customers",
        ]
        .map(Cell::from),
    )
    .style(theme.header());
    // Money columns as wide as their widest amount: "999.00 EUR" is longer than "$999.00".
    let widest = |amounts: &mut dyn Iterator<Item = rust_decimal::Decimal>, header: usize| {
        let widest = amounts.map(|a| config.money(a).chars().count()).max();
        Constraint::Length(u16::try_from(widest.unwrap_or(0).max(header)).unwrap_or(u16::MAX))
    };
    let terms = || config.plans.iter().flat_map(|p| p.meters.values());
    let mut rates = terms()
        .filter_map(|t| t.overage_rate)
        .chain(terms().flat_map(|t| t.rates.iter().map(|r| r.rate)));
    // The meter column as wide as its longest rate line, up to a point.
    let meter_width = terms()
        .flat_map(|t| t.rates.iter().map(|r| rate_label(r).chars().count()))
        .max()
        .unwrap_or(0)
        .clamp(14, 30);
    let widths = [
        Constraint::Length(10),
        Constraint::Fill(1),
        widest(&mut config.plans.iter().map(|p| p.price), 5),
        Constraint::Length(u16::try_from(meter_width).unwrap_or(14)),
        Constraint::Length(11),
        Constraint::Length(9),
        widest(&mut rates, 9),
        Constraint::Fill(1),
        Constraint::Length(9),
    ];
    let shows_alerts = !config.alerts.is_empty() || !app.alerts.recent.is_empty();
    let [plans_area, alerts_area] = if shows_alerts {
        // The plans table as tall as it needs; recent alerts below.
        let rate_lines: usize = terms().map(|t| t.rates.len()).sum();
        let height = u16::try_from(config.plans.len() * config.meters.len() + rate_lines + 3)
            .unwrap_or(u16::MAX);
        ratatui::layout::Layout::vertical([Constraint::Max(height), Constraint::Fill(1)])
            .areas(list)
    } else {
        [list, Rect::default()]
    };
    frame.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(Block::bordered().title(" Plans ")),
        plans_area,
    );
    if shows_alerts {
        draw_alerts(frame, app, alerts_area);
    }
}

/// A plan's terms for one meter: included, what happens at the limit, the overage rate.
fn terms_cells(config: &Config, terms: Option<&MeterTerms>) -> (String, &'static str, String) {
    let Some(terms) = terms else {
        // A meter the plan does not name: recorded, never billed nor capped.
        return ("not billed".into(), "-", "-".into());
    };
    let at_limit = match (terms.included, terms.at_limit) {
        (None, _) => "-",
        (Some(_), AtLimit::Block) => "hard cap",
        (Some(_), AtLimit::Overage) => "overage",
    };
    (
        terms.included.map_or_else(|| "unlimited".into(), thousands),
        at_limit,
        terms
            .overage_rate
            .map_or_else(|| "-".into(), |r| config.money(r)),
    )
}

/// A rate line as the table lists it under its meter: the groups it prices,
/// `└ model=small|tiny` (every dimension must match; any of a dimension's values does).
fn rate_label(rate: &Rate) -> String {
    let when: Vec<String> = rate
        .when
        .iter()
        .map(|(dim, values)| format!("{}={}", sanitize(dim), sanitize(&values.join("|"))))
        .collect();
    format!("└ {}", when.join(" "))
}

/// The latest usage alerts and how their deliveries stand.
fn draw_alerts(frame: &mut Frame, app: &App, area: Rect) {
    let theme = app.theme;
    let rows = app.alerts.recent.iter().map(|r| {
        let a = &r.alert;
        let level = match a.level.as_str() {
            "hard_cap" => crate::billing::WarningLevel::HardCap,
            "critical" => crate::billing::WarningLevel::Critical,
            _ => crate::billing::WarningLevel::Warning,
        };
        let state = if r.failed > 0 {
            Span::styled(format!("{} failed", r.failed), theme.error())
        } else if r.pending > 0 {
            Span::styled(format!("{} pending", r.pending), theme.attention())
        } else if r.delivered > 0 {
            Span::styled("delivered", theme.dim())
        } else {
            Span::styled("no destination", theme.dim())
        };
        Row::new(vec![
            Cell::from(super::format::stored_minute(&a.occurred_at)),
            Cell::from(customer_name(app, &a.customer)),
            Cell::from(sanitize(&a.meter).into_owned()),
            Cell::from(Span::styled(a.level.clone(), theme.level(level))),
            Cell::from(Line::from(thousands(a.used)).alignment(Alignment::Right)),
            Cell::from(state),
        ])
    });
    let c = app.alerts.counts;
    let title = format!(
        " Recent alerts · {} pending, {} failed · `meterline alerts` delivers ",
        thousands(c.pending as i64),
        thousands(c.failed as i64)
    );
    let widths = [
        Constraint::Length(16),
        Constraint::Fill(1),
        Constraint::Length(14),
        Constraint::Length(9),
        Constraint::Length(14),
        Constraint::Length(14),
    ];
    let header =
        Row::new(["When", "Customer", "Meter", "Level", "Used", "Delivery"].map(Cell::from))
            .style(theme.header());
    frame.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(Block::bordered().title(title)),
        area,
    );
}

/// The customer's name as the table shows it, or its id when it is not in the table.
fn customer_name(app: &App, id: &str) -> String {
    let name = app.row_of(id).map_or(id, |r| r.name.as_str());
    sanitize(name).into_owned()
}

/// After a failed reload: says the plans shown are the last good ones (empty otherwise).
pub(crate) fn stale_note(app: &App) -> Span<'static> {
    match app.plans_error {
        Some(_) => Span::styled(
            "  ✗ reload failed: last good plans in use",
            app.theme.error(),
        ),
        None => Span::raw(""),
    }
}

/// Meters counted otherwise than plans.toml says (`meterline doctor` tells how to mend it).
fn drift_note(app: &App) -> Span<'static> {
    match app.meter_drift.summary() {
        Some(summary) => Span::styled(
            format!("  ✗ {}; see meterline doctor", sanitize(&summary)),
            app.theme.error(),
        ),
        None => Span::raw(""),
    }
}

/// The popup after `r` found plans.toml invalid: why, and that nothing changed.
pub(crate) fn draw_invalid(frame: &mut Frame, app: &App, area: Rect) {
    let Some(error) = &app.plans_error else {
        return;
    };
    let theme = app.theme;
    let refresh = keys::first_key(Mode::Normal, Action::Refresh);
    let close = keys::keys_for(Mode::Normal, Action::Close);
    // Each line of the message (TOML errors point at the line with a caret) made safe alone.
    let mut lines: Vec<Line> = error
        .lines()
        .map(|l| Line::styled(sanitize(l).into_owned(), theme.error()))
        .collect();
    lines.extend([
        Line::raw(""),
        Line::raw(format!(
            "The last good plans stay in use. Fix the file, then {refresh} reloads."
        )),
        Line::styled(format!("{close} closes"), theme.dim()),
    ]);
    let width = 78.min(area.width);
    let inner = usize::from(width.saturating_sub(2)).max(1);
    let rows: usize = lines.iter().map(|l| l.width().div_ceil(inner).max(1)).sum();
    let height = u16::try_from(rows).unwrap_or(u16::MAX).saturating_add(2);
    let rect = popup(frame, area, width, height);
    let title = format!(" {} not reloaded ", sanitize(&app.plans_label));
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(title)),
        rect,
    );
}
