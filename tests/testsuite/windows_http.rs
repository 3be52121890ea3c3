//! Rolling-window limits over HTTP, on both engines: a refusal is a 402 with `Retry-After`
//! in whole seconds, the time until the refused amount fits (native events and
//! reservations), a batch's refused event carries `refused_window`, each drop-in route
//! refuses in its own shape naming the window, and many writers racing for one sliding
//! window (processes, two servers on one database, reservations) leave it holding exactly
//! its limit.

use serde_json::{Value, json};

use crate::support::cli::{NOW, Scratch};
use crate::support::engine::{Engine, engine_tests};
use crate::support::serve::{Client, Server, create_token};
use crate::support::shapes::{Shape, shape_tests};
use crate::windows::{HOUR, at, check, meter_of, record, windowed};

shape_tests!(
    a_refusal_is_a_402_with_retry_after_until_the_amount_fits,
    writers_racing_for_one_sliding_window_leave_exactly_its_limit,
    reservations_racing_over_http_hold_exactly_the_windows_limit,
);

engine_tests!(
    each_drop_in_route_refuses_an_event_a_window_refuses,
    two_servers_racing_for_one_window_take_exactly_its_limit,
);

/// acme's sliding 5h window of 100 holding 60 (leaving it at 1h 0m 17s from now) and 30.
fn nearly_full(engine: Engine, shape: Shape) -> Scratch {
    let s = windowed(engine, shape, None, &["window = \"5h\"\nlimit = 100"]);
    assert_eq!(record(&s, shape, 60, &at(-4 * HOUR + 17), NOW).0, 0);
    assert_eq!(record(&s, shape, 30, NOW, NOW).0, 0);
    s
}

fn serve(s: &Scratch) -> (Server, Client) {
    let token = create_token(s, "windows");
    let server = Server::start(s, &[]);
    let client = server.client(&token);
    (server, client)
}

/// serve's clock starts at [`NOW`] and runs on, so an answer's Retry-After is the wait from
/// NOW less the seconds since the server started (at most what has passed since `started`).
fn assert_waits(retry_after: Option<i64>, from_now: i64, started: std::time::Instant) {
    let passed = started.elapsed().as_secs() as i64 + 1;
    let secs = retry_after.expect("a Retry-After");
    assert!(
        (from_now - passed..=from_now).contains(&secs),
        "Retry-After {secs}, want {from_now} less at most {passed} s"
    );
}

/// The `Retry-After` header of `reply`, which must be the body's `refused_window.retry_after`.
fn retry_after(reply: &crate::support::serve::Reply) -> Option<i64> {
    let header = reply
        .retry_after
        .as_ref()
        .map(|v| v.parse::<i64>().unwrap());
    assert_eq!(
        reply.json()["refused_window"]["retry_after"].as_i64(),
        header,
        "{}",
        reply.body
    );
    header
}

fn a_refusal_is_a_402_with_retry_after_until_the_amount_fits(engine: Engine, shape: Shape) {
    let s = nearly_full(engine, shape);
    let meter = shape.capped_meter();
    let started = std::time::Instant::now();
    let (_server, c) = serve(&s);
    // 20 more fit once the 60 leave: at -4h + 17 s + 5h.
    let fits_in = HOUR + 17;
    let reply = c.post("/v1/events", &shape.event("acme", 20, "e-1").to_string());
    assert_eq!(reply.status, 402, "{}", reply.body);
    assert_waits(retry_after(&reply), fits_in, started);
    let mut refusal = reply.json()["refused_window"].clone();
    refusal["retry_after"] = json!(null);
    assert_eq!(
        refusal,
        json!({"meter": meter, "window": "5h", "kind": "sliding", "limit": 100, "used": 90,
               "retry_after": null})
    );
    // More than the limit never fits: refused without Retry-After.
    let reply = c.post("/v1/events", &shape.event("acme", 101, "e-2").to_string());
    assert_eq!(reply.status, 402, "{}", reply.body);
    assert_eq!(retry_after(&reply), None);

    // A reservation is refused the same way.
    let reply = c.post("/v1/reservations", &reservation(shape, 20, "r-1"));
    assert_eq!(reply.status, 402, "{}", reply.body);
    assert_waits(retry_after(&reply), fits_in, started);

    // In a batch each event has its own answer: the refused one names the window.
    let events = json!({"events": [shape.event("acme", 10, "b-1"), shape.event("acme", 5, "b-2")]});
    let reply = c.post("/v1/events/batch", &events.to_string());
    assert_eq!(reply.status, 200, "{}", reply.body);
    let results = reply.json()["results"].clone();
    assert_eq!(results[0]["status"], 200, "{results}");
    assert_eq!(results[1]["status"], 402, "{results}");
    assert_eq!(results[1]["refused_window"]["used"], 100, "{results}");
    assert_waits(
        results[1]["refused_window"]["retry_after"].as_i64(),
        fits_in,
        started,
    );
    // The HTTP check shows the window as `check --json` does (a minute on: the server's
    // clock ran on from NOW), full and blocking.
    let reply = c.get("/v1/customers/acme/check");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let over_http = reply.json();
    let window = &meter_of(&over_http, meter)["windows"][0];
    assert_eq!(
        (&window["used"], &window["remaining"]),
        (&json!(100), &json!(0))
    );
    assert_eq!(over_http["allowed"], false, "{over_http}");
    assert_eq!(
        meter_of(&check(&s, &at(60)), meter)["windows"],
        meter_of(&over_http, meter)["windows"]
    );
}

