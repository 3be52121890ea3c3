//! `cargo bench --bench http_peer`: `meterline serve` on PostgreSQL against the seed's approach
//! (benches/peer: a Node + drizzle service, one transaction per event), in one run on one local
//! PostgreSQL, each with its own database, the same load generator (benches/support/http.rs)
//! and 32 keep-alive connections. Five phases, each run on meterline and then on the peer:
//!
//! 1. unique keyed events, round robin over 8 customers;
//! 2. the same events resent: all duplicates, each answered with its counter's standing;
//! 3. `GET /v1/customers/{id}/check`;
//! 4. hot keys: 100 keys sent 20 times each, a key's 20 sends at once;
//! 5. a capped customer (1,000 units included, hard cap): a quarter as many events, most
//!    refused.
//!
//! Printed per phase: requests/s, p50 and p99 on both, and meterline's ratio (issue 25's
//! target: >= 3x in every phase). After each phase, on both servers: the counters equal the
//! sum of the event rows, every row has its own key, and the events the answers acknowledged
//! are the rows; a duplicate's answer shows its customer's whole count.
//!
//! Sizes by environment: METERLINE_BENCH_EVENTS (phases 1 to 3, default 20,000),
//! METERLINE_BENCH_HOT_KEYS (default 100; 20 sends each). METERLINE_BENCH_STATEMENTS=1 loads
//! pg_stat_statements and prints meterline's statements per phase (calls, mean time): the
//! profile. The bench runs `npm ci` in benches/peer when its node_modules is missing.

#[path = "../tests/testsuite/support/postgres.rs"]
#[allow(dead_code)]
mod pg;

#[path = "support/http.rs"]
#[allow(dead_code)]
mod http;

use std::cell::Cell;
use std::path::Path;
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use http::{CUSTOMERS, customer};
use hyper::Method;
use meterline::Config;
use meterline::store::NewCustomer;

const CLIENTS: usize = 32;
const HOT_SENDS: usize = 20;
/// The capped customer: on plans.toml's `free` plan (1,000 included, hard cap), and the
/// peer's limit for it.
const CAPPED: &str = "capped";
const CAP: i64 = 1_000;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One request of a phase: method, path, body.
type Request = (Method, String, String);
/// The `i`-th request of a phase.
type Requests = Rc<dyn Fn(usize) -> Request>;
/// Whether an answer (status, body) is right.
type Expect = Rc<dyn Fn(u16, &str) -> bool>;

/// What one side did in one phase.
struct Measured {
    rate: f64,
    p50: Duration,
    p99: Duration,
    /// Answers that said `"recorded":true`.
    recorded: usize,
}

/// A side: its server, its database, and how to read its totals.
struct Side {
    name: &'static str,
    server: http::Server,
    db: postgres::Client,
    /// (counter total, sum of the event rows' quantities, event rows, distinct keys).
    totals: &'static str,
    /// Events acknowledged so far, over every phase.
    acknowledged: usize,
}

const METERLINE_TOTALS: &str = "SELECT
    (SELECT COALESCE(SUM(used), 0)::BIGINT FROM meter_counters WHERE group_key = ''),
    COALESCE(SUM(quantity), 0)::BIGINT, COUNT(*), COUNT(DISTINCT idempotency_key)
    FROM usage_events";
const PEER_TOTALS: &str = "SELECT
    (SELECT COALESCE(SUM(used), 0)::BIGINT FROM peer_counters),
    COALESCE(SUM(quantity), 0)::BIGINT, COUNT(*), COUNT(DISTINCT key)
    FROM peer_events";

