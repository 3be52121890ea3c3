//! The `?` overlay: the keys, generated from the keymap so it always shows the keys actually
//! bound, and a legend of every symbol and colour the screens use, drawn with the same
//! functions and styles as the screens themselves.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::detail::state_label;
use super::popup;
use crate::app::App;
use crate::billing::WarningLevel;
use crate::keys::{self, Mode};
use crate::store::StripeState;
use crate::table::SortKey;
use crate::theme::{Theme, level_label, level_word, outcome_label};

/// Keys on the left, legend on the right, when the terminal is this wide.
const SIDE_BY_SIDE: u16 = 116;
const KEYS_WIDTH: u16 = 58;

pub fn draw(frame: &mut Frame, app: &App, area: Rect) {
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

/// How many lines the help has, stacked (as on a narrow terminal).
pub fn lines(theme: Theme) -> u16 {
    let total = key_lines(theme).len() + legend_lines(theme).len();
    u16::try_from(total).unwrap_or(u16::MAX)
}

fn key_lines(theme: Theme) -> Vec<Line<'static>> {
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
    lines
}

/// Every symbol and colour on screen, each drawn as the screens draw it.
fn legend_lines(theme: Theme) -> Vec<Line<'static>> {
    let gap = || Span::raw("  ");
    let text = |t: &str| Span::raw(t.to_string());
    let dim = |t: &str| Span::styled(t.to_string(), theme.dim());
    let hard_cap = theme.level(WarningLevel::HardCap);
    let mut levels = vec![gap()];
    for level in WarningLevel::ALL {
        levels.extend([Span::styled(level_label(level), theme.level(level)), gap()]);
    }
    let states = |of: &[StripeState]| {
        let mut spans = vec![gap()];
        for state in of {
            let (label, style) = state_label(theme, *state);
            spans.extend([Span::styled(label, style), gap()]);
        }
        Line::from(spans)
    };
    let outcomes = |words: &[&str]| {
        let mut spans = vec![gap()];
        for word in words {
            let (label, style) = outcome_label(theme, word);
            spans.extend([Span::styled(label, style), gap()]);
        }
        Line::from(spans)
    };
    let empty = if theme.color { "░" } else { "·" };
    let mut lines = vec![
        Line::styled("Levels (share of the included units used)", theme.header()),
        Line::from(levels),
        Line::from(vec![
            gap(),
            Span::styled(level_word(WarningLevel::HardCap, true, true), hard_cap),
            text(" or "),
            Span::styled(level_word(WarningLevel::HardCap, true, false), hard_cap),
        ]),
        Line::from(vec![
            gap(),
            dim("an overage plan past its limit: usage is still"),
        ]),
        Line::from(vec![
            gap(),
            dim("recorded and the extra billed (JSON: hard_cap)"),
        ]),
        Line::from(vec![
            gap(),
            dim("■ HARD CAP alone: further usage is refused"),
        ]),
        Line::raw(""),
        Line::styled("Customers table", theme.header()),
        Line::from(vec![
            gap(),
            Span::styled("███", theme.gauge(WarningLevel::Ok)),
            Span::styled(empty.repeat(3), theme.gauge_empty()),
            text(" used / left, coloured by level  "),
            dim("∞"),
            text(" unlimited"),
        ]),
        Line::from(vec![
            gap(),
            text("134 % the real share; the bar stops at full"),
        ]),
        Line::from(vec![
            gap(),
            text(&sort_arrows()),
            text(" sorted column: highest / lowest first"),
        ]),
        Line::from(vec![
            gap(),
            text("12/400 the selected row, of all rows listed;"),
        ]),
        Line::from(vec![gap(), dim("┃ on the right border: the part in view")]),
        Line::from(vec![gap(), text("\"2 ?\" unreported events of a customer")]),
        Line::from(vec![gap(), dim("without a Stripe customer id")]),
        Line::raw(""),
        Line::styled("Events at Stripe", theme.header()),
        states(&[
            StripeState::Reported,
            StripeState::Pending,
            StripeState::Failed,
        ]),
        states(&[StripeState::Expired, StripeState::Unmapped]),
        Line::from(vec![
            gap(),
            dim("expired: past Stripe's 35-day window, never sent"),
        ]),
        Line::raw(""),
        Line::styled("Sync runs", theme.header()),
        outcomes(&["completed", "running", "incomplete", "cancelled"]),
        outcomes(&["aborted", "interrupted"]),
        Line::raw(""),
        Line::styled("Marks", theme.header()),
        Line::from(vec![
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
    ];
    if theme.color {
        lines.push(Line::from(vec![
            gap(),
            dim("green ok · yellow warning · red critical · magenta cap"),
        ]));
    }
    lines
}

/// The two arrows as the table shows them.
fn sort_arrows() -> String {
    format!(
        "{} {}",
        super::overview::sort_arrow(SortKey::Risk, false),
        super::overview::sort_arrow(SortKey::Name, false)
    )
}
