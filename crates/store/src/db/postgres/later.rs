//! Writes sent with the transaction's next statement. Each statement is a round trip, and
//! the end of a batch writes several tables one after another (events, counters, ledger,
//! reservations): kept back here, they go out as one statement of data-modifying CTEs
//! (`WITH w0 AS (INSERT …), w1 AS (UPDATE …) INSERT …`) just before whatever the transaction
//! sends next, its COMMIT included. PostgreSQL runs the parts of such a statement on one
//! snapshot, so one never sees another's rows: a write to a table already waiting sends the
//! waiting ones first, and any read does too (it must see them).

use std::fmt::Write as _;
use std::sync::Arc;

use postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::{Arg, PgConnection, args};
use crate::db::Param;
use crate::{Error, Result};

/// A write kept back: its text in PostgreSQL's dialect, the table it writes, its parameters
/// encoded as the wire carries them.
pub(super) struct Pending {
    text: Arc<str>,
    table: String,
    args: Vec<Encoded>,
}

/// A parameter already encoded (the caller's values are borrowed only for the call).
#[derive(Debug)]
struct Encoded {
    ty: Type,
    bytes: Option<Vec<u8>>,
}

/// Parameters one combined statement may carry (PostgreSQL's limit is 65,535).
const MAX_ARGS: usize = 30_000;

impl PgConnection {
    /// `sql`, a write whose count of rows nobody reads: kept back until the transaction's
    /// next statement when a transaction is open, else run now.
    pub(crate) fn write_later(&self, sql: &str, params: &[&dyn Param]) -> Result<()> {
        let mut statement = self.statement(sql);
        let table = match written_table(&statement.text) {
            Some(table) if self.in_transaction.get() => table,
            _ => return statement.execute(params).map(|_| ()),
        };
        let text = statement.text;
        let clashes = {
            let pending = self.pending.borrow();
            let carried: usize = pending.iter().map(|p| p.args.len()).sum();
            pending.iter().any(|p| p.table == table) || carried + params.len() > MAX_ARGS
        };
        if clashes {
            self.send_pending()?;
        }
        let args = args(params)
            .iter()
            .map(Encoded::of)
            .collect::<Result<Vec<_>>>()?;
        self.pending
            .borrow_mut()
            .push(Pending { text, table, args });
        Ok(())
    }

    /// Send the writes kept back, as one statement.
    pub(super) fn send_pending(&self) -> Result<()> {
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        let Some(text) = combined(&pending) else {
            return Ok(());
        };
        let args: Vec<&Encoded> = pending.iter().flat_map(|p| &p.args).collect();
        self.with_connected_client(|c| {
            let mut rows = c.query_typed_raw(&text, args.iter().map(|a| (*a, a.ty.clone())))?;
            while postgres::fallible_iterator::FallibleIterator::next(&mut rows)?.is_some() {}
            Ok(())
        })
    }

    /// Forget the writes kept back: the transaction they were for is rolled back.
    pub(super) fn drop_pending(&self) {
        self.pending.borrow_mut().clear();
    }
}

/// The statement that runs `pending` in order, or `None` for none.
fn combined(pending: &[Pending]) -> Option<String> {
    let (last, first) = pending.split_last()?;
    let mut text = String::new();
    let mut offset = 0;
    for (i, p) in first.iter().enumerate() {
        let joiner = if i == 0 { "WITH" } else { "," };
        let _ = write!(text, "{joiner} w{i} AS ({}) ", shifted(&p.text, offset));
        offset += p.args.len();
    }
    text.push_str(&shifted(&last.text, offset));
    Some(text)
}

/// The table `text` writes, if it is a plain INSERT, UPDATE or DELETE that returns nothing
/// (what can be a part of a combined statement).
fn written_table(text: &str) -> Option<String> {
    let mut words = text.split_whitespace();
    let verb = words.next()?.to_ascii_uppercase();
    let table = match verb.as_str() {
        "UPDATE" => words.next()?,
        "INSERT" | "DELETE" => {
            let into = words.next()?.to_ascii_uppercase();
            let expected = if verb == "INSERT" { "INTO" } else { "FROM" };
            (into == expected).then(|| words.next())??
        }
        _ => return None,
    };
    let table = table.split('(').next()?.to_ascii_lowercase();
    let returns = text.to_ascii_uppercase().contains("RETURNING");
    (!table.is_empty() && !returns).then_some(table)
}

/// `text` with each `$n` outside quotes made `$(n + offset)`.
fn shifted(text: &str, offset: usize) -> String {
    if offset == 0 {
        return text.to_string();
    }
    super::renumbered(text, '$', |n| n.map(|n| n + offset))
}

impl Encoded {
    fn of(arg: &Arg<'_>) -> Result<Encoded> {
        let ty = arg.ty();
        let mut buf = postgres::types::private::BytesMut::new();
        let bytes = match arg
            .to_sql(&ty, &mut buf)
            .map_err(|e| Error::Database(format!("a parameter: {e}")))?
        {
            IsNull::Yes => None,
            IsNull::No => Some(buf.to_vec()),
        };
        Ok(Encoded { ty, bytes })
    }
}

impl ToSql for Encoded {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(match &self.bytes {
            Some(bytes) => {
                out.extend_from_slice(bytes);
                IsNull::No
            }
            None => IsNull::Yes,
        })
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(text: &str, args: usize) -> Pending {
        Pending {
            text: text.into(),
            table: written_table(text).unwrap(),
            args: (0..args)
                .map(|_| Encoded {
                    ty: Type::INT8,
                    bytes: None,
                })
                .collect(),
        }
    }

    #[test]
    fn writes_are_told_by_their_table_and_reads_or_returning_ones_are_not_kept() {
        assert_eq!(
            written_table("INSERT INTO usage_events (id) SELECT * FROM unnest($1)").as_deref(),
            Some("usage_events")
        );
        assert_eq!(
            written_table("UPDATE reservations SET a = 1").as_deref(),
            Some("reservations")
        );
        assert_eq!(
            written_table("delete from window_buckets where a = $1").as_deref(),
            Some("window_buckets")
        );
        assert_eq!(
            written_table("INSERT INTO t(a) VALUES (1)").as_deref(),
            Some("t")
        );
        assert_eq!(written_table("SELECT 1"), None);
        assert_eq!(
            written_table("WITH x AS (SELECT 1) INSERT INTO t SELECT 1"),
            None
        );
        assert_eq!(written_table("INSERT INTO t VALUES (1) RETURNING id"), None);
    }

    #[test]
    fn writes_combine_in_order_with_their_parameters_numbered_on() {
        let text = combined(&[
            pending("INSERT INTO a VALUES ($1, $2)", 2),
            pending("UPDATE b SET x = '$1' WHERE y = $1", 1),
            pending("INSERT INTO c VALUES ($1, $2, $3)", 3),
        ])
        .unwrap();
        assert_eq!(
            text,
            "WITH w0 AS (INSERT INTO a VALUES ($1, $2)) , w1 AS (UPDATE b SET x = '$1' WHERE y = \
             $3) INSERT INTO c VALUES ($4, $5, $6)"
        );
        assert_eq!(
            combined(&[pending("INSERT INTO a VALUES ($1)", 1)]).unwrap(),
            "INSERT INTO a VALUES ($1)"
        );
        assert!(combined(&[]).is_none());
    }
}
