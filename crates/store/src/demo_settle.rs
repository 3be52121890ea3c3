//! Demo-only writes: make a freshly generated demo database look like it has been synced.

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
        tx.execute(
            "UPDATE usage_events
             SET stripe_reported_at = strftime('%Y-%m-%dT%H:%M:%SZ', occurred_at, '+4 minutes'),
                 stripe_attempts = 1
             WHERE occurred_at < ?1 AND customer_id IN
                 (SELECT id FROM customers WHERE stripe_customer_id IS NOT NULL)",
            [&cutoff],
        )?;
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
