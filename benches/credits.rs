//! `cargo bench --bench credits`: prepaid credits and reservations (issue 27), each figure next
//! to its floor measured in the same run:
//! - `record_batch` for a customer whose every event burns money credits, against the same
//!   batches for a customer without credits, in alternating rounds; on SQLite and on a local
//!   PostgreSQL (Debian's package, started as the tests start it). Target: >= 0.8x.
//! - `metered_check` of a customer with 10 live grants, against the SELECT of its counter rows
//!   it cannot do without; then again once `METERLINE_BENCH_LAPSED` (default 10,000)
//!   reservations of it lapsed unsettled, which must cost it nothing. Target: < 20 µs.
//! - reserve + settle pairs over HTTP (`meterline serve`, 16 keep-alive connections) on
//!   SQLite, against the same pairs through the library in process. Target: >= 10,000
//!   pairs/s.
//! - the same pairs on PostgreSQL against a seed-style peer (benches/peer: Node + drizzle, the
//!   balance row locked FOR UPDATE, live holds summed, one transaction per call). Target: >=
//!   3x the peer.
//!
//! `METERLINE_BENCH_EVENTS` (default 100,000), `METERLINE_BENCH_PAIRS` (default 10,000),
//! `METERLINE_BENCH_CLIENTS` (default 16: the connections of the pairs, and of the peer's),
//! `METERLINE_BENCH_POSTGRES=0` skips PostgreSQL and the peer, `METERLINE_BENCH_CASE=batch`,
//! `check` or `pairs` runs one part on SQLite, `postgres-batch` or `postgres-pairs` one on
//! PostgreSQL, `library-pairs` the pairs' floor alone.

#[path = "support/rounds.rs"]
mod rounds;

#[path = "../tests/testsuite/support/postgres.rs"]
#[allow(dead_code)]
mod pg;

#[path = "support/http.rs"]
#[allow(dead_code)]
mod http;

use std::cell::Cell;
use std::hint::black_box;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rounds::{alternate, alternate_ranges, micros, rate};

use chrono::{DateTime, NaiveDate, Utc};
use meterline::store::{Decimal, NewCustomer, NewGrant, NewReservation, Reserved};
use meterline::{Config, RecordRequest, Store};

const BATCH: usize = 500;
/// Connections the pairs run over, unless `METERLINE_BENCH_CLIENTS` says otherwise.
const CLIENTS: usize = 16;
const CUSTOMERS: usize = 8;

/// One meter (the implicit `usage`), 1,000 units included, every unit past them priced.
const PLANS: &str = r#"
[[plans]]
id = "free"
[[plans]]
id = "pro"
included = 1000
at_limit = "overage"
overage_rate = "0.000001"
"#;

