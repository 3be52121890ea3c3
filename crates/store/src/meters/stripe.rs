//! Where each meter's usage goes in Stripe, and how (docs/sync.md, "Meters in Stripe"): the
//! Stripe meter's event name, the formula that Stripe meter must aggregate by, and the
//! `group_by` dimensions sent as payload keys. Made from plans.toml once per sync, preview or
//! reconcile; the outbox and report queries read their SQL from it.
//!
//! - `sum` and `count` meters report amounts to add (a `sum` Stripe meter): per event in
//!   per_event mode, else one report per customer × meter × period × group, each carrying
//!   its group's values as dimensions.
//! - A `sum` or `count` meter whose `stripe_event` names `group_by` dimensions
//!   (`tokens_{model}`) reports each group to the Stripe event its values fill in: the name is
//!   made in SQL from the event's properties, so reports are packed per name as per group. An
//!   event without the value keeps the placeholder, a name no Stripe meter can have: the sync
//!   holds it (stripe's pipeline) rather than send it anywhere else.
//! - `max`, `unique_count` and `latest` meters report the meter's current value for the
//!   period (a `last` Stripe meter), always as reports (one per customer × meter × period,
//!   no dimensions: Stripe's `last` takes one value per customer), in either mode.
//! - The `usage` meter of a plans.toml without `[[meters]]` reports as it always has: to the
//!   event name its period was counted under (the plan's `meter_event`). Events counted on
//!   `usage` before `[[meters]]` was added go there too. Events of a meter plans.toml no
//!   longer has are kept and not sent.

use serde::Serialize;

use crate::db::params;

use crate::config::{
    Aggregation, Config, EventPart, IMPLICIT_METER, ReportMode, ReportUnits, event_parts,
};

/// How the Stripe meter of a meterline meter must aggregate (`default_aggregation.formula`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Formula {
    /// Each meter event carries an amount to add: for `sum` and `count` meters.
    Sum,
    /// Each meter event carries the meter's value; the latest one counts: for `max`,
    /// `unique_count` and `latest` meters.
    Last,
}

impl Formula {
    /// The formula a meter of this aggregation reports to.
    pub fn of(aggregation: Aggregation) -> Formula {
        match aggregation {
            Aggregation::Sum | Aggregation::Count => Formula::Sum,
            Aggregation::Max | Aggregation::UniqueCount | Aggregation::Latest => Formula::Last,
        }
    }

    /// Stripe's spelling (and `stripe_reports.formula`).
    pub fn as_str(self) -> &'static str {
        match self {
            Formula::Sum => "sum",
            Formula::Last => "last",
        }
    }
}

/// One meter's way to Stripe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The meterline meter.
    pub meter: String,
    /// The Stripe meter's event name; `None`: the one its period was counted under
    /// (`usage_records.meter_event_name`, the plan's `meter_event`).
    pub event_name: Option<String>,
    pub formula: Formula,
    /// Properties sent as payload keys (`payload[model]=small`); `sum` and `count` only.
    pub dimensions: Vec<String>,
    /// Which of an event's units a `sum` meter reports (`[stripe] report_units`).
    pub units: ReportUnits,
}

impl Route {
    /// The value of one of its events for a `sum` formula (see [`StripeMeters::amount_sql`]).
    pub(crate) fn amount_sql(&self) -> &'static str {
        amount_sql(self.units)
    }

    /// True when `event_name` has `{dim}` placeholders: each group reports to the Stripe
    /// meter its values name.
    pub fn is_pattern(&self) -> bool {
        self.event_name.as_deref().is_some_and(has_placeholder)
    }
}

/// The events of a pattern meter that report to one Stripe event name
/// ([`StripeMeters::named`]): what reconcile compares with that Stripe meter.
#[derive(Debug, Clone)]
pub struct EventNamed {
    /// The name over a usage event `e`.
    sql: String,
    pub name: String,
}

