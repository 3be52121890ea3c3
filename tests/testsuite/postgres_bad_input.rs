//! PostgreSQL given the wrong thing: each is refused with a clear message and a non-zero exit,
//! nothing is created or lost, and the password never shows.

use crate::support::cli::{Scratch, output_within_a_minute};
use crate::support::engine::Engine;
use crate::support::postgres::{PASSWORD, server};

/// `meterline ARGS` on `db`: exit code and stderr.
fn run(scratch: &Scratch, db: &str, args: &[&str]) -> (i32, String) {
    let out = scratch
        .std_cmd()
        .env("METERLINE_DB", db)
        .args(args)
        .output()
        .expect("run meterline");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        !stderr.contains(PASSWORD) && !stdout.contains(PASSWORD),
        "the password shows: {stdout}{stderr}"
    );
    (out.status.code().expect("exited"), stderr)
}

fn db_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}

fn tables(db: &str) -> String {
    server().psql(
        db,
        "SELECT COALESCE(string_agg(tablename, ',' ORDER BY tablename), '') FROM pg_tables WHERE schemaname = 'public'",
    )
}

#[test]
fn malformed_urls_and_unknown_sslmodes_are_refused_before_connecting() {
    let s = Scratch::new();
    for (db, says) in [
        (
            format!("postgres://u:{PASSWORD}@127.0.0.1:notaport/db"),
            "not a valid PostgreSQL URL",
        ),
        (
            format!("postgres://u:{PASSWORD}@127.0.0.1/db?colour=blue"),
            "not a valid PostgreSQL URL",
        ),
        (
            format!("postgres://u:{PASSWORD}@127.0.0.1"),
            "names no database",
        ),
        (
            format!("postgres://u:{PASSWORD}@127.0.0.1/db?sslmode=strict"),
            "unknown sslmode \"strict\"",
        ),
    ] {
        let (code, stderr) = run(&s, &db, &["status"]);
        assert_eq!(code, 2, "{db}: {stderr}");
        assert!(stderr.contains(says), "{db}: {stderr}");
        if !says.starts_with("unknown sslmode") {
            assert!(stderr.contains("u:***@"), "{db}: {stderr}");
        }
    }
}

/// clap shows an option's environment value in --help unless told not to.
#[test]
fn help_never_shows_the_url_of_the_environment() {
    let s = Scratch::new();
    let url = format!("postgres://u:{PASSWORD}@127.0.0.1:1/db");
    for args in [
        &["--help"][..],
        &["status", "--help"],
        &["copy-to", "--help"],
        &["-h"],
    ] {
        let (code, _) = run(&s, &url, args);
        assert_eq!(code, 0, "{args:?}");
    }
    let out = s
        .std_cmd()
        .env("METERLINE_DB", &url)
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("postgres:// URL") && help.contains("[env: METERLINE_DB]"),
        "{help}"
    );
}

