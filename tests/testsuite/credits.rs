//! Credits, part 1: grants, voids, the balance and the ledger, on both engines, through the
//! real binary and real HTTP. The ledger is append-only and every balance is the sum of its
//! entries: doctor, backup and copy-to say so, and find a ledger changed behind meterline's
//! back. (Burning at record time and reservations come next.)

use serde_json::{Value, json};

use crate::support::cli::{Scratch, run_at};
use crate::support::engine::{Engine, engine_tests};
use crate::support::serve::{Server, create_token};

engine_tests!(
    grants_list_in_burn_order_and_a_void_removes_only_the_remainder,
    each_bad_grant_is_refused_and_writes_nothing,
    a_key_returns_its_grant_and_refuses_other_parameters,
    a_money_grant_is_refused_when_no_unit_has_a_price,
    the_ledger_lists_entries_since_an_instant_and_exports_them,
    doctor_finds_a_ledger_that_does_not_add_up,
    credits_over_http,
    unit_grants_name_the_meters_of_a_meters_file,
);

/// The scratch's clock (`NOW` in support): grants default to it.
const NOW: &str = "2026-11-27T18:00:00Z";

/// acme on pro (overage at 0.0005 a unit) and a scratch on `engine`.
fn acme(engine: Engine) -> Scratch {
    let s = Scratch::on(engine);
    s.add_customer("acme", "pro", "2026-11-01");
    s
}

