//! The official Stripe, OpenMeter and Lago Python SDKs against a real `meterline serve`
//! (tests/compat_sdk/run.py), then `meterline sync` forwards what they recorded to the fake
//! Stripe server exactly once; and the same SDKs recording to two meters of a plans.toml with
//! `[[meters]]` (`run.py meters`). On both engines.
//!
//! This test FAILS when python3 or the SDKs are missing: .ci/run installs them
//! (`pip install stripe==16.1.0 openmeter==1.0.0b236 lago-python-client==1.55.0`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::support::engine::{Engine, engine_tests};
use crate::support::stripe::{Env, json, now, stderr};

engine_tests!(
    official_sdks_record_exactly_and_sync_forwards_once,
    official_sdks_record_to_two_meters,
    the_openmeter_sdk_feeds_every_meter_of_an_event_type,
);

const PLANS: &str = r#"
[stripe]
meter_event = "meterline_usage"
api_base = "https://api.stripe.com"
rate_limit = 0
workers = 2
timeout_secs = 2
max_attempts = 4

[[plans]]
id = "free"
included = 1000
at_limit = "block"

[[plans]]
id = "pro"
included = 100000
at_limit = "overage"
overage_rate = "0.001"

[ingest.value_property]
meterline_usage = "tokens"
"#;

/// Requests (a count, Stripe event api_requests; free includes 3, hard cap) and tokens (the sum
/// of the property "tokens" by "model", Stripe event ai_tokens), among the meters of
/// tests/fixtures/plans/ai_capped.toml.
const METER_PLANS: &str = crate::support::meters::PLANS;

/// One `completion` event type feeding three meters, tokens priced per model.
const TYPE_PLANS: &str = include_str!("../fixtures/plans/ai_types.toml");

const SDKS: &str = "stripe==16.1.0 openmeter==1.0.0b236 lago-python-client==1.55.0";

/// `meterline serve` on an ephemeral port; killed when dropped.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(env: &Env) -> (Serve, String) {
    let mut child = env
        .std_command(&["serve", "--listen", "127.0.0.1:0"], &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn meterline serve");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("meterline serve: listening on ") {
                let _ = tx.send(addr.to_string());
            }
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the server did not start");
    (Serve(child), base)
}

