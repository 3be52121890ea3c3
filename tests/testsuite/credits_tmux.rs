//! End to end, credits in the real dashboard in tmux, on both engines and both plans.toml
//! shapes: the overview's Credits column, the detail's balance, expiry schedule and ledger,
//! and a grant typed at the keyboard, confirmed with `y` (then in `credits --json`), cancelled
//! with `n` and refused by the store (its message on screen), neither writing anything.

use rust_decimal::Decimal;
use serde_json::Value;

use crate::e2e_tmux::{assert_terminal_restored, db_option, tmux_sized};
use crate::support::cli::{BIN, NOW, Scratch};
use crate::support::engine::Engine;
use crate::support::shapes::{Shape, shape_tests};
use crate::support::tmux::{Tmux, require_tmux};

shape_tests!(the_dashboard_shows_credits_and_grants_them_from_the_keyboard);

fn decimal(value: &Value) -> Decimal {
    Decimal::from_str_exact(value.as_str().unwrap()).unwrap()
}

fn grants(s: &Scratch) -> i64 {
    s.inspect().number("SELECT COUNT(*) FROM credit_grants")
}

/// The money line of the detail's credits box: its unit, balance, held and available.
fn money_line(screen: &str) -> Vec<String> {
    let line = screen
        .lines()
        .find(|l| l.contains("│money "))
        .unwrap_or_else(|| panic!("no money line:\n{screen}"));
    let at = line.find("money").unwrap();
    line[at..]
        .split_whitespace()
        .take(4)
        .map(str::to_string)
        .collect()
}

/// Type `amount` in the grant popup (opened with `c`) and ask to confirm it.
fn type_grant(tmux: &Tmux, amount: &str) {
    tmux.keys(&["c"]);
    tmux.wait_text("Amount in USD:");
    tmux.run(&["send-keys", "-l", "--", amount]);
    tmux.wait_text(&format!("Amount in USD: {amount}"));
    tmux.keys(&["Enter"]);
}

fn the_dashboard_shows_credits_and_grants_them_from_the_keyboard(engine: Engine, shape: Shape) {
    require_tmux();
    let s = Scratch::shaped(engine, shape);
    s.add_customer("acme", "pro", "2026-11-01");
    s.add_customer("globex", "pro", "2026-11-01");
    s.add_customer("initech", "free", "2026-11-01");
    for args in [
        &["credits", "grant", "acme", "20"][..],
        &["credits", "grant", "acme", "5", "--promotional"],
        &[
            "credits",
            "grant",
            "acme",
            "3.25",
            "--expires",
            "2026-12-01T00:00:00Z",
        ],
        &["credits", "grant", "globex", "3.5"],
    ] {
        s.cmd().args(args).assert().success();
    }

    // Wide enough for the Credits column beside the meters file's Meter column.
    let tmux = tmux_sized("credits", s.dir.path(), &s.db, (150, 45));
    tmux.type_line(&format!(
        "env -u STRIPE_API_KEY {BIN} {}--plans '{}' --now {NOW}; echo \"exit=$?\"",
        db_option(&s.db),
        s.plans.display()
    ));
    let screen = tmux.wait_text("Customers 3/3");
    let line = |screen: &str, needle: &str| -> String {
        screen
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle}:\n{screen}"))
            .to_string()
    };
    assert!(
        line(&screen, "Unreported").ends_with("Credits│"),
        "{screen}"
    );
    assert!(
        line(&screen, "acme")
            .trim_end_matches('│')
            .trim_end()
            .ends_with("$28.25"),
        "{screen}"
    );
    assert!(line(&screen, "globex").contains("$3.50"), "{screen}");
    assert!(line(&screen, "initech").contains('—'), "{screen}");

    // The detail: the balance, the expiry schedule and the ledger's last entries.
    tmux.keys(&["/"]);
    tmux.run(&["send-keys", "-l", "acme"]);
    tmux.wait_text("Customers 1/3");
    tmux.keys(&["Enter", "Enter"]);
    let screen = tmux.wait_text("Credits · c grants");
    assert_eq!(
        money_line(&screen),
        ["money", "$28.25", "$0.00", "$28.25"],
        "{screen}"
    );
    assert!(screen.contains("$3.25 on 2026-12-01 00:00"), "{screen}");
    assert!(screen.contains("grant  +$20.00 → $20.00"), "{screen}");

    // A grant typed, confirmed with y: written once, under a dashboard key.
    type_grant(&tmux, "12.5");
    tmux.wait_text("Grant $12.50 of credits to acme?");
    tmux.keys(&["y"]);
    tmux.wait_text("granted $12.50 of credits to acme");
    let screen = tmux.wait_for("the new balance", |s| s.contains("→ $12.50"));
    assert_eq!(
        money_line(&screen),
        ["money", "$40.75", "$0.00", "$40.75"],
        "{screen}"
    );
    let balance = s.json(&["credits", "acme", "--json"]);
    assert_eq!(
        decimal(&balance["available"]),
        Decimal::new(4075, 2),
        "{balance}"
    );
    let made = balance["grants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| decimal(&g["amount"]) == Decimal::new(125, 1))
        .unwrap_or_else(|| panic!("no grant of 12.5: {balance}"));
    assert!(
        made["key"].as_str().unwrap().starts_with("dashboard-"),
        "{made}"
    );
    assert_eq!(grants(&s), 5);

    // Another, cancelled with n: nothing written.
    type_grant(&tmux, "7");
    tmux.wait_text("Grant $7.00 of credits to acme?");
    tmux.keys(&["n"]);
    tmux.wait_for("the popup closed", |screen| {
        !screen.contains("Grant credits")
    });
    // An amount the store refuses: its message, nothing written.
    type_grant(&tmux, "-3");
    tmux.wait_text("Grant -$3.00 of credits to acme?");
    tmux.keys(&["y"]);
    tmux.wait_text("error: credit amount \"-3\" must be more than 0");
    assert_eq!(grants(&s), 5);

    tmux.keys(&["Escape"]);
    tmux.wait_for("the overview", |screen| {
        !screen.contains("Credits · c grants")
    });
    tmux.keys(&["q"]);
    assert_terminal_restored(&tmux);
}
