//! `[[meters]]` and each plan's `[plans.meters.ID]` terms: what is metered, how each meter
//! aggregates its events, and what a plan includes of it. A plans.toml without `[[meters]]`
//! has one implicit meter, `usage` (the sum of `quantity`), with the plan's own terms.

use std::collections::{BTreeMap, HashSet};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::AtLimit;
use super::raw::{RawMeter, RawPlanMeter};

/// The most meters one event type may feed: an event is a row per meter it feeds, written
/// together, so its rows are found within this many ids after its first.
pub const MAX_METERS_PER_TYPE: usize = 64;

/// The meter a plans.toml without `[[meters]]` has.
pub const IMPLICIT_METER: &str = "usage";
/// The event property a `sum` meter adds up unless it names another.
pub const QUANTITY: &str = "quantity";
/// Payload keys meterline sends in every Stripe meter event itself: no `group_by` may be
/// named so (its dimension would overwrite them).
const RESERVED_PAYLOAD_KEYS: [&str; 2] = ["value", "stripe_customer_id"];
/// Dimensions a meter may group by.
pub const MAX_GROUP_BY: usize = 3;

/// How a meter turns a period's events into one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// The sum of a numeric property.
    Sum,
    /// The number of events.
    Count,
    /// The largest value of a numeric property.
    Max,
    /// The number of distinct values of a property.
    UniqueCount,
    /// The value of the event with the latest time (ties broken by event id).
    Latest,
}

impl Aggregation {
    const ALL: [(&'static str, Aggregation); 5] = [
        ("sum", Aggregation::Sum),
        ("count", Aggregation::Count),
        ("max", Aggregation::Max),
        ("unique_count", Aggregation::UniqueCount),
        ("latest", Aggregation::Latest),
    ];

    /// The plans.toml spelling.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, a)| *a == self)
            .map_or("sum", |(name, _)| name)
    }

    fn parse(text: &str) -> Option<Aggregation> {
        Self::ALL.iter().find(|(n, _)| *n == text).map(|(_, a)| *a)
    }

    /// True when a total at its limit refuses every further event. A `max` or `latest` meter
    /// at its limit still takes that value again: only a value above it is refused.
    pub fn full_at_limit(self) -> bool {
        !matches!(self, Aggregation::Max | Aggregation::Latest)
    }

    /// True when the aggregated property must be a number.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            Aggregation::Sum | Aggregation::Max | Aggregation::Latest
        )
    }
}

/// One metered feature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Meter {
    pub id: String,
    pub name: String,
    pub aggregation: Aggregation,
    /// The event property aggregated; `None` for `count`.
    pub property: Option<String>,
    /// Dimensions (event properties) the usage is also broken down by, at most 3.
    pub group_by: Vec<String>,
    /// The Stripe meter's event name.
    pub stripe_event: String,
    /// The event type it counts (`event =`, default its id): every meter of a type is fed by
    /// each event of that type.
    pub event: String,
}

/// What a plan includes of one meter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeterTerms {
    /// Units included per period; `None` is unlimited.
    pub included: Option<i64>,
    pub at_limit: AtLimit,
    #[serde(with = "rust_decimal::serde::str_option")]
    pub overage_rate: Option<Decimal>,
    /// Rates per group, tried in order before `overage_rate` (`[[plans.meters.ID.rates]]`).
    /// Left out of the kept terms when there are none, so a period kept before them reads
    /// the same.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rates: Vec<super::rates::Rate>,
    /// Window limits (`[[plans.meters.ID.limits]]`), left out of the kept terms when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<super::limits::Limit>,
}

/// A plan's terms for every meter it names, keyed by meter id: `Plan::meters`, and what a
/// period keeps of them when it closes.
pub type MeterTermsMap = BTreeMap<String, MeterTerms>;

/// The terms a period keeps (`usage_records.meter_terms`, the JSON of a [`MeterTermsMap`]), in
/// the form `kept_meter_terms` reads back. Written with every period counter, so made once per
/// plan when plans.toml is read.
pub(super) fn keep_meter_terms(terms: &MeterTermsMap) -> String {
    serde_json::to_string(terms).unwrap_or_default()
}

/// The terms a period kept, or `None` when it kept none (a row written before migration 11)
/// or they no longer read (then plans.toml's apply, as for a row without kept terms).
pub fn kept_meter_terms(json: Option<&str>) -> Option<MeterTermsMap> {
    serde_json::from_str(json?).ok()
}

/// A mistake, with where it is in plans.toml when that is known.
pub(super) struct Mistake {
    pub span: Option<std::ops::Range<usize>>,
    pub message: String,
}

