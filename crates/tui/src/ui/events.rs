//! Events needing attention across customers: failed and expired first, then pending and
//! unmapped, as a table; Enter shows one event in full, with Stripe's whole error message.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, Wrap};

use super::detail::{fed, state_label};
use super::format::{ellipsis, stored_minute, thousands};
use super::{body_layout, popup};
use crate::app::App;
use crate::data::EVENTS_LIMIT;
use crate::sanitize::sanitize;
use crate::store::{EventRow, StripeState};
use crate::theme::Theme;

pub(crate) fn draw(frame: &mut Frame, app: &App, body: Rect) {
    let theme = app.theme;
    let [header, list] = body_layout(body);
    let b = app.summary.backlog;
    let lines = vec![
        Line::from(vec![
            Span::styled(format!("{} failed", thousands(b.failed)), theme.error()),
            Span::raw(" · "),
            Span::styled(format!("{} expired", thousands(b.expired)), theme.error()),
            Span::raw(" · "),
            Span::styled(
                format!("{} unmapped", thousands(app.summary.unmapped)),
                theme.attention(),
            ),
            Span::raw(format!(" · {} unreported in all", thousands(b.unreported))),
        ]),
        Line::styled(
            format!(
                "failed and expired first, then the newest pending; at most {EVENTS_LIMIT} listed"
            ),
            theme.dim(),
        ),
        Line::styled(
            "unmapped: the customer has no Stripe id (meterline customer set-stripe ID cus_…)",
            theme.dim(),
        ),
    ];
    frame.render_widget(Paragraph::new(lines).block(Block::bordered()), header);

    let expiring = match app.checks.expiring {
        0 => String::new(),
        n => format!("· {} expiring soon ", thousands(n as i64)),
    };
    let block = Block::bordered().title(format!(
        " Events needing attention {} {expiring}",
        thousands(app.events.len() as i64)
    ));
    if !app.events_loaded {
        frame.render_widget(
            Paragraph::new("loading…").style(theme.dim()).block(block),
            list,
        );
        return;
    }
    if app.events.is_empty() {
        frame.render_widget(
            Paragraph::new("Nothing waiting: every event is reported to Stripe.")
                .style(theme.good())
                .block(block),
            list,
        );
        return;
    }
    // Box borders and the header row.
    let page = usize::from(list.height.saturating_sub(3)).max(1);
    let cursor = app.events_cursor;
    let offset = cursor
        .offset
        .max((cursor.selected + 1).saturating_sub(page))
        .min(cursor.selected);
    // With [[meters]], each event names its meter, or its type and the meters it fed: as
    // wide as the longest on the page needs, when there is room.
    let longest = app.config.implicit_meter().is_none().then(|| {
        let page = app.events.iter().skip(offset).take(page);
        page.map(|e| fed(e).chars().count()).max().unwrap_or(0)
    });
    let named = longest.is_some();
    let [customer_width, meter_width, error_width] = widths(list.width.saturating_sub(2), longest);
    let rows = app
        .events
        .iter()
        .enumerate()
        .skip(offset)
        .take(page)
        .map(|(i, e)| {
            let row = event_row(theme, e, [customer_width, meter_width, error_width]);
            if i == cursor.selected {
                row.style(theme.selected())
            } else {
                row
            }
        });
    let titles = [
        "When (UTC)",
        "Customer",
        if named { "Event → meters" } else { "" },
        "Units",
        "State",
        "Tries",
        "Stripe's error",
    ];
    let header = Row::new(
        titles
            .into_iter()
            .enumerate()
            .filter(|(i, _)| named || *i != METER_COLUMN)
            .map(|(i, title)| {
                let line = Line::from(title);
                Cell::from(if matches!(i, 3 | 5) {
                    line.right_aligned()
                } else {
                    line
                })
            }),
    )
    .style(theme.header());
    let position = format!(
        " {}/{} ",
        thousands(cursor.selected as i64 + 1),
        thousands(app.events.len() as i64)
    );
    let block = block.title_bottom(Line::from(position).right_aligned());
    let constraints = [
        WHEN,
        customer_width,
        meter_width,
        UNITS,
        STATE,
        TRIES,
        error_width,
    ]
    .into_iter()
    .enumerate()
    .filter(|(i, _)| named || *i != METER_COLUMN)
    .map(|(_, width)| Constraint::Length(width));
    frame.render_widget(
        Table::new(rows, constraints).header(header).block(block),
        list,
    );
    let rows_area = Rect {
        y: list.y + 2,
        height: list.height.saturating_sub(3),
        ..list
    };
    super::scrollbar(frame, app, rows_area, app.events.len(), offset, page);
}

const WHEN: u16 = 16;
const UNITS: u16 = 9;
const STATE: u16 = 10;
const TRIES: u16 = 5;
/// The column of the event's meters, left out with the implicit meter alone.
const METER_COLUMN: usize = 2;

/// The customer, meters and error columns share what the fixed ones leave. With meters
/// (`longest`: the widest an event's meters are), the customer gets a fifth and the meters
/// what they need up to three quarters of the rest; the error, often long, the rest (its
/// full text is in the popup). Without, the customer a third and the error the rest.
fn widths(width: u16, longest: Option<usize>) -> [u16; 3] {
    let Some(longest) = longest else {
        let spare = width.saturating_sub(WHEN + UNITS + STATE + TRIES + 5);
        let customer = (spare / 3).clamp(spare.min(8), 24);
        return [customer, 0, spare - customer];
    };
    let spare = width.saturating_sub(WHEN + UNITS + STATE + TRIES + 6);
    let customer = (spare / 5).clamp(spare.min(8), 24);
    let rest = spare - customer;
    let wanted = u16::try_from(longest).unwrap_or(u16::MAX).max(8);
    let meters = wanted.min(rest - rest / 4);
    [customer, meters, rest - meters]
}

