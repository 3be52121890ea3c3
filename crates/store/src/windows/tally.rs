//! A running sum of one stretch of a meter's time line, moved forward as a batch's events
//! move forward: a backfill's next event shifts a sliding window by a second, which costs the
//! seconds that leave it (read ahead from the buckets in growing chunks) and the batch's own
//! points that enter or leave, never a new sum over the whole window.

use std::collections::{BTreeMap, VecDeque};

use super::buckets;
use crate::Result;
use crate::db::Connection;

/// The first read-ahead, in seconds; each next one is twice as long, up to `MAX_CHUNK`.
const FIRST_CHUNK: i64 = 64;
const MAX_CHUNK: i64 = 1 << 16;

/// The units in [from, to): what is stored, and what is kept beside it in memory.
pub(super) struct Tally {
    from: i64,
    to: i64,
    stored: i64,
    beside: i64,
    /// Stored seconds from `from` to `ahead_to`, read ahead for `from` to move over.
    ahead: VecDeque<(i64, i64)>,
    ahead_to: i64,
    chunk: i64,
}

/// Where a meter's database and memory points are, for a tally to read.
pub(super) struct Line<'a> {
    pub conn: &'a Connection,
    pub customer: &'a str,
    pub meter: &'a str,
    /// The batch's events and the live holds, each as units per second.
    pub beside: &'a [&'a BTreeMap<i64, i64>],
}

impl Line<'_> {
    fn beside_sum(&self, from: i64, to: i64) -> i64 {
        if from >= to {
            return 0;
        }
        self.beside
            .iter()
            .flat_map(|points| points.range(from..to).map(|(_, u)| *u))
            .fold(0, i64::saturating_add)
    }
}

impl Tally {
    /// [from, to) summed afresh: one query.
    pub(super) fn new(line: &Line<'_>, from: i64, to: i64) -> Result<Tally> {
        Ok(Tally {
            from,
            to,
            stored: buckets::sum(line.conn, line.customer, line.meter, from, to)?,
            beside: line.beside_sum(from, to),
            ahead: VecDeque::new(),
            ahead_to: from,
            chunk: FIRST_CHUNK,
        })
    }

    pub(super) fn units(&self) -> i64 {
        self.stored.saturating_add(self.beside)
    }

    pub(super) fn is(&self, from: i64, to: i64) -> bool {
        (self.from, self.to) == (from, to)
    }

    /// True when it can move to [from, to) without a new sum: forward only, and with
    /// nothing stored past its end (so what enters from the database is nothing).
    pub(super) fn can_move_to(&self, from: i64, to: i64, latest: Option<i64>) -> bool {
        self.from <= from && self.to <= to && latest < Some(self.to)
    }

    /// Move to [from, to) (`can_move_to` said it may).
    pub(super) fn move_to(&mut self, line: &Line<'_>, from: i64, to: i64) -> Result<()> {
        while self.ahead_to < from {
            let until = from.max(self.ahead_to.saturating_add(self.chunk));
            let read =
                buckets::seconds(line.conn, line.customer, line.meter, self.ahead_to, until)?;
            self.ahead.extend(read);
            self.ahead_to = until;
            self.chunk = (self.chunk * 2).min(MAX_CHUNK);
        }
        while let Some(&(at, units)) = self.ahead.front() {
            if at >= from {
                break;
            }
            self.stored = self.stored.saturating_sub(units);
            self.ahead.pop_front();
        }
        let left = line.beside_sum(self.from, from.min(self.to));
        let entered = line.beside_sum(self.to.max(from), to);
        self.beside = self.beside.saturating_sub(left).saturating_add(entered);
        (self.from, self.to) = (from, to);
        Ok(())
    }

    /// `units` kept beside the database at `at`: counted if the stretch holds it.
    pub(super) fn note(&mut self, at: i64, units: i64) {
        if (self.from..self.to).contains(&at) {
            self.beside = self.beside.saturating_add(units);
        }
    }
}