impl Mistake {
    pub(super) fn at<T>(spanned: &Spanned<T>, message: String) -> Mistake {
        Mistake {
            span: Some(spanned.span()),
            message,
        }
    }
}

/// The `usage` meter of a plans.toml without `[[meters]]`.
pub(super) fn implicit_meter(stripe_event: &str) -> Meter {
    Meter {
        id: IMPLICIT_METER.into(),
        name: "Usage".into(),
        aggregation: Aggregation::Sum,
        property: Some(QUANTITY.into()),
        group_by: Vec::new(),
        stripe_event: stripe_event.into(),
        event: IMPLICIT_METER.into(),
    }
}

/// Validate `[[meters]]`, in order. `check_event` is the Stripe event name rule.
pub(super) fn validate_meters(
    raw: Vec<RawMeter>,
    check_event: impl Fn(&str) -> Result<(), String>,
) -> Result<Vec<Meter>, Mistake> {
    let mut ids = HashSet::new();
    let mut events: Vec<String> = Vec::new();
    let mut meters = Vec::with_capacity(raw.len());
    for raw in raw {
        let id = raw.id.get_ref().clone();
        if !super::validate::is_plain_id(&id) {
            return Err(Mistake::at(
                &raw.id,
                format!(
                    "meter id \"{}\" must be non-empty letters, digits, '-' or '_'",
                    id.escape_debug()
                ),
            ));
        }
        if !ids.insert(id.clone()) {
            return Err(Mistake::at(&raw.id, format!("duplicate meter id \"{id}\"")));
        }
        let at = |m: String| format!("meter \"{id}\": {m}");
        let aggregation = Aggregation::parse(raw.aggregation.get_ref()).ok_or_else(|| {
            Mistake::at(
                &raw.aggregation,
                at(format!(
                    "aggregation = \"{}\" is not known; use \"sum\", \"count\", \"max\", \
                     \"unique_count\" or \"latest\"",
                    raw.aggregation.get_ref().escape_debug()
                )),
            )
        })?;
        let property = match (&raw.property, aggregation) {
            (Some(p), Aggregation::Count) => {
                return Err(Mistake::at(
                    p,
                    at("a count meter counts events; it takes no property".into()),
                ));
            }
            (None, Aggregation::Count) => None,
            (None, Aggregation::Sum) => Some(QUANTITY.to_string()),
            (None, other) => {
                return Err(Mistake::at(
                    &raw.aggregation,
                    at(format!(
                        "a {} meter needs property = \"…\", the event property it aggregates",
                        other.as_str()
                    )),
                ));
            }
            (Some(p), _) => {
                check_property_name(p.get_ref()).map_err(|m| Mistake::at(p, at(m)))?;
                Some(p.get_ref().clone())
            }
        };
        let group_by = match raw.group_by {
            None => Vec::new(),
            Some(spanned) => {
                let dims = spanned.get_ref();
                if dims.len() > MAX_GROUP_BY {
                    return Err(Mistake::at(
                        &spanned,
                        at(format!(
                            "group_by has {} properties; a meter groups by at most {MAX_GROUP_BY}",
                            dims.len()
                        )),
                    ));
                }
                let mut seen = HashSet::new();
                for dim in dims {
                    check_property_name(dim).map_err(|m| Mistake::at(&spanned, at(m)))?;
                    if RESERVED_PAYLOAD_KEYS.contains(&dim.as_str()) {
                        return Err(Mistake::at(
                            &spanned,
                            at(format!(
                                "group_by \"{dim}\" is a key Stripe's meter events reserve; \
                                 name the property otherwise"
                            )),
                        ));
                    }
                    if !seen.insert(dim) || Some(dim) == property.as_ref() {
                        return Err(Mistake::at(
                            &spanned,
                            at(format!(
                                "group_by names \"{dim}\" twice, or the aggregated property"
                            )),
                        ));
                    }
                }
                dims.clone()
            }
        };
        let stripe_event = match &raw.stripe_event {
            Some(e) => {
                check_stripe_event(e.get_ref(), aggregation, &group_by, &check_event)
                    .map_err(|m| Mistake::at(e, at(m)))?;
                e.get_ref().clone()
            }
            None => id.clone(),
        };
        if let Some(message) = shared_event(&events, &stripe_event) {
            let message = at(message);
            return Err(match &raw.stripe_event {
                Some(e) => Mistake::at(e, message),
                None => Mistake::at(&raw.id, message),
            });
        }
        events.push(stripe_event.clone());
        let event = match &raw.event {
            Some(e) if !super::validate::is_plain_id(e.get_ref()) => {
                return Err(Mistake::at(
                    e,
                    at(format!(
                        "event = \"{}\" must be non-empty letters, digits, '-' or '_'",
                        e.get_ref().escape_debug()
                    )),
                ));
            }
            Some(e) => e.get_ref().clone(),
            None => id.clone(),
        };
        if meters.iter().filter(|m: &&Meter| m.event == event).count() >= MAX_METERS_PER_TYPE {
            let place = raw
                .event
                .as_ref()
                .map_or_else(|| raw.id.span(), |e| e.span());
            return Err(Mistake {
                span: Some(place),
                message: at(format!(
                    "event type \"{event}\" feeds more than {MAX_METERS_PER_TYPE} meters"
                )),
            });
        }
        meters.push(Meter {
            event,
            name: raw.name.unwrap_or_else(|| id.clone()),
            id,
            aggregation,
            property,
            group_by,
            stripe_event,
        });
    }
    Ok(meters)
}

