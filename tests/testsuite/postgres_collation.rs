//! A PostgreSQL database created with a language's collation (a managed server's default is
//! often en_US.UTF-8, where `alpha` sorts before `B` and `_x` first) lists everything in the
//! order SQLite does: meterline's text compares byte by byte on both engines.

use crate::support::cli::Scratch;
use crate::support::postgres::server;

const IDS: [&str; 6] = ["Zeta", "alpha", "_x", "a-b", "ab", "B"];

#[test]
fn a_database_with_a_language_collation_lists_in_sqlites_order() {
    let sqlite = Scratch::new();
    let mut postgres = Scratch::new();
    let url = server().fresh_database_with(
        "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'",
    );
    let name = url.rsplit('/').next().unwrap().to_owned();
    postgres.db = url.into();
    assert_eq!(
        server().psql(
            &name,
            "SELECT string_agg(x, ' ' ORDER BY x) FROM (VALUES ('B'), ('_x'), ('alpha')) v(x)"
        ),
        "_x alpha B",
        "the database itself orders as a language does"
    );

    for s in [&sqlite, &postgres] {
        for id in IDS {
            s.add_customer(id, "pro", "2026-11-01");
            s.cmd().args(["token", "create", id]).assert().success();
        }
        // Every customer used by itself as a member, and alpha by every one.
        for (n, id) in IDS.iter().enumerate() {
            for customer in [*id, "alpha"] {
                s.cmd()
                    .args(["record", customer, "-n", "3", "--user", id])
                    .args(["--key", &format!("k{n}-{customer}")])
                    .assert()
                    .success();
            }
        }
    }
    for args in [
        &["customer", "list", "--json"][..],
        &["status", "--json"],
        &["members", "alpha", "--json"],
        &["token", "list"],
        &["export", "usage"],
        &["export", "events"],
    ] {
        let listed = sqlite.stdout_comparable(args);
        assert_eq!(postgres.stdout_comparable(args), listed, "{args:?}");
        let at = |id: &str| listed.find(&format!("\"{id}\"")).or(listed.find(id));
        assert!(
            at("B") < at("Zeta") && at("Zeta") < at("_x"),
            "{args:?}: {listed}"
        );
    }
    assert_eq!(
        server().psql(
            &name,
            "SELECT count(*) FROM information_schema.columns
             WHERE table_schema = 'public' AND data_type = 'text'
               AND collation_name IS DISTINCT FROM 'C'"
        ),
        "0"
    );
}
