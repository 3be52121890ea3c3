//! The command-level tests once per engine × plans.toml shape: `shape_tests!` turns each
//! `fn name(engine: Engine, shape: Shape)` into `sqlite_legacy::name`, `sqlite_meters::name`,
//! `postgres_legacy::name` and `postgres_meters::name`. A [`Shape`] says how to do the same
//! thing on either file, so one test body holds for both: a path that works on one shape
//! only cannot pass unnoticed.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::cli::{Scratch, repo_plans};
use super::engine::Engine;

/// (plan, meter, included, at_limit, overage_rate) of [`Shape::plan_terms`].
pub type Terms = (
    &'static str,
    &'static str,
    Option<i64>,
    &'static str,
    Option<&'static str>,
);

/// The two plans.toml a user has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The repository's plans.toml: no `[[meters]]`, one implicit meter `usage` summing the
    /// quantity, each plan's terms on the plan itself.
    Legacy,
    /// What `meterline init` writes (examples/plans-ai-api.toml): `[[meters]]` requests (a
    /// count, the default), tokens (a sum by model), active_users (unique_count), all three
    /// of event type `completion`, terms per meter under `[plans.meters.ID]` (the pro plan's
    /// tokens priced per model by `rates`).
    Meters,
}

/// `shape_tests!(a, b)`: `#[test] sqlite_legacy::a`, `#[test] postgres_meters::a`, … calling
/// `a(Engine, Shape)`.
macro_rules! shape_tests {
    ($($name:ident),+ $(,)?) => {
        $crate::support::shapes::shape_tests!(@module sqlite_legacy, Sqlite, Legacy, $($name),+);
        $crate::support::shapes::shape_tests!(@module sqlite_meters, Sqlite, Meters, $($name),+);
        $crate::support::shapes::shape_tests!(@module postgres_legacy, Postgres, Legacy, $($name),+);
        $crate::support::shapes::shape_tests!(@module postgres_meters, Postgres, Meters, $($name),+);
    };
    (@module $module:ident, $engine:ident, $shape:ident, $($name:ident),+) => {
        mod $module {
            $(#[test]
            fn $name() {
                super::$name(
                    $crate::support::engine::Engine::$engine,
                    $crate::support::shapes::Shape::$shape,
                )
            })+
        }
    };
}
pub(crate) use shape_tests;

impl Shape {
    /// The plans.toml of this shape, as shipped.
    pub fn plans_file(self) -> PathBuf {
        match self {
            Shape::Legacy => repo_plans(),
            Shape::Meters => {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/plans-ai-api.toml")
            }
        }
    }

