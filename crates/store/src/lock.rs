//! The one lock type: one run at a time per database, as a single-row lock table naming its
//! holder (a process on a host) beside a table of run records. A lock left by a dead process is
//! taken over; a live run keeps it fresh with a heartbeat. The sync (`sync_runs.rs`) and the
//! alert delivery (`alerts/runs.rs`) each have one, over their own tables.
//!
//! Where the engine keeps session locks (`Connection::try_session_lock`: PostgreSQL's session
//! advisory locks) the holder also keeps one, keyed by the lock table's name, on its
//! connection. The server drops it the moment that process or host dies, so a run on another
//! host takes over at once instead of waiting for the heartbeat to go stale. Session locks need
//! a session of one's own: behind PgBouncer, point `sync` and `alerts` at a session-mode pool
//! or the server itself.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::db::{Behavior, Connection, OptionalExtension, SessionLock, params};

use crate::Result;
use crate::billing::format_ts;

/// Who holds a run lock: a process on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    /// The host name, as the holder's machine reports it.
    pub host: String,
    /// The holder's process id on that host.
    pub pid: u32,
}

impl LockHolder {
    /// This process on this host.
    pub fn this_process() -> LockHolder {
        LockHolder {
            host: host_name(),
            pid: std::process::id(),
        }
    }
}

/// How long a run waits for the row of a holder that took the lock a moment ago: longer than
/// the busy timeout its row's write may wait for the writers' lock.
const HOLDER_ROW_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// A lock whose heartbeat is older than this belongs to a dead or hung run.
pub const LOCK_STALE_AFTER_SECS: i64 = 60;

/// A held lock as `doctor` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockState {
    /// The holder's host.
    pub host: String,
    /// The holder's process id.
    pub pid: i64,
    /// When the holder took the lock (RFC3339 UTC).
    pub acquired_at: String,
    /// Seconds since the holder's last heartbeat; past `LOCK_STALE_AFTER_SECS` it is dead.
    pub heartbeat_age_secs: i64,
}

/// Who holds a run lock another run wanted, as that run's refusal names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Held {
    /// The holder, and when it took the lock.
    By(LockHolder, String),
    /// A run that took the lock a moment ago and has not written its row yet.
    Unnamed,
}

impl std::fmt::Display for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Held::By(holder, acquired_at) => write!(
                f,
                "pid {} on {}, started {acquired_at}",
                holder.pid, holder.host
            ),
            Held::Unnamed => f.write_str("started a moment ago, its process not named yet"),
        }
    }
}

/// One run at a time per database: a single-row lock table naming its holder and a table of
/// run records.
pub(crate) struct RunLock {
    /// The lock table (one row, `id = 1`, while a run holds it).
    pub lock: &'static str,
    /// The run records.
    pub runs: &'static str,
    /// How a run whose process died is closed when its lock is taken over.
    pub mark_interrupted: &'static str,
}

impl RunLock {
    /// Take the lock and open a run record, in one transaction: the new run's id, or who
    /// holds the lock (and since when) if that process is alive. A lock left by a dead
    /// process is taken over and its run marked interrupted.
    pub(crate) fn begin(
        &self,
        conn: &mut Connection,
        holder: &LockHolder,
        started_at: DateTime<Utc>,
    ) -> Result<std::result::Result<i64, Held>> {
        let session = match self.session_lock(conn)? {
            Ok(session) => session,
            Err(held) => return Ok(Err(held)),
        };
        let begun = self.take_row(conn, holder, started_at, session);
        if session == SessionLock::Taken && !matches!(begun, Ok(Ok(_))) {
            conn.release_session_lock(self.lock)?;
        }
        begun
    }

    /// The row half of `begin`. With the session lock taken, a row already there was left by
    /// a process that died.
    fn take_row(
        &self,
        conn: &mut Connection,
        holder: &LockHolder,
        started_at: DateTime<Utc>,
        session: SessionLock,
    ) -> Result<std::result::Result<i64, Held>> {
        let tx = conn.transaction_with_behavior(Behavior::Immediate)?;
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
            if session != SessionLock::Taken && lock_is_live(&other, heartbeat) {
                return Ok(Err(Held::By(other, acquired_at)));
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
    pub(crate) fn heartbeat(&self, conn: &Connection, run_id: i64) -> Result<()> {
        conn.execute(
            &format!(
                "UPDATE {} SET heartbeat = ?2 WHERE id = 1 AND run_id = ?1",
                self.lock
            ),
            params![run_id, unix_now()],
        )?;
        Ok(())
    }

    /// Close run `run_id`: `close` writes its record, then the lock is released, in one
    /// IMMEDIATE transaction.
    pub(crate) fn finish(
        &self,
        conn: &mut Connection,
        run_id: i64,
        close: impl FnOnce(&Connection) -> Result<()>,
    ) -> Result<()> {
        let tx = conn.transaction_with_behavior(Behavior::Immediate)?;
        close(&tx)?;
        tx.execute(
            &format!("DELETE FROM {} WHERE id = 1 AND run_id = ?1", self.lock),
            [run_id],
        )?;
        tx.commit()?;
        conn.release_session_lock(self.lock)
    }

    /// Take the session lock, where the engine keeps them; `Err(holder)` when a live process
    /// holds it.
    ///
    /// Its holder writes its row just after taking it, in a write transaction that may wait
    /// for the writers' lock: a run starting at the same moment can find the session lock
    /// held and no row yet. It waits for the row, the lock's release (then takes it), or
    /// [`HOLDER_ROW_WAIT`], whichever comes first.
    fn session_lock(&self, conn: &Connection) -> Result<std::result::Result<SessionLock, Held>> {
        let deadline = std::time::Instant::now() + HOLDER_ROW_WAIT;
        loop {
            let session = conn.try_session_lock(self.lock)?;
            if session != SessionLock::HeldElsewhere {
                return Ok(Ok(session));
            }
            if let Some(state) = self.state(conn)? {
                let holder = LockHolder {
                    host: state.host,
                    pid: state.pid as u32,
                };
                return Ok(Err(Held::By(holder, state.acquired_at)));
            }
            if std::time::Instant::now() >= deadline {
                return Ok(Err(Held::Unnamed));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Who holds the lock now, if anyone, and how fresh its heartbeat is.
    pub(crate) fn state(&self, conn: &Connection) -> Result<Option<LockState>> {
        conn.prepare(&format!(
            "SELECT host, pid, acquired_at, ?1 - heartbeat FROM {}",
            self.lock
        ))?
        .query_map([unix_now()], |r| {
            Ok(LockState {
                host: r.get(0)?,
                pid: r.get(1)?,
                acquired_at: r.get(2)?,
                heartbeat_age_secs: r.get(3)?,
            })
        })?
        .next()
        .transpose()
    }
}

fn unix_now() -> i64 {
    Utc::now().timestamp()
}

/// A lock is live while its heartbeat is fresh and, when the holder is on this host, its
/// process still exists. A process killed with -9 frees the lock at once on the same host.
fn lock_is_live(holder: &LockHolder, heartbeat: i64) -> bool {
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

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}
