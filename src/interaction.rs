//! The Interaction Metrics service: definitions ([`model`]) read and
//! changed in the workspace's catalog document, each checked whole and
//! compiled against the events table before it is saved, and
//! calculations over `interaction` events with the window ending at "now".
//! The HTTP API (`api::interaction`) and metric alerts call these.

pub mod model;

use futures::StreamExt;
use serde_json::Value as JsonValue;

pub use model::*;

use crate::engine::{self, Engine};
use crate::storage;
use crate::storage::catalog::{Catalog, UpdateError};

/// What the service refuses or fails at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request or definition the API refuses (a 400 with `code`).
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    #[error("no interaction metric {0} in this workspace")]
    NotFound(uuid::Uuid),
    /// A stored metric that does not lower or compile (saved by an older
    /// version).
    #[error("{0}")]
    NotCalculable(String),
    #[error("too many concurrent changes to {0}; try again")]
    Contended(String),
    #[error(transparent)]
    Storage(storage::Error),
    #[error(transparent)]
    Engine(#[from] engine::Error),
}

impl Error {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            code,
            message: message.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn catalog(engine: &Engine) -> Catalog {
    Catalog::new(engine.store.clone(), KIND)
}

const KIND: &str = "interaction-metrics";

/// How many metrics `calculate-all` computes at once.
const CONCURRENT_CALCULATIONS: usize = 4;

fn storage_error(e: UpdateError<Error>) -> Error {
    match e {
        UpdateError::Rejected(e) => e,
        UpdateError::Storage(storage::Error::Contended { key }) => Error::Contended(key),
        UpdateError::Storage(e) => Error::Storage(e),
    }
}

fn not_found(id: uuid::Uuid) -> Error {
    Error::NotFound(id)
}

/// Every metric of `ws`, `metricTypeId` reported as the canonical id.
pub async fn list(engine: &Engine, ws: &str) -> Result<Vec<InteractionMetric>> {
    let (_, mut doc) = catalog(engine)
        .load::<WorkspaceMetrics>(ws)
        .await
        .map_err(Error::Storage)?;
    doc.metrics
        .iter_mut()
        .for_each(InteractionMetric::canonicalize);
    Ok(doc.metrics)
}

pub async fn get(engine: &Engine, ws: &str, id: uuid::Uuid) -> Result<InteractionMetric> {
    list(engine, ws)
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
) -> Result<()> {
    let invalid = |m: String| Error::invalid("VALIDATION_ERROR", m);
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
    engine: &Engine,
    ws: &str,
    body: &JsonValue,
    now_ms: i64,
) -> Result<InteractionMetric> {
    let now = timestamp(now_ms);
    let metric = check_metric(body, uuid::Uuid::new_v4(), &now, &now)?;
    ensure_calculable(engine, ws, now_ms, &metric)?;
    let stored = metric.clone();
    catalog(engine)
        .update(ws, move |doc: &mut WorkspaceMetrics| {
            if doc.metrics.len() >= MAX_METRICS_PER_WORKSPACE {
                return Err(Error::invalid(
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
    engine: &Engine,
    ws: &str,
    id: uuid::Uuid,
    body: &JsonValue,
    now_ms: i64,
) -> Result<InteractionMetric> {
    let Some(changes) = body.as_object().cloned() else {
        return Err(Error::invalid(
            "INVALID_REQUEST_BODY",
            "the request body must be a JSON object",
        ));
    };
    let now = timestamp(now_ms);
    catalog(engine)
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
            ensure_calculable(engine, ws, now_ms, &updated)?;
            *slot = updated.clone();
            Ok(updated)
        })
        .await
        .map_err(storage_error)
}

pub async fn delete(engine: &Engine, ws: &str, id: uuid::Uuid) -> Result<()> {
    catalog(engine)
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
    engine: &Engine,
    ws: &str,
    resource_type: Option<&str>,
    action: Option<&str>,
) -> Result<Vec<String>> {
    for v in [resource_type, action].into_iter().flatten() {
        if v.chars().count() > 256 {
            return Err(Error::invalid(
                "INVALID_PARAMETER",
                "resourceTypeId and actionId are at most 256 characters",
            ));
        }
    }
    let keys = engine
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
    engine: &Engine,
    ws: &str,
    metric: &InteractionMetric,
    now_ms: i64,
) -> Result<Calculation> {
    let not_calculable = |m: String| {
        Error::NotCalculable(format!(
            "metric {} cannot be calculated; update it: {m}",
            metric.id
        ))
    };
    let query = metric.to_query(ws, now_ms).map_err(not_calculable)?;
    let series = match engine.run(&query).await {
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

/// Calculates one metric with the window ending at `now_ms`.
pub async fn calculate(
    engine: &Engine,
    ws: &str,
    id: uuid::Uuid,
    now_ms: i64,
) -> Result<Calculation> {
    let metric = get(engine, ws, id).await?;
    run(engine, ws, &metric, now_ms).await
}

/// Every enabled metric, a few at once, all with the same "now". A metric
/// that cannot be calculated (stored by an older version) is logged and
/// left out, so one bad definition does not fail the workspace; other
/// failures (storage, engine) fail the request.
pub async fn calculate_all(engine: &Engine, ws: &str, now_ms: i64) -> Result<CalculateAll> {
    let metrics: Vec<InteractionMetric> = list(engine, ws)
        .await?
        .into_iter()
        .filter(|m| m.enabled)
        .collect();
    let runs: Vec<(InteractionMetric, Result<Calculation>)> =
        futures::stream::iter(metrics.into_iter().map(|m| async move {
            let run = run(engine, ws, &m, now_ms).await;
            (m, run)
        }))
        .buffered(CONCURRENT_CALCULATIONS)
        .collect()
        .await;
    let mut results = Vec::with_capacity(runs.len());
    for (metric, run) in runs {
        match run {
            Ok(c) => results.push(CalculatedMetric::from(c)),
            Err(Error::NotCalculable(reason)) => {
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
