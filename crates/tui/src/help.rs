//! What the `?` overlay says, as data: the key sections, generated from the keymap so they
//! always show the keys actually bound, and the legend's lines in order. `ui/help.rs` draws
//! each line with the screens' own functions and styles; the app scrolls the overlay and needs
//! only its length.

use crate::keys::{self, Mode};
use crate::store::StripeState;
use crate::theme::Theme;

/// A line of the key sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyLine {
    /// A section's title: one per mode.
    Title(&'static str),
    /// The keys bound to one action, and what it does.
    Key {
        keys: String,
        what: &'static str,
    },
    Blank,
}

/// A line of the legend: every symbol and colour on screen, named for what it shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LegendLine {
    Title(&'static str),
    /// Every warning level's label in its style.
    Levels,
    /// The two ways a hard cap is written.
    HardCapWords,
    /// Secondary text.
    Note(&'static str),
    /// Plain text.
    Text(&'static str),
    /// A sample gauge: used, left, unlimited.
    Gauge,
    /// The sort arrows.
    SortArrows,
    /// These Stripe states as the events view labels them.
    States(&'static [StripeState]),
    /// These sync run outcomes as the header labels them.
    Outcomes(&'static [&'static str]),
    /// The marks: selected row, error, attention, secondary, key.
    Marks,
    Blank,
}

/// The key sections: the keys of each mode, in keymap order.
pub(crate) fn key_lines() -> Vec<KeyLine> {
    let mut lines = Vec::new();
    for (title, mode) in [
        ("Keys", Mode::Normal),
        ("While typing a filter", Mode::Filter),
        ("While typing a credit amount", Mode::Amount),
        ("In a confirmation", Mode::Confirm),
    ] {
        lines.push(KeyLine::Title(title));
        lines.extend(keys::help(mode).map(|(keys, what)| KeyLine::Key { keys, what }));
        lines.push(KeyLine::Blank);
    }
    lines
}

/// The legend; colour names are listed only when the theme has colours.
pub(crate) fn legend(theme: Theme) -> Vec<LegendLine> {
    use LegendLine::{
        Blank, Gauge, HardCapWords, Levels, Marks, Note, Outcomes, SortArrows, States, Text, Title,
    };
    let mut lines = vec![
        Title("Levels (share of the included units used)"),
        Levels,
        HardCapWords,
        Note("an overage plan past its limit: usage is still"),
        Note("recorded and the extra billed (JSON: hard_cap)"),
        Note("■ HARD CAP alone: further usage is refused"),
        Blank,
        Title("Customers table"),
        Gauge,
        Text("134 % the real share; the bar stops at full"),
        SortArrows,
        Text("12/400 the selected row, of all rows listed;"),
        Note("┃ on the right border: the part in view"),
        Text("\"2 ?\" unreported events of a customer"),
        Note("without a Stripe customer id"),
        Text("Meter: what the gauge shows, with several meters:"),
        Note("the one nearest its limit, or the one m picks"),
        Text("Credits: money credits available now,"),
        Note("— for a customer never granted any (c grants)"),
        Blank,
        Title("Events at Stripe"),
        States(&[
            StripeState::Reported,
            StripeState::Pending,
            StripeState::Failed,
        ]),
        States(&[StripeState::Expired, StripeState::Unmapped]),
        Note("expired: past Stripe's 35-day window, never sent"),
        Blank,
        Title("Sync runs"),
        Outcomes(&["completed", "running", "incomplete", "cancelled"]),
        Outcomes(&["aborted", "interrupted"]),
        Blank,
        Title("Marks"),
        Marks,
    ];
    if theme.color {
        lines.push(Note(
            "green ok · yellow warning · red critical · magenta cap",
        ));
    }
    lines
}

/// How many lines the help has, stacked (as on a narrow terminal).
pub(crate) fn lines(theme: Theme) -> u16 {
    let total = key_lines().len() + legend(theme).len();
    u16::try_from(total).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_binding_has_a_line_under_its_mode() {
        let lines = key_lines();
        let bindings = keys::BINDINGS.len();
        // A title and a blank line per mode.
        assert_eq!(lines.len(), bindings + 8);
        assert_eq!(lines[0], KeyLine::Title("Keys"));
        assert!(lines.contains(&KeyLine::Key {
            keys: "q/Ctrl-c".into(),
            what: "quit"
        }));
    }

    #[test]
    fn the_colour_names_are_only_listed_in_colour() {
        assert_eq!(
            lines(Theme::COLOR),
            lines(Theme::MONOCHROME).saturating_add(1)
        );
    }
}
