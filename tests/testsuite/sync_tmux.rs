//! `meterline sync` on a real terminal (tmux): a progress bar while it runs, the summary after,
//! and the key nowhere on the screen.

use std::time::Duration;

use crate::support::stripe::{Env, KEY, MAPPED, PLANS, now_text};
use crate::support::tmux::{Tmux, require_tmux};

#[test]
fn a_terminal_gets_a_progress_bar_then_the_summary() {
    require_tmux();
    let env = Env::new(PLANS);
    env.seed(MAPPED, chrono::Duration::days(20));
    // Slow answers: the bar is on screen long enough to be seen.
    env.server.set_delay(Duration::from_millis(30));
    let base = env.server.base();
    let tmux = Tmux::start(
        "sync",
        120,
        30,
        env.dir.path(),
        &[
            ("STRIPE_API_KEY", KEY),
            ("STRIPE_API_BASE", &base),
            ("METERLINE_NOW", now_text()),
        ],
    );
    let bin = assert_cmd::cargo::cargo_bin("meterline");
    tmux.type_line(&format!(
        "{} --db {} --plans {} sync; echo exit=$?",
        bin.display(),
        env.db.display(),
        env.plans.display()
    ));
    let running = tmux.wait_text("/90 meter events");
    assert!(running.contains("accepted"), "{running}");
    let done = tmux.wait_text("exit=0");
    assert!(
        done.contains("90 attempted, 90 reached Stripe, 90 accepted"),
        "{done}"
    );
    // The bar is cleared when done.
    assert!(!done.contains("/90 meter events"), "{done}");
    assert!(
        !running.contains(&KEY[8..]) && !done.contains(&KEY[8..]),
        "{done}"
    );
    env.assert_exactly_once();
}
