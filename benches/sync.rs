//! `cargo bench --bench sync`: 20,000 events synced to the Stripe-like loopback server with the
//! rate limiter off, against the server's own ceiling measured in the same run by a minimal
//! keep-alive client sending the same requests over as many connections as the sync has workers.
//! Then fairness: one customer holding 90 % of the backlog (its events the oldest), and how far
//! into that backlog the sync was when every other customer's events had arrived.
//! `METERLINE_BENCH_EVENTS=2000` makes a quick run.
//! `METERLINE_BENCH_CASE=modes` runs only the aggregate-vs-per-event comparison (100,000 events
//! of 100 customers; `METERLINE_BENCH_EVENTS` scales it) and the reconcile of 1,000 customers
//! (`METERLINE_BENCH_CUSTOMERS` scales it).
//! `METERLINE_BENCH_CASE=engines` runs only the sync on SQLite against PostgreSQL (a server of
//! its own, as the tests start it) for 10,000, 40,000 and 160,000 events of 4 customers
//! (`METERLINE_BENCH_SIZES=10000,40000`, `METERLINE_BENCH_CUSTOMERS`), in aggregate mode, with
//! a writer recording one event every 10 ms meanwhile: how long its records waited.

#[path = "../tests/testsuite/support/fake_stripe.rs"]
mod fake_stripe;

#[path = "../tests/testsuite/support/postgres.rs"]
#[allow(dead_code)]
mod pg;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use fake_stripe::FakeStripe;
use meterline::store::NewCustomer;
use meterline::{Config, RecordRequest, Store};

const EVENTS: usize = 20_000;
const CUSTOMERS: usize = 40;
const WORKERS: usize = 8;
const KEY: &str = "sk_test_51BenchKeyBenchKeyBenchKey0000";
const VERSION: &str = meterline::config::DEFAULT_API_VERSION;

/// The throughput cases send one meter event per usage event.
fn plans(base: &str) -> String {
    plans_in(base, "per_event")
}

fn plans_in(base: &str, mode: &str) -> String {
    format!(
        "[stripe]\napi_base = \"{base}\"\nrate_limit = 0\nworkers = {WORKERS}\nreport = \"{mode}\"\n\n\
         [[plans]]\nid = \"free\"\n"
    )
}

fn events() -> usize {
    std::env::var("METERLINE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(EVENTS)
}

/// A database with `events` unreported events of `CUSTOMERS` mapped customers, the i-th
/// (oldest first) belonging to customer `customer_of(i)`.
fn seed(
    dir: &std::path::Path,
    now: DateTime<Utc>,
    events: usize,
    customer_of: impl Fn(usize) -> usize,
) -> std::path::PathBuf {
    seed_of(dir, now, CUSTOMERS, events, customer_of)
}

fn seed_of(
    dir: &std::path::Path,
    now: DateTime<Utc>,
    customers: usize,
    events: usize,
    customer_of: impl Fn(usize) -> usize,
) -> std::path::PathBuf {
    let db = dir.join("bench.db");
    let config = Config::parse(&plans("https://api.stripe.com"), "bench").unwrap();
    let mut store = Store::open(&db).unwrap();
    for c in 0..customers {
        store
            .add_customer(
                &config,
                &NewCustomer {
                    id: format!("customer-{c}"),
                    name: None,
                    plan_id: "free".into(),
                    stripe_customer_id: Some(format!("cus_Bench{c:06}")),
                    billing_anchor: Some((now - chrono::Duration::days(100)).date_naive()),
                },
                now,
            )
            .unwrap();
    }
    let span = chrono::Duration::days(20).num_seconds();
    for i in 0..events {
        let at = now - chrono::Duration::seconds(span - span * i as i64 / events as i64);
        let request = RecordRequest::new(&format!("customer-{}", customer_of(i)), 1, at);
        store.record(&config, &request, now).unwrap();
    }
    db
}

/// The same requests as the sync sends, over `WORKERS` raw keep-alive connections.
fn ceiling(server: &FakeStripe, now: DateTime<Utc>) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        for w in 0..WORKERS {
            s.spawn(move || {
                let stream = TcpStream::connect(server.addr()).unwrap();
                stream.set_nodelay(true).unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                for i in (w..EVENTS).step_by(WORKERS) {
                    let body = format!(
                        "event_name=meterline_usage&payload%5Bstripe_customer_id%5D=cus_Bench{:06}\
                         &payload%5Bvalue%5D=1&identifier=ceiling-{i}&timestamp={}",
                        i % CUSTOMERS,
                        now.timestamp() - 60
                    );
                    let request = format!(
                        "POST /v1/billing/meter_events HTTP/1.1\r\nHost: {}\r\n\
                         Authorization: Bearer {KEY}\r\nStripe-Version: {VERSION}\r\n\
                         Idempotency-Key: ceiling-{i}\r\n\
                         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                        server.addr(),
                        body.len()
                    );
                    writer.write_all(request.as_bytes()).unwrap();
                    read_response(&mut reader);
                }
            });
        }
    });
    EVENTS as f64 / start.elapsed().as_secs_f64()
}

