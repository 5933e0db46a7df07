//! Schema versions in the guide's `YYYY_MM_DD_NNN` form. Fixed width, so the string order
//! is the version order.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Version(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a schema version; expected YYYY_MM_DD_NNN, like 2024_12_18_001")]
pub struct VersionError(pub String);

impl Version {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || VersionError(text.to_owned());
        let parts: Vec<&str> = text.split('_').collect();
        let [year, month, day, seq] = parts.as_slice() else {
            return Err(err());
        };
        let digits = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit());
        if !(digits(year, 4) && digits(month, 2) && digits(day, 2) && digits(seq, 3)) {
            return Err(err());
        }
        let month: u32 = month.parse().map_err(|_| err())?;
        let day: u32 = day.parse().map_err(|_| err())?;
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
            return Err(err());
        }
        Ok(Version(text.to_owned()))
    }
}

impl TryFrom<String> for Version {
    type Error = VersionError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<Version> for String {
    fn from(version: Version) -> String {
        version.0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Versions as one line, shortened when there are many: a first run on a new database
/// can touch hundreds, and one line is enough to say which.
pub fn summarize(versions: &[Version]) -> String {
    const SHOWN: usize = 8;
    let names: Vec<&str> = versions.iter().map(Version::as_str).collect();
    if names.len() <= SHOWN {
        return names.join(", ");
    }
    format!(
        "{}, … {} more …, {}",
        names[..3].join(", "),
        names.len() - 5,
        names[names.len() - 2..].join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::{Version, summarize};

    fn versions(n: usize) -> Vec<Version> {
        (0..n)
            .map(|i| format!("2024_01_01_{i:03}").parse().expect("version"))
            .collect()
    }

    #[test]
    fn a_few_versions_are_all_listed() {
        assert_eq!(
            summarize(&versions(3)),
            "2024_01_01_000, 2024_01_01_001, 2024_01_01_002"
        );
    }

    #[test]
    fn many_versions_are_shortened_to_the_first_three_and_the_last_two() {
        assert_eq!(
            summarize(&versions(300)),
            "2024_01_01_000, 2024_01_01_001, 2024_01_01_002, … 295 more …, 2024_01_01_298, 2024_01_01_299"
        );
    }

    #[test]
    fn versions_in_the_guides_form_parse_and_order() {
        let a: Version = "2024_12_18_001".parse().expect("valid");
        let b: Version = "2024_12_18_002".parse().expect("valid");
        assert!(a < b);
    }

    #[test]
    fn malformed_versions_are_refused() {
        for bad in [
            "2024-12-18-001",
            "2024_13_01_001",
            "2024_12_18_1",
            "v1",
            "2024_12_00_001",
        ] {
            assert!(bad.parse::<Version>().is_err(), "{bad}");
        }
    }
}
