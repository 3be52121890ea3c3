//! Shared text formatting for the human-readable outputs.

use std::process::ExitCode;

use serde::Serialize;

use crate::Result;
use crate::billing::UsageCheck;

/// Print a value as one line of JSON.
pub fn print_json<T: Serialize>(value: &T) -> Result<ExitCode> {
    println!(
        "{}",
        serde_json::to_string(value).expect("our types always serialize")
    );
    Ok(ExitCode::SUCCESS)
}

/// 1234567 -> "1,234,567".
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// "85,000 / 100,000" or "85,000 / unlimited".
pub fn used_of_limit(check: &UsageCheck) -> String {
    match check.limit {
        Some(limit) => format!("{} / {}", thousands(check.used), thousands(limit)),
        None => format!("{} / unlimited", thousands(check.used)),
    }
}

/// "85.0 %" or "-" for unlimited plans.
pub fn percent(check: &UsageCheck) -> String {
    check
        .ratio
        .map_or_else(|| "-".to_string(), |r| format!("{:.1} %", r * 100.0))
}

pub fn day(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}

/// The multi-line human summary of one check.
/// The level column: "plan missing" when the customer's plan is gone from plans.toml.
pub fn level(check: &UsageCheck) -> &'static str {
    if check.plan_missing {
        "plan missing"
    } else {
        check.level.as_str()
    }
}

pub fn describe(check: &UsageCheck) -> String {
    let mut out = format!(
        "{}  plan {}  period {} .. {}\nused {} ({})  level {}  {}\n",
        check.customer,
        check.plan,
        day(check.period_start),
        day(check.period_end),
        used_of_limit(check),
        percent(check),
        check.level.as_str(),
        if check.allowed {
            "allowed"
        } else {
            "BLOCKED (hard cap reached)"
        },
    );
    if let Some(remaining) = check.remaining {
        out.push_str(&format!("remaining {}\n", thousands(remaining)));
    }
    if let Some(rate) = check.overage_rate {
        out.push_str(&format!(
            "overage {} units x {} = {}\n",
            thousands(check.overage_units),
            rate,
            check.overage_amount
        ));
    }
    out
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
}
