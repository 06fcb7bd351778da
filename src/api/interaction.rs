//! The Interaction Metrics API: definitions persisted per workspace in the
//! object store (a versioned catalog), calculated through the compiler
//! over `interaction` events with the window ending at "now".

pub mod types;

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value as JsonValue;

use super::auth::Principal;
use super::csv::Answer;
use super::{ApiError, AppState, JsonBody};
use crate::storage::catalog::UpdateError;
use types::*;

const KIND: &str = "interaction-metrics";

fn now_text(state: &AppState) -> String {
    crate::api::alexa::types::timestamp(state.clock.now_ms())
}

fn metric_id(path: Result<Path<String>, PathRejection>) -> Result<uuid::Uuid, ApiError> {
    let Path(id) = path.map_err(|e| ApiError::bad("INVALID_ID", format!("id: {e}")))?;
    uuid::Uuid::parse_str(&id)
        .map_err(|_| ApiError::bad("INVALID_ID", format!("{id:?} is not a metric id (a UUID)")))
}

fn storage_error<E: Into<ApiError>>(e: UpdateError<E>) -> ApiError {
    match e {
        UpdateError::Rejected(e) => e.into(),
        UpdateError::Storage(crate::storage::Error::Contended { key }) => ApiError::Unavailable {
            message: format!("too many concurrent changes to {key}; try again"),
            retry_after: std::time::Duration::from_secs(1),
        },
        UpdateError::Storage(e) => ApiError::internal(e),
    }
}

fn not_found(id: uuid::Uuid) -> ApiError {
    ApiError::not_found(
        "METRIC_NOT_FOUND",
        format!("no interaction metric {id} in this workspace"),
    )
}

async fn load(state: &AppState, ws: &str) -> Result<WorkspaceMetrics, ApiError> {
    let catalog = state.catalog(KIND);
    Ok(catalog
        .load::<WorkspaceMetrics>(ws)
        .await
        .map_err(ApiError::internal)?
        .1)
}

/// `GET /api/interaction-metrics`.
pub async fn list(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
) -> Result<Json<Vec<InteractionMetric>>, ApiError> {
    let ws = principal.workspace_from(&headers)?;
    Ok(Json(load(&state, &ws).await?.metrics))
}

/// `POST /api/interaction-metrics`.
pub async fn create(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
    JsonBody(body): JsonBody<JsonValue>,
) -> Result<(StatusCode, Json<InteractionMetric>), ApiError> {
    let ws = principal.workspace_from(&headers)?;
    principal.require_admin()?;
    let now = now_text(&state);
    let metric = check_metric(&body, uuid::Uuid::new_v4(), &now, &now)?;
    let stored = metric.clone();
    state
        .catalog(KIND)
        .update(&ws, move |doc: &mut WorkspaceMetrics| {
            if doc.metrics.len() >= MAX_METRICS_PER_WORKSPACE {
                return Err(ApiError::bad(
                    "LIMIT_EXCEEDED",
                    format!("a workspace holds at most {MAX_METRICS_PER_WORKSPACE} metrics"),
                ));
            }
            doc.metrics.push(stored.clone());
            Ok(())
        })
        .await
        .map_err(storage_error)?;
    Ok((StatusCode::CREATED, Json(metric)))
}

/// `GET /api/interaction-metrics/{id}`.
pub async fn get(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<InteractionMetric>, ApiError> {
    let ws = principal.workspace_from(&headers)?;
    let id = metric_id(path)?;
    let doc = load(&state, &ws).await?;
    doc.metrics
        .into_iter()
        .find(|m| m.id == id)
        .map(Json)
        .ok_or_else(|| not_found(id))
}

/// `PUT /api/interaction-metrics/{id}`: fields given replace the stored
/// ones; fields left out keep their values. The result is checked whole.
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
    let Some(changes) = body.as_object().cloned() else {
        return Err(ApiError::bad(
            "INVALID_REQUEST_BODY",
            "the request body must be a JSON object",
        ));
    };
    let now = now_text(&state);
    state
        .catalog(KIND)
        .update(&ws, move |doc: &mut WorkspaceMetrics| {
            let slot = doc
                .metrics
                .iter_mut()
                .find(|m| m.id == id)
                .ok_or_else(|| not_found(id))?;
            let mut merged = serde_json::to_value(&*slot).expect("metrics serialise");
            let obj = merged.as_object_mut().expect("an object");
            for (k, v) in &changes {
                if !matches!(k.as_str(), "id" | "createdAt" | "updatedAt") {
                    obj.insert(k.clone(), v.clone());
                }
            }
            let updated = check_metric(&merged, id, &slot.created_at, &now)?;
            *slot = updated.clone();
            Ok(updated)
        })
        .await
        .map(Json)
        .map_err(storage_error::<ApiError>)
}