    /// The meter an event that names none counts on.
    pub fn default_meter(self) -> &'static str {
        match self {
            Shape::Legacy => "usage",
            Shape::Meters => "requests",
        }
    }

    /// Every meter, in plans.toml's order, with the Stripe event it reports to.
    pub fn meters(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Shape::Legacy => &[("usage", "meterline_usage")],
            Shape::Meters => &[
                ("requests", "api_requests"),
                ("tokens", "api_tokens"),
                ("active_users", "api_active_users"),
            ],
        }
    }

    /// Every meter's id, in plans.toml's order.
    pub fn meter_ids(self) -> Vec<&'static str> {
        self.meters().iter().map(|(id, _)| *id).collect()
    }

    /// The Stripe event `meter` reports to.
    pub fn stripe_event(self, meter: &str) -> &'static str {
        self.meters()
            .iter()
            .find(|(id, _)| *id == meter)
            .unwrap_or_else(|| panic!("no meter {meter} in {self:?}"))
            .1
    }

    /// The meters Stripe must have for this file (event name, formula): each plan's event
    /// name without `[[meters]]`, each meter's with them (docs/sync.md).
    pub fn stripe_meters(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Shape::Legacy => &[
                ("meterline_usage", "sum"),
                ("meterline_usage_business", "sum"),
            ],
            Shape::Meters => &[
                ("api_requests", "sum"),
                ("api_tokens", "sum"),
                ("api_active_users", "last"),
            ],
        }
    }

    /// Every plan's terms per meter as the file writes them: (plan, meter, included, at_limit,
    /// overage_rate); `None` included is unlimited.
    pub fn plan_terms(self) -> &'static [Terms] {
        match self {
            Shape::Legacy => &[
                ("free", "usage", Some(1_000), "block", None),
                ("starter", "usage", Some(10_000), "block", None),
                ("pro", "usage", Some(100_000), "overage", Some("0.0005")),
                ("team", "usage", Some(500_000), "overage", Some("0.0004")),
                ("business", "usage", None, "block", None),
            ],
            Shape::Meters => &[
                ("free", "requests", Some(1_000), "block", None),
                ("free", "tokens", Some(100_000), "block", None),
                ("free", "active_users", Some(3), "block", None),
                ("pro", "requests", Some(100_000), "block", None),
                (
                    "pro",
                    "tokens",
                    Some(10_000_000),
                    "overage",
                    Some("0.000002"),
                ),
                ("pro", "active_users", Some(50), "overage", Some("4.00")),
            ],
        }
    }

    /// A plan's `[[plans.meters.ID.rates]]` for `meter`, as `plans --json` shows them (`where`
    /// and `rate`, in the file's order); empty where the file gives none.
    pub fn rates(self, plan: &str, meter: &str) -> Vec<Value> {
        match (self, plan, meter) {
            (Shape::Meters, "pro", "tokens") => vec![
                json!({"where": {"model": ["large"]}, "rate": "0.00001"}),
                json!({"where": {"model": ["vision"]}, "rate": "0.000006"}),
                json!({"where": {"model": ["small", "tiny"]}, "rate": "0.000001"}),
                json!({"where": {"model": ["embed"]}, "rate": "0.0000001"}),
            ],
            _ => Vec::new(),
        }
    }

    /// The event type every meter counts: `usage` for the implicit meter; the init file's
    /// three meters share `completion`, so one event of it feeds all three.
    pub fn event_type(self) -> &'static str {
        match self {
            Shape::Legacy => "usage",
            Shape::Meters => "completion",
        }
    }

    /// A meter one event can count N on, with a hard cap on the free plan (overage on pro).
    pub fn capped_meter(self) -> &'static str {
        match self {
            Shape::Legacy => "usage",
            Shape::Meters => "tokens",
        }
    }

    /// The free plan's hard cap on [`Shape::capped_meter`].
    pub fn free_cap(self) -> i64 {
        match self {
            Shape::Legacy => 1_000,
            Shape::Meters => 100_000,
        }
    }

    /// `record` arguments for an event that counts `n` on [`Shape::capped_meter`].
    pub fn counting(self, n: i64) -> Vec<String> {
        match self {
            Shape::Legacy => vec!["-n".to_string(), n.to_string()],
            Shape::Meters => vec![
                "--meter".to_string(),
                "tokens".to_string(),
                "--property".to_string(),
                format!("tokens={n}"),
                "--property".to_string(),
                "model=large".to_string(),
            ],
        }
    }

    /// The event (`POST /v1/events`, a `record --batch` line) that counts `n` on
    /// [`Shape::capped_meter`] for `customer`, under idempotency `key`.
    pub fn event(self, customer: &str, n: i64, key: &str) -> Value {
        match self {
            Shape::Legacy => json!({"customer": customer, "quantity": n, "key": key}),
            Shape::Meters => json!({"customer": customer, "meter": "tokens", "key": key,
                                    "properties": {"tokens": n, "model": "large"}}),
        }
    }
}

/// `n` with thousands separators, as the CLI's text prints a count.
pub fn grouped(n: i64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

impl Scratch {
    /// A scratch database on `engine` with `shape`'s plans.toml.
    pub fn shaped(engine: Engine, shape: Shape) -> Scratch {
        let scratch = Scratch::on(engine);
        std::fs::copy(shape.plans_file(), &scratch.plans).expect("copy the shape's plans.toml");
        scratch
    }
}

impl Scratch {
    /// `record CUSTOMER --json ARGS`: the exit code and what it printed (Null if not JSON).
    pub fn record_json<S: AsRef<std::ffi::OsStr>>(
        &self,
        customer: &str,
        args: &[S],
    ) -> (i32, Value) {
        let out = self
            .cmd()
            .args(["record", customer, "--json"])
            .args(args)
            .output()
            .expect("run meterline record");
        let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code().expect("an exit code"), json)
    }

    /// `record --batch - ARGS` with `lines` as its NDJSON input.
    pub fn record_batch(&self, lines: &[String], args: &[&str]) -> std::process::Output {
        self.cmd()
            .args(["record", "--batch", "-"])
            .args(args)
            .write_stdin(lines.join("\n") + "\n")
            .output()
            .expect("run meterline record --batch")
    }
}
