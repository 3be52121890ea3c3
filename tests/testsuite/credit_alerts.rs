//! Credit alerts: an `[[alerts]]` entry with `credits_below` gets `credits.low` once when a
//! customer's available money credits fall below it, again only after a grant re-arms it, and
//! `credits.exhausted` when they reach 0; written by the transaction that spent them (a record,
//! a reservation's hold, a settle, a void) and delivered, signed, from the one alert outbox.
//! On both engines and both plans.toml shapes, through the real binary and a real webhook
//! receiver.

use serde_json::Value;

use crate::support::alerts::{Mode, Receiver, SECRET, verify_with_python};
use crate::support::cli::Scratch;
use crate::support::engine::{Engine, engine_tests};
use crate::support::serve::{Server, create_token};
use crate::support::shapes::{Shape, shape_tests};

shape_tests!(records_that_burn_money_credits_alert_once_per_crossing_until_a_grant_rearms);

engine_tests!(
    eight_http_writers_cross_once_and_serve_delivers,
    a_hold_crosses_when_made_and_only_a_grant_rearms,
    a_void_alerts_and_each_entry_gets_the_thresholds_it_names,
);

/// The pro plan's included units on the shape's capped meter, and how many units past them a
/// cent pays for (legacy: 0.0005 a unit; the init file's large model: 0.00001 a token).
fn pro_terms(shape: Shape) -> (i64, i64) {
    match shape {
        Shape::Legacy => (100_000, 20),
        Shape::Meters => (10_000_000, 1_000),
    }
}

/// `shape`'s plans.toml with `entries` appended, on `engine`, with acme on pro whose
/// included units are used up: from now on each unit costs money, which credits pay first.
fn scratch(engine: Engine, shape: Shape, entries: &str) -> Scratch {
    let s = Scratch::shaped(engine, shape);
    let plans = std::fs::read_to_string(shape.plans_file()).unwrap();
    std::fs::write(&s.plans, format!("{plans}\n{entries}\n")).unwrap();
    s.add_customer("acme", "pro", "2026-11-01");
    assert_eq!(record(&s, shape, pro_terms(shape).0), 0);
    s
}

/// One `[[alerts]]` entry posting to `receiver` below `threshold`.
fn webhook_below(receiver: &Receiver, threshold: &str) -> String {
    format!(
        "[[alerts]]\nwebhook = \"{}\"\ncredits_below = \"{threshold}\"\n",
        receiver.url
    )
}

/// `record acme` of `n` units on the capped meter: the exit code.
fn record(s: &Scratch, shape: Shape, n: i64) -> i32 {
    s.record_json("acme", &shape.counting(n)).0
}

/// Record what costs `cents` past acme's included units.
fn spend(s: &Scratch, shape: Shape, cents: i64) {
    assert_eq!(record(s, shape, cents * pro_terms(shape).1), 0);
}

/// `credits grant CUSTOMER AMOUNT`: the grant's id.
fn grant(s: &Scratch, customer: &str, amount: &str) -> i64 {
    s.json(&["credits", "grant", customer, amount, "--json"])["id"]
        .as_i64()
        .unwrap()
}

/// Every credit alert, oldest first (alert ids are UUIDv7, ordered in each process):
/// (customer, level, threshold, available).
fn credit_alerts(s: &Scratch) -> Vec<[String; 4]> {
    s.inspect()
        .rows(
            "SELECT customer_id, level, threshold, available FROM alerts
             WHERE meter_id IS NULL ORDER BY id",
        )
        .into_iter()
        .map(|r| <[String; 4]>::try_from(r).unwrap())
        .collect()
}

fn alert(customer: &str, level: &str, threshold: &str, available: &str) -> [String; 4] {
    [customer, level, threshold, available].map(String::from)
}

