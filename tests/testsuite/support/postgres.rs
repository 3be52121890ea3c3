//! A real PostgreSQL server for the tests, from Debian's `postgresql` package: `initdb` into a
//! temp dir, listening on 127.0.0.1 and a private Unix socket only, password (SCRAM) logins
//! over TCP. One server per test process ([`server`]), a fresh database per test; a test that
//! stops the server starts its own ([`PgServer::private`]).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

/// The role the tests' URLs log in as, and its password.
pub const USER: &str = "meterline";
pub const PASSWORD: &str = "meterline-pw";

pub struct PgServer {
    dir: PathBuf,
    pub port: u16,
    child: Mutex<Option<Child>>,
    /// Owned by a test (not the shared one): removed on drop.
    private: bool,
}

/// The shared server of this test process.
pub fn server() -> &'static PgServer {
    static SERVER: OnceLock<PgServer> = OnceLock::new();
    SERVER.get_or_init(|| PgServer::init("shared", false))
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: apt-get install postgresql (.ci/run does)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop().expect("no /usr/lib/postgresql/*/bin/initdb")
}

/// initdb and postgres refuse to run as root: as root, they run as the `postgres` user.
pub(super) fn postgres_ids() -> Option<(u32, u32)> {
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let out = Command::new("id").args(["-u", "postgres"]).output().ok()?;
    let uid = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
    let out = Command::new("id").args(["-g", "postgres"]).output().ok()?;
    let gid = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
    Some((uid, gid))
}

pub(super) fn as_postgres(command: &mut Command, die_with_parent: bool) {
    let ids = postgres_ids();
    unsafe {
        command.pre_exec(move || {
            if let Some((uid, gid)) = ids
                && (libc::setgid(gid) != 0 || libc::setuid(uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            // After setuid, which clears it: the server dies with the test process.
            if die_with_parent {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT);
            }
            Ok(())
        });
    }
}

pub(super) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl PgServer {
    /// A server of the caller's own, stopped and removed when dropped.
    pub fn private() -> PgServer {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        PgServer::init(&format!("private-{n}"), true)
    }

    fn init(name: &str, private: bool) -> PgServer {
        remove_stale_dirs();
        let dir = std::env::temp_dir().join(format!("meterline-pg-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, "postgres-test-pw\n").unwrap();
        if let Some((uid, gid)) = postgres_ids() {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).unwrap();
        }
        let mut initdb = Command::new(bin_dir().join("initdb"));
        initdb
            .arg("-D")
            .arg(dir.join("data"))
            .args(["--locale=C", "--encoding=UTF8", "-U", "postgres"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .stdout(Stdio::null());
        as_postgres(&mut initdb, false);
        let out = initdb.output().expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let server = PgServer {
            dir,
            port: free_port(),
            child: Mutex::new(None),
            private,
        };
        server.start();
        server.psql(
            "postgres",
            &format!("CREATE ROLE {USER} LOGIN CREATEDB PASSWORD '{PASSWORD}'"),
        );
        server
    }

    /// Start the server (again), on the same data and port.
    pub fn start(&self) {
        let mut command = Command::new(bin_dir().join("postgres"));
        command
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(&self.dir)
            .args(["-c", "listen_addresses=127.0.0.1"])
            // A test database needs no durability across power loss; it makes the suite fast.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "max_connections=300", "-c", "shared_buffers=64MB"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("log")).unwrap());
        as_postgres(&mut command, true);
        // From a thread that never ends: the parent-death signal follows the spawning thread.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            tx.send(command.spawn()).unwrap();
            loop {
                std::thread::park();
            }
        });
        let child = rx.recv().unwrap().expect("start postgres");
        *self.child.lock().unwrap() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.ready() {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start: {}",
                std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ready(&self) -> bool {
        self.psql_command("postgres", "SELECT 1")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Stop it (fast shutdown: sessions are cut, nothing committed is lost).
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            unsafe {
                libc::kill(child.id() as i32, libc::SIGINT);
            }
            let _ = child.wait();
        }
    }

    /// A new empty database owned by [`USER`], and its URL.
    pub fn fresh_database(&self) -> String {
        self.fresh_database_with("")
    }

    /// [`fresh_database`](Self::fresh_database) with more of CREATE DATABASE's options
    /// (a template, a locale).
    pub fn fresh_database_with(&self, options: &str) -> String {
        let name = format!(
            "t_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {name} OWNER {USER} {options}"),
        );
        self.url_as(USER, PASSWORD, &name)
    }

    pub fn url_as(&self, user: &str, password: &str, db: &str) -> String {
        format!("postgres://{user}:{password}@127.0.0.1:{}/{db}", self.port)
    }

    /// The superuser on `db`, over this server's socket.
    fn connection(&self, db: &str) -> String {
        format!(
            "postgresql://postgres@/{db}?host={}&port={}",
            self.dir.display(),
            self.port
        )
    }

    fn psql_command(&self, db: &str, sql: &str) -> Command {
        psql_command(&self.connection(db), sql)
    }

    /// `sql` run by the superuser on `db`, its output trimmed (`|` between columns).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        psql(&self.connection(db), sql)
    }

    /// TLS on, with a self-signed certificate (as a distribution's own), and logins over TCP
    /// only through TLS (`hostssl`): a connection that succeeds was encrypted.
    pub fn require_tls(&self) {
        let (cert, key) = (self.dir.join("server.crt"), self.dir.join("server.key"));
        let out = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=127.0.0.1", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl is required for the TLS tests (.ci/run installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for file in [&cert, &key] {
            if let Some((uid, gid)) = postgres_ids() {
                std::os::unix::fs::chown(file, Some(uid), Some(gid)).unwrap();
            }
            std::fs::set_permissions(file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
        }
        std::fs::write(
            self.dir.join("data/pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        for sql in [
            "ALTER SYSTEM SET ssl = on".to_string(),
            format!("ALTER SYSTEM SET ssl_cert_file = '{}'", cert.display()),
            format!("ALTER SYSTEM SET ssl_key_file = '{}'", key.display()),
            "SELECT pg_reload_conf()".to_string(),
        ] {
            self.psql("postgres", &sql);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.psql("postgres", "SHOW ssl") != "on" {
            assert!(Instant::now() < deadline, "TLS did not come on");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Writes to `db` then fail as on a read-only replica.
    pub fn make_read_only(&self, db: &str) {
        self.psql(
            "postgres",
            &format!("ALTER DATABASE {db} SET default_transaction_read_only = on"),
        );
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.private {
            if let Some(mut child) = self.child.lock().unwrap().take() {
                unsafe {
                    libc::kill(child.id() as i32, libc::SIGQUIT);
                }
                let _ = child.wait();
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn psql_command(connection: &str, sql: &str) -> Command {
    let mut command = Command::new("psql");
    command
        .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
        .arg(connection)
        .arg("-c")
        .arg(sql);
    command
}

/// `sql` on the database `connection` names (a URL), its output trimmed (`|` between columns).
pub fn psql(connection: &str, sql: &str) -> String {
    let out = psql_command(connection, sql).output().expect("run psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Data dirs left by test processes that are gone (their servers died with them).
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("meterline-pg-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        if unsafe { libc::kill(pid, 0) } != 0 {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
