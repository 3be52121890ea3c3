//! Command delivery: the program runs (no shell) with the alert JSON on stdin; exit 0 is
//! delivered. A command still running at the timeout is killed and the attempt failed.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The secrets meterline holds are not the command's business.
const HIDDEN_ENV: [&str; 2] = [super::SECRET_ENV, "STRIPE_API_KEY"];

pub(crate) fn run(argv: &[String], body: &str, timeout: Duration) -> Result<(), String> {
    let program = crate::sanitize::sanitize(&argv[0]).into_owned();
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for name in HIDDEN_ENV {
        command.env_remove(name);
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its input is still free to succeed.
        let _ = stdin.write_all(body.as_bytes());
    }
    // On a thread: a chatty command must not block on a full pipe while we wait for it.
    let mut stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(err) = stderr.as_mut() {
            let _ = err.take(8 * 1024).read_to_string(&mut text);
        }
        text
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{program} did not finish within {:.0} s; stopped",
                    timeout.as_secs_f64()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("waiting for {program}: {e}")),
        }
    };
    if status.success() {
        return Ok(());
    }
    let said = reader.join().unwrap_or_default();
    let said: String = said.trim().chars().take(200).collect();
    let code = status.code().map_or_else(
        || "was killed by a signal".to_string(),
        |c| format!("exited with {c}"),
    );
    Err(
        format!("{program} {code}: {}", crate::sanitize::sanitize(&said))
            .trim_end_matches([':', ' '])
            .to_string(),
    )
}
