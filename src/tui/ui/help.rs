//! The `?` overlay, generated from the keymap so it always shows the keys actually bound.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::popup;
use crate::billing::WarningLevel;
use crate::tui::app::App;
use crate::tui::keys::{self, Mode};
use crate::tui::theme::level_label;

pub fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let theme = app.theme;
    let mut lines = Vec::new();
    for (title, mode) in [
        ("Keys", Mode::Normal),
        ("While typing a filter", Mode::Filter),
        ("In a confirmation", Mode::Confirm),
    ] {
        lines.push(Line::styled(title, theme.header()));
        for (keys, what) in keys::help(mode) {
            lines.push(Line::from(vec![
                Span::styled(format!("  {keys:<20}"), theme.key()),
                Span::raw(what),
            ]));
        }
        lines.push(Line::raw(""));
    }
    lines.push(Line::styled("Levels", theme.header()));
    let mut levels = vec![Span::raw("  ")];
    for level in WarningLevel::ALL {
        levels.push(Span::styled(level_label(level), theme.level(level)));
        levels.push(Span::raw("  "));
    }
    lines.push(Line::from(levels));
    lines.push(Line::raw(
        "  \"?\" after an unreported count: the customer has no Stripe id",
    ));
    let height = u16::try_from(lines.len())
        .unwrap_or(u16::MAX)
        .saturating_add(2);
    let rect = popup(frame, area, 64, height);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Help · Esc closes ")),
        rect,
    );
}