/// `EventNamed`'s condition `{sql} = ?n` (every event when there is none) and its value.
pub(crate) fn named_condition(only: Option<&EventNamed>, n: usize) -> (String, String) {
    match only {
        Some(f) => (format!("{} = ?{n}", f.sql), f.name.clone()),
        None => (format!("'' = ?{n}"), String::new()),
    }
}

/// Every meter's route, for one run.
#[derive(Debug, Clone)]
pub struct StripeMeters {
    routes: Vec<Route>,
    /// plans.toml has `[[meters]]` without `usage`: old `usage` events still go out.
    legacy_usage: bool,
    mode: ReportMode,
    units: ReportUnits,
    sql: Sql,
}

/// SQL fragments over a usage event `e` and its period's counter row `r`.
#[derive(Debug, Clone)]
struct Sql {
    /// The event's Stripe event name.
    event_name: String,
    /// Each meter with a route, and its event name (`r.meter_event_name`: its period's).
    routed: Vec<(String, String)>,
    /// The event's dimensions as a JSON object, or NULL.
    dimensions: String,
    /// Meter ids with a route: what is sent at all.
    known: String,
    /// Meters whose events go out one by one in per_event mode (`sum` formula).
    single: String,
    /// Meters whose events the sync packs into reports in this mode.
    packed: String,
    /// Meters of the `last` formula.
    last: String,
}

/// The Stripe event name of the meter in `meter_column`, from the `WHEN meter THEN name` of
/// the meters named in plans.toml, else its period row's (`r`) name.
fn event_name_of(meter_column: &str, named: &[String]) -> String {
    if named.is_empty() {
        "r.meter_event_name".to_string()
    } else {
        format!(
            "(CASE {meter_column} {} ELSE r.meter_event_name END)",
            named.join(" ")
        )
    }
}

/// The usage event's properties, as JSON: what the event's group values are read from.
const EVENT_PROPERTIES: &str = "e.properties";

/// The value of property `dim` in the JSON object `json` (an event's properties or a group's
/// key). Property names are plain (letters, digits, '_', '-', '.'): quoted in the path, a '.'
/// is part of the name.
fn property_sql(json: &str, dim: &str) -> String {
    format!("json_extract({json}, {})", literal(&format!("$.\"{dim}\"")))
}

/// True when a `stripe_event` names `{dim}` placeholders.
fn has_placeholder(name: &str) -> bool {
    event_parts(name).is_ok_and(|parts| parts.iter().any(|p| matches!(p, EventPart::Dim(_))))
}

/// A meter's Stripe event name as SQL over the JSON object `json` of an event's (or a group's)
/// values: its text, each placeholder filled with that dimension's value, or left as it is
/// when there is none (the braces make it a name Stripe refuses, so the sync holds it).
fn name_sql(name: &str, json: &str) -> String {
    let parts = match event_parts(name) {
        Ok(parts) if has_placeholder(name) => parts,
        _ => return literal(name),
    };
    let pieces: Vec<String> = parts
        .iter()
        .map(|part| match part {
            EventPart::Text(text) => literal(text),
            EventPart::Dim(dim) => format!(
                "COALESCE({}, {})",
                property_sql(json, dim),
                literal(&format!("{{{dim}}}"))
            ),
        })
        .collect();
    format!("({})", pieces.join(" || "))
}

/// `text` as an SQL string literal.
pub(crate) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The items of an `IN (…)` list; `NULL` for none, which matches nothing (Postgres has no
/// empty list).
fn list<'a>(ids: impl Iterator<Item = &'a str>) -> String {
    let items: Vec<String> = ids.map(literal).collect();
    if items.is_empty() {
        "NULL".to_owned()
    } else {
        items.join(", ")
    }
}

