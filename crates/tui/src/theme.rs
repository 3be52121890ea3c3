//! Colours and their monochrome stand-ins. Every state also has a word or symbol, so nothing
//! is told by colour alone; `Color::Reset` as the base reads on light and dark backgrounds.

use ratatui::style::{Color, Modifier, Style};

use crate::billing::WarningLevel;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    pub const COLOR: Theme = Theme { color: true };
    pub const MONOCHROME: Theme = Theme { color: false };

    /// Colour unless `--no-color` was given or NO_COLOR is set (to anything non-empty).
    pub fn from_env(no_color_flag: bool) -> Theme {
        let no_color_env = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Theme {
            color: !(no_color_flag || no_color_env),
        }
    }

    fn pick(&self, color: Style, mono: Style) -> Style {
        if self.color { color } else { mono }
    }

    /// The level word next to a gauge.
    pub(crate) fn level(&self, level: WarningLevel) -> Style {
        let bold = Style::new().add_modifier(Modifier::BOLD);
        match level {
            WarningLevel::Ok => self.pick(Style::new().fg(Color::Green), Style::new()),
            WarningLevel::Warning => self.pick(bold.fg(Color::Yellow), bold),
            WarningLevel::Critical => {
                self.pick(bold.fg(Color::Red), bold.add_modifier(Modifier::UNDERLINED))
            }
            WarningLevel::HardCap => self.pick(
                bold.fg(Color::White).bg(Color::Magenta),
                bold.add_modifier(Modifier::REVERSED),
            ),
        }
    }

    /// The filled part of a gauge.
    pub(crate) fn gauge(&self, level: WarningLevel) -> Style {
        let color = match level {
            WarningLevel::Ok => Color::Green,
            WarningLevel::Warning => Color::Yellow,
            WarningLevel::Critical => Color::Red,
            WarningLevel::HardCap => Color::Magenta,
        };
        let strong = level == WarningLevel::HardCap;
        let style = Style::new().fg(color);
        let mono = Style::new();
        if strong {
            self.pick(
                style.add_modifier(Modifier::BOLD),
                mono.add_modifier(Modifier::BOLD),
            )
        } else {
            self.pick(style, mono)
        }
    }

    /// The empty part of a gauge.
    pub(crate) fn gauge_empty(&self) -> Style {
        self.pick(Style::new().fg(Color::DarkGray), Style::new())
    }

    pub(crate) fn title(&self) -> Style {
        self.pick(
            Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::BOLD),
        )
    }

    pub(crate) fn header(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
    }

    pub(crate) fn selected(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    pub(crate) fn dim(&self) -> Style {
        self.pick(
            Style::new().fg(Color::DarkGray),
            Style::new().add_modifier(Modifier::DIM),
        )
    }

    pub(crate) fn key(&self) -> Style {
        self.pick(
            Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::BOLD),
        )
    }

    pub(crate) fn error(&self) -> Style {
        self.pick(
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
        )
    }

    pub(crate) fn good(&self) -> Style {
        self.pick(Style::new().fg(Color::Green), Style::new())
    }

    pub(crate) fn attention(&self) -> Style {
        self.pick(
            Style::new().fg(Color::Yellow),
            Style::new().add_modifier(Modifier::BOLD),
        )
    }

    pub(crate) fn bar(&self) -> Style {
        self.pick(Style::new().fg(Color::Cyan), Style::new())
    }
}

/// The level's word where the plan is known. The level is the one `check --json` reports
/// (`hard_cap` at 100 % and over, whatever the plan); an overage plan there keeps recording
/// and bills the extra, which the word says: `■ HARD CAP (overage)`, or `■ HARD CAP+` in the
/// table where room is short.
pub(crate) fn level_word(level: WarningLevel, overage_billed: bool, short: bool) -> &'static str {
    match level {
        WarningLevel::HardCap if overage_billed && short => "■ HARD CAP+",
        WarningLevel::HardCap if overage_billed => "■ HARD CAP (overage)",
        other => level_label(other),
    }
}

/// The level as a symbol and word, for every theme.
pub(crate) fn level_label(level: WarningLevel) -> &'static str {
    match level {
        WarningLevel::Ok => "✓ ok",
        WarningLevel::Warning => "▲ warning",
        WarningLevel::Critical => "◆ critical",
        WarningLevel::HardCap => "■ HARD CAP",
    }
}

/// A sync run's outcome as stored and printed by `meterline status` and `sync --json`
/// (running, completed, incomplete, cancelled, aborted, interrupted), with its symbol and
/// style.
pub(crate) fn outcome_label(theme: Theme, outcome: &str) -> (String, Style) {
    let (symbol, style) = match outcome {
        "completed" => ("✓", theme.good()),
        "running" => ("…", theme.attention()),
        "incomplete" | "cancelled" => ("!", theme.attention()),
        // aborted, interrupted (or a word from a newer meterline): the run did not finish.
        _ => ("✗", theme.error()),
    };
    let word = crate::sanitize::sanitize(outcome);
    (format!("{symbol} {word}"), style)
}
