//! `meterline reconcile`: compare what meterline reported with what Stripe holds.
//!
//! Stripe's meters are listed (paginated) to map each meter event name to a meter id and check
//! its settings (`meter_setup`, which `doctor` asks too); then, per mapped customer and
//! meter (and Stripe event name, for a `stripe_event` pattern: each name the period's groups
//! make), Stripe's `event_summaries` for the billing period (minute boundaries, end
//! exclusive) is compared with what meterline marked reported: the units of a `sum` formula
//! meter, the newest report's value of a `last` one. Reads only, through the sync's client,
//! rate limiter and retry policy; the only writes are the run's record and the settling of
//! reports held in doubt.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::client::query_value;
use super::{Answer, ApiKey, Client, RateLimiter, RetryPolicy};
use crate::billing::{Period, format_ts, period_containing};
use crate::config::Config;
use crate::store::{EventNamed, Formula, ReconcileRow, Route, StripeMeters};
use crate::{Error, Result, Store};

/// Which billing period to compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Which {
    /// The period running now.
    #[default]
    Current,
    /// The one before it.
    Previous,
}

/// What `run` compares, and how.
#[derive(Debug, Clone, Default)]
pub struct ReconcileOptions {
    /// Only this customer (meterline's id).
    pub customer: Option<String>,
    /// Which billing period of each customer.
    pub period: Which,
    /// A row whose events were reported this recently is "pending", not drift: Stripe
    /// aggregates asynchronously.
    pub grace: Duration,
    /// The time of the run; `None` (what the CLI uses): the real clock.
    pub now: Option<DateTime<Utc>>,
    /// The first pause between retries (500 ms when `None`).
    pub backoff: Option<Duration>,
    /// Set (by Ctrl-C or SIGTERM in the CLI) to stop before the next customer; a retry pause
    /// in progress ends at once.
    pub cancel: Arc<AtomicBool>,
}

/// What a run compared; `unchecked` customers were left when it was cancelled.
#[derive(Debug, Clone, Default)]
pub struct Reconciled {
    /// One row per customer × meter compared (customers in order, each with its meters in
    /// plans.toml's order).
    pub rows: Vec<ReconcileRow>,
    /// Customers not compared because the run was cancelled.
    pub unchecked: usize,
}

/// Pages of one Stripe list at most (100 items a page).
const MAX_PAGES: usize = 10_000;

/// Stripe's reads, through the sync's client, limiter and retry policy.
struct Reader<'a> {
    client: Client,
    policy: RetryPolicy,
    limiter: RateLimiter,
    stop: Arc<AtomicBool>,
    key: &'a ApiKey,
}

