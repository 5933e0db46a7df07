//! Maintenance windows, written like `Sat 02:00-05:00`, `Mon-Fri 22:00-01:00` or
//! `daily 03:00-04:00`, read in the client's IANA time zone. A window whose end is before
//! its start runs past midnight into the next day.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, NaiveTime, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Days on which the window *opens*, Monday = bit 0.
    days: u8,
    start: NaiveTime,
    end: NaiveTime,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not a window: {reason}; write it like `Sat 02:00-05:00`, `Mon-Fri 22:00-23:30` or `daily 03:00-04:00`"
)]
pub struct WindowError {
    text: String,
    reason: &'static str,
}

/// The shape of a window for the JSON Schema (editors flag a typo as it is typed); the
/// parser below still says which part is wrong.
pub const PATTERN: &str = r"^\s*(daily|\*|[A-Za-z]+(-[A-Za-z]+)?(,[A-Za-z]+(-[A-Za-z]+)?)*) +[0-9]{1,2}:[0-9]{2} *- *[0-9]{1,2}:[0-9]{2}\s*$";

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A day written short (`sat`) or in full (`saturday`), any case. Compared as whole
/// strings: a window is user text, and slicing it by bytes panics inside a multi-byte
/// character (`ab日`).
fn day_index(text: &str) -> Option<u8> {
    let lower = text.to_ascii_lowercase();
    DAYS.iter()
        .position(|d| lower == *d || lower == full_day_name(d))
        .map(|i| i as u8)
}

fn full_day_name(short: &str) -> &'static str {
    match short {
        "mon" => "monday",
        "tue" => "tuesday",
        "wed" => "wednesday",
        "thu" => "thursday",
        "fri" => "friday",
        "sat" => "saturday",
        _ => "sunday",
    }
}

impl FromStr for Window {
    type Err = WindowError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason| WindowError {
            text: text.to_owned(),
            reason,
        };
        let (days_part, times) = text
            .trim()
            .split_once(' ')
            .ok_or_else(|| err("missing the time range"))?;
        let mut days = 0u8;
        if matches!(days_part.to_ascii_lowercase().as_str(), "daily" | "*") {
            days = 0b111_1111;
        } else {
            for item in days_part.split(',') {
                match item.split_once('-') {
                    Some((from, to)) => {
                        let from = day_index(from).ok_or_else(|| err("unknown day"))?;
                        let to = day_index(to).ok_or_else(|| err("unknown day"))?;
                        let mut day = from;
                        loop {
                            days |= 1 << day;
                            if day == to {
                                break;
                            }
                            day = (day + 1) % 7;
                        }
                    }
                    None => days |= 1 << day_index(item).ok_or_else(|| err("unknown day"))?,
                }
            }
        }
        let (start, end) = times
            .trim()
            .split_once('-')
            .ok_or_else(|| err("the time range needs a start and an end"))?;
        let parse = |t: &str| {
            NaiveTime::parse_from_str(t.trim(), "%H:%M")
                .map_err(|_| err("times are HH:MM, 24-hour"))
        };
        let (start, end) = (parse(start)?, parse(end)?);
        if start == end {
            return Err(err("the window is empty"));
        }
        Ok(Window {
            days,
            start,
            end,
            text: text.trim().to_owned(),
        })
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Window {
    fn opens_on(&self, day: Weekday) -> bool {
        self.days & (1 << day.num_days_from_monday()) != 0
    }

    fn crosses_midnight(&self) -> bool {
        self.end < self.start
    }

    /// Whether a local wall-clock time falls inside this window.
    pub fn contains<T: TimeZone>(&self, local: &DateTime<T>) -> bool {
        let time = local.time().with_nanosecond(0).unwrap_or(local.time());
        let today = local.weekday();
        if self.crosses_midnight() {
            (self.opens_on(today) && time >= self.start)
                || (self.opens_on(today.pred()) && time < self.end)
        } else {
            self.opens_on(today) && time >= self.start && time < self.end
        }
    }
}

/// A client's schedule: where it lives in time and when changes may start.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub timezone: Tz,
    pub windows: Vec<Window>,
    pub urgent: bool,
}

