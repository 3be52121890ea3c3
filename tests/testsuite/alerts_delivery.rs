//! `meterline alerts` and `serve` delivering to a real loopback webhook receiver: signatures
//! checked by Python's hmac, retries with the same id through failures and dropped
//! connections, a kill -9 mid-delivery, the secret (and the database password) never shown.
//! Both engines.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;

use crate::support::alerts::{Mode, Receiver, SECRET, plans_with, verify_with_python};
use crate::support::cli::Scratch;
use crate::support::engine::{Engine, engine_tests};
use crate::support::postgres::PASSWORD;

engine_tests!(
    webhooks_are_signed_and_delivered_once_each,
    a_flaky_receiver_gets_every_alert_with_the_same_id_on_each_retry,
    kill_9_during_delivery_loses_no_alert,
    a_run_killed_on_another_host_is_taken_over,
    without_the_secret_webhooks_are_refused_and_nothing_is_sent,
    the_secret_never_appears_in_any_output_or_file,
    a_command_gets_the_alert_without_the_secret_in_its_environment,
    a_failing_or_hanging_command_is_retried_then_failed,
    serve_delivers_alerts_in_the_background,
    deliveries_to_a_removed_destination_stay_pending_and_make_no_run,
    a_receiver_that_never_answers_times_out_and_is_retried_later,
    serve_waits_the_backoff_set_in_the_environment_before_a_retry,
    a_hanging_webhook_does_not_hold_up_deliveries_to_other_destinations,
    each_destination_gets_its_alerts_one_at_a_time_oldest_first,
);

const CUSTOMERS: [&str; 3] = ["acme", "globex", "initech"];

/// A database whose customers have each crossed all three levels (free plan, 1,000 units),
/// with plans.toml delivering to `receiver`.
fn crossed(engine: Engine, receiver: &Receiver, extra: &str) -> Scratch {
    let s = Scratch::on(engine);
    std::fs::write(
        &s.plans,
        plans_with(&format!(
            "[[alerts]]\nwebhook = \"{}\"\n{extra}",
            receiver.url
        )),
    )
    .unwrap();
    for c in CUSTOMERS {
        s.add_customer(c, "free", "2026-11-01");
        s.record(c, 1000);
    }
    s
}

fn alerts_cmd(s: &Scratch) -> assert_cmd::Command {
    let mut cmd = s.cmd();
    cmd.env("METERLINE_WEBHOOK_SECRET", SECRET)
        .env("METERLINE_ALERT_BACKOFF_MS", "0")
        .arg("alerts");
    cmd
}

fn alert_ids(s: &Scratch) -> BTreeSet<String> {
    column(s, "SELECT id FROM alerts").into_iter().collect()
}

/// The first column of every row of `sql`.
fn column(s: &Scratch, sql: &str) -> Vec<String> {
    s.inspect()
        .rows(sql)
        .into_iter()
        .map(|r| r[0].clone())
        .collect()
}

/// (text, count) rows of `sql` as a map.
fn counted(s: &Scratch, sql: &str) -> BTreeMap<String, i64> {
    s.inspect()
        .rows(sql)
        .into_iter()
        .map(|r| (r[0].clone(), r[1].parse().unwrap()))
        .collect()
}

fn delivery_states(s: &Scratch) -> BTreeMap<String, i64> {
    counted(
        s,
        "SELECT state, COUNT(*) FROM alert_deliveries GROUP BY state",
    )
}

