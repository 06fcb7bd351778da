//! The Interaction Metrics API: definitions persisted per workspace in the
//! object store (a versioned catalog), calculated through the compiler
//! over `interaction` events with the window ending at "now". Handlers
//! parse the request, call one function of the service
//! ([`crate::interaction`]), shape the answer.

mod table;

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value as JsonValue;

use super::auth::Principal;
use super::csv::Answer;
use super::{ApiError, AppState, JsonBody};
use crate::interaction::{
    self as service, CalculateAll, Calculation, InteractionMetric, MetricType, TYPES,
};
use table::ToTable;

fn metric_id(path: Result<Path<String>, PathRejection>) -> Result<uuid::Uuid, ApiError> {
    let Path(id) = path.map_err(|e| ApiError::bad("INVALID_ID", format!("id: {e}")))?;
    uuid::Uuid::parse_str(&id)
        .map_err(|_| ApiError::bad("INVALID_ID", format!("{id:?} is not a metric id (a UUID)")))
}

/// `GET /api/interaction-metrics`.
#[utoipa::path(
    get,
    path = "/api/interaction-metrics",
    tag = "Interaction Metrics",
    params(crate::api::openapi::WorkspaceHeader),
    responses((status = 200, description = "The workspace's metrics", body = Vec<InteractionMetric>))
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
) -> Result<Json<Vec<InteractionMetric>>, ApiError> {
    let ws = principal.workspace_from(&headers)?;
    Ok(Json(service::list(&state.engine, &ws).await?))
}

/// `POST /api/interaction-metrics`: 201 with the stored metric.
#[utoipa::path(
    post,
    path = "/api/interaction-metrics",
    tag = "Interaction Metrics",
    params(crate::api::openapi::WorkspaceHeader),
    request_body = crate::api::openapi::InteractionMetricRequest,
    responses((status = 201, description = "The stored metric", body = InteractionMetric))
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
    JsonBody(body): JsonBody<JsonValue>,
) -> Result<(StatusCode, Json<InteractionMetric>), ApiError> {
    let ws = principal.workspace_from(&headers)?;
    principal.require_admin()?;
    let metric = service::create(&state.engine, &ws, &body, state.clock.now_ms()).await?;
    Ok((StatusCode::CREATED, Json(metric)))
}

/// `GET /api/interaction-metrics/{id}`.
#[utoipa::path(
    get,
    path = "/api/interaction-metrics/{id}",
    tag = "Interaction Metrics",
    params(("id" = uuid::Uuid, Path, description = "The metric's id"), crate::api::openapi::WorkspaceHeader),
    responses((status = 200, description = "The metric", body = InteractionMetric))
)]
pub async fn get(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<InteractionMetric>, ApiError> {
    let ws = principal.workspace_from(&headers)?;
    let id = metric_id(path)?;
    Ok(Json(service::get(&state.engine, &ws, id).await?))
}

/// `PUT /api/interaction-metrics/{id}`: fields given replace the stored
/// ones; fields left out keep their values.
#[utoipa::path(
    put,
    path = "/api/interaction-metrics/{id}",
    tag = "Interaction Metrics",
    params(("id" = uuid::Uuid, Path, description = "The metric's id"), crate::api::openapi::WorkspaceHeader),
    request_body = crate::api::openapi::InteractionMetricRequest,
    responses((status = 200, description = "The metric as stored now", body = InteractionMetric))
)]
pub async fn update(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<JsonValue>,
) -> Result<Json<InteractionMetric>, ApiError> {
    let ws = principal.workspace_from(&headers)?;
    principal.require_admin()?;
    let id = metric_id(path)?;
    Ok(Json(
        service::update(&state.engine, &ws, id, &body, state.clock.now_ms()).await?,
    ))
}

