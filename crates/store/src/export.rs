//! `meterline export`: events or per-period usage, streamed row by row in a stable column
//! order, for accounting and reports. Memory stays constant however many rows there are.

use std::borrow::Cow;

use crate::db::OwnedValue;
use chrono::{DateTime, Utc};

use super::Store;
use crate::billing::{Allowance, Period, Thresholds, UsageCheck, format_ts};
use crate::config::Config;
use crate::meters::standing::{Allocated, group_usage, priced, stored_amount};
use crate::{Error, Result};
use meterline_core::GroupUsage;

/// What `export` writes: usage events or per-period usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportKind {
    /// One row per usage event.
    Events,
    /// One row per customer × billing period, with the plan in force.
    Usage,
    /// One row per credit ledger entry, with its grant's terms.
    Credits,
}

impl ExportKind {
    /// The columns, in the order they are written. A stable contract: add at the end only.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            ExportKind::Events => &[
                "id",
                "customer_id",
                "user_id",
                "quantity",
                "occurred_at",
                "recorded_at",
                "period_start",
                "idempotency_key",
                "stripe_reported_at",
                "stripe_attempts",
                "stripe_error",
                "stripe_failed_at",
                "stripe_expired_at",
                "stripe_identifier",
                "meter_id",
                "properties",
                "amount",
                "event_type",
                "event_of",
            ],
            ExportKind::Usage => &[
                "customer_id",
                "period_start",
                "period_end",
                "used",
                "plan_id",
                "meter_event_name",
                "included",
                "at_limit",
                "overage_rate",
                "price",
                "meter_id",
                "overage_units",
                "overage_amount",
                "groups",
            ],
            ExportKind::Credits => &[
                "id",
                "customer_id",
                "grant_id",
                "kind",
                "amount",
                "remaining",
                "at",
                "meter_id",
                "priority",
                "effective_at",
                "expires_at",
                "promotional",
                "note",
                "idempotency_key",
                "event_id",
            ],
        }
    }

    /// The columns read from the source: the written ones, except that usage computes its
    /// money and groups (`UsageRows`) from each meter's counter rows, read after its columns.
    fn selected(self) -> Vec<&'static str> {
        match self {
            ExportKind::Events | ExportKind::Credits => self.columns().to_vec(),
            ExportKind::Usage => {
                let mut columns = self.columns()[..USAGE_READ].to_vec();
                columns.extend([
                    "group_key",
                    "allocated_units",
                    "allocated_amount",
                    "credited_units",
                    "credited_amount",
                ]);
                columns
            }
        }
    }

    /// The table, and the column the time filter and the order apply to.
    /// Without plans.toml (`config` None) the meters' Stripe events are unknown, and a
    /// period without any meter's total has no row.
    fn source(self, config: Option<&Config>) -> (String, &'static str) {
        match self {
            ExportKind::Events => ("usage_events".to_string(), "occurred_at"),
            ExportKind::Credits => (CREDIT_ROWS.to_string(), "at"),
            ExportKind::Usage => {
                let event_name = config.map_or("CAST(NULL AS TEXT)".to_string(), |c| {
                    crate::meters::stripe::StripeMeters::new(c).routed_event_name_sql("m.meter_id")
                });
                let default_meter = config.map(|c| c.default_meter().id.as_str());
                (usage_rows(&event_name, default_meter), "period_start")
            }
        }
    }
}

/// Every ledger entry with its grant's terms, under the export's column names.
const CREDIT_ROWS: &str = "(
    SELECT l.id, l.customer_id, l.grant_id, l.kind, l.amount, l.remaining, l.written_at AS at,
           g.meter_id, g.priority, g.effective_at, g.expires_at, g.promotional, g.note,
           g.idempotency_key, l.event_id
    FROM credit_ledger l JOIN credit_grants g ON g.id = l.grant_id
) AS credit_rows";

