//! The sync lock (one sync per database at a time, with takeover from dead processes) and the
//! record of sync runs.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use crate::billing::format_ts;
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

/// Who holds the sync lock: a process on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    pub host: String,
    pub pid: u32,
}

impl LockHolder {
    pub fn this_process() -> LockHolder {
        LockHolder {
            host: host_name(),
            pid: std::process::id(),
        }
    }
}

/// A lock whose heartbeat is older than this belongs to a dead or hung sync.
pub const LOCK_STALE_AFTER_SECS: i64 = 60;

/// One run at a time per database: a single-row lock table naming its holder and a table of
/// run records. The sync and the alert delivery each have one.
pub(super) struct RunLock {
    pub lock: &'static str,
    pub runs: &'static str,
    /// How a run whose process died is closed when its lock is taken over.
    pub mark_interrupted: &'static str,
}

pub(super) const SYNC_LOCK: RunLock = RunLock {
    lock: "sync_lock",
    runs: "sync_runs",
    mark_interrupted: "UPDATE sync_runs SET outcome = 'interrupted',
             error = 'the process stopped without finishing (killed or crashed); \
                      the next run completed its work'
         WHERE id = ?1 AND finished_at IS NULL",
};

impl RunLock {
    /// Take the lock and open a run record, in one transaction: the new run's id, or who
    /// holds the lock (and since when) if that process is alive. A lock left by a dead
    /// process is taken over and its run marked interrupted.
    pub(super) fn begin(
        &self,
        conn: &mut Connection,
        holder: &LockHolder,
        started_at: DateTime<Utc>,
    ) -> Result<std::result::Result<i64, (LockHolder, String)>> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: Option<(i64, String, u32, String, i64)> = tx
            .query_row(
                &format!(
                    "SELECT run_id, host, pid, acquired_at, heartbeat FROM {} WHERE id = 1",
                    self.lock
                ),
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        if let Some((run_id, host, pid, acquired_at, heartbeat)) = current {
            let other = LockHolder { host, pid };
            if lock_is_live(&other, heartbeat) {
                return Ok(Err((other, acquired_at)));
            }
            tx.execute(self.mark_interrupted, [run_id])?;
            tx.execute(&format!("DELETE FROM {} WHERE id = 1", self.lock), [])?;
        }
        let run_id: i64 = tx.query_row(
            &format!(
                "INSERT INTO {} (started_at, outcome) VALUES (?1, 'running') RETURNING id",
                self.runs
            ),
            [format_ts(started_at)],
            |r| r.get(0),
        )?;
        tx.execute(
            &format!(
                "INSERT INTO {} (id, run_id, host, pid, acquired_at, heartbeat)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5)",
                self.lock
            ),
            params![
                run_id,
                holder.host,
                holder.pid,
                format_ts(started_at),
                unix_now()
            ],
        )?;
        tx.commit()?;
        Ok(Ok(run_id))
    }

    /// Tell other processes the run is alive.
    pub(super) fn heartbeat(&self, conn: &Connection, run_id: i64) -> Result<()> {
        conn.execute(
            &format!(
                "UPDATE {} SET heartbeat = ?2 WHERE id = 1 AND run_id = ?1",
                self.lock
            ),
            params![run_id, unix_now()],
        )?;
        Ok(())
    }
}

pub(super) fn unix_now() -> i64 {
    Utc::now().timestamp()
}

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
            .map_err(|(other, acquired_at)| {
                Error::SyncRunning(format!(
                    "another sync is already running (pid {} on {}, started {acquired_at}); \
                     it holds the database's sync lock, so this one sends nothing. \
                     Wait for it to finish and run again",
                    other.pid, other.host
                ))
            })
    }

    /// Tell other processes this run is alive.
    pub fn sync_heartbeat(&self, run_id: i64) -> Result<()> {
        SYNC_LOCK.heartbeat(&self.conn, run_id)
    }

    /// Close the run record and release the lock, in one transaction.
    pub fn finish_sync_run(&mut self, run: &SyncRun) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
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
        tx.execute(
            "DELETE FROM sync_lock WHERE id = 1 AND run_id = ?1",
            [run.id],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The most recent sync run, finished or not.
    pub fn last_sync_run(&self) -> Result<Option<SyncRun>> {
        Ok(self
            .conn
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
            .optional()?)
    }
}

/// A lock is live while its heartbeat is fresh and, when the holder is on this host, its
/// process still exists. A process killed with -9 frees the lock at once on the same host.
pub(super) fn lock_is_live(holder: &LockHolder, heartbeat: i64) -> bool {
    if unix_now() - heartbeat > LOCK_STALE_AFTER_SECS {
        return false;
    }
    if holder.host == host_name() {
        return process_alive(holder.pid).unwrap_or(true);
    }
    true
}

/// `Some(alive)` where /proc tells (Linux); `None` elsewhere, and the heartbeat decides.
fn process_alive(pid: u32) -> Option<bool> {
    if !std::path::Path::new("/proc/self/stat").exists() {
        return None;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie (killed, not yet reaped by its parent) holds nothing.
        Ok(stat) => Some(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
                .is_some_and(|state| state != 'Z' && state != 'X'),
        ),
        Err(_) => Some(false),
    }
}

pub(super) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}
