//! A window limit's own alerts at 80 / 95 / 100 %: a sliding window alerts once per crossing
//! and again only after its usage fell back below the level; a fixed window once per window;
//! only `[[alerts]]` entries with `windows` (all, or the windows they name) get them. Through
//! the real binary, on both engines and both plans.toml shapes.

use crate::support::cli::Scratch;
use crate::support::engine::{Engine, engine_tests};
use crate::support::shapes::Shape;

engine_tests!(
    a_sliding_window_alerts_once_per_crossing_and_rearms_when_usage_leaves,
    a_fixed_window_alerts_once_per_window,
);

/// A plan whose capped meter has a 1-hour sliding window of 100 and a 1-day fixed window of
/// 1,000 (from midnight UTC), with one alert entry per window and one without `windows`.
fn plans(shape: Shape) -> String {
    let limits = |table: &str| {
        format!(
            "[[{table}]]\nwindow = \"1h\"\nlimit = 100\n\
             [[{table}]]\nwindow = \"1d\"\nkind = \"fixed\"\nalign = \"utc\"\nlimit = 1000\n"
        )
    };
    let plan = match shape {
        Shape::Legacy => format!(
            "[[plans]]\nid = \"free\"\n[[plans]]\nid = \"pro\"\nincluded = 1000000\n{}",
            limits("plans.limits")
        ),
        Shape::Meters => format!(
            "[[meters]]\nid = \"tokens\"\naggregation = \"sum\"\nproperty = \"tokens\"\n\
             group_by = [\"model\"]\n\
             [[plans]]\nid = \"free\"\n[[plans]]\nid = \"pro\"\n\
             [plans.meters.tokens]\nincluded = 1000000\n{}",
            limits("plans.meters.tokens.limits")
        ),
    };
    let entry = |name: &str, windows: &str| {
        format!("[[alerts]]\ncommand = [\"/bin/true\", \"{name}\"]\n{windows}\n")
    };
    format!(
        "{plan}\n{}{}{}",
        entry("hourly", "windows = [\"1h\"]"),
        entry("all", "windows = true"),
        entry("period", "")
    )
}

fn scratch(engine: Engine, shape: Shape) -> Scratch {
    let s = Scratch::on(engine);
    std::fs::write(&s.plans, plans(shape)).unwrap();
    s.add_customer("acme", "pro", "2026-11-01");
    s
}

/// Record `n` units on the limited meter at `at` (also the clock): the exit code.
fn record_at(s: &Scratch, shape: Shape, n: i64, at: &str) -> i32 {
    s.cmd()
        .args(["record", "acme", "--now", at])
        .args(shape.counting(n))
        .output()
        .unwrap()
        .status
        .code()
        .unwrap()
}

/// The window alerts, oldest first: (window, level, used, who gets it).
fn window_alerts(s: &Scratch) -> Vec<(String, String, String, String)> {
    s.inspect()
        .rows(
            "SELECT a.window_limit, a.level, a.used,
                    COALESCE((SELECT MIN(d.target) || ' ' || MAX(d.target) || ' ' || COUNT(*)
                              FROM alert_deliveries d WHERE d.alert_id = a.id), '')
             FROM alerts a WHERE a.window_limit <> '' ORDER BY a.id",
        )
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone(), r[2].clone(), r[3].clone()))
        .collect()
}

fn levels(s: &Scratch, window: &str) -> Vec<(String, String)> {
    window_alerts(s)
        .into_iter()
        .filter(|a| a.0 == window)
        .map(|a| (a.1, a.2))
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn a_sliding_window_alerts_once_per_crossing_and_rearms_when_usage_leaves(engine: Engine) {
    for shape in [Shape::Legacy, Shape::Meters] {
        let s = scratch(engine, shape);
        assert_eq!(record_at(&s, shape, 85, "2026-11-27T10:00:00Z"), 0);
        assert_eq!(record_at(&s, shape, 5, "2026-11-27T10:10:00Z"), 0);
        assert_eq!(record_at(&s, shape, 10, "2026-11-27T10:20:00Z"), 0);
        // Full: refused, and no alert for what was not counted.
        assert_eq!(record_at(&s, shape, 1, "2026-11-27T10:30:00Z"), 3);
        let once = pairs(&[("warning", "85"), ("critical", "100"), ("hard_cap", "100")]);
        assert_eq!(levels(&s, "1h sliding"), once, "{shape:?}");
        // 10:59: still 100 in the window; 85 more than 5 after the first left is nothing new.
        assert_eq!(record_at(&s, shape, 1, "2026-11-27T11:00:30Z"), 0);
        assert_eq!(levels(&s, "1h sliding"), once, "{shape:?}");
        // By 11:21 everything before it has left: crossing 80 % again alerts again.
        assert_eq!(record_at(&s, shape, 84, "2026-11-27T11:21:00Z"), 0);
        let again = levels(&s, "1h sliding");
        assert_eq!(again.len(), 4, "{shape:?}: {again:?}");
        assert_eq!(again[3], ("warning".to_string(), "85".to_string()));
        // Deliveries: the entries that select the 1h window (the hourly one and `true`), not
        // the one without `windows`.
        for (window, _, _, targets) in window_alerts(&s) {
            if window == "1h sliding" {
                assert!(targets.contains("\"all\"") && targets.contains("\"hourly\""));
                assert!(targets.ends_with(" 2"), "{targets}");
            }
        }
    }
}

fn a_fixed_window_alerts_once_per_window(engine: Engine) {
    for shape in [Shape::Legacy, Shape::Meters] {
        let s = scratch(engine, shape);
        // 90 an hour keeps the sliding window under its limit; 810 by 18:00 is 81 % of the day.
        for hour in 9..18 {
            let at = format!("2026-11-27T{hour:02}:00:00Z");
            assert_eq!(record_at(&s, shape, 90, &at), 0, "{shape:?} {at}");
        }
        assert_eq!(levels(&s, "1d fixed"), pairs(&[("warning", "810")]));
        assert_eq!(record_at(&s, shape, 90, "2026-11-27T19:00:00Z"), 0);
        assert_eq!(
            levels(&s, "1d fixed"),
            pairs(&[("warning", "810")]),
            "once per window"
        );
        // The next UTC day is a new window: it alerts again.
        for hour in 0..9 {
            let at = format!("2026-11-28T{hour:02}:00:00Z");
            assert_eq!(record_at(&s, shape, 90, &at), 0, "{shape:?} {at}");
        }
        let day2 = levels(&s, "1d fixed");
        assert_eq!(day2, pairs(&[("warning", "810"), ("warning", "810")]));
        // Only the entry with `windows = true` gets a 1d window's alerts.
        for (window, _, _, targets) in window_alerts(&s) {
            if window == "1d fixed" {
                assert!(
                    targets.contains("\"all\"") && targets.ends_with(" 1"),
                    "{targets}"
                );
            }
        }
    }
}