fn webhooks_are_signed_and_delivered_once_each(engine: Engine) {
    let receiver = Receiver::start(Mode::Ok);
    let s = crossed(engine, &receiver, "");
    let out = alerts_cmd(&s).arg("--json").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["delivered"], 9);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 9);
    assert_eq!(verify_with_python(&requests, SECRET), "verified 9");
    assert!(
        requests
            .iter()
            .all(|r| r.content_type == "application/json")
    );
    let ids: BTreeSet<_> = requests.iter().map(|r| r.alert_id.clone()).collect();
    assert_eq!(ids, alert_ids(&s));
    // The payload has the documented fields.
    let body: serde_json::Value = serde_json::from_str(&requests[0].body).unwrap();
    let keys: BTreeSet<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert!(
        requests[0].body.starts_with("{\"id\":\"alrt_"),
        "{}",
        requests[0].body
    );
    assert_eq!(
        keys,
        BTreeSet::from([
            "id",
            "type",
            "customer",
            "plan",
            "meter",
            "level",
            "previous_level",
            "used",
            "limit",
            "ratio",
            "period_start",
            "period_end",
            "occurred_at"
        ])
    );
    assert_eq!(body["type"], "usage.level_crossed");
    assert_eq!(body["limit"], 1000);
    // A wrong secret does not verify: the check can fail.
    let forged = std::panic::catch_unwind(|| verify_with_python(&requests, "another-secret"));
    assert!(forged.is_err());
    // Nothing is sent twice.
    alerts_cmd(&s).assert().success();
    assert_eq!(receiver.requests().len(), 9);
    assert_eq!(
        delivery_states(&s),
        BTreeMap::from([("delivered".into(), 9)])
    );
}

fn a_flaky_receiver_gets_every_alert_with_the_same_id_on_each_retry(engine: Engine) {
    let receiver = Receiver::start(Mode::Flaky);
    let s = crossed(engine, &receiver, "max_attempts = 50\ntimeout_secs = 5");
    let mut runs = 0;
    loop {
        runs += 1;
        assert!(runs <= 40, "not delivered after 40 runs");
        let out = alerts_cmd(&s).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() == Some(0) && delivery_states(&s).len() == 1 {
            break;
        }
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("alert not delivered"), "{stderr}");
    }
    assert!(
        runs > 1,
        "the receiver failed nothing: the test proves nothing"
    );
    assert_eq!(
        delivery_states(&s),
        BTreeMap::from([("delivered".into(), 9)])
    );
    let requests = receiver.requests();
    assert!(requests.len() > 9, "no retries happened");
    assert_eq!(
        verify_with_python(&requests, SECRET),
        format!("verified {}", requests.len())
    );
    // Every retry carried the same id and the same body.
    let mut bodies: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in &requests {
        bodies
            .entry(r.alert_id.clone())
            .or_default()
            .insert(r.body.clone());
    }
    assert_eq!(
        bodies.keys().cloned().collect::<BTreeSet<_>>(),
        alert_ids(&s)
    );
    assert!(bodies.values().all(|b| b.len() == 1));
}

fn kill_9_during_delivery_loses_no_alert(engine: Engine) {
    let receiver = Receiver::start(Mode::Hang);
    let s = crossed(engine, &receiver, "timeout_secs = 120");
    let mut child = std::process::Command::new(crate::support::cli::BIN)
        .arg("alerts")
        .env("METERLINE_DB", &s.db)
        .env("METERLINE_PLANS", &s.plans)
        .env("METERLINE_WEBHOOK_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(receiver.wait_for(1), "the first delivery never arrived");
    let in_flight = receiver.requests()[0].alert_id.clone();
    // One delivery run at a time: a second one sends nothing.
    let second = alerts_cmd(&s).output().unwrap();
    assert_eq!(second.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&second.stderr)
            .contains("another alert delivery is already running"),
        "{second:?}"
    );
    assert_eq!(receiver.requests().len(), 1);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(delivery_states(&s), BTreeMap::from([("pending".into(), 9)]));

    receiver.set_mode(Mode::Ok);
    alerts_cmd(&s).assert().success();
    assert_eq!(
        delivery_states(&s),
        BTreeMap::from([("delivered".into(), 9)])
    );
    let requests = receiver.requests();
    let ids: BTreeSet<_> = requests.iter().map(|r| r.alert_id.clone()).collect();
    assert_eq!(ids, alert_ids(&s));
    // The one in flight was sent again under its id.
    assert_eq!(
        requests.iter().filter(|r| r.alert_id == in_flight).count(),
        2
    );
    let outcomes = column(&s, "SELECT outcome FROM alert_runs ORDER BY id");
    assert_eq!(outcomes, ["interrupted", "completed"]);
}

/// `meterline alerts` on a host of its own name (a private UTS namespace), with `extra`
/// arguments.
fn alerts_on_host(s: &Scratch, host: &str) -> std::process::Command {
    let mut command = std::process::Command::new("unshare");
    command
        .args(["--user", "--map-root-user", "--uts", "sh", "-c"])
        .arg(format!("hostname {host} && exec \"$0\" alerts",))
        .arg(crate::support::cli::BIN)
        .env("METERLINE_DB", &s.db)
        .env("METERLINE_PLANS", &s.plans)
        .env("METERLINE_WEBHOOK_SECRET", SECRET)
        .env("METERLINE_ALERT_BACKOFF_MS", "0");
    command
}

