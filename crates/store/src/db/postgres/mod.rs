//! The PostgreSQL side of [`super::Connection`], over the synchronous `postgres` crate.
//!
//! Every statement goes out with `query_typed`: parse, bind and execute in one round trip, as
//! an unnamed statement with each parameter's type given, so no prepared statement outlives
//! its transaction (PgBouncer in transaction mode needs nothing set). Writers serialise on
//! one transaction-scoped advisory lock, the counterpart of SQLite's `BEGIN IMMEDIATE`; it is
//! released at commit, at rollback, and when a connection dies.

pub(crate) mod error;
mod later;
mod ops;
pub(crate) mod schema;
mod tls;
pub(crate) mod url;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

use super::Behavior;
use super::values::{Kind, OwnedValue, Param, Value};
use crate::{Error, Result};
pub(crate) use error::from_postgres;
pub(crate) use url::PgUrl;

/// The key of the writers' advisory lock (advisory locks are per database).
const WRITER_LOCK: i64 = 0x6d65_7465_726c_0001;

/// One connection to the server; reconnects by itself when the server went away.
pub(crate) struct PgConnection {
    url: PgUrl,
    client: RefCell<Option<postgres::Client>>,
    /// Statements as Postgres reads them, by the store's text.
    translated: RefCell<HashMap<String, Arc<str>>>,
    /// How long a writer waits for the writer lock before giving up with `Error::Locked`.
    lock_timeout_ms: u64,
    /// Set once the schema is there: write transactions then bump the change counter.
    pub(crate) counts_changes: std::cell::Cell<bool>,
    in_transaction: std::cell::Cell<bool>,
    /// Writes kept back until the transaction's next statement (`later`).
    pending: RefCell<Vec<later::Pending>>,
}

impl PgConnection {
    pub(crate) fn connect(url: PgUrl, lock_timeout_ms: u64) -> Result<PgConnection> {
        let client = url.connect()?;
        Ok(PgConnection {
            url,
            client: RefCell::new(Some(client)),
            translated: RefCell::new(HashMap::new()),
            lock_timeout_ms,
            counts_changes: std::cell::Cell::new(false),
            in_transaction: std::cell::Cell::new(false),
            pending: RefCell::new(Vec::new()),
        })
    }

    pub(crate) fn url(&self) -> &PgUrl {
        &self.url
    }

