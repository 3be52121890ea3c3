//! Reservations: `reserve` holds what a record of the estimate would use (allowance, caps,
//! credits), every other record and reservation sees the hold as used until it is settled,
//! released or past its ttl, and `settle` records what the work really used, never refused.
//! On both engines and both plans.toml shapes, through the real binary and real HTTP.

use serde_json::{Value, json};

use crate::support::cli::{Scratch, run_at};
use crate::support::common::NOW;
use crate::support::engine::Engine;
use crate::support::serve::{Server, create_token};
use crate::support::shapes::{Shape, shape_tests};

shape_tests!(
    a_hold_counts_against_the_cap_until_settled_with_what_was_used,
    a_lapsed_hold_counts_for_nothing_and_its_settle_still_records,
    held_credits_are_not_spent_by_others_and_settle_burns_what_was_used,
    bad_reservations_are_refused_and_write_nothing,
    a_key_is_one_reservation_and_one_event_across_customers,
    a_settle_names_what_changed_and_keeps_the_estimates_other_properties,
    a_key_a_reservation_holds_is_not_taken_by_a_record,
    n_is_the_quantity_as_for_record,
    reservations_over_http_race_without_overdrawing,
    kill_9_mid_reservations_loses_no_acknowledged_settle,
);

fn scratch(engine: Engine, shape: Shape) -> Scratch {
    let s = Scratch::shaped(engine, shape);
    s.add_customer("acme", "free", "2026-11-01");
    s
}

/// The arguments that aim a reserve or settle of `n` units at the shape's capped meter.
fn estimate(shape: Shape, n: i64) -> Vec<String> {
    let mut args = match shape {
        Shape::Legacy => vec![],
        Shape::Meters => vec!["--meter".to_string(), "tokens".to_string()],
    };
    args.extend(properties(shape, n));
    args
}

/// `--property` arguments for `n` units on the shape's capped meter.
fn properties(shape: Shape, n: i64) -> Vec<String> {
    let pairs = match shape {
        Shape::Legacy => vec![format!("quantity={n}")],
        Shape::Meters => vec![format!("tokens={n}"), "model=large".to_string()],
    };
    pairs
        .into_iter()
        .flat_map(|p| ["--property".to_string(), p])
        .collect()
}

fn args(words: &[&str], more: Vec<String>) -> Vec<String> {
    let mut all: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    all.extend(more);
    all.push("--json".to_string());
    all
}

/// `reserve acme` of `n` at `now`: exit code and answer.
fn reserve(s: &Scratch, shape: Shape, n: i64, now: &str) -> (i32, Value) {
    let (code, answer, _) = run_at(s, now, &args(&["reserve", "acme"], estimate(shape, n)));
    (code, answer)
}

fn settle(s: &Scratch, shape: Shape, id: &str, n: i64, now: &str) -> (i32, Value, String) {
    run_at(s, now, &args(&["settle", id], properties(shape, n)))
}

