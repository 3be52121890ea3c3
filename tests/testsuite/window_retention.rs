//! What the windows keep: a limited meter's seconds and minutes for twice its longest window
//! and a day, so the table does not grow with every second of every busy customer forever;
//! late events within that are decided exactly, and older ones (every window they fall in
//! ended over a day ago) are counted without a window to pass. On both engines.

use crate::support::cli::Scratch;
use crate::support::engine::{Engine, engine_tests};

engine_tests!(old_seconds_are_pruned_and_late_events_within_them_are_still_exact);

const PLANS: &str = r#"
[[plans]]
id = "free"
[[plans]]
id = "pro"
included = 1000000
[[plans.limits]]
window = "1h"
limit = 10
"#;

/// `record acme -n N` with the clock at `now` (and the event at `at`, if given): exit code.
fn record(s: &Scratch, n: i64, now: &str, at: Option<&str>) -> i32 {
    let mut cmd = s.cmd();
    cmd.args(["record", "acme", "-n", &n.to_string(), "--now", now]);
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
    let s = Scratch::on(engine);
    std::fs::write(&s.plans, PLANS).unwrap();
    s.add_customer("acme", "pro", "2026-11-01");
    assert_eq!(record(&s, 10, "2026-11-20T10:00:00Z", None), 0);
    assert_eq!(
        record(&s, 1, "2026-11-20T10:30:00Z", None),
        3,
        "the hour is full"
    );
    assert_eq!(buckets(&s), ["1", "1", "1"]);

    // A week on: the first event's minute (with its seconds) is gone (kept: 2 h and a day),
    // its hour and day stay.
    assert_eq!(record(&s, 1, "2026-11-27T10:00:00Z", None), 0);
    assert_eq!(buckets(&s), ["1", "2", "2"]);

    // A late event within what is kept is decided on every window it falls in: 9 at
    // 09:59:50 fits (with 10:00's 1, 10), 1 more at 09:59:55 would make 11 in the hour to
    // 10:59:55.
    let now = "2026-11-27T10:05:00Z";
    assert_eq!(record(&s, 9, now, Some("2026-11-27T09:59:50Z")), 0);
    assert_eq!(record(&s, 1, now, Some("2026-11-27T09:59:55Z")), 3);

    // One older than that falls only in windows that ended long ago: counted, undecided.
    assert_eq!(record(&s, 5, now, Some("2026-11-20T10:15:00Z")), 0);
    let used = s.json(&["check", "acme", "--json", "--now", now])["used"].clone();
    assert_eq!(used, 25);
}
