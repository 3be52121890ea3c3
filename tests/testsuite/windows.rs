//! Rolling-window limits through the real binary, on both engines and both plans.toml
//! shapes: a sliding window refuses at its limit and takes again once old usage leaves it, a
//! fixed window resets at its end (aligned on the period or on UTC), a late event must fit
//! every window that contains it, an alerting window never refuses, windows compose with the
//! period's cap and with the other meters of an event's type, `check` shows each window
//! exactly, and a reservation holds window capacity until it is settled, released or lapses.
//! (HTTP, the drop-in routes and a race of writers: windows_http.rs. Brute force over random
//! streams: crates/store/tests/testsuite/windows.rs.)

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::support::cli::{NOW, Scratch, run_at};
use crate::support::engine::{Engine, engine_tests};
use crate::support::shapes::{Shape, shape_tests};

shape_tests!(
    a_sliding_window_refuses_at_its_limit_and_takes_again_once_old_usage_leaves,
    a_fixed_window_resets_at_its_end_on_the_period_or_on_utc,
    a_late_event_must_fit_every_window_that_contains_it,
    an_alerting_window_never_refuses,
    a_window_and_the_periods_cap_each_refuse_what_passes_them,
    check_shows_each_window_exactly,
    a_reservation_holds_window_capacity_until_settled_released_or_lapsed,
    retry_after_waits_until_every_window_takes_the_amount,
    a_late_event_of_a_closed_period_is_refused_by_its_fixed_window,
    record_batch_names_the_window_that_refused_a_line,
);

engine_tests!(
    an_event_of_a_type_is_refused_whole_when_one_meters_window_refuses,
    retry_after_waits_for_every_meter_an_event_feeds,
);

