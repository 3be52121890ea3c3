//! The server's clock: the real one, or `--now` advanced by real time (tests and what-ifs).

use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};

#[derive(Clone, Copy)]
pub struct Clock {
    start: Instant,
    origin: Option<DateTime<Utc>>,
}

impl Clock {
    pub fn new(pinned: Option<DateTime<Utc>>) -> Clock {
        Clock {
            start: Instant::now(),
            origin: pinned,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self.origin {
            None => Utc::now(),
            Some(origin) => {
                let elapsed = TimeDelta::from_std(self.start.elapsed()).unwrap_or_default();
                origin.checked_add_signed(elapsed).unwrap_or(origin)
            }
        }
    }
}
