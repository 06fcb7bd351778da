//! Time in definitions: the bucketing of a range ([`Bucket`], aligned to
//! UTC), the range itself ([`TimeRange`]) and windows back from "now"
//! ([`TimeWindow`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Validator;

/// Bucketing of the time range, aligned to UTC (`METRICS.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Bucket {
    #[serde(rename = "BY_15")]
    By15,
    #[serde(rename = "BY_HOUR")]
    ByHour,
    #[serde(rename = "BY_DAY")]
    ByDay,
    #[serde(rename = "BY_WEEK")]
    ByWeek,
    #[serde(rename = "SINGLE")]
    Single,
}

/// Monday 2000-01-03T00:00:00Z: the origin of weekly buckets (the epoch is
/// a Thursday).
pub const WEEK_ORIGIN_MS: i64 = 946_857_600_000;

impl Bucket {
    /// Parses the project's names and the ISO 8601 durations the skill
    /// Metrics API documents.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "BY_15" | "BY_15_MINUTES" | "PT15M" => Self::By15,
            "BY_HOUR" | "PT1H" => Self::ByHour,
            "BY_DAY" | "P1D" => Self::ByDay,
            "BY_WEEK" | "P7D" | "P1W" => Self::ByWeek,
            "SINGLE" => Self::Single,
            _ => return None,
        })
    }

    /// Width in milliseconds; `None` for `SINGLE`.
    pub fn width_ms(&self) -> Option<i64> {
        match self {
            Self::By15 => Some(15 * 60_000),
            Self::ByHour => Some(3_600_000),
            Self::ByDay => Some(86_400_000),
            Self::ByWeek => Some(7 * 86_400_000),
            Self::Single => None,
        }
    }

    pub fn origin_ms(&self) -> i64 {
        if *self == Self::ByWeek {
            WEEK_ORIGIN_MS
        } else {
            0
        }
    }

    /// The start of the bucket holding `t`.
    pub fn floor(&self, t: i64, range_start: i64) -> i64 {
        match self.width_ms() {
            Some(w) => self.origin_ms() + (t - self.origin_ms()).div_euclid(w) * w,
            None => range_start,
        }
    }

    /// Every bucket start of `[start, end)`.
    pub fn starts(&self, range: TimeRange) -> Vec<i64> {
        match self.width_ms() {
            None => vec![range.start_ms],
            Some(w) => {
                let mut out = Vec::new();
                let mut t = self.floor(range.start_ms, range.start_ms);
                while t < range.end_ms {
                    out.push(t);
                    t += w;
                }
                out
            }
        }
    }
}

/// `[start_ms, end_ms)` in epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TimeRange {
    pub start_ms: i64,
    pub end_ms: i64,
}

/// The most buckets one query may ask for: a year of quarter hours.
pub const MAX_BUCKETS: i64 = 366 * 96;

impl TimeRange {
    pub fn validate(&self, path: &str, bucket: Bucket, v: &mut Validator) {
        if self.start_ms >= self.end_ms {
            v.push(path, "startTime must be before endTime");
            return;
        }
        // Before 1970 or after 9999 is surely a mistake, and keeps the
        // arithmetic far from overflow.
        const MAX: i64 = 253_402_300_800_000;
        if self.start_ms < 0 || self.end_ms > MAX {
            v.push(path, "times must be between 1970-01-01 and 9999-12-31");
            return;
        }
        if let Some(w) = bucket.width_ms()
            && (self.end_ms - self.start_ms) / w > MAX_BUCKETS
        {
            v.push(
                path,
                format!("the range holds more than {MAX_BUCKETS} buckets; use a coarser period"),
            );
        }
    }
}

/// A window back from "now": `{n}m`, `{n}h` or `{n}d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeWindow {
    pub ms: i64,
    text_n: u32,
    text_unit: char,
}

impl TimeWindow {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{text:?} is not a time window: use {{n}}m, {{n}}h or {{n}}d with n from 1 to 9999, e.g. 15m, 1h, 7d"
            )
        };
        let unit = text.chars().last().ok_or_else(bad)?;
        let n: u32 = text[..text.len() - unit.len_utf8()]
            .parse()
            .map_err(|_| bad())?;
        if n == 0 || n > 9999 || text.starts_with('+') {
            return Err(bad());
        }
        let unit_ms = match unit {
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            _ => return Err(bad()),
        };
        Ok(Self {
            ms: i64::from(n) * unit_ms,
            text_n: n,
            text_unit: unit,
        })
    }

    /// The window's unit in milliseconds (a minute for `{n}m`, ...).
    pub fn unit_ms(&self) -> i64 {
        self.ms / i64::from(self.text_n)
    }

    /// `[now - window, now)`.
    pub fn range_ending(&self, now_ms: i64) -> TimeRange {
        TimeRange {
            start_ms: now_ms - self.ms,
            end_ms: now_ms,
        }
    }
}

impl fmt::Display for TimeWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.text_n, self.text_unit)
    }
}

impl Serialize for TimeWindow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TimeWindow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}
