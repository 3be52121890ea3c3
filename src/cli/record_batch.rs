//! `meterline record --batch FILE|-`: NDJSON events recorded through `Store::record_batch`,
//! 1,000 events a transaction. A line that is not a valid event fails only itself. Ctrl-C or
//! SIGTERM stops after the transaction in progress and says where to resume.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use serde::Serialize;

use super::Context;
use super::output::REFUSED;
use crate::wire::{EventIn, EventOut, status_of};
use crate::{Error, RecordRequest, Result};

/// Events per transaction.
const CHUNK: usize = 1000;

#[derive(Serialize)]
struct LineError<'a> {
    line: usize,
    status: u16,
    error: ErrorJson<'a>,
}

#[derive(Serialize)]
struct ErrorJson<'a> {
    code: &'a str,
    message: &'a str,
}

#[derive(Default)]
struct Totals {
    recorded: u64,
    duplicate: u64,
    refused: u64,
    invalid: u64,
}

pub fn exec(ctx: &Context, path: &Path, json: bool) -> Result<ExitCode> {
    let config = ctx.config()?;
    let mut store = ctx.write_store()?;
    let input: Box<dyn BufRead> = if path == Path::new("-") {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(path)
            .map_err(|e| Error::InvalidInput(format!("cannot read {}: {e}", path.display())))?;
        Box::new(BufReader::new(file))
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut totals = Totals::default();
    let cancel = super::signals::cancel_on_signals()?;
    // The last line whose event is committed (or refused, or invalid): every line up to it
    // has its result printed.
    let mut done = 0;
    // (line number, parsed request or the reason it is not one)
    let mut chunk: Vec<(usize, std::result::Result<RecordRequest, String>)> = Vec::new();
    let mut commit =
        |chunk: &mut Vec<_>| flush(ctx, &config, &mut store, chunk, json, &mut out, &mut totals);
    for (index, line) in input.lines().enumerate() {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        let line = line.map_err(|e| Error::InvalidInput(format!("cannot read input: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed = EventIn::parse(line.as_bytes()).map(|e| e.into_request(ctx.now));
        chunk.push((index + 1, parsed));
        if chunk.len() == CHUNK {
            done = index + 1;
            commit(&mut chunk)?;
        }
    }
    let cancelled = cancel.load(Ordering::Relaxed);
    if !cancelled {
        done = chunk.last().map_or(done, |(line, _)| *line);
        commit(&mut chunk)?;
    }
    out.flush().ok();
    drop(out);
    eprintln!(
        "recorded {}, duplicate {}, refused {}, invalid {}",
        totals.recorded, totals.duplicate, totals.refused, totals.invalid
    );
    if cancelled {
        let next = done + 1;
        let resume = if path == Path::new("-") {
            format!("resume from line {next} of the input")
        } else {
            format!(
                "resume with `tail -n +{next} {} | meterline record --batch -`",
                crate::sanitize::sanitize(&path.display().to_string())
            )
        };
        eprintln!(
            "meterline record: cancelled; lines 1 to {done} are done (their results are above), \
             the rest are not recorded: {resume}"
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(if totals.invalid > 0 {
        ExitCode::from(2)
    } else if totals.refused > 0 {
        ExitCode::from(REFUSED)
    } else {
        ExitCode::SUCCESS
    })
}

#[allow(clippy::too_many_arguments)]
fn flush(
    ctx: &Context,
    config: &crate::Config,
    store: &mut crate::Store,
    chunk: &mut Vec<(usize, std::result::Result<RecordRequest, String>)>,
    json: bool,
    out: &mut impl Write,
    totals: &mut Totals,
) -> Result<()> {
    if chunk.is_empty() {
        return Ok(());
    }
    let valid: Vec<RecordRequest> = chunk
        .iter()
        .filter_map(|(_, p)| p.as_ref().ok().cloned())
        .collect();
    let mut results = store.record_batch(config, &valid, ctx.now)?.into_iter();
    // Printed as soon as committed: a reader sees each transaction's results at once.
    for (line, parsed) in chunk.drain(..) {
        let result = match parsed {
            Ok(request) => results
                .next()
                .unwrap_or_else(|| Err(Error::Database("record_batch gave fewer results".into())))
                .map(|outcome| (request, outcome)),
            Err(message) => Err(Error::InvalidInput(message)),
        };
        match result {
            Ok((request, outcome)) => {
                let counter = if outcome.recorded {
                    &mut totals.recorded
                } else if outcome.duplicate {
                    &mut totals.duplicate
                } else {
                    &mut totals.refused
                };
                *counter += 1;
                if json {
                    let line =
                        serde_json::to_string(&EventOut::new(&outcome, Some(status_of(&outcome))))
                            .map_err(|e| Error::Output(e.to_string()))?;
                    writeln!(out, "{line}").ok();
                } else if !outcome.recorded && !outcome.duplicate {
                    for why in super::record::refusals(config, &request, &outcome) {
                        eprintln!("line {line}: refused: {why}");
                    }
                }
            }
            Err(e) => {
                totals.invalid += 1;
                let api = crate::server::ApiError::from(e);
                if json {
                    let body = LineError {
                        line,
                        status: api.status.as_u16(),
                        error: ErrorJson {
                            code: api.code,
                            message: &api.message,
                        },
                    };
                    writeln!(
                        out,
                        "{}",
                        serde_json::to_string(&body).map_err(|e| Error::Output(e.to_string()))?
                    )
                    .ok();
                } else {
                    eprintln!("line {line}: {}", api.message);
                }
            }
        }
    }
    out.flush().ok();
    Ok(())
}
