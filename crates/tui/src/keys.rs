//! The keymap: keys → Actions per input mode. It works both ways: `resolve` turns a key press
//! into an action, `bindings` lists what is bound, and the help overlay and footer hints are
//! generated from it, so they always show the keys actually bound.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::action::Action;

/// Which keys apply: the list, typing a filter, typing a credit amount, or answering a
/// confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    Filter,
    Amount,
    Confirm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    pub code: KeyCode,
    pub modifiers: KeyModifiers,
}

const fn key(code: KeyCode) -> Key {
    Key {
        code,
        modifiers: KeyModifiers::NONE,
    }
}

const fn ch(c: char) -> Key {
    key(KeyCode::Char(c))
}

const fn ctrl(c: char) -> Key {
    Key {
        code: KeyCode::Char(c),
        modifiers: KeyModifiers::CONTROL,
    }
}

impl Key {
    fn matches(&self, event: &KeyEvent) -> bool {
        // Shift is part of the character itself ('G'), so it is ignored for characters.
        let ignore = match event.code {
            KeyCode::Char(_) | KeyCode::BackTab => KeyModifiers::SHIFT,
            _ => KeyModifiers::NONE,
        };
        self.code == event.code && self.modifiers == event.modifiers.difference(ignore)
    }

    /// How the key is written in help: "j", "Ctrl-c", "PgDn".
    pub(crate) fn label(&self) -> String {
        let name = match self.code {
            KeyCode::Char(' ') => "Space".to_string(),
            KeyCode::Char(c) => c.to_string(),
            KeyCode::Up => "↑".into(),
            KeyCode::Down => "↓".into(),
            KeyCode::Left => "←".into(),
            KeyCode::Right => "→".into(),
            KeyCode::PageUp => "PgUp".into(),
            KeyCode::PageDown => "PgDn".into(),
            KeyCode::Home => "Home".into(),
            KeyCode::End => "End".into(),
            KeyCode::Enter => "Enter".into(),
            KeyCode::Esc => "Esc".into(),
            KeyCode::Tab => "Tab".into(),
            KeyCode::BackTab => "Shift-Tab".into(),
            KeyCode::Backspace => "Backspace".into(),
            other => format!("{other:?}"),
        };
        if self.modifiers.contains(KeyModifiers::CONTROL) {
            format!("Ctrl-{name}")
        } else {
            name
        }
    }
}

pub(crate) struct Binding {
    pub mode: Mode,
    pub keys: &'static [Key],
    pub action: Action,
}

const fn bind(mode: Mode, keys: &'static [Key], action: Action) -> Binding {
    Binding { mode, keys, action }
}

use Mode::{Amount, Confirm, Filter, Normal};

