//! Demo-only writes: make a freshly generated demo database look like it has been synced.

use crate::db::{Connection, Param};

/// Events marked reported per UPDATE (two parameters each).
const SETTLED_PER_UPDATE: usize = 500;

/// Demo-only writes; serves `store::demo::fill`.
impl super::Store {
    /// Demo data: usage of mapped customers older than two hours counts as reported a few
    /// minutes after it happened; a few recent events of one customer failed. Returns how many
    /// events remain unreported.
    pub(crate) fn settle_demo_reporting(
        &mut self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> crate::Result<u64> {
        let cutoff = crate::billing::format_ts(now - chrono::Duration::hours(2));
        let tx = self.conn.transaction()?;
        let settled: Vec<(i64, String)> = tx
            .prepare(
                "SELECT id, occurred_at FROM usage_events
                 WHERE occurred_at < ?1 AND customer_id IN
                     (SELECT id FROM customers WHERE stripe_customer_id IS NOT NULL)",
            )?
            .query_map([&cutoff], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<crate::Result<_>>()?;
        for chunk in settled.chunks(SETTLED_PER_UPDATE) {
            mark_reported(&tx, chunk)?;
        }
        tx.execute(
            "UPDATE usage_events
             SET stripe_attempts = 1,
                 stripe_error = 'No such customer: ''' || (SELECT stripe_customer_id FROM customers c
                                WHERE c.id = usage_events.customer_id) || '''',
                 stripe_failed_at = ?1
             WHERE id IN (SELECT e.id FROM usage_events e JOIN customers c ON c.id = e.customer_id
                          WHERE e.stripe_reported_at IS NULL AND c.stripe_customer_id IS NOT NULL
                          ORDER BY c.id LIMIT 3)",
            [crate::billing::format_ts(now)],
        )?;
        let unreported: i64 = tx.query_row(
            "SELECT COUNT(*) FROM usage_events WHERE stripe_reported_at IS NULL",
            [],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok(unreported as u64)
    }
}

/// Mark `events` (id, occurred_at) reported 4 minutes after each happened. The time is
/// computed here, not in SQL, so both engines run the one statement: they spell date
/// arithmetic differently.
fn mark_reported(conn: &Connection, events: &[(i64, String)]) -> crate::Result<()> {
    let reported_at = events
        .iter()
        .map(|(_, occurred_at)| {
            let at = crate::billing::parse_ts(occurred_at).map_err(|e| {
                crate::Error::Corrupt(format!("usage_events.occurred_at {occurred_at}: {e}"))
            })?;
            Ok(crate::billing::format_ts(at + chrono::Duration::minutes(4)))
        })
        .collect::<crate::Result<Vec<String>>>()?;
    let mut values: Vec<&dyn Param> = Vec::with_capacity(events.len() * 2);
    for ((id, _), at) in events.iter().zip(&reported_at) {
        values.extend_from_slice(&[id as &dyn Param, at]);
    }
    // A VALUES list's columns are column1, column2 on both engines.
    let rows = vec!["(?, ?)"; events.len()].join(", ");
    conn.prepare(&format!(
        "UPDATE usage_events SET stripe_reported_at = v.column2, stripe_attempts = 1
         FROM (VALUES {rows}) AS v WHERE usage_events.id = v.column1"
    ))?
    .execute(values.as_slice())?;
    Ok(())
}