/// The init file's tokens (Stripe event `api_tokens`; CloudEvents sends its event type,
/// `completion`, Lago the meter's id) with a window of 100 an hour, acme
/// mapped to cus_Acme1 and 95 tokens in the window.
fn drop_in_acme(engine: Engine) -> Scratch {
    let s = windowed(
        engine,
        Shape::Meters,
        None,
        &["window = \"1h\"\nlimit = 100"],
    );
    s.cmd()
        .args(["customer", "set-stripe", "acme", "cus_Acme1"])
        .assert()
        .success();
    assert_eq!(record(&s, Shape::Meters, 95, &at(-60), NOW).0, 0);
    s
}

fn cloud_event(id: &str, tokens: i64) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "tests", "type": "completion",
           "subject": "acme", "time": NOW,
           "data": {"tokens": tokens, "model": "large", "user": "ann"}})
}

fn lago_event(id: &str, tokens: i64) -> Value {
    let now: chrono::DateTime<chrono::Utc> = NOW.parse().unwrap();
    json!({"transaction_id": id, "external_subscription_id": "acme", "code": "tokens",
           "timestamp": now.timestamp(), "properties": {"tokens": tokens, "model": "large"}})
}

fn each_drop_in_route_refuses_an_event_a_window_refuses(engine: Engine) {
    let s = drop_in_acme(engine);
    let (_server, c) = serve(&s);
    let names_the_window = |message: &str| {
        assert!(
            message.contains("window limit") && message.contains("100 per 1h sliding"),
            "{message}"
        );
    };

    // Stripe: a 402 (its SDKs raise CardError), the hard cap's code. The meter's property
    // beside Stripe's value.
    let (status, body) = c.stripe_meter_event(
        "event_name=api_tokens&payload[stripe_customer_id]=cus_Acme1&payload[value]=10\
         &payload[tokens]=10&payload[model]=large",
    );
    assert_eq!(status, 402, "{body}");
    assert_eq!(body["error"]["code"], "meterline_hard_cap_reached");
    names_the_window(body["error"]["message"].as_str().unwrap());

    // CloudEvents: a 402 problem listing the refused event; the others are recorded, as
    // under a hard cap.
    let (status, body) = c.cloudevents(&json!([cloud_event("c1", 1), cloud_event("c2", 5)]));
    assert_eq!(status, 402, "{body}");
    assert_eq!(
        body["refused"],
        json!([{"id": "c2", "source": "tests"}]),
        "{body}"
    );
    names_the_window(body["detail"].as_str().unwrap());

    // Lago: its 402 naming the refused transaction.
    let (status, body) = c.lago(
        "/lago/api/v1/events/batch",
        &json!({"events": [lago_event("l1", 4), lago_event("l2", 1)]}),
    );
    assert_eq!(status, 402, "{body}");
    assert_eq!(body["code"], "hard_cap_reached", "{body}");
    assert_eq!(
        body["error_details"]["transaction_ids"],
        json!(["l2"]),
        "{body}"
    );
    names_the_window(body["error_details"]["message"].as_str().unwrap());

    // 95 + 1 + 4: the window is full. Each route's 402 says when 1 more fits: once the 95
    // recorded a minute before NOW leave the hour.
    let check = check(&s, NOW);
    assert_eq!(meter_of(&check, "tokens")["windows"][0]["used"], 100);
    let started = std::time::Instant::now();
    let form = "event_name=api_tokens&payload[stripe_customer_id]=cus_Acme1&payload[value]=1\
                &payload[tokens]=1&payload[model]=large";
    let replies = [
        c.send(
            "/stripe/v1/billing/meter_events",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            form.as_bytes(),
        ),
        c.send(
            "/openmeter/api/v1/events",
            &[("Content-Type", "application/cloudevents+json")],
            cloud_event("c3", 1).to_string().as_bytes(),
        ),
        c.send(
            "/lago/api/v1/events",
            &[("Content-Type", "application/json")],
            json!({"event": lago_event("l3", 1)}).to_string().as_bytes(),
        ),
    ];
    for reply in replies {
        assert_eq!(reply.status, 402, "{}", reply.body);
        let secs = reply
            .retry_after
            .as_ref()
            .map(|v| v.parse::<i64>().unwrap());
        assert_waits(secs, HOUR - 60, started);
    }
}

