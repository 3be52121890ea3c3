//! What the commands share about their output: the one stdout writer, JSON lines, the exit
//! code of a refusal, and the text formatting of the human-readable outputs.

use std::process::ExitCode;

use serde::Serialize;

use std::io::Write;

use crate::billing::UsageCheck;
use crate::sanitize::sanitize;
use crate::store::Decimal;
use crate::{Error, Result};
use meterline_core::{Amounts, MeteredCheck};

/// Exit code for a record refused by a hard cap (`record`, `record --batch`), and of `check`
/// for a customer who may not record more.
pub const REFUSED: u8 = 3;

/// Write command output to stdout (the `out!` and `outln!` macros). A reader that went away
/// ([`Error::OutputClosed`]) is not a failure: the CLI then exits 0 quietly, as ripgrep does.
pub fn write(args: std::fmt::Arguments) -> Result<()> {
    std::io::stdout().lock().write_fmt(args).map_err(io_error)
}

/// Write bytes made elsewhere (a man page, completions) to stdout, as [`write`] does.
pub fn write_bytes(bytes: &[u8]) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(io_error)
}

/// A reader that went away (`| head`) is [`Error::OutputClosed`]; anything else is an error.
pub fn io_error(e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Error::OutputClosed
    } else {
        Error::Output(e.to_string())
    }
}

/// Print a value as one line of JSON.
pub fn print_json<T: Serialize>(value: &T) -> Result<ExitCode> {
    outln!(
        "{}",
        serde_json::to_string(value).map_err(|e| crate::Error::Output(e.to_string()))?
    )?;
    Ok(ExitCode::SUCCESS)
}

pub use crate::billing::thousands;

/// "85,000 / 100,000" or "85,000 / unlimited".
pub fn used_of_limit(check: &UsageCheck) -> String {
    match check.limit {
        Some(limit) => format!("{} / {}", thousands(check.used), thousands(limit)),
        None => format!("{} / unlimited", thousands(check.used)),
    }
}

/// "85.0 %" or "-" for unlimited plans; rounded down, so 99.96 % is "99.9 %", never "100.0 %"
/// below the limit.
pub fn percent(check: &UsageCheck) -> String {
    check.per_mille().map_or_else(
        || "-".to_string(),
        |tenths| format!("{}.{} %", tenths / 10, tenths % 10),
    )
}

pub fn day(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}

/// The level in text output: the JSON word, and for an overage plan past its limit (which
/// keeps recording and bills the extra) the same word with "(overage)", as the dashboard
/// writes "■ HARD CAP (overage)".
/// "plan missing" when the customer's plan is gone from plans.toml.
pub fn level(check: &UsageCheck) -> String {
    if check.plan_missing {
        return "plan missing".to_string();
    }
    match (check.level, check.overage_rate) {
        (crate::billing::WarningLevel::HardCap, Some(_)) => "hard_cap (overage)".to_string(),
        (level, _) => level.as_str().to_string(),
    }
}

/// "acme  plan pro  period 2026-11-05 .. 2026-12-05".
fn period_line(check: &UsageCheck) -> String {
    format!(
        "{}  plan {}  period {} .. {}",
        sanitize(&check.customer),
        sanitize(&check.plan),
        day(check.period_start),
        day(check.period_end),
    )
}

/// "used 85,000 / 100,000 (85.0 %)  level warning  allowed".
fn standing(check: &UsageCheck) -> String {
    format!(
        "used {} ({})  level {}  {}",
        used_of_limit(check),
        percent(check),
        level(check),
        if check.allowed {
            "allowed"
        } else if check.level == crate::billing::WarningLevel::HardCap {
            "BLOCKED (hard cap reached)"
        } else {
            "BLOCKED (a window limit is full)"
        },
    )
}

/// "overage 500 units x $0.002 = $1.00", for terms with an overage rate.
fn overage(check: &UsageCheck, currency: &str) -> Option<String> {
    let rate = check.overage_rate?;
    let money = |amount| crate::billing::money(amount, currency);
    let units = thousands(check.overage_units);
    // Priced per group (`rates`): each unit at its group's rate, not one rate for all.
    if check.priced_per_group() {
        return Some(format!(
            "overage {units} units = {} at each group's rate",
            money(check.overage_amount)
        ));
    }
    Some(format!(
        "overage {units} units x {} = {}",
        money(rate),
        money(check.overage_amount)
    ))
}

