//! Conversations as an AI model reads them: a call's events as text, the
//! most recent ones of a window first.

use std::collections::{HashMap, HashSet};

use chrono::{TimeZone, Utc};
use datafusion::functions_aggregate::expr_fn as agg;
use datafusion::logical_expr::{col, lit};

use super::Result;
use super::compute::times;
use crate::compile::{dimension_expr, events_predicate};
use crate::definition::Dimension;
use crate::engine::Engine;
use crate::engine::columns::strings;
use crate::metric_store::level::{self, Selection};
use crate::metric_store::{DataSource, MetricDef};

/// The column of a conversation's data source.
const DATA_SOURCE: &str = "data_source";

/// One conversation as an AI model reads it.
#[derive(Debug, Clone)]
pub struct Conversation {
    pub session_id: String,
    pub last_ms: i64,
    pub service_id: Option<String>,
    /// Whether any event of the conversation is simulated.
    pub source: DataSource,
    pub text: String,
}

/// At most this much conversation text goes to a model.
const MAX_CONVERSATION_CHARS: usize = 16_000;

/// The `limit` most recent conversations (sessions) of a source in a
/// window, or the one given, with their events as text.
pub async fn conversations(
    engine: &Engine,
    ws: &str,
    def: &MetricDef,
    window: (i64, i64),
    only: Option<&str>,
    exclude: &HashSet<String>,
    limit: usize,
) -> Result<Vec<Conversation>> {
    let sel = Selection {
        workspace: ws.to_string(),
        from_ms: window.0,
        to_ms: window.1,
        session_id: only.map(str::to_string),
        service_id: None,
    };
    let mut pred = events_predicate(ws, sel.range(), &def.event_types(), &sel.filters())?
        .and(col("session_id").is_not_null());
    if let Some((column, value)) = def.channel_scope.filter() {
        pred = pred.and(col(column).eq(lit(value)));
    }
    let df = engine.ctx.table("events").await?.filter(pred.clone())?;
    let recent = df
        .clone()
        .aggregate(
            vec![col("session_id")],
            vec![
                agg::max(col("time")).alias("last"),
                // "simulation" sorts after "production".
                agg::max(dimension_expr(&Dimension::DataSource)).alias(DATA_SOURCE),
            ],
        )?
        .sort(vec![
            col("last").sort(false, false),
            col("session_id").sort(true, false),
        ])?;
    let batches = engine.execute(recent.logical_plan().clone()).await?;
    let mut picked: Vec<(String, i64)> = Vec::new();
    let mut sources: HashMap<String, DataSource> = HashMap::new();
    for b in &batches {
        let ids = strings(b, "session_id")?;
        let last = times(b, "last")?;
        let src = strings(b, DATA_SOURCE)?;
        for ((id, t), s) in ids.into_iter().zip(last).zip(src) {
            if let Some(id) = id
                && !exclude.contains(&id)
                && picked.len() < limit
            {
                sources.insert(
                    id.clone(),
                    DataSource::of_stored(s.as_deref().unwrap_or("")),
                );
                picked.push((id, t));
            }
        }
    }
    if picked.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<_> = picked.iter().map(|(id, _)| lit(id.as_str())).collect();
    let rows = df
        .filter(col("session_id").in_list(ids, false))?
        .select(vec![
            col("session_id"),
            col("time"),
            col("event_type"),
            col("attributes"),
            dimension_expr(&Dimension::Field(level::service_field())).alias("service"),
        ])?
        .sort(vec![col("time").sort(true, false)])?;
    let batches = engine.execute(rows.logical_plan().clone()).await?;
    let mut text: HashMap<String, (Option<String>, String)> = HashMap::new();
    for b in &batches {
        let ids = strings(b, "session_id")?;
        let t = times(b, "time")?;
        let et = strings(b, "event_type")?;
        let attrs = strings(b, "attributes")?;
        let svc = strings(b, "service")?;
        for r in 0..b.num_rows() {
            let Some(id) = &ids[r] else { continue };
            let e = text.entry(id.clone()).or_default();
            if e.0.is_none() {
                e.0 = svc[r].clone();
            }
            if e.1.len() < MAX_CONVERSATION_CHARS {
                let when = Utc
                    .timestamp_millis_opt(t[r])
                    .single()
                    .map(|d| d.format("%H:%M:%S").to_string())
                    .unwrap_or_default();
                e.1.push_str(&format!(
                    "[{when}] {} {}\n",
                    et[r].as_deref().unwrap_or(""),
                    attrs[r].as_deref().unwrap_or("{}")
                ));
            }
        }
    }
    Ok(picked
        .into_iter()
        .map(|(id, last_ms)| {
            let (service_id, text) = text.remove(&id).unwrap_or_default();
            Conversation {
                source: sources.get(&id).copied().unwrap_or(DataSource::Production),
                session_id: id,
                last_ms,
                service_id,
                text: text.chars().take(MAX_CONVERSATION_CHARS).collect(),
            }
        })
        .collect())
}
