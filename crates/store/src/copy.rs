//! `meterline copy-to`: every row of an SQLite database into an empty PostgreSQL one.
//!
//! The copy is generic: the tables and columns come from the two schemas (the source's
//! `sqlite_schema` and `pragma_table_info`, the target's `information_schema`), so a column a
//! later migration adds is copied without a change here. It reads one snapshot of the source
//! and writes everything in one PostgreSQL transaction, checked (row counts of every table,
//! every counter) before it commits: the target ends as a checked copy or as empty as it was.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::db::{Behavior, Connection, Engine, Param, params};
use crate::{Error, Result, Store};

/// Tables not copied: a run lock belongs to a process on the source's machine, and means
/// nothing (or worse, a held lock) on the new database.
const NOT_COPIED: &[&str] = &["sync_lock", "alert_lock"];

/// Tables whose rows the target's schema writes itself when it is created (the database id,
/// the change counters): the source's rows replace them.
const REPLACED: &[&str] = &["meterline_meta", "change_counters"];

/// The target's schema bookkeeping: never copied, never checked for emptiness.
const BOOKKEEPING: &[&str] = &["meterline_migrations", "meterline_changes"];

/// The counters compared row by row after the copy: the table and the columns that key a row;
/// the value is `used`.
const COUNTERS: &[(&str, &[&str])] = &[
    ("usage_records", &["customer_id", "period_start"]),
    ("usage_members", &["customer_id", "period_start", "user_id"]),
    (
        "meter_counters",
        &["customer_id", "period_start", "meter_id", "group_key"],
    ),
];

/// At most this many parameters in one INSERT (PostgreSQL's limit is 65,535).
const MAX_PARAMS: usize = 30_000;
/// At most this many rows in one INSERT.
const MAX_BATCH_ROWS: usize = 500;
/// Differences listed one by one; past it, a count.
const MAX_LISTED: usize = 20;

/// What `copy_to` copied and checked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CopyReport {
    /// Each table copied, with its rows, in the order it was copied.
    pub tables: Vec<TableRows>,
    /// Rows copied, all tables together.
    pub rows: u64,
    /// Counter rows (`usage_records`, `usage_members`, `meter_counters`) compared one by one.
    pub counters: u64,
    /// Tables left out (run locks), with the rows they held on the source.
    pub not_copied: Vec<TableRows>,
    /// What differed between the source and the copy; not empty means nothing was committed.
    pub mismatches: Vec<String>,
}

impl CopyReport {
    /// True when the copy was checked and committed.
    pub fn committed(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// A table and a number of rows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableRows {
    pub table: String,
    pub rows: u64,
}

/// How far the copy is, for a progress line.
#[derive(Debug, Clone, Copy)]
pub struct CopyProgress<'a> {
    pub table: &'a str,
    pub copied: u64,
    pub total: u64,
}

/// What a target column holds, from its PostgreSQL type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnKind {
    Integer,
    Real,
    Text,
    Blob,
}

#[derive(Debug, Clone)]
struct TargetColumn {
    name: String,
    kind: ColumnKind,
    identity: bool,
}

/// One table to copy: what to read from the source, in the order of `columns`.
#[derive(Debug)]
struct TablePlan {
    table: String,
    /// The source's expression for each column (its name, or `rowid` for the rowid SQLite
    /// keeps implicitly and PostgreSQL as a column).
    source: Vec<String>,
    columns: Vec<TargetColumn>,
    /// The target's own rows are deleted first (see [`REPLACED`]).
    replace: bool,
}

/// A value bound with the target column's type, NULL included (PostgreSQL types every
/// parameter, and a multi-row VALUES needs one type per column).
enum Cell {
    Integer(Option<i64>),
    Real(Option<f64>),
    Text(Option<String>),
    Blob(Option<Vec<u8>>),
}

impl Cell {
    fn param(&self) -> &dyn Param {
        match self {
            Cell::Integer(v) => v,
            Cell::Real(v) => v,
            Cell::Text(v) => v,
            Cell::Blob(v) => v,
        }
    }
}

