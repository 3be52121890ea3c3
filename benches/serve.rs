//! `cargo bench --bench serve`: the HTTP API against the library, load generator and server
//! side by side on one machine, keep-alive connections. The load generator is written like oha:
//! async hyper HTTP/1 connections driven by one thread, so it takes as little of the machine's
//! cores from the server as it can (16 blocking ureq threads took a third of 2 cores).
//!
//! 1. Batched ingest over HTTP vs `Store::record_batch` without HTTP (the floor), same sizes.
//! 2. Single-event requests over 32 connections: events/s, p50, p99.
//! 3. `GET /v1/customers/{id}/check`: requests/s, p99.
//! 4. A soak at a steady rate: the server's RSS at the start and the end.
//!
//! Sizes by environment: METERLINE_BENCH_EVENTS (batched events, default 200,000),
//! METERLINE_BENCH_BATCH (events a request, default 500), METERLINE_BENCH_SINGLES (default
//! 20,000), METERLINE_BENCH_CHECKS (default 50,000), METERLINE_BENCH_SOAK_SECS (default 60),
//! METERLINE_BENCH_SOAK_RATE (events/s during the soak, default 2,000).

#[path = "support/http.rs"]
mod http;

use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use http::{Server, customer, ms, percentile, run_clients};
use meterline::{Config, RecordRequest};

const BATCH_CLIENTS: usize = 4;
const SINGLE_CLIENTS: usize = 32;
const CHECK_CLIENTS: usize = 16;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let events = env("METERLINE_BENCH_EVENTS", 200_000);
    let batch = env("METERLINE_BENCH_BATCH", 500).clamp(1, 1000);
    let singles = env("METERLINE_BENCH_SINGLES", 20_000);
    let checks = env("METERLINE_BENCH_CHECKS", 50_000);
    let soak_secs = env("METERLINE_BENCH_SOAK_SECS", 60);
    let soak_rate = env("METERLINE_BENCH_SOAK_RATE", 2_000);
    let plans = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans.toml");
    let config = Config::load(&plans).expect("the shipped plans.toml");
    let dir = tempfile::tempdir().expect("temp dir");

    // 1a. The floor: the library's own record_batch, same batch size, no HTTP.
    let lib_db = dir.path().join("library.db");
    let (mut store, _) = http::fixture(&lib_db, &config);
    let started = Instant::now();
    let mut sent = 0;
    while sent < events {
        let now = Utc::now();
        let requests: Vec<RecordRequest> = (sent..(sent + batch).min(events))
            .map(|i| RecordRequest::new(&customer(i), 1, now))
            .collect();
        let results = store
            .record_batch(&config, &requests, now)
            .expect("record_batch");
        assert!(results.iter().all(|r| r.as_ref().is_ok_and(|o| o.recorded)));
        sent += requests.len();
    }
    let floor = events as f64 / started.elapsed().as_secs_f64();
    drop(store);

    // 1b. The same events over HTTP.
    let http_db = dir.path().join("http.db");
    let (_, token) = http::fixture(&http_db, &config);
    let server = Server::start(&http_db, &plans);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    run_clients(&server, &token, BATCH_CLIENTS, |_, mut client| {
        let next = next.clone();
        async move {
            loop {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first >= events {
                    return Vec::new();
                }
                let body: Vec<serde_json::Value> = (first..(first + batch).min(events))
                    .map(|i| serde_json::json!({"customer": customer(i)}))
                    .collect();
                let body = serde_json::json!({"events": body}).to_string();
                let reply = client.post("/v1/events/batch", body).await;
                assert_eq!(reply.0, 200, "{}", reply.1);
            }
        }
    });
    let http = events as f64 / started.elapsed().as_secs_f64();
    println!("batched ingest: {events} events, {batch} a request, {BATCH_CLIENTS} connections");
    println!("  floor Store::record_batch   {floor:>10.0} events/s");
    println!("  POST /v1/events/batch       {http:>10.0} events/s");
    println!(
        "  ratio {:.2} (target >= 0.50), {} 100,000 events/s",
        http / floor,
        if http >= 100_000.0 { "meets" } else { "BELOW" }
    );

    // 2. Single events over 32 connections.
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let latencies = run_clients(&server, &token, SINGLE_CLIENTS, |t, mut client| {
        let next = next.clone();
        async move {
            let body = serde_json::json!({"customer": customer(t)}).to_string();
            let mut latencies = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < singles {
                let sent = Instant::now();
                let reply = client.post("/v1/events", body.clone()).await;
                latencies.push(sent.elapsed());
                assert_eq!(reply.0, 200, "{}", reply.1);
            }
            latencies
        }
    });
    let rate = singles as f64 / started.elapsed().as_secs_f64();
    println!("single events: {singles} requests over {SINGLE_CLIENTS} connections");
    println!(
        "  {rate:>10.0} events/s (target >= 10,000), p50 {}, p99 {}",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99))
    );

    // 3. check.
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let latencies = run_clients(&server, &token, CHECK_CLIENTS, |t, mut client| {
        let next = next.clone();
        async move {
            let path = format!("/v1/customers/{}/check", customer(t));
            let mut latencies = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < checks {
                let sent = Instant::now();
                let reply = client.get(&path).await;
                latencies.push(sent.elapsed());
                assert_eq!(reply.0, 200, "{}", reply.1);
            }
            latencies
        }
    });
    let rate = checks as f64 / started.elapsed().as_secs_f64();
    println!("check: {checks} requests over {CHECK_CLIENTS} connections");
    println!(
        "  {rate:>10.0} requests/s (target >= 30,000), p50 {}, p99 {} (target < 5 ms)",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99))
    );

    // 4. Soak: batches of 100 at a steady rate; RSS after a warm-up and at the end.
    let rss_start = server.rss_kib();
    let per_request = 100;
    let interval = Duration::from_secs_f64(per_request as f64 / soak_rate.max(1) as f64);
    let soaked = Rc::new(AtomicUsize::new(0));
    run_clients(&server, &token, 1, |_, mut client| {
        let soaked = soaked.clone();
        async move {
            let started = tokio::time::Instant::now();
            let mut tick = tokio::time::interval(interval);
            while started.elapsed() < Duration::from_secs(soak_secs as u64) {
                tick.tick().await;
                let n = soaked.fetch_add(per_request, Ordering::Relaxed);
                let body: Vec<serde_json::Value> = (0..per_request)
                    .map(|i| serde_json::json!({"customer": customer(i), "key": format!("soak-{n}-{i}")}))
                    .collect();
                let body = serde_json::json!({"events": body}).to_string();
                let reply = client.post("/v1/events/batch", body).await;
                assert_eq!(reply.0, 200, "{}", reply.1);
            }
            Vec::new()
        }
    });
    let soaked = soaked.load(Ordering::Relaxed);
    let rss_end = server.rss_kib();
    println!("soak: {soak_secs} s at {soak_rate} events/s ({soaked} events)");
    println!("  server RSS start {rss_start} KiB, end {rss_end} KiB");
}
