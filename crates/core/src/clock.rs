//! The one notion of "now" that can be pretended (`--now`, tests, screenshots): the real
//! clock, a fixed instant, or a pretended start that moves on with real time (a server
//! started with `--now`, and a sync run, which dates its start and then its answers).

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};

/// The real clock, a fixed instant, or a start that moves on with real time.
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

    /// The current instant by this clock.
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

    /// Where this clock's time starts: the fixed or the pretended instant (a run's start, for
    /// a clock made by `starting_at`); the real clock has no start of its own and gives now.
    pub fn start(&self) -> DateTime<Utc> {
        self.origin.unwrap_or_else(Utc::now)
    }

    /// The real time a moving clock has run since `starting_at`; zero for the real and the
    /// fixed clocks.
    pub fn elapsed(&self) -> Duration {
        self.started.map(|s| s.elapsed()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moving_clock_keeps_its_start() {
        let at = DateTime::parse_from_rfc3339("2025-03-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let moving = Clock::starting_at(at);
        assert_eq!(moving.start(), at);
        assert!(moving.now() >= at);
        assert!(moving.now() - at <= TimeDelta::from_std(moving.elapsed()).unwrap());
        let fixed = Clock::fixed(at);
        assert_eq!((fixed.start(), fixed.now()), (at, at));
        assert_eq!(fixed.elapsed(), Duration::ZERO);
    }
}
