//! `cargo bench --bench windows`: rolling-window limits (issue 28), each figure next to its
//! floor measured in the same run. The plan limits its one meter over a 5-hour sliding and a
//! 7-day fixed window (limits too high to refuse: every event is decided, none is turned
//! away); the floor is the same plan without limits.
//! - `record_batch` with both windows against the same batches without, in alternating
//!   rounds, on SQLite and on a local PostgreSQL (Debian's package, started as the tests start
//!   it): live batches (every event at now), and a backfill (one event a second, in order).
//!   Target: >= 0.8x.
//! - `metered_check` of a customer with 100,000 events in the last 7 days, against the same
//!   check without windows. Target: < 30 µs.
//! - what a window costs as it fills: the check with 1,000, 100,000 and 1,000,000 events in
//!   the last 5 hours. Target: flat.
//!
//! `METERLINE_BENCH_EVENTS` (default 100,000) sizes the batches, `METERLINE_BENCH_POSTGRES=0`
//! skips PostgreSQL, `METERLINE_BENCH_CASE=batch`, `check` or `cost` runs one part on SQLite,
//! `METERLINE_BENCH_CASE=postgres` only the batches on PostgreSQL.

#[path = "support/rounds.rs"]
mod rounds;

#[path = "../tests/testsuite/support/postgres.rs"]
#[allow(dead_code)]
mod pg;

use std::hint::black_box;
use std::path::Path;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use meterline::store::NewCustomer;
use meterline::{Config, RecordRequest, Store};
use rounds::{alternate, alternate_ranges, micros, rate};

const BATCH: usize = 500;
const CUSTOMERS: usize = 8;

const PLAIN: &str = r#"
[[plans]]
id = "free"
[[plans]]
id = "pro"
"#;

/// `PLAIN` with the two windows on pro.
const WINDOWED: &str = r#"
[[plans]]
id = "free"
[[plans]]
id = "pro"
[[plans.limits]]
window = "5h"
limit = 1000000000000000
[[plans.limits]]
window = "7d"
kind = "fixed"
limit = 1000000000000000
"#;

fn number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn verdict(met: bool) -> &'static str {
    if met { "meets" } else { "BELOW" }
}

struct Configs {
    plain: Config,
    windowed: Config,
}