impl Reader<'_> {
    fn get(&self, path: &str) -> Result<Value> {
        self.client
            .get_json(path, &self.policy, &self.limiter, &self.stop)
            .map_err(|answer| match answer {
                Answer::Unauthorized { message } => Error::StripeConfig(format!(
                    "Stripe refused the API key ({message}); reconcile needs read access to \
                     Billing meters"
                )),
                Answer::Fatal { message } => Error::StripeConfig(format!(
                    "the connection to Stripe cannot be trusted ({message})"
                )),
                other => Error::Stripe(
                    self.key
                        .redact(&format!("reading from Stripe failed: {}", describe(&other))),
                ),
            })
    }

    /// Every page of the Stripe list at `path` (its query begun), handed to `each`. A list
    /// that does not advance (a page ending on the cursor it was asked for) or goes on past
    /// `MAX_PAGES` is an error: a broken or hostile server must not keep a cron job forever.
    fn each_page(&self, path: &str, what: &str, mut each: impl FnMut(&[Value])) -> Result<()> {
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut url = path.to_string();
            if let Some(id) = &after {
                url.push_str(&format!("&starting_after={}", query_value(id)));
            }
            let page = self.get(&url)?;
            let data = page["data"].as_array().cloned().unwrap_or_default();
            each(&data);
            let last = data
                .last()
                .and_then(|item| item["id"].as_str())
                .map(str::to_string);
            if page["has_more"].as_bool() != Some(true) || last.is_none() {
                return Ok(());
            }
            if last == after {
                return Err(Error::Stripe(format!(
                    "Stripe's list of {what} does not advance (has_more, but the same page again)"
                )));
            }
            after = last;
        }
        Err(Error::Stripe(format!(
            "Stripe's list of {what} did not end after {MAX_PAGES} pages"
        )))
    }

    /// Every active meter by event name, over all pages.
    fn meters(&self) -> Result<HashMap<String, StripeMeter>> {
        let mut meters = HashMap::new();
        self.each_page("/v1/billing/meters?limit=100", "meters", |page| {
            for meter in page {
                let (Some(id), Some(name)) = (meter["id"].as_str(), meter["event_name"].as_str())
                else {
                    continue;
                };
                if meter["status"].as_str() == Some("active") {
                    let text = |v: &Value| v.as_str().map(str::to_string);
                    meters.insert(
                        name.to_string(),
                        StripeMeter {
                            id: id.to_string(),
                            formula: text(&meter["default_aggregation"]["formula"]),
                            value_key: text(&meter["value_settings"]["event_payload_key"]),
                            customer_key: text(&meter["customer_mapping"]["event_payload_key"]),
                        },
                    );
                }
            }
        })?;
        Ok(meters)
    }

    /// Stripe's total for one customer and meter over `[start, end)` (minute boundaries).
    fn total(&self, meter: &str, customer: &str, period: &Period) -> Result<i64> {
        let (start, end) = minutes(period);
        let path = format!(
            "/v1/billing/meters/{}/event_summaries?customer={}&start_time={start}&end_time={end}&limit=100",
            query_value(meter),
            query_value(customer)
        );
        let mut total = 0.0;
        self.each_page(&path, "event summaries", |page| {
            total += page
                .iter()
                .filter_map(|s| s["aggregated_value"].as_f64())
                .sum::<f64>();
        })?;
        Ok(total.round() as i64)
    }
}

fn describe(answer: &Answer) -> String {
    match answer {
        Answer::Refused { message }
        | Answer::Transient { message, .. }
        | Answer::NotConnected { message }
        | Answer::Unauthorized { message }
        | Answer::Fatal { message } => message.clone(),
        Answer::Accepted { .. } | Answer::Duplicate => "unexpected answer".into(),
        Answer::NotSent => "stopped".into(),
    }
}

/// The period as Stripe wants it: Unix seconds on minute boundaries, the start rounded down
/// and the end up, end exclusive.
fn minutes(period: &Period) -> (i64, i64) {
    let start = period.start.timestamp();
    let end = period.end.timestamp();
    (
        start - start.rem_euclid(60),
        end + (60 - end.rem_euclid(60)) % 60,
    )
}

/// Stripe's reads with the sync's settings; `stop` cuts a retry pause short.
fn reader<'k>(
    config: &Config,
    key: &'k ApiKey,
    backoff: Option<Duration>,
    stop: Arc<AtomicBool>,
) -> Result<Reader<'k>> {
    let base = super::api_base(config)?;
    Ok(Reader {
        client: Client::new(&base, key, &config.stripe)?,
        policy: RetryPolicy::from_settings(&config.stripe, backoff),
        limiter: RateLimiter::per_second(super::rate_limit(config, key)),
        stop,
        key,
    })
}

/// A Stripe meter as its list shows it (the settings meterline depends on).
#[derive(Debug, Clone)]
struct StripeMeter {
    id: String,
    /// `default_aggregation.formula`: sum, count or last.
    formula: Option<String>,
    /// `value_settings.event_payload_key`: meterline sends `value`.
    value_key: Option<String>,
    /// `customer_mapping.event_payload_key`: meterline sends `stripe_customer_id`.
    customer_key: Option<String>,
}

/// What one meterline meter (or, in a plans.toml without `[[meters]]`, one plan) needs of
/// Stripe, and whether Stripe's meter is so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterSetup {
    /// `meter "tokens"`, or `plan "pro"` without `[[meters]]`.
    pub who: String,
    /// The Stripe meter's event name.
    pub event_name: String,
    /// The formula it must aggregate by.
    pub formula: Formula,
    /// The meter's `stripe_event` pattern the name was made from (`tokens_{model}`), if it
    /// has one; the name is the pattern itself while no group has been counted.
    pub pattern: Option<String>,
    /// What is wrong with Stripe's meter for it; `None` when it is as needed.
    pub problem: Option<SetupProblem>,
}