/// "credits paid 2,000,000 units ($4.00)": what prepaid credits paid of the units past the
/// limit (they are not in the overage), when they paid any.
fn credited(check: &UsageCheck, currency: &str) -> Option<String> {
    if check.credited_units == 0 {
        return None;
    }
    let mut paid = format!("credits paid {} units", thousands(check.credited_units));
    if !check.credited_amount.is_zero() {
        let money = crate::billing::money(check.credited_amount, currency);
        paid.push_str(&format!(" ({money})"));
    }
    Some(paid)
}

/// What a check says of its units past the limit: the overage billed and what credits paid.
fn past_the_limit(check: &UsageCheck, currency: &str) -> impl Iterator<Item = String> {
    [overage(check, currency), credited(check, currency)]
        .into_iter()
        .flatten()
}

/// An amount as people read it: money in the plans' currency, or a meter's units.
pub fn shown(config: Option<&crate::Config>, meter: Option<&str>, amount: Decimal) -> String {
    match (meter, config) {
        (Some(meter), _) => {
            let whole = amount.normalize();
            let number = match i64::try_from(whole) {
                Ok(units) if whole.scale() == 0 => thousands(units),
                _ => whole.to_string(),
            };
            format!("{number} {}", sanitize(meter))
        }
        (None, Some(config)) => config.money(amount),
        (None, None) => amount.to_string(),
    }
}

/// "balance $10.00, held $2.50, available $7.50", in money or (`meter`) its units.
pub fn credit_amounts(config: Option<&crate::Config>, meter: Option<&str>, a: &Amounts) -> String {
    let shown = |amount| shown(config, meter, amount);
    format!(
        "balance {}, held {}, available {}",
        shown(a.balance),
        shown(a.held),
        shown(a.available)
    )
}

/// The customer's credits under a check, a line for its money and one per meter with unit
/// credits; nothing for a customer without any.
pub fn describe_credits(all: &MeteredCheck, config: &crate::Config) -> String {
    let mut out = String::new();
    if all.credits.money != Amounts::default() {
        let line = credit_amounts(Some(config), None, &all.credits.money);
        out.push_str(&format!("credits: {line}\n"));
    }
    for m in &all.meters {
        if let Some(units) = m.credits.filter(|a| *a != Amounts::default()) {
            let line = credit_amounts(Some(config), Some(&m.meter), &units);
            out.push_str(&format!("{} credits: {line}\n", sanitize(&m.meter)));
        }
    }
    out
}