/// The route of events stored under the implicit meter's id by a plans.toml that had no
/// `[[meters]]` then: the event name their period was counted under. (The one place the id
/// matters: it is in those events' rows.)
fn former_implicit(units: ReportUnits) -> Route {
    Route {
        meter: IMPLICIT_METER.into(),
        event_name: None,
        formula: Formula::Sum,
        dimensions: Vec::new(),
        units,
    }
}

impl StripeMeters {
    /// The routes plans.toml gives.
    pub fn new(config: &Config) -> StripeMeters {
        // The implicit meter reports to the event its period was counted under.
        let implicit = config.implicit_meter().is_some();
        let routes: Vec<Route> = config
            .meters
            .iter()
            .map(|m| {
                let formula = Formula::of(m.aggregation);
                Route {
                    meter: m.id.clone(),
                    event_name: (!implicit).then(|| m.stripe_event.clone()),
                    formula,
                    dimensions: match formula {
                        // plans.toml refuses a group_by named like a key meterline sends.
                        Formula::Sum => m.group_by.clone(),
                        Formula::Last => Vec::new(),
                    },
                    units: config.stripe.report_units,
                }
            })
            .collect();
        let legacy_usage = !routes.iter().any(|r| r.meter == IMPLICIT_METER);
        let mut all: Vec<Route> = routes.clone();
        all.extend(legacy_usage.then(|| former_implicit(config.stripe.report_units)));
        let mode = config.stripe.report;
        let ids = |keep: &dyn Fn(&Route) -> bool| {
            list(all.iter().filter(|r| keep(r)).map(|r| r.meter.as_str()))
        };
        let named: Vec<String> = all
            .iter()
            .filter_map(|r| {
                let name = r.event_name.as_ref()?;
                Some(format!(
                    "WHEN {} THEN {}",
                    literal(&r.meter),
                    name_sql(name, EVENT_PROPERTIES)
                ))
            })
            .collect();
        let event_name = event_name_of("e.meter_id", &named);
        let routed = all
            .iter()
            .map(|r| {
                let name = r
                    .event_name
                    .as_deref()
                    .map_or_else(|| "r.meter_event_name".to_string(), literal);
                (literal(&r.meter), name)
            })
            .collect();
        let grouped: Vec<String> = all
            .iter()
            .filter(|r| !r.dimensions.is_empty())
            .map(|r| {
                let pairs: Vec<String> = r
                    .dimensions
                    .iter()
                    .map(|d| format!("{}, {}", literal(d), property_sql(EVENT_PROPERTIES, d)))
                    .collect();
                format!(
                    "WHEN {} THEN json_object({})",
                    literal(&r.meter),
                    pairs.join(", ")
                )
            })
            .collect();
        let dimensions = if grouped.is_empty() {
            // Not a bare NULL: PostgreSQL refuses a literal in GROUP BY ("non-integer
            // constant"), and the previews group by this expression.
            "CAST(NULL AS TEXT)".to_string()
        } else {
            format!("(CASE e.meter_id {} END)", grouped.join(" "))
        };
        let sql = Sql {
            event_name,
            routed,
            dimensions,
            known: ids(&|_| true),
            single: ids(&|r| r.formula == Formula::Sum),
            packed: ids(&|r| mode == ReportMode::Aggregate || r.formula == Formula::Last),
            last: ids(&|r| r.formula == Formula::Last),
        };
        StripeMeters {
            routes,
            legacy_usage,
            mode,
            units: config.stripe.report_units,
            sql,
        }
    }

    /// The routes of plans.toml's meters, in its order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route of a meter (the former implicit one's included when old events may still
    /// need it).
    pub fn route(&self, meter: &str) -> Option<Route> {
        self.routes
            .iter()
            .find(|r| r.meter == meter)
            .cloned()
            .or_else(|| self.legacy_route().filter(|r| r.meter == meter))
    }

    /// plans.toml has `[[meters]]` and none with the implicit meter's id: events counted on
    /// the implicit meter before `[[meters]]` was added still report to their period's event
    /// name, by this route.
    pub fn legacy_route(&self) -> Option<Route> {
        self.legacy_usage.then(|| former_implicit(self.units))
    }

