//! `meterline sync` on a real terminal (tmux): a progress bar while it runs, the summary after,
//! and the key nowhere on the screen.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{Env, KEY, MAPPED, PLANS, now_text};

struct Tmux {
    socket: String,
}

impl Tmux {
    /// A shell in `dir` whose environment has `vars` (so nothing secret is typed on screen).
    fn start(dir: &std::path::Path, vars: &[(&str, &str)]) -> Tmux {
        let tmux = Tmux {
            socket: format!("meterline-sync-{}", std::process::id()),
        };
        let status = Command::new("tmux")
            .args([
                "-L",
                &tmux.socket,
                "new-session",
                "-d",
                "-x",
                "120",
                "-y",
                "30",
                "-c",
            ])
            .arg(dir)
            .args(["env", "PS1=$ ", "TERM=xterm-256color"])
            .args(vars.iter().map(|(k, v)| format!("{k}={v}")))
            .arg("sh")
            .status()
            .expect("tmux is installed (CI installs it)");
        assert!(status.success());
        tmux
    }

    fn send(&self, line: &str) {
        let status = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "0", line, "Enter"])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-t", "0"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Wait (bounded) until the screen shows `text`; returns that screen.
    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "never saw {text:?} on:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

#[test]
fn a_terminal_gets_a_progress_bar_then_the_summary() {
    let env = Env::new(PLANS);
    env.seed(MAPPED, chrono::Duration::days(20));
    // Slow answers: the bar is on screen long enough to be seen.
    env.server.set_delay(Duration::from_millis(30));
    let base = env.server.base();
    let tmux = Tmux::start(
        env.dir.path(),
        &[
            ("STRIPE_API_KEY", KEY),
            ("STRIPE_API_BASE", &base),
            ("METERLINE_NOW", now_text()),
        ],
    );
    // Type only once the shell shows its prompt, or its output interleaves with ours.
    tmux.wait_for("$");
    let bin = assert_cmd::cargo::cargo_bin("meterline");
    tmux.send(&format!(
        "{} --db {} --plans {} sync; echo exit=$?",
        bin.display(),
        env.db.display(),
        env.plans.display()
    ));
    let running = tmux.wait_for("/90 events");
    assert!(running.contains("accepted"), "{running}");
    let done = tmux.wait_for("exit=0");
    assert!(
        done.contains("90 attempted, 90 reached Stripe, 90 accepted"),
        "{done}"
    );
    // The bar is cleared when done.
    assert!(!done.contains("/90 events"), "{done}");
    assert!(
        !running.contains(&KEY[8..]) && !done.contains(&KEY[8..]),
        "{done}"
    );
    env.assert_exactly_once();
}
