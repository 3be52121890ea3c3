//! A multi-meter plans.toml for the HTTP and drop-in route tests, and reads of the meter
//! tables.

use super::cli::{Dump, Scratch};
use super::engine::Engine;

/// An AI API with small caps (tests/fixtures/plans/ai_capped.toml): requests counted and
/// capped (Stripe event `api_requests`), tokens summed by model with overage (`ai_tokens`),
/// credits summed from the quantity (`credits_used`), active users counted once each and
/// capped. free: 3 requests, 2 users; pro: 1,000 requests.
pub const PLANS: &str = super::common::AI_CAPPED_PLANS;

/// A scratch database on `engine` on [`PLANS`] with acme (pro) and capped (free).
pub fn scratch(engine: Engine) -> Scratch {
    let s = Scratch::on(engine);
    std::fs::write(&s.plans, PLANS).unwrap();
    s.add_customer("acme", "pro", "2026-11-01");
    s.add_customer("capped", "free", "2026-11-01");
    s
}

/// `used` of one meter in the customer's current period, as `check --meter` reads it.
pub fn meter_used(s: &Scratch, customer: &str, meter: &str) -> i64 {
    s.json(&["check", customer, "--meter", meter, "--json"])["used"]
        .as_i64()
        .unwrap()
}

/// Every row of the meterline tables and of the meter tables: equal before and after means
/// nothing was written.
pub fn dump_all(s: &Scratch) -> (Dump, Vec<String>) {
    let db = s.inspect();
    let mut rows = Vec::new();
    for (table, order) in [
        ("meter_counters", "1, 2, 3, 4"),
        ("meter_values", "1, 2, 3, 4"),
    ] {
        rows.extend(
            db.rows(&format!("SELECT * FROM {table} ORDER BY {order}"))
                .into_iter()
                .map(|cells| format!("{table}: {}", cells.join("|"))),
        );
    }
    (s.dump(), rows)
}

/// (meter_id, properties) of the event stored under `key`.
pub fn stored_event(s: &Scratch, key: &str) -> (String, Option<String>) {
    let rows = s.inspect().rows(&format!(
        "SELECT meter_id, properties FROM usage_events WHERE idempotency_key = '{key}'"
    ));
    let row = rows
        .first()
        .unwrap_or_else(|| panic!("no event with key {key}"));
    (
        row[0].clone(),
        Some(row[1].clone()).filter(|p| !p.is_empty()),
    )
}
