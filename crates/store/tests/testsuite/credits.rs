//! The credit ledger under random sequences of grants and voids, on both engines: after each
//! sequence every balance is the sum of its ledger, the store's balance is the model's, a
//! void removes exactly the remainder once, and the live grants come in the documented burn
//! order (checked against an order written here, not the store's `burn_order`).

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use meterline_core::Config;
use meterline_store::{CreditBalance, Decimal, NewCustomer, NewGrant, Store};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::support::{AI_PLANS, Engine, TestDb, engine_tests, run_cases};

engine_tests!(random_grants_and_voids_keep_every_balance_the_sum_of_its_ledger);

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap()
}

/// One step of a sequence.
#[derive(Debug, Clone)]
enum Op {
    Grant {
        customer: usize,
        /// In millionths (money) or whole units (a meter).
        amount: u64,
        meter: Option<&'static str>,
        priority: u8,
        /// Hours from now (negative: already in effect).
        effective: i64,
        /// Hours after `effective`, if it expires.
        lasts: Option<i64>,
        promotional: bool,
    },
    /// Void the grant at this index of those made so far (modulo), perhaps again.
    Void(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (
            0..2usize,
            1..5_000_000u64,
            prop_oneof![Just(None), Just(Some("tokens")), Just(Some("requests"))],
            // Few priorities, so ties go on to the next keys of the order.
            prop_oneof![Just(0u8), Just(100), Just(255)],
            -48..48i64,
            prop_oneof![Just(None), (1..96i64).prop_map(Some)],
            any::<bool>(),
        )
            .prop_map(|(customer, amount, meter, priority, effective, lasts, promotional)| {
                Op::Grant { customer, amount, meter, priority, effective, lasts, promotional }
            }),
        1 => any::<usize>().prop_map(Op::Void),
    ]
}

/// What the test knows of a grant.
struct Model {
    id: i64,
    customer: String,
    meter: Option<&'static str>,
    amount: Decimal,
    priority: u8,
    effective: DateTime<Utc>,
    expires: Option<DateTime<Utc>>,
    promotional: bool,
    voided: bool,
    /// An expiry entry removed its remainder (written by a later grant to its customer).
    expired: bool,
}

impl Model {
    fn remaining(&self) -> Decimal {
        if self.voided || self.expired {
            Decimal::ZERO
        } else {
            self.amount
        }
    }

    fn live(&self) -> bool {
        !self.voided && self.expires.is_none_or(|at| at > now())
    }
}

