//! Wire types of the skill analytics routes and the checks of their query
//! parameters.

use serde::{Deserialize, Serialize};

use crate::analytics::summary::{Intents, Sessions, Share, Stage};
use crate::analytics::{self, Cohort, Intent, Range, Ranked};
use crate::api::ApiError;
use crate::api::csv::{Cell, Table};
use crate::format::instant as timestamp;

/// Query parameters, read as text so that every mistake is a documented 400.
#[derive(Debug, Deserialize)]
pub struct Params {
    #[serde(rename = "startTime")]
    pub start_time: Option<String>,
    #[serde(rename = "endTime")]
    pub end_time: Option<String>,
    pub intent: Option<String>,
    pub limit: Option<String>,
    pub stage: Option<String>,
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

    /// `stage`: `live`, `development` or `all`; `default` when absent.
    pub fn stage(&self, default: Stage) -> Result<Stage, ApiError> {
        match self.stage.as_deref().map(str::trim) {
            None | Some("") => Ok(default),
            Some(s) => Ok(Stage::parse(s)?),
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

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionResponse {
    pub skill_id: String,
    pub start_time: String,
    pub end_time: String,
    pub stage: &'static str,
    /// Weeks after the cohort week that are reported (at most).
    pub weeks: i64,
    pub cohorts: Vec<CohortOut>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CohortOut {
    pub cohort_week: String,
    pub users: i64,
    pub retention: Vec<analytics::RetentionCell>,
}

impl RetentionResponse {
    pub fn new(skill: &str, range: Range, stage: Stage, cohorts: Vec<Cohort>) -> Self {
        Self {
            skill_id: skill.to_string(),
            start_time: timestamp(range.start_ms),
            end_time: timestamp(range.end_ms),
            stage: stage.as_str(),
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
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ranking {
    /// Distinct users of the sessions counted (the denominator of
    /// `percentage`).
    pub users: i64,
    /// Sessions counted (the rows' sessions add up to it).
    pub sessions: i64,
    pub items: Vec<Ranked>,
}

impl Ranking {
    pub fn new(r: analytics::Ranking) -> Self {
        Self {
            users: r.users,
            sessions: r.items.iter().map(|r| r.sessions).sum(),
            items: r.items,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PathsResponse {
    pub skill_id: String,
    pub start_time: String,
    pub end_time: String,
    pub intent: String,
    pub limit: usize,
    /// What users do right after the first `intent` of a session.
    pub next: Ranking,
    /// The first steps (up to five) of sessions, by users.
    pub paths: Ranking,
}

impl PathsResponse {
    /// One row per ranking row; `section` is `next` or `path`.
    pub fn to_table(&self) -> Table {
        let mut t = Table::new([
            "section",
            "rank",
            "name",
            "users",
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
                    Cell::Int(r.users),
                    Cell::Int(r.sessions),
                    Cell::Number(r.percentage),
                    Cell::Int(r.folded),
                ]);
            }
        }
        t
    }
}

/// A count and its percentage of the total it is part of.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ShareOut {
    pub sessions: i64,
    pub percentage: f64,
}

impl From<Share> for ShareOut {
    fn from(s: Share) -> Self {
        Self {
            sessions: s.count,
            percentage: s.percentage,
        }
    }
}

/// `GET /v2/skills/{skillId}/analytics/sessions`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionsResponse {
    pub skill_id: String,
    pub start_time: String,
    pub end_time: String,
    pub stage: &'static str,
    /// Ended sessions: successful + failed + noResponse.
    pub sessions: i64,
    pub successful: ShareOut,
    pub failed: ShareOut,
    pub no_response: ShareOut,
    pub sessions_per_customer: Option<f64>,
}

impl SessionsResponse {
    pub fn new(skill: &str, range: Range, stage: Stage, s: Sessions) -> Self {
        Self {
            skill_id: skill.to_string(),
            start_time: timestamp(range.start_ms),
            end_time: timestamp(range.end_ms),
            stage: stage.as_str(),
            sessions: s.total,
            successful: s.successful.into(),
            failed: s.failed.into(),
            no_response: s.no_response.into(),
            sessions_per_customer: s.per_customer,
        }
    }

    /// One row per kind of ending.
    pub fn to_table(&self) -> Table {
        let mut t = Table::new(["type", "sessions", "percentage"]);
        for (kind, s) in [
            ("successful", &self.successful),
            ("failed", &self.failed),
            ("noResponse", &self.no_response),
        ] {
            t.push(vec![
                kind.into(),
                Cell::Int(s.sessions),
                Cell::Number(s.percentage),
            ]);
        }
        t
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntentOut {
    /// `null`: utterances not resolved to an intent.
    pub intent: Option<String>,
    pub customers: i64,
    pub utterances: i64,
    /// Of all utterances.
    pub percentage: f64,
    pub failed_utterances: i64,
    /// Of all failed utterances.
    pub failed_percentage: f64,
}

/// `GET /v2/skills/{skillId}/analytics/intents`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntentsResponse {
    pub skill_id: String,
    pub start_time: String,
    pub end_time: String,
    pub stage: &'static str,
    pub utterances: i64,
    pub failed_utterances: i64,
    pub intents: Vec<IntentOut>,
}

impl IntentsResponse {
    pub fn new(skill: &str, range: Range, stage: Stage, i: Intents) -> Self {
        Self {
            skill_id: skill.to_string(),
            start_time: timestamp(range.start_ms),
            end_time: timestamp(range.end_ms),
            stage: stage.as_str(),
            utterances: i.utterances,
            failed_utterances: i.failed_utterances,
            intents: i
                .items
                .into_iter()
                .map(|r| IntentOut {
                    intent: r.intent,
                    customers: r.customers,
                    utterances: r.utterances.count,
                    percentage: r.utterances.percentage,
                    failed_utterances: r.failed.count,
                    failed_percentage: r.failed.percentage,
                })
                .collect(),
        }
    }

    /// One row per intent.
    pub fn to_table(&self) -> Table {
        let mut t = Table::new([
            "intent",
            "customers",
            "utterances",
            "percentage",
            "failedUtterances",
            "failedPercentage",
        ]);
        for r in &self.intents {
            t.push(vec![
                r.intent.clone().into(),
                Cell::Int(r.customers),
                Cell::Int(r.utterances),
                Cell::Number(r.percentage),
                Cell::Int(r.failed_utterances),
                Cell::Number(r.failed_percentage),
            ]);
        }
        t
    }
}