fn used(s: &Scratch, shape: Shape) -> i64 {
    let check = s.json(&["check", "acme", "--json"]);
    let meter = check["meters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["meter"] == shape.capped_meter())
        .unwrap()
        .clone();
    meter["used"].as_i64().unwrap()
}

fn count(s: &Scratch, shape: Shape, n: i64) -> i32 {
    s.record_json("acme", &shape.counting(n)).0
}

/// Every ledger entry's amount added up (whole units: these tests grant units).
fn ledger_sum(s: &Scratch) -> i64 {
    s.inspect()
        .rows("SELECT amount FROM credit_ledger")
        .iter()
        .map(|r| r[0].parse::<i64>().unwrap())
        .sum()
}

fn reservation_rows(s: &Scratch) -> i64 {
    s.inspect().number("SELECT COUNT(*) FROM reservations")
        + s.inspect().number("SELECT COUNT(*) FROM reservation_holds")
}

fn a_hold_counts_against_the_cap_until_settled_with_what_was_used(engine: Engine, shape: Shape) {
    let s = scratch(engine, shape);
    let cap = shape.free_cap();
    assert_eq!(count(&s, shape, cap - 100), 0);
    let (code, held) = reserve(&s, shape, 80, NOW);
    assert_eq!(code, 0, "{held}");
    let id = held["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("rsv_"), "{held}");
    assert_eq!(held["status"], "held");
    assert_eq!(
        held["expires_at"], "2026-11-27T18:10:00Z",
        "10 minutes by default"
    );
    let hold = held["holds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["meter"] == shape.capped_meter())
        .unwrap()
        .clone();
    assert_eq!(hold["units"], 80);

    // 20 units are left beside the hold: a reservation or record of more is refused.
    let rows = reservation_rows(&s);
    assert_eq!(reserve(&s, shape, 30, NOW).0, 3);
    assert_eq!(
        reservation_rows(&s),
        rows,
        "a refused reserve holds nothing"
    );
    assert_eq!(count(&s, shape, 30), 3);
    assert_eq!(count(&s, shape, 20), 0);
    assert_eq!(used(&s, shape), cap - 80, "a hold is not usage");

    // The work used 50: recorded, the hold freed, 30 more fit.
    let (code, settled, err) = settle(&s, shape, &id, 50, NOW);
    assert_eq!(code, 0, "{err}");
    assert_eq!(settled["recorded"], true);
    assert_eq!(settled["lapsed"], false);
    assert_eq!(settled["reservation"]["status"], "settled");
    let event = settled["event_id"].as_i64().unwrap();
    assert_eq!(used(&s, shape), cap - 30);
    assert_eq!(count(&s, shape, 30), 0);

    // A settle sent again records nothing; a release of a settled one is refused.
    let (code, again, _) = settle(&s, shape, &id, 50, NOW);
    assert_eq!(code, 0);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["event_id"], event);
    let (code, _, err) = run_at(&s, NOW, &args(&["release", &id], vec![]));
    assert_eq!(code, 2);
    assert!(err.contains("was settled"), "{err}");
    assert_eq!(used(&s, shape), cap);
}

fn a_lapsed_hold_counts_for_nothing_and_its_settle_still_records(engine: Engine, shape: Shape) {
    let s = scratch(engine, shape);
    let cap = shape.free_cap();
    assert_eq!(count(&s, shape, cap - 100), 0);
    let (code, held, _) = run_at(
        &s,
        NOW,
        &args(&["reserve", "acme", "--ttl", "90s"], estimate(shape, 100)),
    );
    assert_eq!(code, 0, "{held}");
    let id = held["id"].as_str().unwrap().to_string();
    assert_eq!(reserve(&s, shape, 1, NOW).0, 3, "the hold takes the rest");
    // 90 seconds on, the hold counts for nothing: no job ended it.
    let later = "2026-11-27T18:01:30Z";
    let (code, other) = reserve(&s, shape, 100, later);
    assert_eq!(code, 0, "{other}");
    // doctor tells the lapsed one from the held one: its key stays taken until it ends.
    let out = s
        .cmd()
        .env("METERLINE_NOW", later)
        .arg("doctor")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("reservations 1 reservation held, 1 lapsed without a settle or a release"),
        "{text}"
    );
    // The lapsed one settles all the same, past the cap: the work was done.
    let (code, settled, err) = settle(&s, shape, &id, 100, later);
    assert_eq!(code, 0, "{err}");
    assert_eq!(settled["lapsed"], true);
    assert_eq!(settled["recorded"], true);
    assert_eq!(used(&s, shape), cap);
    // The other is released; releasing it again changes nothing; settling it is refused.
    let other = other["id"].as_str().unwrap().to_string();
    let (code, released, _) = run_at(&s, later, &args(&["release", &other], vec![]));
    assert_eq!((code, released["already"].clone()), (0, json!(false)));
    let (code, released, _) = run_at(&s, later, &args(&["release", &other], vec![]));
    assert_eq!((code, released["already"].clone()), (0, json!(true)));
    let (code, _, err) = settle(&s, shape, &other, 5, later);
    assert_eq!(code, 2);
    assert!(err.contains("was released"), "{err}");
    assert_eq!(used(&s, shape), cap);
}

fn held_credits_are_not_spent_by_others_and_settle_burns_what_was_used(
    engine: Engine,
    shape: Shape,
) {
    let s = scratch(engine, shape);
    let (meter, cap) = (shape.capped_meter(), shape.free_cap());
    assert_eq!(count(&s, shape, cap), 0);
    s.json(&[
        "credits", "grant", "acme", "100", "--meter", meter, "--json",
    ]);
    let (code, held) = reserve(&s, shape, 60, NOW);
    assert_eq!(code, 0, "{held}");
    let id = held["id"].as_str().unwrap().to_string();
    let balance = s.json(&["credits", "acme", "--json"]);
    assert_eq!(balance["units"][meter]["held"], "60");
    assert_eq!(balance["units"][meter]["available"], "40");
    // 40 are left to others.
    assert_eq!(count(&s, shape, 41), 3);
    assert_eq!(count(&s, shape, 40), 0);
    // The work used 70: 60 freed and burnt, and 10 more than the balance: a capped meter
    // bills no overage, so they are owed.
    let (code, settled, err) = settle(&s, shape, &id, 70, NOW);
    assert_eq!(code, 0, "{err}");
    assert_eq!(settled["recorded"], true);
    assert_eq!(used(&s, shape), cap + 110);
    let balance = s.json(&["credits", "acme", "--json"]);
    assert_eq!(balance["units"][meter]["balance"], "-10", "{balance}");
    assert_eq!(balance["units"][meter]["available"], "0");
    assert_eq!(count(&s, shape, 1), 3, "a debt leaves nothing to spend");
    // The next grant pays the debt first.
    s.json(&["credits", "grant", "acme", "25", "--meter", meter, "--json"]);
    let balance = s.json(&["credits", "acme", "--json"]);
    assert_eq!(balance["units"][meter]["balance"], "15", "{balance}");
    assert_eq!(ledger_sum(&s), 15, "the ledger's sum is the balance");
    crate::credit_burns::assert_ledger_adds_up(&s);
    assert_eq!(count(&s, shape, 15), 0);
}

fn bad_reservations_are_refused_and_write_nothing(engine: Engine, shape: Shape) {
    let s = scratch(engine, shape);
    let rows = reservation_rows(&s);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            args(&["reserve", "acme", "--ttl", "2h"], estimate(shape, 5)),
            "between 1 second and 1 hour",
        ),
        (
            args(&["reserve", "nobody"], estimate(shape, 5)),
            "unknown customer",
        ),
        (
            args(
                &["reserve", "acme", "--meter", "nope"],
                properties(shape, 5),
            ),
            "nope",
        ),
        (args(&["reserve", "acme", "--type", "nope"], vec![]), "nope"),
        (args(&["settle", "rsv_nope"], vec![]), "unknown reservation"),
        (
            args(&["release", "rsv_nope"], vec![]),
            "unknown reservation",
        ),
    ];
    for (command, message) in cases {
        let (code, _, err) = run_at(&s, NOW, &command);
        assert_eq!(code, 2, "{command:?}: {err}");
        assert!(err.contains(message), "{command:?}: {err}");
    }
    // A key returns its reservation, and refuses other parameters.
    let keyed = |n: i64| args(&["reserve", "acme", "--key", "job-1"], estimate(shape, n));
    let (code, first, _) = run_at(&s, NOW, &keyed(5));
    assert_eq!(code, 0);
    let (code, again, _) = run_at(&s, NOW, &keyed(5));
    assert_eq!(
        (code, again["id"].clone(), again["duplicate"].clone()),
        (0, first["id"].clone(), json!(true))
    );
    let (code, _, err) = run_at(&s, NOW, &keyed(6));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("other parameters"), "{err}");
    assert_eq!(
        reservation_rows(&s),
        rows + 1 + first["holds"].as_array().unwrap().len() as i64
    );
}

