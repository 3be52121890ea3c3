//! PostgreSQL's side of what [`Connection`](crate::db::Connection) does its own way on each
//! engine (its SQLite side is `sqlite/ops.rs`).

use super::PgConnection;
use crate::db::values::{Kind, Value};
use crate::db::{EngineCheck, Param, SessionLock};
use crate::{Error, Result};

/// One column of the rows `insert_rows` writes, as the array PostgreSQL unnests.
enum ColumnArray<'a> {
    Integers(Vec<Option<i64>>),
    Texts(Vec<Option<&'a str>>),
}

impl PgConnection {
    /// Every row in one INSERT of arrays, one per column, unnested: PostgreSQL parses and plans
    /// every unnamed statement anew (for PgBouncer), so a batch is as many parameters as it
    /// has columns, not as it has values.
    pub(crate) fn insert_rows(
        &self,
        table: &str,
        columns: &[&str],
        values: &[&dyn Param],
    ) -> Result<()> {
        if values.is_empty() {
            return Ok(());
        }
        let width = columns.len();
        let arrays = (0..width)
            .map(|column| {
                let cells = values.iter().skip(column).step_by(width).map(|v| v.value());
                column_array(table, columns[column], cells)
            })
            .collect::<Result<Vec<_>>>()?;
        let params: Vec<&dyn Param> = arrays
            .iter()
            .map(|a| match a {
                ColumnArray::Integers(v) => v as &dyn Param,
                ColumnArray::Texts(v) => v as &dyn Param,
            })
            .collect();
        let placeholders: Vec<String> = (1..=width).map(|n| format!("?{n}")).collect();
        self.write_later(
            &format!(
                "INSERT INTO {table} ({}) SELECT * FROM unnest({})",
                columns.join(", "),
                placeholders.join(", ")
            ),
            &params,
        )
    }

    /// A session advisory lock keyed by `name`: the server drops it the moment its process or
    /// host dies, so a run elsewhere can take over at once.
    pub(crate) fn try_session_lock(&self, name: &str) -> Result<SessionLock> {
        let taken = self
            .statement("SELECT pg_try_advisory_lock(hashtext(?1))")
            .query(&[&name])?
            .first()
            .map(|row| super::integer(row, 0))
            .transpose()?
            == Some(1);
        Ok(if taken {
            SessionLock::Taken
        } else {
            SessionLock::HeldElsewhere
        })
    }

    pub(crate) fn release_session_lock(&self, name: &str) -> Result<()> {
        self.statement("SELECT pg_advisory_unlock(hashtext(?1))")
            .query(&[&name])?;
        Ok(())
    }

    /// The server checks its own pages; that it answered is the check. Its version names it.
    pub(crate) fn check(&self) -> Result<EngineCheck> {
        let version = self
            .statement("SELECT 'PostgreSQL ' || current_setting('server_version')")
            .query(&[])?;
        let engine = match version.first() {
            Some(row) => super::text(row, 0)?,
            None => return Err(Error::NoRows),
        };
        Ok(EngineCheck {
            quick_check: "ok".to_owned(),
            journal_mode: None,
            engine,
        })
    }
}

/// One column's values as an array of its kind (integers or text, what the store's batch
/// inserts hold).
fn column_array<'a>(
    table: &str,
    column: &str,
    cells: impl Iterator<Item = Value<'a>>,
) -> Result<ColumnArray<'a>> {
    let mut integers = Vec::new();
    let mut texts = Vec::new();
    for cell in cells {
        match cell {
            Value::Integer(n) => integers.push(Some(n)),
            Value::Null(Kind::Integer) => integers.push(None),
            Value::Text(t) => texts.push(Some(t)),
            Value::Null(Kind::Text) => texts.push(None),
            other => {
                return Err(Error::Database(format!(
                    "{table}.{column}: {other:?} cannot go in an array of rows"
                )));
            }
        }
        if !integers.is_empty() && !texts.is_empty() {
            return Err(Error::Database(format!(
                "{table}.{column} holds both integers and text"
            )));
        }
    }
    Ok(if texts.is_empty() {
        ColumnArray::Integers(integers)
    } else {
        ColumnArray::Texts(texts)
    })
}