/// `DELETE /api/interaction-metrics/{id}`: 204.
#[utoipa::path(
    delete,
    path = "/api/interaction-metrics/{id}",
    tag = "Interaction Metrics",
    params(("id" = uuid::Uuid, Path, description = "The metric's id"), crate::api::openapi::WorkspaceHeader),
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
    let id = metric_id(path)?;
    service::delete(&state.engine, &ws, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/interaction-metrics/types`: the same for every workspace, so
/// any token may ask; a workspace named in `X-Workspace-Id` must still be
/// the token's (a wall answers the same whatever is behind it).
#[utoipa::path(
    get,
    path = "/api/interaction-metrics/types",
    tag = "Interaction Metrics",
    params(crate::api::openapi::WorkspaceHeader),
    responses((status = 200, description = "Every metric type", body = Vec<MetricType>))
)]
pub async fn list_types(
    principal: Principal,
    headers: HeaderMap,
) -> Result<Json<&'static [MetricType]>, ApiError> {
    if headers.contains_key("x-workspace-id") {
        principal.workspace_from(&headers)?;
    }
    Ok(Json(&TYPES[..]))
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoverParams {
    resource_type_id: Option<String>,
    action_id: Option<String>,
}

/// `GET /api/interaction-metrics/fields/discover?resourceTypeId=&actionId=`:
/// a JSON array of the `interaction.{key}` paths in matching events.
#[utoipa::path(
    get,
    path = "/api/interaction-metrics/fields/discover",
    tag = "Interaction Metrics",
    params(crate::api::openapi::WorkspaceHeader, ("resourceTypeId" = Option<String>, Query, description = "Only events of this resource type"), ("actionId" = Option<String>, Query, description = "Only events of this action")),
    responses((status = 200, description = "The `interaction.KEY` fields seen", body = Vec<String>))
)]
pub async fn discover(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
    params: Result<Query<DiscoverParams>, QueryRejection>,
) -> Result<Json<Vec<String>>, ApiError> {
    let ws = principal.workspace_from(&headers)?;
    let Query(p) = params.map_err(|e| ApiError::bad("INVALID_PARAMETER", e.body_text()))?;
    let fields = service::discover(
        &state.engine,
        &ws,
        p.resource_type_id.as_deref(),
        p.action_id.as_deref(),
    )
    .await?;
    Ok(Json(fields))
}

/// `POST /api/interaction-metrics/{id}/calculate`.
#[utoipa::path(
    post,
    path = "/api/interaction-metrics/{id}/calculate",
    tag = "Interaction Metrics",
    params(("id" = uuid::Uuid, Path, description = "The metric's id"), crate::api::openapi::WorkspaceHeader),
    responses(
        (status = 200, description = "The metric's values over its window", content((Calculation = "application/json"), (String = "text/csv"))),
        (status = 422, description = "The metric cannot be calculated as defined", body = crate::api::openapi::ErrorBody),
    )
)]
pub async fn calculate(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Answer<Calculation>, ApiError> {
    let ws = principal.workspace_from(&headers)?;
    let id = metric_id(path)?;
    let calculation = service::calculate(&state.engine, &ws, id, state.clock.now_ms()).await?;
    Ok(Answer::negotiate(
        &headers,
        calculation,
        Calculation::to_table,
    ))
}

/// `POST /api/interaction-metrics/calculate-all`: every enabled metric.
#[utoipa::path(
    post,
    path = "/api/interaction-metrics/calculate-all",
    tag = "Interaction Metrics",
    params(crate::api::openapi::WorkspaceHeader),
    responses(
        (status = 200, description = "Every enabled metric's values (admin tokens only)", content((CalculateAll = "application/json"), (String = "text/csv"))),
        (status = 422, description = "The metric cannot be calculated as defined", body = crate::api::openapi::ErrorBody),
    )
)]
pub async fn calculate_all(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
) -> Result<Answer<CalculateAll>, ApiError> {
    let ws = principal.workspace_from(&headers)?;
    // Every enabled metric over its whole window at once: minutes of
    // scanning, so an admin's call.
    principal.require_admin()?;
    let all = service::calculate_all(&state.engine, &ws, state.clock.now_ms()).await?;
    Ok(Answer::negotiate(&headers, all, CalculateAll::to_table))
}