fn main() {
    let events = number("METERLINE_BENCH_EVENTS", 100_000);
    let configs = Configs {
        plain: Config::parse(PLAIN, "plain").expect("plans"),
        windowed: Config::parse(WINDOWED, "windowed").expect("plans"),
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let only = std::env::var("METERLINE_BENCH_CASE").ok();
    let runs = |case: &str| only.as_deref().is_none_or(|o| o == case);

    if runs("batch") {
        println!("record_batch on SQLite: {events} events, batches of {BATCH}");
        batches(
            &configs,
            [&sqlite("p1.db"), &sqlite("w1.db")],
            events,
            Spread::Live,
        );
        batches(
            &configs,
            [&sqlite("p2.db"), &sqlite("w2.db")],
            events,
            Spread::Backfill,
        );
    }
    if runs("check") {
        check(&configs, &sqlite("check.db"));
    }
    if runs("cost") {
        println!("check as the 5-hour window fills (SQLite)");
        for (i, n) in [1_000, 100_000, 1_000_000].into_iter().enumerate() {
            cost(&configs, &sqlite(&format!("cost{i}.db")), n);
        }
    }
    let others_only = only.as_deref().is_some_and(|o| o != "postgres");
    if others_only || std::env::var("METERLINE_BENCH_POSTGRES").as_deref() == Ok("0") {
        return;
    }
    let server = pg::PgServer::private();
    let half = events / 2;
    println!("record_batch on PostgreSQL (fsync off, as the test server): {half} events");
    let urls = |_| [server.fresh_database(), server.fresh_database()];
    for spread in [Spread::Live, Spread::Backfill] {
        let [plain, windowed] = urls(());
        batches(&configs, [&plain, &windowed], half, spread);
    }
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn customer(i: usize) -> String {
    format!("cust{}", i % CUSTOMERS)
}

/// A store on `url` with the customers on pro.
fn fixture(url: &str, config: &Config) -> Store {
    let mut store = Store::open(Path::new(url)).expect("open");
    let anchor = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    for i in 0..CUSTOMERS {
        let customer = NewCustomer {
            id: customer(i),
            name: None,
            plan_id: "pro".into(),
            stripe_customer_id: None,
            billing_anchor: Some(anchor),
        };
        store
            .add_customer(config, &customer, now())
            .expect("customer");
    }
    store
}

#[derive(Clone, Copy, PartialEq)]
enum Spread {
    /// Every event at now: what serve's rounds and a live `record --batch` send.
    Live,
    /// One event a second, oldest first, ending now: an import.
    Backfill,
}

/// `n` events of 100 units for the first customer, as `spread` places them before `at`.
fn stream(n: usize, at: DateTime<Utc>, spread: Spread) -> Vec<RecordRequest> {
    (0..n)
        .map(|i| {
            let when = match spread {
                Spread::Live => at,
                Spread::Backfill => at - TimeDelta::seconds((n - i) as i64),
            };
            RecordRequest::new(&customer(0), 100, when)
        })
        .collect()
}

/// The same batches without windows and with both, in alternating rounds.
fn batches(configs: &Configs, [plain_url, windowed_url]: [&str; 2], n: usize, spread: Spread) {
    let mut plain = fixture(plain_url, &configs.plain);
    let mut windowed = fixture(windowed_url, &configs.windowed);
    let at = now();
    let all = stream(n, at, spread);
    let run = |store: &mut Store, config: &Config, range: std::ops::Range<usize>| {
        for chunk in all[range].chunks(BATCH) {
            let answers = store.record_batch(config, chunk, at).expect("batch");
            assert!(answers.iter().all(|a| a.as_ref().is_ok_and(|o| o.recorded)));
        }
    };
    let (plain_took, windowed_took) = alternate_ranges(
        n,
        |range| run(&mut plain, &configs.plain, range),
        |range| run(&mut windowed, &configs.windowed, range),
    );
    // Exact: the 5-hour window holds every event of its last 5 hours.
    let check = windowed
        .metered_check(&configs.windowed, &customer(0), at)
        .unwrap();
    let in_window = match spread {
        Spread::Live => n,
        Spread::Backfill => n.min(5 * 3600 - 1),
    };
    assert_eq!(check.windows[0].used, in_window as i64 * 100);
    let (plain_rate, windowed_rate) = (rate(n, plain_took), rate(n, windowed_took));
    let label = match spread {
        Spread::Live => "live (every event at now)",
        Spread::Backfill => "backfill (one event a second)",
    };
    println!("  {label}");
    println!("    without windows      {plain_rate:>10.0} events/s");
    println!(
        "    5h sliding + 7d fixed {windowed_rate:>9.0} events/s ({:.2}x), target >= 0.80x: {}",
        windowed_rate / plain_rate,
        verdict(windowed_rate >= 0.8 * plain_rate)
    );
}

/// Fill `url` with `n` events of the first customer spread evenly over the `span` before now,
/// oldest first.
fn fill(configs: &Configs, url: &str, n: usize, span: TimeDelta) -> (Store, DateTime<Utc>) {
    let mut store = fixture(url, &configs.windowed);
    let at = now();
    let step = span.num_milliseconds() as f64 / n as f64;
    let all: Vec<RecordRequest> = (0..n)
        .map(|i| {
            let back = TimeDelta::milliseconds(((n - i) as f64 * step) as i64);
            RecordRequest::new(&customer(0), 1, at - back)
        })
        .collect();
    for chunk in all.chunks(5_000) {
        store
            .record_batch(&configs.windowed, chunk, at)
            .expect("fill");
    }
    (store, at)
}

/// Checks of the first customer without and with windows, alternating: µs per call of each.
fn checks(store: &Store, configs: &Configs, at: DateTime<Utc>, calls: usize) -> (f64, f64) {
    let (plain, windowed) = alternate(
        calls,
        |_| {
            black_box(
                store
                    .metered_check(&configs.plain, &customer(0), at)
                    .unwrap(),
            );
        },
        |_| {
            black_box(
                store
                    .metered_check(&configs.windowed, &customer(0), at)
                    .unwrap(),
            );
        },
    );
    (micros(calls, plain), micros(calls, windowed))
}

/// `metered_check` with 100,000 events in the last 7 days.
fn check(configs: &Configs, url: &str) {
    let events = 100_000;
    let (store, at) = fill(configs, url, events, TimeDelta::days(7));
    let checked = store
        .metered_check(&configs.windowed, &customer(0), at)
        .unwrap();
    assert_eq!(checked.windows.len(), 2);
    let calls = 20_000;
    let (floor, ours) = checks(&store, configs, at, calls);
    println!("check with {events} events in the last 7 days: {calls} calls");
    println!("  without windows (the floor)   {floor:>8.2} µs");
    println!(
        "  5h sliding + 7d fixed         {ours:>8.2} µs ({:.2}x the floor), target < 30 µs: {}",
        ours / floor,
        verdict(ours < 30.0)
    );
}

/// The check with `n` events in the last 5 hours.
fn cost(configs: &Configs, url: &str, n: usize) {
    let (store, at) = fill(configs, url, n, TimeDelta::hours(5) - TimeDelta::seconds(1));
    let checked = store
        .metered_check(&configs.windowed, &customer(0), at)
        .unwrap();
    assert_eq!(checked.windows[0].used, n as i64);
    let (floor, ours) = checks(&store, configs, at, 10_000);
    println!(
        "  {n:>9} events in the window: {ours:>7.2} µs ({:.2}x the check without windows, \
         {floor:.2} µs)",
        ours / floor
    );
}
