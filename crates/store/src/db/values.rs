//! The values that cross between Rust and either engine: [`Param`] for what a statement
//! binds, [`Column`] for what a row gives back. Both engines see the same five kinds, so a
//! column reads the same on each: integers as BIGINT, reals as DOUBLE PRECISION, text, blobs
//! and NULL. A `bool` is stored as the integer 0 or 1, as SQLite always did.

use rusqlite::types::{ToSqlOutput, ValueRef};

use crate::{Error, Result};

/// A value as either engine receives it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value<'a> {
    /// NULL, of the kind the parameter has when it is not (Postgres types every parameter).
    Null(Kind),
    Integer(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
    /// Arrays, for PostgreSQL's `unnest` (a batch's rows as one parameter per column); SQLite
    /// has no arrays and refuses them.
    Integers(&'a [Option<i64>]),
    Texts(&'a [Option<&'a str>]),
}

/// What a value is, for a NULL that Postgres must still give a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Integer,
    Real,
    Text,
    Blob,
    /// A NULL built at run time: the server infers it from where it goes.
    Unknown,
}

/// The kind of a type's values, known without one (for its `None`).
pub(crate) trait Typed {
    const KIND: Kind;
}

impl<T: Typed + ?Sized> Typed for &T {
    const KIND: Kind = T::KIND;
}

/// A value a statement can bind.
pub(crate) trait Param {
    fn value(&self) -> Value<'_>;
}

/// An owned value: for parameter lists built at run time, and for readers that take a
/// column as whatever it holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OwnedValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Param for OwnedValue {
    fn value(&self) -> Value<'_> {
        match self {
            OwnedValue::Null => Value::Null(Kind::Unknown),
            OwnedValue::Integer(n) => Value::Integer(*n),
            OwnedValue::Real(x) => Value::Real(*x),
            OwnedValue::Text(s) => Value::Text(s),
            OwnedValue::Blob(b) => Value::Blob(b),
        }
    }
}

impl From<i64> for OwnedValue {
    fn from(n: i64) -> Self {
        OwnedValue::Integer(n)
    }
}

impl From<String> for OwnedValue {
    fn from(s: String) -> Self {
        OwnedValue::Text(s)
    }
}

impl<T: Param + ?Sized> Param for &T {
    fn value(&self) -> Value<'_> {
        (**self).value()
    }
}

impl<T: Param + Typed> Param for Option<T> {
    fn value(&self) -> Value<'_> {
        self.as_ref().map_or(Value::Null(T::KIND), Param::value)
    }
}

macro_rules! integer_params {
    ($($t:ty)+) => {$(
        impl Param for $t {
            fn value(&self) -> Value<'_> {
                Value::Integer(*self as i64)
            }
        }
        impl Typed for $t {
            const KIND: Kind = Kind::Integer;
        }
    )+};
}
// u64 and usize are counts and ids far below i64::MAX; `as` keeps the call sites as they were.
integer_params!(i64 i32 u32 u16 u8 u64 usize);

impl Typed for bool {
    const KIND: Kind = Kind::Integer;
}
impl Typed for f64 {
    const KIND: Kind = Kind::Real;
}
impl Typed for str {
    const KIND: Kind = Kind::Text;
}
impl Typed for String {
    const KIND: Kind = Kind::Text;
}
impl Typed for [u8] {
    const KIND: Kind = Kind::Blob;
}
impl Typed for Vec<u8> {
    const KIND: Kind = Kind::Blob;
}

impl Param for bool {
    fn value(&self) -> Value<'_> {
        Value::Integer(i64::from(*self))
    }
}

impl Param for f64 {
    fn value(&self) -> Value<'_> {
        Value::Real(*self)
    }
}

impl Param for str {
    fn value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl Param for String {
    fn value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl Param for [u8] {
    fn value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}

impl Param for Vec<u8> {
    fn value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}

impl Param for Vec<Option<i64>> {
    fn value(&self) -> Value<'_> {
        Value::Integers(self)
    }
}

impl Param for Vec<Option<&str>> {
    fn value(&self) -> Value<'_> {
        Value::Texts(self)
    }
}

impl rusqlite::ToSql for dyn Param + '_ {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.value() {
            Value::Null(_) => ValueRef::Null,
            Value::Integer(n) => ValueRef::Integer(n),
            Value::Real(x) => ValueRef::Real(x),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
            Value::Integers(_) | Value::Texts(_) => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    "SQLite has no arrays".into(),
                ));
            }
        }))
    }
}

