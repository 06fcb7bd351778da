//! One run of the pipeline: the days and workspaces it covers, static
//! values per (workspace, day) with a checkpoint, then AI values.

use std::sync::Arc;

use chrono::{NaiveDate, TimeZone, Utc};
use datafusion::logical_expr::{col, lit};
use futures::StreamExt;
use serde::Serialize;

use super::ai_values::run_ai_metric;
use super::checkpoint::Checkpoint;
use super::static_values::compute_and_store_day;
use crate::compile::ts;
use crate::engine::Engine;
use crate::engine::columns::strings;
use crate::metric_store::extract::{Ai, Budget};
use crate::metric_store::{
    Error, LOOKBACK_MS, MAX_RANGE_DAYS, MetricDef, Result, Source, load_settings,
};
use crate::storage::events::{DAY_MS, day_start_millis};

/// Conversations per AI metric per run.
pub const AI_CONVERSATIONS_PER_RUN: usize = 500;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub now_ms: i64,
}

/// What a run did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    pub from: String,
    pub to: String,
    pub workspaces: usize,
    pub days_computed: usize,
    pub days_resumed: usize,
    pub values_written: usize,
    pub ai_requests: usize,
    pub ai_values: usize,
    pub ai_dropped: usize,
    pub ai_failed: usize,
    /// Metrics not computed, with the reason.
    pub skipped: Vec<String>,
    /// (workspace, day) units that failed, with the error: one tenant's
    /// failure does not stop the others; the next run retries them.
    pub failed: Vec<String>,
}

pub(super) fn day_of_ms(ms: i64) -> NaiveDate {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.date_naive())
        .unwrap_or_default()
}

/// The days a run covers: the given range, or the days the last 24 hours
/// touch.
pub fn days(opts: &Options) -> Result<Vec<NaiveDate>> {
    let (from, to) = match (opts.from, opts.to) {
        (None, None) => (day_of_ms(opts.now_ms - LOOKBACK_MS), day_of_ms(opts.now_ms)),
        (Some(f), None) => (f, day_of_ms(opts.now_ms).max(f)),
        (None, Some(t)) => (t, t),
        (Some(f), Some(t)) => (f, t),
    };
    if to < from {
        return Err(Error::Range(format!("--to {to} is before --from {from}")));
    }
    let n = (to - from).num_days();
    if n >= MAX_RANGE_DAYS {
        return Err(Error::Range(format!(
            "{} days from {from} to {to}; one run covers at most {MAX_RANGE_DAYS}",
            n + 1
        )));
    }
    Ok((0..=n)
        .map(|i| from + chrono::Days::new(i as u64))
        .collect())
}

pub(super) fn all_event_types() -> Vec<&'static str> {
    Source::ALL
        .iter()
        .flat_map(|s| s.event_types().iter().copied())
        .collect()
}

async fn workspaces(engine: &Engine, from_ms: i64, to_ms: i64) -> Result<Vec<String>> {
    let types = all_event_types().into_iter().map(lit).collect();
    let batches = engine
        .ctx
        .table("events")
        .await?
        .filter(
            col("time")
                .gt_eq(ts(from_ms))
                .and(col("time").lt(ts(to_ms)))
                .and(col("event_type").in_list(types, false)),
        )?
        .aggregate(vec![col("workspace_id")], vec![])?
        .collect()
        .await?;
    let mut out = Vec::new();
    for b in &batches {
        out.extend(strings(b, "workspace_id")?.into_iter().flatten());
    }
    out.sort();
    Ok(out)
}

/// Runs the pipeline once.
pub async fn run(engine: &Engine, ai: &Ai, opts: &Options) -> Result<Report> {
    let days = days(opts)?;
    let (first, last) = (days[0], *days.last().expect("non-empty"));
    let mut report = Report {
        from: first.to_string(),
        to: last.to_string(),
        ..Default::default()
    };
    let store = &engine.store;
    let mut checkpoint = Checkpoint::load(store).await?;
    let resuming =
        !checkpoint.finished && checkpoint.from == report.from && checkpoint.to == report.to;
    if !resuming {
        checkpoint = Checkpoint {
            from: report.from.clone(),
            to: report.to.clone(),
            ..Default::default()
        };
    } else if !checkpoint.done.is_empty() {
        tracing::info!(
            done = checkpoint.done.len(),
            "resuming an unfinished pipeline run"
        );
    }
    let range_from = day_start_millis(first);
    let range_to = day_start_millis(last) + DAY_MS;
    let workspaces = workspaces(engine, range_from, range_to).await?;
    report.workspaces = workspaces.len();
    // Each workspace's active definitions, split: static ones per day,
    // AI ones per conversation afterwards.
    let mut units = Vec::new();
    let mut ai_defs = Vec::new();
    for ws in &workspaces {
        let (ai_metrics, static_metrics): (Vec<MetricDef>, Vec<MetricDef>) =
            load_settings(store, ws)
                .await?
                .all()
                .into_iter()
                .filter(|d| d.active)
                .partition(|d| d.extraction_mode.is_ai());
        ai_defs.push((ws, ai_metrics));
        let defs = Arc::new(static_metrics);
        for day in &days {
            if checkpoint.done.contains(&format!("{ws}|{day}")) {
                report.days_resumed += 1;
            } else {
                units.push((ws.clone(), *day, Arc::clone(&defs)));
            }
        }
    }
    // A day's plans read one in-memory partition, so two days at once
    // keep two cores busy. Results are checkpointed as they land.
    let parallel = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 4);
    let mut done = futures::stream::iter(units.into_iter().map(|(ws, day, defs)| async move {
        let unit = format!("{ws}|{day}");
        let result = compute_and_store_day(engine, &ws, day, &defs, opts.now_ms)
            .await
            .map(|n| (unit.clone(), n));
        (unit, result)
    }))
    .buffer_unordered(parallel);
    while let Some((unit, result)) = done.next().await {
        let (mark, n) = match result {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(unit = %unit, error = %e, "pipeline unit failed; the others go on");
                report.failed.push(format!("{unit}: {e}"));
                continue;
            }
        };
        report.values_written += n;
        report.days_computed += 1;
        checkpoint.done.insert(mark);
        checkpoint.save(store).await?;
    }
    let window = (
        (opts.now_ms - LOOKBACK_MS).max(range_from),
        opts.now_ms.min(range_to),
    );
    // Each workspace has its own budget per run: one tenant's backlog
    // cannot spend another's model calls.
    let mut ai_requests = 0;
    for (ws, defs) in ai_defs {
        let budget = Budget::new(ai.budget);
        for def in defs {
            if let Some(e) = ai.unavailable(&def) {
                let why = format!("{ws}/{}: {e}", def.key);
                tracing::warn!(reason = %why, "AI metric skipped");
                report.skipped.push(why);
                continue;
            }
            if window.0 >= window.1 {
                let why = format!(
                    "{ws}/{}: the range lies outside the last 24 hours, where AI metrics are computed",
                    def.key
                );
                tracing::info!(reason = %why, "AI metric skipped");
                report.skipped.push(why);
                continue;
            }
            run_ai_metric(
                engine,
                ai,
                &budget,
                ws,
                &def,
                window,
                opts.now_ms,
                &mut report,
            )
            .await?;
        }
        ai_requests += budget.used();
    }
    report.ai_requests = ai_requests;
    // With failed units the run stays unfinished: the next run of the
    // same range resumes and retries only those.
    checkpoint.finished = report.failed.is_empty();
    checkpoint.save(store).await?;
    tracing::info!(?report, "pipeline run finished");
    Ok(report)
}