fn number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let events = number("METERLINE_BENCH_EVENTS", 100_000);
    let pairs = number("METERLINE_BENCH_PAIRS", 10_000);
    let config = Config::parse(PLANS, "bench plans").expect("bench plans");
    let dir = tempfile::tempdir().expect("temp dir");
    let plans = dir.path().join("plans.toml");
    std::fs::write(&plans, PLANS).unwrap();
    let sqlite = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let only = std::env::var("METERLINE_BENCH_CASE").ok();
    let runs = |case: &str| only.as_deref().is_none_or(|o| o == case);

    if runs("batch") {
        println!("record_batch on SQLite: {events} events, batches of {BATCH}");
        batches(&sqlite("plain.db"), &sqlite("credited.db"), &config, events);
    }
    if runs("check") {
        check(&sqlite("check.db"), &config);
    }
    if only.as_deref() == Some("library-pairs") {
        let floor = library_pairs(&sqlite("pairs-lib.db"), &config, pairs);
        println!("  floor Store::reserve + settle {floor:>10.0} pairs/s");
        return;
    }
    if runs("pairs") {
        println!(
            "reserve + settle pairs on SQLite: {pairs} pairs, {} connections",
            clients()
        );
        let floor = library_pairs(&sqlite("pairs-lib.db"), &config, pairs);
        let db = sqlite("pairs-http.db");
        let ours = served_pairs(Path::new(&db), &plans, &config, pairs);
        println!("  floor Store::reserve + settle {floor:>10.0} pairs/s");
        println!(
            "  POST reserve + settle         {ours:>10.0} pairs/s ({:.2}x the floor), target >= \
             10,000: {}",
            ours / floor,
            verdict(ours >= 10_000.0)
        );
    }
    // PostgreSQL's parts run in a full run, or alone as `postgres-batch` and `postgres-pairs`.
    let on_postgres = |case: &str| match only.as_deref() {
        Some(o) => o == case,
        None => std::env::var("METERLINE_BENCH_POSTGRES").as_deref() != Ok("0"),
    };
    if !on_postgres("postgres-batch") && !on_postgres("postgres-pairs") {
        return;
    }
    let server = pg::PgServer::private();
    if on_postgres("postgres-batch") {
        println!(
            "record_batch on PostgreSQL (fsync off, as the test server): {} events",
            events / 2
        );
        batches(
            &server.fresh_database(),
            &server.fresh_database(),
            &config,
            events / 2,
        );
    }
    if on_postgres("postgres-pairs") {
        println!(
            "reserve + settle pairs on PostgreSQL: {pairs} pairs, {} connections",
            clients()
        );
        let ours = served_pairs(Path::new(&server.fresh_database()), &plans, &config, pairs);
        let peer = peer_pairs(&server.fresh_database(), pairs);
        println!("  seed-style peer (Node + drizzle) {peer:>10.0} pairs/s");
        println!(
            "  meterline serve                  {ours:>10.0} pairs/s ({:.2}x the peer), target \
             >= 3x: {}",
            ours / peer,
            verdict(ours >= 3.0 * peer)
        );
    }
}

fn clients() -> usize {
    number("METERLINE_BENCH_CLIENTS", CLIENTS)
}

fn verdict(met: bool) -> &'static str {
    if met { "meets" } else { "BELOW" }
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn customer(i: usize) -> String {
    format!("cust{}", i % CUSTOMERS)
}

/// A store on `url` with the customers on pro, a token for serve, and (`credits`) a money
/// grant to each large enough for every bench.
fn fixture(url: &str, config: &Config, credits: bool) -> (Store, String) {
    let mut store = Store::open(Path::new(url)).expect("open");
    let anchor = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    for i in 0..CUSTOMERS {
        let id = customer(i);
        store
            .add_customer(
                config,
                &NewCustomer {
                    id: id.clone(),
                    name: None,
                    plan_id: "pro".into(),
                    stripe_customer_id: None,
                    billing_anchor: Some(anchor),
                },
                now(),
            )
            .expect("add customer");
        if credits {
            store
                .grant_credits(config, &NewGrant::new(&id, "1000000"), now())
                .expect("grant");
        }
    }
    let token = store.create_token("bench", now()).expect("token");
    (store, token)
}

/// An event of 100 units for the first customer: all past its 1,000 included but the first
/// ten.
fn event(at: DateTime<Utc>) -> RecordRequest {
    RecordRequest::new(&customer(0), 100, at)
}

/// The same batches for a customer without credits and one whose events burn them, in
/// alternating rounds.
fn batches(plain_url: &str, credited_url: &str, config: &Config, events: usize) {
    let (mut plain, _) = fixture(plain_url, config, false);
    let (mut credited, _) = fixture(credited_url, config, true);
    let at = now();
    let all: Vec<RecordRequest> = (0..events).map(|_| event(at)).collect();
    let run = |store: &mut Store, range: std::ops::Range<usize>| {
        for chunk in all[range].chunks(BATCH) {
            black_box(store.record_batch(config, chunk, at).expect("batch"));
        }
    };
    let (plain_took, credited_took) = alternate_ranges(
        events,
        |range| run(&mut plain, range),
        |range| run(&mut credited, range),
    );
    // Exact: every event past the included burnt, the ledger adds up.
    let balance = credited.credit_balance(&customer(0), at).unwrap();
    let burnt = Decimal::new(events as i64 * 100 - 1000, 6);
    assert_eq!(balance.money.balance, Decimal::from(1_000_000) - burnt);
    assert!(credited.check_ledger().unwrap().mismatches.is_empty());
    let (plain_rate, credited_rate) = (rate(events, plain_took), rate(events, credited_took));
    println!("  without credits          {plain_rate:>10.0} events/s");
    println!(
        "  every event burns credits {credited_rate:>9.0} events/s ({:.2}x), target >= 0.80x: {}",
        credited_rate / plain_rate,
        verdict(credited_rate >= 0.8 * plain_rate)
    );
}

