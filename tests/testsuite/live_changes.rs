//! What the dashboard's watcher polls, `Store::data_version`, moves on every write another
//! process commits, whichever command made it: on SQLite `PRAGMA data_version`, on PostgreSQL
//! the change counter. (On PostgreSQL only the record path's transactions moved it: a customer
//! added, renamed or archived from outside never showed up live.)

use crate::support::cli::Scratch;
use crate::support::engine::{Engine, engine_tests};

engine_tests!(every_write_command_moves_the_change_counter);

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