#[test]
fn a_wrong_password_an_unreachable_host_and_a_missing_database_are_refused() {
    let s = Scratch::new();
    let url = server().fresh_database();
    let name = db_name(&url);
    let wrong = server().url_as("meterline", "not-the-password", name);
    let (code, stderr) = run(&s, &wrong, &["customer", "add", "acme", "--plan", "free"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
    assert!(stderr.contains("meterline:***@"), "{stderr}");
    assert_eq!(tables(name), "", "a refused login created tables");

    // Nothing listens on port 1.
    let nowhere = format!("postgres://meterline:{PASSWORD}@127.0.0.1:1/{name}");
    let (code, stderr) = run(&s, &nowhere, &["customer", "add", "acme", "--plan", "free"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("unavailable"), "{stderr}");

    let missing = server().url_as("meterline", PASSWORD, "no_such_db");
    let (code, stderr) = run(&s, &missing, &["status"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
}

/// Generated passwords hold '/', '?' and '@', and people paste them into the URL without
/// percent-encoding: the driver reads such a password up to the first '@'. It works (or is
/// refused) and never shows, in part or whole; a second '@' is refused with the fix.
#[test]
fn a_password_typed_without_percent_encoding_never_shows() {
    let s = Scratch::new();
    let url = server().fresh_database();
    let name = db_name(&url);
    let role = format!("odd_{}", std::process::id());
    let password = "pa/ss?w#rd";
    server().psql(
        "postgres",
        &format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{password}'; GRANT ALL ON DATABASE {name} TO {role}"
        ),
    );
    server().psql(name, &format!("GRANT ALL ON SCHEMA public TO {role}"));
    let port = url.rsplit(':').next().unwrap().split('/').next().unwrap();
    let at = |password: &str| format!("postgres://{role}:{password}@127.0.0.1:{port}/{name}");
    let never_shown = |out: &str| {
        for part in ["pa/ss", "ss?w", "w#rd", "p@ss"] {
            assert!(!out.contains(part), "the password shows: {out}");
        }
    };

    let (code, stderr) = run(
        &s,
        &at(password),
        &["customer", "add", "acme", "--plan", "free"],
    );
    never_shown(&stderr);
    assert_eq!(code, 0, "{stderr}");
    let out = s
        .std_cmd()
        .env("METERLINE_DB", at(password))
        .args(["doctor"])
        .output()
        .unwrap();
    never_shown(&String::from_utf8_lossy(&out.stdout));
    never_shown(&String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("{role}:***@127.0.0.1")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let (code, stderr) = run(&s, &at("pa/ss?wrong"), &["status"]);
    never_shown(&stderr);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );

    let (code, stderr) = run(&s, &at("p@ss"), &["status"]);
    never_shown(&stderr);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("write an '@' in the password as %40"),
        "{stderr}"
    );
    assert_eq!(server().psql(name, "SELECT count(*) FROM customers"), "1");
}

/// A server that takes the connection and never answers (wedged, or not PostgreSQL): the
/// driver bounds only the TCP connect, so meterline bounds the whole as libpq does, and each
/// command ends unavailable (exit 1) instead of hanging.
#[test]
fn a_server_that_never_answers_is_unavailable_after_connect_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let s = Scratch::new();
    let url = format!("postgres://u:{PASSWORD}@127.0.0.1:{port}/db?connect_timeout=2");
    for args in [
        &["status"][..],
        &["record", "acme", "-n", "1"],
        &["serve", "--listen", "127.0.0.1:0"],
    ] {
        let mut command = s.std_cmd();
        command.env("METERLINE_DB", &url).args(args);
        let out = output_within_a_minute(command);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("did not answer within 2 s (connect_timeout)"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains(PASSWORD), "{stderr}");
    }
}

#[test]
fn a_database_of_another_application_is_left_untouched() {
    let s = Scratch::new();
    let url = server().fresh_database();
    let name = db_name(&url);
    server().psql(
        name,
        "CREATE TABLE orders (id BIGINT PRIMARY KEY); INSERT INTO orders VALUES (7); ALTER TABLE orders OWNER TO meterline",
    );
    let (code, stderr) = run(&s, &url, &["customer", "add", "acme", "--plan", "free"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("tables of another application"), "{stderr}");
    assert_eq!(tables(name), "orders");
    assert_eq!(server().psql(name, "SELECT id FROM orders"), "7");
}

/// A server older than 13 is refused before anything is created. Debian has no such server
/// here, so a real one is made to answer as one: a `current_setting` ahead of `pg_catalog`'s
/// on the database's search_path gives the old `server_version_num`; everything else is real.
#[test]
fn a_server_older_than_13_is_refused_and_nothing_is_created() {
    let s = Scratch::new();
    for (version_num, shown) in [("90624", "9.6.24"), ("120022", "12.22")] {
        let url = server().fresh_database();
        let name = db_name(&url);
        server().psql(
            name,
            &format!(
                "CREATE SCHEMA old_server AUTHORIZATION meterline;
                 CREATE FUNCTION old_server.current_setting(text) RETURNS text
                     LANGUAGE sql AS $$ SELECT '{version_num}'::text $$;
                 ALTER DATABASE {name} SET search_path = old_server, pg_catalog, public"
            ),
        );
        let (code, stderr) = run(&s, &url, &["customer", "add", "acme", "--plan", "free"]);
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.contains(&format!(
                "runs PostgreSQL {shown}, older than 13.0, the oldest meterline supports"
            )),
            "{stderr}"
        );
        assert!(stderr.contains("meterline:***@"), "{stderr}");
        assert_eq!(tables(name), "", "a refused server got tables");
        assert_eq!(
            server().psql(
                name,
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'old_server'"
            ),
            "0"
        );
    }
}

/// A fresh PostgreSQL database with 5 units recorded for acme: the scratch, its URL and the
/// database's name.
fn acme_with_usage() -> (Scratch, String, String) {
    let s = Scratch::on(Engine::Postgres);
    let url = s.db.to_string_lossy().into_owned();
    let name = db_name(&url).to_owned();
    s.add_customer("acme", "free", "2026-11-01");
    s.record("acme", 5);
    (s, url, name)
}

/// The text columns of `db` not compared bytewise.
fn text_columns_not_bytewise(db: &str) -> String {
    server().psql(
        db,
        "SELECT count(*) FROM information_schema.columns
         WHERE table_schema = 'public' AND data_type = 'text'
           AND collation_name IS DISTINCT FROM 'C'",
    )
}

/// A database at PostgreSQL migration 1, as the first PostgreSQL meterline left it (before
/// `usage_records.meter_terms`, bytewise text and per-statement Stripe marks), with acme's 5
/// units written as that version wrote them: `meterline upgrade` brings it to the current
/// schema with every counter as it was, and the Stripe marks still follow the events.
#[test]
fn an_older_schema_is_upgraded_in_place() {
    let mut s = Scratch::new();
    let url = server().fresh_database();
    let name = db_name(&url).to_owned();
    s.db = url.clone().into();
    meterline::store::create_postgres_at_version(&url, 1).unwrap();
    server().psql(
        &name,
        "INSERT INTO customers (id, name, plan_id, billing_anchor, created_at)
             VALUES ('acme', 'acme', 'free', '2026-11-01', '2026-11-01T00:00:00Z');
         INSERT INTO usage_events (customer_id, quantity, occurred_at, recorded_at, period_start)
             VALUES ('acme', 5, '2026-11-20T10:00:00Z', '2026-11-20T10:00:00Z',
                     '2026-11-01T00:00:00Z');
         INSERT INTO usage_records (customer_id, period_start, period_end, used, plan_id,
                                    meter_event_name, included, at_limit)
             VALUES ('acme', '2026-11-01T00:00:00Z', '2026-12-01T00:00:00Z', 5, 'free',
                     'meterline_usage', 1000, 'block')",
    );
    assert_ne!(text_columns_not_bytewise(&name), "0");
    let (code, stderr) = run(&s, &url, &["upgrade"]);
    assert_eq!(code, 0, "{stderr}");
    // PostgreSQL's own steps 2-6, then from 13 on the numbers both engines share.
    let steps: Vec<String> = (1..=6)
        .chain(13..=meterline::store::SCHEMA_VERSION)
        .map(|v| v.to_string())
        .collect();
    assert_eq!(
        server().psql(
            &name,
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM meterline_migrations"
        ),
        steps.join(",")
    );
    assert_eq!(
        meterline::Store::open(&s.db)
            .unwrap()
            .schema_version()
            .unwrap(),
        meterline::store::SCHEMA_VERSION
    );
    assert_eq!(text_columns_not_bytewise(&name), "0");
    assert_eq!(s.json(&["check", "acme", "--json"])["used"], 5);
    s.record("acme", 2);
    assert_eq!(s.json(&["check", "acme", "--json"])["used"], 7);
    assert_eq!(
        server().psql(
            &name,
            "SELECT count(*) FROM usage_records WHERE meter_terms IS NULL"
        ),
        "0",
        "the first record after the upgrade keeps every period's meter terms"
    );
    let mark = || {
        server().psql(
            &name,
            "SELECT value FROM change_counters WHERE name = 'stripe'",
        )
    };
    let before = mark();
    server().psql(
        &name,
        "UPDATE usage_events SET stripe_reported_at = '2026-11-27T18:00:00Z'",
    );
    assert_ne!(mark(), before);
    assert_eq!(
        server().psql(
            &name,
            "SELECT customer_id || '@' || seq FROM stripe_changes"
        ),
        format!("acme@{}", mark())
    );
}

#[test]
fn a_newer_schema_and_a_changed_migration_are_refused() {
    let (s, url, name) = acme_with_usage();

    server().psql(
        &name,
        "INSERT INTO meterline_migrations (version, name, checksum) VALUES (99, 'future', 'x')",
    );
    for args in [&["status"][..], &["record", "acme", "-n", "1"]] {
        let (code, stderr) = run(&s, &url, args);
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("newer than this meterline"), "{stderr}");
    }
    server().psql(&name, "DELETE FROM meterline_migrations WHERE version = 99");

    server().psql(
        &name,
        "UPDATE meterline_migrations SET checksum = 'edited' WHERE version = 1",
    );
    let (code, stderr) = run(&s, &url, &["record", "acme", "-n", "1"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("differs from this meterline's"), "{stderr}");
    assert_eq!(
        s.inspect().events_of("acme"),
        (1, 5),
        "a refused write wrote"
    );
}

#[test]
fn a_read_only_replica_refuses_writes_and_still_answers_reads() {
    let s = Scratch::on(Engine::Postgres);
    let url = s.db.to_string_lossy().into_owned();
    s.add_customer("acme", "free", "2026-11-01");
    s.record("acme", 5);
    server().make_read_only(db_name(&url));

    let (code, stderr) = run(&s, &url, &["record", "acme", "-n", "1"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("read-only"), "{stderr}");
    let check = s.json(&["check", "acme", "--json"]);
    assert_eq!(check["used"], 5);
    assert_eq!(s.inspect().events_of("acme"), (1, 5));
}

#[test]
fn backup_on_postgres_points_at_pg_dump() {
    let s = Scratch::on(Engine::Postgres);
    s.add_customer("acme", "free", "2026-11-01");
    let dest = s.dir.path().join("copy.db");
    let (code, stderr) = run(
        &s,
        &s.db.to_string_lossy(),
        &["backup", dest.to_str().unwrap()],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("pg_dump"), "{stderr}");
    assert!(!dest.exists());
}
