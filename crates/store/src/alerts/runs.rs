//! Delivery runs: one at a time per database under the alerts lock (a [`RunLock`] over
//! `alert_lock` and `alert_runs`), each closed with what it did.

use crate::db::params;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::billing::format_ts;
use crate::lock::{LockHolder, RunLock};
use crate::{Error, Result};

/// What a delivery run did, closed into `alert_runs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AlertRun {
    pub id: i64,
    pub outcome: String,
    pub attempted: u64,
    pub delivered: u64,
    pub retrying: u64,
    pub failed: u64,
}

const ALERT_LOCK: RunLock = RunLock {
    lock: "alert_lock",
    runs: "alert_runs",
    mark_interrupted: "UPDATE alert_runs SET outcome = 'interrupted'
         WHERE id = ?1 AND finished_at IS NULL",
};

/// Delivery runs and their lock; serves alert delivery (the alerts crate, `serve`).
impl crate::Store {
    /// Take the delivery lock and open a run record; as `begin_sync_run`, a lock left by a
    /// dead process is taken over.
    pub fn begin_alert_run(
        &mut self,
        holder: &LockHolder,
        started_at: DateTime<Utc>,
    ) -> Result<i64> {
        ALERT_LOCK
            .begin(&mut self.conn, holder, started_at)?
            .map_err(|held| {
                Error::AlertsRunning(format!(
                    "another alert delivery is already running ({held}); it holds the \
                     database's alerts lock, so this one sends nothing. Wait for it to finish \
                     and run again"
                ))
            })
    }

    /// Tell other processes this delivery run is alive.
    pub fn alert_heartbeat(&self, run_id: i64) -> Result<()> {
        ALERT_LOCK.heartbeat(&self.conn, run_id)
    }

    /// Close the run record and release the lock, in one transaction.
    pub fn finish_alert_run(&mut self, run: &AlertRun, at: DateTime<Utc>) -> Result<()> {
        ALERT_LOCK.finish(&mut self.conn, run.id, |conn| {
            conn.execute(
                "UPDATE alert_runs SET finished_at = ?2, outcome = ?3, attempted = ?4,
                     delivered = ?5, retrying = ?6, failed = ?7
                 WHERE id = ?1",
                params![
                    run.id,
                    format_ts(at),
                    run.outcome,
                    run.attempted as i64,
                    run.delivered as i64,
                    run.retrying as i64,
                    run.failed as i64
                ],
            )?;
            Ok(())
        })
    }
}