const WRITERS: usize = 8;
const EACH: usize = 8;

/// 8 writer processes at once, each recording 1 unit 8 times at the same instant, against a
/// window of 50: exactly 50 are taken, whichever wins.
fn writers_racing_for_one_sliding_window_leave_exactly_its_limit(engine: Engine, shape: Shape) {
    let s = windowed(engine, shape, None, &["window = \"1h\"\nlimit = 50"]);
    let codes: Vec<i32> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..WRITERS)
            .map(|_| {
                let s = &s;
                scope.spawn(move || {
                    (0..EACH)
                        .map(|_| record(s, shape, 1, NOW, NOW).0)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let taken = codes.iter().filter(|&&c| c == 0).count();
    let refused = codes.iter().filter(|&&c| c == 3).count();
    assert_eq!((taken, refused), (50, WRITERS * EACH - 50), "{codes:?}");
    let check = check(&s, NOW);
    let meter = meter_of(&check, shape.capped_meter());
    assert_eq!(meter["used"], 50);
    assert_eq!(meter["windows"][0]["used"], 50);
    // The buckets of every size add up to the same.
    let sums = s
        .inspect()
        .rows("SELECT span, SUM(units) FROM window_buckets GROUP BY span ORDER BY span");
    let expected: Vec<Vec<String>> = ["60", "3600", "86400"]
        .iter()
        .map(|span| vec![span.to_string(), "50".to_string()])
        .collect();
    assert_eq!(sums, expected);
}

/// `POST /v1/reservations`' body: `n` units on the capped meter for acme, under `key`.
fn reservation(shape: Shape, n: i64, key: &str) -> String {
    let mut body = json!({"customer": "acme", "key": key, "properties": match shape {
        Shape::Legacy => json!({"quantity": n}),
        Shape::Meters => json!({"tokens": n, "model": "large"}),
    }});
    if shape == Shape::Meters {
        body["meter"] = json!("tokens");
    }
    body.to_string()
}

/// 6 clients reserve 10 units 5 times each at once, against a window of 100: the server's
/// group commit decides many in one transaction, and exactly 10 holds are made.
fn reservations_racing_over_http_hold_exactly_the_windows_limit(engine: Engine, shape: Shape) {
    let s = windowed(engine, shape, None, &["window = \"1h\"\nlimit = 100"]);
    let (_server, c) = serve(&s);
    let statuses = racing(vec![c; 6], 5, |w, i| {
        let body = reservation(shape, 10, &format!("{w}-{i}"));
        ("/v1/reservations", body)
    });
    let (held, refused) = (count(&statuses, 201), count(&statuses, 402));
    assert_eq!((held, refused), (10, 20), "{statuses:?}");
    // A minute on: serve's clock ran on from NOW while the holds were made.
    let check = check(&s, &at(60));
    let holds = s.inspect().rows(
        "SELECT r.created_at, r.expires_at, r.ended_at, h.units FROM reservations r
         JOIN reservation_holds h ON h.reservation_id = r.id ORDER BY r.created_at",
    );
    assert_eq!(
        meter_of(&check, shape.capped_meter())["windows"][0]["used"],
        100,
        "{check}\n{holds:?}"
    );
}

/// Two servers on one database, 4 clients each sending 10 events of a unit at once, against
/// a window of 50: each server's group commit and the writers' lock between them take
/// exactly 50.
fn two_servers_racing_for_one_window_take_exactly_its_limit(engine: Engine) {
    let shape = Shape::Legacy;
    let s = windowed(engine, shape, None, &["window = \"1h\"\nlimit = 50"]);
    let token = create_token(&s, "race");
    let servers = [Server::start(&s, &[]), Server::start(&s, &[])];
    let clients = (0..8).map(|w| servers[w % 2].client(&token)).collect();
    let statuses = racing(clients, 10, |w, i| {
        let event = shape.event("acme", 1, &format!("{w}-{i}"));
        ("/v1/events", event.to_string())
    });
    let (taken, refused) = (count(&statuses, 200), count(&statuses, 402));
    assert_eq!((taken, refused), (50, 30), "{statuses:?}");
    let check = check(&s, &at(60));
    assert_eq!(meter_of(&check, "usage")["windows"][0]["used"], 50);
}

/// Each of `clients` sends `each` posts at once, the `i`th of client `w` being `post(w, i)`
/// (a path and a body): every answer's status, in no particular order.
fn racing(
    clients: Vec<Client>,
    each: usize,
    post: impl Fn(usize, usize) -> (&'static str, String) + Sync,
) -> Vec<u16> {
    std::thread::scope(|scope| {
        let post = &post;
        let handles: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(w, c)| {
                scope.spawn(move || {
                    (0..each)
                        .map(|i| {
                            let (path, body) = post(w, i);
                            c.post(path, &body).status
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

/// How many of `statuses` are `status`.
fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|&&st| st == status).count()
}
