//! A scratch directory with the repository's
//! plans.toml, the real `meterline` binary with a pinned clock, and a full dump of the
//! database to prove that a refused command wrote nothing.

use std::path::PathBuf;

use assert_cmd::Command;
use tempfile::TempDir;

/// The instant every command pretends it is, so outputs are deterministic; the shipped plans;
/// database dumps (tests/common, shared with the crates' suites).
pub use super::common::{Dump, NOW, dump, repo_plans};

/// The `meterline` binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_meterline");

/// `command`'s output (stdout and stderr piped), failing instead of hanging the suite if it
/// has not ended after a minute.
pub fn output_within_a_minute(mut command: std::process::Command) -> std::process::Output {
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run meterline");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{command:?} still running after a minute");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// A scratch directory holding one database and a copy of the shipped plans.toml.
pub struct Scratch {
    pub dir: TempDir,
    pub db: PathBuf,
    pub plans: PathBuf,
    /// Commands run on the real clock instead of [`NOW`] (see [`Scratch::on_the_real_clock`]).
    pub real_clock: bool,
}

impl Scratch {
    pub fn new() -> Scratch {
        let dir = tempfile::tempdir().expect("temp dir");
        let plans = dir.path().join("plans.toml");
        std::fs::copy(repo_plans(), &plans).expect("copy plans.toml");
        Scratch {
            db: dir.path().join("meterline.db"),
            plans,
            dir,
            real_clock: false,
        }
    }

    /// Every command on the real clock: for a test that ends with `sync`, which always is (an
    /// event at [`NOW`] falls out of Stripe's 35-day window once the calendar passes it).
    pub fn on_the_real_clock(mut self) -> Scratch {
        self.real_clock = true;
        self
    }

    /// `sh -c script` after a `size` tmpfs is mounted on a new directory, in a private mount
    /// namespace (no root needed; the mount ends with the process). `script` gets the
    /// directory as `$SMALL`: a real disk that fills up.
    pub fn on_small_disk(&self, size: &str, script: &str) -> std::process::Command {
        let small = self.dir.path().join("small");
        std::fs::create_dir_all(&small).unwrap();
        let mut command = std::process::Command::new("unshare");
        command
            .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
            .arg(format!(
                "mount -t tmpfs -o size={size} tmpfs \"$SMALL\" && {script}"
            ))
            .env("SMALL", &small)
            .env("METERLINE_PLANS", &self.plans)
            .env("METERLINE_NOW", NOW);
        command
    }

    /// `meterline` on this database and plans file, with the clock pinned at `NOW` (unless
    /// [`Scratch::on_the_real_clock`]) and no stray environment.
    pub fn cmd(&self) -> Command {
        Command::from_std(self.std_cmd())
    }

    /// `cmd` as a plain std command, for a test that drives a running process's pipes.
    pub fn std_cmd(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(BIN);
        for var in ["METERLINE_BUSY_TIMEOUT_MS", "NO_COLOR", "STRIPE_API_KEY"] {
            cmd.env_remove(var);
        }
        if self.real_clock {
            cmd.env_remove("METERLINE_NOW");
        } else {
            cmd.env("METERLINE_NOW", NOW);
        }
        // Through the environment, so a test can still pass its own --db.
        cmd.env("METERLINE_DB", &self.db)
            .env("METERLINE_PLANS", &self.plans);
        cmd
    }

    /// Add a customer, panicking with the tool's message if that fails.
    pub fn add_customer(&self, id: &str, plan: &str, anchor: &str) {
        self.cmd()
            .args(["customer", "add", id, "--plan", plan, "--anchor", anchor])
            .assert()
            .success();
    }

    /// The library's own `Store` over this database, with `customers` (id, plan) added
    /// anchored on `anchor`, and the config of this scratch's plans.toml.
    pub fn library(
        &self,
        customers: &[(&str, &str)],
        anchor: chrono::NaiveDate,
        now: chrono::DateTime<chrono::Utc>,
    ) -> (meterline::Store, meterline::Config) {
        let config = meterline::Config::load(&self.plans).unwrap();
        let mut store = meterline::Store::open(std::path::Path::new(&self.db)).unwrap();
        for (id, plan) in customers {
            let customer = meterline::NewCustomer {
                id: (*id).into(),
                name: None,
                plan_id: (*plan).into(),
                stripe_customer_id: None,
                billing_anchor: Some(anchor),
            };
            store.add_customer(&config, &customer, now).unwrap();
        }
        (store, config)
    }

    /// Record `quantity` units for `customer`, which must succeed.
    pub fn record(&self, customer: &str, quantity: i64) {
        self.cmd()
            .args(["record", customer, "-n", &quantity.to_string()])
            .assert()
            .success();
    }

    /// `meterline demo`'s data (seed 1, at `NOW`) written into this database.
    pub fn fill_demo(&self, customers: usize, events: u64) {
        meterline_store::demo::fill(
            &mut meterline::Store::open(&self.db).unwrap(),
            &meterline::Config::load(&self.plans).unwrap(),
            &meterline_store::demo::DemoSpec {
                customers,
                events,
                seed: 1,
            },
            chrono::DateTime::parse_from_rfc3339(NOW).unwrap().into(),
        )
        .unwrap();
    }

    /// What `meterline ARGS` prints, which must succeed, with each event's random Stripe
    /// identifier (`ml-…`, a CSV field) blanked: comparable across databases.
    pub fn stdout_comparable(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .split(',')
            .map(|field| {
                if field.starts_with("ml-") {
                    "ml-…"
                } else {
                    field
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.cmd().args(args).output().expect("run meterline");
        assert!(
            out.status.success(),
            "meterline {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON output")
    }

    pub fn conn(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(&self.db).expect("open the test database")
    }

    pub fn dump(&self) -> Dump {
        self.inspect().dump()
    }
}

/// `meterline ARGS` with the clock at `now`: exit code, stdout as JSON (Null if not), stderr.
pub fn run_at(s: &Scratch, now: &str, args: &[String]) -> (i32, serde_json::Value, String) {
    let out = s
        .cmd()
        .env("METERLINE_NOW", now)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// One-line JSON exactly as printed, with each key starting a new line so a snapshot is
/// readable and still records the key order byte for byte.
pub fn one_key_per_line(json: &[u8]) -> String {
    std::str::from_utf8(json)
        .expect("UTF-8 output")
        .trim_end()
        .replace("{\"", "{\n\"")
        .replace(",\"", ",\n\"")
        .replace(",{", ",\n{")
}