/// How a Stripe meter falls short of what a meter needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupProblem {
    /// No active meter has the event name.
    Missing,
    /// It aggregates by another formula.
    Formula(String),
    /// It reads its value from another payload key than `value`.
    ValueKey(String),
    /// It maps customers by another payload key than `stripe_customer_id`.
    CustomerKey(String),
    /// A group's values fill the pattern into no Stripe event name: its usage is held.
    NotAName,
}

impl MeterSetup {
    /// The problem in a sentence, if there is one.
    pub fn describe(&self) -> Option<String> {
        let (who, name, needs) = (&self.who, &self.event_name, self.formula.as_str());
        let of = self
            .pattern
            .as_ref()
            .map(|p| format!(" (stripe_event \"{p}\")"))
            .unwrap_or_default();
        Some(match self.problem.as_ref()? {
            SetupProblem::Missing => format!("{who} reports to \"{name}\"{of}"),
            SetupProblem::NotAName => format!(
                "{who}: a group makes \"{name}\"{of}, which is no Stripe event name; its usage \
                 is held, not sent"
            ),
            SetupProblem::Formula(found) => format!(
                "{who} needs Stripe's meter \"{name}\" to aggregate by {needs}; it aggregates by \
                 {found}"
            ),
            SetupProblem::ValueKey(found) => format!(
                "Stripe's meter \"{name}\" ({who}) reads its value from payload[{found}]; \
                 meterline sends payload[value]"
            ),
            SetupProblem::CustomerKey(found) => format!(
                "Stripe's meter \"{name}\" ({who}) finds the customer in payload[{found}]; \
                 meterline sends payload[stripe_customer_id]"
            ),
        })
    }
}

/// Every Stripe meter plans.toml needs, checked against Stripe's list: each meter's
/// `stripe_event` with its formula (sum for sum and count, last for max, unique_count and
/// latest), or without `[[meters]]` each plan's `meter_event` (sum); for a `stripe_event`
/// pattern, each name the groups counted in `store` make. `doctor` asks this.
pub fn meter_setup(
    config: &Config,
    store: &Store,
    key: &ApiKey,
    backoff: Option<Duration>,
) -> Result<Vec<MeterSetup>> {
    let reader = reader(config, key, backoff, Arc::default())?;
    let routes = StripeMeters::new(config);
    let seen = pattern_names(store, &routes)?;
    Ok(setup(config, &routes, &reader.meters()?, &seen))
}

/// Per pattern meter, the Stripe event names its groups counted so far make (any customer,
/// any period).
fn pattern_names(store: &Store, routes: &StripeMeters) -> Result<HashMap<String, Vec<String>>> {
    routes
        .routes()
        .iter()
        .filter(|r| r.is_pattern())
        .map(|r| {
            Ok((
                r.meter.clone(),
                store.pattern_event_names(routes, &r.meter, None)?,
            ))
        })
        .collect()
}

