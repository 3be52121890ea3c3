//! What the dashboard's watcher polls, `Store::data_version`, moves on every write another
//! process commits, whichever command made it: on SQLite `PRAGMA data_version`, on PostgreSQL
//! the change counter. (On PostgreSQL only the record path's transactions moved it: a customer
//! added, renamed or archived from outside never showed up live.)

use crate::support::cli::Scratch;
use crate::support::engine::{Engine, engine_tests};

engine_tests!(
    every_write_command_moves_the_change_counter,
    stripe_marks_name_the_customers_whose_events_moved,
    the_customers_mark_moves_with_every_write_to_customers,
);

fn every_write_command_moves_the_change_counter(engine: Engine) {
    let s = Scratch::on(engine);
    s.add_customer("acme", "free", "2026-11-01");
    let watcher = meterline::Store::open(&s.db).unwrap();
    let writes: [&[&str]; 10] = [
        &[
            "customer",
            "add",
            "globex",
            "--plan",
            "pro",
            "--anchor",
            "2026-10-01",
        ],
        &["customer", "rename", "acme", "Acme Inc"],
        &["customer", "set-plan", "acme", "starter"],
        &["customer", "set-stripe", "acme", "cus_Acme0001"],
        &["customer", "archive", "globex"],
        &["customer", "unarchive", "globex"],
        &["token", "create", "ci"],
        &["token", "revoke", "ci"],
        &["record", "acme", "-n", "5"],
        &[
            "record",
            "globex",
            "-n",
            "5",
            "--at",
            "2026-11-02T00:00:00Z",
        ],
    ];
    for args in writes {
        let before = watcher.data_version().unwrap();
        let out = s.cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_ne!(
            watcher.data_version().unwrap(),
            before,
            "{args:?} committed a change the watcher cannot see"
        );
    }
    // Reads move nothing.
    let before = watcher.data_version().unwrap();
    for args in [["status", "--json"], ["customer", "list"]] {
        s.cmd().args(args).assert().success();
    }
    assert_eq!(watcher.data_version().unwrap(), before);
}

/// The Stripe marks the dashboard recounts from: every customer whose events' Stripe state
/// changed gets a mark past the one the dashboard last saw, and only those. (PostgreSQL marks
/// once per statement, SQLite once per row: the counter moves by different steps.)
fn stripe_marks_name_the_customers_whose_events_moved(engine: Engine) {
    let s = Scratch::on(engine);
    for customer in ["acme", "globex", "initech"] {
        s.add_customer(customer, "pro", "2026-11-01");
        s.record(customer, 2);
        s.record(customer, 3);
    }
    let db = s.inspect();
    let counter = || db.number("SELECT value FROM change_counters WHERE name = 'stripe'");
    let marks = || {
        db.rows("SELECT customer_id, seq FROM stripe_changes ORDER BY customer_id")
            .into_iter()
            .map(|row| (row[0].clone(), row[1].parse::<i64>().unwrap()))
            .collect::<Vec<_>>()
    };
    assert_eq!(marks(), []);

    db.exec("UPDATE usage_events SET stripe_reported_at = '2026-11-27T18:00:00Z' WHERE customer_id = 'acme'");
    let first = counter();
    assert!(first > 0);
    assert_eq!(marks(), [("acme".to_string(), first)]);

    // Not the Stripe state: no mark.
    db.exec("UPDATE usage_events SET stripe_attempts = stripe_attempts + 1");
    assert_eq!(counter(), first);

    db.exec(
        "UPDATE usage_events SET stripe_error = 'refused', stripe_failed_at = '2026-11-27T18:00:00Z'
         WHERE customer_id IN ('globex', 'initech')",
    );
    let second = counter();
    assert!(second > first);
    // What the dashboard asks: who moved since the mark it last saw.
    let moved_since = |seen: i64| -> Vec<String> {
        marks()
            .into_iter()
            .filter(|(_, seq)| *seq > seen && *seq <= second)
            .map(|(customer, _)| customer)
            .collect()
    };
    assert_eq!(moved_since(first), ["globex", "initech"]);
    assert_eq!(moved_since(0), ["acme", "globex", "initech"]);
    assert_eq!(marks()[0], ("acme".to_string(), first));
}

/// The customers mark the dashboard reloads its list on moves with every write to customers,
/// one row or many in a statement, and with nothing else.
fn the_customers_mark_moves_with_every_write_to_customers(engine: Engine) {
    let s = Scratch::on(engine);
    s.add_customer("acme", "pro", "2026-11-01");
    let db = s.inspect();
    let mark = || db.number("SELECT value FROM change_counters WHERE name = 'customers'");
    let mut last = mark();
    let mut moved = |what: &str| {
        let now = mark();
        assert!(now > last, "{what} did not move the customers mark");
        last = now;
    };
    s.add_customer("globex", "pro", "2026-11-01");
    moved("customer add");
    s.cmd()
        .args(["customer", "rename", "acme", "Acme Inc"])
        .assert()
        .success();
    moved("customer rename");
    db.exec(
        "INSERT INTO customers (id, name, plan_id, billing_anchor, created_at)
         SELECT 'c' || n, 'c', 'pro', '2026-11-01', '2026-11-01T00:00:00Z'
         FROM (SELECT 1 AS n UNION ALL SELECT 2 UNION ALL SELECT 3) AS three",
    );
    moved("three customers in one statement");
    db.exec("DELETE FROM customers WHERE id = 'c3'");
    moved("a customer deleted");
    s.record("acme", 5);
    assert_eq!(mark(), last, "recording moved the customers mark");
}