    /// The events of a pattern meter that report to the Stripe event `name`; `None` for a
    /// meter without a pattern (all its events report to its one name).
    pub fn named(&self, meter: &str, name: &str) -> Option<EventNamed> {
        let route = self
            .routes
            .iter()
            .find(|r| r.meter == meter && r.is_pattern())?;
        Some(EventNamed {
            sql: name_sql(route.event_name.as_deref()?, EVENT_PROPERTIES),
            name: name.to_string(),
        })
    }

    /// The mode the routes were made for.
    pub fn mode(&self) -> ReportMode {
        self.mode
    }

    pub(crate) fn event_name_sql(&self) -> &str {
        &self.sql.event_name
    }

    /// The Stripe event name of the meter in `meter_column` (over a period row `r`), NULL for
    /// a meter without a route (removed from plans.toml: never sent).
    pub(crate) fn routed_event_name_sql(&self, meter_column: &str) -> String {
        let whens: Vec<String> = self
            .sql
            .routed
            .iter()
            .map(|(meter, name)| format!("WHEN {meter} THEN {name}"))
            .collect();
        format!("(CASE {meter_column} {} ELSE NULL END)", whens.join(" "))
    }

    pub(crate) fn dimensions_sql(&self) -> &str {
        &self.sql.dimensions
    }

    pub(crate) fn known_sql(&self) -> &str {
        &self.sql.known
    }

    pub(crate) fn single_sql(&self) -> &str {
        &self.sql.single
    }

    pub(crate) fn packed_sql(&self) -> &str {
        &self.sql.packed
    }

    pub(crate) fn last_sql(&self) -> &str {
        &self.sql.last
    }

    /// The value of one event for a `sum` formula: every unit it added ([`AMOUNT`]), or with
    /// `report_units = "billable"` those neither the allowance nor credits covered.
    pub(crate) fn amount_sql(&self) -> &'static str {
        amount_sql(self.units)
    }
}

/// The Stripe event names of pattern meters; serves `doctor` and `reconcile`.
impl crate::Store {
    /// The Stripe event names a pattern meter's groups make, from the groups counted (in one
    /// customer's period, or in all): the Stripe meters it needs. Empty for a meter without a
    /// pattern. A group without a value makes a name with its placeholder left in.
    pub fn pattern_event_names(
        &self,
        meters: &StripeMeters,
        meter: &str,
        period: Option<(&str, &str)>,
    ) -> crate::Result<Vec<String>> {
        let Some(pattern) = meters
            .routes
            .iter()
            .find(|r| r.meter == meter && r.is_pattern())
            .and_then(|r| r.event_name.as_deref())
        else {
            return Ok(Vec::new());
        };
        let select = format!(
            "SELECT DISTINCT {} AS name FROM meter_counters m
             WHERE m.meter_id = ?1 AND m.group_key <> ''",
            name_sql(pattern, "m.group_key")
        );
        let read = |r: &crate::db::Row| r.get(0);
        match period {
            // One customer's period: through the counters' key (reconcile, per customer).
            Some((customer, period_start)) => self
                .conn
                .prepare_cached(&format!(
                    "{select} AND m.customer_id = ?2 AND m.period_start = ?3 ORDER BY name"
                ))?
                .query_map(params![meter, customer, period_start], read)?
                .collect(),
            None => self
                .conn
                .prepare(&format!("{select} ORDER BY name"))?
                .query_map(params![meter], read)?
                .collect(),
        }
    }
}

/// The value of one event for a `sum` formula: what it added to its meter.
pub(crate) const AMOUNT: &str = "COALESCE(e.amount, e.quantity)";

/// The same, billable units only (an event from before they were kept bills all its units).
const BILLABLE: &str = "COALESCE(e.billable, e.amount, e.quantity)";