/// A settle records its event under the reservation's key, and event keys are unique across
/// customers: so a key another customer reserved, or an event holds, is refused at the reserve
/// (exit 2, nothing held), not at the settle once the work is done.
fn a_key_is_one_reservation_and_one_event_across_customers(engine: Engine, shape: Shape) {
    let s = scratch(engine, shape);
    s.add_customer("globex", "free", "2026-11-01");
    let keyed =
        |customer: &str, key: &str| args(&["reserve", customer, "--key", key], estimate(shape, 2));
    let (code, acme, err) = run_at(&s, NOW, &keyed("acme", "job-1"));
    assert_eq!(code, 0, "{err}");
    let rows = reservation_rows(&s);
    let (code, _, err) = run_at(&s, NOW, &keyed("globex", "job-1"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("another customer"), "{err}");
    let mut recorded = shape.counting(1);
    recorded.extend(["--key".to_string(), "rec-1".to_string()]);
    assert_eq!(s.record_json("globex", &recorded).0, 0);
    for customer in ["acme", "globex"] {
        let (code, _, err) = run_at(&s, NOW, &keyed(customer, "rec-1"));
        assert_eq!(code, 2, "{customer}: {err}");
        assert!(err.contains("already recorded event"), "{customer}: {err}");
    }
    assert_eq!(
        reservation_rows(&s),
        rows,
        "a refused reserve holds nothing"
    );
    // The key's own reservation settles, and a resent reserve still finds it.
    let id = acme["id"].as_str().unwrap();
    let (code, settled, err) = settle(&s, shape, id, 2, NOW);
    assert_eq!(
        (code, settled["recorded"].clone()),
        (0, json!(true)),
        "{err}"
    );
    let (code, again, err) = run_at(&s, NOW, &keyed("acme", "job-1"));
    assert_eq!(
        (code, again["id"].clone()),
        (0, acme["id"].clone()),
        "{err}"
    );
}

/// `settle ID --property tokens=7` is how a product says what the work used: the estimate's
/// other properties (the model, the user, anything else) stay, each given one replaces its own.
fn a_settle_names_what_changed_and_keeps_the_estimates_other_properties(
    engine: Engine,
    shape: Shape,
) {
    let s = scratch(engine, shape);
    let mut estimate = estimate(shape, 5);
    estimate.extend(["--property".to_string(), "region=eu".to_string()]);
    let (code, reserved, err) = run_at(&s, NOW, &args(&["reserve", "acme"], estimate));
    assert_eq!(code, 0, "{err}");
    // The hold takes no unit credits (acme has none): no meter's units to show.
    let balance = s.json(&["credits", "acme", "--json"]);
    assert_eq!(balance["units"], json!({}), "{balance}");
    let counted = match shape {
        Shape::Legacy => "quantity=7",
        Shape::Meters => "tokens=7",
    };
    let id = reserved["id"].as_str().unwrap();
    let (code, settled, err) = run_at(
        &s,
        NOW,
        &args(&["settle", id, "--property", counted], vec![]),
    );
    assert_eq!(
        (code, settled["recorded"].clone()),
        (0, json!(true)),
        "{err}"
    );
    assert_eq!(used(&s, shape), 7);
    let stored = s.inspect().rows(&format!(
        "SELECT properties FROM usage_events WHERE id = {}",
        settled["event_id"]
    ));
    let properties: Value = serde_json::from_str(&stored[0][0]).unwrap();
    assert_eq!(properties["region"], "eu", "{properties}");
    if shape == Shape::Meters {
        assert_eq!(properties["model"], "large", "{properties}");
        assert_eq!(properties["tokens"], "7", "{properties}");
    }
    // Sent again with other work: refused in a settle's words, nothing more counted.
    let other = counted.replace('7', "8");
    let (code, _, err) = run_at(
        &s,
        NOW,
        &args(&["settle", id, "--property", &other], vec![]),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("the settle's event key"), "{err}");
    assert!(
        err.contains("A settle sent again must name what it first named"),
        "{err}"
    );
    assert_eq!(used(&s, shape), 7);
}

/// The properties of `n` units on the shape's capped meter, as JSON.
fn http_estimate(shape: Shape, n: i64) -> Value {
    match shape {
        Shape::Legacy => json!({"quantity": n}),
        Shape::Meters => json!({"tokens": n, "model": "large"}),
    }
}

/// `POST /v1/reservations`' body for `n` units under `key`.
fn http_reserve(shape: Shape, n: i64, key: &str) -> String {
    let mut body = json!({"customer": "acme", "properties": http_estimate(shape, n), "key": key});
    if shape == Shape::Meters {
        body["meter"] = json!("tokens");
    }
    body.to_string()
}

fn reservations_over_http_race_without_overdrawing(engine: Engine, shape: Shape) {
    let s = scratch(engine, shape);
    let (meter, cap) = (shape.capped_meter(), shape.free_cap());
    assert_eq!(count(&s, shape, cap), 0);
    s.json(&[
        "credits", "grant", "acme", "500", "--meter", meter, "--json",
    ]);
    let token = create_token(&s, "rsv");
    let server = Server::start(&s, &[]);
    let client = server.client(&token);
    // 6 workers × 10 jobs: reserve 10, settle 10. 500 credits: exactly 50 jobs are held.
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let c = client.clone();
            std::thread::spawn(move || {
                let mut settled = 0;
                for i in 0..10 {
                    let reply = c.post(
                        "/v1/reservations",
                        &http_reserve(shape, 10, &format!("j{w}-{i}")),
                    );
                    assert!(matches!(reply.status, 201 | 402), "{}", reply.body);
                    if reply.status == 402 {
                        continue;
                    }
                    let id = reply.json()["id"].as_str().unwrap().to_string();
                    let path = format!("/v1/reservations/{id}/settle");
                    let settle = json!({"properties": http_estimate(shape, 10)}).to_string();
                    let reply = c.post(&path, &settle);
                    assert_eq!(reply.status, 200, "{}", reply.body);
                    assert_eq!(reply.json()["recorded"], true);
                    settled += 1;
                }
                settled
            })
        })
        .collect();
    let settled: i64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(settled, 50);
    // Over: a 402 with the record answer; unknown: 404; release of a settled one: 409.
    let reply = client.post("/v1/reservations", &http_reserve(shape, 1, "over"));
    assert_eq!(reply.status, 402, "{}", reply.body);
    assert_eq!(reply.json()["refused_by"], json!([meter]));
    assert_eq!(
        client.post("/v1/reservations/rsv_x/settle", "{}").status,
        404
    );
    let id = s.inspect().rows("SELECT id FROM reservations LIMIT 1")[0][0].clone();
    assert_eq!(client.delete(&format!("/v1/reservations/{id}")).status, 409);
    drop(server);
    assert_eq!(used(&s, shape), cap + 500);
    let balance = s.json(&["credits", "acme", "--json"]);
    assert_eq!(balance["grants"], json!([]));
    assert_eq!(ledger_sum(&s), 0, "the ledger's sum is the balance");
}

