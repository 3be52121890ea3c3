//! The running counters of one record batch for every meter but `usage` (whose total is
//! usage_records.used, see `counters`). Each row is read once, decided on in memory while the
//! batch holds the write lock, and written once at the end: a refused event changes nothing.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use crate::db::{Connection, OptionalExtension, params};
use chrono::{DateTime, Utc};

use crate::billing::{format_ts, parse_ts};
use crate::config::{Aggregation, AtLimit, Meter, MeterTerms};
use crate::{Error, Result};
use meterline_core::metering::MeterValue;

/// customer × period start × meter × group ('' = the meter's total).
type Key = (String, String, String, String);

struct Row {
    used: i64,
    /// latest: the time and id of the event whose value `used` is.
    latest: Option<(DateTime<Utc>, i64)>,
    dirty: bool,
}

/// What one event did to its meter's total.
pub(super) enum Applied {
    /// Counted: the total before and after.
    Counted { before: i64, after: i64 },
    /// Refused by the meter's hard cap; nothing changed.
    Refused { used: i64 },
}

#[derive(Default)]
pub(super) struct MeterCounters {
    rows: HashMap<Key, Row>,
    /// unique_count values this batch knows of, per row.
    values: HashMap<Key, DistinctValues>,
}

/// The distinct values of one unique_count row this batch has looked up or added.
#[derive(Default)]
struct DistinctValues {
    seen: HashSet<String>,
    /// Added by this batch, not yet written.
    unsaved: Vec<String>,
}

