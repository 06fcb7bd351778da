//! Reading materialised values back: the `metric_values` table (a
//! `ListingTable` over `storage::values`, registered by [`register`], also
//! queryable in the REPL) filtered by workspace, metrics, entity and dates.

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::logical_expr::{Expr, col, lit};

use super::{DataSource, Granularity};
use crate::compile::ts;
use crate::engine::{Engine, Result};
use crate::storage::values::{self, DAY_COLUMN, ValueRow, WS_COLUMN};

/// The name of the values table in every session.
pub const TABLE: &str = "metric_values";

/// Registers the `metric_values` table in `engine`'s session (once).
pub fn register(engine: &Engine) -> Result<()> {
    if engine.ctx.table_exist(TABLE)? {
        return Ok(());
    }
    let table = crate::engine::parquet_table(
        &engine.store,
        values::VALUES_DIR,
        &[WS_COLUMN, DAY_COLUMN],
        values::schema(),
        Vec::new(),
    )?;
    engine.ctx.register_table(TABLE, Arc::new(table))?;
    Ok(())
}

/// Which stored values to read.
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    pub workspace: String,
    pub keys: Option<Vec<String>>,
    pub granularity: Option<Granularity>,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    pub service_id: Option<String>,
    pub session_id: Option<String>,
    /// Production or simulation values; `None` for both.
    pub source: Option<DataSource>,
    /// Periods starting at or after this instant.
    pub from_ms: Option<i64>,
    /// Periods starting before this instant.
    pub to_ms: Option<i64>,
}

fn day(ms: i64) -> String {
    crate::storage::events::date_of_millis(ms)
}

/// Reads the values `q` selects, in no particular order.
pub async fn lookup(engine: &Engine, q: &Lookup) -> Result<Vec<ValueRow>> {
    let mut pred = col(WS_COLUMN)
        .eq(lit(values::ws_partition(&q.workspace)))
        .and(col("workspace_id").eq(lit(q.workspace.as_str())));
    let eq = |name: &str, v: &Option<String>| v.as_ref().map(|v| col(name).eq(lit(v.as_str())));
    let parts: Vec<Option<Expr>> = vec![
        q.keys.as_ref().map(|keys| {
            col("metric_key").in_list(keys.iter().map(|k| lit(k.as_str())).collect(), false)
        }),
        q.granularity.map(|g| col("granularity").eq(lit(g.name()))),
        eq("entity_type", &q.entity_type),
        eq("entity_id", &q.entity_id),
        eq("service_id", &q.service_id),
        eq("session_id", &q.session_id),
        q.source.map(|s| match s {
            // Values stored before the distinction hold a metric source
            // name there: production.
            DataSource::Production => col("source").not_eq(lit(DataSource::Simulation.name())),
            DataSource::Simulation => col("source").eq(lit(DataSource::Simulation.name())),
        }),
        q.from_ms.map(|ms| {
            col("period_start")
                .gt_eq(ts(ms))
                .and(col(DAY_COLUMN).gt_eq(lit(day(ms))))
        }),
        q.to_ms.map(|ms| {
            col("period_start")
                .lt(ts(ms))
                .and(col(DAY_COLUMN).lt_eq(lit(day(ms))))
        }),
    ];
    for p in parts.into_iter().flatten() {
        pred = pred.and(p);
    }
    let schema = values::schema();
    let names: Vec<Expr> = schema.fields().iter().map(|f| col(f.name())).collect();
    register(engine)?;
    let df = engine.ctx.table(TABLE).await?.filter(pred)?.select(names)?;
    let batches = engine.execute(df.logical_plan().clone()).await?;
    let mut out = Vec::new();
    for b in &batches {
        // Strings may come back as views; cast to the stored schema.
        let cols: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .zip(b.columns())
            .map(|(f, c)| datafusion::arrow::compute::cast(c, f.data_type()))
            .collect::<Result<_, _>>()
            .map_err(datafusion::error::DataFusionError::from)?;
        let b = RecordBatch::try_new(Arc::clone(&schema), cols)
            .map_err(datafusion::error::DataFusionError::from)?;
        out.extend(values::from_batch(&b)?);
    }
    Ok(out)
}

/// The rows of the newest stored periods of `q`'s metrics. Looks at the
/// newest few days with values first (a listing and a pruned read) and
/// reads everything only if some metric has no value in them, or if the
/// lookup spans many subjects (every call).
pub async fn newest(engine: &Engine, q: &Lookup) -> Result<Vec<ValueRow>> {
    const RECENT_DAYS: usize = 2;
    // Only for one subject: "the newest value of every call" may lie
    // further back for calls that ended weeks ago.
    let one_subject = q.entity_id.is_some() || q.session_id.is_some() || q.service_id.is_some();
    if !one_subject {
        return lookup(engine, q).await;
    }
    let prefix = format!(
        "{}/{WS_COLUMN}={}/",
        values::VALUES_DIR,
        values::ws_partition(&q.workspace)
    );
    let mut days: Vec<String> = engine
        .store
        .list(&prefix)
        .await?
        .into_iter()
        .filter_map(|m| {
            m.location
                .as_ref()
                .split('/')
                .find_map(|p| p.strip_prefix("day=").map(str::to_string))
        })
        .collect();
    days.sort();
    days.dedup();
    if days.len() > RECENT_DAYS {
        let first = &days[days.len() - RECENT_DAYS];
        if let Ok(d) = chrono::NaiveDate::parse_from_str(first, "%Y-%m-%d") {
            let from_ms = crate::storage::events::day_start_millis(d);
            let recent = lookup(
                engine,
                &Lookup {
                    from_ms: Some(from_ms),
                    ..q.clone()
                },
            )
            .await?;
            let found: std::collections::HashSet<&str> =
                recent.iter().map(|r| r.metric_key.as_str()).collect();
            if let Some(keys) = &q.keys {
                let missing: Vec<String> = keys
                    .iter()
                    .filter(|k| !found.contains(k.as_str()))
                    .cloned()
                    .collect();
                if missing.is_empty() {
                    return Ok(recent);
                }
                // Older values only for the metrics the recent days lack.
                let mut older = lookup(
                    engine,
                    &Lookup {
                        keys: Some(missing),
                        ..q.clone()
                    },
                )
                .await?;
                older.extend(recent);
                return Ok(older);
            }
        }
    }
    lookup(engine, q).await
}