/// `metered_check` of a customer with 10 live grants, against the SELECT of its rows alone.
fn check(url: &str, config: &Config) {
    let (mut store, _) = fixture(url, config, false);
    let at = now();
    for i in 0..10 {
        let grant = NewGrant {
            expires_at: Some(at + chrono::Days::new(i + 1)),
            ..NewGrant::new(&customer(0), "1.50")
        };
        store.grant_credits(config, &grant, at).unwrap();
    }
    store.record(config, &event(at), at).unwrap();
    let checked = store.metered_check(config, &customer(0), at).unwrap();
    assert_eq!(checked.credits.money.balance, Decimal::from(15));
    let conn = rusqlite::Connection::open(url).unwrap();
    let start = checked
        .check
        .period_start
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let checks = 20_000;
    let floor_check = || {
        let rows: Vec<(String, String, i64)> = conn
            .prepare_cached(
                "SELECT meter_id, group_key, used FROM meter_counters
                     WHERE customer_id = ?1 AND period_start = ?2",
            )
            .unwrap()
            .query_map(rusqlite::params![customer(0), start], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        black_box(rows);
    };
    let (floor, ours) = alternate(
        checks,
        |_| floor_check(),
        |_| {
            black_box(store.metered_check(config, &customer(0), at).unwrap());
        },
    );
    report_check(
        "check of a customer with 10 live grants",
        checks,
        floor,
        ours,
    );

    // Reservations a client made and never settled nor released: each lapsed long before
    // the check, and none may cost it anything.
    let lapsed = number("METERLINE_BENCH_LAPSED", 10_000);
    let first = at - chrono::TimeDelta::seconds(2 * lapsed as i64 + 60);
    for i in 0..lapsed {
        let request = NewReservation {
            customer: customer(0),
            event_type: None,
            meter: None,
            properties: [("quantity".to_string(), "1".to_string())].into(),
            ttl_secs: 1,
            key: None,
        };
        let made_at = first + chrono::TimeDelta::seconds(2 * i as i64);
        store.reserve(config, &request, made_at).unwrap();
    }
    let after = store.metered_check(config, &customer(0), at).unwrap();
    assert_eq!(after.credits.money, checked.credits.money);
    let (floor, ours) = alternate(
        checks,
        |_| floor_check(),
        |_| {
            black_box(store.metered_check(config, &customer(0), at).unwrap());
        },
    );
    report_check(
        &format!("the same after {lapsed} reservations lapsed unsettled"),
        checks,
        floor,
        ours,
    );
}

fn report_check(what: &str, checks: usize, floor: Duration, ours: Duration) {
    let (floor_us, ours_us) = (micros(checks, floor), micros(checks, ours));
    println!("{what}: {checks} calls");
    println!("  floor (the SELECT of its rows) {floor_us:>8.2} µs");
    println!(
        "  Store::metered_check           {ours_us:>8.2} µs ({:.2}x the floor), target < 20 µs: {}",
        ours_us / floor_us,
        verdict(ours_us < 20.0)
    );
}

/// Reserve 100 units, settle 90: the library's pairs per second.
fn library_pairs(url: &str, config: &Config, pairs: usize) -> f64 {
    let (mut store, _) = fixture(url, config, true);
    let started = Instant::now();
    for i in 0..pairs {
        let request = NewReservation {
            customer: customer(i),
            event_type: None,
            meter: None,
            properties: [("quantity".to_string(), "100".to_string())].into(),
            ttl_secs: 600,
            key: Some(format!("p{i}")),
        };
        let Reserved::Held { reservation, .. } = store.reserve(config, &request, now()).unwrap()
        else {
            panic!("refused");
        };
        let used = [("quantity".to_string(), "90".to_string())].into();
        black_box(
            store
                .settle(config, &reservation.id, Some(used), now())
                .unwrap(),
        );
    }
    rate(pairs, started.elapsed())
}

/// The same pairs over HTTP to `meterline serve` on `db`.
fn served_pairs(db: &Path, plans: &Path, config: &Config, pairs: usize) -> f64 {
    let (store, token) = fixture(&db.to_string_lossy(), config, true);
    let server = http::Server::start(db, plans);
    let took = run_pairs(
        &server,
        &token,
        pairs,
        |i| {
            serde_json::json!({"customer": customer(i), "properties": {"quantity": 100},
                           "key": format!("p{i}")})
            .to_string()
        },
        r#"{"properties": {"quantity": 90}}"#,
    );
    drop(server);
    // Exact: every pair settled once, the ledger adds up.
    let settled: i64 = (0..CUSTOMERS)
        .map(|c| store.check(config, &customer(c), now()).unwrap().used)
        .sum();
    assert_eq!(settled, pairs as i64 * 90);
    assert!(store.check_ledger().unwrap().mismatches.is_empty());
    rate(pairs, took)
}

/// The pairs against the seed-style peer on its own database.
fn peer_pairs(url: &str, pairs: usize) -> f64 {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peer");
    if !dir.join("node_modules").exists() {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm (Node 20) is needed for the peer");
        assert!(status.success());
    }
    let mut command = std::process::Command::new("node");
    command
        .arg("server.js")
        .current_dir(&dir)
        .env("DATABASE_URL", url)
        .env("PEER_PORT", "0");
    let server = http::Server::spawn(command, "peer: listening on ");
    let mut db = postgres::Client::connect(url, postgres::NoTls).expect("connect");
    for c in 0..CUSTOMERS {
        db.execute(
            "INSERT INTO peer_balances VALUES ($1, 1000000000)",
            &[&customer(c)],
        )
        .expect("the peer's balances");
    }
    let took = run_pairs(
        &server,
        "",
        pairs,
        |i| {
            serde_json::json!({"customer": customer(i), "amount": 100, "key": format!("p{i}")})
                .to_string()
        },
        r#"{"amount": 90}"#,
    );
    let row = db
        .query_one("SELECT COUNT(*) FROM peer_events", &[])
        .expect("count");
    assert_eq!(row.get::<_, i64>(0), pairs as i64);
    rate(pairs, took)
}

/// `pairs` reserve (body `reserve(i)`) + settle (body `settle`) over `clients()` connections.
fn run_pairs(
    server: &http::Server,
    token: &str,
    pairs: usize,
    reserve: impl Fn(usize) -> String + 'static,
    settle: &'static str,
) -> Duration {
    let next = Rc::new(Cell::new(0));
    let reserve = Rc::new(reserve);
    let started = Instant::now();
    http::run_clients(server, token, clients(), |_, mut client| {
        let (next, reserve) = (next.clone(), reserve.clone());
        async move {
            loop {
                let i = next.get();
                if i >= pairs {
                    return Vec::new();
                }
                next.set(i + 1);
                let (status, answer) = client.post("/v1/reservations", reserve(i)).await;
                assert_eq!(status, 201, "{answer}");
                let id: serde_json::Value = serde_json::from_str(&answer).unwrap();
                let path = format!("/v1/reservations/{}/settle", id["id"].as_str().unwrap());
                let (status, answer) = client.post(&path, settle.to_string()).await;
                assert_eq!(status, 200, "{answer}");
            }
        }
    });
    started.elapsed()
}
