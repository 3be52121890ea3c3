//! PgBouncer in transaction mode in front of the test PostgreSQL server, from Debian's
//! `pgbouncer` package: its own temp dir, listening on 127.0.0.1 only, a pool of fewer server
//! connections than clients, so consecutive transactions of one client run on different server
//! sessions. Without pgbouncer the tests that need it fail, never skip (CI installs it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::postgres::{PASSWORD, PgServer, USER, as_postgres, free_port, postgres_ids, server};

const BINARY: &str = "/usr/sbin/pgbouncer";

/// Server connections per database and user: fewer than the clients the tests run at once.
pub const POOL_SIZE: usize = 3;

pub struct PgBouncer {
    dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

impl PgBouncer {
    /// PgBouncer in transaction mode in front of the shared test server.
    pub fn start() -> PgBouncer {
        assert!(
            Path::new(BINARY).exists(),
            "pgbouncer is not installed: apt-get install pgbouncer (.ci/run does)"
        );
        let upstream: &PgServer = server();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let path = |name: &str| dir.path().join(name).display().to_string();
        std::fs::write(
            dir.path().join("userlist.txt"),
            format!("\"{USER}\" \"{PASSWORD}\"\n"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("pgbouncer.ini"),
            format!(
                "[databases]\n\
                 * = host=127.0.0.1 port={upstream}\n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir =\n\
                 auth_type = scram-sha-256\n\
                 auth_file = {auth}\n\
                 pool_mode = transaction\n\
                 default_pool_size = {POOL_SIZE}\n\
                 max_client_conn = 200\n\
                 ignore_startup_parameters = extra_float_digits,options\n\
                 logfile = {log}\n\
                 pidfile = {pid}\n",
                upstream = upstream.port,
                auth = path("userlist.txt"),
                log = path("pgbouncer.log"),
                pid = path("pgbouncer.pid"),
            ),
        )
        .unwrap();
        // PgBouncer refuses to run as root: as root, it runs as the `postgres` user.
        if let Some((uid, gid)) = postgres_ids() {
            for entry in [dir.path().to_path_buf()].into_iter().chain(
                std::fs::read_dir(dir.path())
                    .unwrap()
                    .map(|e| e.unwrap().path()),
            ) {
                std::os::unix::fs::chown(&entry, Some(uid), Some(gid)).unwrap();
            }
        }
        let mut command = Command::new(BINARY);
        command
            .arg(dir.path().join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        as_postgres(&mut command, true);
        let child = command.spawn().expect("start pgbouncer");
        let bouncer = PgBouncer { dir, port, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "pgbouncer did not start: {}",
                bouncer.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        bouncer
    }

    /// A fresh database on the server, and its URL through this PgBouncer.
    pub fn fresh_database(&self) -> PathBuf {
        let direct = server().fresh_database();
        let name = direct.rsplit('/').next().unwrap();
        format!(
            "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{name}",
            self.port
        )
        .into()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
