//! The one notion of "now" that can be pretended (`--now`, tests, screenshots): the real
//! clock, a fixed instant, or a pretended start that moves on with real time.

use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Option<DateTime<Utc>>,
    /// Set when the pretended time moves on from `origin` with real time.
    started: Option<Instant>,
}

impl Clock {
    /// The real clock.
    pub fn real() -> Clock {
        Clock {
            origin: None,
            started: None,
        }
    }

    /// Always `at`: screens drawn at a fixed instant (tests, screenshots, `--now` in the
    /// dashboard).
    pub fn fixed(at: DateTime<Utc>) -> Clock {
        Clock {
            origin: Some(at),
            started: None,
        }
    }

    /// `at` now, then moving on with real time (a server started with `--now`).
    pub fn starting_at(at: DateTime<Utc>) -> Clock {
        Clock {
            origin: Some(at),
            started: Some(Instant::now()),
        }
    }

    /// The real clock without `pinned`, else a fixed instant.
    pub fn fixed_or_real(pinned: Option<DateTime<Utc>>) -> Clock {
        pinned.map_or_else(Clock::real, Clock::fixed)
    }

    pub fn now(&self) -> DateTime<Utc> {
        match (self.origin, self.started) {
            (None, _) => Utc::now(),
            (Some(origin), None) => origin,
            (Some(origin), Some(started)) => {
                let elapsed = TimeDelta::from_std(started.elapsed()).unwrap_or_default();
                origin.checked_add_signed(elapsed).unwrap_or(origin)
            }
        }
    }
}
