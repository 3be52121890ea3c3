//! Shared by the sync tests: a database with known events, the fake Stripe server, the real
//! binary run with a captured output that is always checked for the API key.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Output;

use chrono::{DateTime, Duration, Utc};
use meterline::store::NewCustomer;
use meterline::{Config, RecordRequest, Store};

use super::engine::{Engine, Inspect};
pub use super::fake_stripe::{FakeStripe, Fault};

/// Environment variables to set (`Some`) or remove (`None`) for one run of the binary.
pub type EnvOverrides<'a> = [(&'a str, Option<&'a str>)];

/// A test key; any output containing it fails the test.
pub const KEY: &str = "sk_test_51MeterlineSecretKEY0123456789abcdef";

/// The tests' "now": the real time when the test process started, to the second. A sync
/// always runs on the real clock, so events are seeded relative to it (a fixed date would
/// drift out of Stripe's 35-day window).
pub fn now() -> DateTime<Utc> {
    static NOW: std::sync::OnceLock<DateTime<Utc>> = std::sync::OnceLock::new();
    *NOW.get_or_init(|| {
        let t = Utc::now();
        DateTime::from_timestamp(t.timestamp(), 0).unwrap()
    })
}

/// `now()` as RFC 3339, for METERLINE_NOW (commands other than sync).
pub fn now_text() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| meterline::billing::format_ts(now()))
}

pub const PLANS: &str = r#"
[stripe]
meter_event = "meterline_usage"
report = "per_event"
api_base = "https://api.stripe.com"
rate_limit = 0
workers = 4
timeout_secs = 1
max_attempts = 4

[[plans]]
id = "free"
included = 1000000

[[plans]]
id = "business"
meter_event = "meterline_usage_business"
"#;

/// `PLANS` in the default mode: one report per customer, meter and period.
pub fn aggregate_plans() -> String {
    PLANS.replace("report = \"per_event\"\n", "")
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub plans: PathBuf,
    pub server: FakeStripe,
}

/// A customer in the test database.
pub struct Seed {
    pub id: &'static str,
    pub stripe: Option<&'static str>,
    pub plan: &'static str,
    /// How many events, one every `spacing` ending 10 minutes before now.
    pub events: usize,
}

pub const MAPPED: &[Seed] = &[
    Seed {
        id: "acme",
        stripe: Some("cus_Acme0001"),
        plan: "free",
        events: 40,
    },
    Seed {
        id: "globex",
        stripe: Some("cus_Globex002"),
        plan: "business",
        events: 30,
    },
    Seed {
        id: "initech",
        stripe: Some("cus_Initech03"),
        plan: "free",
        events: 20,
    },
];

impl Env {
    /// An empty database, the plans file and a running fake server.
    pub fn new(plans: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("meterline.db");
        let plans_path = dir.path().join("plans.toml");
        std::fs::write(&plans_path, plans).unwrap();
        Env {
            server: FakeStripe::start(KEY, now()),
            dir,
            db,
            plans: plans_path,
        }
    }

    /// `new` with its database on `engine`.
    pub fn on(engine: Engine, plans: &str) -> Env {
        let mut env = Env::new(plans);
        if engine == Engine::Postgres {
            env.db = super::postgres::server().fresh_database().into();
        }
        env
    }

    /// `on` with [`MAPPED`]'s customers and their events over the last 20 days.
    pub fn seeded(engine: Engine, plans: &str) -> Env {
        let env = Env::on(engine, plans);
        env.seed(MAPPED, Duration::days(20));
        env
    }