/// The usage columns read as they are; the rest (`overage_units`, `overage_amount`, `groups`)
/// are computed from the meter's counter rows.
const USAGE_READ: usize = 11;

/// One row per customer × period × meter × counter row: every meter's total and group rows
/// from meter_counters (the total row first in the export's order: its `group_key` is ''), with the
/// period's plan and price, the Stripe event the meter reports to (`event_name`, SQL over
/// `m.meter_id` and the period row `r`), and the terms for that meter the period keeps
/// (`meter_terms`, migration 11; NULL where the plan does not bill the meter). A period row
/// without any meter's total (a customer moved to another plan before any event) is a row of
/// the default meter at 0, when plans.toml says which that is.
fn usage_rows(event_name: &str, default_meter: Option<&str>) -> String {
    let terms =
        |field: &str| format!("json_extract(r.meter_terms, '$.\"' || m.meter_id || '\".{field}')");
    let empty_periods = default_meter.map_or(String::new(), |id| {
        format!(
            "UNION ALL
          SELECT customer_id, period_start, {}, 0, '', 0, '0', 0, '0' FROM usage_records u
          WHERE NOT EXISTS (SELECT 1 FROM meter_counters c
              WHERE c.customer_id = u.customer_id AND c.period_start = u.period_start)",
            crate::meters::stripe::literal(id)
        )
    });
    format!(
        "(
    SELECT m.customer_id, m.period_start, r.period_end, m.used, r.plan_id,
           {event_name} AS meter_event_name, CAST({} AS BIGINT) AS included, {} AS at_limit,
           {} AS overage_rate, r.price, m.meter_id, m.group_key,
           m.overage_units AS allocated_units, m.overage_amount AS allocated_amount,
           m.credited_units, m.credited_amount
    FROM (SELECT customer_id, period_start, meter_id, used, group_key, overage_units,
                 overage_amount, credited_units, credited_amount
          FROM meter_counters
          {empty_periods}
         ) AS m JOIN usage_records r USING (customer_id, period_start)
) AS usage_rows",
        terms("included"),
        terms("at_limit"),
        terms("overage_rate"),
    )
}

/// Which rows: one customer, and a half-open time range `[since, until)` on the event time
/// (events) or the period start (usage).
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    pub customer: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// One value of an exported row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Null,
    Integer(i64),
    Text(&'a str),
    /// An exact decimal meterline wrote (a credit amount, signed): as it is in CSV, a
    /// string in JSON.
    Decimal(&'a str),
}

impl<'a> Cell<'a> {
    /// The cell as written in CSV: text through [`crate::sanitize::spreadsheet_safe`] (every
    /// CSV meterline writes goes through here), integers and NULL as they are.
    pub fn csv_text(&self) -> Cow<'a, str> {
        match *self {
            Cell::Null => Cow::Borrowed(""),
            Cell::Integer(n) => Cow::Owned(n.to_string()),
            Cell::Text(t) => crate::sanitize::spreadsheet_safe(t),
            Cell::Decimal(d) => Cow::Borrowed(d),
        }
    }
}

