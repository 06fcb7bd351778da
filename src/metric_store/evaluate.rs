//! On-demand evaluation: one metric for one subject over a range, computed
//! now and not stored (`POST /v1/{ws}/metrics/{key}/evaluate`).

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use super::answers::answer_rows;
use super::compute::{Spec, compute};
use super::conversations::conversations;
use super::{Error, Result};
use crate::compile::events_predicate;
use crate::engine::Engine;
use crate::metric_store::extract::Error as AiError;
use crate::metric_store::extract::{self, Ai, Budget};
use crate::metric_store::level::{Level, Selection};
use crate::metric_store::{DataSource, MetricDef, MetricType, wire};
use crate::storage::values::ValueRow;

/// A value computed on demand (`evaluate`), not stored.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub value: Option<f64>,
    pub categories: Option<BTreeMap<String, f64>>,
    pub sample_size: i64,
    /// Production or simulation: the events the value came from.
    pub source: DataSource,
    pub period_start: i64,
    pub period_end: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    /// No such subject, or no conversation summary for it.
    #[error("{0}")]
    NotFound(String),
    /// The metric cannot be evaluated for this subject on demand.
    #[error("{0}")]
    NotEvaluable(String),
    /// The server has no AI endpoint (or no model for the tier).
    #[error("{0}")]
    NotConfigured(String),
    /// The AI endpoint failed.
    #[error("{0}")]
    Upstream(String),
    /// The query failed.
    #[error(transparent)]
    Failed(#[from] Error),
}

/// Computes one metric for one subject over a range, without storing it.
/// Without a subject, the value is the workspace's production value.
pub async fn evaluate(
    engine: &Engine,
    ai: &Ai,
    def: &MetricDef,
    level: Level,
    sel: &Selection,
    now_ms: i64,
) -> Result<Evaluation, EvaluateError> {
    if def.extraction_mode.is_ai() {
        require_subject(engine, sel).await?;
        let Some(session) = &sel.session_id else {
            return Err(EvaluateError::NotEvaluable(format!(
                "{} is an AI metric ({}): it is evaluated per conversation; give a subject_id",
                def.key,
                wire(def.extraction_mode)
            )));
        };
        let convs = conversations(
            engine,
            &sel.workspace,
            def,
            (sel.from_ms, sel.to_ms),
            Some(session),
            &HashSet::new(),
            1,
        )
        .await?;
        let Some(conv) = convs.into_iter().next() else {
            return Err(EvaluateError::NotFound(format!(
                "call {session:?} has no conversation summary ({} events of {}) in the range",
                def.event_types().join(", "),
                def.source.name()
            )));
        };
        if let Some(e) = ai.unavailable(def) {
            return Err(EvaluateError::NotConfigured(format!(
                "{} is an AI metric and {e}",
                def.key
            )));
        }
        let budget = Budget::new(1);
        let answer = extract::extract(ai, &budget, def, &conv.text)
            .await
            .map_err(|e| match e {
                AiError::NotConfigured | AiError::NoModel(_) => {
                    EvaluateError::NotConfigured(format!("{}: {e}", def.key))
                }
                other => EvaluateError::Upstream(format!("{}: {other}", def.key)),
            })?;
        let rows = answer_rows(&sel.workspace, def, &conv, &answer, now_ms);
        return Ok(summarise(def, &rows, conv.source, (sel.from_ms, sel.to_ms)));
    }
    let spec = Spec {
        ws: &sel.workspace,
        level,
        granularity: None,
        sel,
        now_ms,
    };
    // The selection names the subject, so every row is its own: of one
    // source, or (a call with simulated and real events) production's.
    let rows = compute(engine, engine.events_source(), &spec, &[def]).await?;
    let has = |s: DataSource| {
        rows.iter()
            .any(|r| r.category.is_none() && DataSource::of_stored(&r.source) == s)
    };
    let source =
        if level == Level::Call && !has(DataSource::Production) && has(DataSource::Simulation) {
            DataSource::Simulation
        } else {
            DataSource::Production
        };
    let rows: Vec<ValueRow> = rows
        .into_iter()
        .filter(|r| DataSource::of_stored(&r.source) == source)
        .collect();
    let evaluation = summarise(def, &rows, source, (sel.from_ms, sel.to_ms));
    if evaluation.sample_size == 0 {
        // No value: tell an unknown subject from one without such events.
        require_subject(engine, sel).await?;
    }
    Ok(evaluation)
}

/// A 404 unless some event of the workspace in the range names the
/// selection's subject.
async fn require_subject(engine: &Engine, sel: &Selection) -> Result<(), EvaluateError> {
    let df = engine
        .ctx
        .table("events")
        .await
        .map_err(|e| Error::from(crate::engine::Error::from(e)))?
        .filter(
            events_predicate(&sel.workspace, sel.range(), &[], &sel.filters())
                .map_err(Error::from)?,
        )
        .and_then(|df| df.limit(0, Some(1)))
        .map_err(Error::from)?;
    let found = engine
        .execute(df.logical_plan().clone())
        .await
        .map_err(Error::from)?
        .iter()
        .any(|b| b.num_rows() > 0);
    if found {
        return Ok(());
    }
    let who = match (&sel.session_id, &sel.service_id) {
        (Some(s), _) => format!("call {s:?}"),
        (None, Some(s)) => format!("service {s:?}"),
        _ => format!("workspace {:?}", sel.workspace),
    };
    Err(EvaluateError::NotFound(format!(
        "no events for {who} between the given dates"
    )))
}

/// The value of `rows` (one subject), its period the rows' own or else
/// `range`.
fn summarise(
    def: &MetricDef,
    rows: &[ValueRow],
    source: DataSource,
    range: (i64, i64),
) -> Evaluation {
    let head = rows.iter().find(|r| r.category.is_none());
    let categories = (def.metric_type == MetricType::Categorical).then(|| {
        rows.iter()
            .filter_map(|r| Some((r.category.clone()?, r.value.unwrap_or(0.0))))
            .collect()
    });
    Evaluation {
        value: head.and_then(|r| r.value),
        categories,
        sample_size: head.map(|r| r.sample_size).unwrap_or(0),
        source,
        period_start: head.map(|r| r.period_start).unwrap_or(range.0),
        period_end: head.map(|r| r.period_end).unwrap_or(range.1),
    }
}
