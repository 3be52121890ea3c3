//! `[[plans.meters.ID.rates]]`: prices per dimension. A meter grouped by `model` may price
//! each model's units past `included` at its own rate; the first line whose `where` matches a
//! group wins, and `overage_rate` prices the groups no line matches.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::meters::{Meter, MeterTerms, Mistake};
use super::raw::{OneOrMany, RawRate};
use super::{Aggregation, AtLimit};

/// One rate line: the groups it prices and their rate per unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    /// `group_by` dimension -> the values it matches (any of them). Every dimension named
    /// must match.
    #[serde(rename = "where")]
    pub when: BTreeMap<String, Vec<String>>,
    #[serde(with = "rust_decimal::serde::str")]
    pub rate: Decimal,
}

impl Rate {
    /// True when the group with these `group_by` values (`None`: the event had no such
    /// property) is one this line prices.
    pub fn matches<'v>(&self, value_of: impl Fn(&str) -> Option<&'v str>) -> bool {
        self.when
            .iter()
            .all(|(dim, values)| value_of(dim).is_some_and(|v| values.iter().any(|x| x == v)))
    }

    /// True when every group `later` matches is matched by this line already, so `later`
    /// could never price anything.
    fn covers(&self, later: &Rate) -> bool {
        self.when.iter().all(|(dim, values)| {
            later
                .when
                .get(dim)
                .is_some_and(|own| own.iter().all(|v| values.contains(v)))
        })
    }
}

impl MeterTerms {
    /// The rate per unit past `included` of an event whose `group_by` properties are
    /// `value_of`'s: its first matching rate line, else `overage_rate`.
    pub fn rate_for<'v>(
        &self,
        value_of: impl Fn(&str) -> Option<&'v str> + Copy,
    ) -> Option<Decimal> {
        self.rates
            .iter()
            .find(|line| line.matches(value_of))
            .map(|line| line.rate)
            .or(self.overage_rate)
    }
}

/// Validate a plan's rate lines for `meter` under its `terms`, pointing at the line that is
/// wrong. `amount_of` checks one rate as `overage_rate` is checked.
pub(super) fn validate_rates(
    raw: Vec<RawRate>,
    meter: &Meter,
    terms: &MeterTerms,
    amount_of: impl Fn(super::raw::RawAmount) -> Result<Decimal, String>,
) -> Result<Vec<Rate>, Mistake> {
    let at = |m: String| format!("rates of meter \"{}\": {m}", meter.id);
    let mut rates: Vec<Rate> = Vec::with_capacity(raw.len());
    for line in raw {
        let place = |m: String| Mistake::at(&line.when, at(m));
        if meter.group_by.is_empty() {
            return Err(place(
                "the meter has no group_by, so every unit has one price: use overage_rate".into(),
            ));
        }
        if !matches!(
            meter.aggregation,
            Aggregation::Sum | Aggregation::Count | Aggregation::UniqueCount
        ) {
            return Err(place(format!(
                "a {} meter's total is not a sum of its groups' units, so they cannot be \
                 priced apart; rates need a sum, count or unique_count meter",
                meter.aggregation.as_str()
            )));
        }
        if terms.at_limit == AtLimit::Block {
            return Err(place(
                "at_limit is \"block\", so no unit is ever past included to be priced; set \
                 at_limit = \"overage\""
                    .into(),
            ));
        }
        let mut when = BTreeMap::new();
        for (dim, values) in line.when.get_ref() {
            if !meter.group_by.contains(dim.get_ref()) {
                return Err(Mistake::at(
                    dim,
                    at(format!(
                        "where names \"{}\", which is not in the meter's group_by ({})",
                        dim.get_ref().escape_debug(),
                        meter.group_by.join(", ")
                    )),
                ));
            }
            // In the form events' property values are kept in (NFC), so "é" written either
            // way in plans.toml matches the events that send it.
            let mut values: Vec<String> = match values {
                OneOrMany::One(v) => vec![v.clone()],
                OneOrMany::Many(vs) => vs.clone(),
            }
            .into_iter()
            .map(crate::wire::property_text)
            .collect();
            values.sort();
            values.dedup();
            if values.is_empty() {
                return Err(Mistake::at(
                    dim,
                    at(format!(
                        "where {} = [] matches no group; list the values it prices",
                        dim.get_ref()
                    )),
                ));
            }
            when.insert(dim.get_ref().clone(), values);
        }
        if when.is_empty() {
            return Err(place(
                "where = {} matches every group, which is what overage_rate prices; name a \
                 dimension"
                    .into(),
            ));
        }
        let span = line.rate.span();
        let rate = amount_of(line.rate.into_inner()).map_err(|m| Mistake {
            span: Some(span),
            message: at(m),
        })?;
        let new = Rate { when, rate };
        if let Some(earlier) = rates.iter().position(|r| r.covers(&new)) {
            return Err(place(format!(
                "no group could match this line: each group it names matches rate line {} \
                 first (lines are tried in order)",
                earlier + 1
            )));
        }
        rates.push(new);
    }
    Ok(rates)
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn priced(where_model: &str) -> Config {
        let text = format!(
            r#"
[[meters]]
id = "tokens"
aggregation = "sum"
property = "tokens"
group_by = ["model"]
[[plans]]
id = "free"
[plans.meters.tokens]
included = 10
at_limit = "overage"
overage_rate = "0.5"
[[plans.meters.tokens.rates]]
where = {{ model = "{where_model}" }}
rate = "2"
"#
        );
        Config::parse(&text, "test").unwrap()
    }

    #[test]
    fn a_value_written_decomposed_matches_the_composed_form_events_are_kept_in() {
        let config = priced("cafe\u{301}");
        let terms = &config.plans[0].meters["tokens"];
        let kept = crate::wire::property_text("cafe\u{301}".to_string());
        assert_eq!(kept, "caf\u{e9}");
        assert_eq!(
            terms.rate_for(|_| Some(kept.as_str())),
            Some("2".parse().unwrap())
        );
        assert_eq!(
            terms.rate_for(|_| Some("cafe")),
            Some("0.5".parse().unwrap())
        );
    }
}
