//! What the Interaction Metrics handlers ask for: definitions read and
//! changed in the workspace's catalog document, each checked whole and
//! compiled against the events table before it is saved, and
//! calculations over `interaction` events with the window ending at "now".

use futures::StreamExt;
use serde_json::Value as JsonValue;

use super::types::*;
use crate::api::{ApiError, AppState};
use crate::engine::Engine;
use crate::storage::catalog::UpdateError;

const KIND: &str = "interaction-metrics";

/// How many metrics `calculate-all` computes at once.
const CONCURRENT_CALCULATIONS: usize = 4;

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

/// Every metric of `ws`, `metricTypeId` reported as the canonical id.
pub async fn list(state: &AppState, ws: &str) -> Result<Vec<InteractionMetric>, ApiError> {
    let (_, mut doc) = state
        .catalog(KIND)
        .load::<WorkspaceMetrics>(ws)
        .await
        .map_err(ApiError::internal)?;
    doc.metrics
        .iter_mut()
        .for_each(InteractionMetric::canonicalize);
    Ok(doc.metrics)
}

pub async fn get(
    state: &AppState,
    ws: &str,
    id: uuid::Uuid,
) -> Result<InteractionMetric, ApiError> {
    list(state, ws)
        .await?
        .into_iter()
        .find(|m| m.id == id)
        .ok_or_else(|| not_found(id))
}

/// Refuses a metric that would not calculate: the same lowering and
/// compilation `calculate` runs, against the events table, then the
/// analyzer and optimizer (type coercion), all without reading data.
pub fn ensure_calculable(
    engine: &Engine,
    ws: &str,
    now_ms: i64,
    metric: &InteractionMetric,
) -> Result<(), ApiError> {
    let invalid = |m: String| ApiError::bad("VALIDATION_ERROR", m);
    let query = metric.to_query(ws, now_ms).map_err(invalid)?;
    let compiled = crate::compile::compile(&query, engine.events_source()).map_err(|e| {
        metric
            .plan_problem(e)
            .unwrap_or_else(|e| invalid(e.to_string()))
    })?;
    engine
        .ctx
        .state()
        .optimize(&compiled.plan)
        .map_err(|e| invalid(format!("this metric cannot be calculated: {e}")))?;
    Ok(())
}

