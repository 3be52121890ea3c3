use std::io::Write;
use std::process::ExitCode;

use chrono::{DateTime, Utc};

use super::Context;
use super::output::io_error;
use crate::store::{Cell, ExportFilter, ExportKind};
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Comma-separated values with a header row.
    #[default]
    Csv,
    /// JSON Lines: one object per line.
    Json,
}

/// What to export (the store's [`ExportKind`], named for the command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// One row per usage event.
    Events,
    /// One row per customer × billing period, with the plan terms in force.
    Usage,
    /// One row per credit ledger entry (grant, void, …), with its grant's terms.
    Credits,
}

impl From<Kind> for ExportKind {
    fn from(kind: Kind) -> ExportKind {
        match kind {
            Kind::Events => ExportKind::Events,
            Kind::Usage => ExportKind::Usage,
            Kind::Credits => ExportKind::Credits,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to export.
    pub kind: Kind,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Only this customer.
    #[arg(long)]
    pub customer: Option<String>,
    /// From this instant (inclusive; event time, period start for usage, entry time for
    /// credits).
    #[arg(long, value_parser = crate::billing::parse_ts)]
    pub since: Option<DateTime<Utc>>,
    /// Up to this instant (exclusive).
    #[arg(long, value_parser = crate::billing::parse_ts)]
    pub until: Option<DateTime<Utc>>,
}

/// Stream the rows to stdout; memory stays flat however many there are.
pub fn exec(ctx: &Context, args: Args) -> Result<ExitCode> {
    let store = ctx.store()?;
    // Without a readable plans.toml the export still runs; only the meters' Stripe events
    // (and which meter an empty period shows) are unknown then.
    let config = ctx.config().ok();
    let filter = ExportFilter {
        customer: args.customer,
        since: args.since,
        until: args.until,
    };
    let kind = ExportKind::from(args.kind);
    let columns = kind.columns();
    let out = std::io::BufWriter::new(std::io::stdout().lock());
    let result = match args.format {
        Format::Csv => {
            let mut csv = csv::Writer::from_writer(out);
            csv.write_record(columns).map_err(csv_error)?;
            store
                .export(config.as_ref(), kind, &filter, |cells| {
                    write_csv_row(&mut csv, cells).map_err(csv_error)
                })
                .and_then(|_| csv.flush().map_err(io_error))
        }
        Format::Json => {
            let mut out = out;
            store
                .export(config.as_ref(), kind, &filter, |cells| {
                    let object: serde_json::Map<String, serde_json::Value> = columns
                        .iter()
                        .zip(cells)
                        .map(|(name, cell)| (name.to_string(), json_value(cell)))
                        .collect();
                    serde_json::to_writer(&mut out, &object).map_err(|e| io_error(e.into()))?;
                    out.write_all(b"\n").map_err(io_error)
                })
                .and_then(|_| out.flush().map_err(io_error))
        }
    };
    match result {
        Err(Error::OutputClosed) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e),
        Ok(()) => Ok(ExitCode::SUCCESS),
    }
}

/// One row, each cell made spreadsheet-safe by `Cell::csv_text`.
fn write_csv_row(csv: &mut csv::Writer<impl Write>, cells: &[Cell]) -> csv::Result<()> {
    for cell in cells {
        csv.write_field(cell.csv_text().as_bytes())?;
    }
    csv.write_record(None::<&[u8]>)
}

fn json_value(cell: &Cell) -> serde_json::Value {
    match cell {
        Cell::Null => serde_json::Value::Null,
        Cell::Integer(n) => (*n).into(),
        Cell::Text(t) | Cell::Decimal(t) => (*t).into(),
    }
}

fn csv_error(e: csv::Error) -> Error {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => io_error(io),
        other => Error::InvalidInput(format!("csv: {other:?}")),
    }
}