/// kill -9 while clients reserve and settle (serve's rounds mix both): every settle answered
/// 200 is recorded, exactly once; no reservation is half-written (each has its holds); the
/// ledger adds up to what the counters say was burnt; after a restart each acknowledged
/// settle sent again is a duplicate that counts nothing.
fn kill_9_mid_reservations_loses_no_acknowledged_settle(engine: Engine, shape: Shape) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    const CREDITS: i64 = 1_000_000;
    let s = scratch(engine, shape);
    let (meter, cap) = (shape.capped_meter(), shape.free_cap());
    // Past the allowance: every settled unit burns a unit credit.
    assert_eq!(count(&s, shape, cap), 0);
    s.json(&[
        "credits",
        "grant",
        "acme",
        &CREDITS.to_string(),
        "--meter",
        meter,
        "--json",
    ]);
    let token = create_token(&s, "rsv");
    let server = Server::start(&s, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let settled = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let (c, stop, settled) = (server.client(&token), stop.clone(), settled.clone());
            std::thread::spawn(move || {
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let units = 1 + i % 5;
                    let body = http_reserve(shape, units, &format!("k{w}-{i}"));
                    // The server went away: nothing more can be acknowledged.
                    let Ok(reply) = c.try_post("/v1/reservations", &body) else {
                        return;
                    };
                    assert_eq!(reply.status, 201, "{}", reply.body);
                    let id = reply.json()["id"].as_str().unwrap().to_string();
                    let settle = json!({"properties": http_estimate(shape, units)}).to_string();
                    let Ok(reply) = c.try_post(&format!("/v1/reservations/{id}/settle"), &settle)
                    else {
                        return;
                    };
                    assert_eq!(reply.status, 200, "{}", reply.body);
                    settled.lock().unwrap().push((id, units));
                }
            })
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while settled.lock().unwrap().len() < 300 {
        assert!(
            std::time::Instant::now() < deadline,
            "the load made no progress"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
    let settled = std::mem::take(&mut *settled.lock().unwrap());

    let db = s.inspect();
    let ended: std::collections::HashMap<String, (String, String)> = db
        .rows("SELECT id, COALESCE(ended_as, ''), COALESCE(CAST(event_id AS TEXT), '') FROM reservations")
        .into_iter()
        .map(|r| (r[0].clone(), (r[1].clone(), r[2].clone())))
        .collect();
    for (id, _) in &settled {
        let (ended_as, event) = &ended[id];
        assert_eq!(ended_as, "settled", "acknowledged settle of {id}");
        assert!(
            !event.is_empty(),
            "acknowledged settle of {id} has no event"
        );
    }
    assert_eq!(
        db.number(
            "SELECT COUNT(*) FROM reservations r WHERE NOT EXISTS
                 (SELECT 1 FROM reservation_holds h WHERE h.reservation_id = r.id)"
        ),
        0,
        "a reservation without its holds"
    );
    assert_eq!(db.counters_disagreeing_with_events(), 0);
    let used_now = used(&s, shape);
    let acknowledged: i64 = settled.iter().map(|(_, units)| units).sum();
    assert!(
        used_now >= cap + acknowledged,
        "{used_now} < {cap} + {acknowledged}"
    );
    // Every unit past the allowance was paid by the grant, and the ledger says so.
    assert_eq!(ledger_sum(&s), CREDITS - (used_now - cap));

    let server = Server::start(&s, &[]);
    let c = server.client(&token);
    for (id, _) in settled.iter().take(50) {
        let reply = c.post(&format!("/v1/reservations/{id}/settle"), "{}");
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json()["duplicate"], true, "{}", reply.body);
    }
    assert_eq!(server.terminate().code(), Some(0));
    assert_eq!(used(&s, shape), used_now);
}