/// `POST`: checks `body` whole and stores it under a new id.
pub async fn create(
    state: &AppState,
    ws: &str,
    body: &JsonValue,
) -> Result<InteractionMetric, ApiError> {
    let now_ms = state.clock.now_ms();
    let now = timestamp(now_ms);
    let metric = check_metric(body, uuid::Uuid::new_v4(), &now, &now)?;
    ensure_calculable(&state.engine, ws, now_ms, &metric)?;
    let stored = metric.clone();
    state
        .catalog(KIND)
        .update(ws, move |doc: &mut WorkspaceMetrics| {
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
    Ok(metric)
}

/// `PUT`: the fields given replace the stored ones, the fields left out
/// keep their values; the result is checked (and compiled) whole.
pub async fn update(
    state: &AppState,
    ws: &str,
    id: uuid::Uuid,
    body: &JsonValue,
) -> Result<InteractionMetric, ApiError> {
    let Some(changes) = body.as_object().cloned() else {
        return Err(ApiError::bad(
            "INVALID_REQUEST_BODY",
            "the request body must be a JSON object",
        ));
    };
    let now_ms = state.clock.now_ms();
    let now = timestamp(now_ms);
    state
        .catalog(KIND)
        .update(ws, move |doc: &mut WorkspaceMetrics| {
            let slot = doc
                .metrics
                .iter_mut()
                .find(|m| m.id == id)
                .ok_or_else(|| not_found(id))?;
            slot.canonicalize();
            let mut merged = serde_json::to_value(&*slot).expect("metrics serialise");
            let obj = merged.as_object_mut().expect("an object");
            for (k, v) in &changes {
                if !matches!(k.as_str(), "id" | "createdAt" | "updatedAt") {
                    obj.insert(k.clone(), v.clone());
                }
            }
            let updated = check_metric(&merged, id, &slot.created_at, &now)?;
            ensure_calculable(&state.engine, ws, now_ms, &updated)?;
            *slot = updated.clone();
            Ok(updated)
        })
        .await
        .map_err(storage_error::<ApiError>)
}

pub async fn delete(state: &AppState, ws: &str, id: uuid::Uuid) -> Result<(), ApiError> {
    state
        .catalog(KIND)
        .update(ws, move |doc: &mut WorkspaceMetrics| {
            let before = doc.metrics.len();
            doc.metrics.retain(|m| m.id != id);
            if doc.metrics.len() == before {
                Err(not_found(id))
            } else {
                Ok(())
            }
        })
        .await
        .map_err(storage_error)
}

/// The `interaction.{key}` paths that occur in matching events, sorted.
pub async fn discover(
    state: &AppState,
    ws: &str,
    resource_type: Option<&str>,
    action: Option<&str>,
) -> Result<Vec<String>, ApiError> {
    for v in [resource_type, action].into_iter().flatten() {
        if v.chars().count() > 256 {
            return Err(ApiError::bad(
                "INVALID_PARAMETER",
                "resourceTypeId and actionId are at most 256 characters",
            ));
        }
    }
    let keys = state
        .engine
        .attribute_keys(ws, "interaction", resource_type, action)
        .await?;
    Ok(keys
        .into_iter()
        .map(|k| format!("interaction.{k}"))
        .collect())
}

/// Runs one metric with the window ending at `now_ms`. A definition that
/// does not lower or compile (stored by an older version) is a 422.
async fn run(
    state: &AppState,
    ws: &str,
    metric: &InteractionMetric,
    now_ms: i64,
) -> Result<Calculation, ApiError> {
    let not_calculable = |m: String| {
        ApiError::Unprocessable(format!(
            "metric {} cannot be calculated; update it: {m}",
            metric.id
        ))
    };
    let query = metric.to_query(ws, now_ms).map_err(not_calculable)?;
    let series = match state.engine.run(&query).await {
        Ok(series) => series,
        Err(crate::engine::Error::Compile(e)) => {
            return Err(not_calculable(match metric.plan_problem(e) {
                Ok(problem) => problem.to_string(),
                Err(other) => other.to_string(),
            }));
        }
        Err(e) => return Err(e.into()),
    };
    let results = if metric.group_by.is_empty() {
        let value = series.first().and_then(|s| s.points.first()).map(|p| p.1);
        vec![ResultRow {
            value,
            dimensions: None,
        }]
    } else {
        // Largest first, as the document's grouped examples list them (and
        // so `sampleValue` is the top group); ties by the group's values.
        let mut series = series;
        series.sort_by(|a, b| {
            let (va, vb) = (
                a.points.first().map_or(f64::NEG_INFINITY, |p| p.1),
                b.points.first().map_or(f64::NEG_INFINITY, |p| p.1),
            );
            vb.total_cmp(&va).then_with(|| a.group.cmp(&b.group))
        });
        series
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
            .collect()
    };
    Ok(Calculation {
        metric_id: metric.id,
        metric_name: metric.name.clone(),
        metric_type: metric.mnemonic().to_string(),
        calculated_at: timestamp(now_ms),
        results,
    })
}

pub async fn calculate(
    state: &AppState,
    ws: &str,
    id: uuid::Uuid,
) -> Result<Calculation, ApiError> {
    let metric = get(state, ws, id).await?;
    run(state, ws, &metric, state.clock.now_ms()).await
}

/// Every enabled metric, a few at once, all with the same "now". A metric
/// that cannot be calculated (stored by an older version) is logged and
/// left out, so one bad definition does not fail the workspace; other
/// failures (storage, engine) fail the request.
pub async fn calculate_all(state: &AppState, ws: &str) -> Result<CalculateAll, ApiError> {
    let now_ms = state.clock.now_ms();
    let metrics: Vec<InteractionMetric> = list(state, ws)
        .await?
        .into_iter()
        .filter(|m| m.enabled)
        .collect();
    let runs: Vec<(InteractionMetric, Result<Calculation, ApiError>)> =
        futures::stream::iter(metrics.into_iter().map(|m| async move {
            let run = run(state, ws, &m, now_ms).await;
            (m, run)
        }))
        .buffered(CONCURRENT_CALCULATIONS)
        .collect()
        .await;
    let mut results = Vec::with_capacity(runs.len());
    for (metric, run) in runs {
        match run {
            Ok(c) => results.push(CalculatedMetric::from(c)),
            Err(ApiError::Unprocessable(reason)) => {
                tracing::warn!(workspace = ws, metric_id = %metric.id, %reason, "calculate-all left out a metric");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(CalculateAll {
        calculated: results.len(),
        results,
    })
}
