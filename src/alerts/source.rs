//! The values a rule watches, one call into the rest of the crate per kind
//! of source: an interaction metric (its `timeWindow` and `groupBy`), a
//! Skill Metrics query (over the look-back, one value per group) and a
//! Metric Store metric (computed on demand over the look-back, for the
//! workspace). Each gives per-group values for a window ending at a given
//! time, so conditions can also look at earlier windows.

use serde_json::Value as Json;

use super::rule::{AlertRule, MetricStoreMetric, SkillMetric, Source, parse_duration};
use crate::api::AppState;

pub type Dimensions = serde_json::Map<String, Json>;

/// One group's value (`None`: no value, e.g. an average of nothing).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupValue {
    pub dimensions: Option<Dimensions>,
    pub value: Option<f64>,
}

/// The values of one window.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The window's length (`None`: an interaction metric over all time).
    pub window_ms: Option<i64>,
    pub groups: Vec<GroupValue>,
}

/// A source that is refused when a rule is saved: the field and why.
pub type Refusal = (String, String);

/// Checks that the rule's source exists and can be evaluated, so a saved
/// rule evaluates; returns the field at fault.
pub async fn check(state: &AppState, ws: &str, rule: &AlertRule) -> Result<Option<i64>, Refusal> {
    match rule.source() {
        Source::Interaction(id) => {
            let metric = crate::interaction::get(&state.engine, ws, id)
                .await
                .map_err(|e| ("metricId".to_string(), e.to_string()))?;
            Ok(metric
                .time_window
                .as_deref()
                .and_then(|w| crate::definition::TimeWindow::parse(w).ok())
                .map(|w| w.ms))
        }
        Source::Skill(s) => {
            skill_query(s, ws, state.clock.now_ms())?;
            Ok(parse_duration(&s.look_back).ok())
        }
        Source::Store(m) => {
            store_metric(state, ws, m).await?;
            Ok(parse_duration(&m.look_back).ok())
        }
    }
}

/// The values of the window ending at `end_ms`.
pub async fn sample(
    state: &AppState,
    ws: &str,
    rule: &AlertRule,
    end_ms: i64,
) -> Result<Sample, String> {
    match rule.source() {
        Source::Interaction(id) => interaction(state, ws, id, end_ms).await,
        Source::Skill(s) => {
            let window_ms = parse_duration(&s.look_back).ok();
            let q = skill_query(s, ws, end_ms).map_err(|(_, m)| m)?;
            let series = state.engine.run(&q).await.map_err(|e| e.to_string())?;
            let groups = if s.group_by.is_some() {
                series
                    .into_iter()
                    .map(|s2| GroupValue {
                        dimensions: Some(
                            [(
                                s.group_by.clone().unwrap_or_default(),
                                s2.group
                                    .first()
                                    .cloned()
                                    .flatten()
                                    .map_or(Json::Null, Json::String),
                            )]
                            .into_iter()
                            .collect(),
                        ),
                        value: total(&s2.points),
                    })
                    .collect()
            } else {
                vec![GroupValue {
                    dimensions: None,
                    value: series.first().and_then(|s| total(&s.points)),
                }]
            };
            Ok(Sample { window_ms, groups })
        }
        Source::Store(m) => {
            let window_ms = parse_duration(&m.look_back).map_err(|e| e.to_string())?;
            let def = store_metric(state, ws, m).await.map_err(|(_, m)| m)?;
            let sel = crate::metric_store::level::Selection {
                workspace: ws.to_string(),
                from_ms: end_ms - window_ms,
                to_ms: end_ms,
                session_id: None,
                service_id: None,
            };
            let value = match crate::metric_store::evaluate(
                &state.engine,
                &state.ai,
                &def,
                crate::metric_store::level::Level::Workspace,
                &sel,
                end_ms,
            )
            .await
            {
                Ok(e) => e.value,
                // No events of the workspace in the window: no value.
                Err(crate::metric_store::EvaluateError::NotFound(_)) => None,
                Err(e) => return Err(e.to_string()),
            };
            Ok(Sample {
                window_ms: Some(window_ms),
                groups: vec![GroupValue {
                    dimensions: None,
                    value,
                }],
            })
        }
    }
}

