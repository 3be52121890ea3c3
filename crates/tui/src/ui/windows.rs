//! The detail's rolling windows (`[[plans.meters.ID.limits]]`): a line per window with its
//! gauge, coloured by its level like the period's, its figures, and when it frees up (a
//! sliding window) or resets (a fixed one), in the words `check` uses.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::format::{clock, percent, thousands};
use super::overview::gauge_line;
use crate::app::App;
use crate::billing::WarningLevel;
use crate::config::{LimitAction, WindowKind};
use crate::sanitize::sanitize;
use crate::store::MeterWindows;
use crate::theme::level_label;
use meterline_core::WindowUsage;

/// The widest and narrowest a window's gauge gets.
const MAX_GAUGE: u16 = 24;
const MIN_GAUGE: u16 = 8;

/// The box's height: a line per window and its borders; 0 without windows (no box).
pub(super) fn height(windows: &[MeterWindows]) -> u16 {
    match windows.iter().map(|m| m.windows.len()).sum::<usize>() {
        0 => 0,
        lines => u16::try_from(lines).unwrap_or(u16::MAX).saturating_add(2),
    }
}

pub(super) fn draw(frame: &mut Frame, app: &App, windows: &[MeterWindows], area: Rect) {
    if area.height == 0 {
        return;
    }
    let block = Block::bordered().title(" Rolling limits ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let labelled: Vec<(String, &WindowUsage)> = windows
        .iter()
        .flat_map(|m| m.windows.iter().map(move |w| (label(m, w), w)))
        .collect();
    let label_width = labelled
        .iter()
        .map(|(label, _)| Span::raw(label.as_str()).width())
        .max()
        .unwrap_or(0);
    // The gauge takes what the longest line's words leave; a narrow terminal cuts the words'
    // end (when it frees up) rather than the gauge.
    let no_gauge = |(label, w): &(String, &WindowUsage)| window_line(app, label, label_width, w, 0);
    let words = labelled
        .iter()
        .map(|lw| no_gauge(lw).width())
        .max()
        .unwrap_or(0);
    let room = usize::from(inner.width).saturating_sub(words);
    let gauge_width = u16::try_from(room)
        .unwrap_or(u16::MAX)
        .clamp(MIN_GAUGE, MAX_GAUGE);
    let lines: Vec<Line> = labelled
        .iter()
        .map(|(label, w)| window_line(app, label, label_width, w, gauge_width))
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}

/// "Tokens · 5h sliding".
fn label(m: &MeterWindows, w: &WindowUsage) -> String {
    let kind = match w.kind {
        WindowKind::Sliding => "sliding",
        WindowKind::Fixed => "fixed",
    };
    format!("{} · {} {kind}", sanitize(&m.name), sanitize(&w.window))
}

/// The label, the gauge, "1,450,000 / 1,500,000 · 96 %", the level in words, and when
/// the window frees up or resets.
fn window_line(
    app: &App,
    label: &str,
    label_width: usize,
    w: &WindowUsage,
    gauge_width: u16,
) -> Line<'static> {
    let theme = app.theme;
    let pad = label_width.saturating_sub(Span::raw(label).width());
    let mut spans = vec![Span::raw(format!("{label}{}  ", " ".repeat(pad)))];
    let ratio = w.used as f64 / w.limit.max(1) as f64;
    spans.extend(gauge_line(theme, w.level, Some(ratio), gauge_width).spans);
    spans.push(Span::raw(format!(
        "  {} / {} · {} · ",
        thousands(w.used),
        thousands(w.limit),
        percent(w.used, Some(w.limit))
    )));
    spans.push(Span::styled(level_words(w), theme.level(w.level)));
    if let Some(when) = when(w, app) {
        spans.push(Span::styled(format!(" · {when}"), theme.dim()));
    }
    Line::from(spans)
}

/// The level in words; a full window that only alerts refuses nothing, so it is not a cap.
fn level_words(w: &WindowUsage) -> String {
    match (w.at_limit, w.level) {
        (LimitAction::Alert, WarningLevel::HardCap) => "■ full (alerts only)".to_string(),
        (LimitAction::Alert, level) => format!("{} (alerts only)", level_label(level)),
        (LimitAction::Block, level) => level_label(level).to_string(),
    }
}

/// "120,000 free up at 14:32 UTC" (sliding), "resets at 2026-11-30 00:00 UTC" (fixed);
/// nothing for a sliding window with nothing in it.
fn when(w: &WindowUsage, app: &App) -> Option<String> {
    match w.kind {
        WindowKind::Sliding => {
            let (at, units) = (w.frees_at.as_deref()?, w.frees_units?);
            Some(format!(
                "{} free up at {}",
                thousands(units),
                clock(at, app.now)
            ))
        }
        WindowKind::Fixed => {
            let at = w.resets_at.as_deref()?;
            Some(format!("resets at {}", clock(at, app.now)))
        }
    }
}
