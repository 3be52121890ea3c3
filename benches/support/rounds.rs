//! Timing the benches share: two paths in alternating rounds, so that a change in the
//! machine's load hits both alike, and the figures they print.

use std::ops::Range;
use std::time::{Duration, Instant};

/// Rounds each path's calls are cut into.
pub const ROUNDS: usize = 10;

/// `n` calls of each, in alternating rounds: the time of each.
pub fn alternate(
    n: usize,
    mut first: impl FnMut(usize),
    mut second: impl FnMut(usize),
) -> (Duration, Duration) {
    alternate_ranges(
        n,
        |range| range.for_each(&mut first),
        |range| range.for_each(&mut second),
    )
}

/// `0..n` cut into `ROUNDS` ranges, each given to `first` then to `second`: the time of each.
pub fn alternate_ranges(
    n: usize,
    mut first: impl FnMut(Range<usize>),
    mut second: impl FnMut(Range<usize>),
) -> (Duration, Duration) {
    let (mut first_took, mut second_took) = (Duration::ZERO, Duration::ZERO);
    let per_round = n.div_ceil(ROUNDS);
    for round in 0..ROUNDS {
        let range = round * per_round..((round + 1) * per_round).min(n);
        let started = Instant::now();
        first(range.clone());
        first_took += started.elapsed();
        let started = Instant::now();
        second(range);
        second_took += started.elapsed();
    }
    (first_took, second_took)
}

/// Calls per second.
pub fn rate(n: usize, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64()
}

/// Microseconds per call.
pub fn micros(n: usize, took: Duration) -> f64 {
    took.as_secs_f64() * 1e6 / n as f64
}
