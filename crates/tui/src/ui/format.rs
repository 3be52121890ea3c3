//! Numbers and dates as the dashboard writes them.

use chrono::{DateTime, Utc};

pub(crate) use crate::billing::thousands;

/// The real percentage, never clamped: 134 % over the limit. Whole percents, rounded down so
/// "100 %" only ever means the limit is reached.
pub(crate) fn percent(used: i64, limit: Option<i64>) -> String {
    match limit {
        None => "-".to_string(),
        Some(0) => "100 %".to_string(),
        Some(limit) => format!("{} %", i128::from(used) * 100 / i128::from(limit)),
    }
}

/// "85,000 / 100,000", or just "7,654,321" without a limit (the gauge says "unlimited").
pub(crate) fn used_of(used: i64, limit: Option<i64>) -> String {
    match limit {
        Some(limit) => format!("{} / {}", thousands(used), thousands(limit)),
        None => thousands(used),
    }
}

/// `text` cut to `width` terminal cells, its end replaced by "…" when it does not fit.
pub(crate) fn ellipsis(text: &str, width: u16) -> String {
    let width = usize::from(width);
    let cells = |s: &str| ratatui::text::Span::raw(s).width();
    if cells(text) <= width {
        return text.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let mut buf = [0; 4];
        let w = cells(c.encode_utf8(&mut buf));
        if used + w + 1 > width {
            break;
        }
        out.push(c);
        used += w;
    }
    if width > 0 {
        out.push('…');
    }
    out
}

pub(crate) fn minute(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

pub(crate) fn day(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}

/// A stored instant as the CLI says it (`check`'s words): "14:32 UTC" today, else
/// "2026-11-30 00:00 UTC" (text it cannot read is shown as it is).
pub(crate) fn clock(text: &str, now: DateTime<Utc>) -> String {
    match crate::billing::parse_ts(text) {
        Ok(at) if at.date_naive() == now.date_naive() => at.format("%H:%M UTC").to_string(),
        Ok(at) => minute(at),
        Err(_) => super::super::sanitize::sanitize(text).into_owned(),
    }
}

/// "2026-11-27T18:59:03Z" -> "2026-11-27 18:59" (text from the database, kept if unexpected).
pub(crate) fn stored_minute(text: &str) -> String {
    match (text.get(..10), text.get(11..16)) {
        (Some(date), Some(time)) => format!("{date} {time}"),
        _ => super::super::sanitize::sanitize(text).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_is_real_and_rounded_down() {
        assert_eq!(super::percent(134_000, Some(100_000)), "134 %");
        assert_eq!(super::percent(999, Some(1000)), "99 %");
        assert_eq!(super::percent(29, Some(100)), "29 %");
        assert_eq!(super::percent(5, None), "-");
        assert_eq!(super::percent(0, Some(0)), "100 %");
    }

    #[test]
    fn a_clock_time_today_and_the_date_too_on_another_day() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-27T18:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(super::clock("2026-11-27T22:32:05Z", now), "22:32 UTC");
        assert_eq!(
            super::clock("2026-11-30T00:00:00Z", now),
            "2026-11-30 00:00 UTC"
        );
        assert_eq!(super::clock("soon", now), "soon");
    }

    #[test]
    fn ellipsis_cuts_to_the_width_in_cells() {
        assert_eq!(super::ellipsis("Prestige Worldwide", 10), "Prestige …");
        assert_eq!(super::ellipsis("Short", 10), "Short");
        assert_eq!(super::ellipsis("日本語の名前", 7), "日本語…");
        assert_eq!(super::ellipsis("abc", 0), "");
    }
}
