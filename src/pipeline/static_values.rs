//! Static values of one (workspace, day): the day's events read once into
//! memory, every static metric computed per source and level, and the
//! day's file replaced with one put.

use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::datasource::{MemTable, provider_as_source};
use datafusion::logical_expr::TableSource;

use super::run::all_event_types;
use crate::compile::events_predicate;
use crate::engine::Engine;
use crate::metric_store::compute::{Spec, compute};
use crate::metric_store::level::{self, Level, Selection};
use crate::metric_store::{Granularity, MetricDef, Result, Source};
use crate::storage::events::{DAY_MS, day_start_millis};
use crate::storage::values::{self, STATIC_FILE, ValueRow};

/// Computes one (workspace, day) and replaces its values file; returns
/// the number of values.
pub(super) async fn compute_and_store_day(
    engine: &Engine,
    ws: &str,
    day: NaiveDate,
    defs: &[MetricDef],
    now_ms: i64,
) -> Result<usize> {
    let store = &engine.store;
    let rows = compute_day(engine, ws, day, defs, now_ms).await?;
    if !rows.is_empty() {
        values::write_file(store, ws, &day.to_string(), STATIC_FILE, &rows).await?;
    } else {
        // No events: a file from an earlier run (events since removed)
        // must not survive.
        store
            .delete_if_exists(&values::file_path(store, ws, &day.to_string(), STATIC_FILE))
            .await?;
    }
    Ok(rows.len())
}

/// The events of a selection that any source or definition reads, in
/// memory.
async fn day_table(
    engine: &Engine,
    sel: &Selection,
    defs: &[MetricDef],
) -> Result<Arc<dyn TableSource>> {
    let mut types: Vec<&str> = all_event_types();
    for t in level::event_types_of(defs) {
        if !types.contains(&t) {
            types.push(t);
        }
    }
    let df = engine.ctx.table("events").await?.filter(events_predicate(
        &sel.workspace,
        sel.range(),
        &types,
        &sel.filters(),
    )?)?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let batches = engine.execute(df.logical_plan().clone()).await?;
    let table = MemTable::try_new(schema, vec![batches])?;
    Ok(provider_as_source(Arc::new(table)))
}

/// Every static metric of `defs` for one workspace and day: daily values
/// per workspace, service and call, and hourly workspace values for
/// hourly metrics.
pub async fn compute_day(
    engine: &Engine,
    ws: &str,
    day: NaiveDate,
    defs: &[MetricDef],
    now_ms: i64,
) -> Result<Vec<ValueRow>> {
    let from_ms = day_start_millis(day);
    let sel = Selection {
        workspace: ws.to_string(),
        from_ms,
        to_ms: from_ms + DAY_MS,
        session_id: None,
        service_id: None,
    };
    let table = day_table(engine, &sel, defs).await?;
    let mut rows = Vec::new();
    for source in Source::ALL {
        let of_source: Vec<&MetricDef> = defs.iter().filter(|d| d.source == source).collect();
        if of_source.is_empty() {
            continue;
        }
        let mut runs: Vec<(Level, Granularity, Vec<&MetricDef>)> = Level::ALL
            .iter()
            .map(|l| (*l, Granularity::Daily, of_source.clone()))
            .collect();
        let hourly: Vec<&MetricDef> = of_source
            .iter()
            .copied()
            .filter(|d| d.period_granularity == Granularity::Hourly)
            .collect();
        if !hourly.is_empty() {
            runs.push((Level::Workspace, Granularity::Hourly, hourly));
        }
        for (level, gran, defs) in runs {
            let spec = Spec {
                ws,
                level,
                granularity: Some(gran),
                sel: &sel,
                now_ms,
            };
            rows.extend(compute(engine, Arc::clone(&table), &spec, &defs).await?);
        }
    }
    Ok(rows)
}