/// One piece of a meter's `stripe_event`: plain text, or a `{dim}` placeholder naming one of
/// its `group_by` dimensions, which each group fills with its value (docs/sync.md, "Prices
/// per model").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventPart<'a> {
    Text(&'a str),
    Dim(&'a str),
}

/// The pieces of a `stripe_event`; an error for a brace without its partner or an empty `{}`.
pub fn event_parts(pattern: &str) -> Result<Vec<EventPart<'_>>, String> {
    let mut parts = Vec::new();
    let mut rest = pattern;
    while !rest.is_empty() {
        let open = rest.find('{').unwrap_or(rest.len());
        let text = &rest[..open];
        if text.contains('}') {
            return Err(format!(
                "stripe_event \"{}\" has a '}}' without its '{{'",
                pattern.escape_debug()
            ));
        }
        if !text.is_empty() {
            parts.push(EventPart::Text(text));
        }
        rest = &rest[open..];
        if rest.is_empty() {
            break;
        }
        let close = rest.find('}').ok_or_else(|| {
            format!(
                "stripe_event \"{}\" has a '{{' without its '}}'",
                pattern.escape_debug()
            )
        })?;
        let dim = &rest[1..close];
        if dim.is_empty() || dim.contains('{') {
            return Err(format!(
                "stripe_event \"{}\": a placeholder is one group_by dimension between braces, \
                 as in \"tokens_{{model}}\"",
                pattern.escape_debug()
            ));
        }
        parts.push(EventPart::Dim(dim));
        rest = &rest[close + 1..];
    }
    Ok(parts)
}