/// A single-bucket query has one point per group; summing covers a
/// bucket boundary inside the window all the same.
fn total(points: &[(i64, f64)]) -> Option<f64> {
    match points {
        [] => None,
        [(_, v)] => Some(*v),
        many => Some(many.iter().map(|p| p.1).sum()),
    }
}

async fn interaction(
    state: &AppState,
    ws: &str,
    id: uuid::Uuid,
    end_ms: i64,
) -> Result<Sample, String> {
    let metric = crate::interaction::get(&state.engine, ws, id)
        .await
        .map_err(|e| e.to_string())?;
    let window_ms = metric
        .time_window
        .as_deref()
        .and_then(|w| crate::definition::TimeWindow::parse(w).ok())
        .map(|w| w.ms);
    let query = metric.to_query(ws, end_ms)?;
    let series = state.engine.run(&query).await.map_err(|e| e.to_string())?;
    let groups = if metric.group_by.is_empty() {
        vec![GroupValue {
            dimensions: None,
            value: series.first().and_then(|s| s.points.first()).map(|p| p.1),
        }]
    } else {
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
                            crate::interaction::dimension_key(g),
                            v.map_or(Json::Null, Json::String),
                        )
                    })
                    .collect();
                Some(GroupValue {
                    dimensions: Some(dims),
                    value: Some(value),
                })
            })
            .collect()
    };
    Ok(Sample { window_ms, groups })
}

/// The rule's Skill Metrics query as the Skill Metrics API checks it, for
/// the window ending at `end_ms`; its problems named under `skillMetric`.
fn skill_query(
    s: &SkillMetric,
    ws: &str,
    end_ms: i64,
) -> Result<crate::definition::Query, Refusal> {
    let look_back = parse_duration(&s.look_back).map_err(|e| ("skillMetric.lookBack".into(), e))?;
    let mut q = serde_json::json!({
        "id": "alert",
        "metricNamespace": s.metric_namespace,
        "name": s.name,
        "aggregationPeriod": "SINGLE",
        "dimensions": s.dimensions.iter().map(|d| serde_json::json!({"name": d.name, "value": d.value})).collect::<Vec<_>>(),
    });
    if let Some(stat) = &s.stat {
        q["stat"] = Json::String(stat.clone());
    }
    if let Some(g) = &s.group_by {
        q["groupBy"] = Json::String(g.clone());
    }
    let body = serde_json::json!({
        "startTime": end_ms - look_back,
        "endTime": end_ms,
        "metricQueries": [q],
    });
    let checked = crate::skill_metrics::check_request(&body, ws).map_err(|e| {
        let message = e.to_string().replace("metricQueries[0].", "skillMetric.");
        let field = message
            .split(':')
            .next()
            .filter(|f| f.starts_with("skillMetric."))
            .unwrap_or("skillMetric")
            .to_string();
        (field, message)
    })?;
    checked
        .queries
        .into_iter()
        .next()
        .map(|c| c.query)
        .ok_or_else(|| ("skillMetric".into(), "the query did not check".into()))
}

/// The workspace's Metric Store definition of `m`, if an alert can watch
/// it: numerical or boolean (one value), and static (AI metrics are
/// valued per conversation, not for a workspace).
async fn store_metric(
    state: &AppState,
    ws: &str,
    m: &MetricStoreMetric,
) -> Result<crate::metric_store::MetricDef, Refusal> {
    let field = || "metricStore.metricKey".to_string();
    let settings = crate::metric_store::load_settings(&state.engine.store, ws)
        .await
        .map_err(|e| {
            (
                field(),
                format!("the Metric Store settings could not be read: {e}"),
            )
        })?;
    let def = settings.get(&m.metric_key).ok_or_else(|| {
        (
            field(),
            format!(
                "no Metric Store metric {:?} in this workspace",
                m.metric_key
            ),
        )
    })?;
    if def.extraction_mode.is_ai() {
        return Err((
            field(),
            format!(
                "{} is an AI metric, valued per conversation; alerts watch workspace values",
                def.key
            ),
        ));
    }
    if def.metric_type == crate::metric_store::MetricType::Categorical {
        return Err((
            field(),
            format!(
                "{} is categorical; alerts watch numerical and boolean metrics",
                def.key
            ),
        ));
    }
    Ok(def)
}
