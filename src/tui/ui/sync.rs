//! The sync popup: whatever state the sync flow is in.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Gauge, Paragraph, Wrap};

use super::format::thousands;
use super::popup;
use crate::tui::action::Action;
use crate::tui::app::{App, SyncPopup};
use crate::tui::keys::{self, Mode};
use crate::tui::sanitize::sanitize;

pub fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let theme = app.theme;
    let close = keys::keys_for(Mode::Normal, Action::Close);
    let (title, lines): (&str, Vec<Line>) = match &app.sync {
        SyncPopup::Closed => return,
        SyncPopup::Preparing => (
            " Sync to Stripe ",
            vec![Line::raw("working out what to send…")],
        ),
        SyncPopup::Unavailable(why) => (
            " Sync to Stripe ",
            vec![
                Line::raw(sanitize(why).into_owned()),
                Line::raw(""),
                Line::styled(format!("{close} closes"), theme.dim()),
            ],
        ),
        SyncPopup::Confirm(plan) => (
            " Sync to Stripe? ",
            vec![
                Line::raw(format!(
                    "Send {} events of {} customers to {}",
                    thousands(plan.events as i64),
                    thousands(plan.customers as i64),
                    sanitize(&plan.api_host)
                )),
                if plan.live {
                    Line::styled("with a LIVE key: real customers are billed", theme.error())
                } else {
                    Line::raw("with a test key")
                },
                Line::raw(""),
                Line::styled(
                    format!(
                        "{} sync · {} cancel",
                        keys::keys_for(Mode::Confirm, Action::Confirm),
                        keys::keys_for(Mode::Confirm, Action::Close)
                    ),
                    theme.key(),
                ),
            ],
        ),
        SyncPopup::Running {
            progress,
            cancelling,
        } => {
            let rect = popup(frame, area, 60, 7);
            let block = Block::bordered().title(" Syncing to Stripe ");
            let inner = block.inner(rect);
            frame.render_widget(block, rect);
            let [bar, counts] =
                Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(inner);
            let ratio = if progress.total == 0 {
                0.0
            } else {
                (progress.attempted as f64 / progress.total as f64).clamp(0.0, 1.0)
            };
            frame.render_widget(Gauge::default().ratio(ratio).gauge_style(theme.bar()), bar);
            let status = if *cancelling {
                "cancelling: in-flight requests finish first…".to_string()
            } else {
                format!("{close} cancels")
            };
            let text = vec![
                Line::raw(format!(
                    "{} / {} · {} accepted · {} duplicates · {} failed",
                    thousands(progress.attempted as i64),
                    thousands(progress.total as i64),
                    thousands(progress.accepted as i64),
                    thousands(progress.duplicates as i64),
                    thousands(progress.failed as i64)
                )),
                Line::styled(status, theme.dim()),
            ];
            frame.render_widget(Paragraph::new(text), counts);
            return;
        }
        SyncPopup::Finished(outcome) => {
            let mut lines = vec![
                Line::raw(format!(
                    "{} accepted · {} duplicates · {} failed · {} expired · {} unmapped",
                    thousands(outcome.accepted as i64),
                    thousands(outcome.duplicates as i64),
                    thousands(outcome.failed as i64),
                    thousands(outcome.expired as i64),
                    thousands(outcome.unmapped as i64)
                )),
                Line::raw(format!(
                    "{} remaining · {} ms{}",
                    thousands(outcome.remaining as i64),
                    outcome.duration_ms,
                    if outcome.cancelled {
                        " · cancelled"
                    } else {
                        ""
                    }
                )),
            ];
            if let Some(error) = &outcome.error {
                lines.push(Line::styled(sanitize(error).into_owned(), theme.error()));
            }
            lines.push(Line::styled(format!("{close} closes"), theme.dim()));
            (" Sync finished ", lines)
        }
    };
    let height = u16::try_from(lines.len())
        .unwrap_or(u16::MAX)
        .saturating_add(2);
    let rect = popup(frame, area, 64, height.saturating_add(1));
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(Block::bordered().title(title)),
        rect,
    );
}
