//! The footer: the keys that work now. Each popup shows its own; the keys come from the
//! keymap, so a hint never names a key that is not bound.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};

use crate::action::Action;
use crate::app::{App, SyncPopup, View};
use crate::keys::{self, Mode};
use crate::sanitize::sanitize;

/// One hint: the first key of each action (in `mode`), and what they do together.
struct Hint {
    mode: Mode,
    actions: &'static [Action],
    text: &'static str,
}

const fn hint(actions: &'static [Action], text: &'static str) -> Hint {
    Hint {
        mode: Mode::Normal,
        actions,
        text,
    }
}

const HELP: Hint = hint(&[Action::Help], "help");
const QUIT: Hint = hint(&[Action::Quit], "quit");
const CLOSE: Hint = hint(&[Action::Close], "close");

impl Hint {
    /// "↑↓" for one-character keys side by side, "PgUp/PgDn" otherwise.
    fn keys(&self) -> String {
        let keys: Vec<String> = self
            .actions
            .iter()
            .map(|a| keys::first_key(self.mode, *a))
            .collect();
        let short = keys.iter().all(|k| k.chars().count() == 1);
        keys.join(if short { "" } else { "/" })
    }
}

/// The hints for what is on top of the screen now.
fn hints(app: &App) -> Vec<Hint> {
    if app.help {
        return vec![
            hint(&[Action::Close], "close help"),
            hint(&[Action::Up, Action::Down], "scroll"),
            hint(&[Action::PageUp, Action::PageDown], "page"),
            QUIT,
        ];
    }
    match &app.sync {
        SyncPopup::Closed => {}
        SyncPopup::Confirm(_) => {
            let confirm = |actions, text| Hint {
                mode: Mode::Confirm,
                actions,
                text,
            };
            return vec![
                confirm(&[Action::Confirm], "send to Stripe"),
                confirm(&[Action::Close], "cancel"),
                confirm(&[Action::Quit], "quit"),
            ];
        }
        SyncPopup::Running { .. } => return vec![hint(&[Action::Close], "cancel the sync"), QUIT],
        _ => return vec![CLOSE, QUIT],
    }
    if let Some(form) = &app.grant {
        let (mode, done, text): (Mode, &'static [Action], _) = match form.confirming {
            None => (Mode::Amount, &[Action::AmountDone], "review the grant"),
            Some(_) => (Mode::Confirm, &[Action::Confirm], "grant"),
        };
        let key = |actions, text| Hint {
            mode,
            actions,
            text,
        };
        return vec![
            key(done, text),
            key(&[Action::Close], "cancel"),
            key(&[Action::Quit], "quit"),
        ];
    }
    if app.plans_popup {
        return vec![CLOSE, hint(&[Action::Refresh], "reload plans.toml"), QUIT];
    }
    if app.meter_picker.is_some() && app.view == View::Overview {
        return vec![
            hint(&[Action::Up, Action::Down], "choose"),
            hint(&[Action::Open], "show on every gauge"),
            CLOSE,
            QUIT,
        ];
    }
    if app.detail.is_some() {
        return vec![
            CLOSE,
            hint(&[Action::Up, Action::Down], "previous / next customer"),
            hint(&[Action::GrantCredits], "grant credits"),
            HELP,
            QUIT,
        ];
    }
    if app.event_popup && app.view == View::Events {
        return vec![
            CLOSE,
            hint(&[Action::Up, Action::Down], "previous / next event"),
            HELP,
            QUIT,
        ];
    }
    let mut hints = match app.view {
        View::Overview if app.several_meters() => vec![
            hint(&[Action::Open], "customer detail"),
            hint(&[Action::Filter], "filter"),
            hint(&[Action::CycleSort], "sort"),
            hint(&[Action::PickMeter], "meter"),
        ],
        View::Overview => vec![
            hint(&[Action::Open], "customer detail"),
            hint(&[Action::Filter], "filter"),
            hint(&[Action::CycleSort], "sort"),
        ],
        View::Events => vec![hint(&[Action::Open], "event detail")],
        View::Plans => vec![hint(&[Action::Refresh], "reload")],
    };
    hints.extend([
        hint(&[Action::NextView], "next view"),
        hint(&[Action::Sync], "sync to Stripe"),
        HELP,
        QUIT,
    ]);
    hints
}

pub(crate) fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let theme = app.theme;
    if app.filtering && app.sync == SyncPopup::Closed && !app.help {
        let line = Line::from(vec![
            Span::styled("/", theme.key()),
            Span::raw(sanitize(&app.filter).into_owned()),
            Span::styled("▏", theme.key()),
            Span::styled(
                format!(
                    "   {} keep · {} clear",
                    keys::keys_for(Mode::Filter, Action::FilterDone),
                    keys::keys_for(Mode::Filter, Action::Close)
                ),
                theme.dim(),
            ),
        ]);
        frame.render_widget(line, area);
        return;
    }
    if let Some(status) = &app.status {
        let text = format!("error: {}", sanitize(status));
        frame.render_widget(Span::styled(text, theme.error()), area);
        return;
    }
    if let Some(notice) = &app.notice {
        frame.render_widget(Span::styled(sanitize(notice), theme.good()), area);
        return;
    }
    let mut spans = Vec::new();
    for hint in hints(app) {
        spans.push(Span::styled(format!(" {}", hint.keys()), theme.key()));
        spans.push(Span::raw(format!(" {} ", hint.text)));
    }
    frame.render_widget(Line::from(spans), area);
}
