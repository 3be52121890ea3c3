//! End to end, rolling windows in the real dashboard in tmux, on both engines: on a demo
//! database of the plans `meterline init` writes, the overview's Window column, the sort by
//! the tightest window (the customer whose 5-hour window is full first, then the one near its
//! weekly limit), and a customer's detail with each window's gauge and when it frees up or
//! resets.

use serde_json::Value;

use crate::e2e_tmux::{assert_terminal_restored, db_option, tmux_sized};
use crate::support::cli::{BIN, NOW, Scratch};
use crate::support::engine::{Engine, engine_tests};
use crate::support::shapes::Shape;
use crate::support::tmux::require_tmux;

engine_tests!(the_dashboard_shows_each_window_and_sorts_by_the_tightest);

/// The demo's customers on a plan with windows: (id, name, the `check --json` windows of
/// their tokens).
fn windowed(s: &Scratch) -> Vec<(String, String, Vec<Value>)> {
    let status = s.json(&["status", "--json"]);
    let mut out = Vec::new();
    for row in status.as_array().unwrap() {
        let id = row["customer"].as_str().unwrap();
        let check = s.json(&["check", id, "--json"]);
        let tokens = check["meters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["meter"] == "tokens")
            .unwrap();
        let windows = tokens["windows"].as_array().cloned().unwrap_or_default();
        if !windows.is_empty() {
            let name = s
                .inspect()
                .rows(&format!("SELECT name FROM customers WHERE id = '{id}'"))
                .remove(0)
                .remove(0);
            out.push((id.to_string(), name, windows));
        }
    }
    out
}

/// The window of `kind` ("sliding", "fixed") in `windows`.
fn window<'a>(windows: &'a [Value], kind: &str) -> &'a Value {
    windows.iter().find(|w| w["kind"] == kind).unwrap()
}

fn ratio(w: &Value) -> f64 {
    w["used"].as_f64().unwrap() / w["limit"].as_f64().unwrap()
}

fn the_dashboard_shows_each_window_and_sorts_by_the_tightest(engine: Engine) {
    require_tmux();
    let s = Scratch::shaped(engine, Shape::Meters);
    s.cmd()
        .args(["demo", "--customers", "12", "--events", "1500"])
        .assert()
        .success();
    // The demo's stories, as `check` tells them: one customer's 5-hour window full, another's
    // week near its limit.
    let windowed = windowed(&s);
    let full = windowed
        .iter()
        .find(|(.., w)| window(w, "sliding")["remaining"] == 0)
        .unwrap_or_else(|| panic!("no full 5-hour window: {windowed:?}"));
    let weekly = windowed
        .iter()
        .find(|(.., w)| (0.9..1.0).contains(&ratio(window(w, "fixed"))))
        .unwrap_or_else(|| panic!("nobody near the weekly limit: {windowed:?}"));

    let tmux = tmux_sized("windows", s.dir.path(), &s.db, (150, 45));
    tmux.type_line(&format!(
        "env -u STRIPE_API_KEY {BIN} {}--plans '{}' --now {NOW}; echo \"exit=$?\"",
        db_option(&s.db),
        s.plans.display()
    ));
    let screen = tmux.wait_text("Customers 12/12");
    let header = screen.lines().find(|l| l.contains("Level")).unwrap();
    assert!(header.contains("Window"), "{screen}");

    // `o` through risk, name, plan, used, unreported and days left to the tightest window:
    // the full one first, then the week near its limit.
    for _ in 0..6 {
        tmux.keys(&["o"]);
    }
    let screen = tmux.wait_text("sorted by tightest window");
    let rows: Vec<&str> = screen
        .lines()
        .skip_while(|l| !l.contains("Window▼"))
        .skip(1)
        .collect();
    assert!(
        rows[0].contains(&full.1) && rows[0].contains("5h 100 %"),
        "{screen}"
    );
    let weekly_share = format!(
        "7d {} %",
        (ratio(window(&weekly.2, "fixed")) * 100.0) as i64
    );
    assert!(
        rows[1].contains(&weekly.1) && rows[1].contains(&weekly_share),
        "{weekly_share}:\n{screen}"
    );

    // The full customer's detail (the selection stayed on its customer through the sorts:
    // `g` goes to the first row): each window's gauge, its figures and when it frees up or
    // resets, in `check`'s words.
    tmux.keys(&["g", "Enter"]);
    let screen = tmux.wait_text("Rolling limits");
    let line = |needle: &str| -> String {
        screen
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle}:\n{screen}"))
            .to_string()
    };
    let sliding = line("Tokens · 5h sliding");
    assert!(
        sliding.contains("1,500,000 / 1,500,000 · 100 % · ■ HARD CAP"),
        "{screen}"
    );
    let frees = window(&full.2, "sliding");
    let frees_at = &frees["frees_at"].as_str().unwrap()[11..16];
    let units = frees["frees_units"].as_i64().unwrap();
    assert!(
        sliding.contains(&format!(
            "{} free up at {frees_at} UTC",
            meterline::billing::thousands(units)
        )),
        "{screen}"
    );
    assert!(sliding.contains('█'), "no gauge: {screen}");
    let fixed = line("Tokens · 7d fixed");
    let resets = window(&full.2, "fixed")["resets_at"].as_str().unwrap();
    assert!(
        fixed.contains(&format!(
            "resets at {} {} UTC",
            &resets[..10],
            &resets[11..16]
        )),
        "{screen}"
    );
    tmux.keys(&["q"]);
    assert_terminal_restored(&tmux);
}
