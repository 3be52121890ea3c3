//! `cargo bench --bench postgres`: meterline on a real PostgreSQL (Debian's package, started in a
//! temp dir on loopback by the tests' harness) against the approach a user would write by hand,
//! in the same run on the same server, in alternating rounds: per event, one transaction that
//! inserts the event row (ON CONFLICT on its key) and runs `UPDATE … SET used = used + n`.
//!
//! Then the change marks on many rows in one transaction (every event marked reported, 20,000
//! customers inserted), with the marks' triggers and without them.
//!
//! Then the HTTP API on the same server, with benches/serve.rs's load generator: batched
//! ingest through two `meterline serve` processes on one database (writers serialise on the
//! database's writer lock, so this is what a second host adds), and single events over 32
//! connections to one server.
//!
//! Targets (issue 17): `record_batch` >= 50,000 events/s and >= 3x the hand-written peer;
//! batched HTTP with 2 servers >= 30,000 events/s; single events over HTTP >= 5,000/s.
//! `METERLINE_BENCH_EVENTS` changes the number of events (default 100,000; the batched HTTP
//! run sends as many), `METERLINE_BENCH_SINGLES` the single HTTP events (default 20,000).

#[path = "../tests/testsuite/support/postgres.rs"]
#[allow(dead_code)]
mod pg;

#[path = "support/http.rs"]
#[allow(dead_code)]
mod http;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use meterline::store::NewCustomer;
use meterline::{Config, RecordRequest, Store};

const BATCH: usize = 500;
/// Rounds the peer and record_batch alternate in.
const ROUNDS: usize = 5;
/// Customers of the HTTP runs, as benches/serve.rs.
/// Connections of the batched HTTP run, spread over the servers.
const BATCH_CLIENTS: usize = 4;
const SINGLE_CLIENTS: usize = 32;

