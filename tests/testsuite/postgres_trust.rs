//! PostgreSQL, trusted with secrets and failures: the password shows nowhere whatever its
//! spelling, callers without a token learn nothing of the database, a lock wait that ran out
//! leaves serve's writer working, a run lock's holder is named even when two runs start
//! together, a copy is analysed, and a commit whose answer was lost says so.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::cli::Scratch;
use crate::support::postgres::{PASSWORD, PgServer, USER, server};
use crate::support::serve::{Client, Server, create_token};
use serde_json::json;

/// The key of the writers' advisory lock (`db/postgres`'s `WRITER_LOCK`).
const WRITER_LOCK: i64 = 0x6d65_7465_726c_0001;

fn db_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}

fn port_of(url: &str) -> &str {
    url.rsplit(':').next().unwrap().split('/').next().unwrap()
}

/// `meterline ARGS` on `db`: exit code and stdout with stderr.
fn run(scratch: &Scratch, db: &str, args: &[&str]) -> (i32, String) {
    let out = scratch
        .std_cmd()
        .env("METERLINE_DB", db)
        .args(args)
        .output()
        .expect("run meterline");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().expect("exited"), text)
}

/// The driver decodes option names, so `pass%77ord` is its `password`; any option that is
/// not known to be harmless is masked, and a '%' in an option name is refused.
#[test]
fn a_password_in_an_encoded_or_unknown_option_never_shows() {
    let s = Scratch::new();
    let url = server().fresh_database();
    let name = db_name(&url);
    let port = port_of(&url);
    for option in ["pass%77ord", "%70assword", "PASSWORD", "Password"] {
        let db = format!("postgres://{USER}@127.0.0.1:{port}/{name}?{option}={PASSWORD}");
        for args in [
            &["doctor"][..],
            &["status"],
            &["customer", "add", "a", "--plan", "free"],
        ] {
            let (code, out) = run(&s, &db, args);
            assert!(!out.contains(PASSWORD), "{db} {args:?}: {out}");
            // doctor reports it as a failed check (exit 1), the others as a usage error.
            assert_eq!(
                code,
                if args[0] == "doctor" { 1 } else { 2 },
                "{db} {args:?}: {out}"
            );
            assert!(out.contains(&format!("{option}=***")), "{out}");
        }
    }
}

