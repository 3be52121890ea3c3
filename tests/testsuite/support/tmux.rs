//! A private tmux server per test, driven with send-keys and read with capture-pane; waits on
//! the screen with a bounded deadline rather than fixed sleeps.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

// Generous: a wait for the screen to be ready, not a speed check (CI machines can be busy).
const DEADLINE: Duration = Duration::from_secs(60);
const PROMPT: &str = "e2e$ ";
/// How the prompt reads in a capture (trailing spaces are trimmed).
pub const PROMPT_SHOWN: &str = "e2e$";

/// These tests are the only check of the real terminal: without tmux they fail, never skip
/// (a skipped end-to-end test looks green). CI installs tmux (.ci/run).
pub fn require_tmux() {
    let found = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "tmux is not installed: the end-to-end tests need it (apt-get install tmux)"
    );
}

/// A private tmux server with one shell session; killed on drop.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// A shell in `cwd` whose environment has `env` (so nothing secret is typed on screen),
    /// ready at its prompt.
    pub fn start(name: &str, width: u16, height: u16, cwd: &Path, env: &[(&str, &str)]) -> Tmux {
        // Unique within this process too: every test of the suite runs in it.
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let socket = format!("meterline-e2e-{name}-{}-{n}", std::process::id());
        let tmux = Tmux { socket };
        let mut shell = format!("env PS1='{PROMPT}' TERM=xterm-256color");
        for (k, v) in env {
            shell.push_str(&format!(" {k}='{v}'"));
        }
        shell.push_str(" sh");
        let (w, h) = (width.to_string(), height.to_string());
        let cwd = cwd.to_str().unwrap();
        tmux.run(&["new-session", "-d", "-x", &w, "-y", &h, "-c", cwd, &shell]);
        tmux.wait_for("the shell prompt", |s| s.contains(PROMPT_SHOWN));
        tmux
    }

    /// One tmux command on this server, which must succeed.
    pub fn run(&self, args: &[&str]) -> Output {
        let output = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs");
        assert!(
            output.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Type a command line into the shell.
    pub fn type_line(&self, line: &str) {
        self.run(&["send-keys", "-l", line]);
        self.run(&["send-keys", "Enter"]);
    }

    pub fn keys(&self, keys: &[&str]) {
        for key in keys {
            self.run(&["send-keys", key]);
        }
    }

    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p"]).stdout).into_owned()
    }

    /// The screen with its styles as escape sequences.
    pub fn styled_screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-e"]).stdout).into_owned()
    }

    pub fn alternate_screen(&self) -> bool {
        let out = self.run(&["display-message", "-p", "#{alternate_on}"]);
        String::from_utf8_lossy(&out.stdout).trim() == "1"
    }

    pub fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait (bounded) until the screen shows `text`; returns that screen.
    pub fn wait_text(&self, text: &str) -> String {
        self.wait_for(text, |s| s.contains(text))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}