    /// Plain SQL on this database, whichever the engine.
    pub fn inspect(&self) -> Inspect<'_> {
        Inspect::of(&self.db)
    }

    pub fn config(&self) -> Config {
        Config::load(&self.plans).unwrap()
    }

    pub fn store(&self) -> Store {
        Store::open(&self.db).unwrap()
    }

    /// Add customers and their events, spread over the last `span` up to 10 minutes ago.
    pub fn seed(&self, seeds: &[Seed], span: Duration) {
        let config = self.config();
        let mut store = self.store();
        for seed in seeds {
            store
                .add_customer(
                    &config,
                    &NewCustomer {
                        id: seed.id.to_string(),
                        name: None,
                        plan_id: seed.plan.to_string(),
                        stripe_customer_id: seed.stripe.map(str::to_string),
                        billing_anchor: Some((now() - Duration::days(200)).date_naive()),
                    },
                    now() - Duration::days(200),
                )
                .unwrap();
        }
        let total: usize = seeds.iter().map(|s| s.events).sum();
        // Interleave customers in time, as real traffic is.
        let mut n: i32 = 0;
        for round in 0.. {
            let mut any = false;
            for (index, seed) in seeds.iter().enumerate() {
                if round >= seed.events {
                    continue;
                }
                any = true;
                let step = span / total.max(1) as i32;
                let at = now() - Duration::minutes(10) - span + step * n;
                n += 1;
                let quantity = 1 + (round * 7 + index) as i64 % 13;
                self.record(&mut store, &config, seed.id, quantity, at);
            }
            if !any {
                break;
            }
        }
    }

    /// `events` events of `customer` (an existing one), spread over the last `span` up to 10
    /// minutes ago, recorded 500 a batch: a large backlog, quickly.
    pub fn record_many(&self, customer: &str, events: usize, span: Duration) {
        let config = self.config();
        let mut store = self.store();
        let step = span / events.max(1) as i32;
        let start = now() - Duration::minutes(10) - span;
        let requests: Vec<RecordRequest> = (0..events)
            .map(|i| RecordRequest::new(customer, 1 + i as i64 % 5, start + step * i as i32))
            .collect();
        for batch in requests.chunks(500) {
            for outcome in store.record_batch(&config, batch, now()).unwrap() {
                assert!(outcome.unwrap().recorded, "seeding refused by a cap");
            }
        }
    }

    pub fn record(
        &self,
        store: &mut Store,
        config: &Config,
        customer: &str,
        quantity: i64,
        at: DateTime<Utc>,
    ) {
        let outcome = store
            .record(config, &RecordRequest::new(customer, quantity, at), now())
            .unwrap();
        assert!(outcome.recorded, "seeding refused by a cap");
    }

    /// Run the binary, but fail (instead of hanging the suite) if it has not ended after a
    /// minute.
    pub fn run_bounded(&self, args: &[&str], extra: &EnvOverrides) -> Output {
        let output = super::cli::output_within_a_minute(self.std_command(args, extra));
        assert_no_key(&output);
        output
    }

    /// Run `meterline args`, send it `signal` (e.g. "-INT") once the server has had `more`
    /// requests from it, and return what it printed (checked for the key).
    pub fn signal_after_requests(&self, args: &[&str], more: u64, signal: &str) -> Output {
        let wanted = self.server.requests() + more;
        let child = self
            .std_command(args, &[])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while self.server.requests() < wanted {
            assert!(
                std::time::Instant::now() < deadline,
                "meterline {args:?} never got going"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let killed = std::process::Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let output = child.wait_with_output().unwrap();
        assert_no_key(&output);
        output
    }

    /// The real binary with the test environment; `extra` env pairs override.
    pub fn std_command(
        &self,
        args: &[&str],
        extra: &[(&str, Option<&str>)],
    ) -> std::process::Command {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("meterline"));
        cmd.args(args)
            .env("METERLINE_DB", &self.db)
            .env("METERLINE_PLANS", &self.plans)
            .env("METERLINE_NOW", now_text())
            .env("METERLINE_STRIPE_BACKOFF_MS", "10")
            .env("STRIPE_API_KEY", KEY)
            .env("STRIPE_API_BASE", self.server.base())
            .env_remove("NO_COLOR");
        for (name, value) in extra {
            match value {
                Some(v) => cmd.env(name, v),
                None => cmd.env_remove(name),
            };
        }
        cmd
    }

    pub fn command(&self, args: &[&str], extra: &[(&str, Option<&str>)]) -> assert_cmd::Command {
        assert_cmd::Command::from_std(self.std_command(args, extra))
    }

    /// Run the binary, check the key appears nowhere in its output, return the output.
    pub fn run(&self, args: &[&str], extra: &[(&str, Option<&str>)]) -> Output {
        let output = self.command(args, extra).output().unwrap();
        assert_no_key(&output);
        output
    }

    /// plans.toml's `api_base` set to the fake server: how a sync in this process (the
    /// library, the dashboard's worker) finds it, as STRIPE_API_BASE is never set here.
    pub fn plans_at_server(&self) {
        let plans = std::fs::read_to_string(&self.plans).unwrap();
        let plans = plans.replace("https://api.stripe.com", &self.server.base());
        std::fs::write(&self.plans, plans).unwrap();
    }

    /// A sync in this process through the library, against the fake server
    /// (`plans_at_server`), with short retry pauses unless `options` chooses.
    pub fn sync_lib(
        &self,
        mut options: meterline_stripe::SyncOptions,
        cancel: &std::sync::atomic::AtomicBool,
        on_progress: &mut dyn FnMut(&meterline_stripe::SyncProgress),
    ) -> meterline::Result<meterline_stripe::SyncReport> {
        self.plans_at_server();
        options
            .backoff
            .get_or_insert(std::time::Duration::from_millis(10));
        let key = meterline_stripe::ApiKey::new(KEY).unwrap();
        meterline_stripe::run(
            &self.db,
            &self.config(),
            &key,
            &options,
            cancel,
            on_progress,
        )
    }

    /// Events (id, identifier, customer's Stripe id, meter event name, quantity) that a sync
    /// must deliver: mapped customers, inside Stripe's window at NOW.
    pub fn deliverable(&self) -> Vec<(i64, String, String, String, i64)> {
        let from = meterline::billing::format_ts(now() - Duration::days(35));
        let to = meterline::billing::format_ts(now() + Duration::minutes(5));
        self.inspect()
            .rows(&format!(
                "SELECT e.id, c.stripe_customer_id, r.meter_event_name, e.quantity, e.stripe_identifier
                 FROM usage_events e JOIN customers c ON c.id = e.customer_id
                 JOIN usage_records r ON r.customer_id = e.customer_id AND r.period_start = e.period_start
                 WHERE c.stripe_customer_id IS NOT NULL AND e.occurred_at >= '{from}' AND e.occurred_at <= '{to}'
                 ORDER BY e.id"
            ))
            .into_iter()
            .map(|r| {
                (
                    r[0].parse().unwrap(),
                    r[4].clone(),
                    r[1].clone(),
                    r[2].clone(),
                    r[3].parse().unwrap(),
                )
            })
            .collect()
    }

    /// Every deliverable event was accepted by the server exactly once (by identifier, with
    /// the right customer, meter and value), nothing else was, and all are marked reported.
    pub fn assert_exactly_once(&self) {
        let expected = self.deliverable();
        let accepted = self.server.accepted();
        assert_eq!(
            accepted.len(),
            expected.len(),
            "accepted events vs deliverable events"
        );
        for (id, identifier, customer, meter, quantity) in &expected {
            let got = accepted
                .get(identifier)
                .unwrap_or_else(|| panic!("event {id} ({identifier}) never accepted"));
            assert_eq!(
                (&got.customer, &got.event_name, got.value),
                (customer, meter, *quantity)
            );
        }
        assert_eq!(self.count("stripe_reported_at IS NULL AND id IN (SELECT e.id FROM usage_events e JOIN customers c ON c.id = e.customer_id WHERE c.stripe_customer_id IS NOT NULL AND e.stripe_expired_at IS NULL AND e.occurred_at <= ?1)"), 0, "deliverable events left unreported");
    }

    /// Aggregate mode's exactly-once: per Stripe customer and meter, the server's sum equals
    /// the deliverable usage recorded; every accepted identifier is a reported report's, with
    /// its value; and no deliverable event is left unreported.
    pub fn assert_sums_match(&self) {
        let mut expected: HashMap<(String, String), i64> = HashMap::new();
        for (_, _, customer, meter, quantity) in self.deliverable() {
            *expected.entry((customer, meter)).or_default() += quantity;
        }
        let mut got: HashMap<(String, String), i64> = HashMap::new();
        let reports: HashMap<String, (i64, String)> = self
            .inspect()
            .rows("SELECT identifier, value, reported_at FROM stripe_reports")
            .into_iter()
            .map(|r| (r[0].clone(), (r[1].parse().unwrap(), r[2].clone())))
            .collect();
        for (identifier, event) in self.server.accepted() {
            *got.entry((event.customer.clone(), event.event_name.clone()))
                .or_default() += event.value;
            let (value, reported) = reports
                .get(&identifier)
                .unwrap_or_else(|| panic!("accepted {identifier} is no report"));
            assert_eq!(*value, event.value, "{identifier}");
            assert!(!reported.is_empty(), "{identifier} accepted but not marked");
        }
        assert_eq!(got, expected, "server sums vs recorded usage");
        assert_eq!(self.count("stripe_reported_at IS NULL AND id IN (SELECT e.id FROM usage_events e JOIN customers c ON c.id = e.customer_id WHERE c.stripe_customer_id IS NOT NULL AND e.stripe_expired_at IS NULL AND e.occurred_at <= ?1)"), 0, "deliverable events left unreported");
    }

    /// (customer, period) pairs with deliverable usage: the reports a clean sync sends.
    pub fn groups(&self) -> u64 {
        let from = meterline::billing::format_ts(now() - Duration::days(35));
        self.inspect().number(&format!(
            "SELECT COUNT(DISTINCT e.customer_id || ' ' || e.period_start)
             FROM usage_events e JOIN customers c ON c.id = e.customer_id
             WHERE c.stripe_customer_id IS NOT NULL AND e.occurred_at >= '{from}'"
        )) as u64
    }

    /// COUNT(*) of usage_events matching `condition` (?1 = NOW + 5 minutes).
    pub fn count(&self, condition: &str) -> i64 {
        let limit = meterline::billing::format_ts(now() + Duration::minutes(5));
        let condition = condition.replace("?1", &format!("'{limit}'"));
        self.inspect().number(&format!(
            "SELECT COUNT(*) FROM usage_events WHERE {condition}"
        ))
    }

    /// Every row of the tables a sync could touch, as text: to prove a run changed nothing.
    pub fn dump(&self) -> String {
        let db = self.inspect();
        let mut out = String::new();
        for table in [
            "customers",
            "usage_events",
            "usage_records",
            "sync_runs",
            "sync_lock",
            "meterline_meta",
        ] {
            for row in db.rows(&format!("SELECT * FROM {table} ORDER BY 1")) {
                out.push_str(&format!("{table}: {}\n", row.join("|")));
            }
        }
        out
    }

    /// The key must not be stored in any file of the database.
    pub fn assert_key_not_in_files(&self) {
        for entry in std::fs::read_dir(self.dir.path()).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !contains(&bytes, KEY.as_bytes()),
                "the API key is in {}",
                path.display()
            );
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

pub fn assert_no_key(output: &Output) {
    assert!(
        !contains(&output.stdout, KEY.as_bytes()),
        "the API key is on stdout"
    );
    assert!(
        !contains(&output.stderr, KEY.as_bytes()),
        "the API key is on stderr"
    );
    // Not even the secret part after the prefix.
    let secret = &KEY.as_bytes()[8..];
    assert!(!contains(&output.stdout, secret) && !contains(&output.stderr, secret));
    // Nor the test database's password (a postgres:// database).
    let password = super::postgres::PASSWORD.as_bytes();
    assert!(
        !contains(&output.stdout, password) && !contains(&output.stderr, password),
        "the database password is in the output"
    );
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(output)))
}
