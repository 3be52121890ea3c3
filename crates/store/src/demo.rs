//! A realistic demo database: customers on every plan, at every warning level, six months of
//! history, an organisation with members, and some usage not yet reported to Stripe.
//! Everything goes through the real `record` path, so the counters are exactly the events.

use chrono::{DateTime, Duration, Utc};

use crate::NewCustomer;
use crate::billing::period_containing;
use crate::config::{Aggregation, AtLimit, Config, Meter, MeterTerms, Plan, QUANTITY};
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
    // With `[[meters]]`: how many customers have been busiest on each meter so far.
    let mut turns = vec![0; config.meters.len()];
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
        let focus = config
            .implicit_meter()
            .is_none()
            .then(|| pick_focus(config, plan, &mut turns))
            .flatten();
        let mut requests = Vec::new();
        let current = period_containing(anchor, config.billing.period, now);
        let mut period = current;
        for back in 0..=HISTORY_PERIODS {
            let ratio = if back == 0 {
                TARGET_RATIOS[index % TARGET_RATIOS.len()]
            } else {
                0.3 + rng.f64() * 0.8
            };
            // The current period gets a quarter of the events, the history the rest.
            let budget = if back == 0 {
                events_per_customer / 4
            } else {
                events_per_customer * 3 / 4 / HISTORY_PERIODS as u64
            };
            let until = period.end.min(now);
            let span = (until - period.start).num_seconds().max(1);
            if config.implicit_meter().is_none() {
                let shape = PeriodShape {
                    customer: &id,
                    focus,
                    current: back == 0,
                    budget: budget.max(1),
                    start: period.start,
                    span,
                };
                for mut request in meter_events(config, plan, &shape, &mut rng) {
                    if !members.is_empty() && rng.u8(0..10) < 8 {
                        request.user_id = Some(members[rng.usize(..members.len())].to_string());
                    }
                    requests.push(request);
                }
            } else {
                let units = units_for(plan, ratio, &mut rng);
                for quantity in split(units, budget.max(1)) {
                    let at = period.start + Duration::seconds(rng.i64(0..span));
                    let mut request = RecordRequest::new(&id, quantity, at);
                    if !members.is_empty() && rng.u8(0..10) < 8 {
                        request.user_id = Some(members[rng.usize(..members.len())].to_string());
                    }
                    requests.push(request);
                }
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

/// Which customer-period `meter_events` fills, and how many events it may spend per meter.
struct PeriodShape<'a> {
    customer: &'a str,
    /// The meter (its position) this customer is busiest on this period, and at what share
    /// of its limit; the others stay well within theirs.
    focus: Option<(usize, f64)>,
    current: bool,
    budget: u64,
    /// The period's start, and how many seconds of it have passed (events fall in there).
    start: DateTime<Utc>,
    span: i64,
}

impl PeriodShape<'_> {
    /// A moment of the period so far.
    fn at(&self, rng: &mut fastrand::Rng) -> DateTime<Utc> {
        self.start + Duration::seconds(rng.i64(0..self.span))
    }
}

/// The largest count a count meter reaches event by event in the current period: a free
/// plan's requests reach their limit; a bigger plan's stay a small share, so the demo stays
/// quick.
const COUNT_CAP: i64 = 1_200;

/// Where each meter's busiest customers end their current period, in turn: the first two
/// are near the limit and past it (at a hard cap), so even a small demo has both on each meter.
const METER_RATIOS: &[f64] = &[
    0.88, 1.34, 0.35, 0.96, 1.0, 0.62, 0.2, 0.83, 0.5, 1.12, 0.71, 0.97,
];

/// The meter a customer on `plan` is busiest on, and the share of its limit it reaches: the
/// meter with the fewest busy customers so far among those the demo can fill (a count meter
/// only up to `COUNT_CAP` events), each meter going through `METER_RATIOS` in turn.
fn pick_focus(config: &Config, plan: &Plan, turns: &mut [usize]) -> Option<(usize, f64)> {
    let reachable = |meter: &Meter| match plan.meters.get(&meter.id).and_then(|t| t.included) {
        Some(limit) => meter.aggregation != Aggregation::Count || limit <= COUNT_CAP,
        None => false,
    };
    let (position, _) = config
        .meters
        .iter()
        .enumerate()
        .filter(|(_, meter)| reachable(meter))
        .min_by_key(|(position, _)| turns[*position])?;
    let ratio = METER_RATIOS[turns[position] % METER_RATIOS.len()];
    turns[position] += 1;
    Some((position, ratio))
}

/// Values of a `group_by` dimension: AI models by size for `model`, three regions otherwise.
fn dimension_value(dimension: &str, rng: &mut fastrand::Rng) -> String {
    if dimension == "model" {
        // Mostly the small model, as an AI API's traffic is.
        ["small", "small", "small", "medium", "medium", "large"][rng.usize(..6)].to_string()
    } else {
        format!("{dimension}-{}", ["eu", "us", "ap"][rng.usize(..3)])
    }
}