fn setup(
    config: &Config,
    routes: &StripeMeters,
    meters: &HashMap<String, StripeMeter>,
    seen: &HashMap<String, Vec<String>>,
) -> Vec<MeterSetup> {
    // (who, event name, formula, pattern, whether the pattern has no group yet)
    type Needed = (String, String, Formula, Option<String>, bool);
    let needed: Vec<Needed> = match routes.routes() {
        [only] if only.event_name.is_none() => config
            .plans
            .iter()
            .map(|p| {
                (
                    format!("plan \"{}\"", p.id),
                    p.meter_event.clone(),
                    only.formula,
                    None,
                    false,
                )
            })
            .collect(),
        all => all
            .iter()
            .flat_map(|r| {
                let who = format!("meter \"{}\"", r.meter);
                let name = r.event_name.clone().unwrap_or_default();
                let names = seen.get(&r.meter).cloned().unwrap_or_default();
                let unfilled = names.is_empty();
                let names = if unfilled { vec![name.clone()] } else { names };
                let pattern = r.is_pattern().then_some(name);
                names.into_iter().map(move |n| {
                    (
                        who.clone(),
                        n,
                        r.formula,
                        pattern.clone(),
                        unfilled && pattern.is_some(),
                    )
                })
            })
            .collect(),
    };
    needed
        .into_iter()
        .map(|(who, event_name, formula, pattern, unfilled)| {
            let problem = match meters.get(&event_name) {
                // A pattern no group has filled yet needs no Stripe meter yet.
                _ if unfilled => None,
                _ if !crate::config::is_stripe_event_name(&event_name) => {
                    Some(SetupProblem::NotAName)
                }
                None => Some(SetupProblem::Missing),
                Some(m) => match (&m.formula, &m.value_key, &m.customer_key) {
                    (Some(f), _, _) if f != formula.as_str() => {
                        Some(SetupProblem::Formula(f.clone()))
                    }
                    (_, Some(k), _) if k != "value" => Some(SetupProblem::ValueKey(k.clone())),
                    (_, _, Some(k)) if k != "stripe_customer_id" => {
                        Some(SetupProblem::CustomerKey(k.clone()))
                    }
                    _ => None,
                },
            };
            MeterSetup {
                who,
                event_name,
                formula,
                pattern,
                problem,
            }
        })
        .collect()
}

/// Setup problems as the one configuration error reconcile stops with, if any.
fn setup_error(setups: &[MeterSetup]) -> Option<Error> {
    let missing: Vec<String> = setups
        .iter()
        .filter(|s| s.problem == Some(SetupProblem::Missing))
        .filter_map(MeterSetup::describe)
        .collect();
    // A name no group can report to holds its usage; it stops no comparison.
    let other: Vec<String> = setups
        .iter()
        .filter(|s| {
            !matches!(
                s.problem,
                None | Some(SetupProblem::Missing | SetupProblem::NotAName)
            )
        })
        .filter_map(MeterSetup::describe)
        .collect();
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!(
            "Stripe has no active meter for: {}. Create the meter in Stripe (Billing -> Meters) \
             with that event name, or fix meter_event / stripe_event in plans.toml",
            missing.join("; ")
        ));
    }
    if !other.is_empty() {
        parts.push(format!(
            "{}. A Stripe meter's settings cannot be changed: create one as docs/sync.md says \
             and deactivate the old one",
            other.join("; ")
        ));
    }
    (!parts.is_empty()).then(|| Error::StripeConfig(parts.join(". ")))
}

