//! A batch recorded in parts, each part event by event or all or nothing. Serve's group
//! commit records many requests in one transaction; a drop-in route's request (a CloudEvents
//! or Lago batch) must record all its events or none, checked once, by the record path
//! itself, and answered with each refused event's own error.

use std::borrow::Cow;
use std::ops::Range;

use chrono::{DateTime, Utc};

use super::Store;
use crate::config::Config;
use crate::{Error, RecordOutcome, RecordRequest, Result};

/// How the events of one [`Part`] are decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Atomicity {
    /// Each event on its own, as `record_batch`: an invalid event is refused alone.
    EachEvent,
    /// One invalid event (any per-event error: input, time, meter, properties, customer,
    /// idempotency conflict) and none of the part is recorded. A hard cap is not an invalid
    /// event: a capped event is refused alone, the part's others are recorded, as in
    /// `record_batch` (the drop-in protocols answer a cap per event).
    AllOrNothing,
}

/// `len` consecutive events of a batch, decided with `atomicity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub len: usize,
    pub atomicity: Atomicity,
}

/// What a refusal is about, when its error's kind does not say it (an unknown customer, an
/// idempotency conflict do), so that a protocol can name its own field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// The event's time: out of range, too far ahead, before the customer's anchor.
    Time,
    /// The meter named is not in plans.toml (or a meter and a type are named at once).
    Meter,
    /// The event type named is not in plans.toml.
    Type,
    /// The properties as a whole (too many, a name or a value the rules refuse).
    Properties,
    /// This property, which the event's meter reads.
    Property(String),
}

/// Why the record path refused one event: the error it would have had alone, and what it
/// is about.
#[derive(Debug)]
pub struct Refusal {
    pub field: Option<Field>,
    pub error: Error,
}

impl Refusal {
    pub(crate) fn about(field: Field, error: Error) -> Refusal {
        Refusal {
            field: Some(field),
            error,
        }
    }
}

impl From<Error> for Refusal {
    fn from(error: Error) -> Refusal {
        Refusal { field: None, error }
    }
}

/// One part's answer.
#[derive(Debug)]
pub enum PartOutcome {
    /// Committed: one result per event, in order. An all-or-nothing part's are all `Ok`
    /// (recorded, a duplicate, or refused by a hard cap).
    Decided(Vec<Result<RecordOutcome>>),
    /// An all-or-nothing part with invalid events: none of it was recorded. Each refused
    /// event's index within the part and its refusal, in order.
    Refused(Vec<(usize, Refusal)>),
}

/// One event's result inside a pass.
pub(crate) type Decision = std::result::Result<RecordOutcome, Refusal>;

/// Record many events with one transaction committed, in parts.
impl Store {
    /// `requests` as one all-or-nothing part: recorded together, or, if any is invalid, not
    /// at all, with every invalid event's refusal.
    pub fn record_all_or_nothing(
        &mut self,
        config: &Config,
        requests: &[RecordRequest],
        now: DateTime<Utc>,
    ) -> Result<PartOutcome> {
        let part = Part {
            len: requests.len(),
            atomicity: Atomicity::AllOrNothing,
        };
        self.record_parts(config, requests, &[part], now)?
            .pop()
            .ok_or_else(|| Error::Database("record_parts gave no outcome".into()))
    }

    /// `requests`, cut into consecutive `parts`, decided in order in one committed
    /// transaction, as `record_batch` decides them, except that an all-or-nothing part with
    /// an invalid event is left out whole. It is found out in a first pass, which is then
    /// rolled back and run again without that part (events after it may be decided
    /// otherwise once it is gone: a key it used, the room it took under a cap), until a
    /// pass has no such part and commits. A batch without one runs once, as `record_batch`.
    ///
    /// Outer `Err`: the transaction failed and nothing was committed.
    pub fn record_parts(
        &mut self,
        config: &Config,
        requests: &[RecordRequest],
        parts: &[Part],
        now: DateTime<Utc>,
    ) -> Result<Vec<PartOutcome>> {
        let ranges = ranges(parts);
        if ranges.last().map_or(0, |r| r.end) != requests.len() {
            return Err(Error::InvalidInput(format!(
                "the parts cover {} events, the batch has {}",
                ranges.last().map_or(0, |r| r.end),
                requests.len()
            )));
        }
        let mut refused: Vec<Option<Vec<(usize, Refusal)>>> =
            std::iter::repeat_with(|| None).take(parts.len()).collect();
        loop {
            // The parts still in, each with its range in this pass's batch.
            let mut live = Vec::new();
            let mut offset = 0;
            for (i, range) in ranges.iter().enumerate() {
                if refused[i].is_none() {
                    live.push((i, offset..offset + range.len()));
                    offset += range.len();
                }
            }
            let batch: Cow<[RecordRequest]> = if live.len() == parts.len() {
                Cow::Borrowed(requests)
            } else {
                Cow::Owned(
                    live.iter()
                        .flat_map(|(i, _)| requests[ranges[*i].clone()].iter().cloned())
                        .collect(),
                )
            };
            let invalid = |results: &[Decision]| -> Vec<usize> {
                live.iter()
                    .filter(|(i, range)| {
                        parts[*i].atomicity == Atomicity::AllOrNothing
                            && results[range.clone()].iter().any(|r| r.is_err())
                    })
                    .map(|(i, _)| *i)
                    .collect()
            };
            let (results, committed) =
                self.record_pass(config, &batch, now, |results| invalid(results).is_empty())?;
            if committed {
                return Ok(outcomes(refused, &live, results));
            }
            let newly = invalid(&results);
            let mut results: Vec<Option<Decision>> = results.into_iter().map(Some).collect();
            for (i, range) in &live {
                if newly.contains(i) {
                    let refusals = results[range.clone()]
                        .iter_mut()
                        .enumerate()
                        .filter_map(|(index, r)| match r.take() {
                            Some(Err(refusal)) => Some((index, refusal)),
                            _ => None,
                        })
                        .collect();
                    refused[*i] = Some(refusals);
                }
            }
            if refused.iter().all(Option::is_some) {
                return Ok(outcomes(refused, &[], Vec::new()));
            }
        }
    }
}

/// Each part's range in the whole batch.
fn ranges(parts: &[Part]) -> Vec<Range<usize>> {
    let mut start = 0;
    parts
        .iter()
        .map(|part| {
            let range = start..start + part.len;
            start = range.end;
            range
        })
        .collect()
}

/// Every part's outcome: the refused ones as refused, the `live` ones from the committed
/// pass's `results` (each at its range there).
fn outcomes(
    refused: Vec<Option<Vec<(usize, Refusal)>>>,
    live: &[(usize, Range<usize>)],
    results: Vec<Decision>,
) -> Vec<PartOutcome> {
    let mut results = results.into_iter();
    let mut live = live.iter().peekable();
    refused
        .into_iter()
        .enumerate()
        .map(|(i, refused)| match refused {
            Some(refusals) => PartOutcome::Refused(refusals),
            None => {
                let len = live.next_if(|(at, _)| *at == i).map_or(0, |(_, r)| r.len());
                PartOutcome::Decided(
                    results
                        .by_ref()
                        .take(len)
                        .map(|r| r.map_err(|refusal| refusal.error))
                        .collect(),
                )
            }
        })
        .collect()
}
