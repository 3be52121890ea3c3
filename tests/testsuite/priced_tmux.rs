//! End to end, the real dashboard in tmux on a database with events of a type and a meter
//! priced per model (tests/fixtures/plans/ai_priced.toml): the detail shows each group's
//! units past the limit and their money, Events one line per event with its type and the
//! meters it fed, Plans the rates under the meter's terms.

use crate::e2e_tmux::{assert_terminal_restored, db_option, tmux_on};
use crate::support::cli::{BIN, NOW, Scratch};
use crate::support::common::AI_PRICED_PLANS;
use crate::support::engine::{Engine, engine_tests};
use crate::support::tmux::require_tmux;

engine_tests!(the_dashboard_shows_money_per_group_event_types_and_rates);

fn the_dashboard_shows_money_per_group_event_types_and_rates(engine: Engine) {
    require_tmux();
    let s = Scratch::on(engine);
    std::fs::write(&s.plans, AI_PRICED_PLANS).unwrap();
    s.add_customer("acme", "pro", "2026-11-01");
    // 2,400 tokens, 1,400 past the 1,000 included: large's 300 at 0.01, medium's 100 at the
    // overage rate 0.002, tiny's 1,000 at 0.001; small's 800 inside.
    for (tokens, model, user) in [
        (800, "small", "u1"),
        (500, "large", "u2"),
        (100, "medium", "u1"),
        (1000, "tiny", "u3"),
    ] {
        s.cmd()
            .args(["record", "acme", "--type", "completion"])
            .args(["--property", &format!("tokens={tokens}")])
            .args(["--property", &format!("model={model}")])
            .args(["--property", &format!("user={user}")])
            .assert()
            .success();
    }

    let tmux = tmux_on("priced", s.dir.path(), &s.db);
    tmux.type_line(&format!(
        "env -u STRIPE_API_KEY {BIN} {}--plans '{}' --now {NOW}; echo \"exit=$?\"",
        db_option(&s.db),
        s.plans.display()
    ));
    tmux.wait_text("Customers 1/1");

    // The detail: the tokens meter's groups with used, units past the limit and money.
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the priced groups", |s| {
        s.contains("used  over money") && s.contains("$3.00")
    });
    let words = |model: &str| -> Vec<String> {
        let line = screen
            .lines()
            .find(|l| l.contains(&format!(" {model} ")) && l.contains('$'))
            .unwrap_or_else(|| panic!("no {model} group:\n{screen}"));
        let at = line.find(&format!(" {model} ")).unwrap();
        line[at..]
            .split(|c: char| c.is_whitespace() || c == '│')
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect()
    };
    assert_eq!(words("large"), ["large", "500", "300", "$3.00"], "{screen}");
    assert_eq!(words("medium"), ["medium", "100", "100", "$0.20"]);
    assert_eq!(words("tiny"), ["tiny", "1,000", "1,000", "$1.00"]);
    assert!(
        screen.contains("overage 1,400 = $4.20 at each group's rate"),
        "{screen}"
    );

    // Events: one line per event, its type and every meter it fed.
    // Escape alone, then the view: a key right after it would read as Alt+key.
    tmux.keys(&["Escape"]);
    tmux.wait_for("the overview", |s| !s.contains("Customer acme"));
    tmux.keys(&["2"]);
    // The table's header can be painted before its rows: wait for the last row's time too.
    let fed = "completion → requests, tokens, active_users";
    let screen = tmux.wait_for("the events' lines", |s| {
        s.contains("Event → meters") && s.matches(fed).count() >= 4
    });
    assert_eq!(
        screen
            .matches("completion → requests, tokens, active_users")
            .count(),
        4,
        "four events (twelve rows), a line each:\n{screen}"
    );

    // Plans: the tokens meter's rates under its terms.
    tmux.keys(&["3"]);
    let screen = tmux.wait_text("└ model=small|tiny");
    let line = |needle: &str| {
        screen
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle}:\n{screen}"))
            .to_string()
    };
    assert!(line("└ model=large").contains("$0.01"), "{screen}");
    assert!(line("└ model=small|tiny").contains("$0.001"), "{screen}");

    tmux.keys(&["q"]);
    assert_terminal_restored(&tmux);
}