/// The same requests through meterline's own HTTP client (ureq agent, classification), with no
/// database and no scheduling: what the HTTP layer alone can do on this machine.
fn client_only(server: &FakeStripe, now: DateTime<Utc>) -> f64 {
    let config = Config::parse(&plans(&server.base()), "bench").unwrap();
    let key = meterline_stripe::ApiKey::new(KEY).unwrap();
    let base = meterline_stripe::ApiBase::parse(&server.base()).unwrap();
    let client = meterline_stripe::Client::new(&base, &key, &config.stripe).unwrap();
    let start = Instant::now();
    std::thread::scope(|s| {
        for w in 0..WORKERS {
            let client = &client;
            s.spawn(move || {
                for i in (w..EVENTS).step_by(WORKERS) {
                    let identifier = format!("client-{i}");
                    let customer = format!("cus_Bench{:06}", i % CUSTOMERS);
                    let event = meterline_stripe::MeterEvent {
                        event_name: "meterline_usage",
                        stripe_customer_id: &customer,
                        value: 1,
                        identifier: &identifier,
                        timestamp: now.timestamp() - 60,
                        dimensions: &[],
                    };
                    let answer = client.send(&event, &event.idempotency_key(0));
                    assert_eq!(
                        answer,
                        meterline_stripe::Answer::Accepted { replayed: false }
                    );
                }
            });
        }
    });
    EVENTS as f64 / start.elapsed().as_secs_f64()
}

fn read_response(reader: &mut BufReader<TcpStream>) {
    let mut length = 0;
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    assert!(
        body.starts_with(b"{\"created\"") || body.starts_with(b"{"),
        "bad answer"
    );
}