fn main() {
    let events: usize = std::env::var("METERLINE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let config = Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("plans.toml"))
        .expect("the shipped plans.toml");
    let now = DateTime::parse_from_rfc3339("2026-11-27T18:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let server = pg::PgServer::private();
    println!("postgres: {events} events on a local PostgreSQL (fsync off, as the test server)");

    // The peer and record_batch in alternating rounds, so that a change in the machine's
    // load (other builds share it) hits both alike.
    let mut peer = Peer::new(&server.fresh_database());
    let batch_url = server.fresh_database();
    let mut store = store_on(&batch_url, &config, now);
    let (mut peer_time, mut batch_time) = (Duration::ZERO, Duration::ZERO);
    let per_round = events.div_ceil(ROUNDS);
    for round in 0..ROUNDS {
        let range = round * per_round..((round + 1) * per_round).min(events);
        peer_time += peer.run(range.clone());
        batch_time += record_batches(&mut store, &config, now, range);
    }
    let peer = events as f64 / peer_time.as_secs_f64();
    let batch = events as f64 / batch_time.as_secs_f64();
    println!("  hand-written peer (1 tx per event)     {peer:>10.0} events/s");
    println!("  meterline Store::record_batch ({BATCH})    {batch:>10.0} events/s");

    change_marks(&batch_url, events, 20_000);

    let mut store = store_on(&server.fresh_database(), &config, now);
    let singles = events / 10;
    let started = Instant::now();
    for i in 0..singles {
        let key = format!("s-{i}");
        let request = RecordRequest {
            idempotency_key: Some(key.as_str().into()),
            ..RecordRequest::new("acme", 1, now)
        };
        assert!(store.record(&config, &request, now).unwrap().recorded);
    }
    let single = singles as f64 / started.elapsed().as_secs_f64();
    println!("  meterline Store::record (1 tx each)    {single:>10.0} events/s");
    println!(
        "  record_batch: {} 50,000 events/s; {:.1}x the peer (target >= 3x)",
        if batch >= 50_000.0 { "meets" } else { "BELOW" },
        batch / peer
    );

    let singles: usize = std::env::var("METERLINE_BENCH_SINGLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let plans = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans.toml");
    let url = server.fresh_database();
    let (_, token) = http::fixture(Path::new(&url), &config);
    let servers = [
        http::Server::start(Path::new(&url), &plans),
        http::Server::start(Path::new(&url), &plans),
    ];
    let http = batched_http(&servers.iter().collect::<Vec<_>>(), &token, events);
    println!(
        "HTTP, batched: {events} events, {BATCH} a request, {BATCH_CLIENTS} connections over 2 servers"
    );
    println!("  POST /v1/events/batch, 2 servers       {http:>10.0} events/s");
    println!(
        "  {} 30,000 events/s; {:.1}x the peer",
        if http >= 30_000.0 { "meets" } else { "BELOW" },
        http / peer
    );
    let (rate, p50, p99) = single_http(&servers[0], &token, singles);
    println!("HTTP, single events: {singles} requests over {SINGLE_CLIENTS} connections, 1 server");
    println!(
        "  POST /v1/events                        {rate:>10.0} events/s, p50 {p50}, p99 {p99}"
    );
    println!(
        "  {} 5,000 events/s; {:.1}x the peer",
        if rate >= 5_000.0 { "meets" } else { "BELOW" },
        rate / peer
    );
}

/// Keyed events in batches of `BATCH` over `BATCH_CLIENTS` connections spread over `servers`.
fn batched_http(servers: &[&http::Server], token: &str, events: usize) -> f64 {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    http::run_clients_on(servers, token, BATCH_CLIENTS, |_, mut client| {
        let next = next.clone();
        async move {
            loop {
                let first = next.fetch_add(BATCH, Ordering::Relaxed);
                if first >= events {
                    return Vec::new();
                }
                let body: Vec<serde_json::Value> = (first..(first + BATCH).min(events))
                    .map(|i| serde_json::json!({"customer": http::customer(i), "key": format!("h-{i}")}))
                    .collect();
                let body = serde_json::json!({"events": body}).to_string();
                let reply = client.post("/v1/events/batch", body).await;
                assert_eq!(reply.0, 200, "{}", reply.1);
            }
        }
    });
    events as f64 / started.elapsed().as_secs_f64()
}

/// Single keyed events over `SINGLE_CLIENTS` connections: events/s, p50, p99.
fn single_http(server: &http::Server, token: &str, singles: usize) -> (f64, String, String) {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let latencies = http::run_clients(server, token, SINGLE_CLIENTS, |t, mut client| {
        let next = next.clone();
        async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= singles {
                    return latencies;
                }
                let body =
                    serde_json::json!({"customer": http::customer(t), "key": format!("one-{i}")})
                        .to_string();
                let sent = Instant::now();
                let reply = client.post("/v1/events", body).await;
                latencies.push(sent.elapsed());
                assert_eq!(reply.0, 200, "{}", reply.1);
            }
        }
    });
    let rate = singles as f64 / started.elapsed().as_secs_f64();
    (
        rate,
        http::ms(http::percentile(&latencies, 0.50)),
        http::ms(http::percentile(&latencies, 0.99)),
    )
}

fn store_on(url: &str, config: &Config, now: DateTime<Utc>) -> Store {
    let mut store = Store::open(&PathBuf::from(url)).expect("open the PostgreSQL store");
    store
        .add_customer(
            config,
            &NewCustomer {
                id: "acme".into(),
                name: None,
                plan_id: "business".into(),
                stripe_customer_id: None,
                billing_anchor: Some(now.date_naive()),
            },
            now,
        )
        .expect("add the customer");
    store
}

/// Events `range` (keyed `b-<i>`, one customer) in batches of `BATCH`: the time taken.
fn record_batches(
    store: &mut Store,
    config: &Config,
    now: DateTime<Utc>,
    range: std::ops::Range<usize>,
) -> Duration {
    let keys: Vec<String> = range.map(|i| format!("b-{i}")).collect();
    let started = Instant::now();
    for chunk in keys.chunks(BATCH) {
        let requests: Vec<RecordRequest> = chunk
            .iter()
            .map(|k| RecordRequest {
                idempotency_key: Some(k.as_str().into()),
                ..RecordRequest::new("acme", 1, now)
            })
            .collect();
        for result in store.record_batch(config, &requests, now).unwrap() {
            assert!(result.unwrap().recorded);
        }
    }
    started.elapsed()
}