/// Streaming exports; serves `meterline export`.
impl Store {
    /// Call `row` for every matching row, in time order, and return how many there were.
    pub fn export(
        &self,
        config: Option<&Config>,
        kind: ExportKind,
        filter: &ExportFilter,
        mut row: impl FnMut(&[Cell]) -> Result<()>,
    ) -> Result<u64> {
        let (table, time) = kind.source(config);
        let selected = kind.selected();
        let sql = format!(
            "SELECT {} FROM {table}
             WHERE (?1 IS NULL OR customer_id = ?1)
               AND (?2 IS NULL OR {time} >= ?2)
               AND (?3 IS NULL OR {time} < ?3)
             ORDER BY {time}, customer_id{}",
            selected.join(", "),
            // The last key is unique, so ties come in the same order on either engine; a
            // meter's total row ('') comes before its groups.
            if kind == ExportKind::Usage {
                ", meter_id, group_key"
            } else {
                ", id"
            }
        );
        let mut count = 0;
        let mut write = |values: &[OwnedValue]| -> Result<()> {
            count += 1;
            row(&cells(kind, values)?)
        };
        let mut usage = UsageRows::default();
        // No index has the export's order: the engine sorts every row, on disk rather than in
        // memory in proportion to the rows.
        let _spilled = self.conn.sorts_on_disk()?;
        let read = self.conn.unchecked_transaction()?;
        self.conn.for_each_row(
            &sql,
            crate::db::params![
                filter.customer,
                filter.since.map(format_ts),
                filter.until.map(format_ts),
            ],
            |r| {
                let values = (0..selected.len())
                    .map(|i| r.value(i))
                    .collect::<Result<Vec<_>>>()?;
                match kind {
                    ExportKind::Events | ExportKind::Credits => write(&values),
                    ExportKind::Usage => match usage.push(values)? {
                        Some(done) => write(&done),
                        None => Ok(()),
                    },
                }
            },
        )?;
        read.finish()?;
        if let Some(done) = usage.finish()? {
            write(&done)?;
        }
        Ok(count)
    }
}

/// A row's values as cells, named in an error by the export and the column.
fn cells(kind: ExportKind, values: &[OwnedValue]) -> Result<Vec<Cell<'_>>> {
    let name = match kind {
        ExportKind::Events => "usage_events",
        ExportKind::Usage => "usage",
        ExportKind::Credits => "credit_ledger",
    };
    values
        .iter()
        .zip(kind.columns())
        .map(|(value, column)| match value {
            OwnedValue::Null => Ok(Cell::Null),
            OwnedValue::Integer(n) => Ok(Cell::Integer(*n)),
            OwnedValue::Text(t) if is_decimal_column(kind, column) => Ok(Cell::Decimal(t)),
            OwnedValue::Text(t) => Ok(Cell::Text(t)),
            other => Err(Error::Corrupt(format!("{name}.{column} holds {other:?}"))),
        })
        .collect()
}

/// The columns that hold meterline's own signed decimals: written as numbers, never as text
/// a spreadsheet might run (which a leading '-' would otherwise be taken for).
fn is_decimal_column(kind: ExportKind, column: &str) -> bool {
    kind == ExportKind::Credits && matches!(column, "amount" | "remaining")
}

/// `export usage` put together from counter rows in the export's order: a meter's total row
/// starts its row, its group rows follow and become its `groups`; the row is written when
/// the next total row (or the end) comes, so memory holds one meter's groups at a time.
#[derive(Default)]
struct UsageRows {
    /// The meter's columns, the units past `included` its events were allocated and their
    /// money (its total row's), and its groups so far.
    pending: Option<(Vec<OwnedValue>, Allocated, Vec<GroupUsage>)>,
}

impl UsageRows {
    /// Take the next counter row; the row it finished, if it starts another.
    fn push(&mut self, mut values: Vec<OwnedValue>) -> Result<Option<Vec<OwnedValue>>> {
        let read = values.split_off(USAGE_READ);
        let (key, units, amount, allocated) = match read.as_slice() {
            [
                OwnedValue::Text(key),
                OwnedValue::Integer(units),
                OwnedValue::Text(amount),
                OwnedValue::Integer(credited),
                OwnedValue::Text(credited_amount),
            ] => (
                key.as_str(),
                *units,
                amount.as_str(),
                Allocated::stored(*units, amount, *credited, Some(credited_amount)),
            ),
            other => {
                return Err(Error::Corrupt(format!(
                    "meter_counters holds {other:?} as a group key, units, amount and credits"
                )));
            }
        };
        if key.is_empty() {
            let done = self.finish()?;
            self.pending = Some((values, allocated, Vec::new()));
            return Ok(done);
        }
        let used = match values.get(3) {
            Some(OwnedValue::Integer(used)) => *used,
            _ => 0,
        };
        // A group row always follows its meter's total row (both are written together).
        if let Some((_, _, groups)) = &mut self.pending {
            groups.push(group_usage(
                key.to_string(),
                used,
                units,
                stored_amount(amount),
            ));
        }
        Ok(None)
    }