/// With `[[meters]]`: one customer-period's events on every meter, each meter at its own level
/// of the plan's terms (in the current period the customer's focus meter reaches its share of
/// `METER_RATIOS`, the others stay well within): requests counted, tokens by model, distinct
/// users, a max or latest value.
fn meter_events(
    config: &Config,
    plan: &Plan,
    shape: &PeriodShape,
    rng: &mut fastrand::Rng,
) -> Vec<RecordRequest> {
    let mut made = Vec::new();
    // The customer-period's events shared among the meters.
    let budget = (shape.budget / config.meters.len() as u64).max(1);
    for (position, meter) in config.meters.iter().enumerate() {
        let ratio = match shape.focus {
            _ if !shape.current => 0.3 + rng.f64() * 0.8,
            // A little apart, so no two customers show the same figures; exactly at a cap
            // stays there.
            Some((focus, ratio)) if focus == position && ratio != 1.0 => {
                ratio + (rng.f64() - 0.5) * 0.02
            }
            Some((focus, ratio)) if focus == position => ratio,
            _ => 0.1 + rng.f64() * 0.5,
        };
        let target = meter_target(plan.meters.get(&meter.id), meter.aggregation, ratio, rng);
        let property = meter.property.as_deref().unwrap_or(QUANTITY);
        let event =
            |value: Option<String>, quantity: i64, at: DateTime<Utc>, rng: &mut fastrand::Rng| {
                let mut request = RecordRequest::new(shape.customer, quantity, at);
                request.meter = Some(meter.id.clone());
                for dimension in &meter.group_by {
                    request
                        .properties
                        .insert(dimension.clone(), dimension_value(dimension, rng));
                }
                if let Some(value) = value {
                    request.properties.insert(property.to_string(), value);
                }
                request
            };
        match meter.aggregation {
            Aggregation::Count => {
                // One event each: a limit the demo can reach is reached in the current period;
                // a bigger one, and the history, get about the meter's share of the budget.
                let share = budget as i64;
                let events = if shape.current && target <= COUNT_CAP {
                    target
                } else {
                    rng.i64(share / 2..=share * 2).max(1).min(target)
                };
                for _ in 0..events {
                    made.push(event(None, 1, shape.at(rng), rng));
                }
            }
            Aggregation::Sum => {
                for amount in split(target, budget) {
                    // The quantity is the amount unless the meter sums a property of its own.
                    let own = property != QUANTITY;
                    let value = own.then(|| amount.to_string());
                    let quantity = if own { 1 } else { amount };
                    made.push(event(value, quantity, shape.at(rng), rng));
                }
            }
            Aggregation::UniqueCount => {
                // Every user once, then some of them again.
                let repeats = rng.i64(0..=target / 2);
                let mut users: Vec<i64> = (0..target).collect();
                users.extend((0..repeats).map(|_| rng.i64(0..target)));
                for n in users {
                    let user = format!("user-{n:03}@{}.example", shape.customer);
                    made.push(event(Some(user), 1, shape.at(rng), rng));
                }
            }
            Aggregation::Max | Aggregation::Latest => {
                // The latest event carries the target: it is the max and the latest alike.
                let mut times: Vec<DateTime<Utc>> =
                    (0..budget.min(6)).map(|_| shape.at(rng)).collect();
                times.sort();
                let last = times.len().saturating_sub(1);
                for (i, time) in times.into_iter().enumerate() {
                    let value = if i == last {
                        target
                    } else {
                        rng.i64(0..=target)
                    };
                    made.push(event(Some(value.to_string()), 1, time, rng));
                }
            }
        }
    }
    made
}

/// Where a meter ends a customer-period: `ratio` of what the plan includes (never past a hard
/// cap, never nothing), or a plausible amount where the plan sets no limit or does not bill
/// the meter.
fn meter_target(
    terms: Option<&MeterTerms>,
    aggregation: Aggregation,
    ratio: f64,
    rng: &mut fastrand::Rng,
) -> i64 {
    // Every customer uses every meter a little at least.
    match terms.and_then(|t| t.included.map(|limit| (limit, t.at_limit))) {
        Some((limit, AtLimit::Block)) => {
            ((limit as f64 * ratio.min(1.0)).round() as i64).clamp(1.min(limit), limit)
        }
        Some((limit, AtLimit::Overage)) => ((limit as f64 * ratio).round() as i64).max(1),
        None => match aggregation {
            Aggregation::Count => rng.i64(50..COUNT_CAP),
            Aggregation::Sum => rng.i64(20_000..2_000_000),
            Aggregation::UniqueCount => rng.i64(2..40),
            Aggregation::Max | Aggregation::Latest => rng.i64(1..100),
        },
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