/// URL schemes are case-insensitive: `POSTGRES://` is PostgreSQL, not a file path echoed
/// whole.
#[test]
fn an_upper_case_scheme_is_postgres_and_its_password_never_shows() {
    let s = Scratch::new();
    let url = server().fresh_database();
    let upper = url.replacen("postgres://", "POSTGRES://", 1);
    let (code, out) = run(&s, &upper, &["customer", "add", "acme", "--plan", "free"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(&s, &upper, &["doctor"]);
    assert!(!out.contains(PASSWORD), "{out}");
    assert!(out.contains(&format!("POSTGRES://{USER}:***@")), "{out}");
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        server().psql(db_name(&url), "SELECT id FROM customers"),
        "acme"
    );

    // Unreachable: an error that names the database without its password.
    for scheme in ["POSTGRES", "PostgreSQL"] {
        let db = format!("{scheme}://{USER}:{PASSWORD}@127.0.0.1:1/x");
        let (code, out) = run(&s, &db, &["status"]);
        assert!(!out.contains(PASSWORD), "{out}");
        assert!(out.contains("unavailable"), "{out}");
        assert_eq!(code, 1, "{out}");
    }
}

/// While PostgreSQL is down, a caller without a valid token (and `/healthz`) hears that the
/// database is unavailable and nothing about it; one with a token may hear why, never the
/// password.
#[test]
fn without_a_token_a_503_names_nothing_of_the_database() {
    let pg = PgServer::private();
    // Names found nowhere else in an answer.
    let (role, password, name) = ("acct_role_q", "acct-secret-q", "acct_db_q");
    pg.psql(
        "postgres",
        &format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'"),
    );
    pg.psql("postgres", &format!("CREATE DATABASE {name} OWNER {role}"));
    let url = pg.url_as(role, password, name);
    let mut s = Scratch::new();
    s.db = url.clone().into();
    s.add_customer("acme", "free", "2026-11-01");
    let token = create_token(&s, "t");
    let server = Server::start(&s, &[]);
    let event = json!({"customer": "acme", "quantity": 1}).to_string();
    assert_eq!(server.client(&token).post("/v1/events", &event).status, 200);

    pg.stop();
    let nothing_of_the_database = |what: &str, body: &str| {
        for part in [
            url.as_str(),
            password,
            role,
            "127.0.0.1",
            port_of(&url),
            name,
        ] {
            assert!(!body.contains(part), "{what} shows {part:?}: {body}");
        }
    };
    let anonymous = Client::new(&server.base, None);
    let wrong = Client::new(&server.base, Some("mlt_not_a_token"));
    // Past the token cache's second: the guard must read the token table, and cannot.
    std::thread::sleep(Duration::from_millis(1100));
    let healthz = anonymous.get("/healthz");
    assert_eq!(healthz.status, 503, "{}", healthz.body);
    assert_eq!(healthz.code(), "database_unavailable");
    nothing_of_the_database("/healthz", &healthz.body);
    for (who, client) in [("no token", &anonymous), ("a wrong token", &wrong)] {
        for path in [
            "/v1/events",
            "/stripe/v1/billing/meter_events",
            "/openmeter/api/v1/events",
            "/lago/api/v1/events",
        ] {
            let reply = client.post(path, &event);
            // Without a token: 401 at once; with a wrong one, the table cannot be read.
            let expected = if who == "no token" { 401 } else { 503 };
            assert_eq!(reply.status, expected, "{who} {path}: {}", reply.body);
            nothing_of_the_database(&format!("{who} on {path}"), &reply.body);
        }
    }
    let with_token = server.client(&token).post("/v1/events", &event);
    assert_eq!(with_token.status, 503, "{}", with_token.body);
    assert!(!with_token.body.contains(password), "{}", with_token.body);

    pg.start();
    assert_eq!(server.terminate().code(), Some(0));
}

/// Hold the writers' lock on `db` from another session for `secs`, from a thread; returns
/// once it is held.
fn hold_writers_lock(pg: &'static PgServer, db: &str, secs: u32) -> std::thread::JoinHandle<()> {
    let db = db.to_string();
    let holder_db = db.clone();
    let holder = std::thread::spawn(move || {
        pg.psql(
            &holder_db,
            &format!(
                "BEGIN; SELECT pg_advisory_xact_lock({WRITER_LOCK}); SELECT pg_sleep({secs}); COMMIT"
            ),
        );
    });
    wait_for_advisory_locks(pg, &db, 1);
    holder
}

/// Wait until `n` advisory locks are granted on `db`.
fn wait_for_advisory_locks(pg: &PgServer, db: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let sql = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
    while pg.psql(db, sql) != n.to_string() {
        assert!(Instant::now() < deadline, "{n} advisory locks never held");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A write that waited for the writers' lock past the busy timeout got 503; the writer's
/// connection must not stay in its aborted transaction: once the lock is free, writes work.
#[test]
fn a_lock_wait_past_the_busy_timeout_leaves_the_writer_working() {
    let mut s = Scratch::new();
    let url = server().fresh_database();
    s.db = url.clone().into();
    s.add_customer("acme", "free", "2026-11-01");
    let token = create_token(&s, "t");
    let server_process = Server::start(&s, &["--busy-timeout-ms", "1000"]);
    let api = server_process.client(&token);
    let event = |key: &str| json!({"customer": "acme", "key": key, "quantity": 1}).to_string();
    assert_eq!(api.post("/v1/events", &event("before")).status, 200);

    let holder = hold_writers_lock(server(), db_name(&url), 8);
    let waited = api.post("/v1/events", &event("while-held"));
    assert_eq!(waited.status, 503, "{}", waited.body);
    assert_eq!(waited.code(), "database_locked");
    holder.join().unwrap();

    for key in ["after-1", "after-2", "while-held"] {
        let reply = api.post("/v1/events", &event(key));
        assert_eq!(reply.status, 200, "{key}: {}", reply.body);
    }
    assert_eq!(
        server().psql(db_name(&url), "SELECT count(*) FROM usage_events"),
        "4"
    );
    let healthz = Client::new(&server_process.base, None).get("/healthz");
    assert_eq!(healthz.status, 200, "{}", healthz.body);
    assert_eq!(server_process.terminate().code(), Some(0));
}

/// Two runs start together: the first has the run lock and waits for the writers' lock to
/// write its row. The second names it once its row is there, never "pid 0 on another host".
#[test]
fn a_run_lock_taken_a_moment_ago_names_its_holder() {
    use meterline::store::{LockHolder, Store};
    let url = server().fresh_database();
    let name = db_name(&url).to_string();
    let mut second = Store::open(std::path::Path::new(&url)).unwrap();
    let first = Store::open(std::path::Path::new(&url)).unwrap();

    let writers = hold_writers_lock(server(), &name, 2);
    let starting = std::thread::spawn(move || {
        let mut first = first;
        let holder = LockHolder {
            host: "host-a".into(),
            pid: 4242,
        };
        let run = first.begin_alert_run(&holder, chrono::Utc::now());
        (first, run)
    });
    // The first run holds the alerts lock (a session lock) and waits for the writers'.
    wait_for_advisory_locks(server(), &name, 2);
    let refused = second
        .begin_alert_run(
            &LockHolder {
                host: "host-b".into(),
                pid: 1,
            },
            chrono::Utc::now(),
        )
        .unwrap_err()
        .to_string();
    assert!(
        refused
            .contains("another alert delivery is already running (pid 4242 on host-a, started 20"),
        "{refused}"
    );
    writers.join().unwrap();
    let (_first, run) = starting.join().unwrap();
    assert!(run.is_ok(), "{run:?}");
}

/// The copy's tables come with their statistics: no query on a fresh copy is planned as
/// if its tables were empty.
#[test]
fn copy_to_analyses_what_it_copied() {
    let s = Scratch::new();
    s.fill_demo(20, 2_000);
    let url = server().fresh_database();
    let out = s.cmd().args(["copy-to", &url]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let analysed = server().psql(
        db_name(&url),
        "SELECT string_agg(DISTINCT tablename, ',' ORDER BY tablename) FROM pg_stats \
         WHERE schemaname = 'public' AND tablename IN ('usage_events', 'customers', 'usage_records')",
    );
    assert_eq!(analysed, "customers,usage_events,usage_records");
}

/// A TCP proxy to PostgreSQL that, once, lets the COMMIT after an event INSERT through to the
/// server and then cuts the connection before the server's answer comes back.
struct CuttingProxy {
    port: u16,
    fired: Arc<AtomicBool>,
}

impl CuttingProxy {
    fn start(upstream_port: u16) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let fired = Arc::new(AtomicBool::new(false));
        let once = fired.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let upstream = TcpStream::connect(("127.0.0.1", upstream_port)).unwrap();
                Self::pump_pair(client, upstream, once.clone());
            }
        });
        CuttingProxy { port, fired }
    }

    fn pump_pair(client: TcpStream, upstream: TcpStream, once: Arc<AtomicBool>) {
        let cut = Arc::new(AtomicBool::new(false));
        let (mut from_client, mut to_server) =
            (client.try_clone().unwrap(), upstream.try_clone().unwrap());
        let (mut from_server, mut to_client) = (upstream, client);
        let cutting = cut.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 64 * 1024];
            let mut inserted = false;
            while let Ok(n) = from_client.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let chunk = &buf[..n];
                inserted |= contains(chunk, b"INSERT INTO usage_events");
                let commit = inserted && contains(chunk, b"COMMIT\0");
                // Only the first such COMMIT of all connections.
                let cut_now = commit && !once.swap(true, Ordering::SeqCst);
                if cut_now {
                    cutting.store(true, Ordering::SeqCst);
                }
                if to_server.write_all(chunk).is_err() {
                    break;
                }
                if cut_now {
                    // The server reads and commits; its answer is never passed on.
                    std::thread::sleep(Duration::from_millis(500));
                    let _ = from_client.shutdown(Shutdown::Both);
                    let _ = to_server.shutdown(Shutdown::Both);
                    break;
                }
            }
            let _ = to_server.shutdown(Shutdown::Both);
        });
        std::thread::spawn(move || {
            let mut buf = [0u8; 64 * 1024];
            while let Ok(n) = from_server.read(&mut buf) {
                if n == 0 || cut.load(Ordering::SeqCst) || to_client.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = to_client.shutdown(Shutdown::Both);
        });
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A COMMIT whose answer was lost may have been written: serve must not answer as if nothing
/// was (a client would then count the event as not recorded, or send it under a new key).
/// It says the outcome is unknown, and the same key sent again records it once.
#[test]
fn a_commit_whose_answer_was_lost_is_reported_as_unknown() {
    let mut s = Scratch::new();
    let url = server().fresh_database();
    s.db = url.clone().into();
    s.add_customer("acme", "free", "2026-11-01");
    let token = create_token(&s, "t");
    let proxy = CuttingProxy::start(server().port);
    let through_proxy = format!(
        "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{}?sslmode=disable",
        proxy.port,
        db_name(&url)
    );
    s.db = through_proxy.into();
    let serving = Server::start(&s, &[]);
    let api = serving.client(&token);
    let event = json!({"customer": "acme", "key": "k-1", "quantity": 3}).to_string();

    let lost = api.post("/v1/events", &event);
    assert!(proxy.fired.load(Ordering::SeqCst), "no commit was cut");
    assert_eq!(lost.status, 503, "{}", lost.body);
    assert_eq!(lost.code(), "outcome_unknown", "{}", lost.body);
    assert!(lost.retry_after.is_some());
    let message = lost.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("unknown") && message.contains("same idempotency key"),
        "{message}"
    );
    // It was committed nonetheless.
    let db = db_name(&url);
    assert_eq!(
        server().psql(
            db,
            "SELECT count(*) FROM usage_events WHERE idempotency_key = 'k-1'"
        ),
        "1"
    );

    // Sent again with the same key: the original event, counted once.
    let again = api.post("/v1/events", &event);
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["duplicate"], true, "{}", again.body);
    assert_eq!(
        server().psql(db, "SELECT count(*), SUM(quantity) FROM usage_events"),
        "1|3"
    );
    assert_eq!(
        server().psql(db, "SELECT SUM(used) FROM usage_records"),
        "3"
    );
    assert_eq!(serving.terminate().code(), Some(0));
}