/// Compare every mapped customer (or one) with Stripe, record the run, return its rows.
/// Configuration mistakes (a plan's meter event without an active meter in Stripe, an
/// unknown customer) are `exit 2` errors before any comparison.
pub fn run(
    db: &Path,
    config: &Config,
    key: &ApiKey,
    options: &ReconcileOptions,
) -> Result<Reconciled> {
    let started = options.now.unwrap_or_else(Utc::now);
    let reader = reader(config, key, options.backoff, options.cancel.clone())?;
    let mut store = Store::open(db)?;
    let customers: Vec<_> = match &options.customer {
        Some(id) => vec![store.customer(id)?],
        None => store.customers()?,
    };
    let routes = StripeMeters::new(config);
    let meters = reader.meters()?;
    let seen = pattern_names(&store, &routes)?;
    if let Some(error) = setup_error(&setup(config, &routes, &meters, &seen)) {
        return Err(error);
    }
    // Only customers with a Stripe id have anything to compare.
    let mapped: Vec<_> = customers
        .into_iter()
        .filter_map(|c| c.stripe_customer_id.clone().map(|id| (c, id)))
        .collect();
    let total = mapped.len();
    let mut rows = Vec::new();
    let mut unchecked = 0;
    for (done, (customer, stripe_customer)) in mapped.into_iter().enumerate() {
        if options.cancel.load(Ordering::Relaxed) {
            unchecked = total - done;
            break;
        }
        let mut period = period_containing(customer.billing_anchor, config.billing.period, started);
        if options.period == Which::Previous {
            period = period_containing(
                customer.billing_anchor,
                config.billing.period,
                period.start - chrono::Duration::seconds(1),
            );
        }
        let period_start = format_ts(period.start);
        let mut compared = Vec::new();
        let mut cancelled = false;
        let mut to_compare: Vec<Route> = routes.routes().to_vec();
        // Events counted on the implicit meter before plans.toml had [[meters]].
        if let Some(legacy) = routes.legacy_route()
            && store.period_has_events(&customer.id, &period_start, &legacy.meter)?
        {
            to_compare.push(legacy);
        }
        let mut targets = Vec::new();
        for route in &to_compare {
            targets.extend(stripe_targets(
                &store,
                config,
                &routes,
                route,
                &customer,
                &period_start,
            )?);
        }
        for (route, meter_event, only) in &targets {
            let meter_event = meter_event.clone();
            let Some(meter) = meters.get(&meter_event) else {
                return Err(Error::StripeConfig(format!(
                    "customer \"{}\" was counted under meter event \"{meter_event}\" this period, \
                     and Stripe has no active meter with that event name",
                    customer.id
                )));
            };
            let stripe = match reader.total(&meter.id, &stripe_customer, &period) {
                Ok(units) => units,
                // Cancelled in a retry pause: this customer is not compared.
                Err(_) if options.cancel.load(Ordering::Relaxed) => {
                    cancelled = true;
                    break;
                }
                Err(e) => return Err(e),
            };
            let (local, status) = compare(
                &mut store,
                route,
                only.as_ref(),
                &customer.id,
                &period_start,
                stripe,
                started,
                options,
            )?;
            compared.push(ReconcileRow {
                customer: customer.id.clone(),
                stripe_customer: stripe_customer.clone(),
                meter: route.meter.clone(),
                meter_event,
                period_start: period_start.clone(),
                period_end: format_ts(period.end),
                local,
                stripe,
                drift: stripe - local,
                status: status.into(),
            });
        }
        if cancelled {
            unchecked = total - done;
            break;
        }
        rows.extend(compared);
    }
    let finished = options.now.unwrap_or_else(Utc::now);
    // A cancelled run keeps what it compared, as a `--customer` run does.
    store.record_reconcile(started, finished, &rows)?;
    Ok(Reconciled { rows, unchecked })
}

/// The Stripe meters one meter of a customer's period reports to, by event name: its one
/// name, or for a pattern the names its groups of the period make (each with the filter of its
/// events; names no Stripe meter can have are held usage, not compared).
fn stripe_targets<'r>(
    store: &Store,
    config: &Config,
    routes: &StripeMeters,
    route: &'r Route,
    customer: &crate::store::Customer,
    period_start: &str,
) -> Result<Vec<(&'r Route, String, Option<EventNamed>)>> {
    if route.is_pattern() {
        let names =
            store.pattern_event_names(routes, &route.meter, Some((&customer.id, period_start)))?;
        return Ok(names
            .into_iter()
            .filter(|n| crate::config::is_stripe_event_name(n))
            .map(|n| {
                let only = routes.named(&route.meter, &n);
                (route, n, only)
            })
            .collect());
    }
    let meter_event = match &route.event_name {
        Some(name) => name.clone(),
        None => match store.period_meter(&customer.id, period_start)? {
            Some(name) => name,
            None => config.plan(&customer.plan_id).map_or_else(
                || config.stripe.meter_event.clone(),
                |p| p.meter_event.clone(),
            ),
        },
    };
    Ok(vec![(route, meter_event, None)])
}

