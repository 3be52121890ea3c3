//! The dashboard at scale: 100,000 customers and ~10 million events.
//!
//! Prints, each with a floor measured in the same run and the ratio:
//! - open: load every customer's row + build the app + first frame (target < 1 s);
//! - refresh after another process records 100 events (target < 50 ms), and after a sync
//!   marks 1,000 events reported (Stripe backlog recount);
//! - frame render on a 200×60 TestBackend (target < 5 ms);
//! - peak resident memory of a process that opens the dashboard (target < 150 MB).
//!
//! The fixture is built with bulk SQL in one transaction (recording 10M events one by one
//! would take hours) and cached under target/ between runs.
//!
//! With `METERLINE_BENCH_METERS=3` the same runs on 100,000 customers × 3 meters (an AI API:
//! requests counted, tokens summed by model, active users counted once each; the events spread
//! over the three, their counters in meter_counters and meter_values as `record` leaves them),
//! from its own cached fixture; the refresh then records tokens.
//!
//! Run: `cargo bench --bench dashboard` (or `METERLINE_BENCH_METERS=3 cargo bench --bench dashboard`)

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use meterline::billing::{format_ts, period_containing};
use meterline::store::Refresh;
use meterline::{Config, RecordRequest, Store};
use meterline_tui::app::App;
use meterline_tui::data::DataEvent;
use meterline_tui::theme::Theme;
use meterline_tui::ui;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::widgets::Block;

const CUSTOMERS: i64 = 100_000;
const EVENTS_PER_PERIOD: i64 = 14;
const PERIODS: i64 = 7;
/// Bump when the fixture's shape changes, so a cached file is rebuilt.
const FIXTURE_VERSION: u32 = 3;
const CHILD_ENV: &str = "METERLINE_BENCH_RSS_CHILD";
/// `3`: the three-meter variant.
const METERS_ENV: &str = "METERLINE_BENCH_METERS";
/// Bump when the three-meter fixture's shape changes.
const METERS_FIXTURE_VERSION: u32 = 1;

/// The three-meter plans: each plan limits requests, tokens (overage on pro and team) and
/// users (unbilled on team and business), on the shipped plans' ids.
const METER_PLANS: &str = r#"
[thresholds]
warning = 0.80
critical = 0.95

[billing]
period = "anniversary"

[[meters]]
id = "requests"
name = "API requests"
aggregation = "count"

[[meters]]
id = "tokens"
name = "Tokens"
aggregation = "sum"
property = "tokens"
group_by = ["model"]

[[meters]]
id = "users"
name = "Active users"
aggregation = "unique_count"
property = "user"

[[plans]]
id = "free"
price = "0"
[plans.meters.requests]
included = 10
[plans.meters.tokens]
included = 1000
[plans.meters.users]
included = 2

[[plans]]
id = "starter"
price = "19.00"
[plans.meters.requests]
included = 50
[plans.meters.tokens]
included = 10000
[plans.meters.users]
included = 5

[[plans]]
id = "pro"
price = "49.00"
[plans.meters.requests]
included = 1000
at_limit = "overage"
overage_rate = "0.001"
[plans.meters.tokens]
included = 100000
at_limit = "overage"
overage_rate = "0.0005"
[plans.meters.users]
included = 10
at_limit = "overage"
overage_rate = "1.00"

[[plans]]
id = "team"
price = "199.00"
[plans.meters.requests]
included = 500
[plans.meters.tokens]
included = 500000
at_limit = "overage"
overage_rate = "0.0004"

[[plans]]
id = "business"
price = "999.00"
"#;

fn three_meters() -> bool {
    std::env::var(METERS_ENV).is_ok_and(|v| v == "3")
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap()
}

fn config() -> Config {
    if three_meters() {
        return Config::parse(METER_PLANS, "bench plans").unwrap();
    }
    Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("plans.toml")).unwrap()
}