    /// Run `f` on the client after the writes kept back (`later`): what it sends sees them.
    fn with_client<T>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> std::result::Result<T, postgres::Error>,
    ) -> Result<T> {
        self.send_pending()?;
        self.with_connected_client(f)
    }

    /// Run `f` on the client, connecting again first if the last connection broke (outside a
    /// transaction only: a broken transaction is gone, and its caller hears so).
    fn with_connected_client<T>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> std::result::Result<T, postgres::Error>,
    ) -> Result<T> {
        let mut slot = self.client.borrow_mut();
        let broken = slot.as_ref().is_none_or(postgres::Client::is_closed);
        if broken {
            if self.in_transaction.get() {
                return Err(Error::Unavailable(
                    "the connection to the database server was lost".into(),
                ));
            }
            *slot = None;
            *slot = Some(self.url.connect()?);
        }
        let Some(client) = slot.as_mut() else {
            return Err(Error::Unavailable("no connection".into()));
        };
        f(client).map_err(from_postgres)
    }

    pub(crate) fn batch_execute(&self, sql: &str) -> Result<()> {
        if sql.trim() == "ROLLBACK" {
            self.drop_pending();
        }
        let result = match sql.trim() {
            "COMMIT" => self.commit(),
            _ => self.with_client(|c| c.batch_execute(sql)),
        };
        match sql.trim() {
            "COMMIT" | "ROLLBACK" => self.in_transaction.set(false),
            _ => {}
        }
        result
    }

    /// COMMIT. An answer that never came (the connection cut, the server shut down or
    /// crashed meanwhile) leaves the outcome unknown: the server may have written the
    /// transaction before it went, so the caller must not be told that nothing was written.
    fn commit(&self) -> Result<()> {
        // A write kept back that fails ends the transaction here: nothing was committed, and
        // the connection must not be left inside the failed transaction.
        if let Err(e) = self.send_pending() {
            let _ = self.with_connected_client(|c| c.batch_execute("ROLLBACK"));
            return Err(e);
        }
        self.with_client(|c| Ok(c.batch_execute("COMMIT")))?
            .map_err(|e| {
                if error::commit_unanswered(&e) {
                    Error::OutcomeUnknown(e.to_string())
                } else {
                    from_postgres(e)
                }
            })
    }

    pub(crate) fn begin(&self, behavior: Behavior) -> Result<()> {
        let sql = match behavior {
            // One snapshot for every read of the transaction, as SQLite's read transaction.
            Behavior::Deferred => "BEGIN ISOLATION LEVEL REPEATABLE READ".to_owned(),
            // One round trip: the lock, its timeout (LOCAL: nothing outlives the
            // transaction), and the change counter the dashboard polls.
            Behavior::Immediate | Behavior::ImmediateByKey => format!(
                "BEGIN; SET LOCAL lock_timeout = {}; SELECT pg_advisory_xact_lock({WRITER_LOCK});{}{}",
                self.lock_timeout_ms,
                if self.counts_changes.get() {
                    " UPDATE meterline_changes SET n = n + 1;"
                } else {
                    ""
                },
                if behavior == Behavior::ImmediateByKey {
                    " SET LOCAL enable_seqscan = off;"
                } else {
                    ""
                }
            ),
        };
        self.open_transaction(&sql)?;
        self.in_transaction.set(true);
        Ok(())
    }

    /// Run `sql`, a text that begins a transaction (`BEGIN; …`). If a statement after its
    /// BEGIN fails (the lock's wait past `lock_timeout`), the transaction is open and aborted
    /// and every later statement on the connection would fail (25P02) for good: it is rolled
    /// back here, and a connection that cannot roll back is dropped and made anew on next use.
    pub(crate) fn open_transaction(&self, sql: &str) -> Result<()> {
        let result = self.with_client(|c| c.batch_execute(sql));
        if result.is_err() {
            let mut slot = self.client.borrow_mut();
            if slot
                .as_mut()
                .is_some_and(|c| c.batch_execute("ROLLBACK").is_err())
            {
                *slot = None;
            }
        }
        result
    }

    /// `run` a statement of `sql`. A write outside any transaction gets a write transaction of
    /// its own, as a SQLite write takes the write lock: it queues behind the other writers and
    /// moves the change counter, so a live view sees it as it sees the record path's.
    fn autocommitted<T>(&self, sql: &str, run: impl FnOnce() -> Result<T>) -> Result<T> {
        if self.in_transaction.get() || !self.counts_changes.get() || !is_write(sql) {
            return run();
        }
        self.begin(Behavior::Immediate)?;
        match run() {
            Ok(value) => {
                self.batch_execute("COMMIT")?;
                Ok(value)
            }
            Err(e) => {
                // A failed statement's transaction is over either way; its error is the news.
                let _ = self.batch_execute("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Each row of `sql` through `f`, `page` rows a fetch from a cursor (in the caller's
    /// transaction: a cursor lives in one). Unnamed statements only, so PgBouncer's transaction
    /// mode holds; the cursor is closed with the transaction.
    pub(crate) fn for_each_row(
        &self,
        sql: &str,
        params: &[&dyn Param],
        page: usize,
        f: &mut dyn FnMut(postgres::Row) -> Result<()>,
    ) -> Result<()> {
        if !self.in_transaction.get() {
            return Err(Error::Database(
                "a cursor needs a transaction; none is open".into(),
            ));
        }
        self.statement(&format!(
            "DECLARE meterline_rows NO SCROLL CURSOR FOR {sql}"
        ))
        .execute(params)?;
        let fetch = format!("FETCH {page} FROM meterline_rows");
        loop {
            let rows = self.statement(&fetch).query(&[])?;
            let last_page = rows.len() < page;
            for row in rows {
                f(row)?;
            }
            if last_page {
                break;
            }
        }
        self.batch_execute("CLOSE meterline_rows")
    }

    pub(crate) fn statement(&self, sql: &str) -> PgStatement<'_> {
        let mut cache = self.translated.borrow_mut();
        let text = match cache.get(sql) {
            Some(text) => Arc::clone(text),
            None => {
                let text: Arc<str> = translate(sql).into();
                cache.insert(sql.to_owned(), Arc::clone(&text));
                text
            }
        };
        PgStatement { conn: self, text }
    }
}

/// A statement in Postgres' dialect.
pub(crate) struct PgStatement<'c> {
    conn: &'c PgConnection,
    text: Arc<str>,
}

impl PgStatement<'_> {
    pub(crate) fn execute(&mut self, params: &[&dyn Param]) -> Result<usize> {
        let args = args(params);
        self.conn.autocommitted(&self.text, || {
            self.conn.with_client(|c| {
                let mut rows = c.query_typed_raw(&self.text, args.iter().map(|a| (a, a.ty())))?;
                while postgres::fallible_iterator::FallibleIterator::next(&mut rows)?.is_some() {}
                Ok(rows.rows_affected().unwrap_or(0) as usize)
            })
        })
    }

    pub(crate) fn query(&mut self, params: &[&dyn Param]) -> Result<Vec<postgres::Row>> {
        let args = args(params);
        let typed: Vec<(&(dyn ToSql + Sync), Type)> = args
            .iter()
            .map(|a| (a as &(dyn ToSql + Sync), a.ty()))
            .collect();
        self.conn.autocommitted(&self.text, || {
            self.conn.with_client(|c| c.query_typed(&self.text, &typed))
        })
    }
}