fn event_row(
    theme: Theme,
    e: &EventRow,
    [customer_width, meter_width, error_width]: [u16; 3],
) -> Row<'static> {
    let right = |text: String| Cell::from(Line::from(text).right_aligned());
    let (label, style) = state_label(theme, e.state);
    let error = e
        .error
        .as_deref()
        .filter(|_| e.state != StripeState::Reported)
        .map(|error| ellipsis(&sanitize(error), error_width))
        .unwrap_or_default();
    let mut cells = vec![
        Cell::from(stored_minute(&e.occurred_at)),
        Cell::from(ellipsis(&sanitize(&e.customer_name), customer_width)),
    ];
    if meter_width > 0 {
        cells.push(Cell::from(ellipsis(&fed(e), meter_width)));
    }
    cells.extend([
        // An event of a type added something else to each meter: the popup lists them.
        right(match e.event_type {
            Some(_) => String::new(),
            None => thousands(e.amount),
        }),
        Cell::from(Span::styled(label, style)),
        right(if e.attempts > 0 {
            e.attempts.to_string()
        } else {
            String::new()
        }),
        Cell::from(Span::styled(error, style)),
    ]);
    Row::new(cells)
}

/// The selected event in full: identifiers, times, attempts and Stripe's whole message.
pub(crate) fn draw_popup(frame: &mut Frame, app: &App, area: Rect) {
    let Some(e) = app.selected_event().filter(|_| app.event_popup) else {
        return;
    };
    let theme = app.theme;
    let (label, style) = state_label(theme, e.state);
    let field = |name: &str, value: Span<'static>| {
        Line::from(vec![
            Span::styled(format!("{name:<12}"), theme.dim()),
            value,
        ])
    };
    let mut lines = vec![
        field("Event", Span::raw(format!("#{}", e.id))),
        field(
            "Customer",
            Span::raw(format!(
                "{} ({})",
                sanitize(&e.customer_name),
                sanitize(&e.customer_id)
            )),
        ),
        field(
            "Member",
            match &e.user_id {
                Some(user) => Span::raw(sanitize(user).into_owned()),
                None => Span::styled("none (recorded without --user)", theme.dim()),
            },
        ),
    ];
    // What the event added to its meter, as the list's Units column shows it (the quantity is
    // only the `usage` meter's amount).
    if let Some(kind) = &e.event_type {
        // An event of a type: each meter it fed, with what it added there.
        lines.push(field("Type", Span::raw(sanitize(kind).into_owned())));
        for (i, (meter, amount)) in e.meters.iter().enumerate() {
            let name = if i == 0 { "Meters" } else { "" };
            lines.push(field(
                name,
                Span::raw(format!("{} ×{}", sanitize(meter), thousands(*amount))),
            ));
        }
    } else if app.config.implicit_meter().is_none() {
        lines.extend([
            field("Meter", Span::raw(sanitize(&e.meter_id).into_owned())),
            field("Amount", Span::raw(thousands(e.amount))),
        ]);
    } else {
        lines.push(field("Units", Span::raw(thousands(e.amount))));
    }
    lines.extend([
        field("Occurred", Span::raw(sanitize(&e.occurred_at).into_owned())),
        field("State", Span::styled(label, style)),
        field("Attempts", Span::raw(e.attempts.to_string())),
    ]);
    if let Some(hint) = state_hint(e.state) {
        lines.push(field("", Span::styled(hint, theme.dim())));
    }
    lines.push(Line::raw(""));
    match e
        .error
        .as_deref()
        .filter(|_| e.state != StripeState::Reported)
    {
        Some(error) => {
            lines.push(Line::styled("Stripe's error", theme.header()));
            // Line by line, each made safe: the message is shown whole, never obeyed.
            lines.extend(
                error
                    .lines()
                    .map(|l| Line::styled(sanitize(l).into_owned(), style)),
            );
        }
        None => lines.push(Line::styled("No error from Stripe.", theme.dim())),
    }
    let width = 90.min(area.width);
    let inner = usize::from(width.saturating_sub(2)).max(1);
    // Wrapped lines take more rows: count them so nothing is cut off.
    let rows: usize = lines.iter().map(|l| l.width().div_ceil(inner).max(1)).sum();
    let height = u16::try_from(rows).unwrap_or(u16::MAX).saturating_add(2);
    let rect = popup(frame, area, width, height);
    let position = format!(
        " {}/{} ",
        thousands(app.events_cursor.selected as i64 + 1),
        thousands(app.events.len() as i64)
    );
    let block = Block::bordered()
        .title(format!(" Event #{} ", e.id))
        .title_bottom(Line::from(position).right_aligned());
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block),
        rect,
    );
}

/// What the state means for the user, where there is something to do or know.
fn state_hint(state: StripeState) -> Option<&'static str> {
    match state {
        StripeState::Expired => Some("older than Stripe's 35-day window: kept here, never sent"),
        StripeState::Unmapped => {
            Some("the customer has no Stripe id: meterline customer set-stripe ID cus_…")
        }
        StripeState::Pending => Some("not sent yet: the next sync sends it"),
        StripeState::Failed | StripeState::Reported => None,
    }
}