fn ok(env: &Env, args: &[&str]) -> String {
    let out = env.run(args, &[]);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// python3 with the three SDKs, or a failure that says how to install them.
fn python() -> Command {
    let probe = Command::new("python3")
        .args(["-c", "import stripe, openmeter, lago_python_client"])
        .output();
    match probe {
        Err(e) => panic!("python3 is required for this test ({e}); .ci/run installs it"),
        Ok(out) if !out.status.success() => panic!(
            "the SDKs are missing; install them with `python3 -m pip install --pre {SDKS}` \
             (.ci/run does): {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Ok(_) => Command::new("python3"),
    }
}

/// acme (pro, cus_AcmeSdk1) and capped (free, cus_CappedSdk1) anchored 10 days ago, a token,
/// a server; then `run.py ARGS` against it, which must print "compat_sdk: ok".
fn run_sdks(env: &Env, args: &[&str]) {
    let mut python = python();
    let anchor = (now() - chrono::Duration::days(10))
        .date_naive()
        .to_string();
    for (id, plan, stripe) in [
        ("acme", "pro", "cus_AcmeSdk1"),
        ("capped", "free", "cus_CappedSdk1"),
    ] {
        ok(
            env,
            &["customer", "add", id, "--plan", plan, "--anchor", &anchor],
        );
        ok(env, &["customer", "set-stripe", id, stripe]);
    }
    let token = ok(env, &["token", "create", "sdk"]).trim().to_string();
    let (server, base) = serve(env);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat_sdk/run.py");
    let out = python
        .arg(&script)
        .args(args)
        .env("METERLINE_BASE", &base)
        .env("METERLINE_TOKEN", &token)
        .env("METERLINE_NOW_UNIX", now().timestamp().to_string())
        .output()
        .expect("run the SDK script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("compat_sdk: ok"),
        "the SDK script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(server);
}

fn official_sdks_record_exactly_and_sync_forwards_once(engine: Engine) {
    let env = Env::on(engine, PLANS);
    run_sdks(&env, &[]);

    // Exactly what the script recorded: 2 Stripe, 5 + 1 CloudEvents, 3 Lago events.
    let db = env.inspect();
    assert_eq!(db.events_of("acme"), (10, 12 + 25 + 11));
    assert_eq!(db.events_of("capped"), (1, 1));
    let used =
        db.number("SELECT CAST(SUM(used) AS BIGINT) FROM usage_records WHERE customer_id = 'acme'");
    assert_eq!(used, 48);

    // Then `meterline sync` sends each of them to Stripe exactly once.
    // Aggregated (the default): one report per customer × meter × period carries them all.
    let report = json(&env.run(&["sync", "--json"], &[]));
    assert_eq!(report["events_reported"], 11, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    env.assert_sums_match();
    let sent = env.server.accepted_count();
    let again = json(&env.run(&["sync", "--json"], &[]));
    assert_eq!(again["attempted"], 0, "{again}");
    assert_eq!(env.server.accepted_count(), sent);
}

fn official_sdks_record_to_two_meters(engine: Engine) {
    let env = Env::on(engine, METER_PLANS);
    run_sdks(&env, &["meters"]);

    // What the script recorded, per customer and meter: (events, their amounts).
    let db = env.inspect();
    let per_meter = |customer: &str, meter: &str| -> (i64, i64) {
        let rows = db.rows(&format!(
            "SELECT COUNT(*), CAST(COALESCE(SUM(COALESCE(amount, quantity)), 0) AS BIGINT)
             FROM usage_events WHERE customer_id = '{customer}' AND meter_id = '{meter}'"
        ));
        (rows[0][0].parse().unwrap(), rows[0][1].parse().unwrap())
    };
    // acme: Stripe 1 request + 120 and 30 tokens; OpenMeter 2 requests + 400 and 6 tokens;
    // Lago 1 request + 25 and 5 tokens.
    assert_eq!(per_meter("acme", "requests"), (4, 4));
    assert_eq!(
        per_meter("acme", "tokens"),
        (6, 120 + 30 + 400 + 6 + 25 + 5)
    );
    // capped: 3 requests (the cap), the tokens of each SDK.
    assert_eq!(per_meter("capped", "requests"), (3, 3));
    assert_eq!(per_meter("capped", "tokens"), (3, 10 + 7 + 3));
    assert_eq!(per_meter("acme", "usage"), (0, 0));
    // The counters agree with the events, groups included.
    let tokens = env.run(&["check", "acme", "--meter", "tokens", "--json"], &[]);
    let tokens: serde_json::Value = serde_json::from_slice(&tokens.stdout).unwrap();
    assert_eq!(tokens["used"], 586, "{tokens}");
    assert_eq!(
        tokens["groups"],
        serde_json::json!([
            {"key": {"model": "small"}, "used": 525, "overage_units": 0, "overage_amount": "0"},
            {"key": {"model": "large"}, "used": 61, "overage_units": 0, "overage_amount": "0"}
        ])
    );
}

fn the_openmeter_sdk_feeds_every_meter_of_an_event_type(engine: Engine) {
    let env = Env::on(engine, TYPE_PLANS);
    run_sdks(&env, &["types"]);
    // Two events of acme, two of capped, each a row per meter fed; nothing else.
    let db = env.inspect();
    let rows = db.rows(
        "SELECT customer_id, COUNT(*), COUNT(DISTINCT COALESCE(event_of, id))
         FROM usage_events WHERE event_type = 'completion' GROUP BY customer_id
         ORDER BY customer_id",
    );
    assert_eq!(rows, [["acme", "6", "2"], ["capped", "6", "2"]]);
}