fn run_case(
    store: &mut Store,
    config: &Config,
    case: usize,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let customers: Vec<String> = (0..2).map(|i| format!("c{case}-{i}")).collect();
    for id in &customers {
        let customer = NewCustomer {
            id: id.clone(),
            name: None,
            plan_id: "pro".into(),
            stripe_customer_id: None,
            billing_anchor: Some(NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()),
        };
        store.add_customer(config, &customer, now()).unwrap();
    }
    let mut grants: Vec<Model> = Vec::new();
    for op in ops {
        match op {
            Op::Grant {
                customer,
                amount,
                meter,
                priority,
                effective,
                lasts,
                promotional,
            } => {
                let amount = match meter {
                    Some(_) => Decimal::from(*amount),
                    None => Decimal::new(*amount as i64, 6),
                };
                let effective = now() + Duration::hours(*effective);
                let expires = lasts.map(|h| effective + Duration::hours(h));
                let request = NewGrant {
                    meter: meter.map(str::to_string),
                    priority: *priority,
                    effective_at: Some(effective),
                    expires_at: expires,
                    promotional: *promotional,
                    ..NewGrant::new(&customers[*customer], &amount.to_string())
                };
                let granted = store.grant_credits(config, &request, now()).unwrap();
                // A grant first writes the expiry of its customer's grants expired with
                // credits left.
                for old in grants
                    .iter_mut()
                    .filter(|g| g.customer == customers[*customer])
                {
                    if old.expires.is_some_and(|at| at <= now()) && !old.remaining().is_zero() {
                        old.expired = true;
                    }
                }
                prop_assert!(!granted.duplicate);
                prop_assert_eq!(granted.grant.amount, amount.normalize());
                grants.push(Model {
                    id: granted.grant.id,
                    customer: customers[*customer].clone(),
                    meter: *meter,
                    amount,
                    priority: *priority,
                    effective,
                    expires,
                    promotional: *promotional,
                    voided: false,
                    expired: false,
                });
            }
            Op::Void(index) if !grants.is_empty() => {
                let index = index % grants.len();
                let grant = &mut grants[index];
                let voided = store.void_grant(Some(config), grant.id, now()).unwrap();
                prop_assert_eq!(voided.removed, grant.remaining());
                prop_assert_eq!(voided.already, grant.voided);
                grant.voided = true;
            }
            Op::Void(_) => {}
        }
    }
    for customer in &customers {
        let balance = store.credit_balance(customer, now()).unwrap();
        let mine: Vec<&Model> = grants.iter().filter(|g| &g.customer == customer).collect();
        check_balance(&balance, &mine)?;
        // The ledger's sum is every grant's remainder, expired ones too until an expiry entry.
        let entries = store.credit_ledger(customer, None).unwrap();
        let sum: Decimal = entries.iter().map(|e| e.amount).sum();
        let remainders: Decimal = mine.iter().map(|g| g.remaining()).sum();
        prop_assert_eq!(sum, remainders);
        // One entry per grant, one per grant voided (voiding again writes nothing) and one
        // per grant expired with credits left.
        let voided = mine.iter().filter(|g| g.voided).count();
        let expired = mine.iter().filter(|g| g.expired).count();
        prop_assert_eq!(entries.len(), mine.len() + voided + expired);
    }
    let check = store.check_ledger().unwrap();
    prop_assert!(check.mismatches.is_empty(), "{:?}", check.mismatches);
    Ok(())
}

/// The store's balance against the model: the same live grants and remainders, the sums of
/// those in effect, and the burn order.
fn check_balance(balance: &CreditBalance, grants: &[&Model]) -> Result<(), TestCaseError> {
    let mut live: Vec<&&Model> = grants.iter().filter(|g| g.live()).collect();
    // The documented order, written out: meter units first, lower priority, the soonest
    // expiry (none last), promotional, the earlier effective_at, the lower id.
    live.sort_by_key(|g| {
        (
            g.meter.is_none(),
            g.priority,
            g.expires.is_none(),
            g.expires,
            !g.promotional,
            g.effective,
            g.id,
        )
    });
    let listed: Vec<(i64, Decimal)> = balance
        .grants
        .iter()
        .map(|g| (g.grant.id, g.remaining))
        .collect();
    let expected: Vec<(i64, Decimal)> = live.iter().map(|g| (g.id, g.remaining())).collect();
    prop_assert_eq!(listed, expected);
    let in_effect = |meter: Option<&str>| -> Decimal {
        live.iter()
            .filter(|g| g.meter == meter && g.effective <= now())
            .map(|g| g.remaining())
            .sum()
    };
    prop_assert_eq!(balance.money.balance, in_effect(None));
    prop_assert_eq!(balance.money.available, in_effect(None));
    for meter in ["tokens", "requests"] {
        let units = balance
            .units
            .get(meter)
            .map_or(Decimal::ZERO, |u| u.balance);
        prop_assert_eq!(units, in_effect(Some(meter)), "{}", meter);
    }
    Ok(())
}

fn random_grants_and_voids_keep_every_balance_the_sum_of_its_ledger(engine: Engine) {
    let db = TestDb::on(engine);
    let config = Config::parse(AI_PLANS, "plans.toml").unwrap();
    let cases = match engine {
        Engine::Sqlite => 128,
        Engine::Postgres => 32,
    };
    run_cases(
        db.open(),
        cases,
        prop::collection::vec(op(), 1..24),
        |store, case, ops| run_case(store, &config, case, &ops),
    );
}
