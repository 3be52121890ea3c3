//! A realistic demo database: customers on every plan, at every warning level, six months of
//! history, an organisation with members, and some usage not yet reported to Stripe.
//! Everything goes through the real `record` path, so the counters are exactly the events.

use chrono::{DateTime, Duration, Utc};

use crate::NewCustomer;
use crate::billing::period_containing;
use crate::config::{AtLimit, Config, Plan};
use crate::{Error, RecordRequest, Result, Store};

/// How much demo data to make, and the seed that makes it repeatable.
pub struct DemoSpec {
    pub customers: usize,
    /// Roughly how many usage events in all.
    pub events: u64,
    pub seed: u64,
}

/// What a demo fill made.
pub struct DemoSummary {
    pub customers: usize,
    pub events: u64,
    pub unreported: u64,
}

const NAMES: &[&str] = &[
    "Globex Corporation",
    "Acme Robotics",
    "Northwind Labs",
    "Initech",
    "Umbrella Analytics",
    "Hooli Chat",
    "Stark Assistants",
    "Wayne Digital",
    "Cyberdyne Notes",
    "Soylent Support",
    "Tyrell Writers",
    "Aperture Docs",
    "Black Mesa Mail",
    "Vandelay Imports",
    "Pied Piper",
    "Massive Dynamic",
    "Oscorp Search",
    "Wonka Recipes",
    "Gringotts Ledger",
    "Monarch Maps",
    "Dunder Mifflin",
    "Bluth Bananas",
    "Prestige Worldwide",
    "Sterling Cooper",
    "Los Pollos",
    "Krusty Krab",
    "Nakatomi Trading",
    "Gekko & Co",
    "Duff Brewing",
    "Zorg Industries",
    "Rekall Memories",
    "Weyland Yutani",
    "Virtucon",
    "Spacely Sprockets",
    "Cogswell Cogs",
    "Planet Express",
    "MomCorp",
    "Buy n Large",
    "InGen Genomics",
    "Ollivanders",
];

/// Where each customer's current period ends up, cycling: every level is represented.
const TARGET_RATIOS: &[f64] = &[
    0.35, 0.62, 0.83, 0.88, 0.96, 1.0, 1.34, 0.5, 0.2, 0.71, 0.97, 1.12,
];

const MEMBERS: &[&str] = &[
    "alice@globex.example",
    "bob@globex.example",
    "carol@globex.example",
    "dan@globex.example",
    "erin@globex.example",
];

const HISTORY_PERIODS: usize = 6;

/// Events recorded per transaction.
const DEMO_BATCH: usize = 1000;

/// Fill an empty database with `spec`'s demo customers and usage, recorded through the real
/// record path, then settle most of it as reported.
pub fn fill(
    store: &mut Store,
    config: &Config,
    spec: &DemoSpec,
    now: DateTime<Utc>,
) -> Result<DemoSummary> {
    if !store.customers()?.is_empty() {
        return Err(Error::InvalidInput(
            "the database already has customers; run demo on a new database file (--db)".into(),
        ));
    }
    let mut rng = fastrand::Rng::with_seed(spec.seed);
    let events_per_customer = (spec.events / spec.customers as u64).max(1);
    let mut events = 0;
    for index in 0..spec.customers {
        let plan = pick_plan(config, index, &mut rng);
        let name = match NAMES.get(index) {
            Some(name) => name.to_string(),
            None => format!("{} {}", NAMES[index % NAMES.len()], index / NAMES.len() + 1),
        };
        let id = slug(&name);
        // Anchors spread over a month, starting seven months back: six full periods of history.
        let anchor = (now - Duration::days(200 + rng.i64(0..31))).date_naive();
        let mapped = index % 5 != 3;
        store.add_customer(
            config,
            &NewCustomer {
                id: id.clone(),
                name: Some(name),
                plan_id: plan.id.clone(),
                stripe_customer_id: mapped
                    .then(|| format!("cus_demo{:010}", rng.u64(..10_000_000_000))),
                billing_anchor: Some(anchor),
            },
            now,
        )?;
        let members = if index == 0 { MEMBERS } else { &[][..] };
        let mut requests = Vec::new();
        let current = period_containing(anchor, config.billing.period, now);
        let mut period = current;
        for back in 0..=HISTORY_PERIODS {
            let ratio = if back == 0 {
                TARGET_RATIOS[index % TARGET_RATIOS.len()]
            } else {
                0.3 + rng.f64() * 0.8
            };
            let units = units_for(plan, ratio, &mut rng);
            // The current period gets a quarter of the events, the history the rest.
            let budget = if back == 0 {
                events_per_customer / 4
            } else {
                events_per_customer * 3 / 4 / HISTORY_PERIODS as u64
            };
            let until = period.end.min(now);
            let span = (until - period.start).num_seconds().max(1);
            for quantity in split(units, budget.max(1)) {
                let at = period.start + Duration::seconds(rng.i64(0..span));
                let mut request = RecordRequest::new(&id, quantity, at);
                if !members.is_empty() && rng.u8(0..10) < 8 {
                    request.user_id = Some(members[rng.usize(..members.len())].to_string());
                }
                requests.push(request);
            }
            period = period_containing(
                anchor,
                config.billing.period,
                period.start - Duration::seconds(1),
            );
        }
        // Batches through the record path, each decided in order as if recorded one by one:
        // one transaction per event took minutes on a database server.
        for chunk in requests.chunks(DEMO_BATCH) {
            for outcome in store.record_batch(config, chunk, now)? {
                if outcome?.recorded {
                    events += 1;
                }
            }
        }
    }
    let unreported = store.settle_demo_reporting(now)?;
    Ok(DemoSummary {
        customers: spec.customers,
        events,
        unreported,
    })
}

/// The first customer is the organisation on the biggest capped plan; others are spread so
/// every plan appears.
fn pick_plan<'c>(config: &'c Config, index: usize, rng: &mut fastrand::Rng) -> &'c Plan {
    if index == 0
        && let Some(team) = config
            .plans
            .iter()
            .filter(|p| p.at_limit == AtLimit::Overage && p.included.is_some())
            .max_by_key(|p| p.included)
    {
        return team;
    }
    if index < config.plans.len() * 2 {
        return &config.plans[index % config.plans.len()];
    }
    &config.plans[rng.usize(..config.plans.len())]
}

fn units_for(plan: &Plan, ratio: f64, rng: &mut fastrand::Rng) -> i64 {
    match plan.included {
        // A hard cap is never passed.
        Some(limit) if plan.at_limit == AtLimit::Block => {
            ((limit as f64 * ratio.min(1.0)) as i64).min(limit)
        }
        Some(limit) => (limit as f64 * ratio) as i64,
        None => rng.i64(20_000..2_000_000),
    }
}

/// "Gekko & Co" -> "gekko-co".
fn slug(name: &str) -> String {
    name.to_lowercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// `units` split into at most `count` positive quantities.
fn split(units: i64, count: u64) -> Vec<i64> {
    if units <= 0 {
        return Vec::new();
    }
    let count = (count as i64).min(units);
    let base = units / count;
    let extra = units % count;
    (0..count).map(|i| base + i64::from(i < extra)).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn split_keeps_the_total() {
        for (units, count) in [(10, 3), (5, 10), (1_000_000, 7), (1, 1)] {
            let parts = super::split(units, count);
            assert_eq!(parts.iter().sum::<i64>(), units);
            assert!(parts.iter().all(|&q| q > 0));
        }
        assert!(super::split(0, 5).is_empty());
    }
}
