//! Wire types of the skill analytics routes and the checks of their query
//! parameters.

use serde::{Deserialize, Serialize};

use crate::analytics::{self, Cohort, Intent, Range, Ranked};
use crate::api::ApiError;
use crate::api::alexa::types::timestamp;
use crate::api::csv::{Cell, Table};

/// Query parameters, read as text so that every mistake is a documented 400.
#[derive(Debug, Deserialize)]
pub struct Params {
    #[serde(rename = "startTime")]
    pub start_time: Option<String>,
    #[serde(rename = "endTime")]
    pub end_time: Option<String>,
    pub intent: Option<String>,
    pub limit: Option<String>,
}

/// `startTime`/`endTime`: RFC 3339 or epoch milliseconds.
fn time(v: Option<&str>, name: &str) -> Result<i64, ApiError> {
    let v = v.map(str::trim).filter(|v| !v.is_empty()).ok_or_else(|| {
        ApiError::bad(
            "MISSING_PARAMETER",
            format!("{name} is required (RFC 3339 time or epoch milliseconds)"),
        )
    })?;
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            ApiError::bad(
                "INVALID_TIME",
                format!("{name}: {v:?} is not an RFC 3339 time (e.g. 2026-01-05T00:00:00Z) or epoch milliseconds"),
            )
        })
}

impl Params {
    pub fn range(&self) -> Result<Range, ApiError> {
        let start = time(self.start_time.as_deref(), "startTime")?;
        let end = time(self.end_time.as_deref(), "endTime")?;
        Ok(Range::new(start, end)?)
    }

    pub fn intent(&self) -> Result<Intent, ApiError> {
        match self.intent.as_deref().map(str::trim) {
            None | Some("") => Ok(Intent::parse(analytics::DEFAULT_INTENT)?),
            Some(s) => Ok(Intent::parse(s)?),
        }
    }

    pub fn limit(&self) -> Result<usize, ApiError> {
        match self.limit.as_deref().map(str::trim) {
            None | Some("") => Ok(analytics::DEFAULT_LIMIT),
            Some(s) => {
                let n = s.parse::<usize>().map_err(|_| {
                    ApiError::bad(
                        "INVALID_LIMIT",
                        format!(
                            "limit must be a whole number from 1 to {}",
                            analytics::MAX_LIMIT
                        ),
                    )
                })?;
                Ok(analytics::check_limit(n)?)
            }
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionResponse {
    pub skill_id: String,
    pub start_time: String,
    pub end_time: String,
    /// Weeks after the cohort week that are reported (at most).
    pub weeks: i64,
    pub cohorts: Vec<CohortOut>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CohortOut {
    pub cohort_week: String,
    pub users: i64,
    pub retention: Vec<analytics::RetentionCell>,
}

impl RetentionResponse {
    pub fn new(skill: &str, range: Range, cohorts: Vec<Cohort>) -> Self {
        Self {
            skill_id: skill.to_string(),
            start_time: timestamp(range.start_ms),
            end_time: timestamp(range.end_ms),
            weeks: analytics::RETENTION_WEEKS,
            cohorts: cohorts
                .into_iter()
                .map(|c| CohortOut {
                    cohort_week: timestamp(c.week_ms),
                    users: c.users,
                    retention: c.weeks,
                })
                .collect(),
        }
    }

    /// One row per cohort and week.
    pub fn to_table(&self) -> Table {
        let mut t = Table::new(["cohortWeek", "cohortUsers", "week", "users", "percentage"]);
        for c in &self.cohorts {
            for w in &c.retention {
                t.push(vec![
                    c.cohort_week.as_str().into(),
                    Cell::Int(c.users),
                    Cell::Int(w.week),
                    Cell::Int(w.users),
                    Cell::Number(w.percentage),
                ]);
            }
        }
        t
    }
}

/// A ranking: every row up to `limit`, then `(other)` for the tail.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ranking {
    /// Sessions counted (the denominator of `percentage`).
    pub sessions: i64,
    pub items: Vec<Ranked>,
}

impl Ranking {
    pub fn new(items: Vec<Ranked>) -> Self {
        Self {
            sessions: items.iter().map(|r| r.sessions).sum(),
            items,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PathsResponse {
    pub skill_id: String,
    pub start_time: String,
    pub end_time: String,
    pub intent: String,
    pub limit: usize,
    /// What sessions do right after their first `intent`.
    pub next: Ranking,
    /// The first steps (up to five) of sessions.
    pub paths: Ranking,
}

impl PathsResponse {
    /// One row per ranking row; `section` is `next` or `path`.
    pub fn to_table(&self) -> Table {
        let mut t = Table::new([
            "section",
            "rank",
            "name",
            "sessions",
            "percentage",
            "folded",
        ]);
        for (section, ranking) in [("next", &self.next), ("path", &self.paths)] {
            for r in &ranking.items {
                t.push(vec![
                    section.into(),
                    Cell::Int(r.rank),
                    r.name.as_str().into(),
                    Cell::Int(r.sessions),
                    Cell::Number(r.percentage),
                    Cell::Int(r.folded),
                ]);
            }
        }
        t
    }
}
