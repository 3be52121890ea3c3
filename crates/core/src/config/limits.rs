//! `[[plans.meters.ID.limits]]` (without `[[meters]]`, `[[plans.limits]]`): rolling-window
//! limits, "1M tokens per 5 hours", decided by the record path as the period's cap is.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Aggregation;
use super::meters::{Meter, Mistake};
use super::raw::RawLimit;

/// The most limits one meter may have in a plan.
pub const MAX_LIMITS: usize = 4;
/// The shortest window, in seconds.
pub const MIN_WINDOW_SECS: i64 = 60;
/// The longest window: 31 days.
pub const MAX_WINDOW_SECS: i64 = 31 * 86_400;

/// How a window moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    /// At no instant t may the usage in (t - window, t] pass the limit.
    Sliding,
    /// Windows [origin + k·window, origin + (k+1)·window), the limit per window.
    Fixed,
}

/// Where a fixed window's origin is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Align {
    /// The customer's period start: windows restart with each period.
    Period,
    /// Monday 1970-01-05 00:00 UTC, so days start at midnight and weeks on Mondays.
    Utc,
}

/// What happens to an event that would pass the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitAction {
    /// It is refused.
    Block,
    /// It is counted; only the window's alerts are raised.
    Alert,
}

/// One window limit of a meter in a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    /// The window's length in seconds.
    pub window_secs: i64,
    pub kind: WindowKind,
    /// Fixed windows only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub align: Option<Align>,
    pub limit: i64,
    pub at_limit: LimitAction,
}

impl Limit {
    /// The window as plans.toml would write it: "5h", "90m", "7d".
    pub fn window(&self) -> Window {
        Window(self.window_secs)
    }

    /// What a refusal or an alert names: "5h sliding", "7d fixed".
    pub fn name(&self) -> String {
        let kind = match self.kind {
            WindowKind::Sliding => "sliding",
            WindowKind::Fixed => "fixed",
        };
        format!("{} {kind}", self.window())
    }

    pub fn blocks(&self) -> bool {
        self.at_limit == LimitAction::Block
    }
}

/// A window length, shown in its largest whole unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window(pub i64);

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0;
        let (n, unit) = [(86_400, "d"), (3_600, "h"), (60, "m")]
            .into_iter()
            .find(|(size, _)| secs % size == 0)
            .map_or((secs, "s"), |(size, unit)| (secs / size, unit));
        write!(f, "{n}{unit}")
    }
}

/// "5h", "90m", "1h30m", "7d" as seconds: whole numbers each followed by s, m, h or d.
pub fn parse_window(text: &str) -> Result<i64, String> {
    let bad = || {
        format!(
            "window = \"{}\" is not a duration; write a number and a unit (s, m, h or d), \
             e.g. \"5h\" or \"7d\"",
            text.escape_debug()
        )
    };
    let mut secs: i64 = 0;
    let mut digits = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: i64 = digits.parse().map_err(|_| bad())?;
        secs = n
            .checked_mul(unit)
            .and_then(|part| secs.checked_add(part))
            .ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() || text.trim().is_empty() {
        return Err(bad());
    }
    Ok(secs)
}

/// Validate one plan's limits of `meter`, pointing at the line that is wrong.
pub(super) fn validate_limits(raw: Vec<RawLimit>, meter: &Meter) -> Result<Vec<Limit>, Mistake> {
    let at = |m: String| format!("limits of meter \"{}\": {m}", meter.id);
    let mut limits: Vec<Limit> = Vec::with_capacity(raw.len());
    for (n, line) in raw.into_iter().enumerate() {
        if !matches!(meter.aggregation, Aggregation::Sum | Aggregation::Count) {
            return Err(Mistake::at(
                &line.window,
                at(format!(
                    "a window adds up the units events add, so it needs a sum or count meter, \
                     not {}",
                    meter.aggregation.as_str()
                )),
            ));
        }
        if n == MAX_LIMITS {
            return Err(Mistake::at(
                &line.window,
                at(format!("at most {MAX_LIMITS} limits per meter")),
            ));
        }
        let window_secs =
            parse_window(line.window.get_ref()).map_err(|m| Mistake::at(&line.window, at(m)))?;
        if !(MIN_WINDOW_SECS..=MAX_WINDOW_SECS).contains(&window_secs) {
            return Err(Mistake::at(
                &line.window,
                at(format!(
                    "window = \"{}\" must be from 1 minute to 31 days",
                    line.window.get_ref().escape_debug()
                )),
            ));
        }
        if limits.iter().any(|l| l.window_secs == window_secs) {
            return Err(Mistake::at(
                &line.window,
                at(format!(
                    "two limits have the window {}; give each window one limit",
                    Window(window_secs)
                )),
            ));
        }
        let kind = match line.kind.as_ref().map(|k| k.get_ref().as_str()) {
            None | Some("sliding") => WindowKind::Sliding,
            Some("fixed") => WindowKind::Fixed,
            Some(other) => {
                return Err(Mistake::at(
                    line.kind.as_ref().unwrap_or(&line.window),
                    at(format!(
                        "kind = \"{}\" is not known; use \"sliding\" or \"fixed\"",
                        other.escape_debug()
                    )),
                ));
            }
        };
        let align = match (&line.align, kind) {
            (None, WindowKind::Sliding) => None,
            (None, WindowKind::Fixed) => Some(Align::Period),
            (Some(align), WindowKind::Sliding) => {
                return Err(Mistake::at(
                    align,
                    at(
                        "align is for fixed windows; a sliding window has no origin, it ends \
                         at every instant"
                            .into(),
                    ),
                ));
            }
            (Some(align), WindowKind::Fixed) => Some(match align.get_ref().as_str() {
                "period" => Align::Period,
                "utc" => Align::Utc,
                other => {
                    return Err(Mistake::at(
                        align,
                        at(format!(
                            "align = \"{}\" is not known; use \"period\" or \"utc\"",
                            other.escape_debug()
                        )),
                    ));
                }
            }),
        };
        let limit = *line.limit.get_ref();
        if !(1..=super::validate::MAX_INCLUDED).contains(&limit) {
            return Err(Mistake::at(
                &line.limit,
                at(format!(
                    "limit = {limit} must be between 1 and {}",
                    super::validate::MAX_INCLUDED
                )),
            ));
        }
        let at_limit = match line.at_limit.as_ref().map(|a| a.get_ref().as_str()) {
            None | Some("block") => LimitAction::Block,
            Some("alert") => LimitAction::Alert,
            Some(other) => {
                return Err(Mistake::at(
                    line.at_limit.as_ref().unwrap_or(&line.window),
                    at(format!(
                        "at_limit = \"{}\" is not known; use \"block\" or \"alert\"",
                        other.escape_debug()
                    )),
                ));
            }
        };
        limits.push(Limit {
            window_secs,
            kind,
            align,
            limit,
            at_limit,
        });
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_reads_and_prints_in_whole_units() {
        assert_eq!(parse_window("5h"), Ok(5 * 3_600));
        assert_eq!(parse_window("1h30m"), Ok(5_400));
        assert_eq!(parse_window("7d"), Ok(7 * 86_400));
        assert_eq!(parse_window("90s"), Ok(90));
        for bad in ["", "h", "5", "5w", "-5h", "5 h", "99999999999999999999d"] {
            assert!(parse_window(bad).is_err(), "{bad}");
        }
        assert_eq!(Window(5 * 3_600).to_string(), "5h");
        assert_eq!(Window(5_400).to_string(), "90m");
        assert_eq!(Window(7 * 86_400).to_string(), "7d");
        assert_eq!(Window(61).to_string(), "61s");
    }
}
