//! `cargo bench --bench event_types`: one event feeding several meters (issue 26), each
//! figure next to its floor measured in the same run, in alternating rounds so a change in
//! the machine's load hits both alike:
//! - `record_batch` of `completion` events, each feeding 3 meters (a count, a sum by model
//!   over 8 models priced per model, a unique_count), against the same events on one meter;
//!   on SQLite and on a local PostgreSQL (Debian's package, started as the tests start it).
//! - a single `record` feeding 3 meters against a single record on one meter;
//! - `metered_check` of a customer with 5 meters and 20 priced groups, against the one
//!   SELECT of its counter rows it cannot do without.
//!
//! Targets: record_batch >= 200,000 events/s on SQLite, >= 50,000 on PostgreSQL; a single
//! record on 3 meters >= 0.8x one on one meter; the check < 20 µs.
//! `METERLINE_BENCH_EVENTS` (default 200,000), `METERLINE_BENCH_SINGLES` (default 20,000),
//! `METERLINE_BENCH_POSTGRES=0` skips PostgreSQL, `METERLINE_BENCH_CASE=batch` runs only the
//! SQLite `record_batch`, `single` skips it, `check` runs only the check (for a profiler).

#[path = "support/rounds.rs"]
mod rounds;

#[path = "../tests/testsuite/support/postgres.rs"]
#[allow(dead_code)]
mod pg;

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use rounds::{alternate, alternate_ranges, micros, rate};

use chrono::{DateTime, NaiveDate, Utc};
use meterline::store::NewCustomer;
use meterline::{Config, RecordRequest, Store};

const CUSTOMER: &str = "acme";
const BATCH: usize = 500;
const MODELS: [&str; 20] = [
    "large", "medium", "small", "tiny", "vision", "embed", "audio", "code", "mini", "nano", "pro",
    "ultra", "flash", "lite", "turbo", "base", "chat", "instruct", "rerank", "search",
];

const PLANS: &str = r#"
[[meters]]
id = "requests"
event = "completion"
aggregation = "count"
[[meters]]
id = "tokens"
event = "completion"
aggregation = "sum"
property = "tokens"
group_by = ["model"]
[[meters]]
id = "active_users"
event = "completion"
aggregation = "unique_count"
property = "user"
[[meters]]
id = "seats"
aggregation = "latest"
property = "seats"
[[meters]]
id = "peak"
aggregation = "max"
property = "concurrency"

[[plans]]
id = "free"
[[plans]]
id = "business"
[plans.meters.requests]
included = 1000000000000
[plans.meters.tokens]
included = 1000
at_limit = "overage"
overage_rate = "0.000002"
[[plans.meters.tokens.rates]]
where = { model = ["large", "ultra", "pro"] }
rate = "0.00001"
[[plans.meters.tokens.rates]]
where = { model = ["small", "tiny", "mini", "nano"] }
rate = "0.000001"
[[plans.meters.tokens.rates]]
where = { model = ["vision", "audio"] }
rate = "0.00002"
[[plans.meters.tokens.rates]]
where = { model = ["embed", "rerank", "search"] }
rate = "0.0000001"
[plans.meters.active_users]
included = 1000000
"#;

