//! `cargo bench --bench postgres`: meterline on a real PostgreSQL (Debian's package, started in a
//! temp dir on loopback by the tests' harness) against the approach a user would write by hand,
//! in the same run on the same server: per event, one transaction that inserts the event row
//! (ON CONFLICT on its key) and runs `UPDATE … SET used = used + n`.
//!
//! Targets (issue 17): `record_batch` >= 50,000 events/s and >= 3x the hand-written peer.
//! `METERLINE_BENCH_EVENTS` changes the number of events (default 100,000).

#[path = "../tests/testsuite/support/postgres.rs"]
#[allow(dead_code)]
mod pg;

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};
use meterline::store::NewCustomer;
use meterline::{Config, RecordRequest, Store};

const BATCH: usize = 500;

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

    let peer = peer_rate(&server.fresh_database(), events);
    println!("  hand-written peer (1 tx per event)     {peer:>10.0} events/s");

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

    let mut store = store_on(&server.fresh_database(), &config, now);
    let keys: Vec<String> = (0..events).map(|i| format!("b-{i}")).collect();
    let started = Instant::now();
    for chunk in keys.chunks(BATCH) {
        let requests: Vec<RecordRequest> = chunk
            .iter()
            .map(|k| RecordRequest {
                idempotency_key: Some(k.as_str().into()),
                ..RecordRequest::new("acme", 1, now)
            })
            .collect();
        for result in store.record_batch(&config, &requests, now).unwrap() {
            assert!(result.unwrap().recorded);
        }
    }
    let batch = events as f64 / started.elapsed().as_secs_f64();
    println!("  meterline Store::record_batch ({BATCH})    {batch:>10.0} events/s");
    println!(
        "  record_batch: {} 50,000 events/s; {:.1}x the peer (target >= 3x)",
        if batch >= 50_000.0 { "meets" } else { "BELOW" },
        batch / peer
    );
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

/// The peer: what a user writes without meterline, one transaction per event.
fn peer_rate(url: &str, events: usize) -> f64 {
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
    let started = Instant::now();
    for i in 0..events {
        let mut tx = client.transaction().unwrap();
        let key = format!("p-{i}");
        if tx.execute(&insert, &[&key, &"acme", &1i64]).unwrap() == 1 {
            tx.execute(&update, &[&"acme", &1i64]).unwrap();
        }
        tx.commit().unwrap();
    }
    events as f64 / started.elapsed().as_secs_f64()
}
