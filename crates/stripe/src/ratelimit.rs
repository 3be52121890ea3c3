//! A client-side rate limiter shared by the sync workers: requests are spaced evenly at the
//! configured rate, so a burst never trips Stripe's own limiter.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) struct RateLimiter {
    /// Time between two requests; `None` = unlimited.
    interval: Option<Duration>,
    next_slot: Mutex<Instant>,
}

impl RateLimiter {
    /// `0` means no limit.
    pub(crate) fn per_second(rate: u32) -> RateLimiter {
        RateLimiter {
            interval: (rate > 0).then(|| Duration::from_secs(1) / rate),
            next_slot: Mutex::new(Instant::now()),
        }
    }

    /// Wait for this caller's slot. Each caller reserves the next free slot under the lock and
    /// sleeps outside it, so waiting workers never block each other's bookkeeping.
    pub(crate) fn acquire(&self) {
        let wait = self.reserve(Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    /// Reserve the next free slot as seen at `now`; how long to wait for it.
    fn reserve(&self, now: Instant) -> Duration {
        let Some(interval) = self.interval else {
            return Duration::ZERO;
        };
        let mut next = self.next_slot.lock().unwrap_or_else(|p| p.into_inner());
        let slot = (*next).max(now);
        *next = slot + interval;
        slot - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_spaced_at_the_rate() {
        let limiter = RateLimiter::per_second(200);
        let start = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10 {
                        limiter.acquire();
                    }
                });
            }
        });
        // 40 requests at 200/s: the first is free, the other 39 take 5 ms each.
        assert!(
            start.elapsed() >= Duration::from_millis(190),
            "{:?}",
            start.elapsed()
        );
    }

    /// Count-based, no clock: the slots handed out to a burst are exactly one interval apart,
    /// so no window of one second ever holds more than `rate` requests (the upper bound), and
    /// none holds fewer than the burst allows (the lower bound).
    #[test]
    fn a_burst_gets_exactly_rate_slots_per_second() {
        let limiter = RateLimiter::per_second(25);
        let start = Instant::now();
        let waits: Vec<Duration> = (0..100).map(|_| limiter.reserve(start)).collect();
        for (i, wait) in waits.iter().enumerate() {
            assert_eq!(*wait, Duration::from_millis(40) * i as u32, "request {i}");
        }
        let in_first_second = waits
            .iter()
            .filter(|w| **w < Duration::from_secs(1))
            .count();
        assert_eq!(in_first_second, 25);
        // After a quiet spell the limiter does not save up slots for a later burst.
        let later = start + Duration::from_secs(60);
        assert_eq!(limiter.reserve(later), Duration::ZERO);
        assert_eq!(limiter.reserve(later), Duration::from_millis(40));
    }

    #[test]
    fn zero_is_unlimited() {
        let limiter = RateLimiter::per_second(0);
        let start = Instant::now();
        for _ in 0..100_000 {
            limiter.acquire();
        }
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