fn sync_once(now: DateTime<Utc>) -> (f64, usize) {
    let dir = tempfile::tempdir().unwrap();
    let db = seed(dir.path(), now, EVENTS, |i| i % CUSTOMERS);
    let server = FakeStripe::start(KEY, now);
    let config = Config::parse(&plans(&server.base()), "bench").unwrap();
    let key = meterline_stripe::ApiKey::new(KEY).unwrap();
    let start = Instant::now();
    let report = meterline_stripe::run(
        &db,
        &config,
        &key,
        &Default::default(),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap();
    let rate = EVENTS as f64 / start.elapsed().as_secs_f64();
    assert_eq!(report.accepted as usize, EVENTS);
    assert_eq!(server.accepted_count(), EVENTS);
    (rate, server.connections() as usize)
}

/// One customer holds 90 % of `events`, all older than the others' events. Returns how many
/// of its events had arrived when the last of the others' did, the time until then, and the
/// time for the whole run.
fn hot_customer_once(now: DateTime<Utc>, events: usize) -> (usize, usize, Duration, Duration) {
    let hot = events * 9 / 10;
    let dir = tempfile::tempdir().unwrap();
    let db = seed(dir.path(), now, events, |i| {
        if i < hot { 0 } else { 1 + i % (CUSTOMERS - 1) }
    });
    let server = FakeStripe::start(KEY, now);
    let config = Config::parse(&plans(&server.base()), "bench").unwrap();
    let key = meterline_stripe::ApiKey::new(KEY).unwrap();
    let start = Instant::now();
    let mut others_done = None;
    let hot_customer = "cus_Bench000000";
    meterline_stripe::run(
        &db,
        &config,
        &key,
        &Default::default(),
        &AtomicBool::new(false),
        &mut |_| {
            if others_done.is_none() {
                let accepted = server.accepted();
                let others = accepted.values().filter(|e| e.customer != hot_customer);
                if others.count() == events - hot {
                    others_done = Some(start.elapsed());
                }
            }
        },
    )
    .unwrap();
    let total = start.elapsed();
    let accepted = server.accepted();
    let mut hot_seen = 0;
    let mut hot_at_last_other = 0;
    for identifier in server.arrivals() {
        if accepted[&identifier].customer == hot_customer {
            hot_seen += 1;
        } else {
            hot_at_last_other = hot_seen;
        }
    }
    (hot_at_last_other, hot, others_done.unwrap_or(total), total)
}

/// Sync a copy of `db` in `mode` with the limiter off: (requests the server got, seconds).
fn sync_in(db: &std::path::Path, now: DateTime<Utc>, mode: &str) -> (u64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    std::fs::copy(db, &copy).unwrap();
    let server = FakeStripe::start(KEY, now);
    let config = Config::parse(&plans_in(&server.base(), mode), "bench").unwrap();
    let key = meterline_stripe::ApiKey::new(KEY).unwrap();
    let start = Instant::now();
    let report = meterline_stripe::run(
        &copy,
        &config,
        &key,
        &Default::default(),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap();
    assert!(report.all_delivered(), "{report:?}");
    (server.requests(), start.elapsed().as_secs_f64())
}

/// Requests per mode for 100,000 events of 100 customers, and what they cost at Stripe's
/// limits; then reconcile of 1,000 synced customers with the limiter off.
fn modes(now: DateTime<Utc>) {
    let events = std::env::var("METERLINE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let db = seed_of(dir.path(), now, 100, events, |i| i % 100);
    println!("sync/{events} events of 100 customers, rate limit off, {WORKERS} workers");
    for mode in ["aggregate", "per_event"] {
        let (requests, secs) = sync_in(&db, now, mode);
        println!(
            "  {mode:<10} {requests:>8} requests in {secs:>6.2} s here; at 25/s (test) {:>10.1} s, at 1,000/s (live) {:>8.1} s",
            requests as f64 / 25.0,
            requests as f64 / 1000.0
        );
    }
    let customers = std::env::var("METERLINE_BENCH_CUSTOMERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::tempdir().unwrap();
    let db = seed_of(dir.path(), now, customers, customers * 3, |i| i % customers);
    let server = FakeStripe::start(KEY, now);
    server.add_meter("meterline_usage");
    let config = Config::parse(&plans_in(&server.base(), "aggregate"), "bench").unwrap();
    let key = meterline_stripe::ApiKey::new(KEY).unwrap();
    let report = meterline_stripe::run(
        &db,
        &config,
        &key,
        &Default::default(),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap();
    assert!(report.all_delivered());
    let reads = server.requests();
    let start = Instant::now();
    let options = meterline_stripe::reconcile::ReconcileOptions::default();
    let rows = meterline_stripe::reconcile::run(&db, &config, &key, &options)
        .unwrap()
        .rows;
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(rows.len(), customers);
    assert!(rows.iter().all(|r| r.drift == 0));
    println!(
        "reconcile/{customers} customers, rate limit off: {secs:.2} s, {} requests ({:.0} customers/s)",
        server.requests() - reads,
        customers as f64 / secs
    );
}

/// The engines case: the sync on SQLite and on PostgreSQL, side by side per size.
fn engines(now: DateTime<Utc>) {
    let sizes: Vec<usize> = std::env::var("METERLINE_BENCH_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 40_000, 160_000]);
    let customers = std::env::var("METERLINE_BENCH_CUSTOMERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let server = pg::PgServer::private();
    println!(
        "sync, aggregate mode, {customers} customers, rate limit off, {WORKERS} workers; \
         meanwhile a writer records an event every 10 ms"
    );
    for events in sizes {
        let dir = tempfile::tempdir().unwrap();
        let databases = [
            ("SQLite", dir.path().join("bench.db")),
            (
                "PostgreSQL",
                std::path::PathBuf::from(server.fresh_database()),
            ),
        ];
        for (engine, db) in databases {
            seed_batched(&db, now, customers, events);
            let (secs, writes) = sync_while_recording(&db, now, events);
            println!(
                "  {events:>7} events  {engine:<10} {secs:>7.2} s {:>8.0} events/s; \
                 records meanwhile {:>4}, longest {:>6.0} ms, failed {}",
                events as f64 / secs,
                writes.records,
                writes.longest.as_secs_f64() * 1000.0,
                writes.failed
            );
            for (which, failure) in [
                ("first", writes.first_failure),
                ("last", writes.last_failure),
            ] {
                if let Some(failure) = failure {
                    println!("      {which} failed record: {failure}");
                }
            }
        }
    }
}

/// `events` unreported events of `customers` mapped customers, over the last 20 days,
/// recorded 500 a batch, on a file or a PostgreSQL URL.
fn seed_batched(db: &std::path::Path, now: DateTime<Utc>, customers: usize, events: usize) {
    let config = Config::parse(&plans_in("https://api.stripe.com", "aggregate"), "bench").unwrap();
    let mut store = Store::open(db).unwrap();
    for c in 0..customers {
        let customer = NewCustomer {
            id: format!("customer-{c}"),
            name: None,
            plan_id: "free".into(),
            stripe_customer_id: Some(format!("cus_Bench{c:06}")),
            billing_anchor: Some((now - chrono::Duration::days(100)).date_naive()),
        };
        store.add_customer(&config, &customer, now).unwrap();
    }
    let span = chrono::Duration::days(20).num_seconds();
    let requests: Vec<RecordRequest> = (0..events)
        .map(|i| {
            let at = now - chrono::Duration::seconds(span - span * i as i64 / events as i64);
            RecordRequest::new(&format!("customer-{}", i % customers), 1, at)
        })
        .collect();
    for batch in requests.chunks(500) {
        for outcome in store.record_batch(&config, batch, now).unwrap() {
            assert!(outcome.unwrap().recorded);
        }
    }
}

/// What the writer beside a sync saw.
#[derive(Default)]
struct Writes {
    records: usize,
    failed: usize,
    longest: Duration,
    first_failure: Option<String>,
    last_failure: Option<String>,
}

/// Sync `db` in aggregate mode while another connection records an event every 10 ms:
/// the sync's seconds, and how the records went.
fn sync_while_recording(db: &std::path::Path, now: DateTime<Utc>, events: usize) -> (f64, Writes) {
    let server = FakeStripe::start(KEY, now);
    let config = Config::parse(&plans_in(&server.base(), "aggregate"), "bench").unwrap();
    let key = meterline_stripe::ApiKey::new(KEY).unwrap();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut store = Store::open(db).unwrap();
            let mut writes = Writes::default();
            while !done.load(Ordering::Relaxed) {
                let started = Instant::now();
                let request = RecordRequest::new("customer-0", 1, now);
                if let Err(e) = store.record(&config, &request, now) {
                    writes.failed += 1;
                    writes.first_failure.get_or_insert(e.to_string());
                    writes.last_failure = Some(e.to_string());
                }
                writes.records += 1;
                writes.longest = writes.longest.max(started.elapsed());
                std::thread::sleep(Duration::from_millis(10));
            }
            writes
        });
        let start = Instant::now();
        let report = meterline_stripe::run(
            db,
            &config,
            &key,
            &Default::default(),
            &AtomicBool::new(false),
            &mut |_| {},
        );
        let secs = start.elapsed().as_secs_f64();
        done.store(true, Ordering::Relaxed);
        let report = report.unwrap();
        assert!(report.all_delivered(), "{report:?}");
        assert!(report.events_reported as usize >= events, "{report:?}");
        (secs, writer.join().unwrap())
    })
}

fn main() {
    let now = Utc::now();
    if std::env::var("METERLINE_BENCH_CASE").as_deref() == Ok("modes") {
        return modes(now);
    }
    if std::env::var("METERLINE_BENCH_CASE").as_deref() == Ok("engines") {
        return engines(now);
    }
    if std::env::var("METERLINE_BENCH_EVENTS").is_ok() {
        // A quick check that the cases run: the fairness case only, at the given size.
        return hot_customer(now);
    }
    let mut best_ceiling: f64 = 0.0;
    let mut best_sync: f64 = 0.0;
    let mut connections = 0;
    let mut best_client: f64 = 0.0;
    // Alternate the three and keep the best of each: all see the same machine load.
    for _ in 0..3 {
        let server = FakeStripe::start(KEY, now);
        best_ceiling = best_ceiling.max(ceiling(&server, now));
        drop(server);
        let server = FakeStripe::start(KEY, now);
        best_client = best_client.max(client_only(&server, now));
        drop(server);
        let (rate, conns) = sync_once(now);
        if rate > best_sync {
            best_sync = rate;
            connections = conns;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("sync/20000 events, rate limit off, {WORKERS} workers ({connections} connections)");
    println!("  meterline sync:        {best_sync:>9.0} events/s");
    println!(
        "  server ceiling:        {best_ceiling:>9.0} requests/s (minimal keep-alive client, {WORKERS} connections)"
    );
    println!(
        "  HTTP client alone:     {best_client:>9.0} requests/s (meterline's ureq client, no database)"
    );
    println!(
        "  ratio:                 {:>9.2} of the server ceiling (target >= 0.80; Stripe's live limit is 1,000/s)",
        best_sync / best_ceiling
    );
    println!(
        "  engine efficiency:     {:>9.2} of the HTTP client alone (the cost of the database, scheduling, bookkeeping)",
        best_sync / best_client
    );
    hot_customer(now);
}

fn hot_customer(now: DateTime<Utc>) {
    let events = events();
    let (hot_done, hot, others, total) = hot_customer_once(now, events);
    println!(
        "sync/{events} events, one customer holding 90 % (the oldest), {} others, {WORKERS} workers",
        CUSTOMERS - 1
    );
    println!(
        "  others' events all in after {:.2} s, {hot_done} of the {hot} hot events ({:.1} %) sent by then",
        others.as_secs_f64(),
        100.0 * hot_done as f64 / hot as f64
    );
    println!(
        "  whole run:             {:.2} s ({:.0} events/s; the hot customer goes one request at a time)",
        total.as_secs_f64(),
        events as f64 / total.as_secs_f64()
    );
}
