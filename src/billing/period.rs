//! Monthly billing periods in UTC, anchored on the customer's billing anchor date.
//!
//! Period `n` starts at `anchor + n months`, with the day clamped to the month's last day.
//! Every start is computed from the anchor itself, never from the previous period, so an anchor
//! on Jan 31 gives Feb 28 (or 29) and then Mar 31 again.

use chrono::{DateTime, Datelike, Months, NaiveDate, TimeZone, Timelike, Utc};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeriodKind {
    /// Monthly from the customer's anchor day (anniversary billing).
    Anniversary,
    /// Calendar months, starting on the 1st.
    Calendar,
}

impl PeriodKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PeriodKind::Anniversary => "anniversary",
            PeriodKind::Calendar => "calendar",
        }
    }
}

/// A half-open interval `[start, end)` in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Period {
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && at < self.end
    }

    /// Whole days left until the period ends, rounding a started day up.
    pub fn days_left(&self, now: DateTime<Utc>) -> i64 {
        let secs = self.end.signed_duration_since(now).num_seconds().max(0);
        secs.saturating_add(86_399) / 86_400
    }
}

/// The period containing `at` for a customer anchored on `anchor`.
pub fn period_containing(anchor: NaiveDate, kind: PeriodKind, at: DateTime<Utc>) -> Period {
    let anchor = effective_anchor(anchor, kind);
    let date = at.date_naive();
    // A first guess from the calendar, then at most one step either way.
    let months = |y: i32, m: u32| y.saturating_mul(12).saturating_add(m as i32);
    let mut n =
        months(date.year(), date.month()).saturating_sub(months(anchor.year(), anchor.month()));
    while start_of(anchor, n) > at {
        n = n.saturating_sub(1);
    }
    while start_of(anchor, n.saturating_add(1)) <= at {
        n = n.saturating_add(1);
    }
    Period {
        start: start_of(anchor, n),
        end: start_of(anchor, n.saturating_add(1)),
    }
}

/// Up to `count` periods ending with the one containing `at`, oldest first; none before the
/// period containing the anchor.
pub fn periods_before(
    anchor: NaiveDate,
    kind: PeriodKind,
    at: DateTime<Utc>,
    count: usize,
) -> Vec<Period> {
    // Nothing before the customer's first period: it did not exist then.
    let first_instant = Utc.from_utc_datetime(&anchor.and_time(chrono::NaiveTime::MIN));
    let mut periods = Vec::with_capacity(count);
    let mut current = period_containing(anchor, kind, at);
    for _ in 0..count {
        periods.push(current);
        let Some(before) = current
            .start
            .checked_sub_signed(chrono::Duration::seconds(1))
            .filter(|before| *before >= first_instant)
        else {
            break;
        };
        current = period_containing(anchor, kind, before);
    }
    periods.reverse();
    periods
}

