//! `cargo bench --bench export`: `meterline export events` as CSV over a large database,
//! against the floor measured in the same run (the same SELECT read through rusqlite with
//! nothing written), and the peak memory of each so "streamed, constant memory" is a figure.
//!
//! Target (issue 11): constant memory at millions of events. `METERLINE_BENCH_EVENTS` sets the
//! number of events (default 1,000,000).

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use meterline::Store;
use meterline::store::{ExportFilter, ExportKind};

const CHILD_ENV: &str = "METERLINE_BENCH_EXPORT_CHILD";

fn main() {
    if let Ok(db) = std::env::var(CHILD_ENV) {
        return child(Path::new(&db));
    }
    let events: i64 = std::env::var("METERLINE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("export.db");
    fill(&db, events);
    println!("export events as CSV: {events} events, temp-file database");
    let floor = time(|| floor_read(&db));
    let ours = time(|| ours_csv(&db));
    let (floor_rate, ours_rate) = (events as f64 / floor, events as f64 / ours);
    println!("  floor (SELECT, rows read)   {floor_rate:>12.0} rows/s");
    println!("  meterline export (CSV)      {ours_rate:>12.0} rows/s");
    println!(
        "  ratio {:.2} (CSV formatting and writing cost on top of the read)",
        ours_rate / floor_rate
    );
    // Peak memory of a fresh process exporting every row of a database, at two sizes (a tenth
    // and all): flat means streamed, sort included (the rows are sorted before the first).
    let small_db = dir.path().join("export-small.db");
    fill(&small_db, events / 10);
    let small = peak_rss_kb(&small_db);
    let full = peak_rss_kb(&db);
    println!(
        "  peak RSS exporting {} events: {} kB; all {events}: {} kB (growth {:.1} %)",
        events / 10,
        small,
        full,
        (full as f64 / small as f64 - 1.0) * 100.0
    );
}

fn time(f: impl FnOnce()) -> f64 {
    let start = Instant::now();
    f();
    start.elapsed().as_secs_f64()
}

/// A meterline database with one customer and `events` events, inserted directly (building it
/// through `record` would take minutes and is not what is measured).
fn fill(db: &Path, events: i64) {
    drop(Store::open(db).expect("create"));
    let mut conn = rusqlite::Connection::open(db).unwrap();
    let tx = conn.transaction().unwrap();
    tx.execute(
        "INSERT INTO customers (id, name, plan_id, billing_anchor, created_at)
         VALUES ('acme', 'Acme', 'business', '2026-01-01', '2026-01-01T00:00:00Z')",
        [],
    )
    .unwrap();
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO usage_events (customer_id, user_id, quantity, occurred_at, recorded_at, period_start, idempotency_key)
                 VALUES ('acme', 'user-7', ?1, ?2, ?2, '2026-11-01T00:00:00Z', 'key-' || ?1)",
            )
            .unwrap();
        for i in 0..events {
            let at = format!(
                "2026-11-{:02}T{:02}:{:02}:{:02}Z",
                1 + i % 28,
                i % 24,
                i % 60,
                (i / 60) % 60
            );
            insert.execute(rusqlite::params![i + 1, at]).unwrap();
        }
    }
    tx.commit().unwrap();
}

fn floor_read(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let columns = ExportKind::Events.columns().join(", ");
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {columns} FROM usage_events ORDER BY occurred_at, customer_id"
        ))
        .unwrap();
    let mut rows = stmt.query([]).unwrap();
    while let Some(r) = rows.next().unwrap() {
        black_box(r.get_ref(0).unwrap());
    }
}

/// The repository's plans.toml, which the export reads its meters from.
fn plans() -> meterline::Config {
    meterline::Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("plans.toml")).unwrap()
}

fn ours_csv(db: &Path) {
    let store = Store::open(db).unwrap();
    let mut csv = csv::Writer::from_writer(std::io::sink());
    store
        .export(
            Some(&plans()),
            ExportKind::Events,
            &ExportFilter::default(),
            |cells| {
                for cell in cells {
                    csv.write_field(cell.csv_text().as_bytes()).unwrap();
                }
                csv.write_record(None::<&[u8]>).unwrap();
                Ok(())
            },
        )
        .unwrap();
}

fn peak_rss_kb(db: &Path) -> u64 {
    let out = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, db)
        .output()
        .expect("run the child");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// In a fresh process: export, then print VmHWM in kB.
fn child(db: &Path) {
    ours_csv(db);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("0");
    println!("{kb}");
}