/// Copying a database into PostgreSQL; serves `copy-to`.
impl Store {
    /// Copy every row of this SQLite database into `target`, an empty PostgreSQL database at
    /// the current schema (`Store::open` creates it), and check the copy.
    ///
    /// The source is read in one read transaction (one snapshot, while writers may go on);
    /// the target is written in one transaction that holds the writers' lock, so a failure,
    /// a killed process or a lost connection leaves it as it was. Ids are kept (events,
    /// reports, runs, tokens' hashes, customers' insertion order) and every identity sequence
    /// set past the largest copied id. Before it commits, each table's row count and every
    /// counter row is compared with the source, and the copy's credit ledger must add up;
    /// any difference is listed in
    /// [`CopyReport::mismatches`] and nothing is committed.
    ///
    /// A target with rows in any meterline table is refused untouched
    /// ([`Error::InvalidInput`], exit 2), as is a source or target on the wrong engine.
    pub fn copy_to(
        &self,
        target: &Store,
        progress: &mut dyn FnMut(CopyProgress<'_>),
    ) -> Result<CopyReport> {
        sqlite_into_postgres_only(self, target)?;
        let source = self.conn.unchecked_transaction()?;
        let into = target.conn.transaction_with_behavior(Behavior::Immediate)?;
        let target_columns = target_columns(&into)?;
        refuse_rows(&into, &target_columns)?;
        let (plans, not_copied) = plan(&source, &into, &target_columns)?;

        let mut tables = Vec::with_capacity(plans.len());
        for plan in &plans {
            let rows = copy_table(&source, &into, plan, progress)?;
            tables.push(TableRows {
                table: plan.table.clone(),
                rows,
            });
        }
        reset_identities(&into, &plans)?;

        let mut mismatches = Vec::new();
        for copied in &tables {
            let there = count(&into, &copied.table)?;
            if there != copied.rows {
                mismatches.push(format!(
                    "{}: {} rows in the source, {there} in the copy",
                    copied.table, copied.rows
                ));
            }
        }
        let mut counters = 0;
        for (table, key) in COUNTERS {
            if !plans.iter().any(|p| p.table == *table) {
                continue;
            }
            let theirs = counter_rows(&source, table, key)?;
            let ours = counter_rows(&into, table, key)?;
            counters += theirs.len() as u64;
            mismatches.extend(counter_differences(table, &theirs, &ours));
        }
        // The copied ledger must add up as the source's does: every balance its ledger's sum.
        if plans.iter().any(|p| p.table == "credit_ledger") {
            mismatches.extend(
                crate::credits::check_ledger(&into)?
                    .mismatches
                    .into_iter()
                    .map(|m| format!("the copy's ledger: {m}")),
            );
        }
        if mismatches.len() > MAX_LISTED {
            let more = mismatches.len() - MAX_LISTED;
            mismatches.truncate(MAX_LISTED);
            mismatches.push(format!("and {more} more differences"));
        }
        if mismatches.is_empty() {
            // Statistics now, not at autovacuum's leisure: without them the planner takes
            // every table for empty, and the copy's first queries scan (27 s for one on a
            // copy that answers in milliseconds once analysed). In the transaction, so they
            // come with the rows.
            let copied: Vec<String> = plans.iter().map(|p| quoted(&p.table)).collect();
            into.execute_batch(&format!("ANALYZE {}", copied.join(", ")))?;
            into.commit()?;
        } else {
            into.rollback()?;
        }
        source.finish()?;
        Ok(CopyReport {
            rows: tables.iter().map(|t| t.rows).sum(),
            tables,
            counters,
            not_copied,
            mismatches,
        })
    }
}

/// Refuse any direction but the one `copy-to` has: it reads the source's SQLite catalog
/// (`sqlite_schema`, `pragma_table_info`) and writes through PostgreSQL's (`information_schema`,
/// identity columns), so it exists from an SQLite file into a PostgreSQL database only.
fn sqlite_into_postgres_only(source: &Store, target: &Store) -> Result<()> {
    if source.engine() != Engine::Sqlite {
        return Err(Error::InvalidInput(
            "copy-to copies an SQLite database; the source is a PostgreSQL database".into(),
        ));
    }
    if target.engine() != Engine::Postgres {
        return Err(Error::InvalidInput(
            "copy-to copies into a PostgreSQL database only".into(),
        ));
    }
    Ok(())
}

/// `name` as an SQL identifier, for both engines.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The target's tables (but its bookkeeping) and their columns, in column order (generated
/// columns left out: the server computes them).
fn target_columns(conn: &Connection) -> Result<BTreeMap<String, Vec<TargetColumn>>> {
    let mut stmt = conn.prepare(
        "SELECT CAST(c.table_name AS TEXT), CAST(c.column_name AS TEXT),
                CAST(c.data_type AS TEXT), CAST(c.is_identity AS TEXT)
         FROM information_schema.columns c
         JOIN information_schema.tables t
           ON t.table_schema = c.table_schema AND t.table_name = c.table_name
         WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
           AND CAST(c.is_generated AS TEXT) = 'NEVER'
         ORDER BY c.table_name, c.ordinal_position",
    )?;
    let rows = stmt.query_map(params![], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    let mut tables: BTreeMap<String, Vec<TargetColumn>> = BTreeMap::new();
    for row in rows {
        let (table, name, data_type, identity) = row?;
        if BOOKKEEPING.contains(&table.as_str()) {
            continue;
        }
        let kind = match data_type.as_str() {
            "bigint" | "integer" | "smallint" => ColumnKind::Integer,
            "double precision" | "real" => ColumnKind::Real,
            "text" | "character varying" | "character" => ColumnKind::Text,
            "bytea" => ColumnKind::Blob,
            other => {
                return Err(Error::Database(format!(
                    "the target's {table}.{name} is of type {other}, which copy-to cannot fill"
                )));
            }
        };
        tables.entry(table).or_default().push(TargetColumn {
            name,
            kind,
            identity: identity == "YES",
        });
    }
    Ok(tables)
}

/// Refuse a target holding rows in any table but the ones its schema fills itself.
fn refuse_rows(conn: &Connection, tables: &BTreeMap<String, Vec<TargetColumn>>) -> Result<()> {
    let mut holding = Vec::new();
    for table in tables.keys() {
        if REPLACED.contains(&table.as_str()) {
            continue;
        }
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {})", quoted(table));
        if conn
            .prepare(&sql)?
            .query_row(params![], |r| r.get::<_, bool>(0))?
        {
            holding.push(table.as_str());
        }
    }
    if holding.is_empty() {
        return Ok(());
    }
    Err(Error::InvalidInput(format!(
        "the target database is not empty ({} already hold rows); copy-to fills an empty \
         database only, and nothing was written: give it a new one (`createdb meterline`)",
        holding.join(", ")
    )))
}

/// What to copy, in an order the foreign keys accept (a referenced table first), the
/// replaced tables last (the triggers of the others move the change counters); and the
/// tables left out, with their rows.
fn plan(
    source: &Connection,
    target: &Connection,
    target_columns: &BTreeMap<String, Vec<TargetColumn>>,
) -> Result<(Vec<TablePlan>, Vec<TableRows>)> {
    let names: Vec<String> = source
        .prepare(
            "SELECT name FROM sqlite_schema
             WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
        )?
        .query_map(params![], |r| r.get(0))?
        .collect::<Result<_>>()?;
    let mut plans = Vec::new();
    let mut not_copied = Vec::new();
    for table in names {
        if NOT_COPIED.contains(&table.as_str()) {
            not_copied.push(TableRows {
                rows: count(source, &table)?,
                table,
            });
            continue;
        }
        let Some(columns) = target_columns.get(&table) else {
            return Err(Error::Database(format!(
                "the source's table {table} is not in the target's schema: this meterline's \
                 PostgreSQL schema is older than the file's; nothing was written"
            )));
        };
        let theirs: Vec<String> = source
            .prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")?
            .query_map(params![table], |r| r.get(0))?
            .collect::<Result<_>>()?;
        if let Some(missing) = theirs
            .iter()
            .find(|c| !columns.iter().any(|t| &t.name == *c))
        {
            return Err(Error::Database(format!(
                "the source's column {table}.{missing} is not in the target's schema: this \
                 meterline's PostgreSQL schema is older than the file's; nothing was written"
            )));
        }
        let mut plan = TablePlan {
            replace: REPLACED.contains(&table.as_str()),
            table,
            source: Vec::new(),
            columns: Vec::new(),
        };
        for column in columns {
            if theirs.contains(&column.name) {
                plan.source.push(quoted(&column.name));
            } else if column.name == "rowid" {
                plan.source.push("rowid".into());
            } else {
                continue; // the target's default
            }
            plan.columns.push(column.clone());
        }
        plans.push(plan);
    }
    Ok((
        in_dependency_order(plans, &foreign_keys(target)?)?,
        not_copied,
    ))
}

/// The target's foreign keys: (table, the table it references).
fn foreign_keys(conn: &Connection) -> Result<Vec<(String, String)>> {
    conn.prepare(
        "SELECT CAST(a.relname AS TEXT), CAST(b.relname AS TEXT)
         FROM pg_constraint c
         JOIN pg_class a ON a.oid = c.conrelid
         JOIN pg_class b ON b.oid = c.confrelid
         JOIN pg_namespace n ON n.oid = a.relnamespace
         WHERE c.contype = 'f' AND n.nspname = current_schema()",
    )?
    .query_map(params![], |r| Ok((r.get(0)?, r.get(1)?)))?
    .collect()
}

/// `plans` with every referenced table before the tables referencing it (by name where the
/// keys leave a choice), the replaced tables last.
fn in_dependency_order(
    mut plans: Vec<TablePlan>,
    keys: &[(String, String)],
) -> Result<Vec<TablePlan>> {
    plans.sort_by(|a, b| (a.replace, &a.table).cmp(&(b.replace, &b.table)));
    let mut ordered = Vec::with_capacity(plans.len());
    let mut placed: BTreeSet<String> = BTreeSet::new();
    while !plans.is_empty() {
        let ready = plans.iter().position(|p| {
            keys.iter().all(|(from, to)| {
                from != &p.table
                    || to == &p.table
                    || placed.contains(to)
                    || !plans.iter().any(|q| &q.table == to)
            })
        });
        let Some(at) = ready else {
            return Err(Error::Database(format!(
                "the target's foreign keys between {} form a cycle; copy-to cannot order them",
                plans
                    .iter()
                    .map(|p| p.table.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let plan = plans.remove(at);
        placed.insert(plan.table.clone());
        ordered.push(plan);
    }
    Ok(ordered)
}

fn count(conn: &Connection, table: &str) -> Result<u64> {
    conn.prepare(&format!("SELECT COUNT(*) FROM {}", quoted(table)))?
        .query_row(params![], |r| r.get(0))
}

/// Copy one table's rows in multi-row INSERTs; the rows copied.
fn copy_table(
    source: &Connection,
    into: &Connection,
    plan: &TablePlan,
    progress: &mut dyn FnMut(CopyProgress<'_>),
) -> Result<u64> {
    let total = count(source, &plan.table)?;
    if plan.replace {
        into.prepare(&format!("DELETE FROM {}", quoted(&plan.table)))?
            .execute(params![])?;
    }
    let width = plan.columns.len();
    let per_batch = (MAX_PARAMS / width.max(1)).clamp(1, MAX_BATCH_ROWS);
    let full_batch = insert_sql(plan, per_batch);
    let mut stmt = source.prepare(&format!(
        "SELECT {} FROM {}",
        plan.source.join(", "),
        quoted(&plan.table)
    ))?;
    let mut rows = stmt.query(params![])?;
    let mut batch: Vec<Cell> = Vec::with_capacity(per_batch * width);
    let mut copied = 0;
    let mut flush = |batch: &mut Vec<Cell>, copied: u64| -> Result<()> {
        let n = batch.len() / width.max(1);
        let sql = if n == per_batch {
            full_batch.clone()
        } else {
            insert_sql(plan, n)
        };
        let params: Vec<&dyn Param> = batch.iter().map(Cell::param).collect();
        into.prepare(&sql)?.execute(&params)?;
        batch.clear();
        progress(CopyProgress {
            table: &plan.table,
            copied,
            total,
        });
        Ok(())
    };
    while let Some(row) = rows.next()? {
        for (i, column) in plan.columns.iter().enumerate() {
            batch.push(convert(row.value(i)?, column, &plan.table)?);
        }
        copied += 1;
        if batch.len() == per_batch * width {
            flush(&mut batch, copied)?;
        }
    }
    if !batch.is_empty() {
        flush(&mut batch, copied)?;
    }
    Ok(copied)
}

/// `INSERT INTO t (…) VALUES (?1, ?2, …), (…)` for `rows` rows; identity columns are given
/// their copied values (`OVERRIDING SYSTEM VALUE`).
fn insert_sql(plan: &TablePlan, rows: usize) -> String {
    let width = plan.columns.len();
    let columns: Vec<String> = plan.columns.iter().map(|c| quoted(&c.name)).collect();
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let cells: Vec<String> = (1..=width).map(|c| format!("?{}", r * width + c)).collect();
            format!("({})", cells.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO {} ({}){} VALUES {}",
        quoted(&plan.table),
        columns.join(", "),
        if plan.columns.iter().any(|c| c.identity) {
            " OVERRIDING SYSTEM VALUE"
        } else {
            ""
        },
        values.join(", ")
    )
}

/// A source value as the target column's type: SQLite holds any value in any column, so an
/// integer in a TEXT column is written as its text, a whole real in an integer column as the
/// integer; a value that cannot be converted stops the copy.
fn convert(value: crate::db::OwnedValue, column: &TargetColumn, table: &str) -> Result<Cell> {
    use crate::db::OwnedValue as V;
    let refused = |value: &V| {
        Error::Database(format!(
            "{table}.{}: the source holds {value:?}, which its PostgreSQL column cannot take; \
             nothing was written",
            column.name
        ))
    };
    Ok(match column.kind {
        ColumnKind::Integer => Cell::Integer(match value {
            V::Null => None,
            V::Integer(n) => Some(n),
            V::Real(x) if x.fract() == 0.0 && x.abs() < 9.0e18 => Some(x as i64),
            V::Text(ref t) => Some(t.parse().map_err(|_| refused(&value))?),
            ref other => return Err(refused(other)),
        }),
        ColumnKind::Real => Cell::Real(match value {
            V::Null => None,
            V::Integer(n) => Some(n as f64),
            V::Real(x) => Some(x),
            V::Text(ref t) => Some(t.parse().map_err(|_| refused(&value))?),
            ref other => return Err(refused(other)),
        }),
        ColumnKind::Text => Cell::Text(match value {
            V::Null => None,
            V::Text(t) => Some(t),
            V::Integer(n) => Some(n.to_string()),
            V::Real(x) => Some(x.to_string()),
            V::Blob(b) => {
                Some(String::from_utf8(b).map_err(|e| refused(&V::Blob(e.into_bytes())))?)
            }
        }),
        ColumnKind::Blob => Cell::Blob(match value {
            V::Null => None,
            V::Blob(b) => Some(b),
            V::Text(t) => Some(t.into_bytes()),
            ref other => return Err(refused(other)),
        }),
    })
}

/// Every identity sequence past the largest id copied, so the next row gets a fresh id.
fn reset_identities(into: &Connection, plans: &[TablePlan]) -> Result<()> {
    for plan in plans {
        for column in plan.columns.iter().filter(|c| c.identity) {
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence(?1, ?2),
                               COALESCE((SELECT MAX({}) FROM {}), 0) + 1, false)",
                quoted(&column.name),
                quoted(&plan.table)
            );
            into.prepare(&sql)?
                .execute(params![plan.table, column.name])?;
        }
    }
    Ok(())
}

/// A counter table's `used`, by its key.
type Counters = HashMap<Vec<String>, i64>;

fn counter_rows(conn: &Connection, table: &str, key: &[&str]) -> Result<Counters> {
    let sql = format!(
        "SELECT {}, used FROM {}",
        key.iter().map(|k| quoted(k)).collect::<Vec<_>>().join(", "),
        quoted(table)
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(params![])?;
    let mut found = Counters::new();
    while let Some(row) = rows.next()? {
        let mut k = Vec::with_capacity(key.len());
        for i in 0..key.len() {
            k.push(row.get::<_, String>(i)?);
        }
        found.insert(k, row.get(key.len())?);
    }
    Ok(found)
}

/// Each counter that differs between the source and the copy, missing from either side
/// included, in a stable order.
fn counter_differences(table: &str, source: &Counters, copy: &Counters) -> Vec<String> {
    let keys: BTreeSet<&Vec<String>> = source.keys().chain(copy.keys()).collect();
    keys.into_iter()
        .filter_map(|key| {
            let shown = key.join(" ");
            match (source.get(key), copy.get(key)) {
                (Some(a), Some(b)) if a == b => None,
                (Some(a), Some(b)) => Some(format!(
                    "{table} {shown}: used {a} in the source, {b} in the copy"
                )),
                (Some(a), None) => Some(format!(
                    "{table} {shown}: used {a} in the source, missing from the copy"
                )),
                (None, Some(b)) => Some(format!(
                    "{table} {shown}: not in the source, used {b} in the copy"
                )),
                (None, None) => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(rows: &[(&str, i64)]) -> Counters {
        rows.iter()
            .map(|(k, v)| (vec![(*k).to_owned(), "2026-11-01".to_owned()], *v))
            .collect()
    }

    #[test]
    fn counters_that_differ_or_are_missing_on_either_side_are_named() {
        let source = counters(&[("acme", 5), ("globex", 7), ("initech", 1)]);
        let copy = counters(&[("acme", 5), ("globex", 6), ("umbrella", 2)]);
        assert_eq!(
            counter_differences("usage_records", &source, &copy),
            vec![
                "usage_records globex 2026-11-01: used 7 in the source, 6 in the copy",
                "usage_records initech 2026-11-01: used 1 in the source, missing from the copy",
                "usage_records umbrella 2026-11-01: not in the source, used 2 in the copy",
            ]
        );
        assert!(counter_differences("usage_records", &source, &source).is_empty());
    }

    fn plan(table: &str, replace: bool) -> TablePlan {
        TablePlan {
            table: table.into(),
            source: Vec::new(),
            columns: Vec::new(),
            replace,
        }
    }

    #[test]
    fn referenced_tables_come_first_and_replaced_tables_last() {
        let keys = [
            ("usage_events".to_owned(), "customers".to_owned()),
            ("usage_events".to_owned(), "stripe_reports".to_owned()),
            ("stripe_reports".to_owned(), "customers".to_owned()),
            ("sync_lock".to_owned(), "sync_runs".to_owned()),
        ];
        let plans = vec![
            plan("change_counters", true),
            plan("usage_events", false),
            plan("stripe_reports", false),
            plan("customers", false),
        ];
        let order: Vec<String> = in_dependency_order(plans, &keys)
            .unwrap()
            .into_iter()
            .map(|p| p.table)
            .collect();
        assert_eq!(
            order,
            [
                "customers",
                "stripe_reports",
                "usage_events",
                "change_counters"
            ]
        );
        let cycle = [
            ("a".to_owned(), "b".to_owned()),
            ("b".to_owned(), "a".to_owned()),
        ];
        assert!(in_dependency_order(vec![plan("a", false), plan("b", false)], &cycle).is_err());
    }

    #[test]
    fn values_take_the_target_columns_type() {
        use crate::db::OwnedValue as V;
        let column = |kind| TargetColumn {
            name: "c".into(),
            kind,
            identity: false,
        };
        let text = column(ColumnKind::Text);
        let integer = column(ColumnKind::Integer);
        assert!(matches!(
            convert(V::Integer(7), &text, "t").unwrap(),
            Cell::Text(Some(t)) if t == "7"
        ));
        assert!(matches!(
            convert(V::Null, &integer, "t").unwrap(),
            Cell::Integer(None)
        ));
        assert!(matches!(
            convert(V::Real(3.0), &integer, "t").unwrap(),
            Cell::Integer(Some(3))
        ));
        assert!(convert(V::Real(3.5), &integer, "t").is_err());
        assert!(convert(V::Text("x".into()), &integer, "t").is_err());
    }
}
