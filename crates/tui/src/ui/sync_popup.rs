//! The sync popup: whatever state the sync flow is in.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Gauge, Paragraph, Wrap};

use super::format::thousands;
use super::popup;
use crate::action::Action;
use crate::app::{App, SyncPopup};
use crate::keys::{self, Mode};
use crate::sanitize::sanitize;
use crate::stripe::{SyncPreview, SyncProgress, SyncReport};
use crate::theme::Theme;

const WIDTH: u16 = 78;

pub(crate) fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let theme = app.theme;
    let close = keys::keys_for(Mode::Normal, Action::Close);
    let closes = Line::styled(format!("{close} closes"), theme.dim());
    let (title, mut lines): (String, Vec<Line>) = match &app.sync {
        SyncPopup::Closed => return,
        SyncPopup::Preparing => (
            " Sync to Stripe ".into(),
            vec![Line::raw("working out what to send…")],
        ),
        SyncPopup::Unavailable(why) => (
            " Sync to Stripe ".into(),
            // Lines of the explanation stay lines; each is made safe on its own.
            why.lines()
                .map(|l| Line::raw(sanitize(l).into_owned()))
                .chain([Line::raw(""), closes])
                .collect(),
        ),
        SyncPopup::Confirm(preview) => (" Sync to Stripe? ".into(), confirm(theme, preview)),
        SyncPopup::Running {
            progress,
            cancelling,
        } => {
            running(frame, app, area, progress, *cancelling);
            return;
        }
        SyncPopup::Finished(Ok(report)) => finished(theme, report),
        SyncPopup::Finished(Err(error)) => (
            " Sync aborted ".into(),
            vec![Line::styled(sanitize(error).into_owned(), theme.error())],
        ),
    };
    if matches!(app.sync, SyncPopup::Finished(_)) {
        lines.extend([
            Line::raw(""),
            Line::styled(format!("{close} closes"), theme.dim()),
        ]);
    }
    let width = WIDTH.min(area.width);
    let inner = usize::from(width.saturating_sub(2)).max(1);
    // Wrapped lines take more rows: count them so nothing is cut off.
    let rows: usize = lines.iter().map(|l| l.width().div_ceil(inner).max(1)).sum();
    let height = u16::try_from(rows).unwrap_or(u16::MAX).saturating_add(2);
    let rect = popup(frame, area, width, height);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(title)),
        rect,
    );
}

fn confirm(theme: Theme, p: &SyncPreview) -> Vec<Line<'static>> {
    let mut lines = vec![Line::raw(format!(
        "Send {} of {} to {}",
        crate::billing::count(p.events as i64, "event"),
        crate::billing::count(p.customers as i64, "customer"),
        sanitize(&p.api_host)
    ))];
    if p.mode == "aggregate" {
        // Units add up within one meter only: requests, tokens and users do not.
        let units = if p.units_by_meter.len() <= 1 {
            format!(" ({} units)", thousands(p.units))
        } else {
            String::new()
        };
        lines.push(Line::raw(format!(
            "as {}{units}, one per customer, meter and period",
            crate::billing::count(p.requests as i64, "report"),
        )));
    }
    if p.units_by_meter.len() > 1 {
        let totals: Vec<String> = p
            .units_by_meter
            .iter()
            .map(|(meter, units)| format!("{} {}", sanitize(meter), thousands(*units)))
            .collect();
        lines.push(Line::raw(format!("units by meter: {}", totals.join(" · "))));
    }
    lines.extend([if p.live {
        Line::styled("with a LIVE key: real customers are billed", theme.error())
    } else {
        Line::raw("with a test key (Stripe's sandbox: nobody is billed)")
    }]);
    let notes = [
        (
            p.expired,
            "past Stripe's 35-day window: marked expired, kept, never sent",
        ),
        (
            p.unmapped,
            "of customers without a Stripe customer id stay pending",
        ),
        (
            p.failed_waiting,
            "refused by Stripe within the hour rest before their next try",
        ),
        (p.future, "dated ahead of now go out when their time comes"),
    ];
    for (count, what) in notes {
        if count > 0 {
            lines.push(Line::styled(
                format!("{} events {what}", thousands(count as i64)),
                theme.dim(),
            ));
        }
    }
    lines.extend([
        Line::raw(""),
        Line::styled(
            format!(
                "{} sync · {} cancel",
                keys::keys_for(Mode::Confirm, Action::Confirm),
                keys::keys_for(Mode::Confirm, Action::Close)
            ),
            theme.key(),
        ),
    ]);
    lines
}

