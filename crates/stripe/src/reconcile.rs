//! `meterline reconcile`: compare what meterline reported with what Stripe holds.
//!
//! Stripe's meters are listed (paginated) to map each meter event name to a meter id; then,
//! per mapped customer, Stripe's `event_summaries` for the billing period (minute boundaries,
//! end exclusive) is compared with the units meterline marked reported. Reads only, through
//! the sync's client, rate limiter and retry policy; the only writes are the run's record and
//! the settling of reports held in doubt (see `settle_held`).

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
use crate::store::ReconcileRow;
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
    /// One row per customer × meter compared.
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

    /// Every active meter: event name → meter id, over all pages.
    fn meters(&self) -> Result<HashMap<String, String>> {
        let mut meters = HashMap::new();
        self.each_page("/v1/billing/meters?limit=100", "meters", |page| {
            for meter in page {
                let (Some(id), Some(name)) = (meter["id"].as_str(), meter["event_name"].as_str())
                else {
                    continue;
                };
                if meter["status"].as_str() == Some("active") {
                    meters.insert(name.to_string(), id.to_string());
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

/// The plans whose meter event name has no active meter in Stripe ("plan \"pro\" reports to
/// \"…\""), with Stripe's meter ids for the others. `doctor` asks this too.
pub fn meters_of_plans(
    config: &Config,
    key: &ApiKey,
    backoff: Option<Duration>,
) -> Result<(HashMap<String, String>, Vec<String>)> {
    plans_meters(config, &reader(config, key, backoff, Arc::default())?)
}

fn plans_meters(
    config: &Config,
    reader: &Reader,
) -> Result<(HashMap<String, String>, Vec<String>)> {
    let meters = reader.meters()?;
    let mut missing: Vec<String> = config
        .plans
        .iter()
        .filter(|p| !meters.contains_key(&p.meter_event))
        .map(|p| format!("plan \"{}\" reports to \"{}\"", p.id, p.meter_event))
        .collect();
    missing.dedup();
    Ok((meters, missing))
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
    let (meters, missing) = plans_meters(config, &reader)?;
    if !missing.is_empty() {
        return Err(Error::StripeConfig(format!(
            "Stripe has no active meter for: {}. Create the meter in Stripe (Billing -> Meters) \
             with that event name, or fix meter_event in plans.toml",
            missing.join("; ")
        )));
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
        let meter_event = match store.period_meter(&customer.id, &period_start)? {
            Some(name) => name,
            None => config.plan(&customer.plan_id).map_or_else(
                || config.stripe.meter_event.clone(),
                |p| p.meter_event.clone(),
            ),
        };
        let Some(meter) = meters.get(&meter_event) else {
            return Err(Error::StripeConfig(format!(
                "customer \"{}\" was counted under meter event \"{meter_event}\" this period, \
                 and Stripe has no active meter with that event name",
                customer.id
            )));
        };
        let stripe = match reader.total(meter, &stripe_customer, &period) {
            Ok(units) => units,
            // Cancelled in a retry pause: this customer is not compared.
            Err(_) if options.cancel.load(Ordering::Relaxed) => {
                unchecked = total - done;
                break;
            }
            Err(e) => return Err(e),
        };
        let reported = store.reported_units(&customer.id, &period_start)?;
        let mut local = reported.units;
        let held = store.held_reports(&customer.id, &period_start)?;
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
        rows.push(ReconcileRow {
            customer: customer.id.clone(),
            stripe_customer,
            meter_event,
            period_start,
            period_end: format_ts(period.end),
            local,
            stripe,
            drift: stripe - local,
            status: status.into(),
        });
    }
    let finished = options.now.unwrap_or_else(Utc::now);
    // A cancelled run keeps what it compared, as a `--customer` run does.
    store.record_reconcile(started, finished, &rows)?;
    Ok(Reconciled { rows, unchecked })
}

#[cfg(test)]
mod tests {
    use super::*;

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
