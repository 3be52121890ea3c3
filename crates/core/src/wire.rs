//! One event as JSON, shared by `POST /v1/events`, the batch endpoint and
//! `meterline record --batch`: the same fields, rules and defaults as `meterline record`.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::RecordRequest;

/// One event as JSON carries it (`record --batch`, `POST /v1/events`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventIn {
    pub customer: String,
    #[serde(default = "one")]
    pub quantity: i64,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    /// RFC3339 (whole seconds, see `billing::parse_ts`); default: when the server received it.
    #[serde(default, deserialize_with = "crate::billing::deserialize_ts")]
    pub at: Option<DateTime<Utc>>,
    /// The meter's id; default: the first in `[[meters]]` (or every meter of `type`).
    #[serde(default)]
    pub meter: Option<String>,
    /// The event's type: it feeds every meter whose `event` is this type.
    #[serde(default, rename = "type")]
    pub event_type: Option<String>,
    /// Strings or numbers; a number is kept as its digits, as sent ([`property_texts`]).
    #[serde(default, deserialize_with = "properties")]
    pub properties: crate::Properties,
}

/// A JSON object of strings and numbers as the event's properties.
pub fn properties<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<crate::Properties, D::Error> {
    let object = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
    property_texts(object).map_err(serde::de::Error::custom)
}

/// Properties as the drop-in routes' payloads carry them: strings and numbers as text; other
/// JSON types are refused, naming the property. One rule on every route: a number is its
/// digits exactly as sent (`1e3` stays `1e3`, a 30-digit id keeps every digit: serde_json's
/// `arbitrary_precision`), and a string is taken in Unicode's composed form (NFC), so two
/// spellings of one word are one value ([`property_text`]).
pub fn property_texts(
    object: serde_json::Map<String, serde_json::Value>,
) -> Result<crate::Properties, String> {
    property_texts_named(object).map_err(|bad| bad.message)
}

/// A property whose JSON value is not a string or a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadProperty {
    /// The property's name, as sent.
    pub key: String,
    /// What is wrong, naming it (sanitised).
    pub message: String,
}

/// [`property_texts`], with the offending property's name apart, for a protocol that names
/// the field in its error (`data.model`, `properties.model`).
pub fn property_texts_named(
    object: serde_json::Map<String, serde_json::Value>,
) -> Result<crate::Properties, BadProperty> {
    object
        .into_iter()
        .map(|(key, value)| match value {
            serde_json::Value::String(text) => Ok((key, property_text(text))),
            serde_json::Value::Number(n) => Ok((key, n.to_string())),
            _ => Err(BadProperty {
                message: format!(
                    "property \"{}\" must be a string or a number",
                    crate::sanitize::sanitize(&key)
                ),
                key,
            }),
        })
        .collect()
}

/// A property's text value as it is counted and stored: in Unicode's composed form (NFC), so
/// "é" typed as one character or as "e" and an accent is one value, as it prints.
pub fn property_text(text: String) -> String {
    use unicode_normalization::UnicodeNormalization;
    if unicode_normalization::is_nfc_quick(text.chars()) == unicode_normalization::IsNormalized::Yes
    {
        return text;
    }
    text.nfc().collect()
}

/// `json`, one JSON object, as a `T`. serde's derived structs also take an array, its items
/// in field order, so `["acme", 5]` would be an event of customer `acme`: an array is refused.
pub fn object<T: serde::de::DeserializeOwned>(json: &[u8]) -> Result<T, String> {
    if json.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err("expected a JSON object ({…}), found an array".into());
    }
    serde_json::from_slice(json).map_err(|e| e.to_string())
}

/// [`object`], with no key given twice anywhere in it ([`refuse_repeated_keys`]).
pub fn strict_object<T: serde::de::DeserializeOwned>(json: &[u8]) -> Result<T, String> {
    let value = object(json)?;
    refuse_repeated_keys(json)?;
    Ok(value)
}

/// Refuse a JSON document in which an object repeats a key, naming the key. A parser keeps
/// only the last of them, so the sender and meterline would disagree on the value.
pub fn refuse_repeated_keys(json: &[u8]) -> Result<(), String> {
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    serde::Deserialize::deserialize(&mut deserializer)
        .map(|NoRepeatedKey| ())
        .map_err(|e| e.to_string())
}

/// Any JSON value, checked for a repeated key in each of its objects.
struct NoRepeatedKey;

impl<'de> Deserialize<'de> for NoRepeatedKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NoRepeatedKey)
    }
}

impl<'de> serde::de::Visitor<'de> for NoRepeatedKey {
    type Value = NoRepeatedKey;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<NoRepeatedKey>()?.is_some() {}
        Ok(self)
    }

    // (With `arbitrary_precision` a number comes here too, as a map of one private key.)
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            map.next_value::<NoRepeatedKey>()?;
            if let Some(repeated) = seen.replace(key) {
                return Err(serde::de::Error::custom(format!(
                    "key \"{}\" is given twice in one object; each key may appear once",
                    crate::sanitize::sanitize(&repeated)
                )));
            }
        }
        Ok(self)
    }
}