/// The value of one event for a `sum` formula under `units`.
fn amount_sql(units: ReportUnits) -> &'static str {
    match units {
        ReportUnits::All => AMOUNT,
        ReportUnits::Billable => BILLABLE,
    }
}

/// Dimensions stored as a JSON object (`{"model":"small"}`), as payload pairs: only the
/// values present (a missing dimension is JSON null and sent as no key).
pub(crate) fn dimension_pairs(json: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let Some(json) = json else {
        return Ok(Vec::new());
    };
    let object: std::collections::BTreeMap<String, Option<String>> =
        serde_json::from_str(json).map_err(|e| format!("dimensions {json}: {e}"))?;
    Ok(object
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text, "plans.toml").unwrap()
    }

    #[test]
    fn a_pattern_is_filled_from_each_events_values_or_left_unfilled() {
        let meters = StripeMeters::new(&config(
            r#"
[[meters]]
id = "tokens"
aggregation = "sum"
property = "tokens"
group_by = ["model"]
stripe_event = "tokens_{model}"
[[meters]]
id = "requests"
aggregation = "count"
[[plans]]
id = "free"
"#,
        ));
        assert!(meters.route("tokens").unwrap().is_pattern());
        assert!(!meters.route("requests").unwrap().is_pattern());
        assert!(meters.named("requests", "requests").is_none());
        let filled = "('tokens_' || COALESCE(json_extract(e.properties, '$.\"model\"'), \
                      '{model}'))";
        assert_eq!(meters.named("tokens", "tokens_small").unwrap().sql, filled);
        assert!(
            meters
                .event_name_sql()
                .contains(&format!("WHEN 'tokens' THEN {filled}"))
        );
    }

    #[test]
    fn without_meters_usage_reports_to_the_periods_event() {
        let meters = StripeMeters::new(&config("[[plans]]\nid = \"free\"\n"));
        assert_eq!(
            meters.routes(),
            [Route {
                meter: "usage".into(),
                event_name: None,
                formula: Formula::Sum,
                dimensions: vec![],
                units: ReportUnits::All,
            }]
        );
        assert!(meters.legacy_route().is_none());
        assert_eq!(meters.event_name_sql(), "r.meter_event_name");
        assert_eq!(meters.dimensions_sql(), "CAST(NULL AS TEXT)");
        assert_eq!(meters.known_sql(), "'usage'");
    }

    #[test]
    fn each_meter_has_its_event_formula_and_dimensions() {
        let meters = StripeMeters::new(&config(
            r#"
[stripe]
report = "per_event"
[[meters]]
id = "tokens"
aggregation = "sum"
property = "tokens"
group_by = ["model", "region.name"]
stripe_event = "ai_tokens"
[[meters]]
id = "users"
aggregation = "unique_count"
property = "user"
group_by = ["model"]
[[plans]]
id = "free"
"#,
        ));
        let tokens = meters.route("tokens").unwrap();
        assert_eq!(tokens.event_name.as_deref(), Some("ai_tokens"));
        assert_eq!(tokens.dimensions, ["model", "region.name"]);
        let users = meters.route("users").unwrap();
        assert_eq!((users.formula, users.dimensions.len()), (Formula::Last, 0));
        // Old events on `usage` still go to their period's event name.
        assert!(meters.legacy_route().is_some());
        assert_eq!(meters.route("usage").unwrap().event_name, None);
        assert_eq!(meters.single_sql(), "'tokens', 'usage'");
        assert_eq!(meters.packed_sql(), "'users'");
        assert_eq!(meters.last_sql(), "'users'");
        assert!(
            meters
                .dimensions_sql()
                .contains("json_extract(e.properties, '$.\"region.name\"')")
        );
        assert_eq!(
            dimension_pairs(Some(r#"{"model":"small","region":null}"#)).unwrap(),
            [("model".to_string(), "small".to_string())]
        );
    }
}