fn main() {
    let number = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let events = number("METERLINE_BENCH_EVENTS", 200_000);
    let singles = number("METERLINE_BENCH_SINGLES", 20_000);
    let config = Config::parse(PLANS, "bench plans").expect("bench plans");
    let now = DateTime::parse_from_rfc3339("2026-11-27T18:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = |name: &str| store_on(&dir.path().join(name).to_string_lossy(), &config, now);

    let only = std::env::var("METERLINE_BENCH_CASE").ok();
    if only.as_deref() == Some("check") {
        let db = dir.path().join("check.db");
        let mut store = store_on(&db.to_string_lossy(), &config, now);
        return check(&mut store, &config, now, &db);
    }
    if only.as_deref() != Some("single") {
        println!("event types on SQLite: {events} events, batches of {BATCH}");
        let (one, typed) = batches(
            &mut sqlite("one.db"),
            &mut sqlite("typed.db"),
            &config,
            now,
            events,
        );
        report_batches(events, one, typed, 200_000.0);
    }
    if only.as_deref() == Some("batch") {
        return;
    }

    println!("a single record, one transaction each: {singles} events");
    let (mut one_store, mut typed_store) = (sqlite("single-one.db"), sqlite("single-typed.db"));
    let (one, typed) = alternate(
        singles,
        |i| {
            black_box(
                one_store
                    .record(&config, &event(i, false, now), now)
                    .unwrap(),
            );
        },
        |i| {
            black_box(
                typed_store
                    .record(&config, &event(i, true, now), now)
                    .unwrap(),
            );
        },
    );
    let ratio = typed.as_secs_f64().recip() / one.as_secs_f64().recip();
    println!(
        "  one meter {:>10.0} events/s, 3 meters {:>10.0} events/s: {ratio:.2}x, target >= 0.80: {}",
        rate(singles, one),
        rate(singles, typed),
        if ratio >= 0.8 { "meets" } else { "BELOW" }
    );

    check(
        &mut typed_store,
        &config,
        now,
        &dir.path().join("single-typed.db"),
    );

    if std::env::var("METERLINE_BENCH_POSTGRES").as_deref() != Ok("0") {
        let server = pg::PgServer::private();
        let events = events / 2;
        println!("event types on PostgreSQL (fsync off, as the test server): {events} events");
        let (mut one_store, mut typed_store) = (
            store_on(&server.fresh_database(), &config, now),
            store_on(&server.fresh_database(), &config, now),
        );
        let (one, typed) = batches(&mut one_store, &mut typed_store, &config, now, events);
        report_batches(events, one, typed, 50_000.0);
    }
}

/// Event `i`: a completion (typed) or the same properties on the tokens meter alone.
fn event(i: usize, typed: bool, now: DateTime<Utc>) -> RecordRequest {
    let mut r = RecordRequest::new(CUSTOMER, 1, now);
    if typed {
        r.event_type = Some("completion".into());
    } else {
        r.meter = Some("tokens".into());
    }
    r.properties
        .insert("tokens".into(), (100 + i % 900).to_string());
    r.properties.insert("model".into(), MODELS[i % 8].into());
    r.properties
        .insert("user".into(), format!("user-{}", i % 5000));
    r
}

/// `events` on one meter and as many typed, in batches, alternating rounds: the time of each.
fn batches(
    one: &mut Store,
    typed: &mut Store,
    config: &Config,
    now: DateTime<Utc>,
    events: usize,
) -> (Duration, Duration) {
    let make =
        |typed| -> Vec<RecordRequest> { (0..events).map(|i| event(i, typed, now)).collect() };
    let (plain, completions) = (make(false), make(true));
    let run = |store: &mut Store, all: &[RecordRequest], range: std::ops::Range<usize>| {
        for chunk in all[range].chunks(BATCH) {
            black_box(store.record_batch(config, chunk, now).expect("batch"));
        }
    };
    alternate_ranges(
        events,
        |range| run(one, &plain, range),
        |range| run(typed, &completions, range),
    )
}

fn report_batches(events: usize, one: Duration, typed: Duration, target: f64) {
    let (one_rate, typed_rate) = (rate(events, one), rate(events, typed));
    println!("  record_batch, one meter        {one_rate:>10.0} events/s");
    println!(
        "  record_batch, 3 meters (typed) {typed_rate:>10.0} events/s ({:.2}x one meter), \
         target >= {target:.0}: {}",
        typed_rate / one_rate,
        if typed_rate >= target {
            "meets"
        } else {
            "BELOW"
        }
    );
}

/// `metered_check` of the typed store's customer once it has 20 priced groups, against the
/// SELECT of its counter rows alone.
fn check(store: &mut Store, config: &Config, now: DateTime<Utc>, db: &Path) {
    // The included 1,000 used up first, so every group has units past it.
    let mut first = event(0, true, now);
    first.properties.insert("tokens".into(), "1000".into());
    store.record(config, &first, now).unwrap();
    for (i, model) in MODELS.iter().enumerate() {
        let mut r = event(i, true, now);
        r.properties.insert("model".into(), (*model).into());
        store.record(config, &r, now).unwrap();
    }
    let checked = store.metered_check(config, CUSTOMER, now).unwrap();
    let tokens = checked.meter("tokens").unwrap();
    assert_eq!(tokens.groups.len(), 20);
    assert!(tokens.groups.iter().all(|g| g.overage_units > 0));
    let conn = rusqlite::Connection::open(db).unwrap();
    let start = checked
        .check
        .period_start
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let checks = 20_000;
    let (floor, ours) = alternate(
        checks,
        |_| {
            let rows: Vec<(String, String, i64, i64, String)> = conn
                .prepare_cached(
                    "SELECT meter_id, group_key, used, overage_units, overage_amount
                     FROM meter_counters WHERE customer_id = ?1 AND period_start = ?2",
                )
                .unwrap()
                .query_map(rusqlite::params![CUSTOMER, start], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            black_box(rows);
        },
        |_| {
            black_box(store.metered_check(config, CUSTOMER, now).unwrap());
        },
    );
    let (floor_us, ours_us) = (micros(checks, floor), micros(checks, ours));
    println!("check of 5 meters and 20 priced groups: {checks} calls");
    println!("  floor (the SELECT of its rows) {floor_us:>8.2} µs");
    println!(
        "  meterline Store::metered_check {ours_us:>8.2} µs ({:.2}x the floor), target < 20 µs: {}",
        ours_us / floor_us,
        if ours_us < 20.0 { "meets" } else { "MISSES" }
    );
}

/// A store on `url` (a path or a postgres:// URL) with the customer on `business`.
fn store_on(url: &str, config: &Config, now: DateTime<Utc>) -> Store {
    let mut store = Store::open(Path::new(url)).expect("open");
    store
        .add_customer(
            config,
            &NewCustomer {
                id: CUSTOMER.into(),
                name: None,
                plan_id: "business".into(),
                stripe_customer_id: None,
                billing_anchor: Some(NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()),
            },
            now,
        )
        .expect("add customer");
    store
}