/// The placeholder values that make `name` from a meter's `stripe_event`, the reverse of
/// filling it: `tokens_{model}` and "tokens_large" give model = "large"; a plain name that
/// equals `name` gives no values. `Ok(None)`: the pattern never makes `name` (nor does one
/// that does not parse). `Err`: more than one filling makes it (`a_{x}_{y}` and "a_b_c_d"),
/// and a caller must not guess which. Each value is at least one character, as the clash
/// check between meters (`shared_event`) assumes; a dimension named twice has one value.
pub fn stripe_event_values<'p, 'n>(
    pattern: &'p str,
    name: &'n str,
) -> Result<Option<Vec<(&'p str, &'n str)>>, String> {
    let Ok(parts) = event_parts(pattern) else {
        return Ok(None);
    };
    let mut found = Vec::new();
    fillings(&parts, name, &mut Vec::new(), &mut found);
    match found.len() {
        0 | 1 => Ok(found.pop()),
        _ => {
            let reading = |values: &[(&str, &str)]| {
                let mut unique = values.to_vec();
                unique.dedup();
                unique
                    .iter()
                    .map(|(dim, value)| format!("{dim} = \"{}\"", crate::sanitize::sanitize(value)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            Err(format!(
                "event_name \"{}\" fills stripe_event \"{pattern}\" in more than one way \
                 ({}, or {}); send such events to meterline's own routes, with the dimensions \
                 as properties",
                crate::sanitize::sanitize(name),
                reading(&found[0]),
                reading(&found[1])
            ))
        }
    }
}

/// Collect into `found` up to two ways to fill `parts` that make exactly `name`, `values`
/// being the placeholders filled so far, in pattern order.
fn fillings<'p, 'n>(
    parts: &[EventPart<'p>],
    name: &'n str,
    values: &mut Vec<(&'p str, &'n str)>,
    found: &mut Vec<Vec<(&'p str, &'n str)>>,
) {
    if found.len() >= 2 {
        return;
    }
    match parts.split_first() {
        None if name.is_empty() => found.push(values.clone()),
        None => {}
        Some((EventPart::Text(text), rest)) => {
            if let Some(after) = name.strip_prefix(text) {
                fillings(rest, after, values, found);
            }
        }
        Some((EventPart::Dim(dim), rest)) => {
            for (start, c) in name.char_indices() {
                let (value, after) = name.split_at(start + c.len_utf8());
                let same_dim_other_value = values.iter().any(|(d, v)| d == dim && *v != value);
                if !same_dim_other_value {
                    values.push((dim, value));
                    fillings(rest, after, values, found);
                    values.pop();
                }
            }
        }
    }
}

/// True when `name` is a Stripe meter event name: 1 to 100 letters, digits, '_', '-', '.'
/// or ':'. A pattern's names are checked against it when each group fills it, at sync.
pub fn is_stripe_event_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c))
}

/// A meter's `stripe_event`: a plain name (`check_event`), or a pattern whose placeholders
/// each name one of its `group_by` dimensions, on a meter that reports per group (sum and
/// count; the others send one value per customer), and whose text is a name's.
fn check_stripe_event(
    pattern: &str,
    aggregation: Aggregation,
    group_by: &[String],
    check_event: impl Fn(&str) -> Result<(), String>,
) -> Result<(), String> {
    let parts = event_parts(pattern)?;
    let dims: Vec<&str> = parts
        .iter()
        .filter_map(|p| match p {
            EventPart::Dim(d) => Some(*d),
            EventPart::Text(_) => None,
        })
        .collect();
    let Some(first) = dims.first() else {
        return check_event(pattern);
    };
    if !matches!(aggregation, Aggregation::Sum | Aggregation::Count) {
        return Err(format!(
            "stripe_event \"{pattern}\" names {{{first}}}, but a {} meter reports one value \
             per customer, not one per group; only sum and count meters may",
            aggregation.as_str()
        ));
    }
    if group_by.is_empty() {
        return Err(format!(
            "stripe_event \"{pattern}\" names {{{first}}}, but the meter has no group_by"
        ));
    }
    if let Some(unknown) = dims.iter().find(|d| !group_by.iter().any(|g| g == *d)) {
        return Err(format!(
            "stripe_event \"{pattern}\" names {{{unknown}}}, which is not in its group_by ({})",
            group_by.join(", ")
        ));
    }
    // The text around the placeholders, each filled with one letter, must make a name.
    let sample: String = parts
        .iter()
        .map(|p| match p {
            EventPart::Text(t) => *t,
            EventPart::Dim(_) => "x",
        })
        .collect();
    if !is_stripe_event_name(&sample) {
        return Err(format!(
            "stripe_event \"{pattern}\": outside its placeholders a Stripe event name may only \
             contain letters, digits, '_', '-', '.', ':', and is at most 100 characters"
        ));
    }
    Ok(())
}

/// The names an event could make: a pattern makes any name that starts with its text before
/// the first placeholder and ends with its text after the last one (the values may hold
/// anything, the text between placeholders included).
fn claim(event: &str) -> (&str, Option<&str>) {
    match (event.find('{'), event.rfind('}')) {
        (Some(open), Some(close)) => (&event[..open], Some(&event[close + 1..])),
        _ => (event, None),
    }
}

/// Why `event` may not go beside the Stripe events already taken, if it may not: two meters
/// never report to one Stripe meter, so two names or patterns that could make the same name
/// are refused.
fn shared_event(taken: &[String], event: &str) -> Option<String> {
    let clash = |other: &str| match (claim(event), claim(other)) {
        ((a, None), (b, None)) => a == b,
        ((name, None), (prefix, Some(suffix))) | ((prefix, Some(suffix)), (name, None)) => {
            name.len() > prefix.len() + suffix.len()
                && name.starts_with(prefix)
                && name.ends_with(suffix)
        }
        ((p1, Some(s1)), (p2, Some(s2))) => {
            (p1.starts_with(p2) || p2.starts_with(p1)) && (s1.ends_with(s2) || s2.ends_with(s1))
        }
    };
    let other = taken.iter().find(|other| clash(other))?;
    Some(if other == event {
        format!(
            "stripe_event \"{event}\" is already another meter's; each meter reports to a \
             Stripe meter of its own"
        )
    } else {
        format!(
            "stripe_event \"{event}\" could make the same Stripe event name as another meter's \
             \"{other}\" (a placeholder stands for any text); each meter reports to Stripe \
             meters of its own"
        )
    })
}

/// Validate one plan's `[plans.meters.ID]` tables against the meters.
pub(super) fn validate_plan_meters(
    raw: BTreeMap<Spanned<String>, Spanned<RawPlanMeter>>,
    meters: &[Meter],
    terms_of: impl Fn(
        Option<i64>,
        Option<String>,
        Option<super::raw::RawAmount>,
    ) -> Result<MeterTerms, String>,
    amount_of: impl Fn(super::raw::RawAmount) -> Result<Decimal, String>,
) -> Result<MeterTermsMap, Mistake> {
    let mut terms = BTreeMap::new();
    for (id, table) in raw {
        if !meters.iter().any(|m| &m.id == id.get_ref()) {
            let known: Vec<&str> = meters.iter().map(|m| m.id.as_str()).collect();
            return Err(Mistake::at(
                &id,
                format!(
                    "[plans.meters.{}] names a meter that is not in [[meters]]; the meters are: {}",
                    id.get_ref().escape_debug(),
                    known.join(", ")
                ),
            ));
        }
        let span = table.span();
        let table = table.into_inner();
        let mut meter_terms = terms_of(table.included, table.at_limit, table.overage_rate)
            .map_err(|m| Mistake {
                span: Some(span.clone()),
                message: format!("[plans.meters.{}]: {m}", id.get_ref()),
            })?;
        if let Some(meter) = meters.iter().find(|m| &m.id == id.get_ref()) {
            if let Some(rates) = table.rates {
                meter_terms.rates =
                    super::rates::validate_rates(rates, meter, &meter_terms, &amount_of)?;
            }
            if let Some(limits) = table.limits {
                meter_terms.limits = super::limits::validate_limits(limits, meter)?;
            }
        }
        terms.insert(id.into_inner(), meter_terms);
    }
    Ok(terms)
}

/// Property names are plain identifiers: what `--property KEY=VALUE` and JSON can both name.
fn check_property_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        return Err(format!(
            "property \"{}\" must be 1 to 64 letters, digits, '_', '-' or '.'",
            name.escape_debug()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_is_its_text_and_placeholders() {
        assert_eq!(
            event_parts("ai.{model}_in_{region}").unwrap(),
            [
                EventPart::Text("ai."),
                EventPart::Dim("model"),
                EventPart::Text("_in_"),
                EventPart::Dim("region"),
            ]
        );
        assert_eq!(event_parts("plain").unwrap(), [EventPart::Text("plain")]);
        for bad in ["a{", "a}", "a{}", "a{b{c}"] {
            assert!(event_parts(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_event_name_gives_the_values_that_fill_its_pattern() {
        let values = |pattern, name| stripe_event_values(pattern, name).unwrap();
        assert_eq!(
            values("tokens_{model}", "tokens_large"),
            Some(vec![("model", "large")])
        );
        assert_eq!(
            values("ai.{model}_in_{region}", "ai.gpt-4o_in_eu"),
            Some(vec![("model", "gpt-4o"), ("region", "eu")])
        );
        assert_eq!(values("{m}-{m}", "x-x"), Some(vec![("m", "x"), ("m", "x")]));
        assert_eq!(values("plain", "plain"), Some(vec![]));
        // Not made: other text, an empty value, a dimension that would take two values.
        assert_eq!(values("tokens_{model}", "requests"), None);
        assert_eq!(values("tokens_{model}", "tokens_"), None);
        assert_eq!(values("{m}-{m}", "x-y"), None);
        assert_eq!(values("plain", "plainer"), None);
        assert_eq!(values("a{", "a{"), None);
        // Two fillings make it: refused, naming both.
        let both = stripe_event_values("a_{x}_{y}", "a_b_c_d").unwrap_err();
        assert!(
            both.contains(r#"x = "b", y = "c_d""#) && both.contains(r#"x = "b_c", y = "d""#),
            "{both}"
        );
    }

    #[test]
    fn names_and_patterns_clash_only_when_they_could_make_one_name() {
        let taken = |events: &[&str], event: &str| {
            let events: Vec<String> = events.iter().map(|e| e.to_string()).collect();
            shared_event(&events, event).is_some()
        };
        // Apart: other text before or after the placeholder, or too short to be filled.
        assert!(!taken(&["tokens_{model}"], "requests"));
        assert!(!taken(&["in_{model}"], "out_{model}"));
        assert!(!taken(&["{model}_in"], "{model}_out"));
        assert!(!taken(&["tokens_{model}"], "tokens_"));
        // Could meet.
        assert!(taken(&["tokens_{model}"], "tokens_large"));
        assert!(taken(&["tokens_{model}"], "tokens_{region}"));
        assert!(taken(&["ai_{model}"], "ai_{region}_in"));
        assert!(taken(&["{model}"], "anything"));
        assert!(taken(&["same"], "same"));
    }
}
