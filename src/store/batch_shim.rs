//! TEMPORARY SHIM (branch `serve`): `record_batch` with the signature branch `trust-store`
//! implements as one IMMEDIATE transaction. This stand-in records event by event; delete this
//! file when `trust-store` is merged.

use chrono::{DateTime, Utc};

use super::{RecordOutcome, RecordRequest, Store};
use crate::Result;
use crate::config::Config;

impl Store {
    /// Record `requests` in order; the outer error means nothing could be attempted, each inner
    /// result is that event's own outcome.
    pub fn record_batch(
        &mut self,
        config: &Config,
        requests: &[RecordRequest],
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<RecordOutcome>>> {
        Ok(requests
            .iter()
            .map(|r| self.record(config, r, now))
            .collect())
    }
}
