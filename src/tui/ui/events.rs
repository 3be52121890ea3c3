//! Events needing attention across customers: failed and expired first, then pending and
//! unmapped, with Stripe's error messages.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, List, ListItem, Paragraph};

use super::body_layout;
use super::detail::event_line;
use super::format::thousands;
use crate::tui::app::App;
use crate::tui::data::EVENTS_LIMIT;

pub fn draw(frame: &mut Frame, app: &App, body: Rect) {
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

    let block = Block::bordered().title(format!(
        " Events needing attention {} ",
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
    let page = usize::from(list.height.saturating_sub(2)).max(1);
    let cursor = app.events_cursor;
    let offset = cursor
        .offset
        .max((cursor.selected + 1).saturating_sub(page))
        .min(cursor.selected);
    let items: Vec<ListItem> = app
        .events
        .iter()
        .enumerate()
        .skip(offset)
        .take(page)
        .map(|(i, e)| {
            let item = ListItem::new(event_line(theme, e, true));
            if i == cursor.selected {
                item.style(theme.selected())
            } else {
                item
            }
        })
        .collect();
    let position = format!(
        " {}/{} ",
        thousands(cursor.selected as i64 + 1),
        thousands(app.events.len() as i64)
    );
    let block = block.title_bottom(Line::from(position).right_aligned());
    frame.render_widget(List::new(items).block(block), list);
}
