//! Monthly billing periods in UTC, anchored on the customer's billing anchor date.
//!
//! Period `n` starts at `anchor + n months`, with the day clamped to the month's last day.
//! Every start is computed from the anchor itself, never from the previous period, so an anchor
//! on Jan 31 gives Feb 28 (or 29) and then Mar 31 again.

use chrono::{DateTime, Datelike, FixedOffset, Months, NaiveDate, TimeZone, Timelike, Utc};
use serde::Serialize;

/// How billing periods are cut: from each customer's anchor day, or calendar months.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeriodKind {
    /// Monthly from the customer's anchor day (anniversary billing).
    Anniversary,
    /// Calendar months, starting on the 1st.
    Calendar,
}

impl PeriodKind {
    /// The plans.toml spelling.
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
    /// True when `at` falls in `[start, end)`.
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
    if at.nanosecond() >= 1_000_000_000
        && let Some(next) = whole_second(at)
    {
        // A leap second is written as the next second, as every input time is kept.
        return format_ts(next);
    }
    let year = at.year();
    if !(0..=9999).contains(&year) {
        return at.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    }
    // Digits written straight into the string: `format!` cost ~3,000 instructions a call,
    // and the record and check paths format several instants each.
    let mut text = String::with_capacity(20);
    let fields = [
        (year.unsigned_abs(), &[1000, 100, 10, 1][..], '-'),
        (at.month(), &[10, 1], '-'),
        (at.day(), &[10, 1], 'T'),
        (at.hour(), &[10, 1], ':'),
        (at.minute(), &[10, 1], ':'),
        (at.second(), &[10, 1], 'Z'),
    ];
    for (value, places, separator) in fields {
        for &place in places {
            let digit = value
                .checked_div(place)
                .unwrap_or(0)
                .checked_rem(10)
                .unwrap_or(0);
            text.push(char::from_digit(digit, 10).unwrap_or('0'));
        }
        text.push(separator);
    }
    text
}

/// An event time as meterline keeps it: whole seconds, the fraction dropped (the second the
/// instant falls in), and a leap second (`…:60`) as the start of the next second, as POSIX
/// time counts it. `None` past chrono's range.
pub fn whole_second(at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    // chrono keeps a leap second as second 59 with a nanosecond of 1e9 or more.
    let leap = i64::from(at.nanosecond() >= 1_000_000_000);
    DateTime::from_timestamp(at.timestamp().checked_add(leap)?, 0)
}

/// The one parser of RFC3339 input times (`--at`, `--now`, an event's JSON `at`, CloudEvents'
/// `time`), as [`whole_second`] keeps them. chrono's relaxed RFC3339, as serde read JSON times
/// before: a space for the `T` and `+hhmm` offsets are taken too.
pub fn parse_ts(text: &str) -> Result<DateTime<Utc>, String> {
    let at = text
        .parse::<DateTime<FixedOffset>>()
        .map_err(|e| format!("{e}; expected RFC3339, e.g. 2026-11-27T18:00:00Z"))?;
    whole_second(at.with_timezone(&Utc)).ok_or_else(|| format!("{text} is out of range"))
}

/// [`parse_ts`] for an optional JSON string (`#[serde(deserialize_with)]`): `null` is none.
pub(crate) fn deserialize_ts<'de, D>(deserializer: D) -> Result<Option<DateTime<Utc>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let text: Option<String> = serde::Deserialize::deserialize(deserializer)?;
    text.map(|t| parse_ts(&t).map_err(serde::de::Error::custom))
        .transpose()
}

/// Unix seconds as text (Stripe's and Lago's `timestamp`): digits with an optional sign and
/// fraction, read exactly (a float would round `.999999999` up to the next second), the
/// fraction dropped as [`whole_second`] does.
pub fn parse_unix_seconds(text: &str) -> Option<DateTime<Utc>> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let unsigned = whole.strip_prefix(['-', '+']).unwrap_or(whole);
    if unsigned.is_empty() || !digits(unsigned) || !digits(fraction) {
        return None;
    }
    let secs: i64 = whole.parse().ok()?;
    // Before 1970 a fraction lies before its whole second: -1.5 is in second -2.
    let below = whole.starts_with('-') && fraction.bytes().any(|b| b != b'0');
    DateTime::from_timestamp(secs.checked_sub(i64::from(below))?, 0)
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
    fn input_times_are_whole_seconds_and_a_leap_second_is_the_next() {
        let parsed = |text: &str| format_ts(parse_ts(text).unwrap());
        assert_eq!(parsed("2026-11-27T11:00:60Z"), "2026-11-27T11:01:00Z");
        assert_eq!(parsed("2026-11-27T11:00:60.7Z"), "2026-11-27T11:01:00Z");
        assert_eq!(parsed("2026-12-31T23:59:60Z"), "2027-01-01T00:00:00Z");
        assert_eq!(parsed("2026-11-27T12:00:60+01:00"), "2026-11-27T11:01:00Z");
        assert_eq!(
            parsed("2026-11-27T11:00:00.999999999Z"),
            "2026-11-27T11:00:00Z"
        );
        assert_eq!(parsed("2026-11-27 11:00:00+0000"), "2026-11-27T11:00:00Z");
        assert_eq!(parse_ts("2026-11-27T11:00:00.5Z").unwrap().nanosecond(), 0);
        let err = parse_ts("yesterday").unwrap_err();
        assert!(
            err.contains("expected RFC3339, e.g. 2026-11-27T18:00:00Z"),
            "{err}"
        );
        // A leap second handed in by a library caller is written the same way.
        let leap = DateTime::parse_from_rfc3339("2026-11-27T11:00:60Z").unwrap();
        assert_eq!(format_ts(leap.with_timezone(&Utc)), "2026-11-27T11:01:00Z");
    }

    #[test]
    fn unix_seconds_are_read_exactly_and_fractions_dropped() {
        let secs = |text: &str| parse_unix_seconds(text).map(|t| t.timestamp());
        assert_eq!(secs("1795777200"), Some(1_795_777_200));
        assert_eq!(secs("1795777200.999999999"), Some(1_795_777_200));
        assert_eq!(secs("+7.5"), Some(7));
        assert_eq!(secs("-1.5"), Some(-2));
        assert_eq!(secs("-0.5"), Some(-1));
        assert_eq!(secs("-3.000"), Some(-3));
        for bad in [
            "",
            ".5",
            "-",
            "1.2.3",
            "1e9",
            "noon",
            "1.5x",
            " 1",
            "99999999999999999999",
        ] {
            assert_eq!(secs(bad), None, "{bad:?}");
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