/// Whether a change may start now, and if not, when it may.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowState {
    Open,
    Closed { next_open: Option<DateTime<Utc>> },
}

impl Schedule {
    pub fn any_time() -> Self {
        Schedule {
            timezone: Tz::UTC,
            windows: Vec::new(),
            urgent: false,
        }
    }

    /// Open when urgent, when no windows are set, or when `now` falls in one of them.
    pub fn state(&self, now: DateTime<Utc>) -> WindowState {
        if self.urgent || self.windows.is_empty() {
            return WindowState::Open;
        }
        let local = now.with_timezone(&self.timezone);
        if self.windows.iter().any(|w| w.contains(&local)) {
            return WindowState::Open;
        }
        WindowState::Closed {
            next_open: self.next_open(now),
        }
    }

    /// The next instant any window opens, searched minute by minute over the coming
    /// week (plus a day for DST shifts). Exact and cheap enough: at most ~11k checks.
    pub fn next_open(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = now.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        (0..(8 * 24 * 60))
            .map(|m| start + Duration::minutes(m))
            .find(|t| {
                let local = t.with_timezone(&self.timezone);
                self.windows.iter().any(|w| w.contains(&local))
            })
    }
}

pub fn parse_timezone(text: &str) -> Result<Tz, String> {
    text.parse::<Tz>().map_err(|_| {
        format!("`{text}` is not an IANA time zone; write it like `UTC`, `Europe/Berlin` or `America/New_York`")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("rfc3339")
            .with_timezone(&Utc)
    }

    fn schedule(tz: &str, windows: &[&str]) -> Schedule {
        Schedule {
            timezone: parse_timezone(tz).expect("tz"),
            windows: windows.iter().map(|w| w.parse().expect("window")).collect(),
            urgent: false,
        }
    }

    #[test]
    fn a_saturday_window_is_open_on_saturday_night_in_its_own_time_zone() {
        let s = schedule("Europe/Berlin", &["Sat 02:00-05:00"]);
        // 2026-11-28 is a Saturday; 02:30 in Berlin (UTC+1) is 01:30 UTC.
        assert_eq!(s.state(utc("2026-11-28T01:30:00Z")), WindowState::Open);
        assert!(matches!(
            s.state(utc("2026-11-28T05:30:00Z")),
            WindowState::Closed { .. }
        ));
    }

    #[test]
    fn a_closed_window_says_when_it_next_opens() {
        let s = schedule("Europe/Berlin", &["Sat 02:00-05:00"]);
        let state = s.state(utc("2026-11-24T12:00:00Z"));
        assert_eq!(
            state,
            WindowState::Closed {
                next_open: Some(utc("2026-11-28T01:00:00Z"))
            }
        );
    }

    #[test]
    fn a_window_past_midnight_covers_the_early_hours_of_the_next_day() {
        let s = schedule("UTC", &["Fri 22:00-02:00"]);
        assert_eq!(s.state(utc("2026-11-28T01:00:00Z")), WindowState::Open); // Saturday 01:00
        assert!(matches!(
            s.state(utc("2026-11-28T03:00:00Z")),
            WindowState::Closed { .. }
        ));
    }

    #[test]
    fn day_ranges_and_lists_parse() {
        let s = schedule("UTC", &["Mon-Fri 09:00-10:00", "Sat,Sun 12:00-13:00"]);
        assert_eq!(s.state(utc("2026-11-25T09:30:00Z")), WindowState::Open); // Wednesday
        assert_eq!(s.state(utc("2026-11-29T12:30:00Z")), WindowState::Open); // Sunday
    }

    #[test]
    fn urgent_bypasses_every_window() {
        let mut s = schedule("UTC", &["Sat 02:00-05:00"]);
        s.urgent = true;
        assert_eq!(s.state(utc("2026-11-24T12:00:00Z")), WindowState::Open);
    }

    #[test]
    fn malformed_windows_are_refused_with_a_reason() {
        for bad in [
            "Sat",
            "Sat 2-5",
            "Funday 02:00-03:00",
            "Sat 02:00-02:00",
            "Sat 25:00-26:00",
        ] {
            assert!(bad.parse::<Window>().is_err(), "{bad}");
        }
    }
}