fn main() {
    if let Ok(db) = std::env::var(CHILD_ENV) {
        return rss_child(Path::new(&db));
    }
    let db = working_copy(&fixture());
    let config = config();
    println!(
        "## Dashboard bench: {CUSTOMERS} customers × {} meter(s), {} events",
        config.meters.len(),
        events_in(&db)
    );

    // Open: what `meterline` does before the first frame is on screen.
    let (open, app) = best_of(3, || {
        let store = Store::open(&db).unwrap();
        let dashboard = store.dashboard(&config, now()).unwrap();
        let mut app = App::new(
            config.clone(),
            db.display().to_string(),
            "plans.toml".into(),
            Theme::COLOR,
            now(),
            dashboard,
        );
        render(&mut app, 200, 60);
        app
    });
    let open_floor = best_of(3, || {
        // Floor: reading the same customer columns, and nothing else.
        let store = rusqlite::Connection::open(&db).unwrap();
        let mut stmt = store
            .prepare("SELECT id, name, plan_id, stripe_customer_id, billing_anchor FROM customers")
            .unwrap();
        let rows: Vec<(String, String, String, Option<String>, String)> = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        rows.len()
    })
    .0;
    report(
        "open (load 100k rows + app + first frame)",
        open,
        open_floor,
        "read customers table",
        Duration::from_secs(1),
    );

    let mut app = app;
    let reader = Store::open(&db).unwrap();
    let mut marks = reader.dashboard(&config, now()).unwrap().marks;

    // Refresh after another process records 100 events for 100 customers.
    let mut writer = Store::open(&db).unwrap();
    let mut samples = Vec::new();
    let mut floors = Vec::new();
    for round in 0..5 {
        for i in 0..100 {
            // Pro customers (every fifth from 2): never refused by a hard cap.
            let id = format!(
                "cust-{:06}",
                ((round * 7919 + i * 997) % (CUSTOMERS / 5)) * 5 + 2
            );
            let mut request = RecordRequest::new(&id, 3, now());
            if three_meters() {
                request.meter = Some("tokens".into());
                request.properties = [("tokens", "3"), ("model", "small")]
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .into();
            }
            assert!(writer.record(&config, &request, now()).unwrap().recorded);
        }
        let start = Instant::now();
        let refresh = reader.dashboard_refresh(&config, marks, now()).unwrap();
        let Refresh::Partial {
            usage,
            backlog,
            credits,
            marks: new_marks,
        } = refresh
        else {
            panic!("expected a partial refresh");
        };
        app.apply(DataEvent::Changed {
            usage,
            backlog,
            credits,
        });
        samples.push(start.elapsed());
        let floor_start = Instant::now();
        let new: i64 = rusqlite::Connection::open(&db)
            .unwrap()
            .query_row(
                "SELECT COUNT(*) FROM usage_events WHERE id > ?1",
                [marks.last_event_id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(new, 100);
        floors.push(floor_start.elapsed());
        marks = new_marks;
    }
    report(
        "refresh after 100 events recorded elsewhere",
        median(&mut samples),
        median(&mut floors),
        "count the new events",
        Duration::from_millis(50),
    );

    // Refresh after a sync marks 1,000 events reported: the backlog is counted again.
    let mut samples = Vec::new();
    let mut floors = Vec::new();
    let raw = rusqlite::Connection::open(&db).unwrap();
    for _ in 0..3 {
        raw.execute(
            // One event each of 1,000 customers, as a sync spreads over customers.
            "UPDATE usage_events SET stripe_reported_at = ?1 WHERE id IN
                 (SELECT MIN(id) FROM usage_events WHERE stripe_reported_at IS NULL
                  GROUP BY customer_id LIMIT 1000)",
            [format_ts(now())],
        )
        .unwrap();
        let start = Instant::now();
        let Refresh::Partial {
            usage,
            backlog,
            credits,
            marks: new_marks,
        } = reader.dashboard_refresh(&config, marks, now()).unwrap()
        else {
            panic!("expected a partial refresh");
        };
        assert!(backlog.is_some());
        app.apply(DataEvent::Changed {
            usage,
            backlog,
            credits,
        });
        samples.push(start.elapsed());
        let floor_start = Instant::now();
        let _: i64 = raw
            .query_row(
                "SELECT COUNT(*) FROM usage_events WHERE stripe_reported_at IS NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        floors.push(floor_start.elapsed());
        marks = new_marks;
    }
    let unreported = app.summary.backlog.unreported;
    report(
        &format!(
            "refresh after a sync marked 1,000 events of 1,000 customers ({unreported} unreported left)"
        ),
        median(&mut samples),
        median(&mut floors),
        "count unreported events",
        Duration::from_millis(50),
    );

    // Frames: the overview, scrolled, and the detail.
    let frame_floor = frame_time(|terminal| {
        terminal
            .draw(|f| f.render_widget(Block::bordered(), f.area()))
            .unwrap();
    });
    let mut terminal = Terminal::new(TestBackend::new(200, 60)).unwrap();
    app.set_page(ui::list_rows(200, 60));
    app.update(meterline_tui::action::Action::PageDown);
    let overview = frame_time(|_| {
        terminal.draw(|f| ui::draw(f, &app)).unwrap();
    });
    report(
        "frame: overview 200×60",
        overview,
        frame_floor,
        "draw an empty box",
        Duration::from_millis(5),
    );
    let id = app.selected_row().unwrap().customer_id.clone();
    app.update(meterline_tui::action::Action::Open);
    let detail = Instant::now();
    let data = reader.customer_detail(&config, &id, now()).map(Box::new);
    let detail_load = detail.elapsed();
    app.apply(DataEvent::Detail {
        customer_id: id,
        detail: data.map_err(|e| e.to_string()),
    });
    let detail_frame = frame_time(|_| {
        terminal.draw(|f| ui::draw(f, &app)).unwrap();
    });
    report(
        "frame: customer detail 200×60",
        detail_frame,
        frame_floor,
        "draw an empty box",
        Duration::from_millis(5),
    );
    println!("  detail load (one customer, on the watcher thread): {detail_load:.2?}");

    // Memory, in a fresh process so the fixture builder's caches do not count.
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, &db)
        .output()
        .unwrap();
    print!("{}", String::from_utf8_lossy(&child.stdout));
    assert!(
        child.status.success(),
        "{}",
        String::from_utf8_lossy(&child.stderr)
    );
    drop((reader, writer, raw));
    let _ = std::fs::remove_file(&db);
}

/// Open the dashboard as `meterline` does, then print the peak resident memory.
fn rss_child(db: &Path) {
    let config = config();
    let dashboard = Store::open(db).unwrap().dashboard(&config, now()).unwrap();
    let mut app = App::new(
        config,
        String::new(),
        String::new(),
        Theme::COLOR,
        now(),
        dashboard,
    );
    render(&mut app, 200, 60);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap_or("VmHWM: unknown");
    let kb: f64 = peak
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(f64::NAN);
    println!(
        "  peak RSS after opening: {:.0} MB (target < 150 MB)",
        kb / 1024.0
    );
}

fn render(app: &mut App, width: u16, height: u16) {
    app.set_page(ui::list_rows(width, height));
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| ui::draw(f, app)).unwrap();
}

/// Median time of one frame over 200 draws (after a warm-up).
fn frame_time(mut draw: impl FnMut(&mut Terminal<TestBackend>)) -> Duration {
    let mut terminal = Terminal::new(TestBackend::new(200, 60)).unwrap();
    for _ in 0..20 {
        draw(&mut terminal);
    }
    let mut samples: Vec<Duration> = (0..200)
        .map(|_| {
            let start = Instant::now();
            draw(&mut terminal);
            start.elapsed()
        })
        .collect();
    median(&mut samples)
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best: Option<(Duration, T)> = None;
    for _ in 0..runs {
        let start = Instant::now();
        let value = f();
        let took = start.elapsed();
        if best.as_ref().is_none_or(|(b, _)| took < *b) {
            best = Some((took, value));
        }
    }
    best.expect("at least one run")
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn report(what: &str, ours: Duration, floor: Duration, floor_what: &str, target: Duration) {
    let ratio = ours.as_secs_f64() / floor.as_secs_f64().max(1e-9);
    let verdict = if ours < target { "ok" } else { "OVER TARGET" };
    println!(
        "  {what}: {ours:.2?} (target < {target:.0?}: {verdict}); floor ({floor_what}) {floor:.2?}; ratio {ratio:.1}×"
    );
}

fn events_in(db: &Path) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row("SELECT MAX(id) FROM usage_events", [], |r| r.get(0))
        .unwrap()
}

/// A fresh copy of the fixture for this run: the bench records and syncs into it.
fn working_copy(fixture: &Path) -> PathBuf {
    let copy = fixture.with_file_name("dashboard-run.db");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", copy.display()));
    }
    std::fs::copy(fixture, &copy).unwrap();
    copy
}