/// One meter (or one Stripe event name of a pattern meter, `only`) of one customer's period
/// against Stripe's figure: (local, status). Held reports of a `sum` meter are settled here
/// (`last` reports are never held).
#[allow(clippy::too_many_arguments)]
fn compare(
    store: &mut Store,
    route: &Route,
    only: Option<&EventNamed>,
    customer: &str,
    period_start: &str,
    stripe: i64,
    started: DateTime<Utc>,
    options: &ReconcileOptions,
) -> Result<(i64, &'static str)> {
    let reported = match route.formula {
        Formula::Sum => store.reported_units(customer, period_start, route, only)?,
        Formula::Last => store.reported_value(customer, period_start, &route.meter)?,
    };
    let mut local = reported.units;
    let held = match route.formula {
        Formula::Sum => store.held_reports(customer, period_start, route, only)?,
        Formula::Last => Vec::new(),
    };
    let held_units: i64 = held.iter().map(|h| h.value).sum();
    let status = if !held.is_empty() {
        // In doubt: Stripe's figure decides whether the held reports arrived.
        if stripe == local + held_units {
            store.settle_held_reported(&held, started)?;
            local += held_units;
            "ok"
        } else if stripe == local {
            store.release_held(&held)?;
            "resend"
        } else {
            "in_doubt"
        }
    } else if stripe == local {
        "ok"
    } else if reported.last_at.as_deref().is_some_and(|at| {
        DateTime::parse_from_rfc3339(at).is_ok_and(|at| {
            started.signed_duration_since(at.with_timezone(&Utc))
                < chrono::Duration::from_std(options.grace).unwrap_or_default()
        })
    }) {
        "pending"
    } else {
        "drift"
    };
    Ok((local, status))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stripe_meter(formula: &str) -> StripeMeter {
        StripeMeter {
            id: "mtr_1".into(),
            formula: Some(formula.into()),
            value_key: Some("value".into()),
            customer_key: Some("stripe_customer_id".into()),
        }
    }

    #[test]
    fn each_meter_needs_its_stripe_meter_with_its_formula() {
        let config = Config::parse(
            r#"
[[meters]]
id = "tokens"
aggregation = "sum"
property = "tokens"
group_by = ["model"]
[[meters]]
id = "users"
aggregation = "unique_count"
property = "user"
[[meters]]
id = "seats"
aggregation = "latest"
property = "seats"
[[meters]]
id = "requests"
aggregation = "count"
[[plans]]
id = "free"
"#,
            "plans.toml",
        )
        .unwrap();
        let meters = HashMap::from([
            ("tokens".to_string(), stripe_meter("sum")),
            ("users".to_string(), stripe_meter("sum")),
            ("requests".to_string(), stripe_meter("sum")),
        ]);
        let found = setup(
            &config,
            &StripeMeters::new(&config),
            &meters,
            &HashMap::new(),
        );
        let problems: Vec<_> = found
            .iter()
            .map(|s| (s.who.as_str(), s.problem.clone()))
            .collect();
        assert_eq!(
            problems,
            [
                ("meter \"tokens\"", None),
                ("meter \"users\"", Some(SetupProblem::Formula("sum".into()))),
                ("meter \"seats\"", Some(SetupProblem::Missing)),
                ("meter \"requests\"", None),
            ]
        );
        let error = setup_error(&found).unwrap().to_string();
        assert!(error.contains("no active meter for: meter \"seats\" reports to \"seats\""));
        assert!(error.contains("to aggregate by last; it aggregates by sum"));
        assert!(
            !error.contains("payload key"),
            "a dimension alone stops nothing: {error}"
        );
        // Without [[meters]]: each plan's meter_event, by sum.
        let plain = Config::parse("[[plans]]\nid = \"free\"\n", "plans.toml").unwrap();
        let meters = HashMap::from([("meterline_usage".to_string(), stripe_meter("count"))]);
        let found = setup(&plain, &StripeMeters::new(&plain), &meters, &HashMap::new());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].who, "plan \"free\"");
        assert_eq!(
            found[0].problem,
            Some(SetupProblem::Formula("count".into()))
        );
    }

    #[test]
    fn periods_go_to_minute_boundaries_end_exclusive() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let p = Period {
            start: at("2026-11-01T00:00:30Z"),
            end: at("2026-12-01T00:00:01Z"),
        };
        let (start, end) = minutes(&p);
        assert_eq!(start, at("2026-11-01T00:00:00Z").timestamp());
        assert_eq!(end, at("2026-12-01T00:01:00Z").timestamp());
        let whole = Period {
            start: at("2026-11-01T00:00:00Z"),
            end: at("2026-12-01T00:00:00Z"),
        };
        assert_eq!(
            minutes(&whole),
            (whole.start.timestamp(), whole.end.timestamp())
        );
    }
}