/// A value a row's column can be read as.
pub(crate) trait Column: Sized {
    fn from_sqlite(value: ValueRef<'_>, idx: usize) -> Result<Self>;
    #[cfg(feature = "postgres")]
    fn from_postgres(row: &::postgres::Row, idx: usize) -> Result<Self>;
}

fn wrong_type(idx: usize, wanted: &str, found: &str) -> Error {
    Error::Database(format!("column {idx} holds {found}, not {wanted}"))
}

fn sqlite_kind(value: ValueRef<'_>) -> &'static str {
    match value {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "an integer",
        ValueRef::Real(_) => "a real",
        ValueRef::Text(_) => "text",
        ValueRef::Blob(_) => "a blob",
    }
}

impl<T: Column> Column for Option<T> {
    fn from_sqlite(value: ValueRef<'_>, idx: usize) -> Result<Self> {
        match value {
            ValueRef::Null => Ok(None),
            v => T::from_sqlite(v, idx).map(Some),
        }
    }
    #[cfg(feature = "postgres")]
    fn from_postgres(row: &::postgres::Row, idx: usize) -> Result<Self> {
        if super::postgres::is_null(row, idx)? {
            Ok(None)
        } else {
            T::from_postgres(row, idx).map(Some)
        }
    }
}

impl Column for i64 {
    fn from_sqlite(value: ValueRef<'_>, idx: usize) -> Result<Self> {
        match value {
            ValueRef::Integer(n) => Ok(n),
            v => Err(wrong_type(idx, "an integer", sqlite_kind(v))),
        }
    }
    #[cfg(feature = "postgres")]
    fn from_postgres(row: &::postgres::Row, idx: usize) -> Result<Self> {
        super::postgres::integer(row, idx)
    }
}

macro_rules! narrow_integer_columns {
    ($($t:ty)+) => {$(
        impl Column for $t {
            fn from_sqlite(value: ValueRef<'_>, idx: usize) -> Result<Self> {
                narrow(i64::from_sqlite(value, idx)?, idx)
            }
            #[cfg(feature = "postgres")]
            fn from_postgres(row: &::postgres::Row, idx: usize) -> Result<Self> {
                narrow(i64::from_postgres(row, idx)?, idx)
            }
        }
    )+};
}
narrow_integer_columns!(i32 u32 u64 usize);

fn narrow<T: TryFrom<i64>>(n: i64, idx: usize) -> Result<T> {
    T::try_from(n).map_err(|_| Error::Database(format!("column {idx}: {n} is out of range")))
}

impl Column for bool {
    fn from_sqlite(value: ValueRef<'_>, idx: usize) -> Result<Self> {
        Ok(i64::from_sqlite(value, idx)? != 0)
    }
    #[cfg(feature = "postgres")]
    fn from_postgres(row: &::postgres::Row, idx: usize) -> Result<Self> {
        Ok(super::postgres::integer(row, idx)? != 0)
    }
}

impl Column for f64 {
    fn from_sqlite(value: ValueRef<'_>, idx: usize) -> Result<Self> {
        match value {
            ValueRef::Real(x) => Ok(x),
            ValueRef::Integer(n) => Ok(n as f64),
            v => Err(wrong_type(idx, "a number", sqlite_kind(v))),
        }
    }
    #[cfg(feature = "postgres")]
    fn from_postgres(row: &::postgres::Row, idx: usize) -> Result<Self> {
        super::postgres::real(row, idx)
    }
}

impl Column for String {
    fn from_sqlite(value: ValueRef<'_>, idx: usize) -> Result<Self> {
        match value {
            ValueRef::Text(t) => String::from_utf8(t.to_vec())
                .map_err(|_| Error::Database(format!("column {idx} is not valid UTF-8"))),
            v => Err(wrong_type(idx, "text", sqlite_kind(v))),
        }
    }
    #[cfg(feature = "postgres")]
    fn from_postgres(row: &::postgres::Row, idx: usize) -> Result<Self> {
        super::postgres::text(row, idx)
    }
}

impl Column for Vec<u8> {
    fn from_sqlite(value: ValueRef<'_>, idx: usize) -> Result<Self> {
        match value {
            ValueRef::Blob(b) => Ok(b.to_vec()),
            v => Err(wrong_type(idx, "a blob", sqlite_kind(v))),
        }
    }
    #[cfg(feature = "postgres")]
    fn from_postgres(row: &::postgres::Row, idx: usize) -> Result<Self> {
        super::postgres::blob(row, idx)
    }
}

impl Column for OwnedValue {
    fn from_sqlite(value: ValueRef<'_>, _idx: usize) -> Result<Self> {
        Ok(match value {
            ValueRef::Null => OwnedValue::Null,
            ValueRef::Integer(n) => OwnedValue::Integer(n),
            ValueRef::Real(x) => OwnedValue::Real(x),
            ValueRef::Text(t) => OwnedValue::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => OwnedValue::Blob(b.to_vec()),
        })
    }
    #[cfg(feature = "postgres")]
    fn from_postgres(row: &::postgres::Row, idx: usize) -> Result<Self> {
        super::postgres::owned(row, idx)
    }
}
