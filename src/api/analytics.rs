//! Skill analytics routes (the project's own, next to the skill Metrics
//! API and with its authentication): retention cohorts and interaction
//! paths. JSON by default, CSV with `Accept: text/csv`.

pub mod types;

use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;

use super::auth::Principal;
use super::csv::Answer;
use super::{ApiError, AppState};
use crate::analytics;
use crate::analytics::summary::Stage;
use types::*;

/// The skill of the path, after the same checks as the Metrics API: the
/// token covers it (403) and it has events (404).
async fn skill(
    state: &AppState,
    principal: &Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<String, ApiError> {
    let id = super::alexa::skill_id(path)?;
    principal.require(&id)?;
    super::alexa::require_events(state, &id).await?;
    Ok(id)
}

fn params(p: Result<Query<Params>, QueryRejection>) -> Result<Params, ApiError> {
    p.map(|Query(p)| p)
        .map_err(|e| ApiError::bad("INVALID_PARAMETER", e.body_text()))
}

/// `GET /v2/skills/{skillId}/analytics/retention?startTime=&endTime=`.
#[utoipa::path(
    get,
    path = "/v2/skills/{skill_id}/analytics/retention",
    tag = "Skill analytics",
    params(
        ("skill_id" = String, Path, description = "The skill (its events' workspace)", example = "amzn1.ask.skill.demo-trivia"),
        crate::api::openapi::RangeParams,
        ("stage" = Option<String>, Query, description = "live (default), development or all"),
    ),
    responses((status = 200, description = "Weekly cohorts of first-seen users and the share active in each later week", content((RetentionResponse = "application/json"), (String = "text/csv"))))
)]
pub async fn retention(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<Params>, QueryRejection>,
) -> Result<Answer<RetentionResponse>, ApiError> {
    let params = params(query)?;
    let range = params.range()?;
    // Retention counts live-stage users unless asked otherwise (the
    // console shows it for live skills only).
    let stage = params.stage(Stage::Live)?;
    let skill = skill(&state, &principal, path).await?;
    let cohorts = analytics::retention(&state.engine, &skill, range, stage).await?;
    let response = RetentionResponse::new(&skill, range, stage, cohorts);
    Ok(Answer::negotiate(
        &headers,
        response,
        RetentionResponse::to_table,
    ))
}

/// `GET /v2/skills/{skillId}/analytics/sessions?startTime=&endTime=&stage=`.
#[utoipa::path(
    get,
    path = "/v2/skills/{skill_id}/analytics/sessions",
    tag = "Skill analytics",
    params(
        ("skill_id" = String, Path, description = "The skill (its events' workspace)", example = "amzn1.ask.skill.demo-trivia"),
        crate::api::openapi::RangeParams,
        ("stage" = Option<String>, Query, description = "live, development or all (default)"),
    ),
    responses((status = 200, description = "Sessions by outcome", content((SessionsResponse = "application/json"), (String = "text/csv"))))
)]
pub async fn sessions(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<Params>, QueryRejection>,
) -> Result<Answer<SessionsResponse>, ApiError> {
    let params = params(query)?;
    let range = params.range()?;
    let stage = params.stage(Stage::All)?;
    let skill = skill(&state, &principal, path).await?;
    let s = analytics::summary::sessions(&state.engine, &skill, range, stage).await?;
    Ok(Answer::negotiate(
        &headers,
        SessionsResponse::new(&skill, range, stage, s),
        SessionsResponse::to_table,
    ))
}

/// `GET /v2/skills/{skillId}/analytics/intents?startTime=&endTime=&stage=`.
#[utoipa::path(
    get,
    path = "/v2/skills/{skill_id}/analytics/intents",
    tag = "Skill analytics",
    params(
        ("skill_id" = String, Path, description = "The skill (its events' workspace)", example = "amzn1.ask.skill.demo-trivia"),
        crate::api::openapi::RangeParams,
        ("stage" = Option<String>, Query, description = "live, development or all (default)"),
    ),
    responses((status = 200, description = "Utterances, customers and failures per intent", content((IntentsResponse = "application/json"), (String = "text/csv"))))
)]
pub async fn intents(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<Params>, QueryRejection>,
) -> Result<Answer<IntentsResponse>, ApiError> {
    let params = params(query)?;
    let range = params.range()?;
    let stage = params.stage(Stage::All)?;
    let skill = skill(&state, &principal, path).await?;
    let i = analytics::summary::intents(&state.engine, &skill, range, stage).await?;
    Ok(Answer::negotiate(
        &headers,
        IntentsResponse::new(&skill, range, stage, i),
        IntentsResponse::to_table,
    ))
}

/// `GET /v2/skills/{skillId}/analytics/paths?startTime=&endTime=&intent=&limit=`.
#[utoipa::path(
    get,
    path = "/v2/skills/{skill_id}/analytics/paths",
    tag = "Skill analytics",
    params(
        ("skill_id" = String, Path, description = "The skill (its events' workspace)", example = "amzn1.ask.skill.demo-trivia"),
        crate::api::openapi::RangeParams,
        ("intent" = Option<String>, Query, description = "The intent paths start from (default LaunchRequest)"),
        ("limit" = Option<u32>, Query, description = "How many next steps and paths to rank"),
    ),
    responses((status = 200, description = "The intents users invoke next, and the commonest paths", content((PathsResponse = "application/json"), (String = "text/csv")),
        headers(("x-metricstore-answered-from" = String, description = "`rollup` (per-session states) or `raw` (events)"))))
)]
pub async fn paths(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<Params>, QueryRejection>,
) -> Result<([(&'static str, &'static str); 1], Answer<PathsResponse>), ApiError> {
    let params = params(query)?;
    let range = params.range()?;
    let intent = params.intent()?;
    let limit = params.limit()?;
    let skill = skill(&state, &principal, path).await?;
    let (next, paths, answered) =
        analytics::next_and_paths(&state.engine, &skill, range, &intent, limit).await?;
    let response = PathsResponse {
        skill_id: skill,
        start_time: crate::format::instant(range.start_ms),
        end_time: crate::format::instant(range.end_ms),
        intent: intent.as_str().to_string(),
        limit,
        next: Ranking::new(next),
        paths: Ranking::new(paths),
    };
    Ok((
        [(crate::api::alexa::ANSWERED_FROM, answered.name())],
        Answer::negotiate(&headers, response, PathsResponse::to_table),
    ))
}