/// A settle records its event under the reservation's key (else its id). An event recorded
/// under that key first made the settle fail once the work was done: the record is refused
/// instead, on the CLI and over HTTP, until the reservation is settled or released.
fn a_key_a_reservation_holds_is_not_taken_by_a_record(engine: Engine, shape: Shape) {
    let s = scratch(engine, shape);
    let reserve_keyed = |key: Option<&str>| {
        let mut words = vec!["reserve", "acme"];
        words.extend(key.map(|k| ["--key", k]).into_iter().flatten());
        let (code, held, err) = run_at(&s, NOW, &args(&words, estimate(shape, 5)));
        assert_eq!(code, 0, "{err}");
        held["id"].as_str().unwrap().to_string()
    };
    let keyed = reserve_keyed(Some("job-1"));
    let keyless = reserve_keyed(None);
    let record_under = |key: &str| {
        let mut words = shape.counting(3);
        words.extend(["--key".to_string(), key.to_string()]);
        run_at(&s, NOW, &args(&["record", "acme"], words))
    };
    let before = used(&s, shape);
    for (key, reservation) in [("job-1", &keyed), (keyless.as_str(), &keyless)] {
        let (code, _, err) = record_under(key);
        assert_eq!(code, 2, "{key}: {err}");
        assert!(
            err.contains(&format!("held by reservation {reservation}")),
            "{err}"
        );
    }
    let token = create_token(&s, "keys");
    let server = Server::start(&s, &[]);
    let reply = server
        .client(&token)
        .post("/v1/events", &shape.event("acme", 3, "job-1").to_string());
    assert_eq!(reply.status, 409, "{}", reply.body);
    drop(server);
    assert_eq!(used(&s, shape), before, "a refused record counted");
    // Each settles as it was reserved.
    for id in [&keyed, &keyless] {
        let (code, settled, err) = settle(&s, shape, id, 5, NOW);
        assert_eq!(code, 0, "{err}");
        assert_eq!(settled["recorded"], true);
    }
    // A released reservation holds its key no more.
    let released = reserve_keyed(Some("job-2"));
    let (code, _, err) = run_at(&s, NOW, &args(&["release", &released], vec![]));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = record_under("job-2");
    assert_eq!(code, 0, "{err}");
}

