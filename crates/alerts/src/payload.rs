//! The alert JSON: the webhook body and the command's stdin. Built from the stored row, so
//! every attempt of one alert sends the same bytes.

use serde::Serialize;

use crate::store::Alert;

/// The `type` of every level crossing (a credit alert's is its level).
pub(crate) const TYPE: &str = "usage.level_crossed";
/// The `type` of a window limit's crossing.
pub(crate) const WINDOW_TYPE: &str = "usage.window_crossed";

#[derive(Serialize)]
struct Payload<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    customer: &'a str,
    plan: &'a str,
    meter: &'a str,
    /// A window's crossing: the limit ("5h sliding"); its window is period_start..period_end.
    #[serde(skip_serializing_if = "str::is_empty")]
    window: &'a str,
    level: &'a str,
    previous_level: &'a str,
    used: i64,
    limit: Option<i64>,
    ratio: Option<f64>,
    period_start: &'a str,
    period_end: &'a str,
    occurred_at: &'a str,
}

/// A credit alert: `credits.low` or `credits.exhausted` (its stored level).
#[derive(Serialize)]
struct CreditPayload<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    customer: &'a str,
    plan: &'a str,
    threshold: &'a str,
    available: &'a str,
    occurred_at: &'a str,
}

/// The JSON text of `alert`, one line.
#[allow(clippy::expect_used)] // invariant: strings, integers and an optional float always serialize
pub(crate) fn body(alert: &Alert) -> String {
    if let (Some(threshold), Some(available)) = (&alert.threshold, &alert.available) {
        return serde_json::to_string(&CreditPayload {
            id: &alert.id,
            kind: &alert.level,
            customer: &alert.customer,
            plan: &alert.plan,
            threshold,
            available,
            occurred_at: &alert.occurred_at,
        })
        .expect("plain fields serialize");
    }
    serde_json::to_string(&Payload {
        id: &alert.id,
        kind: if alert.window.is_empty() {
            TYPE
        } else {
            WINDOW_TYPE
        },
        customer: &alert.customer,
        plan: &alert.plan,
        meter: &alert.meter,
        window: &alert.window,
        level: &alert.level,
        previous_level: &alert.previous_level,
        used: alert.used,
        limit: alert.limit,
        ratio: alert.ratio,
        period_start: &alert.period_start,
        period_end: &alert.period_end,
        occurred_at: &alert.occurred_at,
    })
    .expect("plain fields serialize")
}
