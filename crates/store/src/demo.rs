//! A realistic demo database: customers on every plan, at every warning level, six months of
//! history, an organisation with members, and some usage not yet reported to Stripe. On the
//! plans `init` writes it is a month of an AI API: each call one `completion` event feeding
//! requests, tokens and active users at once, over seven models, with customers near and past
//! each limit, and on a plan with rolling windows, customers at and near each window's limit.
//! Everything goes through the real `record` path, so the counters are exactly the events
//! (and no window is ever passed); the credits (some low, some expiring within days, some promotional, one
//! customer in debt after a settle past its cap) go through the real grant and reservation
//! paths, so the ledger is real too.

use chrono::{DateTime, Duration, Months, Utc};

use crate::billing::{Period, period_containing};
use crate::config::{
    Aggregation, AtLimit, Config, Limit, Meter, MeterTerms, Plan, QUANTITY, WindowKind,
};
use crate::{Error, RecordRequest, Result, Store};
use crate::{NewCustomer, NewGrant};

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
    // With `[[meters]]`: per plan, how many of its customers have been busiest on each meter
    // so far, so each plan has customers near and past each of its limits.
    let mut turns: std::collections::HashMap<&str, Vec<usize>> = Default::default();
    let events_per_customer = (spec.events / spec.customers as u64).max(1);
    let mut events = 0;
    let mut ids = Vec::with_capacity(spec.customers);
    // Each customer's plan and current period, for the windows' stories.
    let mut placed = Vec::with_capacity(spec.customers);
    for index in 0..spec.customers {
        let plan = pick_plan(config, (index, spec.customers), &mut rng);
        let name = match NAMES.get(index) {
            Some(name) => name.to_string(),
            None => format!("{} {}", NAMES[index % NAMES.len()], index / NAMES.len() + 1),
        };
        let id = slug(&name);
        ids.push(id.clone());
        // Anchors spread over a month, starting seven months back: six full periods of history.
        let mut anchor = (now - Duration::days(200 + rng.i64(0..31))).date_naive();
        if has_windows(plan) {
            // Its period began five days ago: a weekly window has most of a week behind it,
            // room for its story without passing the shorter windows.
            let began = (now - Duration::days(5)).date_naive();
            anchor = began.checked_sub_months(Months::new(7)).unwrap_or(anchor);
        }
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
            .then(|| {
                let turns = turns
                    .entry(plan.id.as_str())
                    .or_insert_with(|| vec![0; config.meters.len()]);
                pick_focus(config, plan, turns)
            })
            .flatten();
        let mut requests = Vec::new();
        let current = period_containing(anchor, config.billing.period, now);
        placed.push((id.clone(), plan, current));
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
                let terms = plan.meters.get(&config.default_meter().id);
                let units = units_for(plan, ratio, &mut rng).min(window_room(terms, span));
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
            events += recorded(store.record_batch(config, chunk, now)?)?;
        }
    }
    events += fill_windows(store, config, &placed, now, &mut rng)?;
    let unreported = store.settle_demo_reporting(now)?;
    grant_credits(store, config, &ids, now, &mut rng)?;
    if settle_into_debt(store, config, &ids, now)? {
        events += 1;
    }
    Ok(DemoSummary {
        customers: spec.customers,
        events,
        unreported,
    })
}

/// Which customers get credits, by their place in every ten: a paid grant nearly used up, a
/// promotional one expiring within days beside a paid one, a promotional welcome credit for
/// a month, a larger paid balance; the others none.
fn demo_grants(index: usize, now: DateTime<Utc>, rng: &mut fastrand::Rng) -> Vec<NewGrant> {
    let cents =
        |rng: &mut fastrand::Rng, range| format!("{}.{:02}", rng.u32(range), rng.u32(..100));
    let promotional = |amount: String, expires_at, note: &str| NewGrant {
        promotional: true,
        expires_at: Some(expires_at),
        note: Some(note.to_string()),
        ..NewGrant::new("", &amount)
    };
    match index % 10 {
        1 => vec![NewGrant::new("", &cents(rng, 1..3))],
        3 => vec![
            NewGrant::new("", &cents(rng, 20..60)),
            promotional(
                cents(rng, 5..15),
                now + Duration::hours(rng.i64(30..140)),
                "trial credit, ending soon",
            ),
        ],
        5 => vec![promotional(
            "25".into(),
            now + Duration::days(30),
            "welcome credit",
        )],
        8 => vec![NewGrant::new("", &cents(rng, 150..500))],
        _ => Vec::new(),
    }
}

