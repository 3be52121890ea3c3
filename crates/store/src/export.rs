//! `meterline export`: events or per-period usage, streamed row by row in a stable column
//! order, for accounting and reports. Memory stays constant however many rows there are.

use std::borrow::Cow;

use crate::db::OwnedValue;
use chrono::{DateTime, Utc};

use super::Store;
use crate::billing::format_ts;
use crate::config::Config;
use crate::{Error, Result};

/// What `export` writes: usage events or per-period usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportKind {
    /// One row per usage event.
    Events,
    /// One row per customer × billing period, with the plan in force.
    Usage,
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
            ],
        }
    }

    /// The table, and the column the time filter and the order apply to.
    /// Without plans.toml (`config` None) the meters' Stripe events are unknown, and a
    /// period without any meter's total has no row.
    fn source(self, config: Option<&Config>) -> (String, &'static str) {
        match self {
            ExportKind::Events => ("usage_events".to_string(), "occurred_at"),
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

/// One row per customer × period × meter: every meter's total from meter_counters, with the
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
          SELECT customer_id, period_start, {}, 0 FROM usage_records u
          WHERE NOT EXISTS (SELECT 1 FROM meter_counters c
              WHERE c.customer_id = u.customer_id AND c.period_start = u.period_start)",
            crate::meters::stripe::literal(id)
        )
    });
    format!(
        "(
    SELECT m.customer_id, m.period_start, r.period_end, m.used, r.plan_id,
           {event_name} AS meter_event_name, CAST({} AS BIGINT) AS included, {} AS at_limit,
           {} AS overage_rate, r.price, m.meter_id
    FROM (SELECT customer_id, period_start, meter_id, used FROM meter_counters
          WHERE group_key = ''
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
}

impl<'a> Cell<'a> {
    /// The cell as written in CSV: text through [`crate::sanitize::spreadsheet_safe`] (every
    /// CSV meterline writes goes through here), integers and NULL as they are.
    pub fn csv_text(&self) -> Cow<'a, str> {
        match *self {
            Cell::Null => Cow::Borrowed(""),
            Cell::Integer(n) => Cow::Owned(n.to_string()),
            Cell::Text(t) => crate::sanitize::spreadsheet_safe(t),
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
        let name = match kind {
            ExportKind::Events => "usage_events",
            ExportKind::Usage => "usage",
        };
        let columns = kind.columns();
        let sql = format!(
            "SELECT {} FROM {table}
             WHERE (?1 IS NULL OR customer_id = ?1)
               AND (?2 IS NULL OR {time} >= ?2)
               AND (?3 IS NULL OR {time} < ?3)
             ORDER BY {time}, customer_id{}",
            columns.join(", "),
            // The last key is unique, so ties come in the same order on either engine.
            if kind == ExportKind::Usage {
                ", meter_id"
            } else {
                ", id"
            }
        );
        let mut count = 0;
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
                let values = (0..columns.len())
                    .map(|i| r.value(i))
                    .collect::<Result<Vec<_>>>()?;
                let mut cells = Vec::with_capacity(columns.len());
                for (value, column) in values.iter().zip(columns.iter()) {
                    cells.push(match value {
                        OwnedValue::Null => Cell::Null,
                        OwnedValue::Integer(n) => Cell::Integer(*n),
                        OwnedValue::Text(t) => Cell::Text(t),
                        other => {
                            return Err(Error::Corrupt(format!("{name}.{column} holds {other:?}")));
                        }
                    });
                }
                count += 1;
                row(&cells)
            },
        )?;
        read.finish()?;
        Ok(count)
    }
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
