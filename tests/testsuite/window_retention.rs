//! What the windows keep: a limited meter's minutes (with their seconds) for twice its longest
//! window and a day, so the table does not grow with every second of every busy customer forever;
//! late events within that are decided exactly, and older ones (every window they fall in
//! ended over a day ago) are counted without a window to pass. On both engines and both
//! plans.toml shapes.

use crate::support::cli::Scratch;
use crate::support::engine::{Engine, engine_tests};
use crate::support::shapes::Shape;

engine_tests!(old_seconds_are_pruned_and_late_events_within_them_are_still_exact);

/// A plan whose capped meter has a 1-hour sliding window of 10.
fn plans(shape: Shape) -> String {
    let limit = |table: &str| format!("[[{table}]]\nwindow = \"1h\"\nlimit = 10\n");
    match shape {
        Shape::Legacy => format!(
            "[[plans]]\nid = \"free\"\n[[plans]]\nid = \"pro\"\nincluded = 1000000\n{}",
            limit("plans.limits")
        ),
        Shape::Meters => format!(
            "[[meters]]\nid = \"tokens\"\naggregation = \"sum\"\nproperty = \"tokens\"\n\
             group_by = [\"model\"]\n\
             [[plans]]\nid = \"free\"\n[[plans]]\nid = \"pro\"\n\
             [plans.meters.tokens]\nincluded = 1000000\n{}",
            limit("plans.meters.tokens.limits")
        ),
    }
}

/// `record acme` of `n` on the limited meter with the clock at `now` (and the event at
/// `at`, if given): the exit code.
fn record(s: &Scratch, shape: Shape, n: i64, now: &str, at: Option<&str>) -> i32 {
    let mut cmd = s.cmd();
    cmd.args(["record", "acme", "--now", now])
        .args(shape.counting(n));
    if let Some(at) = at {
        cmd.args(["--at", at]);
    }
    cmd.output().unwrap().status.code().unwrap()
}

/// How many buckets of each size acme's usage has: [minutes, hours, days].
fn buckets(s: &Scratch) -> Vec<String> {
    s.inspect()
        .rows(
            "SELECT COUNT(*) FROM window_buckets WHERE customer_id = 'acme'
             GROUP BY span ORDER BY span",
        )
        .into_iter()
        .map(|r| r[0].clone())
        .collect()
}

fn old_seconds_are_pruned_and_late_events_within_them_are_still_exact(engine: Engine) {
    for shape in [Shape::Legacy, Shape::Meters] {
        pruned_and_exact(engine, shape);
    }
}

fn pruned_and_exact(engine: Engine, shape: Shape) {
    let s = Scratch::on(engine);
    std::fs::write(&s.plans, plans(shape)).unwrap();
    s.add_customer("acme", "pro", "2026-11-01");
    assert_eq!(record(&s, shape, 10, "2026-11-20T10:00:00Z", None), 0);
    assert_eq!(
        record(&s, shape, 1, "2026-11-20T10:30:00Z", None),
        3,
        "the hour is full"
    );
    assert_eq!(buckets(&s), ["1", "1", "1"]);

    // A week on: the first event's minute (with its seconds) is gone (kept: 2 h and a day),
    // its hour and day stay.
    assert_eq!(record(&s, shape, 1, "2026-11-27T10:00:00Z", None), 0);
    assert_eq!(buckets(&s), ["1", "2", "2"]);

    // A late event within what is kept is decided on every window it falls in: 9 at
    // 09:59:50 fits (with 10:00's 1, 10), 1 more at 09:59:55 would make 11 in the hour to
    // 10:59:55.
    let now = "2026-11-27T10:05:00Z";
    assert_eq!(record(&s, shape, 9, now, Some("2026-11-27T09:59:50Z")), 0);
    assert_eq!(record(&s, shape, 1, now, Some("2026-11-27T09:59:55Z")), 3);

    // One older than that falls only in windows that ended long ago: counted, undecided.
    assert_eq!(record(&s, shape, 5, now, Some("2026-11-20T10:15:00Z")), 0);
    let used = s.json(&["check", "acme", "--json", "--now", now])["used"].clone();
    assert_eq!(used, 25);
}
