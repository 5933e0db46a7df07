//! Durations written the way operators write them: `500ms`, `5s`, `10m`, `1h`, `1h30m`.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub const PATTERN: &str = r"^([0-9]+(ms|s|m|h))+$";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a duration; write it like 500ms, 5s, 10m or 1h30m")]
pub struct DurationError {
    text: String,
}

/// Parse `10m`, `5s`, `250ms`, `1h30m`. Bare numbers are refused: a unit is never implied.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let err = || DurationError {
        text: text.to_owned(),
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(err());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        if digits == 0 {
            return Err(err());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else if rest.starts_with('s') {
            (Duration::from_secs(1), 1)
        } else if rest.starts_with('m') {
            (Duration::from_secs(60), 1)
        } else if rest.starts_with('h') {
            (Duration::from_secs(3600), 1)
        } else {
            return Err(err());
        };
        rest = &rest[len..];
        let part = unit.checked_mul(u32::try_from(number).map_err(|_| err())?);
        total = total.checked_add(part.ok_or_else(err)?).ok_or_else(err)?;
    }
    Ok(total)
}

/// Format a duration back the way [`parse`] reads it.
/// Serialize a duration as steward writes it (`5m`, `30s`), for `serialize_with`.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

pub fn format(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let mut secs = duration.as_secs();
    let mut out = String::new();
    for (unit, size) in [("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

/// A duration field in a manifest, kept as written for schemas and round-trips.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub fn get(self) -> Duration {
        self.0
    }
}

impl fmt::Debug for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format(self.0))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse(&text)
            .map(HumanDuration)
            .map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": PATTERN,
            "description": "A duration like 500ms, 5s, 10m or 1h30m.",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("5s", 5_000)]
    #[case("10m", 600_000)]
    #[case("250ms", 250)]
    #[case("1h30m", 5_400_000)]
    fn durations_parse_as_operators_write_them(#[case] text: &str, #[case] ms: u128) {
        assert_eq!(parse(text).map(|d| d.as_millis()), Ok(ms));
    }

    #[rstest]
    #[case("")]
    #[case("10")]
    #[case("m")]
    #[case("5 s")]
    #[case("3d")]
    #[case("99999999999999999999s")]
    fn a_duration_without_a_known_unit_is_refused(#[case] text: &str) {
        assert!(parse(text).is_err());
    }

    #[test]
    fn formatting_round_trips() {
        for text in ["5s", "10m", "250ms", "1h30m", "1h1m1s"] {
            let parsed = parse(text).expect("valid");
            assert_eq!(format(parsed), text);
        }
    }
}