fn running(frame: &mut Frame, app: &App, area: Rect, progress: &SyncProgress, cancelling: bool) {
    let theme = app.theme;
    let rect = popup(frame, area, 64, 5);
    let block = Block::bordered().title(" Syncing to Stripe ");
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    let [bar, counts] = Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(inner);
    let ratio = if progress.total == 0 {
        0.0
    } else {
        (progress.attempted as f64 / progress.total as f64).clamp(0.0, 1.0)
    };
    frame.render_widget(Gauge::default().ratio(ratio).gauge_style(theme.bar()), bar);
    let status = if cancelling {
        "cancelling: requests in flight finish and are recorded…".to_string()
    } else {
        format!(
            "{} cancels (requests in flight finish)",
            keys::keys_for(Mode::Normal, Action::Close)
        )
    };
    let text = vec![
        Line::raw(format!(
            "{} / {} sent · {} accepted · {} duplicates · {} failed",
            thousands(progress.attempted as i64),
            thousands(progress.total as i64),
            thousands(progress.accepted as i64),
            thousands(progress.duplicates as i64),
            thousands(progress.failed as i64)
        )),
        Line::styled(status, theme.dim()),
    ];
    frame.render_widget(Paragraph::new(text), counts);
}

fn finished(theme: Theme, r: &SyncReport) -> (String, Vec<Line<'static>>) {
    let cancelled = r.stopped.as_deref() == Some(crate::stripe::sync::CANCELLED);
    // The words of the run's recorded outcome, as `meterline status` prints them.
    let title = match (&r.stopped, r.all_delivered()) {
        _ if cancelled => " Sync cancelled ",
        (Some(_), _) => " Sync aborted ",
        (None, true) => " Sync completed ",
        (None, false) => " Sync incomplete ",
    };
    let mut lines = vec![
        Line::raw(format!(
            "{} sent · {} accepted · {} duplicates · {} failed",
            thousands(r.attempted as i64),
            thousands(r.accepted as i64),
            thousands(r.duplicates as i64),
            thousands(r.failed as i64)
        )),
        Line::raw(format!(
            "{} expired · {} unmapped · {} remaining · {:.1} s",
            thousands(r.expired as i64),
            thousands(r.unmapped as i64),
            thousands(r.remaining as i64),
            r.duration_ms as f64 / 1000.0
        )),
    ];
    if r.failed > 0 {
        lines.push(Line::styled(
            format!(
                "{} refused by Stripe; their messages are in the Events view ({})",
                thousands(r.failed as i64),
                keys::first_key(Mode::Normal, Action::ShowEvents)
            ),
            theme.error(),
        ));
    }
    if r.undelivered > 0 {
        lines.push(Line::styled(
            format!(
                "{} not delivered (network or Stripe errors on every try); sync again later",
                thousands(r.undelivered as i64)
            ),
            theme.attention(),
        ));
    }
    match &r.stopped {
        Some(_) if cancelled => lines.push(Line::styled(
            "cancelled: requests in flight finished and were recorded",
            theme.attention(),
        )),
        Some(reason) => lines.push(Line::styled(
            format!("aborted: {}", sanitize(reason)),
            theme.error(),
        )),
        None => {}
    }
    (title.into(), lines)
}
