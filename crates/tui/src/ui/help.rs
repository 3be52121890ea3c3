//! The `?` overlay: the keys and the legend `crate::help` lists (the keys generated from the
//! keymap), each symbol and colour drawn with the same functions and styles as the screens
//! themselves.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::detail::state_label;
use super::popup;
use crate::app::App;
use crate::billing::WarningLevel;
use crate::help::{self, KeyLine, LegendLine};
use crate::table::SortKey;
use crate::theme::{Theme, level_label, level_word, outcome_label};

/// Keys on the left, legend on the right, when the terminal is this wide.
const SIDE_BY_SIDE: u16 = 116;
const KEYS_WIDTH: u16 = 58;

pub(crate) fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let theme = app.theme;
    let keys = key_lines(theme);
    let legend = legend_lines(theme);
    let block = Block::bordered().title(" Help · Esc closes ");
    if area.width >= SIDE_BY_SIDE {
        let height = keys.len().max(legend.len());
        let height = u16::try_from(height).unwrap_or(u16::MAX).saturating_add(2);
        let rect = popup(frame, area, SIDE_BY_SIDE, height);
        let inner = block.inner(rect);
        frame.render_widget(block, rect);
        let [left, right] =
            Layout::horizontal([Constraint::Length(KEYS_WIDTH), Constraint::Fill(1)]).areas(inner);
        frame.render_widget(Paragraph::new(keys), left);
        frame.render_widget(Paragraph::new(legend), right);
    } else {
        let lines: Vec<Line> = keys.into_iter().chain(legend).collect();
        let total = u16::try_from(lines.len()).unwrap_or(u16::MAX);
        let rect = popup(frame, area, 64, total.saturating_add(2));
        let shown = rect.height.saturating_sub(2);
        let block = if total > shown {
            block.title_bottom(Line::from(" ↑↓ scroll ").right_aligned())
        } else {
            block
        };
        let scroll = app.help_scroll.min(total.saturating_sub(shown));
        frame.render_widget(Paragraph::new(lines).block(block).scroll((scroll, 0)), rect);
    }
}

/// The key sections as drawn.
fn key_lines(theme: Theme) -> Vec<Line<'static>> {
    help::key_lines()
        .into_iter()
        .map(|line| match line {
            KeyLine::Title(title) => Line::styled(title, theme.header()),
            KeyLine::Key { keys, what } => Line::from(vec![
                Span::styled(format!("  {keys:<20}"), theme.key()),
                Span::raw(what),
            ]),
            KeyLine::Blank => Line::raw(""),
        })
        .collect()
}

/// Every symbol and colour on screen, each drawn as the screens draw it.
fn legend_lines(theme: Theme) -> Vec<Line<'static>> {
    help::legend(theme)
        .into_iter()
        .map(|line| legend_line(theme, line))
        .collect()
}

fn legend_line(theme: Theme, line: LegendLine) -> Line<'static> {
    let gap = || Span::raw("  ");
    let text = |t: &str| Span::raw(t.to_string());
    let dim = |t: &str| Span::styled(t.to_string(), theme.dim());
    match line {
        LegendLine::Title(title) => Line::styled(title, theme.header()),
        LegendLine::Levels => {
            let mut spans = vec![gap()];
            for level in WarningLevel::ALL {
                spans.extend([Span::styled(level_label(level), theme.level(level)), gap()]);
            }
            Line::from(spans)
        }
        LegendLine::HardCapWords => {
            let hard_cap = theme.level(WarningLevel::HardCap);
            Line::from(vec![
                gap(),
                Span::styled(level_word(WarningLevel::HardCap, true, true), hard_cap),
                text(" or "),
                Span::styled(level_word(WarningLevel::HardCap, true, false), hard_cap),
            ])
        }
        LegendLine::Note(note) => Line::from(vec![gap(), dim(note)]),
        LegendLine::Text(words) => Line::from(vec![gap(), text(words)]),
        LegendLine::Gauge => {
            let empty = if theme.color { "░" } else { "·" };
            Line::from(vec![
                gap(),
                Span::styled("███", theme.gauge(WarningLevel::Ok)),
                Span::styled(empty.repeat(3), theme.gauge_empty()),
                text(" used / left, coloured by level  "),
                dim("∞"),
                text(" unlimited"),
            ])
        }
        LegendLine::SortArrows => Line::from(vec![
            gap(),
            text(&sort_arrows()),
            text(" sorted column: highest / lowest first"),
        ]),
        LegendLine::States(states) => {
            let mut spans = vec![gap()];
            for state in states {
                let (label, style) = state_label(theme, *state);
                spans.extend([Span::styled(label, style), gap()]);
            }
            Line::from(spans)
        }
        LegendLine::Outcomes(words) => {
            let mut spans = vec![gap()];
            for word in words {
                let (label, style) = outcome_label(theme, word);
                spans.extend([Span::styled(label, style), gap()]);
            }
            Line::from(spans)
        }
        LegendLine::Marks => Line::from(vec![
            gap(),
            Span::styled("selected row", theme.selected()),
            gap(),
            Span::styled("error", theme.error()),
            gap(),
            Span::styled("needs attention", theme.attention()),
            gap(),
            dim("secondary"),
            gap(),
            Span::styled("key", theme.key()),
        ]),
        LegendLine::Blank => Line::raw(""),
    }
}

/// The two arrows as the table shows them.
fn sort_arrows() -> String {
    format!(
        "{} {}",
        super::overview::sort_arrow(SortKey::Risk, false),
        super::overview::sort_arrow(SortKey::Name, false)
    )
}