/// `sql` in one transaction on `url`, then rolled back: with the change marks' trigger, and
/// with `trigger` off (the floor), in `rows`/s.
fn with_and_without(url: &str, sql: &str, trigger: &str, rows: usize) -> (f64, f64) {
    let mut client = postgres::Client::connect(url, postgres::NoTls).expect("connect");
    let mut timed = |disable: &str| {
        let mut tx = client.transaction().unwrap();
        tx.batch_execute(disable).unwrap();
        let started = Instant::now();
        tx.batch_execute(sql).unwrap();
        let rate = rows as f64 / started.elapsed().as_secs_f64();
        tx.rollback().unwrap();
        rate
    };
    let marked = timed("");
    let floor = timed(&format!("ALTER TABLE {trigger}"));
    (marked, floor)
}

/// The change marks (PostgreSQL migration 4) on writes of many rows in one transaction: every
/// event of `url` marked reported, as a sync marks what Stripe took, and `customers` new
/// customers, as `copy-to` and `demo` add them.
fn change_marks(url: &str, events: usize, customers: usize) {
    println!("Change marks, many rows in one transaction (per-row marks were quadratic)");
    let (marked, floor) = with_and_without(
        url,
        "UPDATE usage_events SET stripe_reported_at = '2026-11-27T18:00:00Z'",
        "usage_events DISABLE TRIGGER usage_events_stripe_changed",
        events,
    );
    println!("  {events} events marked reported         {marked:>10.0} events/s");
    println!(
        "  the same UPDATE with no trigger        {floor:>10.0} events/s ({:.2}x the floor)",
        marked / floor
    );
    let (marked, floor) = with_and_without(
        url,
        &format!(
            "INSERT INTO customers (id, name, plan_id, billing_anchor, created_at)
             SELECT 'c' || g, 'c', 'pro', '2026-11-01', '2026-11-01T00:00:00Z'
             FROM generate_series(1, {customers}) AS g"
        ),
        "customers DISABLE TRIGGER customers_changed",
        customers,
    );
    println!("  {customers} customers inserted          {marked:>10.0} customers/s");
    println!(
        "  the same INSERT with no trigger        {floor:>10.0} customers/s ({:.2}x the floor)",
        marked / floor
    );
}

/// The peer: what a user writes without meterline, one transaction per event.
struct Peer {
    client: postgres::Client,
    insert: postgres::Statement,
    update: postgres::Statement,
}

impl Peer {
    fn new(url: &str) -> Peer {
        let mut client = postgres::Client::connect(url, postgres::NoTls).expect("connect");
        client
            .batch_execute(
                "CREATE TABLE events (key TEXT PRIMARY KEY, customer TEXT NOT NULL, quantity BIGINT NOT NULL);
                 CREATE TABLE counters (customer TEXT PRIMARY KEY, used BIGINT NOT NULL);
                 INSERT INTO counters VALUES ('acme', 0);",
            )
            .unwrap();
        let insert = client
            .prepare(
                "INSERT INTO events (key, customer, quantity) VALUES ($1, $2, $3)
                 ON CONFLICT (key) DO NOTHING",
            )
            .unwrap();
        let update = client
            .prepare("UPDATE counters SET used = used + $2 WHERE customer = $1")
            .unwrap();
        Peer {
            client,
            insert,
            update,
        }
    }

    /// Events `range`, one transaction each: the time taken.
    fn run(&mut self, range: std::ops::Range<usize>) -> Duration {
        let started = Instant::now();
        for i in range {
            let mut tx = self.client.transaction().unwrap();
            let key = format!("p-{i}");
            if tx.execute(&self.insert, &[&key, &"acme", &1i64]).unwrap() == 1 {
                tx.execute(&self.update, &[&"acme", &1i64]).unwrap();
            }
            tx.commit().unwrap();
        }
        started.elapsed()
    }
}