/// `DELETE /api/interaction-metrics/{id}`.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let ws = principal.workspace_from(&headers)?;
    principal.require_admin()?;
    let id = metric_id(path)?;
    state
        .catalog(KIND)
        .update(&ws, move |doc: &mut WorkspaceMetrics| {
            let before = doc.metrics.len();
            doc.metrics.retain(|m| m.id != id);
            if doc.metrics.len() == before {
                Err(not_found(id))
            } else {
                Ok(())
            }
        })
        .await
        .map_err(storage_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/interaction-metrics/types`.
pub async fn list_types(_principal: Principal) -> Json<Vec<MetricType>> {
    Json(
        TYPES
            .iter()
            .map(|(id, name, requires_field, description)| MetricType {
                id,
                name,
                requires_field: *requires_field,
                description,
            })
            .collect(),
    )
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoverParams {
    resource_type_id: Option<String>,
    action_id: Option<String>,
}

/// `GET /api/interaction-metrics/fields/discover?resourceTypeId=&actionId=`:
/// the `interaction.{key}` paths that occur in matching events.
pub async fn discover(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
    params: Result<Query<DiscoverParams>, QueryRejection>,
) -> Result<Json<DiscoveredFields>, ApiError> {
    let ws = principal.workspace_from(&headers)?;
    let Query(p) = params.map_err(|e| ApiError::bad("INVALID_PARAMETER", e.body_text()))?;
    for v in [&p.resource_type_id, &p.action_id].into_iter().flatten() {
        if v.chars().count() > 256 {
            return Err(ApiError::bad(
                "INVALID_PARAMETER",
                "resourceTypeId and actionId are at most 256 characters",
            ));
        }
    }
    let keys = state
        .engine
        .attribute_keys(
            &ws,
            "interaction",
            p.resource_type_id.as_deref(),
            p.action_id.as_deref(),
        )
        .await?;
    Ok(Json(DiscoveredFields {
        resource_type_id: p.resource_type_id,
        action_id: p.action_id,
        fields: keys
            .into_iter()
            .map(|k| format!("interaction.{k}"))
            .collect(),
    }))
}

async fn calculate_one(
    state: &AppState,
    ws: &str,
    metric: &InteractionMetric,
) -> Result<Vec<ResultRow>, ApiError> {
    let query = metric.to_query(ws, state.clock.now_ms())?;
    let series = state.engine.run(&query).await?;
    if metric.group_by.is_empty() {
        let value = series.first().and_then(|s| s.points.first()).map(|p| p.1);
        return Ok(vec![ResultRow {
            value,
            dimensions: None,
        }]);
    }
    Ok(series
        .into_iter()
        .filter_map(|s| {
            let value = s.points.first()?.1;
            let dims = metric
                .group_by
                .iter()
                .zip(s.group)
                .map(|(g, v)| {
                    (
                        dimension_key(g),
                        v.map(JsonValue::String).unwrap_or(JsonValue::Null),
                    )
                })
                .collect();
            Some(ResultRow {
                value: Some(value),
                dimensions: Some(dims),
            })
        })
        .collect())
}

/// `POST /api/interaction-metrics/{id}/calculate`.
pub async fn calculate(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Answer<Calculation>, ApiError> {
    let ws = principal.workspace_from(&headers)?;
    let id = metric_id(path)?;
    let metric = load(&state, &ws)
        .await?
        .metrics
        .into_iter()
        .find(|m| m.id == id)
        .ok_or_else(|| not_found(id))?;
    let results = calculate_one(&state, &ws, &metric).await?;
    let calculation = Calculation {
        metric_id: metric.id,
        metric_name: metric.name,
        metric_type: metric.metric_type_id,
        calculated_at: now_text(&state),
        results,
    };
    Ok(Answer::negotiate(
        &headers,
        calculation,
        Calculation::to_table,
    ))
}

/// `POST /api/interaction-metrics/calculate-all`: every enabled metric,
/// concurrently.
pub async fn calculate_all(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
) -> Result<Answer<CalculateAll>, ApiError> {
    let ws = principal.workspace_from(&headers)?;
    let metrics: Vec<InteractionMetric> = load(&state, &ws)
        .await?
        .metrics
        .into_iter()
        .filter(|m| m.enabled)
        .collect();
    let runs = metrics.iter().map(|m| calculate_one(&state, &ws, m));
    let all = futures::future::try_join_all(runs).await?;
    let metrics: Vec<CalculatedMetric> = metrics
        .into_iter()
        .zip(all)
        .map(|(m, results)| CalculatedMetric {
            metric_id: m.id,
            metric_name: m.name,
            metric_type: m.metric_type_id,
            result_count: results.len(),
            sample_value: results.first().and_then(|r| r.value),
            results,
        })
        .collect();
    let all = CalculateAll {
        calculated: metrics.len(),
        calculated_at: now_text(&state),
        metrics,
    };
    Ok(Answer::negotiate(&headers, all, CalculateAll::to_table))
}