impl Side {
    /// `requests` requests over `CLIENTS` connections; `expect` says which statuses are right.
    fn run(
        &mut self,
        token: &str,
        requests: usize,
        request: &Requests,
        expect: &Expect,
    ) -> Measured {
        let next = Rc::new(Cell::new(0));
        let recorded = Rc::new(Cell::new(0));
        let started = Instant::now();
        let latencies = http::run_clients(&self.server, token, CLIENTS, |_, mut client| {
            let (next, recorded) = (next.clone(), recorded.clone());
            let (request, expect) = (request.clone(), expect.clone());
            async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.get();
                    if i >= requests {
                        return latencies;
                    }
                    next.set(i + 1);
                    let (method, path, body) = request(i);
                    let sent = Instant::now();
                    let (status, answer) = client.send(method, &path, body).await;
                    latencies.push(sent.elapsed());
                    assert!(expect(status, &answer), "{status} {answer}");
                    if answer.contains("\"recorded\":true") {
                        recorded.set(recorded.get() + 1);
                    }
                }
            }
        });
        let rate = requests as f64 / started.elapsed().as_secs_f64();
        self.acknowledged += recorded.get();
        Measured {
            rate,
            p50: http::percentile(&latencies, 0.50),
            p99: http::percentile(&latencies, 0.99),
            recorded: recorded.get(),
        }
    }

    /// The counters, the event rows, their keys and the acknowledged events agree.
    fn assert_exact(&mut self, phase: &str) {
        let row = self.db.query_one(self.totals, &[]).expect("totals");
        let (counter, sum, rows, keys): (i64, i64, i64, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let acknowledged = self.acknowledged as i64;
        assert!(
            counter == sum && sum == rows && rows == keys && keys == acknowledged,
            "{} after {phase}: counter {counter}, events' sum {sum}, rows {rows}, keys {keys}, \
             acknowledged {acknowledged}",
            self.name
        );
    }
}

fn ok(status: u16, _: &str) -> bool {
    status == 200
}

fn duplicate(status: u16, answer: &str) -> bool {
    status == 200 && answer.contains("\"duplicate\":true")
}

/// Recorded, or refused by the cap.
fn capped(status: u16, _: &str) -> bool {
    status == 200 || status == 402
}

fn event(customer: &str, key: &str) -> Request {
    let body = serde_json::json!({"customer": customer, "key": key}).to_string();
    (Method::POST, "/v1/events".into(), body)
}