    /// The row being put together, with its money and groups, if there is one.
    fn finish(&mut self) -> Result<Option<Vec<OwnedValue>>> {
        let Some((mut values, allocated, mut groups)) = self.pending.take() else {
            return Ok(None);
        };
        let check = priced(standing_of(&values)?, allocated);
        // Largest first, as `check --json` lists them; a stable sort keeps ties in key order.
        groups.sort_by_key(|g| std::cmp::Reverse(g.used));
        let groups = serde_json::to_string(&groups)
            .map_err(|e| Error::Corrupt(format!("a group key: {e}")))?;
        values.extend([
            OwnedValue::Integer(check.overage_units),
            OwnedValue::Text(check.overage_amount.to_string()),
            OwnedValue::Text(groups),
        ]);
        Ok(Some(values))
    }
}

/// The standing of a usage row's meter under the terms the row shows (`included`,
/// `at_limit`, `overage_rate`), as `check` computes it.
fn standing_of(values: &[OwnedValue]) -> Result<UsageCheck> {
    let text = |i: usize| match values.get(i) {
        Some(OwnedValue::Text(t)) => Some(t.as_str()),
        _ => None,
    };
    let integer = |i: usize| match values.get(i) {
        Some(OwnedValue::Integer(n)) => Some(*n),
        _ => None,
    };
    let time = |i: usize| {
        crate::billing::parse_ts(text(i).unwrap_or_default())
            .map_err(|e| Error::Corrupt(format!("usage_records holds a period bound: {e}")))
    };
    let allowance = Allowance {
        included: integer(6),
        hard_cap: text(7) == Some("block"),
        overage_rate: text(8).and_then(|rate| rate.parse().ok()),
    };
    let period = Period {
        start: time(1)?,
        end: time(2)?,
    };
    Ok(UsageCheck::compute(
        text(0).unwrap_or_default(),
        text(4).unwrap_or_default(),
        allowance,
        period,
        integer(3).unwrap_or_default(),
        &Thresholds::default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NewCustomer, RecordRequest};

    /// The shipped plans.toml.
    const PLANS: &str = include_str!("../../../plans.toml");

    /// An export sorts every row: on SQLite in a temp file while it runs (the connection keeps
    /// its temp store in memory otherwise, for the record path), back in memory after.
    #[test]
    fn sqlite_sorts_an_export_on_disk_and_goes_back_to_memory() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("m.db")).unwrap();
        let config = Config::parse(PLANS, "plans.toml").unwrap();
        let plan = config.plans[0].id.clone();
        let now = crate::billing::parse_ts("2026-11-27T18:00:00Z").unwrap();
        let customer = NewCustomer {
            id: "acme".into(),
            name: None,
            plan_id: plan,
            stripe_customer_id: None,
            billing_anchor: None,
        };
        store.add_customer(&config, &customer, now).unwrap();
        let recorded = store
            .record_batch(&config, &[RecordRequest::new("acme", 1, now)], now)
            .unwrap();
        assert!(recorded.into_iter().all(|r| r.is_ok()));

        // 1 is FILE, 2 MEMORY.
        let temp_store = |store: &Store| -> i64 {
            store
                .conn
                .query_row("PRAGMA temp_store", [], |r| r.get(0))
                .unwrap()
        };
        let mut during = Vec::new();
        let rows = store
            .export(None, ExportKind::Events, &ExportFilter::default(), |_| {
                during.push(temp_store(&store));
                Ok(())
            })
            .unwrap();
        assert_eq!((rows, during), (1, vec![1]));
        assert_eq!(temp_store(&store), 2);
    }
}