/// Two hosts share the database. A run on host-a holds the alerts lock mid-delivery: host-b's
/// run is refused, naming host-a. host-a dies (kill -9): on PostgreSQL its session's advisory
/// lock goes with it, so host-b takes over at once, marks the dead run interrupted and
/// delivers everything once more under the same ids. A SQLite file has no such signal from
/// another host: its lock stays host-a's until the heartbeat is stale.
fn a_run_killed_on_another_host_is_taken_over(engine: Engine) {
    let receiver = Receiver::start(Mode::Hang);
    let s = crossed(engine, &receiver, "timeout_secs = 120");
    let mut first = alerts_on_host(&s, "host-a")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(receiver.wait_for(1), "the first delivery never arrived");
    let refused = alerts_on_host(&s, "host-b").output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("another alert delivery is already running")
            && stderr.contains("on host-a"),
        "{stderr}"
    );
    assert_eq!(receiver.requests().len(), 1);
    first.kill().unwrap();
    first.wait().unwrap();

    receiver.set_mode(Mode::Ok);
    let out = alerts_on_host(&s, "host-b").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if engine == Engine::Sqlite {
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("on host-a"), "{stderr}");
        assert_eq!(delivery_states(&s), BTreeMap::from([("pending".into(), 9)]));
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");
    assert_eq!(
        delivery_states(&s),
        BTreeMap::from([("delivered".into(), 9)])
    );
    let ids: BTreeSet<_> = receiver
        .requests()
        .iter()
        .map(|r| r.alert_id.clone())
        .collect();
    assert_eq!(ids, alert_ids(&s));
    assert_eq!(receiver.requests().len(), 10);
    assert_eq!(
        column(&s, "SELECT outcome FROM alert_runs ORDER BY id"),
        ["interrupted", "completed"]
    );
}

fn without_the_secret_webhooks_are_refused_and_nothing_is_sent(engine: Engine) {
    let receiver = Receiver::start(Mode::Ok);
    let s = crossed(engine, &receiver, "");
    let out = s
        .cmd()
        .arg("alerts")
        .env_remove("METERLINE_WEBHOOK_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("METERLINE_WEBHOOK_SECRET is not set, so webhook alerts are refused"),
        "{stderr}"
    );
    assert!(receiver.requests().is_empty());
    assert_eq!(delivery_states(&s), BTreeMap::from([("pending".into(), 9)]));
}

fn the_secret_never_appears_in_any_output_or_file(engine: Engine) {
    let receiver = Receiver::start(Mode::Flaky);
    let s = crossed(engine, &receiver, "max_attempts = 2");
    let mut outputs = Vec::new();
    for args in [
        vec!["--dry-run"],
        vec!["--dry-run", "--json"],
        vec![],
        vec!["--json"],
        vec![],
    ] {
        let out = alerts_cmd(&s).args(&args).output().unwrap();
        outputs.push(out.stdout);
        outputs.push(out.stderr);
    }
    for args in [["status", "--json"], ["plans", "--json"]] {
        let out = s
            .cmd()
            .env("METERLINE_WEBHOOK_SECRET", SECRET)
            .args(args)
            .output()
            .unwrap();
        outputs.push(out.stdout);
        outputs.push(out.stderr);
    }
    // Some attempts failed for good, so errors were printed and stored.
    assert!(delivery_states(&s).contains_key("failed"));
    for entry in std::fs::read_dir(s.dir.path()).unwrap() {
        outputs.push(std::fs::read(entry.unwrap().path()).unwrap());
    }
    for bytes in &outputs {
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains(SECRET), "the secret leaked: {text}");
        assert!(
            !text.contains(PASSWORD),
            "the database password leaked: {text}"
        );
    }
}

