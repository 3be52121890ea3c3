//! Drawing: a pure function of `&App`. Only the rows that fit are built, whatever the number
//! of customers.

mod credits;
mod detail;
mod detail_meters;
mod events;
mod footer;
mod format;
mod help;
mod meter_picker;
mod overview;
mod plans;
mod sync_popup;
mod windows;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Scrollbar, ScrollbarOrientation, ScrollbarState, Tabs};

use super::action::Action;
use super::app::{App, View};
use super::keys::{self, Mode};

/// Below this the dashboard shows one line saying the size it needs.
pub(crate) const MIN_WIDTH: u16 = 60;
pub(crate) const MIN_HEIGHT: u16 = 16;

/// Lines of the overview header box (borders included).
const HEADER_HEIGHT: u16 = 6;

pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        // Short, so it stays one line on most small terminals.
        let message = format!(
            "Terminal too small: {}×{}, need {MIN_WIDTH}×{MIN_HEIGHT} · q quits",
            area.width, area.height
        );
        frame.render_widget(
            Paragraph::new(message).wrap(ratatui::widgets::Wrap { trim: true }),
            area,
        );
        return;
    }
    let [tabs, body, footer] = frame_layout(area);
    draw_tabs(frame, app, tabs);
    match app.view {
        View::Overview => overview::draw(frame, app, body),
        View::Events => events::draw(frame, app, body),
        View::Plans => plans::draw(frame, app, body),
    }
    footer::draw(frame, app, footer);
    if let Some(detail) = &app.detail {
        frame.render_widget(Clear, body);
        detail::draw(frame, app, detail, body);
    }
    if app.view == View::Events {
        events::draw_popup(frame, app, body);
    }
    // Popups leave the footer in view: it shows their keys.
    let above_footer = Rect {
        height: area.height - footer.height,
        ..area
    };
    if app.view == View::Overview {
        meter_picker::draw(frame, app, above_footer);
    }
    if app.plans_popup {
        plans::draw_invalid(frame, app, above_footer);
    }
    if app.help {
        help::draw(frame, app, above_footer);
    }
    sync_popup::draw(frame, app, above_footer);
    credits::draw_grant(frame, app, above_footer);
}

/// Tabs line, body, footer line.
fn frame_layout(area: Rect) -> [Rect; 3] {
    Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(area)
}

/// Summary box above a list, and the list's box.
fn body_layout(body: Rect) -> [Rect; 2] {
    Layout::vertical([Constraint::Length(HEADER_HEIGHT), Constraint::Fill(1)]).areas(body)
}

/// How many list rows fit on a terminal of this size (box borders and header row excluded).
pub fn list_rows(width: u16, height: u16) -> usize {
    let [_, body, _] = frame_layout(Rect::new(0, 0, width, height));
    let [_, list] = body_layout(body);
    usize::from(list.height.saturating_sub(3))
}

fn draw_tabs(frame: &mut Frame, app: &App, area: Rect) {
    let theme = app.theme;
    let titles = View::ALL
        .iter()
        .enumerate()
        .map(|(i, v)| Line::from(format!("{} {}", i + 1, v.title())));
    let selected = View::ALL.iter().position(|v| *v == app.view);
    let [name, tabs, help] = Layout::horizontal([
        Constraint::Length(11),
        Constraint::Fill(1),
        Constraint::Length(8),
    ])
    .areas(area);
    frame.render_widget(Span::styled(" meterline", theme.title()), name);
    frame.render_widget(
        Tabs::new(titles)
            .select(selected)
            .highlight_style(theme.selected())
            .divider("│"),
        tabs,
    );
    frame.render_widget(
        Line::from(vec![
            Span::styled(keys::keys_for(Mode::Normal, Action::Help), theme.key()),
            Span::raw(" help "),
        ])
        .right_aligned(),
        help,
    );
}

/// A scrollbar on the right border of `area` for a list of `len` rows showing `page` from
/// `offset`; nothing when everything fits.
fn scrollbar(frame: &mut Frame, app: &App, area: Rect, len: usize, offset: usize, page: usize) {
    if len <= page {
        return;
    }
    let mut state = ScrollbarState::new(len - page + 1)
        .position(offset)
        .viewport_content_length(page);
    let bar = Scrollbar::new(ScrollbarOrientation::VerticalRight)
        .begin_symbol(None)
        .end_symbol(None)
        .track_symbol(Some("│"))
        .thumb_symbol("┃")
        .thumb_style(app.theme.dim());
    frame.render_stateful_widget(bar, area, &mut state);
}

/// A centered popup of at most `width`×`height`, cleared.
fn popup(frame: &mut Frame, area: Rect, width: u16, height: u16) -> Rect {
    let rect = area.centered(
        Constraint::Length(width.min(area.width)),
        Constraint::Length(height.min(area.height)),
    );
    frame.render_widget(Clear, rect);
    rect
}
