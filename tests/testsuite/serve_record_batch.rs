//! `meterline record --batch FILE|-`: NDJSON through `record_batch`, one result a line.

use crate::support::cli::Scratch;
use crate::support::engine::{Engine, engine_tests};
use serde_json::Value;

engine_tests!(
    a_file_of_events_is_recorded_in_order_with_one_result_a_line,
    refused_and_invalid_lines_fail_only_themselves,
    batch_conflicts_with_single_event_arguments,
    a_cancelled_import_says_where_to_resume_and_the_resume_counts_each_event_once,
);

fn lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn a_file_of_events_is_recorded_in_order_with_one_result_a_line(engine: Engine) {
    let s = Scratch::on(engine);
    s.add_customer("acme", "pro", "2026-11-01");
    let file = s.dir.path().join("events.ndjson");
    let events: String = (0..2500)
        .map(|i| {
            format!(
                "{{\"customer\":\"acme\",\"quantity\":{},\"key\":\"b{i}\"}}\n",
                1 + i % 3
            )
        })
        .collect();
    std::fs::write(&file, &events).unwrap();
    let out = s
        .cmd()
        .args(["record", "--batch", file.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = lines(&out.stdout);
    assert_eq!(results.len(), 2500);
    assert!(
        results
            .iter()
            .all(|r| r["status"] == 200 && r["recorded"] == true)
    );
    let total: i64 = (0..2500).map(|i| 1 + i % 3).sum();
    assert_eq!(results.last().unwrap()["used"], total);
    assert_eq!(s.json(&["check", "acme", "--json"])["used"], total);

    // Again: every line is a duplicate, nothing counted.
    let out = s
        .cmd()
        .args(["record", "--batch", file.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(lines(&out.stdout).iter().all(|r| r["duplicate"] == true));
    assert_eq!(s.json(&["check", "acme", "--json"])["used"], total);
}

fn refused_and_invalid_lines_fail_only_themselves(engine: Engine) {
    let s = Scratch::on(engine);
    s.add_customer("capped", "free", "2026-11-01");
    let input = [
        r#"{"customer":"capped","quantity":600}"#,
        r#"{"customer":"capped","quantity":600}"#,
        r#"{"customer":"capped","quantity":400}"#,
    ]
    .join("\n");
    // From stdin; the middle event passes the cap: refused (exit 3), the others recorded.
    let out = s
        .cmd()
        .args(["record", "--batch", "-", "--json"])
        .write_stdin(input)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let statuses: Vec<Value> = lines(&out.stdout)
        .iter()
        .map(|r| r["status"].clone())
        .collect();
    assert_eq!(statuses, [200, 402, 200]);
    assert_eq!(s.json(&["check", "capped", "--json"])["used"], 1000);

    // Invalid lines (bad JSON, unknown field, negative quantity, unknown customer): exit 2,
    // each reported with its line number, the valid line still recorded.
    let before = s.json(&["check", "capped", "--json"])["used"]
        .as_i64()
        .unwrap();
    let input = "{oops\n{\"customer\":\"capped\",\"n\":1}\n\n{\"customer\":\"capped\",\"quantity\":-1}\n{\"customer\":\"ghost\"}\n";
    let out = s
        .cmd()
        .args(["record", "--batch", "-", "--json"])
        .write_stdin(input)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let results = lines(&out.stdout);
    let got: Vec<(i64, i64)> = results
        .iter()
        .map(|r| (r["line"].as_i64().unwrap(), r["status"].as_i64().unwrap()))
        .collect();
    assert_eq!(got, [(1, 400), (2, 400), (4, 400), (5, 404)]);
    assert_eq!(s.json(&["check", "capped", "--json"])["used"], before);
}

fn batch_conflicts_with_single_event_arguments(engine: Engine) {
    let s = Scratch::on(engine);
    s.cmd()
        .args(["record", "acme", "--batch", "-"])
        .assert()
        .code(2);
    s.cmd().args(["record"]).assert().code(2);
}

/// Run `record --batch FILE --json` and send it `signal` once 2,000 results are out. Returns
/// the exit code, the result lines and stderr.
fn record_until_signal(
    s: &Scratch,
    file: &std::path::Path,
    signal: &str,
) -> (Option<i32>, usize, String) {
    use std::io::BufRead;
    let mut child = s
        .std_cmd()
        .args(["record", "--batch", file.to_str().unwrap(), "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut results = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = 0;
    while printed < 2000 {
        results.next().expect("results before the signal").unwrap();
        printed += 1;
    }
    let killed = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    printed += results.count();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), printed, stderr)
}

/// Ctrl-C or SIGTERM in a long import: the transaction in progress commits, its results are
/// printed, and stderr says which line to resume from; resuming there counts every event
/// exactly once. (Before, the signal killed it: events committed without their results
/// printed, and nothing said where it stopped.)
fn a_cancelled_import_says_where_to_resume_and_the_resume_counts_each_event_once(engine: Engine) {
    let s = Scratch::on(engine);
    s.add_customer("big", "business", "2026-11-01");
    let total = 300_000;
    let file = s.dir.path().join("import.ndjson");
    let events: String = (0..total).map(|_| "{\"customer\":\"big\"}\n").collect();
    std::fs::write(&file, &events).unwrap();
    let used = || {
        s.json(&["check", "big", "--json"])["used"]
            .as_i64()
            .unwrap()
    };

    let mut done = 0;
    for signal in ["-TERM", "-INT"] {
        let rest = s.dir.path().join(format!("rest{signal}.ndjson"));
        let rest_events: String = events
            .lines()
            .skip(done)
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&rest, rest_events).unwrap();
        let (code, printed, stderr) = record_until_signal(&s, &rest, signal);
        assert_eq!(code, Some(1), "{signal}: {stderr}");
        let upto: usize = stderr
            .split("cancelled; lines 1 to ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{signal}: no resume line in {stderr}"));
        assert!(
            stderr.contains(&format!("tail -n +{}", upto + 1)),
            "{stderr}"
        );
        // Every line up to there is committed and has its result printed; nothing after it.
        assert_eq!(printed, upto, "{signal}");
        done += upto;
        assert!(
            done < total,
            "{signal}: the import finished before the signal"
        );
        assert_eq!(used(), done as i64, "{signal}");
    }
    let rest: String = events
        .lines()
        .skip(done)
        .map(|l| format!("{l}\n"))
        .collect();
    s.cmd()
        .args(["record", "--batch", "-"])
        .write_stdin(rest)
        .assert()
        .success();
    assert_eq!(used(), total as i64);
}
