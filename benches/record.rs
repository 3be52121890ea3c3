//! `cargo bench --bench record`: recording one event per transaction, and the `check` query,
//! through meterline's `Store` against the floor measured in the same run — the same SQL
//! issued directly through rusqlite prepared statements on a connection with the same pragmas.
//!
//! Targets (issue 2): record >= 50,000 events/s and >= 0.8 of the floor; check < 20 µs.
//! `METERLINE_BENCH_EVENTS` changes the number of events (default 200,000);
//! `METERLINE_BENCH_CASE=meters` runs only the meters section (for a profiler), `batch` only
//! the one-meter `record_batch`, and
//! `METERLINE_BENCH_CHECKS` its number of `metered_check` calls (default 20,000).

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use meterline::billing::{format_ts, period_containing};
use meterline::store::NewCustomer;
use meterline::{Config, RecordRequest, Store};
use rusqlite::{Connection, TransactionBehavior, params};

const CUSTOMER: &str = "acme";
/// The shipped `business` plan: unlimited, so no event is refused and both sides do the same work.
const PLAN: &str = "business";
const WARMUP: usize = 1_000;
const ROUNDS: usize = 20;
/// Events per `record_batch` call in the group-commit measurement.
const BATCH: usize = 500;

fn main() {
    let events: usize = std::env::var("METERLINE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let config = Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("plans.toml"))
        .expect("the shipped plans.toml");
    let now = DateTime::parse_from_rfc3339("2026-11-27T18:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let dir = tempfile::tempdir().expect("temp dir");
    match std::env::var("METERLINE_BENCH_CASE").as_deref() {
        Ok("meters") => return meters(events, dir.path(), now),
        Ok("batch") => return batch(events, dir.path(), &config, now),
        _ => {}
    }

    println!("record: {events} events, one transaction each, fresh temp-file database");
    let floor_db = fresh_database(&dir.path().join("floor.db"), &config, now);
    let ours_db = fresh_database(&dir.path().join("ours.db"), &config, now);
    let mut store = Store::open(&ours_db).expect("open");
    let request = RecordRequest::new(CUSTOMER, 1, now);
    let (floor, ours) = compare(events, floor_record(&floor_db, &config, now), || {
        let outcome = store.record(&config, &request, now).expect("record");
        black_box(outcome);
    });
    let (floor_rate, ours_rate) = (rate(events, floor), rate(events, ours));
    println!("  floor (rusqlite, same SQL)  {floor_rate:>10.0} events/s");
    println!("  meterline Store::record     {ours_rate:>10.0} events/s");
    println!(
        "  ratio {:.2} (target >= 0.80), {} 50,000 events/s",
        ours_rate / floor_rate,
        if ours_rate >= 50_000.0 {
            "meets"
        } else {
            "BELOW"
        }
    );

    let checks = events;
    println!("check: {checks} queries on the database just filled");
    let conn = open_like_store(&ours_db);
    let period_start = current_period_start(&config, now);
    let (floor, ours) = compare(
        checks,
        || {
            let used: i64 = conn
                .prepare_cached(
                    "SELECT used FROM usage_records WHERE customer_id = ?1 AND period_start = ?2",
                )
                .unwrap()
                .query_row(params![CUSTOMER, period_start], |r| r.get(0))
                .unwrap();
            black_box(used);
        },
        || {
            black_box(store.check(&config, CUSTOMER, now).expect("check"));
        },
    );
    let (floor_us, ours_us) = (micros(checks, floor), micros(checks, ours));
    println!("  floor (one SELECT)          {floor_us:>10.2} µs");
    println!("  meterline Store::check      {ours_us:>10.2} µs");
    println!(
        "  ratio {:.2} of the floor's speed, target < 20 µs: {}",
        floor_us / ours_us,
        if ours_us < 20.0 { "meets" } else { "MISSES" }
    );

    batch(events, dir.path(), &config, now);
    meters(events, dir.path(), now);
}

/// Group commit: what the HTTP server's writer does with requests waiting together.
fn batch(events: usize, dir: &Path, config: &Config, now: DateTime<Utc>) {
    println!("record_batch: {events} events in batches of {BATCH}, one transaction per batch");
    let batch_db = fresh_database(&dir.join("batch.db"), config, now);
    let mut store = Store::open(&batch_db).expect("open");
    let batch = vec![RecordRequest::new(CUSTOMER, 1, now); BATCH];
    let batches = events.div_ceil(BATCH);
    let took = time(batches, &mut || {
        let results = store.record_batch(config, &batch, now).expect("batch");
        black_box(results);
    });
    let batch_rate = rate(batches * BATCH, took);
    println!(
        "  meterline Store::record_batch {batch_rate:>8.0} events/s, {} 100,000 events/s",
        if batch_rate >= 100_000.0 {
            "meets"
        } else {
            "BELOW"
        }
    );
}

/// Five meters; the batch's events spread over three of them, tokens grouped by two
/// dimensions (issue 16: >= 200,000 events/s; check of 5 meters < 20 µs).
const METERS_PLANS: &str = r#"
[[meters]]
id = "requests"
aggregation = "count"
[[meters]]
id = "tokens"
aggregation = "sum"
property = "tokens"
group_by = ["model", "region"]
[[meters]]
id = "users"
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
included = 1000000000000
at_limit = "overage"
overage_rate = "0.00001"
[plans.meters.users]
included = 1000000
"#;

fn meters(events: usize, dir: &Path, now: DateTime<Utc>) {
    let config = Config::parse(METERS_PLANS, "bench plans").expect("meters plans");
    println!(
        "record_batch, 3 meters and 2 group_by dimensions: {events} events in batches of {BATCH}"
    );
    let db = fresh_database(&dir.join("meters.db"), &config, now);
    let mut store = Store::open(&db).expect("open");
    let models = ["small", "large", "vision"];
    let regions = ["eu", "us"];
    let requests: Vec<RecordRequest> = (0..events)
        .map(|i| {
            let mut r = RecordRequest::new(CUSTOMER, 1, now);
            match i % 3 {
                0 => {}
                1 => {
                    r.meter = Some("tokens".into());
                    r.properties
                        .insert("tokens".into(), (100 + i % 900).to_string());
                    r.properties.insert("model".into(), models[i % 3].into());
                    r.properties.insert("region".into(), regions[i % 2].into());
                }
                _ => {
                    r.meter = Some("users".into());
                    r.properties
                        .insert("user".into(), format!("user-{}", i % 5000));
                }
            }
            r
        })
        .collect();
    let mut chunks = requests.chunks(BATCH);
    let batches = events.div_ceil(BATCH);
    let took = time(batches, &mut || {
        if let Some(chunk) = chunks.next() {
            black_box(store.record_batch(&config, chunk, now).expect("batch"));
        }
    });
    let rate = rate(events, took);
    println!(
        "  meterline Store::record_batch {rate:>8.0} events/s, {} 200,000 events/s",
        if rate >= 200_000.0 { "meets" } else { "BELOW" }
    );
    let checks: usize = std::env::var("METERLINE_BENCH_CHECKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let took = time(checks, &mut || {
        black_box(store.metered_check(&config, CUSTOMER, now).expect("check"));
    });
    let us = micros(checks, took);
    println!(
        "  meterline Store::metered_check of 5 meters {us:>6.2} µs, target < 20 µs: {}",
        if us < 20.0 { "meets" } else { "MISSES" }
    );
}

/// A new database with the schema and one customer, created through the store.
fn fresh_database(path: &Path, config: &Config, now: DateTime<Utc>) -> std::path::PathBuf {
    let mut store = Store::open(path).expect("create");
    store
        .add_customer(
            config,
            &NewCustomer {
                id: CUSTOMER.into(),
                name: None,
                plan_id: PLAN.into(),
                stripe_customer_id: None,
                billing_anchor: Some(NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()),
            },
            now,
        )
        .expect("add customer");
    path.to_path_buf()
}

/// A plain rusqlite connection with the pragmas `Store::open` sets.
fn open_like_store(path: &Path) -> Connection {
    let conn = Connection::open(path).expect("open");
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
        .unwrap();
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
        .unwrap();
    conn
}

fn current_period_start(config: &Config, now: DateTime<Utc>) -> String {
    let anchor = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    format_ts(period_containing(anchor, config.billing.period, now).start)
}

/// The statements `Store::record` runs for an event without key or member, with everything
/// that is not SQL (period arithmetic, timestamp text) computed once up front.
fn floor_record(path: &Path, config: &Config, now: DateTime<Utc>) -> impl FnMut() {
    let mut conn = open_like_store(path);
    let anchor = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    let period = period_containing(anchor, config.billing.period, now);
    let (start, end, at) = (
        format_ts(period.start),
        format_ts(period.end),
        format_ts(now),
    );
    let plan = config.plan(PLAN).expect("plan").clone();
    move || {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        let customer: (String, String, String, Option<String>, String) = tx
            .prepare_cached(
                "SELECT id, name, plan_id, stripe_customer_id, billing_anchor
                 FROM customers WHERE id = ?1",
            )
            .unwrap()
            .query_row([CUSTOMER], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap();
        let used: i64 = tx
            .prepare_cached(
                "INSERT INTO usage_records
                     (customer_id, period_start, period_end, used, plan_id, meter_event_name,
                      included, at_limit, overage_rate, price)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (customer_id, period_start) DO UPDATE SET used = used + excluded.used,
                     plan_id = excluded.plan_id, meter_event_name = excluded.meter_event_name,
                     included = excluded.included, at_limit = excluded.at_limit,
                     overage_rate = excluded.overage_rate, price = excluded.price
                 RETURNING used",
            )
            .unwrap()
            .query_row(
                params![
                    customer.0,
                    start,
                    end,
                    1,
                    plan.id,
                    plan.meter_event,
                    plan.included,
                    plan.at_limit.as_str(),
                    plan.overage_rate.map(|r| r.to_string()),
                    plan.price.to_string()
                ],
                |r| r.get(0),
            )
            .unwrap();
        let id: i64 = tx
            .prepare_cached(
                "INSERT INTO usage_events
                     (customer_id, user_id, quantity, occurred_at, recorded_at, period_start,
                      idempotency_key, stripe_identifier)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 RETURNING id",
            )
            .unwrap()
            .query_row(
                params![
                    customer.0,
                    None::<String>,
                    1,
                    at,
                    at,
                    start,
                    None::<String>,
                    meterline_stripe::identifier()
                ],
                |r| r.get(0),
            )
            .unwrap();
        tx.commit().unwrap();
        black_box((used, id));
    }
}

/// Time `n` calls of each after a short warm-up, alternating rounds of the two so a change
/// in machine load (other builds on a shared machine) hits both alike.
fn compare(n: usize, mut floor: impl FnMut(), mut ours: impl FnMut()) -> (Duration, Duration) {
    for _ in 0..WARMUP {
        floor();
        ours();
    }
    let (mut floor_took, mut ours_took) = (Duration::ZERO, Duration::ZERO);
    let round = n.div_ceil(ROUNDS);
    let mut done = 0;
    while done < n {
        let count = round.min(n - done);
        floor_took += time(count, &mut floor);
        ours_took += time(count, &mut ours);
        done += count;
    }
    (floor_took, ours_took)
}

fn time(n: usize, f: &mut impl FnMut()) -> Duration {
    let started = Instant::now();
    for _ in 0..n {
        f();
    }
    started.elapsed()
}

fn rate(n: usize, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64()
}

fn micros(n: usize, took: Duration) -> f64 {
    took.as_secs_f64() * 1e6 / n as f64
}