/// `meterline ARGS`: exit code, stdout, stderr.
fn run(s: &Scratch, args: &[&str]) -> (i32, String, String) {
    let out = s.cmd().args(args).output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn grant(s: &Scratch, args: &[&str]) -> Value {
    let mut all = vec!["credits", "grant"];
    all.extend_from_slice(args);
    all.push("--json");
    s.json(&all)
}

/// `grant`'s new grant id.
fn grant_id(s: &Scratch, args: &[&str]) -> i64 {
    grant(s, args)["id"].as_i64().unwrap()
}

fn ledger_rows(s: &Scratch) -> i64 {
    s.inspect().number("SELECT COUNT(*) FROM credit_ledger")
        + s.inspect().number("SELECT COUNT(*) FROM credit_grants")
}

/// (id, remaining) of each live grant, in the order `credits --json` lists them.
fn order(balance: &Value) -> Vec<(i64, String)> {
    balance["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["id"].as_i64().unwrap(),
                g["remaining"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn grants_list_in_burn_order_and_a_void_removes_only_the_remainder(engine: Engine) {
    let s = acme(engine);
    // Made in an order unlike the burn order, each grant differing from the next by one key.
    let paid = grant_id(&s, &["acme", "20"]);
    let promotional = grant_id(&s, &["acme", "5", "--promotional"]);
    let expiring = grant_id(&s, &["acme", "3.25", "--expires", "2026-12-31T00:00:00Z"]);
    let sooner = grant_id(&s, &["acme", "1", "--expires", "2026-12-01T00:00:00Z"]);
    let urgent = grant_id(&s, &["acme", "2", "--priority", "7"]);
    let units = grant_id(
        &s,
        &["acme", "1000", "--meter", "usage", "--priority", "200"],
    );
    let later = grant_id(&s, &["acme", "4", "--effective", "2026-12-15T00:00:00Z"]);
    let expired = grant_id(
        &s,
        &[
            "acme",
            "9",
            "--effective",
            "2026-10-01T00:00:00Z",
            "--expires",
            "2026-11-01T00:00:00Z",
        ],
    );

    let balance = s.json(&["credits", "acme", "--json"]);
    assert_eq!(
        order(&balance),
        vec![
            (units, "1000".into()),
            (urgent, "2".into()),
            (sooner, "1".into()),
            (expiring, "3.25".into()),
            (promotional, "5".into()),
            (paid, "20".into()),
            (later, "4".into()),
        ],
        "meter units, priority, soonest expiry, promotional, effective_at, id; {expired} expired"
    );
    // Not yet effective (4) and expired (9) grants are not in the balance.
    assert_eq!(
        (
            &balance["balance"],
            &balance["held"],
            &balance["available"],
            &balance["units"]
        ),
        (
            &json!("31.25"),
            &json!("0"),
            &json!("31.25"),
            &json!({"usage": {"balance": "1000", "held": "0", "available": "1000"}})
        )
    );

    let voided = s.json(&["credits", "void", &paid.to_string(), "--json"]);
    assert_eq!(
        (&voided["removed"], &voided["already"]),
        (&json!("20"), &json!(false))
    );
    let rows = ledger_rows(&s);
    let again = s.json(&["credits", "void", &paid.to_string(), "--json"]);
    assert_eq!(
        (&again["removed"], &again["already"]),
        (&json!("0"), &json!(true))
    );
    assert_eq!(ledger_rows(&s), rows, "voiding twice writes nothing");
    let balance = s.json(&["credits", "acme", "--json"]);
    assert_eq!(balance["balance"], json!("11.25"));
    assert!(!order(&balance).iter().any(|(id, _)| *id == paid));

    let (code, text, _) = run(&s, &["credits", "acme"]);
    assert_eq!(code, 0);
    assert!(
        text.starts_with("acme: balance $11.25, held $0.00, available $11.25\n"),
        "{text}"
    );
    assert!(text.contains("usage: balance 1,000 usage"), "{text}");
    // `check` shows the same balances under the standing.
    let (code, text, _) = run(&s, &["check", "acme"]);
    assert_eq!(code, 0);
    assert!(
        text.contains("\ncredits: balance $11.25, held $0.00, available $11.25\n"),
        "{text}"
    );
    assert!(
        text.contains("\nusage credits: balance 1,000 usage, held 0 usage"),
        "{text}"
    );
    let (code, text, _) = run(&s, &["doctor"]);
    assert!(
        text.contains(
            "credits   8 grants and 9 ledger entries, every balance the sum of its ledger"
        ),
        "{code}: {text}"
    );
}

fn each_bad_grant_is_refused_and_writes_nothing(engine: Engine) {
    let s = acme(engine);
    let cases: &[(&[&str], &str)] = &[
        (&["acme", "0"], "must be more than 0"),
        (&["acme", "-5"], "must be more than 0"),
        (&["acme", "1000000000000.5"], "over 10^12"),
        (&["acme", "0.0000000000001"], "more than 12 decimals"),
        (&["acme", "twelve"], "is not a decimal number"),
        (&["acme", "2.5", "--meter", "usage"], "whole number"),
        (
            &["acme", "5", "--meter", "nope"],
            "meter \"nope\" is not in plans.toml",
        ),
        (&["nobody", "5"], "unknown customer \"nobody\""),
        (
            &["acme", "5", "--expires", "2026-11-27T18:00:00Z"],
            "its expiry must come after",
        ),
        (
            &[
                "acme",
                "5",
                "--effective",
                "2026-12-10T00:00:00Z",
                "--expires",
                "2026-12-01T00:00:00Z",
            ],
            "its expiry must come after",
        ),
    ];
    for (args, says) in cases {
        let mut all = vec!["credits", "grant"];
        all.extend_from_slice(args);
        let (code, _, stderr) = run(&s, &all);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    // The largest and finest amounts allowed are taken.
    grant(&s, &["acme", "1000000000000"]);
    grant(&s, &["acme", "0.000000000001"]);
    assert_eq!(ledger_rows(&s), 4, "only the two good grants were written");
    let (code, _, stderr) = run(&s, &["credits", "void", "999"]);
    assert_eq!((code, stderr.trim()), (2, "error: no credit grant 999"));
}

fn a_key_returns_its_grant_and_refuses_other_parameters(engine: Engine) {
    let s = acme(engine);
    s.add_customer("globex", "pro", "2026-11-01");
    let first = grant(&s, &["acme", "12.50", "--key", "pay_1", "--note", "top-up"]);
    assert_eq!(first["duplicate"], json!(false));
    let rows = ledger_rows(&s);
    // The same parameters (12.5 is 12.50), later and without --effective: the same grant.
    let resend = s
        .cmd()
        .env("METERLINE_NOW", "2026-11-28T09:00:00Z")
        .args([
            "credits", "grant", "acme", "12.5", "--key", "pay_1", "--note", "top-up", "--json",
        ])
        .output()
        .unwrap();
    assert!(resend.status.success());
    let resend: Value = serde_json::from_slice(&resend.stdout).unwrap();
    assert_eq!(
        (&resend["id"], &resend["duplicate"]),
        (&first["id"], &json!(true))
    );
    assert_eq!(ledger_rows(&s), rows);
    let (_, text, _) = run(
        &s,
        &[
            "credits", "grant", "acme", "12.5", "--key", "pay_1", "--note", "top-up",
        ],
    );
    assert!(text.contains("already gave $12.50"), "{text}");

    for other in [
        &["acme", "13", "--key", "pay_1", "--note", "top-up"][..],
        &["acme", "12.5", "--key", "pay_1"],
        &[
            "acme",
            "12.5",
            "--key",
            "pay_1",
            "--note",
            "top-up",
            "--promotional",
        ],
        &[
            "acme",
            "12.5",
            "--key",
            "pay_1",
            "--note",
            "top-up",
            "--priority",
            "1",
        ],
    ] {
        let mut all = vec!["credits", "grant"];
        all.extend_from_slice(other);
        let (code, _, stderr) = run(&s, &all);
        assert_eq!(code, 2, "{other:?}");
        assert!(stderr.contains("already made credit grant"), "{stderr}");
    }
    assert_eq!(ledger_rows(&s), rows, "a conflict writes nothing");
    // A key is the customer's own: another customer may use it.
    assert_eq!(
        grant(&s, &["globex", "1", "--key", "pay_1"])["duplicate"],
        json!(false)
    );
}

fn a_money_grant_is_refused_when_no_unit_has_a_price(engine: Engine) {
    let s = Scratch::on(engine);
    std::fs::write(
        &s.plans,
        "[[plans]]\nid = \"free\"\nname = \"Free\"\nincluded = 1000\nat_limit = \"block\"\n",
    )
    .unwrap();
    s.add_customer("acme", "free", "2026-11-01");
    let (code, _, stderr) = run(&s, &["credits", "grant", "acme", "5"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("no plan in plans.toml has rates or an overage_rate"),
        "{stderr}"
    );
    assert_eq!(ledger_rows(&s), 0);
    // Units of a meter need no price.
    grant(&s, &["acme", "500", "--meter", "usage"]);
    assert_eq!(
        s.json(&["credits", "acme", "--json"])["units"]["usage"]["available"],
        json!("500")
    );
}

fn the_ledger_lists_entries_since_an_instant_and_exports_them(engine: Engine) {
    let s = acme(engine);
    let at = |now: &str, args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (code, _, err) = run_at(&s, now, &args);
        assert_eq!(code, 0, "{err}");
    };
    at(NOW, &["credits", "grant", "acme", "10", "--key", "k-1"]);
    at(
        "2026-11-28T00:00:00Z",
        &["credits", "grant", "acme", "50", "--meter", "usage"],
    );
    at("2026-11-29T00:00:00Z", &["credits", "void", "1"]);

    let all = s.json(&["credits", "ledger", "acme", "--json"]);
    let kinds: Vec<(&str, &str, &str)> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["amount"].as_str().unwrap(),
                e["remaining"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("grant", "10", "10"),
            ("grant", "50", "50"),
            ("void", "-10", "0")
        ]
    );
    let since = s.json(&[
        "credits",
        "ledger",
        "acme",
        "--since",
        "2026-11-28T00:00:00Z",
        "--json",
    ]);
    assert_eq!(since.as_array().unwrap().len(), 2);
    let (_, text, _) = run(&s, &["credits", "ledger", "acme"]);
    assert!(text.contains("void     -$10.00"), "{text}");

    let csv = s.stdout_comparable(&["export", "credits"]);
    assert_eq!(
        csv,
        "id,customer_id,grant_id,kind,amount,remaining,at,meter_id,priority,effective_at,\
         expires_at,promotional,note,idempotency_key,event_id\n\
         1,acme,1,grant,10,10,2026-11-27T18:00:00Z,,100,2026-11-27T18:00:00Z,,0,,k-1,\n\
         2,acme,2,grant,50,50,2026-11-28T00:00:00Z,usage,100,2026-11-28T00:00:00Z,,0,,,\n\
         3,acme,1,void,-10,0,2026-11-29T00:00:00Z,,100,2026-11-27T18:00:00Z,,0,,k-1,\n"
    );
    let lines = s.stdout_comparable(&[
        "export",
        "credits",
        "--format",
        "json",
        "--since",
        "2026-11-29T00:00:00Z",
    ]);
    let last: Value = serde_json::from_str(lines.trim()).unwrap();
    assert_eq!(
        (&last["kind"], &last["amount"]),
        (&json!("void"), &json!("-10"))
    );
}

fn doctor_finds_a_ledger_that_does_not_add_up(engine: Engine) {
    let s = acme(engine);
    grant(&s, &["acme", "10"]);
    grant(&s, &["acme", "7", "--meter", "usage"]);
    let (code, _, _) = run(&s, &["doctor"]);
    assert_eq!(code, 0);
    // A remainder changed behind meterline's back.
    s.inspect()
        .exec("UPDATE credit_ledger SET remaining = '11' WHERE grant_id = 1");
    let (code, text, _) = run(&s, &["doctor"]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(
            "credit grant 1 of \"acme\": ledger entry 1 leaves 11, but its entries add up to 10"
        ),
        "{text}"
    );
    assert!(
        text.contains("customer \"acme\": a money balance of 11, but its ledger adds up to 10"),
        "{text}"
    );
}

/// With `[[meters]]` (the shape `meterline init` writes) a unit grant names one of them; the
/// implicit `usage` meter is not one.
fn unit_grants_name_the_meters_of_a_meters_file(engine: Engine) {
    let s = Scratch::on(engine);
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/plans/ai.toml"),
        &s.plans,
    )
    .unwrap();
    s.add_customer("acme", "pro", "2026-11-01");
    grant(&s, &["acme", "1000000", "--meter", "tokens"]);
    grant(
        &s,
        &["acme", "50", "--meter", "requests", "--priority", "0"],
    );
    grant(&s, &["acme", "7.5"]);
    let (code, _, stderr) = run(&s, &["credits", "grant", "acme", "5", "--meter", "usage"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("meter \"usage\" is not in plans.toml"),
        "{stderr}"
    );
    let balance = s.json(&["credits", "acme", "--json"]);
    assert_eq!(
        order(&balance),
        vec![(2, "50".into()), (1, "1000000".into()), (3, "7.5".into())]
    );
    assert_eq!(
        (&balance["balance"], &balance["units"]),
        (
            &json!("7.5"),
            &json!({
                "requests": {"balance": "50", "held": "0", "available": "50"},
                "tokens": {"balance": "1000000", "held": "0", "available": "1000000"}
            })
        )
    );
}

fn credits_over_http(engine: Engine) {
    let s = acme(engine);
    let token = create_token(&s, "t");
    let server = Server::start(&s, &[]);
    let api = server.client(&token);
    let path = "/v1/customers/acme/credits";

    let made = api.post(
        path,
        r#"{"amount": 20.10, "priority": 5, "expires_at": "2027-01-01T00:00:00Z", "promotional": true, "note": "launch", "key": "pay_9"}"#,
    );
    assert_eq!(made.status, 201, "{}", made.body);
    let grant = made.json();
    assert_eq!(
        (
            &grant["amount"],
            &grant["priority"],
            &grant["promotional"],
            &grant["duplicate"]
        ),
        (&json!("20.1"), &json!(5), &json!(true), &json!(false))
    );
    let again = api.post(
        path,
        r#"{"amount": "20.1", "priority": 5, "expires_at": "2027-01-01T00:00:00Z", "promotional": true, "note": "launch", "key": "pay_9"}"#,
    );
    assert_eq!((again.status, &again.json()["id"]), (200, &grant["id"]));
    let conflict = api.post(path, r#"{"amount": "21", "key": "pay_9"}"#);
    assert_eq!(
        (conflict.status, conflict.code()),
        (409, "idempotency_conflict".into())
    );
    let units = api.post(path, r#"{"amount": "300", "meter": "usage"}"#);
    assert_eq!(units.status, 201, "{}", units.body);

    for (body, status) in [
        (r#"{"amount": "0"}"#, 400),
        (r#"{"amount": "1", "priority": 256}"#, 400),
        (r#"{"amount": "1", "expires_at": "soon"}"#, 400),
        (r#"{"amount": "1", "colour": "red"}"#, 400),
        (r#"{"amount": "1", "meter": "nope"}"#, 400),
    ] {
        let reply = api.post(path, body);
        assert_eq!(reply.status, status, "{body}: {}", reply.body);
    }
    let unknown = api.post("/v1/customers/nobody/credits", r#"{"amount": "1"}"#);
    assert_eq!(
        (unknown.status, unknown.code()),
        (404, "unknown_customer".into())
    );
    let anyone = server.client("mlt_wrong");
    assert_eq!(anyone.post(path, r#"{"amount": "1"}"#).status, 401);
    assert_eq!(anyone.get(path).status, 401);

    let balance = api.get(path);
    assert_eq!(balance.status, 200);
    let balance = balance.json();
    assert_eq!(
        (
            &balance["balance"],
            &balance["available"],
            &balance["units"]["usage"]["balance"]
        ),
        (&json!("20.1"), &json!("20.1"), &json!("300"))
    );
    assert_eq!(balance["grants"].as_array().unwrap().len(), 2);
    // What serve wrote is what the command line reads.
    assert_eq!(s.json(&["credits", "acme", "--json"]), balance);
    assert_eq!(api.get("/v1/customers/nobody/credits").status, 404);
}

/// A backup checks that every balance is the sum of its ledger before it is kept (SQLite:
/// PostgreSQL backs up with pg_dump).
#[test]
fn a_backup_of_a_ledger_that_does_not_add_up_is_refused() {
    let s = acme(Engine::Sqlite);
    grant(&s, &["acme", "10"]);
    let good = s.dir.path().join("good.db");
    let (code, _, stderr) = run(&s, &["backup", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    s.inspect()
        .exec("INSERT INTO credit_ledger (customer_id, grant_id, kind, amount, remaining, written_at) VALUES ('acme', 1, 'void', '-4', '0', '2026-11-27T18:00:00Z')");
    let bad = s.dir.path().join("bad.db");
    let (code, _, stderr) = run(&s, &["backup", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("credit ledger does not add up"), "{stderr}");
    assert!(!bad.exists());
}

/// copy-to moves the ledger into PostgreSQL as it is: the same balance and ledger, and the
/// next grant takes a fresh id.
#[test]
fn copy_to_moves_the_ledger() {
    let s = acme(Engine::Sqlite);
    grant(&s, &["acme", "10", "--key", "a"]);
    grant(&s, &["acme", "70", "--meter", "usage", "--promotional"]);
    s.cmd().args(["credits", "void", "1"]).assert().success();
    let url = crate::support::postgres::server().fresh_database();
    s.cmd().args(["copy-to", &url]).assert().success();
    let on_pg = |args: &[&str]| -> Value {
        let out = s
            .cmd()
            .env("METERLINE_DB", &url)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    for args in [
        &["credits", "acme", "--json"][..],
        &["credits", "ledger", "acme", "--json"],
    ] {
        assert_eq!(on_pg(args), s.json(args), "{args:?}");
    }
    assert_eq!(
        on_pg(&["credits", "grant", "acme", "1", "--json"])["id"],
        json!(3)
    );
    let doctor = s
        .cmd()
        .env("METERLINE_DB", &url)
        .arg("doctor")
        .output()
        .unwrap();
    let text = String::from_utf8(doctor.stdout).unwrap();
    assert!(
        text.contains("credits   3 grants and 4 ledger entries"),
        "{text}"
    );
}

/// copy-to checks the copied ledger as doctor and backup do: a ledger that does not add up is
/// not copied, and the target stays empty.
#[test]
fn copy_to_refuses_a_ledger_that_does_not_add_up() {
    let s = acme(Engine::Sqlite);
    grant(&s, &["acme", "10"]);
    s.inspect()
        .exec("INSERT INTO credit_ledger (customer_id, grant_id, kind, amount, remaining, written_at) VALUES ('acme', 1, 'void', '-4', '0', '2026-11-27T18:00:00Z')");
    let url = crate::support::postgres::server().fresh_database();
    let (code, stdout, stderr) = run(&s, &["copy-to", &url]);
    assert_ne!(code, 0, "{stdout}");
    assert!(
        format!("{stdout}{stderr}").contains("the copy's ledger"),
        "{stdout}{stderr}"
    );
    let target = crate::support::engine::Inspect::of(std::path::Path::new(&url));
    assert_eq!(target.number("SELECT COUNT(*) FROM customers"), 0);
    assert_eq!(target.number("SELECT COUNT(*) FROM credit_ledger"), 0);
}