/// The cached fixture, built if missing.
fn fixture() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("bench-fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    let db = if three_meters() {
        dir.join(format!(
            "dashboard-100k-3meters-v{METERS_FIXTURE_VERSION}.db"
        ))
    } else {
        dir.join(format!("dashboard-100k-v{FIXTURE_VERSION}.db"))
    };
    if db.exists() {
        return db;
    }
    let partial = dir.join("dashboard-building.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", partial.display()));
    }
    let start = Instant::now();
    eprintln!("building the fixture (once; cached in {}) …", dir.display());
    build(&partial);
    std::fs::rename(&partial, &db).unwrap();
    eprintln!("fixture built in {:.1?}", start.elapsed());
    db
}

/// 100k customers anchored on days 1..=28, each with 14 events in each of 7 periods; events
/// older than two days are reported, newer ones pending (a few failed); counters match.
fn build(path: &Path) {
    drop(Store::open(path).unwrap()); // the real schema, migrations included
    let mut conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -200000;",
    )
    .unwrap();
    let config = config();
    let tx = conn.transaction().unwrap();
    tx.execute_batch(
        "CREATE TEMP TABLE periods (day INTEGER, k INTEGER, start TEXT, end_ TEXT,
                                    start_epoch INTEGER, span INTEGER);",
    )
    .unwrap();
    for day in 1..=28u32 {
        let anchor = NaiveDate::from_ymd_opt(2026, 1, day).unwrap();
        let mut period = period_containing(anchor, config.billing.period, now());
        for k in 0..PERIODS {
            let until = period.end.min(now());
            tx.execute(
                "INSERT INTO temp.periods VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                rusqlite::params![
                    day,
                    k,
                    format_ts(period.start),
                    format_ts(period.end),
                    period.start.timestamp(),
                    (until - period.start).num_seconds().max(1)
                ],
            )
            .unwrap();
            period = period_containing(
                anchor,
                config.billing.period,
                period.start - chrono::Duration::seconds(1),
            );
        }
    }
    // Plans cycle free, starter, pro, team, business; every tenth customer is unmapped.
    tx.execute_batch(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {last})
         INSERT INTO customers (id, name, plan_id, stripe_customer_id, billing_anchor, created_at)
         SELECT printf('cust-%06d', i), printf('Customer %06d', i),
                CASE i % 5 WHEN 0 THEN 'free' WHEN 1 THEN 'starter' WHEN 2 THEN 'pro'
                           WHEN 3 THEN 'team' ELSE 'business' END,
                CASE WHEN i % 10 = 3 THEN NULL ELSE printf('cus_%010d', i) END,
                printf('2026-01-%02d', 1 + i % 28), '2026-01-01T00:00:00Z'
         FROM n;
         CREATE TEMP TABLE sizes AS
         SELECT c.rowid AS rid, c.id AS id, c.plan_id AS plan_id,
                CAST(substr(c.billing_anchor, 9, 2) AS INTEGER) AS day,
                -- per-event quantity: the plan's limit x a ratio spread over 0..1.3
                CASE c.plan_id
                    WHEN 'free' THEN 1000 WHEN 'starter' THEN 10000
                    WHEN 'pro' THEN 100000 WHEN 'team' THEN 500000 ELSE 1400 END
                * MIN(CASE WHEN c.plan_id IN ('free', 'starter') THEN 1.0 ELSE 1.3 END,
                      ((c.rowid * 37) % 131) / 100.0) / {per} AS q
         FROM customers c;
         INSERT INTO usage_events (customer_id, quantity, occurred_at, recorded_at,
                                   period_start, stripe_reported_at, stripe_attempts,
                                   stripe_error, stripe_failed_at)
         WITH RECURSIVE e(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM e WHERE j < {per} - 1),
         timed AS (
             SELECT s.id AS id, s.rid AS rid, MAX(1, CAST(s.q AS INTEGER)) AS q, p.start AS start,
                    strftime('%Y-%m-%dT%H:%M:%SZ',
                             p.start_epoch + (e.j * p.span + s.rid % 997) / {per}, 'unixepoch') AS at
             FROM sizes s JOIN temp.periods p ON p.day = s.day CROSS JOIN e
         )
         SELECT id, q, at, at, start,
                CASE WHEN at < '{reported_before}' THEN at END,
                CASE WHEN at < '{reported_before}' OR rid % 1000 = 7 THEN 1 ELSE 0 END,
                CASE WHEN at >= '{reported_before}' AND rid % 1000 = 7
                     THEN 'No such customer: ''cus_gone''' END,
                CASE WHEN at >= '{reported_before}' AND rid % 1000 = 7 THEN '{now}' END
         FROM timed;
         INSERT INTO usage_records (customer_id, period_start, period_end, used, plan_id,
                                    meter_event_name)
         SELECT e.customer_id, e.period_start, p.end_, SUM(e.quantity), c.plan_id,
                CASE c.plan_id WHEN 'business' THEN 'meterline_usage_business'
                               ELSE 'meterline_usage' END
         FROM usage_events e JOIN customers c ON c.id = e.customer_id
         JOIN temp.periods p ON p.start = e.period_start
              AND p.day = CAST(substr(c.billing_anchor, 9, 2) AS INTEGER)
         GROUP BY e.customer_id, e.period_start;",
        last = CUSTOMERS - 1,
        per = EVENTS_PER_PERIOD,
        reported_before = format_ts(now() - chrono::Duration::days(2)),
        now = format_ts(now()),
    ))
    .unwrap();
    if three_meters() {
        spread_over_meters(&tx);
    }
    tx.commit().unwrap();
    conn.execute_batch("ANALYZE; PRAGMA journal_mode = WAL;")
        .unwrap();
    // The counters must equal the events, as `record` would have left them.
    let store = Store::open(path).unwrap();
    if three_meters() {
        let checks = store
            .metered_check(&config, "cust-000002", now())
            .unwrap()
            .meters;
        assert!(checks.iter().all(|c| c.check.used > 0), "{checks:?}");
        assert_eq!(checks[1].groups.len(), 3, "tokens by model");
        return;
    }
    let status = store.check(&config, "cust-000002", now()).unwrap();
    assert!(status.used > 0, "the fixture's counters are filled");
}

