//! What one event contributes to its meter: a number (sum, count, max, latest) or a distinct
//! value (unique_count), read from the event's quantity and properties by the meter's rules.

use crate::config::{Aggregation, MAX_GROUP_BY, Meter, QUANTITY};
use crate::model::Properties;

/// Properties one event may carry.
pub const MAX_PROPERTIES: usize = 20;
/// The longest property value, in bytes.
pub const MAX_PROPERTY_VALUE: usize = 255;
/// The largest number a property may carry (as `quantity`).
pub const MAX_VALUE: i64 = 1_000_000_000_000;

/// One event's contribution to its meter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeterValue {
    /// Added (sum, count), compared (max) or taken if newest (latest).
    Number(i64),
    /// unique_count: counted once per period, however often it comes.
    Distinct(String),
}

/// Check the properties' shape: at most 20, keys plain names, values short and printable.
pub fn check_properties(properties: &Properties) -> Result<(), String> {
    if properties.len() > MAX_PROPERTIES {
        return Err(format!(
            "{} properties; an event carries at most {MAX_PROPERTIES}",
            properties.len()
        ));
    }
    for (key, value) in properties {
        let plain = !key.is_empty()
            && key.len() <= 64
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        if !plain {
            return Err(format!(
                "property name \"{}\" must be 1 to 64 letters, digits, '_', '-' or '.'",
                crate::sanitize::sanitize(key)
            ));
        }
        if value.len() > MAX_PROPERTY_VALUE || value.chars().any(crate::sanitize::is_unsafe) {
            return Err(format!(
                "property {key} = \"{}\" must be at most {MAX_PROPERTY_VALUE} bytes without \
                 control, bidi or zero-width characters",
                crate::sanitize::sanitize(value)
            ));
        }
    }
    Ok(())
}

/// What an event of `quantity` with `properties` adds to `meter`.
pub fn meter_value(
    meter: &Meter,
    quantity: i64,
    properties: &Properties,
) -> Result<MeterValue, String> {
    let property = meter.property.as_deref().unwrap_or(QUANTITY);
    let text = || {
        properties.get(property).ok_or_else(|| {
            format!(
                "meter \"{}\" ({}) needs the property \"{property}\"; send it with --property \
                 {property}=… or \"properties\": {{\"{property}\": …}}",
                meter.id,
                meter.aggregation.as_str()
            )
        })
    };
    match meter.aggregation {
        Aggregation::Count => Ok(MeterValue::Number(1)),
        Aggregation::UniqueCount => match text()? {
            // An empty id is a caller's bug, not one more distinct user.
            empty if empty.is_empty() => Err(format!(
                "property {property} is empty; meter \"{}\" counts its distinct values",
                meter.id
            )),
            value => Ok(MeterValue::Distinct(value.clone())),
        },
        Aggregation::Sum | Aggregation::Max | Aggregation::Latest => {
            if property == QUANTITY && !properties.contains_key(QUANTITY) {
                return Ok(MeterValue::Number(quantity));
            }
            let text = text()?;
            let lowest = lowest_value(meter.aggregation);
            match text.parse::<i64>() {
                Ok(n) if (lowest..=MAX_VALUE).contains(&n) => Ok(MeterValue::Number(n)),
                _ => Err(format!(
                    "property {property} = \"{}\" must be a whole number from {lowest} to \
                     {MAX_VALUE} (meter \"{}\" is {})",
                    crate::sanitize::sanitize(text),
                    meter.id,
                    meter.aggregation.as_str()
                )),
            }
        }
    }
}

/// The smallest value a numeric meter takes from a property. A `sum` adds it: from 1, as
/// `quantity` (`-n 0` is refused), since an event of 0 counts nothing yet would be reported to
/// Stripe as a value of 0. `max` and `latest` take readings (peak concurrency, seats), and 0
/// is a reading: refusing it would leave the previous value standing, and billed.
fn lowest_value(aggregation: Aggregation) -> i64 {
    match aggregation {
        Aggregation::Sum => 1,
        _ => 0,
    }
}

/// The group an event counts in: its `group_by` values as a JSON object in the meter's
/// `group_by` order (`{"model":"small","region":"eu"}`), or `None` for a meter without
/// `group_by`. A missing dimension is JSON null.
pub fn group_key(meter: &Meter, properties: &Properties) -> Option<String> {
    if meter.group_by.is_empty() {
        return None;
    }
    debug_assert!(meter.group_by.len() <= MAX_GROUP_BY);
    // Written straight into one buffer: this runs once per event.
    let mut json = Vec::with_capacity(64);
    json.push(b'{');
    for (i, dim) in meter.group_by.iter().enumerate() {
        if i > 0 {
            json.push(b',');
        }
        push_json(&mut json, Some(dim));
        json.push(b':');
        push_json(&mut json, properties.get(dim).map(String::as_str));
    }
    json.push(b'}');
    String::from_utf8(json).ok()
}

/// A JSON string (or null) appended to `json`.
fn push_json(json: &mut Vec<u8>, text: Option<&str>) {
    match text {
        // Serialising a &str into a Vec cannot fail.
        Some(text) => serde_json::to_writer(&mut *json, text).unwrap_or_default(),
        None => json.extend_from_slice(b"null"),
    }
}

#[cfg(test)]
mod tests {
    use super::{MeterValue, meter_value};
    use crate::config::{Aggregation, Meter};

    fn meter(aggregation: Aggregation) -> Meter {
        Meter {
            id: "m".into(),
            name: "M".into(),
            aggregation,
            property: Some("n".into()),
            group_by: Vec::new(),
            stripe_event: "m".into(),
            event: "m".into(),
        }
    }

    #[test]
    fn a_sum_refuses_0_as_quantity_does_and_readings_take_it() {
        let zero = [("n".to_string(), "0".to_string())].into();
        let refused = meter_value(&meter(Aggregation::Sum), 1, &zero).unwrap_err();
        assert!(
            refused.contains("must be a whole number from 1 to"),
            "{refused}"
        );
        for reading in [Aggregation::Max, Aggregation::Latest] {
            assert_eq!(
                meter_value(&meter(reading), 1, &zero),
                Ok(MeterValue::Number(0))
            );
        }
    }
}