/// Every binding, in the order help lists them.
pub(crate) const BINDINGS: &[Binding] = &[
    bind(Normal, &[ch('q'), ctrl('c')], Action::Quit),
    bind(Normal, &[key(KeyCode::Up), ch('k')], Action::Up),
    bind(Normal, &[key(KeyCode::Down), ch('j')], Action::Down),
    bind(Normal, &[key(KeyCode::PageUp), ctrl('b')], Action::PageUp),
    bind(
        Normal,
        &[key(KeyCode::PageDown), ctrl('f')],
        Action::PageDown,
    ),
    bind(Normal, &[ch('g'), key(KeyCode::Home)], Action::Top),
    bind(Normal, &[ch('G'), key(KeyCode::End)], Action::Bottom),
    bind(
        Normal,
        &[key(KeyCode::Tab), key(KeyCode::Right)],
        Action::NextView,
    ),
    bind(
        Normal,
        &[key(KeyCode::BackTab), key(KeyCode::Left)],
        Action::PrevView,
    ),
    bind(Normal, &[ch('1')], Action::ShowOverview),
    bind(Normal, &[ch('2'), ch('e')], Action::ShowEvents),
    bind(Normal, &[ch('3'), ch('p')], Action::ShowPlans),
    bind(Normal, &[key(KeyCode::Enter)], Action::Open),
    bind(Normal, &[key(KeyCode::Esc)], Action::Close),
    bind(Normal, &[ch('/')], Action::Filter),
    bind(Normal, &[ch('o')], Action::CycleSort),
    bind(Normal, &[ch('O')], Action::ReverseSort),
    bind(Normal, &[ch('a')], Action::ToggleArchived),
    bind(Normal, &[ch('m')], Action::PickMeter),
    bind(Normal, &[ch('r')], Action::Refresh),
    bind(Normal, &[ch('s')], Action::Sync),
    bind(Normal, &[ch('c')], Action::GrantCredits),
    bind(Normal, &[ch('?')], Action::Help),
    bind(Filter, &[key(KeyCode::Enter)], Action::FilterDone),
    bind(Filter, &[key(KeyCode::Esc)], Action::Close),
    bind(Filter, &[key(KeyCode::Backspace)], Action::FilterBackspace),
    bind(Filter, &[key(KeyCode::Up)], Action::Up),
    bind(Filter, &[key(KeyCode::Down)], Action::Down),
    bind(Filter, &[ctrl('c')], Action::Quit),
    bind(Amount, &[key(KeyCode::Enter)], Action::AmountDone),
    bind(Amount, &[key(KeyCode::Esc)], Action::Close),
    bind(Amount, &[key(KeyCode::Backspace)], Action::AmountBackspace),
    bind(Amount, &[ctrl('c')], Action::Quit),
    bind(Confirm, &[ch('y'), key(KeyCode::Enter)], Action::Confirm),
    bind(Confirm, &[ch('n'), key(KeyCode::Esc)], Action::Close),
    bind(Confirm, &[ctrl('c')], Action::Quit),
];

/// The action a key press means in `mode`, if any. Releases and repeats of release are ignored.
pub fn resolve(mode: Mode, event: &KeyEvent) -> Option<Action> {
    if event.kind == KeyEventKind::Release {
        return None;
    }
    let bound = BINDINGS
        .iter()
        .filter(|b| b.mode == mode)
        .find(|b| b.keys.iter().any(|k| k.matches(event)))
        .map(|b| b.action);
    match (bound, mode, event.code) {
        (Some(action), _, _) => Some(action),
        // Any other printable character is part of the text typed.
        (None, Mode::Filter | Mode::Amount, KeyCode::Char(c))
            if !event
                .modifiers
                .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) =>
        {
            Some(if mode == Mode::Filter {
                Action::FilterChar(c)
            } else {
                Action::AmountChar(c)
            })
        }
        _ => None,
    }
}

/// The keys bound to `action` in `mode`, as help writes them ("j/↓").
pub(crate) fn keys_for(mode: Mode, action: Action) -> String {
    BINDINGS
        .iter()
        .filter(|b| b.mode == mode && b.action == action)
        .flat_map(|b| b.keys.iter().map(Key::label))
        .collect::<Vec<_>>()
        .join("/")
}

/// The first key bound to `action` in `mode`, for one-key hints in the footer.
pub(crate) fn first_key(mode: Mode, action: Action) -> String {
    BINDINGS
        .iter()
        .find(|b| b.mode == mode && b.action == action)
        .and_then(|b| b.keys.first())
        .map(Key::label)
        .unwrap_or_default()
}

