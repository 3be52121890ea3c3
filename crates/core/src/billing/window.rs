//! Window arithmetic, on whole seconds since the Unix epoch: where a fixed window lies, which
//! stored buckets add up a stretch of time, and the peaks and releases of a sliding window.

use crate::config::{Align, Limit};

/// The bucket sizes usage is kept in (`window_buckets.span`): a minute, an hour, a day. A
/// minute's bucket also keeps its seconds. A stretch of time is added up from the coarsest
/// buckets that fit in it and the seconds of at most two minutes at its ends, so its cost is
/// bounded by the sizes, never by the events in it.
pub const SPANS: [i64; 3] = [MINUTE, 3_600, 86_400];

pub const MINUTE: i64 = 60;

/// Monday 1970-01-05 00:00 UTC: `align = "utc"` windows start from it, so a day starts at
/// midnight and a week on a Monday.
pub const UTC_ORIGIN: i64 = 4 * 86_400;

/// Buckets of one size whose start is in [from, to): they lie wholly inside the stretch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanRange {
    pub span: i64,
    pub from: i64,
    pub to: i64,
}

/// A stretch of time as the buckets hold it: the seconds [from, to) of at most two minutes
/// at its ends (`partial`: minute, from, to), and the whole buckets between (`whole`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stretch {
    pub partial: Vec<(i64, i64, i64)>,
    pub whole: Vec<SpanRange>,
}

/// [lo, hi) as whole buckets and the seconds of the minutes it cuts.
pub fn stretch(lo: i64, hi: i64) -> Stretch {
    let mut partial = Vec::with_capacity(2);
    if lo >= hi {
        return Stretch {
            partial,
            whole: Vec::new(),
        };
    }
    let (up, down) = (ceil_to(lo, MINUTE), floor_to(hi, MINUTE));
    if up > down {
        // Inside one minute.
        partial.push((floor_to(lo, MINUTE), lo, hi));
        return Stretch {
            partial,
            whole: Vec::new(),
        };
    }
    if lo < up {
        partial.push((floor_to(lo, MINUTE), lo, up));
    }
    if down < hi {
        partial.push((down, down, hi));
    }
    Stretch {
        partial,
        whole: cover(up, down),
    }
}

/// The buckets that make up [lo, hi) exactly (both whole minutes): at most two ranges of each
/// size but the largest, and one of that. Ranges that would be empty are left out.
pub fn cover(mut lo: i64, mut hi: i64) -> Vec<SpanRange> {
    let mut ranges = Vec::with_capacity(5);
    for (i, &span) in SPANS.iter().enumerate() {
        if lo >= hi {
            break;
        }
        let Some(&next) = SPANS.get(i.saturating_add(1)) else {
            ranges.push(SpanRange {
                span,
                from: lo,
                to: hi,
            });
            break;
        };
        let (up, down) = (ceil_to(lo, next), floor_to(hi, next));
        if up >= down {
            ranges.push(SpanRange {
                span,
                from: lo,
                to: hi,
            });
            break;
        }
        if lo < up {
            ranges.push(SpanRange {
                span,
                from: lo,
                to: up,
            });
        }
        if down < hi {
            ranges.push(SpanRange {
                span,
                from: down,
                to: hi,
            });
        }
        (lo, hi) = (up, down);
    }
    ranges
}

fn floor_to(t: i64, size: i64) -> i64 {
    t.div_euclid(size).saturating_mul(size)
}

fn ceil_to(t: i64, size: i64) -> i64 {
    floor_to(t, size).saturating_add(if t.rem_euclid(size) == 0 { 0 } else { size })
}

/// The fixed window of `limit` that holds `at`, as [start, end). `period` is the customer's
/// period holding `at`, [start, end): a window aligned on it restarts with each period, and
/// the period's last window ends with the period.
pub fn fixed_window(limit: &Limit, at: i64, period: (i64, i64)) -> (i64, i64) {
    let size = limit.window_secs;
    let origin = match limit.align {
        Some(Align::Utc) => UTC_ORIGIN,
        _ => period.0,
    };
    let start = origin.saturating_add(floor_to(at.saturating_sub(origin), size));
    let end = start.saturating_add(size);
    match limit.align {
        Some(Align::Utc) => (start, end),
        _ => (start, end.min(period.1)),
    }
}

/// The most a sliding window of `window` seconds holds at any instant from `at` to
/// `at + window` (every window an event at `at` falls in), given the usage `points`
/// (second, units) from `at - window` to `at + window`, sorted by second.
pub fn sliding_peak(points: &[(i64, i64)], at: i64, window: i64) -> i64 {
    // The sum only grows where a point enters, so the peak is at `at` or at a later point.
    let ends = std::iter::once(at).chain(
        points
            .iter()
            .map(|p| p.0)
            .filter(|&t| t > at && t < at.saturating_add(window)),
    );
    let (mut first, mut last, mut sum, mut peak) = (0, 0, 0i64, 0i64);
    for end in ends {
        while last < points.len() && points[last].0 <= end {
            sum = sum.saturating_add(points[last].1);
            last = last.saturating_add(1);
        }
        while first < last && points[first].0 <= end.saturating_sub(window) {
            sum = sum.saturating_sub(points[first].1);
            first = first.saturating_add(1);
        }
        peak = peak.max(sum);
    }
    peak
}

