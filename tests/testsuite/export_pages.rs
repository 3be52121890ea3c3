//! Exports larger than a page. PostgreSQL's client reads a whole result before handing over
//! its first row, so there an export comes through a cursor, a page at a time (a million
//! events took 741 MB before); SQLite sorts the rows in a temp file, not in memory. Either way
//! the rows are the same on both engines, in the same order.

use std::io::Read;

use crate::support::cli::Scratch;
use crate::support::engine::Engine;
use crate::support::postgres::server;

/// More events than one PostgreSQL fetch (5,000) holds (the demo makes about this many).
const EVENTS: u64 = 12_000;

fn demo(engine: Engine) -> Scratch {
    let s = Scratch::on(engine);
    s.fill_demo(5, EVENTS);
    s
}

#[test]
fn an_export_past_a_page_is_the_same_on_both_engines() {
    let (sqlite, postgres) = (demo(Engine::Sqlite), demo(Engine::Postgres));
    for kind in ["events", "usage"] {
        let theirs = sqlite.stdout_comparable(&["export", kind]);
        assert_eq!(
            postgres.stdout_comparable(&["export", kind]),
            theirs,
            "export {kind}"
        );
        if kind == "events" {
            let rows = sqlite.inspect().number("SELECT COUNT(*) FROM usage_events");
            assert!(rows as u64 >= EVENTS, "{rows}");
            assert_eq!(theirs.lines().count() as i64, rows + 1);
        }
    }
}

/// While the export waits on a reader, its connection's last statement is a fetch from its
/// cursor: it holds a page, not the result.
#[test]
fn an_export_on_postgres_reads_a_page_at_a_time() {
    let s = demo(Engine::Postgres);
    let db =
        s.db.to_string_lossy()
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned();
    let mut child = s
        .std_cmd()
        .args(["export", "events"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let fetching = "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND query LIKE 'FETCH % FROM meterline_rows'";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while server().psql(&db, fetching) != "1" {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the export ended unread"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the export never fetched from a cursor"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut csv = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut csv)
        .unwrap();
    assert!(child.wait().unwrap().success());
    let rows = s.inspect().number("SELECT COUNT(*) FROM usage_events");
    assert!(rows as u64 >= EVENTS, "{rows}");
    assert_eq!(csv.lines().count() as i64, rows + 1);
}