/// (keys, description) for every binding of `mode`, in keymap order.
pub fn help(mode: Mode) -> impl Iterator<Item = (String, &'static str)> {
    BINDINGS
        .iter()
        .filter(move |b| b.mode == mode)
        .map(move |b| (keys_for(mode, b.action), b.action.describe()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    #[test]
    fn arrows_and_vim_keys_move() {
        let n = KeyModifiers::NONE;
        assert_eq!(
            resolve(Normal, &press(KeyCode::Char('j'), n)),
            Some(Action::Down)
        );
        assert_eq!(
            resolve(Normal, &press(KeyCode::Down, n)),
            Some(Action::Down)
        );
        assert_eq!(
            resolve(Normal, &press(KeyCode::Char('k'), n)),
            Some(Action::Up)
        );
        assert_eq!(
            resolve(Normal, &press(KeyCode::Char('g'), n)),
            Some(Action::Top)
        );
        let shift_g = press(KeyCode::Char('G'), KeyModifiers::SHIFT);
        assert_eq!(resolve(Normal, &shift_g), Some(Action::Bottom));
        assert_eq!(
            resolve(Normal, &press(KeyCode::PageDown, n)),
            Some(Action::PageDown)
        );
    }

    #[test]
    fn ctrl_c_quits_in_every_mode_and_q_only_outside_text_input() {
        let ctrl_c = press(KeyCode::Char('c'), KeyModifiers::CONTROL);
        for mode in [Normal, Filter, Amount, Confirm] {
            assert_eq!(resolve(mode, &ctrl_c), Some(Action::Quit), "{mode:?}");
        }
        let q = press(KeyCode::Char('q'), KeyModifiers::NONE);
        assert_eq!(resolve(Normal, &q), Some(Action::Quit));
        assert_eq!(resolve(Filter, &q), Some(Action::FilterChar('q')));
        assert_eq!(resolve(Confirm, &q), None);
    }

    #[test]
    fn m_picks_the_meter_outside_text_input() {
        let m = press(KeyCode::Char('m'), KeyModifiers::NONE);
        assert_eq!(resolve(Normal, &m), Some(Action::PickMeter));
        assert_eq!(resolve(Filter, &m), Some(Action::FilterChar('m')));
        assert_eq!(resolve(Confirm, &m), None);
        assert_eq!(keys_for(Normal, Action::PickMeter), "m");
        assert_eq!(first_key(Normal, Action::PickMeter), "m");
    }

    #[test]
    fn c_grants_credits_and_the_amount_is_typed_in_its_own_mode() {
        let n = KeyModifiers::NONE;
        let c = press(KeyCode::Char('c'), n);
        assert_eq!(resolve(Normal, &c), Some(Action::GrantCredits));
        assert_eq!(resolve(Filter, &c), Some(Action::FilterChar('c')));
        // q and digits are part of the amount, not a quit or a view.
        for typed in ['2', '.', 'q'] {
            let key = press(KeyCode::Char(typed), n);
            assert_eq!(resolve(Amount, &key), Some(Action::AmountChar(typed)));
        }
        assert_eq!(
            resolve(Amount, &press(KeyCode::Enter, n)),
            Some(Action::AmountDone)
        );
        assert_eq!(
            resolve(Amount, &press(KeyCode::Esc, n)),
            Some(Action::Close)
        );
    }

    #[test]
    fn releases_are_ignored() {
        let mut q = press(KeyCode::Char('q'), KeyModifiers::NONE);
        q.kind = KeyEventKind::Release;
        assert_eq!(resolve(Normal, &q), None);
    }

    #[test]
    fn every_key_is_bound_once_per_mode() {
        for mode in [Normal, Filter, Amount, Confirm] {
            let keys: Vec<Key> = BINDINGS
                .iter()
                .filter(|b| b.mode == mode)
                .flat_map(|b| b.keys.iter().copied())
                .collect();
            for (i, k) in keys.iter().enumerate() {
                assert!(!keys[i + 1..].contains(k), "{k:?} bound twice in {mode:?}");
            }
        }
    }

    #[test]
    fn help_is_generated_from_the_bindings() {
        let lines: Vec<_> = help(Normal).collect();
        assert!(lines.contains(&("q/Ctrl-c".to_string(), "quit")));
        assert!(lines.contains(&("↓/j".to_string(), "move down")));
        assert_eq!(keys_for(Normal, Action::Sync), "s");
        assert_eq!(
            lines.len(),
            BINDINGS.iter().filter(|b| b.mode == Normal).count()
        );
    }
}