/// `check` without `--meter` on a plans.toml with `[[meters]]`: the period once, a line per
/// meter (its standing, and its overage where the plan bills one), then the overage of all.
pub fn describe_meters(
    all: &MeteredCheck,
    currency: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let width = all
        .meters
        .iter()
        .map(|m| m.meter.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = format!("{}\n", period_line(&all.check));
    for m in &all.meters {
        let c = &m.check;
        out.push_str(&format!("{:<width$}  {}", sanitize(&m.meter), standing(c)));
        for part in past_the_limit(c, currency) {
            out.push_str(&format!("  {part}"));
        }
        out.push('\n');
        out.push_str(&describe_windows(&m.meter, &m.windows, now));
    }
    out.push_str(&format!(
        "overage total {}\n",
        crate::billing::money(all.overage_total, currency)
    ));
    out
}

/// The standing of each meter an event of a type fed, as `describe_meters` shows a check.
pub fn describe_fed(
    config: &crate::Config,
    fed: &[meterline_core::FedMeter],
    currency: &str,
) -> String {
    let checks = fed
        .iter()
        .map(|m| meterline_core::MeterCheck {
            meter: m.meter.clone(),
            aggregation: config
                .meter(&m.meter)
                .map_or(crate::config::Aggregation::Sum, |meter| meter.aggregation),
            check: m.check.clone(),
            groups: Vec::new(),
            credits: None,
            windows: Vec::new(),
        })
        .collect();
    // An event's answer carries no windows, so the instant is never read.
    MeteredCheck::new(checks).map_or_else(String::new, |all| {
        describe_meters(&all, currency, chrono::DateTime::UNIX_EPOCH)
    })
}

/// The multi-line human summary of one check.
/// Money in `currency` (plans.toml's `[billing] currency`).
pub fn describe(check: &UsageCheck, currency: &str) -> String {
    let mut out = format!("{}\n{}\n", period_line(check), standing(check));
    if let Some(remaining) = check.remaining {
        out.push_str(&format!("remaining {}\n", thousands(remaining)));
    }
    for part in past_the_limit(check, currency) {
        out.push_str(&format!("{part}\n"));
    }
    out
}

/// One window of `meter` in words, as of `now`: "tokens: 1,000,000 of 1,000,000 in the last
/// 5 h; 120,000 free up at 14:32 UTC", or for a fixed window "…in this 7 d window; resets at
/// 2026-12-14 00:00 UTC".
pub fn describe_window(
    meter: &str,
    window: &meterline_core::WindowUsage,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let span = spaced(&window.window);
    let used = format!(
        "{}: {} of {}",
        sanitize(meter),
        thousands(window.used),
        thousands(window.limit)
    );
    let alert_only = if window.at_limit == crate::config::LimitAction::Alert {
        " (alerts only)"
    } else {
        ""
    };
    match window.kind {
        crate::config::WindowKind::Sliding => {
            let frees = match (&window.frees_at, window.frees_units) {
                (Some(at), Some(units)) => {
                    format!("; {} free up at {}", thousands(units), clock(at, now))
                }
                _ => String::new(),
            };
            format!("{used} in the last {span}{alert_only}{frees}")
        }
        crate::config::WindowKind::Fixed => {
            let resets = window.resets_at.as_deref().map_or(String::new(), |at| {
                format!("; resets at {}", clock(at, now))
            });
            format!("{used} in this {span} window{alert_only}{resets}")
        }
    }
}

/// "5h" as "5 h".
pub fn spaced(window: &str) -> String {
    let split = window
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(window.len());
    format!("{} {}", &window[..split], &window[split..])
}

/// A stored instant as a reader wants it: the time alone today, else the date too.
fn clock(at: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    match crate::billing::parse_ts(at) {
        Ok(at) if at.date_naive() == now.date_naive() => at.format("%H:%M UTC").to_string(),
        Ok(at) => at.format("%Y-%m-%d %H:%M UTC").to_string(),
        Err(_) => sanitize(at).into_owned(),
    }
}

/// Why a window refused an event of `units` for `customer`, and when it would fit.
pub fn window_refusal(
    customer: &str,
    units: i64,
    refusal: &meterline_core::WindowRefusal,
) -> String {
    let span = spaced(&refusal.window);
    let kind = match refusal.kind {
        crate::config::WindowKind::Sliding => format!("in the last {span}"),
        crate::config::WindowKind::Fixed => format!("in this {span} window"),
    };
    let retry = match refusal.retry_after {
        Some(secs) => format!(
            "; it fits in {}",
            humantime::format_duration(std::time::Duration::from_secs(secs.unsigned_abs()))
        ),
        None => String::new(),
    };
    format!(
        "{}: {} more would pass {}'s limit of {} {kind} ({} used){retry}",
        sanitize(&refusal.meter),
        thousands(units),
        sanitize(customer),
        thousands(refusal.limit),
        thousands(refusal.used),
    )
}

/// Each window line of `windows`, indented, one per line.
pub fn describe_windows(
    meter: &str,
    windows: &[meterline_core::WindowUsage],
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    windows
        .iter()
        .map(|w| format!("  {}\n", describe_window(meter, w, now)))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_groups_digits() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(1000), "1,000");
        assert_eq!(super::thousands(-1234567), "-1,234,567");
    }

    #[test]
    fn describe_writes_overage_money_with_the_currency() {
        use std::str::FromStr;
        let at = chrono::DateTime::from_timestamp(1_780_000_000, 0).unwrap();
        let check = crate::billing::UsageCheck {
            customer: "acme".into(),
            plan: "pro".into(),
            period_start: at,
            period_end: at,
            used: 12,
            limit: Some(10),
            remaining: Some(0),
            ratio: Some(1.2),
            level: crate::billing::WarningLevel::HardCap,
            allowed: true,
            overage_units: 2,
            overage_rate: Some(rust_decimal::Decimal::from_str("0.5").unwrap()),
            overage_amount: rust_decimal::Decimal::from_str("1").unwrap(),
            credited_units: 0,
            credited_amount: rust_decimal::Decimal::ZERO,
            plan_missing: false,
        };
        let text = super::describe(&check, "eur");
        assert!(
            text.contains("overage 2 units x 0.50 EUR = 1.00 EUR"),
            "{text}"
        );
        assert!(super::describe(&check, "usd").contains("x $0.50 = $1.00"));
    }
}