/// `meterline alerts --json` with the secret: what it reported.
fn deliver(s: &Scratch) -> Value {
    let out = s
        .cmd()
        .env("METERLINE_WEBHOOK_SECRET", SECRET)
        .env("METERLINE_ALERT_BACKOFF_MS", "0")
        .args(["alerts", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn records_that_burn_money_credits_alert_once_per_crossing_until_a_grant_rearms(
    engine: Engine,
    shape: Shape,
) {
    let receiver = Receiver::start(Mode::Ok);
    let s = scratch(engine, shape, &webhook_below(&receiver, "5.00"));
    grant(&s, "acme", "10.00");
    spend(&s, shape, 400);
    assert!(credit_alerts(&s).is_empty(), "6.00 left is not below 5");
    spend(&s, shape, 200);
    assert_eq!(credit_alerts(&s), [alert("acme", "credits.low", "5", "4")]);
    // Further below: not a new crossing.
    spend(&s, shape, 100);
    assert_eq!(credit_alerts(&s).len(), 1);
    // A grant that brings them back over the threshold re-arms it.
    grant(&s, "acme", "5");
    spend(&s, shape, 400);
    // Spending past the credits: they reach 0 (the rest is billed as overage).
    spend(&s, shape, 1_000);
    assert_eq!(
        credit_alerts(&s),
        [
            alert("acme", "credits.low", "5", "4"),
            alert("acme", "credits.low", "5", "4"),
            alert("acme", "credits.exhausted", "0", "0"),
        ]
    );
    // Only the credit alerts are delivered: the entry names no usage levels, though the
    // included units crossed all three.
    assert_eq!(
        s.inspect()
            .number("SELECT COUNT(*) FROM alerts WHERE meter_id IS NOT NULL"),
        3
    );
    assert_eq!(deliver(&s)["delivered"], 3);
    let requests = receiver.requests();
    assert_eq!(verify_with_python(&requests, SECRET), "verified 3");
    let bodies: Vec<Value> = requests
        .iter()
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    let kinds: Vec<&str> = bodies.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["credits.low", "credits.low", "credits.exhausted"]);
    let first = &bodies[0];
    assert_eq!(first["customer"], "acme");
    assert_eq!(first["plan"], "pro");
    assert_eq!(first["threshold"], "5");
    assert_eq!(first["available"], "4");
    assert_eq!(first["occurred_at"], "2026-11-27T18:00:00Z");
    assert!(first["id"].as_str().unwrap().starts_with("alrt_"));
    // Each delivered once: a second run sends nothing.
    assert_eq!(deliver(&s)["delivered"], 0);
    assert_eq!(receiver.requests().len(), 3);
}

/// The arguments that aim a reserve or settle of `cents`' worth at legacy pro's meter.
fn worth(cents: i64) -> Vec<String> {
    let units = cents * pro_terms(Shape::Legacy).1;
    vec!["--property".to_string(), format!("quantity={units}")]
}

/// `meterline WORDS ARGS --json`, which must succeed: its answer.
fn run(s: &Scratch, words: &[&str], args: Vec<String>) -> Value {
    let out = s
        .cmd()
        .args(words)
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{words:?}: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn a_hold_crosses_when_made_and_only_a_grant_rearms(engine: Engine) {
    let receiver = Receiver::start(Mode::Ok);
    let s = scratch(engine, Shape::Legacy, &webhook_below(&receiver, "5"));
    grant(&s, "acme", "10");
    // The hold keeps 6.00 from the balance: 4.00 are available.
    let held = run(&s, &["reserve", "acme"], worth(600));
    assert_eq!(credit_alerts(&s), [alert("acme", "credits.low", "5", "4")]);
    // A grant that leaves them below 5 does not re-arm the alert; nor does a release that
    // brings them back over it: a new hold falls below again, and alerts nothing.
    grant(&s, "acme", "0.50");
    run(&s, &["release", held["id"].as_str().unwrap()], vec![]);
    let held = run(&s, &["reserve", "acme"], worth(600));
    // Its settle burns what it held: still no new crossing.
    run(&s, &["settle", held["id"].as_str().unwrap()], worth(600));
    assert_eq!(credit_alerts(&s).len(), 1);
    let balance = s.json(&["credits", "acme", "--json"]);
    assert_eq!(balance["available"], "4.5", "{balance}");
    // A grant that brings them to 5 re-arms it: the next fall alerts.
    grant(&s, "acme", "0.50");
    spend(&s, Shape::Legacy, 1);
    assert_eq!(
        credit_alerts(&s),
        [
            alert("acme", "credits.low", "5", "4"),
            alert("acme", "credits.low", "5", "4.99"),
        ]
    );
    assert_eq!(deliver(&s)["delivered"], 2);
}

fn a_void_alerts_and_each_entry_gets_the_thresholds_it_names(engine: Engine) {
    let receiver = Receiver::start(Mode::Ok);
    let command = "[[alerts]]\ncommand = [\"/bin/true\"]\ncredits_below = \"20\"\n\
                   plans = [\"pro\"]\nlevels = [\"hard_cap\"]\n";
    let s = scratch(
        engine,
        Shape::Legacy,
        &format!("{}{command}", webhook_below(&receiver, "5")),
    );
    s.add_customer("globex", "free", "2026-11-01");
    for customer in ["acme", "globex"] {
        let id = grant(&s, customer, "30");
        s.cmd()
            .args(["credits", "void", &id.to_string()])
            .assert()
            .success();
    }
    // One void falls past both thresholds and reaches 0: three alerts each.
    assert_eq!(
        credit_alerts(&s),
        [
            alert("acme", "credits.low", "5", "0"),
            alert("acme", "credits.low", "20", "0"),
            alert("acme", "credits.exhausted", "0", "0"),
            alert("globex", "credits.low", "5", "0"),
            alert("globex", "credits.low", "20", "0"),
            alert("globex", "credits.exhausted", "0", "0"),
        ]
    );
    // Each entry gets the thresholds it names, and exhausted, for the plans it names.
    let webhook = format!("webhook {}", receiver.url);
    let command = "command [\"/bin/true\"]".to_string();
    let deliveries: Vec<[String; 4]> = s
        .inspect()
        .rows(
            "SELECT a.customer_id, a.level, a.threshold, d.target
             FROM alerts a JOIN alert_deliveries d ON d.alert_id = a.id
             WHERE a.meter_id IS NULL ORDER BY a.id, d.target",
        )
        .into_iter()
        .map(|r| <[String; 4]>::try_from(r).unwrap())
        .collect();
    let row = |customer: &str, level: &str, threshold: &str, target: &str| {
        [customer, level, threshold, target].map(String::from)
    };
    assert_eq!(
        deliveries,
        [
            row("acme", "credits.low", "5", &webhook),
            row("acme", "credits.low", "20", &command),
            row("acme", "credits.exhausted", "0", &command),
            row("acme", "credits.exhausted", "0", &webhook),
            row("globex", "credits.low", "5", &webhook),
            row("globex", "credits.exhausted", "0", &webhook),
        ]
    );
    // status shows the usage levels alerted, never a credit alert as one.
    let status = s.json(&["status", "--json"]);
    let customers = status.as_array().unwrap();
    let globex = customers
        .iter()
        .find(|c| c["customer"] == "globex")
        .unwrap();
    assert!(globex.get("alerted_level").is_none(), "{globex}");
    // The command also names a usage level: acme's included units crossed it.
    assert_eq!(deliver(&s)["delivered"], 6 + 1);
    assert_eq!(receiver.requests().len(), 4);
}

fn eight_http_writers_cross_once_and_serve_delivers(engine: Engine) {
    let receiver = Receiver::start(Mode::Ok);
    let s = scratch(engine, Shape::Legacy, &webhook_below(&receiver, "5"));
    grant(&s, "acme", "10");
    let token = create_token(&s, "burn");
    let mut command = std::process::Command::new(crate::support::cli::BIN);
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("METERLINE_DB", &s.db)
        .env("METERLINE_PLANS", &s.plans)
        .env("METERLINE_WEBHOOK_SECRET", SECRET);
    let server = Server::spawn(command);
    let client = server.client(&token);
    // 8 writers x 30 events of 5 cents each: the 10.00 of credits run out at the 200th.
    let units = 5 * pro_terms(Shape::Legacy).1;
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let c = client.clone();
            std::thread::spawn(move || {
                for i in 0..30 {
                    let event = Shape::Legacy.event("acme", units, &format!("w{w}-{i}"));
                    let reply = c.post("/v1/events", &event.to_string());
                    assert_eq!(reply.status, 200, "{}", reply.body);
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let levels: Vec<String> = credit_alerts(&s)
        .into_iter()
        .map(|a| a[1].clone())
        .collect();
    assert_eq!(levels, ["credits.low", "credits.exhausted"]);
    // serve's own delivery loop sends both, signed.
    assert!(
        receiver.wait_for(2),
        "serve delivered {:?}",
        receiver.requests()
    );
    let requests = receiver.requests();
    assert_eq!(verify_with_python(&requests, SECRET), "verified 2");
    let mut kinds: Vec<String> = requests
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.body).unwrap()["type"].to_string())
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["\"credits.exhausted\"", "\"credits.low\""]);
    drop(server);
}