fn one() -> i64 {
    1
}

impl EventIn {
    /// Parse one event ([`strict_object`]); the error message names what is wrong (serde's wording).
    pub fn parse(json: &[u8]) -> Result<EventIn, String> {
        strict_object(json)
    }

    /// The event to record; without `at` it happened `now`.
    pub fn into_request(self, now: DateTime<Utc>) -> RecordRequest {
        RecordRequest {
            customer_id: self.customer,
            quantity: self.quantity,
            user_id: self.user,
            idempotency_key: self.key.map(Into::into),
            occurred_at: self.at.unwrap_or(now),
            at_given: self.at.is_some(),
            meter: self.meter,
            event_type: self.event_type,
            properties: self.properties,
        }
    }
}

/// One event's answer: exactly the object `record --json` prints, plus `"status"` inside a
/// batch (the HTTP status the event would have had alone).
#[derive(Debug, serde::Serialize)]
pub struct EventOut<'a> {
    #[serde(flatten)]
    pub check: &'a crate::billing::UsageCheck,
    pub recorded: bool,
    pub duplicate: bool,
    pub event_id: Option<i64>,
    /// An event of a type: each meter it fed, with its standing.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub meters: &'a [crate::FedMeter],
    /// A refusal: the meters whose hard cap refused it.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub refused_by: &'a [String],
    /// A refusal by a window limit: which, and when the event would fit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused_window: Option<&'a crate::WindowRefusal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

impl<'a> EventOut<'a> {
    /// The answer for `outcome`; `status` only inside a batch.
    pub fn new(outcome: &'a crate::RecordOutcome, status: Option<u16>) -> EventOut<'a> {
        EventOut {
            check: &outcome.check,
            recorded: outcome.recorded,
            duplicate: outcome.duplicate,
            event_id: outcome.event_id,
            meters: &outcome.meters,
            refused_by: &outcome.refused_by,
            refused_window: outcome.refused_window.as_ref(),
            status,
        }
    }
}

/// The meters that refused `outcome` with their standing, in words: `requests (100 of 100
/// used)` or, for a plain event, its meter's.
pub fn refusing_meters(outcome: &crate::RecordOutcome) -> String {
    let used = |check: &crate::billing::UsageCheck| {
        format!(
            "{} of {} used",
            check.used,
            check.limit.map_or("unlimited".into(), |n| n.to_string())
        )
    };
    let named: Vec<String> = outcome
        .meters
        .iter()
        .filter(|m| outcome.refused_by.contains(&m.meter))
        .map(|m| format!("meter \"{}\" ({})", m.meter, used(&m.check)))
        .collect();
    if named.is_empty() {
        used(&outcome.check)
    } else {
        named.join(", ")
    }
}

/// A window limit's refusal in words, for the HTTP routes: "meter \"tokens\" (100 per 5h
/// sliding, 100 used; fits again in 3600 s)".
pub fn refusing_window(refusal: &crate::WindowRefusal) -> String {
    let kind = match refusal.kind {
        crate::config::WindowKind::Sliding => "sliding",
        crate::config::WindowKind::Fixed => "fixed",
    };
    let retry = refusal
        .retry_after
        .map_or(String::new(), |s| format!("; fits again in {s} s"));
    format!(
        "meter \"{}\" ({} per {} {kind}, {} used{retry})",
        refusal.meter, refusal.limit, refusal.window, refusal.used
    )
}

/// Seconds until a refused event would fit (HTTP's `Retry-After`), when a window refused it
/// and waiting helps.
pub fn retry_after(outcome: &crate::RecordOutcome) -> Option<i64> {
    if outcome.recorded || outcome.duplicate {
        return None;
    }
    outcome.refused_window.as_ref()?.retry_after
}

/// 200 for recorded or duplicate, 402 for refused by a hard cap.
pub fn status_of(outcome: &crate::RecordOutcome) -> u16 {
    if outcome.recorded || outcome.duplicate {
        200
    } else {
        402
    }
}

#[cfg(test)]
mod tests {
    use super::EventIn;

    fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(1_780_000_000, 0).unwrap_or_default()
    }

    #[test]
    fn an_event_without_at_happened_now_and_says_no_time_was_given() {
        let request = EventIn::parse(br#"{"customer":"acme"}"#)
            .unwrap()
            .into_request(now());
        assert_eq!((request.occurred_at, request.at_given), (now(), false));
        let request = EventIn::parse(br#"{"customer":"acme","at":"2026-11-27T18:00:00Z"}"#)
            .unwrap()
            .into_request(now());
        assert!(request.at_given);
    }
}