fn a_command_gets_the_alert_without_the_secret_in_its_environment(engine: Engine) {
    let s = Scratch::on(engine);
    let log = s.dir.path().join("alerts.log");
    let script = format!(
        "cat >> '{log}'; echo \" secret=${{METERLINE_WEBHOOK_SECRET:-none}}\" >> '{log}'",
        log = log.display()
    );
    std::fs::write(
        &s.plans,
        plans_with(&format!(
            "[[alerts]]\ncommand = [\"/bin/sh\", \"-c\", {}]\nlevels = [\"hard_cap\"]",
            serde_json::to_string(&script).unwrap()
        )),
    )
    .unwrap();
    s.add_customer("acme", "free", "2026-11-01");
    s.record("acme", 1000);
    alerts_cmd(&s).assert().success();
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].contains("\"level\":\"hard_cap\""), "{text}");
    assert!(lines[0].ends_with("secret=none"), "{text}");
}

fn a_failing_or_hanging_command_is_retried_then_failed(engine: Engine) {
    let s = Scratch::on(engine);
    std::fs::write(
        &s.plans,
        plans_with(
            "[[alerts]]\ncommand = [\"/bin/sh\", \"-c\", \"echo nope >&2; exit 4\"]\nmax_attempts = 2\n\n\
             [[alerts]]\ncommand = [\"/bin/sleep\", \"30\"]\ntimeout_secs = 0.5\nmax_attempts = 1\nlevels = [\"warning\"]",
        ),
    )
    .unwrap();
    s.add_customer("acme", "free", "2026-11-01");
    s.record("acme", 850);
    let out = alerts_cmd(&s).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/bin/sh exited with 4: nope"), "{stderr}");
    assert!(
        stderr.contains("/bin/sleep did not finish within"),
        "{stderr}"
    );
    assert_eq!(
        delivery_states(&s),
        BTreeMap::from([("failed".into(), 1), ("pending".into(), 1)])
    );
    alerts_cmd(&s).assert().code(1);
    assert_eq!(delivery_states(&s), BTreeMap::from([("failed".into(), 2)]));
    // Failed for good: later runs leave them alone and succeed.
    alerts_cmd(&s).assert().success();
}