/// Money credits for some customers ([`demo_grants`]), through the real grant path, each
/// under a `demo-` key. Plans with no price refuse money grants: the demo then has none.
fn grant_credits(
    store: &mut Store,
    config: &Config,
    ids: &[String],
    now: DateTime<Utc>,
    rng: &mut fastrand::Rng,
) -> Result<()> {
    let mut made = 0;
    for (index, id) in ids.iter().enumerate() {
        for (n, mut grant) in demo_grants(index, now, rng).into_iter().enumerate() {
            grant.customer = id.clone();
            grant.key = Some(format!("demo-{id}-{n}"));
            match store.grant_credits(config, &grant, now) {
                Ok(_) => made += 1,
                Err(Error::InvalidInput(_)) if made == 0 => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// One customer in debt: a reservation on a capped meter that sums, settled with more than the
/// room the cap left and no unit credits for the rest (a settle is never refused: the work
/// was done). The last customer with room and no credits for such a meter, if any; true when
/// one was settled (its event is the demo's too).
fn settle_into_debt(
    store: &mut Store,
    config: &Config,
    ids: &[String],
    now: DateTime<Utc>,
) -> Result<bool> {
    for id in ids.iter().rev() {
        let Ok(check) = store.metered_check(config, id, now) else {
            continue;
        };
        let Some(plan) = config.plan(&check.check.plan) else {
            continue;
        };
        for standing in &check.meters {
            let Some(meter) = config.meter(&standing.meter) else {
                continue;
            };
            // A meter with windows keeps within them: a settle would pass them.
            let capped = plan
                .meters
                .get(&meter.id)
                .is_some_and(|t| t.at_limit == AtLimit::Block && t.limits.is_empty());
            let room = standing.check.limit.map_or(0, |l| l - standing.check.used);
            if !capped
                || meter.aggregation != Aggregation::Sum
                || room <= 0
                || standing.credits.is_some()
            {
                continue;
            }
            let properties = |units: i64| {
                let property = meter.property.as_deref().unwrap_or(QUANTITY);
                let mut properties =
                    meterline_core::Properties::from([(property.into(), units.to_string())]);
                for dimension in &meter.group_by {
                    properties.insert(dimension.clone(), "small".into());
                }
                properties
            };
            let request = crate::NewReservation {
                customer: id.clone(),
                event_type: None,
                meter: Some(meter.id.clone()),
                properties: properties(1),
                ttl_secs: crate::DEFAULT_TTL_SECS,
                key: Some(format!("{DEBT_KEY}{id}")),
            };
            if let crate::Reserved::Held { reservation, .. } =
                store.reserve(config, &request, now)?
            {
                let used = room + (room / 10).max(25);
                store.settle(config, &reservation.id, Some(properties(used)), now)?;
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// The key of the demo's reservation settled into debt, before the customer's id (its event
/// is the one demo event of one meter alone, and past a cap).
pub const DEBT_KEY: &str = "demo-debt-";

/// True when some meter of `plan` has rolling windows.
fn has_windows(plan: &Plan) -> bool {
    plan.meters.values().any(|terms| !terms.limits.is_empty())
}

/// The first customer is the organisation on the biggest capped plan; others are spread so
/// every plan appears. Plans with windows take the last customers, one per story
/// (`WINDOW_STORIES`), when there are twice as many customers; the others are spread over the
/// plans without.
fn pick_plan<'c>(
    config: &'c Config,
    (index, customers): (usize, usize),
    rng: &mut fastrand::Rng,
) -> &'c Plan {
    let (windowed, plain): (Vec<&Plan>, Vec<&Plan>) =
        config.plans.iter().partition(|p| has_windows(p));
    let stories = WINDOW_STORIES.len();
    if !windowed.is_empty() && customers >= 2 * stories && index >= customers - stories {
        return windowed[(customers - 1 - index) % windowed.len()];
    }
    let plans = if plain.is_empty() { windowed } else { plain };
    if index == 0
        && let Some(team) = plans
            .iter()
            .filter(|p| p.at_limit == AtLimit::Overage && p.included.is_some())
            .max_by_key(|p| p.included)
    {
        return team;
    }
    if index < plans.len() * 2 {
        return plans[index % plans.len()];
    }
    plans[rng.usize(..plans.len())]
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

/// Where each meter's busiest customers of a plan end their current period, in turn: the first
/// two are near the limit and past it (at a hard cap), so even a small demo has both on each
/// meter; the fourth is past it again, so a plan billing overage has it on many calls.
const METER_RATIOS: &[f64] = &[
    0.88, 1.34, 0.35, 1.12, 0.96, 1.0, 0.62, 0.2, 0.83, 0.5, 0.71, 0.97,
];

/// The meter a customer on `plan` is busiest on, and the share of its limit it reaches: the
/// meter with the fewest busy customers of the plan so far among those the demo can fill (a count meter
/// only up to `COUNT_CAP` events), each meter going through `METER_RATIOS` in turn. None on a
/// plan with windows.
fn pick_focus(config: &Config, plan: &Plan, turns: &mut [usize]) -> Option<(usize, f64)> {
    // A plan with windows has the windows' stories instead (`fill_windows`).
    if has_windows(plan) {
        return None;
    }
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

/// The models an AI API serves: (name, share of the calls, tokens of a call relative to the
/// others). Mostly the small ones, as an AI API's traffic is; a large or vision call uses
/// more tokens than an embedding.
const MODELS: &[(&str, f64, f64)] = &[
    ("small", 0.28, 1.0),
    ("medium", 0.18, 1.6),
    ("tiny", 0.14, 0.5),
    ("embed", 0.12, 0.3),
    ("large", 0.12, 3.0),
    ("vision", 0.09, 2.4),
    ("code", 0.07, 2.0),
];

/// Values of a `group_by` dimension: AI models by `MODELS`' shares for `model`, three
/// regions otherwise.
fn dimension_value(dimension: &str, rng: &mut fastrand::Rng) -> String {
    if dimension == "model" {
        let mut left = rng.f64();
        for (model, share, _) in MODELS {
            if left < *share {
                return model.to_string();
            }
            left -= share;
        }
        MODELS[0].0.to_string()
    } else {
        format!("{dimension}-{}", ["eu", "us", "ap"][rng.usize(..3)])
    }
}

/// How many tokens a call to `model` uses compared to other calls (1 for any other value).
fn model_weight(model: Option<&str>) -> f64 {
    MODELS
        .iter()
        .find(|(name, ..)| Some(*name) == model)
        .map_or(1.0, |(_, _, weight)| *weight)
}

/// With `[[meters]]`: one customer-period's events of every event type, each meter at its own
/// level of the plan's terms (in the current period the customer's focus meter reaches its
/// share of `METER_RATIOS`, the others stay well within). A type one meter counts gets events
/// on that meter; a type several meters count gets calls of that type, each feeding them all.
fn meter_events(
    config: &Config,
    plan: &Plan,
    shape: &PeriodShape,
    rng: &mut fastrand::Rng,
) -> Vec<RecordRequest> {
    let mut made = Vec::new();
    let types = config.event_types();
    // The customer-period's events shared among the types.
    let budget = (shape.budget / types.len() as u64).max(1);
    for event_type in types {
        let meters: Vec<(&Meter, i64)> = config
            .meters
            .iter()
            .enumerate()
            .filter(|(_, meter)| meter.event == event_type)
            .map(|(position, meter)| {
                let ratio = meter_ratio(shape, position, rng);
                let terms = plan.meters.get(&meter.id);
                let target = meter_target(terms, meter.aggregation, ratio, rng);
                (meter, target.min(window_room(terms, shape.span)))
            })
            .collect();
        match meters[..] {
            [(meter, target)] => made.extend(one_meter_events(meter, target, shape, budget, rng)),
            _ => made.extend(typed_events(event_type, &meters, shape, budget, rng)),
        }
    }
    made
}

/// The share of its limit the meter at `position` ends the customer-period at.
fn meter_ratio(shape: &PeriodShape, position: usize, rng: &mut fastrand::Rng) -> f64 {
    match shape.focus {
        _ if !shape.current => 0.3 + rng.f64() * 0.8,
        // A little apart, so no two customers show the same figures; exactly at a cap
        // stays there.
        Some((focus, ratio)) if focus == position && ratio != 1.0 => {
            ratio + (rng.f64() - 0.5) * 0.02
        }
        Some((focus, ratio)) if focus == position => ratio,
        _ => 0.1 + rng.f64() * 0.5,
    }
}

/// How many events bring a count meter to `target`: a limit the demo can reach is reached in
/// the current period; a bigger one, and the history, get about `budget` events.
fn count_events(target: i64, shape: &PeriodShape, budget: u64, rng: &mut fastrand::Rng) -> i64 {
    if shape.current && target <= COUNT_CAP {
        target
    } else {
        about(budget, rng).min(target)
    }
}

/// Between half and one and a half times `budget`, at least 1.
fn about(budget: u64, rng: &mut fastrand::Rng) -> i64 {
    let budget = budget as i64;
    rng.i64(budget / 2..=budget * 3 / 2).max(1)
}

/// An event on `meter` alone, with its `group_by` values, `value` as its property.
fn meter_event(
    meter: &Meter,
    shape: &PeriodShape,
    value: Option<String>,
    quantity: i64,
    at: DateTime<Utc>,
    rng: &mut fastrand::Rng,
) -> RecordRequest {
    let mut request = RecordRequest::new(shape.customer, quantity, at);
    request.meter = Some(meter.id.clone());
    for dimension in &meter.group_by {
        request
            .properties
            .insert(dimension.clone(), dimension_value(dimension, rng));
    }
    if let Some(value) = value {
        let property = meter.property.as_deref().unwrap_or(QUANTITY);
        request.properties.insert(property.to_string(), value);
    }
    request
}

/// The events of a meter that alone counts its type, bringing it to `target`: requests
/// counted, tokens by model, distinct users, a max or latest value.
fn one_meter_events(
    meter: &Meter,
    target: i64,
    shape: &PeriodShape,
    budget: u64,
    rng: &mut fastrand::Rng,
) -> Vec<RecordRequest> {
    let mut made = Vec::new();
    let property = meter.property.as_deref().unwrap_or(QUANTITY);
    match meter.aggregation {
        Aggregation::Count => {
            for _ in 0..count_events(target, shape, budget, rng) {
                made.push(meter_event(meter, shape, None, 1, shape.at(rng), rng));
            }
        }
        Aggregation::Sum => {
            for amount in split(target, budget) {
                // The quantity is the amount unless the meter sums a property of its own.
                let own = property != QUANTITY;
                let value = own.then(|| amount.to_string());
                let quantity = if own { 1 } else { amount };
                made.push(meter_event(
                    meter,
                    shape,
                    value,
                    quantity,
                    shape.at(rng),
                    rng,
                ));
            }
        }
        Aggregation::UniqueCount => {
            // Every user once, then some of them again.
            let repeats = rng.i64(0..=target / 2);
            let mut users: Vec<i64> = (0..target).collect();
            users.extend((0..repeats).map(|_| rng.i64(0..target)));
            for n in users {
                let user = user_name(shape, n);
                made.push(meter_event(meter, shape, Some(user), 1, shape.at(rng), rng));
            }
        }
        Aggregation::Max | Aggregation::Latest => {
            let times = sorted_times(shape, budget.min(6) as usize, rng);
            for (time, value) in times.into_iter().zip(readings(target, budget.min(6), rng)) {
                made.push(meter_event(
                    meter,
                    shape,
                    Some(value.to_string()),
                    1,
                    time,
                    rng,
                ));
            }
        }
    }
    made
}

/// Calls of `event_type`, which every meter of `meters` counts: each call feeds them all at
/// once, so each meter's `target` is reached by how many calls there are (a count), what they
/// carry (tokens by model, their weights apart), their distinct users, or the reading of the
/// last one. In time order, as an API records them.
fn typed_events(
    event_type: &str,
    meters: &[(&Meter, i64)],
    shape: &PeriodShape,
    budget: u64,
    rng: &mut fastrand::Rng,
) -> Vec<RecordRequest> {
    let of = |aggregation: Aggregation| {
        meters
            .iter()
            .filter(move |(meter, _)| meter.aggregation == aggregation)
            .map(|(_, target)| *target)
    };
    let counted = of(Aggregation::Count).next();
    let calls = match counted {
        Some(target) => count_events(target, shape, budget, rng),
        None => about(budget, rng),
    };
    // A call per distinct value at least.
    let calls = calls
        .max(of(Aggregation::UniqueCount).max().unwrap_or(0))
        .max(1);
    let mut made: Vec<RecordRequest> = sorted_times(shape, calls as usize, rng)
        .into_iter()
        .map(|at| {
            let mut request = RecordRequest::new(shape.customer, 1, at);
            request.event_type = Some(event_type.to_string());
            request
        })
        .collect();
    for request in &mut made {
        for dimension in meters.iter().flat_map(|(meter, _)| &meter.group_by) {
            if !request.properties.contains_key(dimension) {
                let value = dimension_value(dimension, rng);
                request.properties.insert(dimension.clone(), value);
            }
        }
    }
    for &(meter, target) in meters {
        let values: Vec<String> = match meter.aggregation {
            Aggregation::Count => continue,
            Aggregation::Sum => {
                let weights: Vec<f64> = made
                    .iter()
                    .map(|r| model_weight(r.properties.get("model").map(String::as_str)))
                    .map(|weight| weight * (0.5 + rng.f64()))
                    .collect();
                split_weighted(target, &weights)
                    .iter()
                    .map(i64::to_string)
                    .collect()
            }
            Aggregation::UniqueCount => {
                // Every user once, the other calls by users already seen, in any order.
                let mut users: Vec<i64> = (0..target).collect();
                users.extend((target..calls).map(|_| rng.i64(0..target.max(1))));
                rng.shuffle(&mut users);
                users.into_iter().map(|n| user_name(shape, n)).collect()
            }
            Aggregation::Max | Aggregation::Latest => readings(target, calls as u64, rng)
                .iter()
                .map(i64::to_string)
                .collect(),
        };
        let property = meter.property.as_deref().unwrap_or(QUANTITY);
        for (request, value) in made.iter_mut().zip(values) {
            if property == QUANTITY {
                request.quantity = value.parse().unwrap_or(1);
            } else {
                request
                    .properties
                    .entry(property.to_string())
                    .or_insert(value);
            }
        }
    }
    made
}

/// A customer's `n`th end user.
fn user_name(shape: &PeriodShape, n: i64) -> String {
    user_of(shape.customer, n)
}

fn user_of(customer: &str, n: i64) -> String {
    format!("user-{n:03}@{customer}.example")
}

/// `count` moments of the period so far, earliest first.
fn sorted_times(shape: &PeriodShape, count: usize, rng: &mut fastrand::Rng) -> Vec<DateTime<Utc>> {
    let mut times: Vec<DateTime<Utc>> = (0..count).map(|_| shape.at(rng)).collect();
    times.sort();
    times
}

/// `count` readings of a max or latest meter ending at `target`: the last one carries it, so
/// it is the max and the latest alike.
fn readings(target: i64, count: u64, rng: &mut fastrand::Rng) -> Vec<i64> {
    let mut values: Vec<i64> = (1..count).map(|_| rng.i64(0..=target)).collect();
    values.push(target);
    values
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

/// The most a meter's usage over `span` seconds may add up to so that, spread at random, it
/// stays well within every window of `terms` (half of each window's limit per window), so
/// the windows refuse little of it; no bound without windows.
fn window_room(terms: Option<&MeterTerms>, span: i64) -> i64 {
    let limits = terms.map_or(&[][..], |t| t.limits.as_slice());
    limits
        .iter()
        .map(|limit| {
            let windows = (span as f64 / limit.window_secs as f64).max(1.0);
            (limit.limit as f64 * 0.5 * windows) as i64
        })
        .min()
        .unwrap_or(i64::MAX)
}

/// The windows' stories, each on its own customer among those on a plan with windows, in
/// turn: a fixed window near its limit, a sliding one full (its events refused until some
/// slide out). (kind, share of the limit).
const WINDOW_STORIES: &[(WindowKind, f64)] =
    &[(WindowKind::Fixed, 0.96), (WindowKind::Sliding, 1.0)];

/// A customer's first meter with windows, and that meter's first limit of `kind`.
fn limit_of<'c>(
    config: &'c Config,
    plan: &'c Plan,
    kind: WindowKind,
) -> Option<(&'c Meter, &'c Limit)> {
    config.meters.iter().find_map(|meter| {
        let limits = &plan.meters.get(&meter.id)?.limits;
        Some((meter, limits.iter().find(|l| l.kind == kind)?))
    })
}

/// Bring customers on a plan with windows to `WINDOW_STORIES`' levels through the record
/// path; the events recorded. A fixed window's story goes to the customer whose window has
/// been open longest, so its usage can be spread thin enough for the sliding windows.
fn fill_windows(
    store: &mut Store,
    config: &Config,
    placed: &[(String, &Plan, Period)],
    now: DateTime<Utc>,
    rng: &mut fastrand::Rng,
) -> Result<u64> {
    let mut free: Vec<&(String, &Plan, Period)> = placed.iter().collect();
    let mut events = 0;
    for &(kind, share) in WINDOW_STORIES {
        let open_for = |(_, plan, period): &&(String, &Plan, Period)| {
            limit_of(config, plan, kind).map(|(_, limit)| {
                let (start, _) = crate::billing::window::fixed_window(
                    limit,
                    now.timestamp(),
                    (period.start.timestamp(), period.end.timestamp()),
                );
                now.timestamp() - start
            })
        };
        let pick = match kind {
            WindowKind::Sliding => free.iter().position(|c| open_for(c).is_some()),
            WindowKind::Fixed => (0..free.len())
                .filter(|&i| open_for(&free[i]).is_some())
                .max_by_key(|&i| open_for(&free[i])),
        };
        let Some(pick) = pick else {
            continue;
        };
        let (customer, plan, period) = free.remove(pick);
        let Some((meter, limit)) = limit_of(config, plan, kind) else {
            continue;
        };
        let story = WindowStory {
            customer,
            plan,
            period: *period,
            meter,
            limit,
            target: (limit.limit as f64 * share).round() as i64,
        };
        events += story.fill(store, config, now, rng)?;
    }
    Ok(events)
}

/// One customer's window brought to `target` units.
struct WindowStory<'a> {
    customer: &'a str,
    plan: &'a Plan,
    period: Period,
    meter: &'a Meter,
    limit: &'a Limit,
    target: i64,
}

impl WindowStory<'_> {
    /// Most of what the window lacks in calls spread over it (a sliding window's last half,
    /// a fixed window's part so far), then the exact rest at `now` for a sliding window; the
    /// events recorded.
    fn fill(
        &self,
        store: &mut Store,
        config: &Config,
        now: DateTime<Utc>,
        rng: &mut fastrand::Rng,
    ) -> Result<u64> {
        let window = self.limit.window_secs;
        let (from, calls, share) = match self.limit.kind {
            WindowKind::Sliding => (now.timestamp() - window / 2, 24, 0.9),
            WindowKind::Fixed => {
                let (start, _) = crate::billing::window::fixed_window(
                    self.limit,
                    now.timestamp(),
                    (self.period.start.timestamp(), self.period.end.timestamp()),
                );
                // A call an hour of the window so far.
                let hours = ((now.timestamp() - start) / 3_600).clamp(1, 7 * 24);
                (start, hours, 1.0)
            }
        };
        let need = self.target - self.used(store, config, now)?;
        if need <= 0 {
            return Ok(0);
        }
        let spread = (need as f64 * share) as i64;
        let step = (now.timestamp() - 60 - from).max(1) / calls.max(1);
        let requests: Vec<RecordRequest> = split(spread, calls as u64)
            .into_iter()
            .enumerate()
            .filter_map(|(i, units)| {
                let at = DateTime::from_timestamp(from + step * i as i64, 0)?;
                Some(self.call(config, units, at, rng))
            })
            .collect();
        let mut events = recorded(store.record_batch(config, &requests, now)?)?;
        if self.limit.kind == WindowKind::Sliding {
            let rest = self.target - self.used(store, config, now)?;
            if rest > 0 {
                let last = [self.call(config, rest, now, rng)];
                events += recorded(store.record_batch(config, &last, now)?)?;
            }
        }
        Ok(events)
    }

    /// What the window holds at `now`.
    fn used(&self, store: &Store, config: &Config, now: DateTime<Utc>) -> Result<i64> {
        let at = (self.customer, self.meter.id.as_str());
        let windows = crate::windows::meter_windows(
            &store.conn,
            config,
            &self.plan.id,
            at,
            self.period,
            now,
        )?;
        let index = self
            .plan
            .meters
            .get(&self.meter.id)
            .and_then(|t| t.limits.iter().position(|l| l == self.limit));
        Ok(index.and_then(|i| windows.get(i)).map_or(0, |w| w.used))
    }

    /// One call at `at` adding `units` to the meter: an event of its type, feeding that
    /// type's other meters as little as a call can (one request, the customer's first user,
    /// 1 of a sum), with its `group_by` values.
    fn call(
        &self,
        config: &Config,
        units: i64,
        at: DateTime<Utc>,
        rng: &mut fastrand::Rng,
    ) -> RecordRequest {
        let mut request = RecordRequest::new(self.customer, 1, at);
        let fed: Vec<&Meter> = config
            .meters
            .iter()
            .filter(|m| m.event == self.meter.event)
            .collect();
        if fed.len() > 1 {
            request.event_type = Some(self.meter.event.clone());
        } else {
            request.meter = Some(self.meter.id.clone());
        }
        for meter in fed {
            for dimension in &meter.group_by {
                if !request.properties.contains_key(dimension) {
                    let value = dimension_value(dimension, rng);
                    request.properties.insert(dimension.clone(), value);
                }
            }
            let value = match meter.aggregation {
                _ if meter.id == self.meter.id => units.to_string(),
                Aggregation::Count => continue,
                Aggregation::UniqueCount => user_of(self.customer, 0),
                Aggregation::Sum | Aggregation::Max | Aggregation::Latest => "1".to_string(),
            };
            match meter.property.as_deref().filter(|p| *p != QUANTITY) {
                Some(property) => {
                    request.properties.insert(property.to_string(), value);
                }
                None => request.quantity = value.parse().unwrap_or(1),
            }
        }
        request
    }
}

/// How many of a batch's outcomes were recorded (a window or a cap may refuse some).
fn recorded(outcomes: Vec<Result<crate::RecordOutcome>>) -> Result<u64> {
    let mut events = 0;
    for outcome in outcomes {
        events += u64::from(outcome?.recorded);
    }
    Ok(events)
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

/// `total` split into one part per weight, each in proportion to its weight and at least 1
/// (a sum meter refuses 0): `total` is raised to the number of parts when it is less.
fn split_weighted(total: i64, weights: &[f64]) -> Vec<i64> {
    let spare = (total - weights.len() as i64).max(0);
    let sum: f64 = weights.iter().sum();
    let mut cumulative = 0.0;
    let mut given = 0;
    let mut parts: Vec<i64> = weights
        .iter()
        .map(|weight| {
            cumulative += weight;
            // Rounded cumulatively, so the parts add up to `spare` whatever the rounding.
            let upto = ((cumulative / sum * spare as f64).round() as i64).clamp(given, spare);
            let part = 1 + upto - given;
            given = upto;
            part
        })
        .collect();
    if let Some(last) = parts.last_mut() {
        *last += spare - given;
    }
    parts
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

    #[test]
    fn split_weighted_keeps_the_total_in_proportion() {
        let parts = super::split_weighted(1_000, &[1.0, 3.0, 0.5, 0.5]);
        assert_eq!(parts, [200, 599, 100, 101]);
        let parts = super::split_weighted(13_400_017, &[0.3, 2.4, 1.0, 0.71, 3.0]);
        assert_eq!(parts.iter().sum::<i64>(), 13_400_017);
        // Less than one per part: one each.
        assert_eq!(super::split_weighted(2, &[1.0, 2.0, 3.0]), [1, 1, 1]);
    }
}
