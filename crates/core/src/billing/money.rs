//! Money as people read it: the currency and fixed decimals, exact (Decimal, never floats).
//! One formatter for the dashboard and the CLI's text output.

use rust_decimal::Decimal;

/// Currencies Stripe bills in whole units (no minor unit).
const ZERO_DECIMAL: &[&str] = &[
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];

/// How many decimals `currency` (lower-case ISO 4217) is written with.
fn decimals(currency: &str) -> u32 {
    if ZERO_DECIMAL.contains(&currency) {
        0
    } else {
        2
    }
}

/// "$1,234.50" for usd, "17.00 EUR" otherwise. Never rounded: an amount finer than the
/// currency's decimals (a rate of 0.0004 per unit) keeps its digits, so what is shown is exact.
pub fn money(amount: Decimal, currency: &str) -> String {
    let places = decimals(currency).max(amount.normalize().scale());
    let mut fixed = amount.abs();
    fixed.rescale(places);
    let text = fixed.to_string();
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let whole = group(whole);
    let number = if fraction.is_empty() {
        whole
    } else {
        format!("{whole}.{fraction}")
    };
    let sign = if amount.is_sign_negative() && !amount.is_zero() {
        "-"
    } else {
        ""
    };
    if currency == "usd" {
        format!("{sign}${number}")
    } else {
        format!("{sign}{number} {}", currency.to_ascii_uppercase())
    }
}

/// 1234567 -> "1,234,567": the one way counts are written (CLI text and the dashboard).
pub fn thousands(n: i64) -> String {
    let digits = group(&n.unsigned_abs().to_string());
    if n < 0 { format!("-{digits}") } else { digits }
}

/// A count with its noun agreeing: (1, "day") -> "1 day", (3, "day") -> "3 days",
/// (1_200, "event") -> "1,200 events". Nouns whose plural is not `+s` are not used with it.
pub fn count(n: i64, noun: &str) -> String {
    let s = if n == 1 { "" } else { "s" };
    format!("{} {noun}{s}", thousands(n))
}

/// "1234567" -> "1,234,567".
fn group(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len().saturating_add(digits.len() / 3));
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && digits.len().saturating_sub(i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use std::str::FromStr;

    use rust_decimal::Decimal;

    use super::{count, money};

    #[test]
    fn a_count_agrees_with_its_noun() {
        assert_eq!(count(1, "day"), "1 day");
        assert_eq!(count(0, "day"), "0 days");
        assert_eq!(count(1_200, "event"), "1,200 events");
    }

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn fixed_decimals_with_the_currency() {
        assert_eq!(money(d("17"), "usd"), "$17.00");
        assert_eq!(money(d("0.3"), "usd"), "$0.30");
        assert_eq!(money(d("1234567.5"), "usd"), "$1,234,567.50");
        assert_eq!(money(d("17"), "eur"), "17.00 EUR");
        assert_eq!(money(d("-2.5"), "usd"), "-$2.50");
        assert_eq!(money(d("0"), "usd"), "$0.00");
        assert_eq!(money(d("1500"), "jpy"), "1,500 JPY");
    }

    #[test]
    fn amounts_finer_than_cents_are_not_rounded() {
        assert_eq!(money(d("0.0004"), "usd"), "$0.0004");
        assert_eq!(money(d("0.0150"), "usd"), "$0.015");
        assert_eq!(money(d("12.3450"), "eur"), "12.345 EUR");
    }
}