/// Turn the single-meter fixture's events into the three-meter one, in the same transaction:
/// in turn a request, tokens (the event's size × 3, over three models) and an active user (one
/// of five); then meter_counters and meter_values as `record` leaves them (the `usage` period
/// counters stay, at 0: no event is on the `usage` meter).
fn spread_over_meters(tx: &rusqlite::Transaction) {
    tx.execute_batch(
        "UPDATE usage_events SET
             meter_id = CASE id % 3 WHEN 0 THEN 'requests' WHEN 1 THEN 'tokens' ELSE 'users' END,
             properties = CASE id % 3
                 WHEN 0 THEN NULL
                 WHEN 1 THEN json_object('model', CASE (id / 3) % 3 WHEN 0 THEN 'small'
                                                      WHEN 1 THEN 'medium' ELSE 'large' END,
                                         'tokens', CAST(quantity * 3 AS TEXT))
                 ELSE json_object('user', 'u' || ((id / 3) % 5)) END,
             amount = CASE id % 3 WHEN 1 THEN quantity * 3 ELSE 1 END,
             quantity = 1;
         UPDATE usage_records SET used = 0;
         INSERT INTO meter_counters (customer_id, period_start, meter_id, group_key, used)
         SELECT customer_id, period_start, meter_id, '', SUM(amount) FROM usage_events
         WHERE meter_id IN ('requests', 'tokens') GROUP BY customer_id, period_start, meter_id;
         INSERT INTO meter_counters (customer_id, period_start, meter_id, group_key, used)
         SELECT customer_id, period_start, 'tokens',
                json_object('model', json_extract(properties, '$.model')), SUM(amount)
         FROM usage_events WHERE meter_id = 'tokens' GROUP BY 1, 2, 4;
         INSERT INTO meter_values (customer_id, period_start, meter_id, group_key, value)
         SELECT DISTINCT customer_id, period_start, 'users', '',
                json_extract(properties, '$.user')
         FROM usage_events WHERE meter_id = 'users';
         INSERT INTO meter_counters (customer_id, period_start, meter_id, group_key, used)
         SELECT customer_id, period_start, 'users', '', COUNT(*) FROM meter_values
         GROUP BY 1, 2;",
    )
    .unwrap();
}