/// Whether `sql` changes rows (what SQLite would take the write lock for).
fn is_write(sql: &str) -> bool {
    let verb = sql
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("");
    ["INSERT", "UPDATE", "DELETE"]
        .iter()
        .any(|w| verb.eq_ignore_ascii_case(w))
}

/// The SQLite phrases Postgres spells otherwise, each a general rule (a function's name),
/// never one statement's text: a statement both engines cannot read alike is written
/// otherwise (a time computed in Rust and bound, a window function) or becomes a
/// `Connection` method with a body per engine. Everything else is the SQL both speak; the
/// functions `json_extract` and `meterline_json_object` are defined by the Postgres schema to
/// behave as SQLite's.
const DIALECT: &[(&str, &str)] = &[("json_object(", "meterline_json_object(")];

/// A statement in Postgres' dialect: [`DIALECT`]'s phrases, no `INDEXED BY` hints (Postgres
/// plans on its own), and `?1` → `$1`, a bare `?` → the next number, outside quotes and
/// comments.
fn translate(sql: &str) -> String {
    let mut sql = sql.to_owned();
    for (sqlite, postgres) in DIALECT {
        sql = sql.replace(sqlite, postgres);
    }
    while let Some(at) = sql.find("INDEXED BY ") {
        let rest = &sql[at + "INDEXED BY ".len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        sql.replace_range(at..at + "INDEXED BY ".len() + end, "");
    }
    placeholders(&sql)
}

fn placeholders(sql: &str) -> String {
    let mut next = 0;
    // As SQLite numbers them: a bare `?` is one more than the largest so far.
    renumbered(sql, '?', |n| {
        next = n.map_or(next + 1, |n| next.max(n));
        Some(n.unwrap_or(next))
    })
}

/// `sql` with each `marker` outside quotes, and its digits, made `$` and the number `number`
/// gives for them (`None` when no digits follow); `None` from it leaves the text as it was.
/// `--` comments are dropped.
fn renumbered(
    sql: &str,
    marker: char,
    mut number: impl FnMut(Option<usize>) -> Option<usize>,
) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                out.push(c);
                for q in chars.by_ref() {
                    out.push(q);
                    if q == c {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                for q in chars.by_ref() {
                    if q == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            c if c == marker => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                match number(digits.parse().ok()) {
                    Some(n) => {
                        out.push('$');
                        out.push_str(&n.to_string());
                    }
                    None => {
                        out.push(c);
                        out.push_str(&digits);
                    }
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// A parameter as the wire carries it, with the type it is declared as.
#[derive(Debug)]
struct Arg<'a>(Value<'a>);

fn args<'a>(params: &'a [&'a dyn Param]) -> Vec<Arg<'a>> {
    params.iter().map(|p| Arg(p.value())).collect()
}

impl Arg<'_> {
    fn ty(&self) -> Type {
        match self.0 {
            Value::Integer(_) => Type::INT8,
            Value::Real(_) => Type::FLOAT8,
            Value::Text(_) => Type::TEXT,
            Value::Blob(_) => Type::BYTEA,
            Value::Integers(_) => Type::INT8_ARRAY,
            Value::Texts(_) => Type::TEXT_ARRAY,
            Value::Null(Kind::Integer) => Type::INT8,
            Value::Null(Kind::Real) => Type::FLOAT8,
            Value::Null(Kind::Text) => Type::TEXT,
            Value::Null(Kind::Blob) => Type::BYTEA,
            // Left for the server to infer from where the NULL goes.
            Value::Null(Kind::Unknown) => Type::UNKNOWN,
        }
    }
}

impl ToSql for Arg<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self.0 {
            Value::Null(_) => Ok(IsNull::Yes),
            Value::Integer(n) => n.to_sql(ty, out),
            Value::Real(x) => x.to_sql(ty, out),
            Value::Text(s) => s.to_sql(ty, out),
            Value::Blob(b) => b.to_sql(ty, out),
            Value::Integers(a) => a.to_sql(ty, out),
            Value::Texts(a) => a.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Any column, undecoded: to ask whether it is NULL.
struct Raw;

impl<'a> FromSql<'a> for Raw {
    fn from_sql(
        _: &Type,
        _: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw)
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

fn get<'a, T: FromSql<'a>>(row: &'a postgres::Row, idx: usize) -> Result<T> {
    row.try_get(idx)
        .map_err(|e| Error::Database(format!("column {idx}: {e}")))
}

fn column_type(row: &postgres::Row, idx: usize) -> Result<&Type> {
    row.columns()
        .get(idx)
        .map(|c| c.type_())
        .ok_or_else(|| Error::Database(format!("no column {idx}")))
}

pub(crate) fn is_null(row: &postgres::Row, idx: usize) -> Result<bool> {
    Ok(get::<Option<Raw>>(row, idx)?.is_none())
}

/// Integers come as BIGINT from the schema, but also as INTEGER (a literal, `CAST(… AS
/// INTEGER)`), NUMERIC (`SUM` of BIGINT) and BOOLEAN (a comparison, `EXISTS`).
pub(crate) fn integer(row: &postgres::Row, idx: usize) -> Result<i64> {
    let ty = column_type(row, idx)?;
    Ok(match *ty {
        Type::INT8 => get::<i64>(row, idx)?,
        Type::INT4 => i64::from(get::<i32>(row, idx)?),
        Type::INT2 => i64::from(get::<i16>(row, idx)?),
        Type::BOOL => i64::from(get::<bool>(row, idx)?),
        Type::NUMERIC => {
            let d = get::<rust_decimal::Decimal>(row, idx)?;
            rust_decimal::prelude::ToPrimitive::to_i64(&d.trunc()).ok_or_else(|| {
                Error::Database(format!("column {idx}: {d} does not fit a 64-bit integer"))
            })?
        }
        ref other => {
            return Err(Error::Database(format!(
                "column {idx} is {other}, not an integer"
            )));
        }
    })
}

pub(crate) fn real(row: &postgres::Row, idx: usize) -> Result<f64> {
    let ty = column_type(row, idx)?;
    Ok(match *ty {
        Type::FLOAT8 => get::<f64>(row, idx)?,
        Type::FLOAT4 => f64::from(get::<f32>(row, idx)?),
        Type::NUMERIC => {
            let d = get::<rust_decimal::Decimal>(row, idx)?;
            rust_decimal::prelude::ToPrimitive::to_f64(&d).unwrap_or(f64::NAN)
        }
        _ => integer(row, idx)? as f64,
    })
}

pub(crate) fn text(row: &postgres::Row, idx: usize) -> Result<String> {
    let ty = column_type(row, idx)?;
    match *ty {
        Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR | Type::UNKNOWN => get(row, idx),
        ref other => Err(Error::Database(format!(
            "column {idx} is {other}, not text"
        ))),
    }
}

/// Whether a text column holds exactly `expected`, read in place.
pub(crate) fn text_is(row: &postgres::Row, idx: usize, expected: &str) -> Result<bool> {
    Ok(get::<Option<&str>>(row, idx)? == Some(expected))
}

/// `f` of a text column, read in place.
pub(crate) fn text_with<R>(
    row: &postgres::Row,
    idx: usize,
    f: impl FnOnce(&str) -> R,
) -> Result<R> {
    Ok(f(get::<&str>(row, idx)?))
}

pub(crate) fn blob(row: &postgres::Row, idx: usize) -> Result<Vec<u8>> {
    get(row, idx)
}

pub(crate) fn owned(row: &postgres::Row, idx: usize) -> Result<OwnedValue> {
    if is_null(row, idx)? {
        return Ok(OwnedValue::Null);
    }
    let ty = column_type(row, idx)?.clone();
    Ok(match ty {
        Type::FLOAT8 | Type::FLOAT4 => OwnedValue::Real(real(row, idx)?),
        Type::INT8 | Type::INT4 | Type::INT2 | Type::BOOL | Type::NUMERIC => {
            OwnedValue::Integer(integer(row, idx)?)
        }
        Type::BYTEA => OwnedValue::Blob(blob(row, idx)?),
        _ => OwnedValue::Text(text(row, idx)?),
    })
}

#[cfg(test)]
mod tests {
    use super::translate;

    #[test]
    fn writes_are_told_from_reads_by_their_verb() {
        for write in [
            "INSERT INTO t VALUES (1)",
            "\n  update t SET a = 1",
            "DELETE FROM t",
        ] {
            assert!(super::is_write(write), "{write}");
        }
        for read in [
            "SELECT 1",
            "SELECT pg_advisory_unlock(1)",
            " WITH x AS (SELECT 1) SELECT 2",
        ] {
            assert!(!super::is_write(read), "{read}");
        }
    }

    #[test]
    fn placeholders_become_numbered_outside_quotes_and_comments() {
        assert_eq!(
            translate("SELECT ?1, '?', \"a?\" -- why?\n FROM t WHERE a = ?2 AND b = ?"),
            "SELECT $1, '?', \"a?\" \n FROM t WHERE a = $2 AND b = $3"
        );
        assert_eq!(translate("VALUES (?, ?, ?12)"), "VALUES ($1, $2, $12)");
        assert_eq!(
            translate("SELECT 1 FROM t INDEXED BY t_outbox WHERE a = ?1"),
            "SELECT 1 FROM t  WHERE a = $1"
        );
    }
}