fn serve_delivers_alerts_in_the_background(engine: Engine) {
    let receiver = Receiver::start(Mode::Ok);
    let s = Scratch::on(engine);
    std::fs::write(
        &s.plans,
        plans_with(&format!("[[alerts]]\nwebhook = \"{}\"", receiver.url)),
    )
    .unwrap();
    s.add_customer("acme", "free", "2026-11-01");
    // Serve refuses to start with webhooks it could not sign.
    let out = std::process::Command::new(crate::support::cli::BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("METERLINE_DB", &s.db)
        .env("METERLINE_PLANS", &s.plans)
        .env_remove("METERLINE_WEBHOOK_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("METERLINE_WEBHOOK_SECRET is not set"));

    let token = s
        .cmd()
        .args(["token", "create", "test"])
        .output()
        .unwrap()
        .stdout;
    let token = String::from_utf8(token).unwrap().trim().to_string();
    let mut server = std::process::Command::new(crate::support::cli::BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("METERLINE_DB", &s.db)
        .env("METERLINE_PLANS", &s.plans)
        .env("METERLINE_WEBHOOK_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(server.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
    assert!(line.contains("listening on"), "{line}");
    let base = line.trim().rsplit(' ').next().unwrap().to_string();
    // Through the HTTP API's batch endpoint: the server's record path alerts too.
    let answer = ureq::post(format!("{base}/v1/events/batch"))
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(
            serde_json::json!({"events": [
                {"customer": "acme", "quantity": 500},
                {"customer": "acme", "quantity": 460},
            ]})
            .to_string(),
        )
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(receiver.wait_for(2), "serve did not deliver");
    // Another process's record, on the real clock like the server's (the pinned clock would put
    // it in a closed period, which alerts nothing).
    s.cmd()
        .env_remove("METERLINE_NOW")
        .args(["record", "acme", "-n", "40"])
        .assert()
        .success();
    assert!(receiver.wait_for(3), "serve did not deliver the hard cap");
    let levels: Vec<String> = receiver
        .requests()
        .iter()
        .map(|r| serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["level"].to_string())
        .collect();
    assert_eq!(levels, ["\"warning\"", "\"critical\"", "\"hard_cap\""]);
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(server.wait().unwrap().success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(!rest.contains(SECRET) && !line.contains(SECRET));
    assert!(!rest.contains(PASSWORD) && !line.contains(PASSWORD));
    assert_eq!(receiver.requests().len(), 3);
}

fn deliveries_to_a_removed_destination_stay_pending_and_make_no_run(engine: Engine) {
    let s = Scratch::on(engine);
    std::fs::write(
        &s.plans,
        plans_with("[[alerts]]\ncommand = [\"/bin/true\"]\nlevels = [\"warning\"]"),
    )
    .unwrap();
    s.add_customer("acme", "free", "2026-11-01");
    s.record("acme", 850);
    std::fs::write(&s.plans, plans_with("")).unwrap();
    let out = alerts_cmd(&s).arg("--json").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            report["attempted"].as_u64(),
            report["unconfigured"].as_u64()
        ),
        (Some(0), Some(1))
    );
    let runs = s.inspect().number("SELECT COUNT(*) FROM alert_runs");
    assert_eq!(runs, 0);
    let preview = alerts_cmd(&s).arg("--dry-run").output().unwrap();
    assert!(String::from_utf8_lossy(&preview.stdout).contains("no longer in plans.toml: not sent"));
    assert_eq!(delivery_states(&s), BTreeMap::from([("pending".into(), 1)]));
}

fn a_receiver_that_never_answers_times_out_and_is_retried_later(engine: Engine) {
    let receiver = Receiver::start(Mode::Hang);
    let s = crossed(
        engine,
        &receiver,
        "timeout_secs = 0.5\nlevels = [\"hard_cap\"]",
    );
    let out = s
        .cmd()
        .env("METERLINE_WEBHOOK_SECRET", SECRET)
        .arg("alerts")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("(attempt 1 of 12)"), "{stderr}");
    // Shown by host only: the URL's path is not printed.
    assert!(!stderr.contains("/hooks/meterline"), "{stderr}");
    let row = &s.inspect().rows(
        "SELECT MIN(attempts), MIN(next_attempt), MIN(last_error) FROM alert_deliveries
         WHERE state = 'pending'",
    )[0];
    let (attempts, next, error): (i64, i64, &String) =
        (row[0].parse().unwrap(), row[1].parse().unwrap(), &row[2]);
    assert_eq!(attempts, 1);
    assert!(
        error.to_lowercase().contains("timeout") || error.to_lowercase().contains("timed out"),
        "{error}"
    );
    // Backed off (30 s by default): the next run sends nothing yet.
    assert!(next > chrono::Utc::now().timestamp());
    let again = s
        .cmd()
        .env("METERLINE_WEBHOOK_SECRET", SECRET)
        .args(["alerts", "--json"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(receiver.requests().len(), 3);
    assert_eq!(delivery_states(&s), BTreeMap::from([("pending".into(), 3)]));
}

/// `serve` reads METERLINE_ALERT_BACKOFF_MS as `meterline alerts` does: after a failed first
/// attempt the next one is stored for the configured pause later (not the 30 s default), and
/// the retry is delivered then.
fn serve_waits_the_backoff_set_in_the_environment_before_a_retry(engine: Engine) {
    let receiver = Receiver::start(Mode::FailFirst);
    let s = Scratch::on(engine);
    std::fs::write(
        &s.plans,
        plans_with(&format!(
            "[[alerts]]\nwebhook = \"{}\"\nlevels = [\"hard_cap\"]",
            receiver.url
        )),
    )
    .unwrap();
    s.add_customer("acme", "free", "2026-11-01");
    s.record("acme", 1000);
    let mut command = std::process::Command::new(crate::support::cli::BIN);
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("METERLINE_DB", &s.db)
        .env("METERLINE_PLANS", &s.plans)
        .env("METERLINE_WEBHOOK_SECRET", SECRET)
        .env("METERLINE_ALERT_BACKOFF_MS", "3000");
    let server = crate::support::serve::Server::spawn(command);

    let attempts = || -> (i64, i64) {
        let row = &s
            .inspect()
            .rows("SELECT attempts, next_attempt FROM alert_deliveries")[0];
        (row[0].parse().unwrap(), row[1].parse().unwrap())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while attempts().0 == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "serve never attempted the delivery"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Kept by the failed attempt (a delivery does not change it): the pause it scheduled.
    let (_, next_attempt) = attempts();
    let failed_at = receiver.requests()[0].received_unix;
    let pause = next_attempt - failed_at;
    assert!(
        (3..=8).contains(&pause),
        "the retry was scheduled {pause} s after the failed attempt, not the configured 3 s"
    );
    assert!(receiver.wait_for(2), "serve never retried");
    let requests = receiver.requests();
    assert!(requests[1].received_unix >= next_attempt, "retried early");
    assert_eq!(requests[1].alert_id, requests[0].alert_id);
    assert!(server.terminate().success());
    assert_eq!(
        delivery_states(&s),
        BTreeMap::from([("delivered".into(), 1)])
    );
}

/// The alert ids in delivery order (oldest first), as the outbox orders them.
fn alerts_oldest_first(s: &Scratch) -> Vec<String> {
    column(s, "SELECT id FROM alerts ORDER BY occurred_at, id")
}

/// Two destinations: a webhook that never answers (the 3 warnings, which time out one after
/// the other, 4 s each) and a healthy one (the 3 criticals and 3 hard caps). The hanging one
/// has the oldest alert, so it is served first. The healthy one gets everything before the
/// hanging one's first attempt has timed out, i.e. before its second request: sent one at a
/// time, or one destination after the other, the healthy deliveries would all come after it.
fn a_hanging_webhook_does_not_hold_up_deliveries_to_other_destinations(engine: Engine) {
    let hanging = Receiver::start(Mode::Hang);
    let healthy = Receiver::start(Mode::Ok);
    let s = Scratch::on(engine);
    std::fs::write(
        &s.plans,
        plans_with(&format!(
            "[[alerts]]\nwebhook = \"{}\"\ntimeout_secs = 4\nlevels = [\"warning\"]\n\n\
             [[alerts]]\nwebhook = \"{}\"\nlevels = [\"critical\", \"hard_cap\"]",
            hanging.url, healthy.url
        )),
    )
    .unwrap();
    for c in CUSTOMERS {
        s.add_customer(c, "free", "2026-11-01");
        s.record(c, 1000);
    }
    let out = alerts_cmd(&s).arg("--json").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (report["delivered"].as_u64(), report["retrying"].as_u64()),
        (Some(6), Some(3))
    );

    let stuck = hanging.requests();
    assert_eq!(stuck.len(), 3, "each hanging delivery was attempted once");
    let delivered = healthy.requests();
    assert_eq!(delivered.len(), 6);
    let late = delivered
        .iter()
        .filter(|r| r.received > stuck[1].received)
        .count();
    assert_eq!(
        late, 0,
        "{late} healthy deliveries waited for the hanging webhook's timeout"
    );
    let states = counted(
        &s,
        "SELECT target || ' ' || state, COUNT(*) FROM alert_deliveries GROUP BY 1",
    );
    assert_eq!(
        states,
        BTreeMap::from([
            (format!("webhook {} pending", hanging.url), 3),
            (format!("webhook {} delivered", healthy.url), 6),
        ])
    );
}

/// Deliveries to one destination stay one at a time and oldest first while other
/// destinations are served at once: a slow receiver never has two requests open, and gets the
/// alerts in the outbox's order.
fn each_destination_gets_its_alerts_one_at_a_time_oldest_first(engine: Engine) {
    let slow = Receiver::start(Mode::Slow);
    let other = Receiver::start(Mode::Slow);
    let s = Scratch::on(engine);
    std::fs::write(
        &s.plans,
        plans_with(&format!(
            "[[alerts]]\nwebhook = \"{}\"\n\n[[alerts]]\nwebhook = \"{}\"",
            slow.url, other.url
        )),
    )
    .unwrap();
    for c in CUSTOMERS {
        s.add_customer(c, "free", "2026-11-01");
        s.record(c, 1000);
    }
    alerts_cmd(&s).assert().success();
    let expected = alerts_oldest_first(&s);
    assert_eq!(expected.len(), 9);
    for receiver in [&slow, &other] {
        let order: Vec<String> = receiver
            .requests()
            .iter()
            .map(|r| r.alert_id.clone())
            .collect();
        assert_eq!(order, expected);
        assert_eq!(receiver.most_in_flight(), 1);
    }
    assert_eq!(
        delivery_states(&s),
        BTreeMap::from([("delivered".into(), 18)])
    );
}
