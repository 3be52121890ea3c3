//! The meter picker (`m`): which meter every gauge of the overview shows, or each
//! customer's meter nearest its limit.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::format::ellipsis;
use crate::app::App;
use crate::sanitize::sanitize;

/// The popup's entries: the first is "nearest its limit", then one per meter.
pub(crate) fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let Some(highlighted) = app.meter_picker else {
        return;
    };
    let theme = app.theme;
    let current = app.meter_index().map_or(0, |i| i + 1);
    let mut entries: Vec<(String, String)> =
        vec![("nearest its limit".into(), "each customer's".into())];
    for meter in &app.config.meters {
        let mut about = format!("{} · {}", meter.aggregation.as_str(), meter.id);
        if !meter.group_by.is_empty() {
            about.push_str(&format!(" · by {}", meter.group_by.join(", ")));
        }
        entries.push((
            sanitize(&meter.name).into_owned(),
            sanitize(&about).into_owned(),
        ));
    }
    let name_width = entries
        .iter()
        .map(|(name, _)| Span::raw(name.as_str()).width())
        .max()
        .unwrap_or(0)
        .min(24);
    let lines: Vec<Line> = entries
        .iter()
        .enumerate()
        .map(|(i, (name, about))| {
            let marker = if i == highlighted { "▸ " } else { "  " };
            let now = if i == current { " ✓ shown" } else { "" };
            let name = ellipsis(name, u16::try_from(name_width).unwrap_or(24));
            let pad = " ".repeat(name_width.saturating_sub(Span::raw(name.as_str()).width()));
            let line = Line::from(vec![
                Span::raw(format!("{marker}{name}{pad}  ")),
                Span::styled(about.clone(), theme.dim()),
                Span::styled(now, theme.good()),
            ]);
            if i == highlighted {
                line.style(theme.selected())
            } else {
                line
            }
        })
        .collect();
    let width = lines.iter().map(Line::width).max().unwrap_or(0) + 4;
    let width = u16::try_from(width).unwrap_or(u16::MAX).max(36);
    let height = u16::try_from(lines.len() + 2).unwrap_or(u16::MAX);
    let rect = super::popup(frame, area, width, height);
    let block = Block::bordered()
        .title(" Gauges show ")
        .title_bottom(Line::from(" Enter picks · Esc closes ").right_aligned());
    frame.render_widget(Paragraph::new(lines).block(block), rect);
}
