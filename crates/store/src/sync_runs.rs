//! The sync's run records (`sync_runs`) under its lock (`sync_lock`, a [`RunLock`]: one sync
//! per database at a time, with takeover from dead processes): begin, heartbeat, finish, last.

use crate::db::{OptionalExtension, params};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::lock::{LockHolder, LockState, RunLock};
use crate::{Error, Result};

/// One sync run as recorded in `sync_runs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncRun {
    pub id: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// running, completed, incomplete, cancelled, aborted or interrupted.
    pub outcome: String,
    pub attempted: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub failed: u64,
    pub expired: u64,
    pub unmapped: u64,
    pub remaining: u64,
    pub error: Option<String>,
}

/// The sync's lock and run tables.
const SYNC_LOCK: RunLock = RunLock {
    lock: "sync_lock",
    runs: "sync_runs",
    mark_interrupted: "UPDATE sync_runs SET outcome = 'interrupted',
             error = 'the process stopped without finishing (killed or crashed); \
                      the next run completed its work'
         WHERE id = ?1 AND finished_at IS NULL",
};

/// Sync runs under the sync lock; serves the Stripe sync, the dashboard header and `status`
/// (`doctor` sees the lock through `doctor.rs`).
impl super::Store {
    /// Take the sync lock and open a run record. A lock held by a live process is refused with
    /// a message naming it; a lock left by a dead process (kill -9, crash, reboot) is taken
    /// over and its run marked `interrupted`.
    pub fn begin_sync_run(
        &mut self,
        holder: &LockHolder,
        started_at: DateTime<Utc>,
    ) -> Result<i64> {
        SYNC_LOCK
            .begin(&mut self.conn, holder, started_at)?
            .map_err(|held| {
                Error::SyncRunning(format!(
                    "another sync is already running ({held}); \
                     it holds the database's sync lock, so this one sends nothing. \
                     Wait for it to finish and run again"
                ))
            })
    }

    /// Tell other processes this run is alive.
    pub fn sync_heartbeat(&self, run_id: i64) -> Result<()> {
        SYNC_LOCK.heartbeat(&self.conn, run_id)
    }

    /// Close the run record and release the lock, in one transaction.
    pub fn finish_sync_run(&mut self, run: &SyncRun) -> Result<()> {
        SYNC_LOCK.finish(&mut self.conn, run.id, |conn| {
            conn.execute(
                "UPDATE sync_runs SET finished_at = ?2, outcome = ?3, attempted = ?4, accepted = ?5,
                     duplicates = ?6, failed = ?7, expired = ?8, unmapped = ?9, remaining = ?10,
                     error = ?11
                 WHERE id = ?1",
                params![
                    run.id,
                    run.finished_at,
                    run.outcome,
                    run.attempted as i64,
                    run.accepted as i64,
                    run.duplicates as i64,
                    run.failed as i64,
                    run.expired as i64,
                    run.unmapped as i64,
                    run.remaining as i64,
                    run.error
                ],
            )?;
            Ok(())
        })
    }

    /// Who holds the sync lock now, if anyone (`doctor`).
    pub(crate) fn sync_lock_state(&self) -> Result<Option<LockState>> {
        SYNC_LOCK.state(&self.conn)
    }

    /// The most recent sync run, finished or not.
    pub fn last_sync_run(&self) -> Result<Option<SyncRun>> {
        self.conn
            .query_row(
                "SELECT id, started_at, finished_at, outcome, attempted, accepted, duplicates,
                        failed, expired, unmapped, remaining, error
                 FROM sync_runs ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    let count = |i: usize| r.get::<_, i64>(i).map(|n| n as u64);
                    Ok(SyncRun {
                        id: r.get(0)?,
                        started_at: r.get(1)?,
                        finished_at: r.get(2)?,
                        outcome: r.get(3)?,
                        attempted: count(4)?,
                        accepted: count(5)?,
                        duplicates: count(6)?,
                        failed: count(7)?,
                        expired: count(8)?,
                        unmapped: count(9)?,
                        remaining: count(10)?,
                        error: r.get(11)?,
                    })
                },
            )
            .optional()
    }
}