/// `reserve -n 3` and `settle -n 2` say what `record -n` says: the same as `--property
/// quantity=N`, given one way only.
fn n_is_the_quantity_as_for_record(engine: Engine, shape: Shape) {
    let s = scratch(engine, shape);
    let reserve = |more: &[&str]| {
        let more = more.iter().map(|m| m.to_string()).collect();
        run_at(&s, NOW, &args(&["reserve", "acme"], more))
    };
    let (code, by_n, err) = reserve(&["-n", "3"]);
    assert_eq!(code, 0, "{err}");
    let (code, by_property, err) = reserve(&["--property", "quantity=3"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(by_n["properties"], json!({"quantity": "3"}));
    assert_eq!(by_n["holds"], by_property["holds"]);
    let (code, _, err) = reserve(&["-n", "3", "--property", "quantity=3"]);
    assert_eq!(code, 2);
    assert!(err.contains("the quantity is given twice"), "{err}");
    let settle = |id: &Value, more: &[&str]| {
        let more = more.iter().map(|m| m.to_string()).collect();
        let (code, settled, err) = run_at(&s, NOW, &args(&["settle", id.as_str().unwrap()], more));
        assert_eq!(code, 0, "{err}");
        s.inspect().rows(&format!(
            "SELECT quantity, properties FROM usage_events WHERE id = {}",
            settled["event_id"]
        ))
    };
    assert_eq!(
        settle(&by_n["id"], &["-n", "2"]),
        settle(&by_property["id"], &["--property", "quantity=2"])
    );
}