impl MeterCounters {
    /// Apply one event (id `event_id`, at `at`) to its meter's total and, if counted, its
    /// group. The cap is decided on the total, before anything changes.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn apply(
        &mut self,
        conn: &Connection,
        meter: &Meter,
        terms: Option<&MeterTerms>,
        customer: &str,
        period_start: &str,
        group: Option<&str>,
        value: &MeterValue,
        at: DateTime<Utc>,
        event_id: i64,
    ) -> Result<Applied> {
        let cap = terms
            .filter(|t| t.at_limit == AtLimit::Block)
            .and_then(|t| t.included);
        let total: Key = (
            customer.to_string(),
            period_start.to_string(),
            meter.id.clone(),
            String::new(),
        );
        let before = self.row(conn, &total)?.used;
        // max and latest refuse a value above the limit, whatever it would do to the total.
        if let (Aggregation::Max | Aggregation::Latest, MeterValue::Number(v)) =
            (meter.aggregation, value)
            && cap.is_some_and(|limit| *v > limit)
        {
            return Ok(Applied::Refused { used: before });
        }
        let Some(after) = self.next(conn, meter, &total, value, at, event_id)? else {
            return Ok(Applied::Counted {
                before,
                after: before,
            });
        };
        if cap.is_some_and(|limit| after > limit) {
            return Ok(Applied::Refused { used: before });
        }
        self.commit(&total, meter, value, after, at, event_id);
        if let Some(group) = group {
            let grouped: Key = (
                total.0.clone(),
                total.1.clone(),
                total.2.clone(),
                group.into(),
            );
            if let Some(next) = self.next(conn, meter, &grouped, value, at, event_id)? {
                self.commit(&grouped, meter, value, next, at, event_id);
            }
        }
        Ok(Applied::Counted { before, after })
    }

    /// The row's total after `value`, or `None` when the event leaves it as it is (a
    /// distinct value already seen, an older latest, a max not above the current).
    fn next(
        &mut self,
        conn: &Connection,
        meter: &Meter,
        key: &Key,
        value: &MeterValue,
        at: DateTime<Utc>,
        event_id: i64,
    ) -> Result<Option<i64>> {
        let row = self.row(conn, key)?;
        let (used, latest) = (row.used, row.latest);
        let overflow = || {
            Error::InvalidInput(format!(
                "the counter of meter \"{}\" would overflow; nothing recorded",
                meter.id
            ))
        };
        Ok(match (meter.aggregation, value) {
            (Aggregation::Sum | Aggregation::Count, MeterValue::Number(n)) => {
                Some(used.checked_add(*n).ok_or_else(overflow)?)
            }
            (Aggregation::Max, MeterValue::Number(v)) => (*v > used).then_some(*v),
            (Aggregation::Latest, MeterValue::Number(v)) => latest
                .is_none_or(|newest| (at, event_id) > newest)
                .then_some(*v),
            (Aggregation::UniqueCount, MeterValue::Distinct(text)) => {
                if self.seen(conn, key, text)? {
                    None
                } else {
                    Some(used.checked_add(1).ok_or_else(overflow)?)
                }
            }
            _ => {
                return Err(Error::InvalidInput(format!(
                    "meter \"{}\": the event's value does not fit its aggregation",
                    meter.id
                )));
            }
        })
    }

    fn commit(
        &mut self,
        key: &Key,
        meter: &Meter,
        value: &MeterValue,
        used: i64,
        at: DateTime<Utc>,
        event_id: i64,
    ) {
        if let MeterValue::Distinct(text) = value {
            let values = self.values.entry(key.clone()).or_default();
            values.seen.insert(text.clone());
            values.unsaved.push(text.clone());
        }
        if let Some(row) = self.rows.get_mut(key) {
            row.used = used;
            row.dirty = true;
            if meter.aggregation == Aggregation::Latest {
                row.latest = Some((at, event_id));
            }
        }
    }

    fn row(&mut self, conn: &Connection, key: &Key) -> Result<&mut Row> {
        // Looked up before `entry`, which would clone the key on every call.
        if self.rows.contains_key(key) {
            return self
                .rows
                .get_mut(key)
                .ok_or_else(|| Error::Database("meter counter vanished".into()));
        }
        let slot = match self.rows.entry(key.clone()) {
            Entry::Occupied(kept) => return Ok(kept.into_mut()),
            Entry::Vacant(slot) => slot,
        };
        let found: Option<(i64, Option<String>, Option<i64>)> = conn
            .prepare_cached(
                "SELECT used, latest_at, latest_id FROM meter_counters
                 WHERE customer_id = ?1 AND period_start = ?2 AND meter_id = ?3 AND group_key = ?4",
            )?
            .query_row(params![key.0, key.1, key.2, key.3], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        let row = match found {
            Some((used, at, id)) => Row {
                used,
                latest: match (at, id) {
                    (Some(at), Some(id)) => parse_ts(&at).ok().map(|at| (at, id)),
                    _ => None,
                },
                dirty: false,
            },
            None => Row {
                used: 0,
                latest: None,
                dirty: false,
            },
        };
        Ok(slot.insert(row))
    }

    /// True when this unique_count row has counted `text` already.
    fn seen(&mut self, conn: &Connection, key: &Key, text: &str) -> Result<bool> {
        if self.values.get(key).is_some_and(|v| v.seen.contains(text)) {
            return Ok(true);
        }
        let stored = conn
            .prepare_cached(
                "SELECT 1 FROM meter_values WHERE customer_id = ?1 AND period_start = ?2
                 AND meter_id = ?3 AND group_key = ?4 AND value = ?5",
            )?
            .exists(params![key.0, key.1, key.2, key.3, text])?;
        if stored {
            let values = self.values.entry(key.clone()).or_default();
            values.seen.insert(text.to_string());
        }
        Ok(stored)
    }

    /// Write every changed row and every new distinct value.
    pub(crate) fn flush(&mut self, conn: &Connection) -> Result<()> {
        for (key, row) in self.rows.iter_mut().filter(|(_, r)| r.dirty) {
            let (latest_at, latest_id) = match row.latest {
                Some((at, id)) => (Some(format_ts(at)), Some(id)),
                None => (None, None),
            };
            conn.prepare_cached(
                "INSERT INTO meter_counters
                     (customer_id, period_start, meter_id, group_key, used, latest_at, latest_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (customer_id, period_start, meter_id, group_key) DO UPDATE SET
                     used = excluded.used, latest_at = excluded.latest_at,
                     latest_id = excluded.latest_id",
            )?
            .execute(params![
                key.0, key.1, key.2, key.3, row.used, latest_at, latest_id
            ])?;
            row.dirty = false;
        }
        for (key, values) in &mut self.values {
            for value in values.unsaved.drain(..) {
                conn.prepare_cached(
                    "INSERT INTO meter_values
                         (customer_id, period_start, meter_id, group_key, value)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                )?
                .execute(params![key.0, key.1, key.2, key.3, value])?;
            }
        }
        Ok(())
    }
}
