//! A running sum of one stretch of a meter's time line, moved forward as a batch's events
//! move forward: a backfill's next event shifts a sliding window by a second, which costs the
//! seconds that leave it (read ahead from the buckets in growing chunks) and the batch's own
//! points that enter or leave, never a new sum over the whole window.

use std::collections::VecDeque;

use super::{Line, buckets};
use crate::Result;

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

impl Tally {
    /// [from, to) summed afresh: one query.
    pub(super) fn new(line: &Line<'_>, from: i64, to: i64) -> Result<Tally> {
        let stored = buckets::sum(line.conn, line.customer, line.meter, from, to)?;
        Ok(Tally::read(line, (from, to), stored, (Vec::new(), from)))
    }

    /// [from, to) whose `stored` units were read already, with the stored seconds from
    /// `from` to `ahead_to` (`ahead`, in order) read ahead.
    pub(super) fn read(
        line: &Line<'_>,
        (from, to): (i64, i64),
        stored: i64,
        (ahead, ahead_to): (Vec<(i64, i64)>, i64),
    ) -> Tally {
        Tally {
            from,
            to,
            stored,
            beside: line.beside_sum(from, to),
            ahead: ahead.into(),
            ahead_to,
            chunk: FIRST_CHUNK,
        }
    }

    pub(super) fn units(&self) -> i64 {
        self.stored.saturating_add(self.beside)
    }

    pub(super) fn is(&self, from: i64, to: i64) -> bool {
        (self.from, self.to) == (from, to)
    }

    /// True when it can move to [from, to) without a new sum: forward only, to a stretch
    /// that overlaps it (else a new sum reads less), and with nothing stored past its end
    /// (so what enters from the database is nothing).
    pub(super) fn can_move_to(&self, from: i64, to: i64, latest: Option<i64>) -> bool {
        self.from <= from && from < self.to && self.to <= to && latest < Some(self.to)
    }

    /// Move to [from, to) (`can_move_to` said it may), reading ahead at least to `reach`
    /// (where the batch will take it), never past its end (nothing is stored there).
    pub(super) fn move_to(
        &mut self,
        line: &Line<'_>,
        from: i64,
        to: i64,
        reach: i64,
    ) -> Result<()> {
        while self.ahead_to < from {
            let until = from
                .max(self.ahead_to.saturating_add(self.chunk))
                .max(reach.min(self.to));
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
