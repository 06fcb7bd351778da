//! The metric alerts API, in the Interaction Metrics API's conventions:
//! the workspace is the token's only one or `X-Workspace-Id`; writes need
//! an admin token; reads, history and previews (which store nothing) any
//! token of the workspace. Handlers call one function of
//! [`crate::alerts::service`] and shape the answer.

pub mod types;

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value as JsonValue;

use axum::Router;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::alerts::service;
use crate::api::auth::Principal;
use crate::api::{ApiError, AppState, JsonBody};
use types::*;

/// The routes of the metric alerts API, for [`crate::api::router_with`].
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update, delete))
        .routes(routes!(history))
        .routes(routes!(evaluate))
}

/// Every API of the server, the metric alerts included.
pub fn router(state: Arc<AppState>) -> Router {
    crate::api::router_with(state, routes())
}

fn rule_id(path: Result<Path<String>, PathRejection>) -> Result<uuid::Uuid, ApiError> {
    let Path(id) = path.map_err(|e| ApiError::bad("INVALID_ID", format!("id: {e}")))?;
    uuid::Uuid::parse_str(&id)
        .map_err(|_| ApiError::bad("INVALID_ID", format!("{id:?} is not an alert id (a UUID)")))
}

async fn view(
    state: &AppState,
    ws: &str,
    rule: &crate::alerts::rule::AlertRule,
) -> Result<RuleView, ApiError> {
    let st = service::rule_state(state, ws, rule.id).await?;
    Ok(RuleView::new(rule, &st))
}

/// `GET /api/metric-alerts`: every rule with its state.
#[utoipa::path(
    get,
    path = "/api/metric-alerts",
    tag = "Metric alerts",
    params(crate::api::openapi::WorkspaceHeader),
    responses((status = 200, description = "Every rule with its state", body = Vec<RuleView>))
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
) -> Result<Json<Vec<RuleView>>, ApiError> {
    let ws = principal.workspace_from(&headers)?;
    let rules = service::list(&state, &ws).await?;
    let views = futures::future::try_join_all(rules.iter().map(|r| view(&state, &ws, r))).await?;
    Ok(Json(views))
}

/// `POST /api/metric-alerts`: 201 with the stored rule.
#[utoipa::path(
    post,
    path = "/api/metric-alerts",
    tag = "Metric alerts",
    params(crate::api::openapi::WorkspaceHeader),
    request_body = crate::alerts::http::types::RuleRequest,
    responses((status = 201, description = "The stored rule", body = RuleView))
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
    JsonBody(body): JsonBody<JsonValue>,
) -> Result<(StatusCode, Json<RuleView>), ApiError> {
    let ws = principal.workspace_from(&headers)?;
    principal.require_admin()?;
    let rule = service::create(&state, &ws, &body).await?;
    Ok((StatusCode::CREATED, Json(view(&state, &ws, &rule).await?)))
}

/// `GET /api/metric-alerts/{id}`.
#[utoipa::path(
    get,
    path = "/api/metric-alerts/{id}",
    tag = "Metric alerts",
    params(("id" = uuid::Uuid, Path, description = "The rule's id"), crate::api::openapi::WorkspaceHeader),
    responses((status = 200, description = "The rule with its state", body = RuleView))
)]
pub async fn get(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<RuleView>, ApiError> {
    let ws = principal.workspace_from(&headers)?;
    let id = rule_id(path)?;
    let rule = service::get(&state, &ws, id).await?;
    Ok(Json(view(&state, &ws, &rule).await?))
}

/// `PUT /api/metric-alerts/{id}`: fields given replace the stored ones.
#[utoipa::path(
    put,
    path = "/api/metric-alerts/{id}",
    tag = "Metric alerts",
    params(("id" = uuid::Uuid, Path, description = "The rule's id"), crate::api::openapi::WorkspaceHeader),
    request_body = crate::alerts::http::types::RuleRequest,
    responses((status = 200, description = "The rule as stored now", body = RuleView))
)]
pub async fn update(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<JsonValue>,
) -> Result<Json<RuleView>, ApiError> {
    let ws = principal.workspace_from(&headers)?;
    principal.require_admin()?;
    let id = rule_id(path)?;
    let rule = service::update(&state, &ws, id, &body).await?;
    Ok(Json(view(&state, &ws, &rule).await?))
}

/// `DELETE /api/metric-alerts/{id}`: 204.
#[utoipa::path(
    delete,
    path = "/api/metric-alerts/{id}",
    tag = "Metric alerts",
    params(("id" = uuid::Uuid, Path, description = "The rule's id"), crate::api::openapi::WorkspaceHeader),
    responses((status = 204, description = "Deleted"))
)]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let ws = principal.workspace_from(&headers)?;
    principal.require_admin()?;
    let id = rule_id(path)?;
    service::delete(&state, &ws, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryParams {
    max_results: Option<String>,
    next_token: Option<String>,
}

/// `GET /api/metric-alerts/{id}/history?maxResults=&nextToken=`.
#[utoipa::path(
    get,
    path = "/api/metric-alerts/{id}/history",
    tag = "Metric alerts",
    params(("id" = uuid::Uuid, Path, description = "The rule's id"), crate::api::openapi::WorkspaceHeader, ("maxResults" = Option<u32>, Query, description = "1 to 100 transitions (default 50)"), ("nextToken" = Option<String>, Query, description = "The previous page's nextToken")),
    responses((status = 200, description = "State transitions, newest first", body = HistoryPage))
)]
pub async fn history(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    params: Result<Query<HistoryParams>, QueryRejection>,
) -> Result<Json<HistoryPage>, ApiError> {
    let ws = principal.workspace_from(&headers)?;
    let id = rule_id(path)?;
    let Query(p) = params.map_err(|e| ApiError::bad("INVALID_PARAMETER", e.body_text()))?;
    let limit = match p.max_results.as_deref() {
        None | Some("") => 50,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                ApiError::bad(
                    "INVALID_MAX_RESULTS",
                    "maxResults must be a whole number from 1 to 100",
                )
            })?,
    };
    let token = p.next_token.as_deref().filter(|t| !t.is_empty());
    let (transitions, next_token) = service::history(&state, &ws, id, limit, token).await?;
    Ok(Json(HistoryPage {
        transitions,
        next_token,
    }))
}

/// `POST /api/metric-alerts/{id}/evaluate`: evaluates now, stores nothing.
#[utoipa::path(
    post,
    path = "/api/metric-alerts/{id}/evaluate",
    tag = "Metric alerts",
    params(("id" = uuid::Uuid, Path, description = "The rule's id"), crate::api::openapi::WorkspaceHeader),
    responses((status = 200, description = "What an evaluation now would find and do", body = service::Preview))
)]
pub async fn evaluate(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<service::Preview>, ApiError> {
    let ws = principal.workspace_from(&headers)?;
    let id = rule_id(path)?;
    Ok(Json(service::preview(&state, &ws, id).await?))
}