/// The canonical text form of instants in the database and JSON: RFC3339, UTC, whole seconds.
/// Fixed width, so text order is time order.
pub fn format_ts(at: DateTime<Utc>) -> String {
    // Written field by field: every record formats a few of these, and chrono's format
    // string is parsed anew on each call. Years outside 0..=9999 keep chrono's form.
    let year = at.year();
    if !(0..=9999).contains(&year) {
        return at.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    }
    format!(
        "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        at.month(),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

fn effective_anchor(anchor: NaiveDate, kind: PeriodKind) -> NaiveDate {
    match kind {
        PeriodKind::Anniversary => anchor,
        // Day 1 always exists; the fallback is never taken.
        PeriodKind::Calendar => anchor.with_day(1).unwrap_or(anchor),
    }
}

/// Midnight UTC of `anchor + n months`; chrono clamps the day to the month's end.
fn start_of(anchor: NaiveDate, n: i32) -> DateTime<Utc> {
    // Checked: a date out of chrono's range (a clock set to year 200000) saturates, never panics.
    let date = if n >= 0 {
        anchor
            .checked_add_months(Months::new(n as u32))
            .unwrap_or(NaiveDate::MAX)
    } else {
        anchor
            .checked_sub_months(Months::new(n.unsigned_abs()))
            .unwrap_or(NaiveDate::MIN)
    };
    Utc.from_utc_datetime(&date.and_time(chrono::NaiveTime::MIN))
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }
    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }
    fn starts(anchor: NaiveDate, at: &str) -> (String, String) {
        let p = period_containing(anchor, PeriodKind::Anniversary, t(at));
        (format_ts(p.start), format_ts(p.end))
    }

    proptest! {
        #[test]
        fn format_ts_is_chronos_format(secs in -70_000_000_000i64..300_000_000_000i64) {
            let at = DateTime::from_timestamp(secs, 0).unwrap();
            prop_assert_eq!(format_ts(at), at.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        }
    }

    #[test]
    fn anchor_on_31st_clamps_then_returns_to_31st() {
        let a = d(2026, 1, 31);
        assert_eq!(
            starts(a, "2026-02-15T00:00:00Z"),
            ("2026-01-31T00:00:00Z".into(), "2026-02-28T00:00:00Z".into())
        );
        assert_eq!(
            starts(a, "2026-03-01T00:00:00Z"),
            ("2026-02-28T00:00:00Z".into(), "2026-03-31T00:00:00Z".into())
        );
        assert_eq!(
            starts(a, "2026-04-10T00:00:00Z"),
            ("2026-03-31T00:00:00Z".into(), "2026-04-30T00:00:00Z".into())
        );
    }

    #[test]
    fn leap_year_february() {
        let a = d(2028, 1, 30);
        assert_eq!(
            starts(a, "2028-02-29T12:00:00Z"),
            ("2028-02-29T00:00:00Z".into(), "2028-03-30T00:00:00Z".into())
        );
        let a = d(2027, 1, 29);
        assert_eq!(
            starts(a, "2027-02-28T12:00:00Z"),
            ("2027-02-28T00:00:00Z".into(), "2027-03-29T00:00:00Z".into())
        );
        // Anchored on Feb 29: other years fall on Feb 28, leap years on the 29th again.
        let a = d(2028, 2, 29);
        assert_eq!(
            starts(a, "2029-03-01T00:00:00Z"),
            ("2029-02-28T00:00:00Z".into(), "2029-03-29T00:00:00Z".into())
        );
        assert_eq!(
            starts(a, "2032-02-29T00:00:00Z"),
            ("2032-02-29T00:00:00Z".into(), "2032-03-29T00:00:00Z".into())
        );
    }

    #[test]
    fn boundary_instant_belongs_to_the_new_period() {
        let a = d(2026, 3, 15);
        assert_eq!(starts(a, "2026-04-15T00:00:00Z").0, "2026-04-15T00:00:00Z");
        assert_eq!(starts(a, "2026-04-14T23:59:59Z").0, "2026-03-15T00:00:00Z");
    }

    #[test]
    fn dates_before_the_anchor_get_earlier_periods() {
        assert_eq!(
            starts(d(2026, 5, 31), "2026-05-01T00:00:00Z"),
            ("2026-04-30T00:00:00Z".into(), "2026-05-31T00:00:00Z".into())
        );
    }

    #[test]
    fn calendar_periods_start_on_the_first() {
        let p = period_containing(
            d(2026, 1, 17),
            PeriodKind::Calendar,
            t("2026-02-28T23:00:00Z"),
        );
        assert_eq!(format_ts(p.start), "2026-02-01T00:00:00Z");
        assert_eq!(format_ts(p.end), "2026-03-01T00:00:00Z");
    }

    #[test]
    fn history_periods_are_contiguous() {
        let ps = periods_before(
            d(2026, 1, 31),
            PeriodKind::Anniversary,
            t("2026-07-01T00:00:00Z"),
            6,
        );
        assert_eq!(ps.len(), 6);
        assert_eq!(format_ts(ps[0].start), "2026-01-31T00:00:00Z");
        assert_eq!(format_ts(ps[1].start), "2026-02-28T00:00:00Z");
        assert_eq!(format_ts(ps[2].start), "2026-03-31T00:00:00Z");
        for w in ps.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
    }

    fn any_anchor() -> impl Strategy<Value = NaiveDate> {
        (1990i32..2100, 1u32..=12, 1u32..=31)
            .prop_filter_map("valid date", |(y, m, d)| NaiveDate::from_ymd_opt(y, m, d))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn the_period_contains_the_instant_and_starts_on_the_anchor_day(
            anchor in any_anchor(),
            offset_secs in -3_000_000_000i64..3_000_000_000i64,
        ) {
            let anchor_instant = Utc.from_utc_datetime(&anchor.and_hms_opt(0, 0, 0).unwrap());
            let at = anchor_instant + chrono::Duration::seconds(offset_secs);
            let p = period_containing(anchor, PeriodKind::Anniversary, at);
            prop_assert!(p.contains(at));
            // Each start is the anchor day, or the month's last day when the month is shorter.
            for s in [p.start, p.end] {
                let date = s.date_naive();
                let last_day = (date + Months::new(1)).with_day(1).unwrap().pred_opt().unwrap().day();
                prop_assert_eq!(date.day(), anchor.day().min(last_day));
                prop_assert_eq!(s.time(), chrono::NaiveTime::MIN);
            }
            // One month apart: between 28 and 31 days.
            let days = (p.end - p.start).num_days();
            prop_assert!((28..=31).contains(&days));
            // The next period starts where this one ends.
            let next = period_containing(anchor, PeriodKind::Anniversary, p.end);
            prop_assert_eq!(next.start, p.end);
        }

        #[test]
        fn calendar_periods_are_calendar_months(
            anchor in any_anchor(),
            offset_secs in -3_000_000_000i64..3_000_000_000i64,
        ) {
            let at = Utc.from_utc_datetime(&anchor.and_hms_opt(0, 0, 0).unwrap())
                + chrono::Duration::seconds(offset_secs);
            let p = period_containing(anchor, PeriodKind::Calendar, at);
            prop_assert!(p.contains(at));
            prop_assert_eq!(p.start.day(), 1);
            prop_assert_eq!(p.end.day(), 1);
            prop_assert_eq!(p.start.month(), at.month());
        }
    }
}
