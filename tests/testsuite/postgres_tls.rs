//! TLS to PostgreSQL follows `sslmode`: the default (`prefer`) encrypts whenever the server
//! offers TLS, whatever its certificate (a distribution's self-signed one included), as libpq;
//! `require` and `verify-full` verify the certificate against the system's roots and refuse
//! one they do not vouch for, creating nothing; `disable` never encrypts.

use crate::support::cli::Scratch;
use crate::support::postgres::{PASSWORD, PgServer};

/// `meterline ARGS` on `url`: exit code and stderr, the password never in either output.
fn run(url: &str, args: &[&str]) -> (i32, String) {
    let out = Scratch::new()
        .std_cmd()
        .env("METERLINE_DB", url)
        .args(args)
        .output()
        .expect("run meterline");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        !stdout.contains(PASSWORD) && !stderr.contains(PASSWORD),
        "the password shows: {stdout}{stderr}"
    );
    (out.status.code().expect("exited"), stderr)
}

#[test]
fn sslmode_is_honoured_and_a_required_certificate_is_verified_against_the_system_roots() {
    let server = PgServer::private();
    server.require_tls();
    let url = server.fresh_database();
    let db = url.rsplit('/').next().unwrap().to_owned();
    let tables = || {
        server.psql(
            &db,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
        )
    };

    for mode in ["require", "verify-ca", "verify-full"] {
        let (code, stderr) = run(&format!("{url}?sslmode={mode}"), &["customer", "list"]);
        assert_eq!(code, 1, "{mode}: {stderr}");
        assert!(
            stderr.contains("certificate") && stderr.contains("sslmode=prefer"),
            "{mode}: {stderr}"
        );
    }
    assert_eq!(tables(), "0", "a refused connection created nothing");

    // The server takes TCP logins over TLS only: these succeed encrypted.
    for url in [
        url.clone(),
        format!("{url}?sslmode=prefer"),
        format!("{url}?sslmode=allow"),
    ] {
        let (code, stderr) = run(&url, &["customer", "add", "acme", "--plan", "free"]);
        assert!(
            code == 0 || stderr.contains("already exists"),
            "{url}: {stderr}"
        );
    }
    let (code, stderr) = run(&url, &["record", "acme", "-n", "3"]);
    assert_eq!(code, 0, "{stderr}");

    let (code, stderr) = run(&format!("{url}?sslmode=disable"), &["check", "acme"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("no encryption") || stderr.contains("pg_hba"),
        "{stderr}"
    );
}