/// When a sliding window that now holds the `points` (second, units; sorted, none after
/// `now`) will have let go of at least `amount` units: the first instant at which the
/// oldest points released add up to it, and what they add up to. `None` if they never do.
pub fn released_by(points: &[(i64, i64)], window: i64, amount: i64) -> Option<(i64, i64)> {
    let mut freed: i64 = 0;
    for &(at, units) in points {
        freed = freed.saturating_add(units);
        if freed >= amount {
            return Some((at.saturating_add(window), freed));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LimitAction, WindowKind};

    fn brute_sum(points: &[(i64, i64)], lo: i64, hi: i64) -> i64 {
        points
            .iter()
            .filter(|p| p.0 >= lo && p.0 < hi)
            .map(|p| p.1)
            .sum()
    }

    #[test]
    fn a_stretch_is_covered_exactly_by_its_buckets() {
        // Every second in [lo, hi) in exactly one bucket or partial minute, none outside.
        for (lo, hi) in [
            (0, 1),
            (59, 61),
            (60, 120),
            (3_599, 90_001),
            (86_400, 2 * 86_400),
            (12_345, 12_345),
            (1_700_000_123, 1_700_000_123 + 7 * 86_400 + 61),
            (-90, 30),
        ] {
            let stretch = stretch(lo, hi);
            assert!(
                stretch.partial.len() <= 2 && stretch.whole.len() <= 5,
                "{stretch:?}"
            );
            let mut seconds = Vec::new();
            for &(minute, from, to) in &stretch.partial {
                assert_eq!(minute.rem_euclid(MINUTE), 0);
                assert!(minute <= from && to <= minute + MINUTE);
                seconds.extend(from..to);
            }
            for r in &stretch.whole {
                assert_eq!(r.from.rem_euclid(r.span), 0);
                assert_eq!(r.to.rem_euclid(r.span), 0);
                let mut b = r.from;
                while b < r.to {
                    seconds.extend(b..b + r.span);
                    b += r.span;
                }
            }
            seconds.sort_unstable();
            let expected: Vec<i64> = (lo..hi).collect();
            assert_eq!(seconds, expected, "[{lo}, {hi})");
        }
    }

    fn limit(window_secs: i64, align: Option<Align>) -> Limit {
        Limit {
            window_secs,
            kind: WindowKind::Fixed,
            align,
            limit: 10,
            at_limit: LimitAction::Block,
        }
    }

    #[test]
    fn fixed_windows_start_from_the_period_or_utc_mondays() {
        let period = (1_000_000, 1_000_000 + 10 * 3_600);
        let five_hours = limit(5 * 3_600, Some(Align::Period));
        assert_eq!(
            fixed_window(&five_hours, period.0 + 3, period),
            (period.0, period.0 + 5 * 3_600)
        );
        // The period's last window ends with it.
        let three_hours = limit(3 * 3_600, Some(Align::Period));
        assert_eq!(
            fixed_window(&three_hours, period.1 - 1, period),
            (period.0 + 9 * 3_600, period.1)
        );
        let week = limit(7 * 86_400, Some(Align::Utc));
        // 2026-12-07 is a Monday.
        let monday = 1_796_601_600;
        assert_eq!(
            fixed_window(&week, monday + 5, period),
            (monday, monday + 7 * 86_400)
        );
        assert_eq!(fixed_window(&week, monday - 1, period).1, monday);
    }

    #[test]
    fn the_peak_counts_every_window_an_event_falls_in() {
        // Window 10: a late event at 5 falls in windows ending 5..14, which hold 8 at 12.
        let points = [(0, 3), (6, 4), (12, 4), (20, 9)];
        assert_eq!(sliding_peak(&points, 5, 10), 8);
        // At the end of the stream only the window ending now matters.
        assert_eq!(sliding_peak(&points, 20, 10), 13);
        assert_eq!(sliding_peak(&[], 20, 10), 0);
        // Brute force over every window end.
        for at in -5..30 {
            let brute = (at..at + 10)
                .map(|t| brute_sum(&points, t - 10 + 1, t + 1))
                .max()
                .unwrap_or(0);
            let near: Vec<_> = points
                .iter()
                .copied()
                .filter(|p| p.0 > at - 10 && p.0 < at + 10)
                .collect();
            assert_eq!(sliding_peak(&near, at, 10), brute, "at {at}");
        }
    }

    #[test]
    fn a_window_frees_its_oldest_units_first() {
        let points = [(100, 5), (130, 7), (140, 1)];
        assert_eq!(released_by(&points, 3_600, 1), Some((3_700, 5)));
        assert_eq!(released_by(&points, 3_600, 6), Some((3_730, 12)));
        assert_eq!(released_by(&points, 3_600, 14), None);
    }
}