fn main() {
    let events = env("METERLINE_BENCH_EVENTS", 20_000);
    let hot_keys = env("METERLINE_BENCH_HOT_KEYS", 100);
    let statements = std::env::var("METERLINE_BENCH_STATEMENTS").is_ok_and(|v| v == "1");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let plans = root.join("plans.toml");
    let config = Config::load(&plans).expect("the shipped plans.toml");
    let peer_dir = root.join("benches/peer");
    install_peer(&peer_dir);

    let server = pg::PgServer::private();
    if statements {
        server.psql(
            "postgres",
            "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'",
        );
        server.stop();
        server.start();
    }
    let ours_url = server.fresh_database();
    let (mut store, token) = http::fixture(Path::new(&ours_url), &config);
    let yesterday = chrono::Utc::now() - chrono::Days::new(1);
    store
        .add_customer(
            &config,
            &NewCustomer {
                id: CAPPED.into(),
                name: None,
                plan_id: "free".into(),
                stripe_customer_id: None,
                billing_anchor: Some(yesterday.date_naive()),
            },
            yesterday,
        )
        .expect("add the capped customer");
    drop(store);
    let peer_url = server.fresh_database();
    let mut ours = Side {
        name: "meterline",
        server: http::Server::start(Path::new(&ours_url), &plans),
        db: postgres::Client::connect(&ours_url, postgres::NoTls).expect("connect"),
        totals: METERLINE_TOTALS,
        acknowledged: 0,
    };
    let mut peer = Side {
        name: "peer",
        server: start_peer(&peer_dir, &peer_url),
        db: postgres::Client::connect(&peer_url, postgres::NoTls).expect("connect"),
        totals: PEER_TOTALS,
        acknowledged: 0,
    };
    let mut customers = String::from("INSERT INTO peer_customers VALUES ");
    for i in 0..CUSTOMERS {
        customers.push_str(&format!("('{}', NULL), ", customer(i)));
    }
    customers.push_str(&format!("('{CAPPED}', {CAP})"));
    peer.db
        .batch_execute(&customers)
        .expect("the peer's customers");
    let ours_db = ours_url.rsplit('/').next().expect("a database name");
    if statements {
        server.psql(ours_db, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    }

    println!(
        "http_peer: meterline serve on PostgreSQL vs a Node + drizzle peer (1 tx per event), \
         {CLIENTS} connections, {CUSTOMERS} customers, {events} events, one local PostgreSQL \
         (fsync off); load average {}",
        load_average()
    );
    println!(
        "{:<34} {:>22} {:>22} {:>7}",
        "phase", "meterline/s p50 p99", "peer/s p50 p99", "ratio"
    );

    let unique: Requests = Rc::new(|i| event(&customer(i), &format!("u-{i}")));
    let per_customer = (events / CUSTOMERS) as i64;
    let phases: Vec<Phase> = vec![
        Phase {
            name: "unique keyed events",
            requests: events,
            request: unique.clone(),
            expect: Rc::new(ok),
        },
        Phase {
            name: "the same events resent",
            requests: events,
            request: unique,
            expect: Rc::new(duplicate),
        },
        Phase {
            name: "GET /v1/customers/{id}/check",
            requests: events,
            request: Rc::new(|i| {
                let path = format!("/v1/customers/{}/check", customer(i));
                (Method::GET, path, String::new())
            }),
            expect: Rc::new(ok),
        },
        Phase {
            name: "hot keys (100 keys x 20 at once)",
            requests: hot_keys * HOT_SENDS,
            // Consecutive requests share a key, so its 20 sends are in flight together.
            request: Rc::new(|i| {
                let key = i / HOT_SENDS;
                event(&customer(key), &format!("hot-{key}"))
            }),
            expect: Rc::new(ok),
        },
        Phase {
            name: "a capped customer",
            requests: events / 4,
            request: Rc::new(|i| event(CAPPED, &format!("cap-{i}"))),
            expect: Rc::new(capped),
        },
    ];
    let mut below = Vec::new();
    for phase in &phases {
        if statements {
            server.psql(ours_db, "SELECT pg_stat_statements_reset()");
        }
        let a = ours.run(&token, phase.requests, &phase.request, &phase.expect);
        let b = peer.run(&token, phase.requests, &phase.request, &phase.expect);
        for side in [&mut ours, &mut peer] {
            side.assert_exact(phase.name);
        }
        assert_eq!(
            a.recorded, b.recorded,
            "{}: recorded events differ",
            phase.name
        );
        if phase.name.starts_with("the same events") {
            assert_duplicates_show_the_count(&mut ours, &mut peer, &token, per_customer);
        }
        let ratio = a.rate / b.rate;
        if ratio < 3.0 {
            below.push(phase.name);
        }
        println!(
            "{:<34} {:>7.0} {:>6} {:>7} {:>7.0} {:>6} {:>7} {:>6.1}x",
            phase.name,
            a.rate,
            ms(a.p50),
            ms(a.p99),
            b.rate,
            ms(b.p50),
            ms(b.p99),
            ratio
        );
        if statements {
            print_statements(&mut ours.db, phase.requests);
        }
    }
    println!(
        "exact on both after every phase (counter = sum of events = rows = keys = acknowledged)"
    );
    if below.is_empty() {
        println!("meets >= 3x the peer in every phase");
    } else {
        println!("BELOW 3x the peer in: {}", below.join(", "));
    }
}

struct Phase {
    name: &'static str,
    requests: usize,
    request: Requests,
    expect: Expect,
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

/// A resent event's answer shows its customer's whole count, on both sides.
fn assert_duplicates_show_the_count(
    ours: &mut Side,
    peer: &mut Side,
    token: &str,
    per_customer: i64,
) {
    let request: Requests = Rc::new(|i| event(&customer(i), &format!("u-{i}")));
    let expected = format!("\"used\":{per_customer},");
    let expect: Expect = Rc::new(move |status, answer| {
        status == 200 && answer.contains("\"duplicate\":true") && answer.contains(&expected)
    });
    for side in [ours, peer] {
        side.run(token, CUSTOMERS, &request, &expect);
    }
}

/// `npm ci` in benches/peer, once.
fn install_peer(dir: &Path) {
    if dir.join("node_modules").exists() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .expect("npm (Node 20) is needed for the peer");
    assert!(status.success(), "npm ci in {}", dir.display());
}

fn start_peer(dir: &Path, url: &str) -> http::Server {
    let mut command = Command::new("node");
    command
        .arg("server.js")
        .current_dir(dir)
        .env("DATABASE_URL", url)
        .env("PEER_PORT", "0");
    http::Server::spawn(command, "peer: listening on ")
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// meterline's statements of the phase, most time first: calls per request and mean time.
fn print_statements(db: &mut postgres::Client, requests: usize) {
    let rows = db
        .query(
            "SELECT calls, mean_exec_time, total_exec_time, regexp_replace(query, '\\s+', ' ', 'g')
             FROM pg_stat_statements
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND query NOT LIKE '%pg_stat_statements%'
             ORDER BY total_exec_time DESC LIMIT 15",
            &[],
        )
        .expect("pg_stat_statements");
    for row in rows {
        let (calls, mean, total, query): (i64, f64, f64, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let query: String = query.chars().take(110).collect();
        println!(
            "    {:>8} calls {:>5.2}/req {mean:>7.3} ms {total:>8.0} ms  {query}",
            calls,
            calls as f64 / requests as f64
        );
    }
}