/// The bounds themselves are windows: a minute and 31 days (tests/invalid_plans/ holds a
/// second less and a second more), with the largest limit.
#[test]
fn a_window_of_a_minute_or_31_days_is_valid() {
    let s = Scratch::shaped(Engine::Sqlite, Shape::Meters);
    let mut text = std::fs::read_to_string(&s.plans).unwrap();
    text.push_str(
        "\n[[plans]]\nid = \"windowed\"\n[plans.meters.tokens]\n\
         [[plans.meters.tokens.limits]]\nwindow = \"1m\"\nlimit = 1\n\
         [[plans.meters.tokens.limits]]\nwindow = \"31d\"\nkind = \"fixed\"\nalign = \"utc\"\n\
         limit = 1000000000000000\nat_limit = \"alert\"\n",
    );
    std::fs::write(&s.plans, text).unwrap();
    let plans = s.json(&["plans", "--json"]);
    let windowed = plans["plans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "windowed")
        .unwrap();
    let windows: Vec<(i64, &str)> = windowed["meters"]["tokens"]["limits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["window_secs"].as_i64().unwrap(),
                l["kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(windows, [(60, "sliding"), (31 * 86_400, "fixed")]);
}

pub(crate) const HOUR: i64 = 3_600;

/// [`NOW`] moved by `secs`, as the CLI and the API write an instant.
pub(crate) fn at(secs: i64) -> String {
    let now: DateTime<Utc> = NOW.parse().unwrap();
    (now + Duration::seconds(secs))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// `shape`'s plans.toml with a plan "windowed" that gives its capped meter each of `limits`
/// (the body of one limits table), under a hard cap of `included` when given, and acme on it
/// anchored on the 1st: the period is 2026-11-01 .. 2026-12-01.
pub(crate) fn windowed(
    engine: Engine,
    shape: Shape,
    included: Option<i64>,
    limits: &[&str],
) -> Scratch {
    let s = Scratch::shaped(engine, shape);
    let (plan, table) = match shape {
        Shape::Legacy => ("[[plans]]\nid = \"windowed\"\n", "[[plans.limits]]"),
        Shape::Meters => (
            "[[plans]]\nid = \"windowed\"\n[plans.meters.tokens]\n",
            "[[plans.meters.tokens.limits]]",
        ),
    };
    let mut text = std::fs::read_to_string(&s.plans).unwrap();
    text.push_str(&format!("\n{plan}"));
    if let Some(n) = included {
        text.push_str(&format!("included = {n}\nat_limit = \"block\"\n"));
    }
    for limit in limits {
        text.push_str(&format!("\n{table}\n{limit}\n"));
    }
    std::fs::write(&s.plans, text).unwrap();
    s.add_customer("acme", "windowed", "2026-11-01");
    s
}

fn words(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// `record acme --json` of `n` units on the capped meter at `when`, the clock at `now`.
pub(crate) fn record(s: &Scratch, shape: Shape, n: i64, when: &str, now: &str) -> (i32, Value) {
    let mut args = words(&["record", "acme", "--json", "--at", when]);
    args.extend(shape.counting(n));
    let (code, answer, _) = run_at(s, now, &args);
    (code, answer)
}

/// `record acme` of `n` on the capped meter now, in words: exit code and stderr.
fn record_in_words(s: &Scratch, shape: Shape, n: i64) -> (i32, String) {
    let mut args = words(&["record", "acme"]);
    args.extend(shape.counting(n));
    let (code, _, err) = run_at(s, NOW, &args);
    (code, err)
}

/// `check acme --json` with the clock at `now`.
pub(crate) fn check(s: &Scratch, now: &str) -> Value {
    let (code, answer, err) = run_at(s, now, &words(&["check", "acme", "--json"]));
    assert_eq!(code, 0, "{err}");
    answer
}

/// The entry of `meter` in a check's `meters`.
pub(crate) fn meter_of<'a>(check: &'a Value, meter: &str) -> &'a Value {
    check["meters"]
        .as_array()
        .unwrap_or_else(|| panic!("no meters in {check}"))
        .iter()
        .find(|m| m["meter"] == meter)
        .unwrap_or_else(|| panic!("no meter {meter} in {check}"))
}

/// The windows `check` at `now` shows for the capped meter.
pub(crate) fn windows(s: &Scratch, shape: Shape, now: &str) -> Value {
    meter_of(&check(s, now), shape.capped_meter())["windows"].clone()
}

fn a_sliding_window_refuses_at_its_limit_and_takes_again_once_old_usage_leaves(
    engine: Engine,
    shape: Shape,
) {
    let s = windowed(engine, shape, None, &["window = \"5h\"\nlimit = 100"]);
    let meter = shape.capped_meter();
    assert_eq!(record(&s, shape, 60, &at(-4 * HOUR), NOW).0, 0);
    assert_eq!(record(&s, shape, 30, NOW, NOW).0, 0);

    // 20 more would make 110 in the last 5 h; the 60 leave the window in an hour.
    let (code, refused) = record(&s, shape, 20, NOW, NOW);
    assert_eq!(code, 3, "{refused}");
    assert_eq!(refused["recorded"], false);
    assert_eq!(refused["refused_by"], json!([meter]));
    assert_eq!(
        refused["refused_window"],
        json!({"meter": meter, "window": "5h", "kind": "sliding", "limit": 100, "used": 90,
               "retry_after": HOUR})
    );
    let (code, err) = record_in_words(&s, shape, 20);
    assert_eq!(code, 3);
    assert!(
        err.contains(&format!(
            "refused: {meter}: 20 more would pass acme's limit of 100 in the last 5 h (90 used); \
             it fits in 1h"
        )),
        "{err}"
    );

    // Up to the limit exactly.
    assert_eq!(record(&s, shape, 10, NOW, NOW).0, 0);
    assert_eq!(record(&s, shape, 1, NOW, NOW).0, 3);
    // A second before the 60 leave, the window is still full; at that second they are out.
    let (before, after) = (at(HOUR - 1), at(HOUR));
    assert_eq!(record(&s, shape, 20, &before, &before).0, 3);
    let (code, taken) = record(&s, shape, 60, &after, &after);
    assert_eq!(code, 0, "{taken}");
    assert_eq!(windows(&s, shape, &after)[0]["used"], 100);
    assert_eq!(record(&s, shape, 1, &after, &after).0, 3);
}

fn a_fixed_window_resets_at_its_end_on_the_period_or_on_utc(engine: Engine, shape: Shape) {
    // The period starts on Sunday 2026-11-01: its weeks start on Sundays, UTC's on Mondays.
    // The period's last window ends with it.
    for (align, start, end, next_end) in [
        (
            "period",
            "2026-11-22T00:00:00Z",
            "2026-11-29T00:00:00Z",
            "2026-12-01T00:00:00Z",
        ),
        (
            "utc",
            "2026-11-23T00:00:00Z",
            "2026-11-30T00:00:00Z",
            "2026-12-07T00:00:00Z",
        ),
    ] {
        let limit = format!("window = \"7d\"\nkind = \"fixed\"\nalign = \"{align}\"\nlimit = 100");
        let s = windowed(engine, shape, None, &[&limit]);
        let second = Duration::seconds(1);
        let before_start = (start.parse::<DateTime<Utc>>().unwrap() - second)
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let last_second = (end.parse::<DateTime<Utc>>().unwrap() - second)
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        // The window before is another window.
        assert_eq!(record(&s, shape, 100, &before_start, NOW).0, 0, "{align}");
        assert_eq!(record(&s, shape, 100, start, NOW).0, 0, "{align}");
        let (code, refused) = record(&s, shape, 1, &last_second, &last_second);
        assert_eq!(code, 3, "{align}: {refused}");
        assert_eq!(refused["refused_window"]["kind"], "fixed");
        assert_eq!(refused["refused_window"]["used"], 100);
        assert_eq!(refused["refused_window"]["retry_after"], 1, "{align}");
        let check_now = check(&s, NOW);
        let window = &meter_of(&check_now, shape.capped_meter())["windows"][0];
        assert_eq!(
            (&window["used"], &window["remaining"], &window["level"]),
            (&json!(100), &json!(0), &json!("hard_cap")),
            "{align}: {window}"
        );
        assert_eq!(window["resets_at"], end, "{align}");
        assert_eq!(check_now["allowed"], false, "{align}: a full window blocks");
        // At its end the next window starts empty.
        let (code, taken) = record(&s, shape, 100, end, end);
        assert_eq!(code, 0, "{align}: {taken}");
        let next = &windows(&s, shape, end)[0];
        assert_eq!(
            (&next["used"], &next["resets_at"]),
            (&json!(100), &json!(next_end))
        );
    }
}

fn a_late_event_must_fit_every_window_that_contains_it(engine: Engine, shape: Shape) {
    let s = windowed(engine, shape, None, &["window = \"5h\"\nlimit = 100"]);
    assert_eq!(record(&s, shape, 60, &at(-3 * HOUR), NOW).0, 0);
    assert_eq!(record(&s, shape, 30, NOW, NOW).0, 0);
    // The window ending at -4h is empty, but the one ending now would hold 110.
    let (code, refused) = record(&s, shape, 20, &at(-4 * HOUR), NOW);
    assert_eq!(code, 3, "{refused}");
    assert_eq!(refused["refused_window"]["used"], 90);
    // At -6h it shares windows with the 60 only: 80 at most.
    assert_eq!(record(&s, shape, 20, &at(-6 * HOUR), NOW).0, 0);
    // 10 at -4h fit (the window ending now holds 100 then), a unit more does not.
    assert_eq!(record(&s, shape, 10, &at(-4 * HOUR), NOW).0, 0);
    assert_eq!(record(&s, shape, 1, &at(-4 * HOUR + 1), NOW).0, 3);
    assert_eq!(windows(&s, shape, NOW)[0]["used"], 100);
}

fn an_alerting_window_never_refuses(engine: Engine, shape: Shape) {
    let s = windowed(
        engine,
        shape,
        None,
        &["window = \"1h\"\nlimit = 10\nat_limit = \"alert\""],
    );
    assert_eq!(record(&s, shape, 8, NOW, NOW).0, 0);
    let (code, taken) = record(&s, shape, 8, NOW, NOW);
    assert_eq!(code, 0, "{taken}");
    assert!(taken.get("refused_window").is_none(), "{taken}");
    let check = check(&s, NOW);
    let meter = meter_of(&check, shape.capped_meter());
    let window = &meter["windows"][0];
    assert_eq!(window["at_limit"], "alert");
    assert_eq!(
        (&window["used"], &window["remaining"], &window["level"]),
        (&json!(16), &json!(0), &json!("hard_cap"))
    );
    assert_eq!(meter["allowed"], true, "{meter}");
    assert_eq!(check["allowed"], true);
}

fn a_window_and_the_periods_cap_each_refuse_what_passes_them(engine: Engine, shape: Shape) {
    let s = windowed(engine, shape, Some(100), &["window = \"1h\"\nlimit = 50"]);
    let meter = shape.capped_meter();
    assert_eq!(record(&s, shape, 45, &at(-3 * HOUR), NOW).0, 0);
    assert_eq!(record(&s, shape, 45, &at(-90 * 60), NOW).0, 0);
    // The cap has room for 10; the window ending at -90 min does not.
    let (code, refused) = record(&s, shape, 10, &at(-90 * 60), NOW);
    assert_eq!(code, 3, "{refused}");
    assert_eq!(refused["refused_by"], json!([meter]));
    assert_eq!(refused["refused_window"]["window"], "1h");
    assert_eq!(refused["refused_window"]["used"], 45);
    // Now the window is empty: the cap's last 10 fit.
    assert_eq!(record(&s, shape, 10, NOW, NOW).0, 0);
    // The window has room for 5; the cap does not. No window is named.
    let (code, refused) = record(&s, shape, 5, NOW, NOW);
    assert_eq!(code, 3, "{refused}");
    assert_eq!(refused["refused_by"], json!([meter]));
    assert!(refused.get("refused_window").is_none(), "{refused}");
    let check = check(&s, NOW);
    assert_eq!(meter_of(&check, meter)["used"], 100);
    assert_eq!(meter_of(&check, meter)["windows"][0]["used"], 10);
}

fn check_shows_each_window_exactly(engine: Engine, shape: Shape) {
    let s = windowed(
        engine,
        shape,
        None,
        &[
            "window = \"5h\"\nlimit = 100",
            "window = \"1d\"\nkind = \"fixed\"\nalign = \"utc\"\nlimit = 150",
        ],
    );
    let meter = shape.capped_meter();
    // Two events in one second free up together.
    for (n, when) in [(30, -4 * HOUR), (20, -4 * HOUR), (35, -HOUR)] {
        assert_eq!(record(&s, shape, n, &at(when), NOW).0, 0);
    }
    let check = check(&s, NOW);
    let expected = json!([
        {"window": "5h", "kind": "sliding", "at_limit": "block", "used": 85, "limit": 100,
         "remaining": 15, "level": "warning", "frees_at": "2026-11-27T19:00:00Z",
         "frees_units": 50},
        {"window": "1d", "kind": "fixed", "at_limit": "block", "used": 85, "limit": 150,
         "remaining": 65, "level": "ok", "resets_at": "2026-11-28T00:00:00Z"},
    ]);
    assert_eq!(meter_of(&check, meter)["windows"], expected);
    // The top level is the default meter's: the capped meter's without [[meters]].
    match shape {
        Shape::Legacy => assert_eq!(check["windows"], expected),
        Shape::Meters => assert!(check.get("windows").is_none(), "{check}"),
    }
    // Once the 50 left, the 35 are next; before the first event, nothing frees.
    let later = windows(&s, shape, &at(HOUR));
    assert_eq!(
        (
            &later[0]["used"],
            &later[0]["frees_at"],
            &later[0]["frees_units"]
        ),
        (&json!(35), &json!("2026-11-27T22:00:00Z"), &json!(35))
    );
    let before = windows(&s, shape, &at(-5 * HOUR));
    assert_eq!(before[0]["used"], 0);
    assert!(before[0].get("frees_at").is_none(), "{before}");
    // In words.
    let out = s
        .cmd()
        .args(["check", "acme"])
        .output()
        .expect("run meterline check");
    let text = String::from_utf8(out.stdout).unwrap();
    for line in [
        format!("{meter}: 85 of 100 in the last 5 h; 50 free up at 19:00 UTC"),
        format!("{meter}: 85 of 150 in this 1 d window; resets at 2026-11-28 00:00 UTC"),
    ] {
        assert!(text.contains(&line), "{line:?} not in:\n{text}");
    }
}

/// `reserve acme` of `n` on the capped meter at `now` (with `more` arguments): exit code and
/// answer.
fn reserve(s: &Scratch, shape: Shape, n: i64, now: &str, more: &[&str]) -> (i32, Value) {
    let mut args = words(&["reserve", "acme", "--json"]);
    args.extend(words(more));
    if shape == Shape::Meters {
        args.extend(words(&["--meter", "tokens"]));
    }
    args.extend(units(shape, n));
    let (code, answer, _) = run_at(s, now, &args);
    (code, answer)
}

/// `--property` arguments for `n` units on the capped meter.
fn units(shape: Shape, n: i64) -> Vec<String> {
    let pairs = match shape {
        Shape::Legacy => vec![format!("quantity={n}")],
        Shape::Meters => vec![format!("tokens={n}"), "model=large".to_string()],
    };
    pairs
        .into_iter()
        .flat_map(|p| ["--property".to_string(), p])
        .collect()
}

fn a_reservation_holds_window_capacity_until_settled_released_or_lapsed(
    engine: Engine,
    shape: Shape,
) {
    let s = windowed(engine, shape, None, &["window = \"1h\"\nlimit = 100"]);
    // Held: the window takes 20 more, no more, and check counts the hold.
    let (code, held) = reserve(&s, shape, 80, NOW, &[]);
    assert_eq!(code, 0, "{held}");
    let id = held["id"].as_str().unwrap().to_string();
    let (code, refused) = record(&s, shape, 30, NOW, NOW);
    assert_eq!(code, 3, "{refused}");
    assert_eq!(refused["refused_window"]["used"], 80);
    assert_eq!(
        reserve(&s, shape, 30, NOW, &[]).0,
        3,
        "a hold against a hold"
    );
    assert_eq!(record(&s, shape, 20, NOW, NOW).0, 0);
    assert_eq!(windows(&s, shape, NOW)[0]["used"], 100);
    // Settled with 50: the hold gives way to what was used.
    let mut settle = words(&["settle", &id, "--json"]);
    settle.extend(units(shape, 50));
    let (code, settled, err) = run_at(&s, NOW, &settle);
    assert_eq!(code, 0, "{err}");
    assert_eq!(settled["recorded"], true);
    assert_eq!(windows(&s, shape, NOW)[0]["used"], 70);
    assert_eq!(record(&s, shape, 30, NOW, NOW).0, 0);
    assert_eq!(record(&s, shape, 1, NOW, NOW).0, 3);

    // Two hours on, the window is empty. Released: the capacity is back.
    let later = at(2 * HOUR);
    let (code, held) = reserve(&s, shape, 100, &later, &[]);
    assert_eq!(code, 0, "{held}");
    assert_eq!(record(&s, shape, 1, &later, &later).0, 3);
    let release = words(&["release", held["id"].as_str().unwrap(), "--json"]);
    let (code, _, err) = run_at(&s, &later, &release);
    assert_eq!(code, 0, "{err}");
    assert_eq!(windows(&s, shape, &later)[0]["used"], 0);
    assert_eq!(record(&s, shape, 1, &later, &later).0, 0);

    // Four hours on: a hold of 99 for 90 s; once it lapses it holds nothing.
    let (start, lapsed) = (at(4 * HOUR), at(4 * HOUR + 90));
    let (code, held) = reserve(&s, shape, 99, &start, &["--ttl", "90s"]);
    assert_eq!(code, 0, "{held}");
    assert_eq!(record(&s, shape, 2, &start, &start).0, 3);
    assert_eq!(windows(&s, shape, &lapsed)[0]["used"], 0);
    assert_eq!(record(&s, shape, 2, &lapsed, &lapsed).0, 0);
}

/// The init file's `completion` feeds requests, tokens and active_users; only requests has a
/// window (2 an hour).
fn an_event_of_a_type_is_refused_whole_when_one_meters_window_refuses(engine: Engine) {
    let s = Scratch::shaped(engine, Shape::Meters);
    let mut text = std::fs::read_to_string(&s.plans).unwrap();
    text.push_str(
        "\n[[plans]]\nid = \"windowed\"\n[plans.meters.requests]\n\
         [[plans.meters.requests.limits]]\nwindow = \"1h\"\nlimit = 2\n",
    );
    std::fs::write(&s.plans, text).unwrap();
    s.add_customer("acme", "windowed", "2026-11-01");
    let completion = |user: &str| {
        let mut args = words(&[
            "record",
            "acme",
            "--json",
            "--type",
            "completion",
            "--property",
            "tokens=5",
            "--property",
            "model=large",
            "--property",
        ]);
        args.push(format!("user={user}"));
        run_at(&s, NOW, &args)
    };
    assert_eq!(completion("u1").0, 0);
    assert_eq!(completion("u2").0, 0);
    let (code, refused, err) = completion("u3");
    assert_eq!(code, 3, "{err}");
    assert_eq!(refused["refused_by"], json!(["requests"]));
    assert_eq!(refused["refused_window"]["meter"], "requests");
    // Nothing of it counted on any meter.
    let check = check(&s, NOW);
    assert_eq!(meter_of(&check, "requests")["used"], 2);
    assert_eq!(meter_of(&check, "tokens")["used"], 10);
    assert_eq!(meter_of(&check, "active_users")["used"], 2);
    assert_eq!(
        s.inspect()
            .number("SELECT COUNT(*) FROM usage_events WHERE event_of IS NULL"),
        2
    );
}

/// A `completion` refused by the requests window, which frees room in 50 minutes, while the
/// tokens meter's day is full until midnight: the event fits only then.
fn retry_after_waits_for_every_meter_an_event_feeds(engine: Engine) {
    let s = Scratch::shaped(engine, Shape::Meters);
    let mut text = std::fs::read_to_string(&s.plans).unwrap();
    text.push_str(
        "\n[[plans]]\nid = \"windowed\"\n[plans.meters.requests]\n\
         [[plans.meters.requests.limits]]\nwindow = \"1h\"\nlimit = 2\n\
         [plans.meters.tokens]\n[[plans.meters.tokens.limits]]\n\
         window = \"1d\"\nkind = \"fixed\"\nalign = \"utc\"\nlimit = 10\n",
    );
    std::fs::write(&s.plans, text).unwrap();
    s.add_customer("acme", "windowed", "2026-11-01");
    let completion = |tokens: i64, when: &str| {
        let tokens = format!("tokens={tokens}");
        let args = words(&[
            "record",
            "acme",
            "--json",
            "--type",
            "completion",
            "--property",
            &tokens,
            "--property",
            "model=large",
            "--property",
            "user=u1",
            "--at",
            when,
        ]);
        run_at(&s, NOW, &args)
    };
    assert_eq!(completion(5, &at(-17 * HOUR)).0, 0);
    assert_eq!(completion(4, &at(-10 * 60)).0, 0);
    // The hour's two requests and the day's ten tokens: both full.
    assert_eq!(completion(1, &at(-5 * 60)).0, 0);
    let (code, refused, err) = completion(1, NOW);
    assert_eq!(code, 3, "{err}");
    assert_eq!(refused["refused_window"]["meter"], "requests", "{refused}");
    // Requests alone would take it at 18:50; the tokens' day takes it at midnight.
    assert_eq!(
        refused["refused_window"]["retry_after"],
        6 * HOUR,
        "{refused}"
    );
}

/// The sliding window frees room in 50 minutes, but the day's fixed window is full until
/// midnight: the event fits only then.
fn retry_after_waits_until_every_window_takes_the_amount(engine: Engine, shape: Shape) {
    let s = windowed(
        engine,
        shape,
        None,
        &[
            "window = \"1h\"\nlimit = 100",
            "window = \"1d\"\nkind = \"fixed\"\nalign = \"utc\"\nlimit = 150",
        ],
    );
    assert_eq!(record(&s, shape, 60, &at(-17 * HOUR), NOW).0, 0);
    assert_eq!(record(&s, shape, 90, &at(-10 * 60), NOW).0, 0);
    let (code, refused) = record(&s, shape, 20, NOW, NOW);
    assert_eq!(code, 3, "{refused}");
    assert_eq!(refused["refused_window"]["window"], "1h");
    let midnight = 6 * HOUR;
    assert_eq!(
        refused["refused_window"]["retry_after"], midnight,
        "{refused}"
    );
    // And none when one window can never take it.
    let (code, refused) = record(&s, shape, 120, NOW, NOW);
    assert_eq!(code, 3, "{refused}");
    assert!(
        refused["refused_window"]["retry_after"].is_null(),
        "{refused}"
    );
}

/// A backfill into November's last day, recorded on December 2nd in a batch after an event
/// of that day: its own day's window is full, so it is refused, and waiting cannot help it
/// (the day is November's).
fn a_late_event_of_a_closed_period_is_refused_by_its_fixed_window(engine: Engine, shape: Shape) {
    let s = windowed(
        engine,
        shape,
        None,
        &["window = \"1d\"\nkind = \"fixed\"\nlimit = 100"],
    );
    let (last_day, later) = ("2026-11-30T12:00:00Z", "2026-12-02T12:00:00Z");
    assert_eq!(record(&s, shape, 100, last_day, last_day).0, 0);
    let event = |n: i64, key: &str, when: &str| {
        let mut event = shape.event("acme", n, key);
        event["at"] = json!(when);
        event.to_string()
    };
    let lines = [
        event(5, "december", later),
        event(1, "backfill", "2026-11-30T13:00:00Z"),
    ];
    let out = s.record_batch(&lines, &["--json", "--now", later]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let answers: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(answers.len(), 2, "{answers:?} {stderr}");
    assert_eq!(answers[0]["recorded"], true, "{}", answers[0]);
    let refused = &answers[1];
    assert_eq!(refused["recorded"], false, "{refused}");
    assert_eq!(refused["refused_window"]["window"], "1d", "{refused}");
    assert!(
        refused["refused_window"]["retry_after"].is_null(),
        "{refused}"
    );
}

/// `record --batch` in words names the window that refused a line, as `record` does, not the
/// period's cap (which the line did not reach).
fn record_batch_names_the_window_that_refused_a_line(engine: Engine, shape: Shape) {
    let s = windowed(engine, shape, None, &["window = \"5h\"\nlimit = 100"]);
    let meter = shape.capped_meter();
    let lines = [
        shape.event("acme", 60, "first").to_string(),
        shape.event("acme", 60, "second").to_string(),
    ];
    let out = s.record_batch(&lines, &["--now", NOW]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "line 2: refused: {meter}: 60 more would pass acme's limit of 100 in the last 5 h \
             (60 used)"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("hard cap"), "{stderr}");
}
