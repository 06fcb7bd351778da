//! Static values: every static metric of a source for one level and
//! granularity over a table of events, as the value rows the pipeline
//! stores and `evaluate` answers. The plans come from the shared compiler
//! ([`crate::compile::batch`]) through [`super::level::batch`].

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::logical_expr::TableSource;

use super::{Error, Result};
use crate::compile::batch::{sample_col, value_col};
use crate::compile::{self, BUCKET};
use crate::engine::Engine;
use crate::engine::columns::{self, floats, ints, strings};
use crate::metric_store::level::{self, Level, Selection};
use crate::metric_store::{AggregationName, DataSource, Granularity, MetricDef, MetricType};
use crate::storage::values::ValueRow;

/// One computation: which level, which periods.
#[derive(Debug)]
pub struct Spec<'a> {
    pub ws: &'a str,
    pub level: Level,
    pub granularity: Option<Granularity>,
    pub sel: &'a Selection,
    pub now_ms: i64,
}

impl Spec<'_> {
    fn period_ms(&self) -> i64 {
        self.granularity
            .map(Granularity::ms)
            .unwrap_or(self.sel.to_ms - self.sel.from_ms)
    }

    fn row(
        &self,
        def: &MetricDef,
        period: i64,
        entity: Option<String>,
        service: Option<String>,
        source: Option<&str>,
    ) -> ValueRow {
        let granularity = self.granularity.map(Granularity::name).unwrap_or("range");
        let period = (granularity, period, period + self.period_ms());
        let mut row = value_row(
            self.ws,
            def,
            period,
            self.level,
            entity,
            service,
            self.now_ms,
        );
        if let Some(s) = source {
            row.source = s.to_string();
        }
        row
    }
}

/// A row of `def` for one period (`granularity`, start, end) and subject,
/// without a value yet. `entity` is the service or call of the level; a
/// call's row also names its `service`.
pub(super) fn value_row(
    ws: &str,
    def: &MetricDef,
    (granularity, start, end): (&str, i64, i64),
    level: Level,
    entity: Option<String>,
    service: Option<String>,
    now_ms: i64,
) -> ValueRow {
    let (entity_id, service_id, session_id) = match level {
        Level::Workspace => (ws.to_string(), None, None),
        Level::Service => (entity.clone().unwrap_or_default(), entity, None),
        Level::Call => (entity.clone().unwrap_or_default(), service, entity),
    };
    ValueRow {
        workspace_id: ws.to_string(),
        metric_key: def.key.clone(),
        source: DataSource::Production.name().to_string(),
        granularity: granularity.to_string(),
        period_start: start,
        period_end: end,
        scope: level.scope().to_string(),
        entity_type: level.entity_type().to_string(),
        entity_id,
        service_id,
        session_id,
        category: None,
        value: None,
        sample_size: 0,
        computed_at: now_ms,
    }
}

/// Values of `defs` (static, all of one source) for one level over
/// `table` (the events table or a day in memory).
pub async fn compute(
    engine: &Engine,
    table: Arc<dyn TableSource>,
    spec: &Spec<'_>,
    defs: &[&MetricDef],
) -> Result<Vec<ValueRow>> {
    let mut rows = Vec::new();
    if defs.is_empty() {
        return Ok(rows);
    }
    let numeric: Vec<&MetricDef> = defs
        .iter()
        .copied()
        .filter(|d| d.metric_type != MetricType::Categorical)
        .collect();
    if !numeric.is_empty() {
        let (batch, cols) = level::batch(spec.sel, spec.level, spec.granularity, &numeric, None)
            .map_err(Error::Definition)?;
        let plan = compile::compile_batch(&batch, Arc::clone(&table))?.plan;
        let batches = engine.execute(plan).await?;
        let whole = spec.granularity.is_none() || spec.granularity == Some(Granularity::Daily);
        if spec.level == Level::Workspace && whole && batches.iter().all(|b| b.num_rows() == 0) {
            // A day without events of the source: counts are 0, the rest
            // have no value (as SQL aggregates over no rows).
            for def in &numeric {
                let mut row = spec.row(def, spec.sel.from_ms, None, None, None);
                if matches!(
                    def.aggregation,
                    AggregationName::Count | AggregationName::Rate | AggregationName::CountDistinct
                ) {
                    row.value = Some(0.0);
                }
                rows.push(row);
            }
        }
        for b in batches {
            let periods = times(&b, BUCKET)?;
            let entities = maybe_strings(&b, cols.entity.as_deref())?;
            let services = maybe_strings(&b, cols.service.as_deref())?;
            let sources = strings(&b, &cols.data_source)?;
            for (i, def) in numeric.iter().enumerate() {
                let v = floats(&b, &value_col(i))?;
                let n = ints(&b, &sample_col(i))?;
                for r in 0..b.num_rows() {
                    if n[r] == Some(0) && spec.level != Level::Workspace {
                        continue;
                    }
                    let mut row = spec.row(
                        def,
                        periods[r],
                        entities[r].clone(),
                        services[r].clone(),
                        sources[r].as_deref(),
                    );
                    row.value = v[r];
                    row.sample_size = n[r].unwrap_or(0);
                    rows.push(row);
                }
            }
        }
    }
    for def in defs
        .iter()
        .filter(|d| d.metric_type == MetricType::Categorical)
    {
        let category = def.field().map_err(Error::Definition)?;
        let (batch, cols) = level::batch(
            spec.sel,
            spec.level,
            spec.granularity,
            &[def],
            Some(category),
        )
        .map_err(Error::Definition)?;
        let plan = compile::compile_batch(&batch, Arc::clone(&table))?.plan;
        type GroupKey = (i64, Option<String>, Option<String>);
        let mut groups: BTreeMap<GroupKey, CategoryGroup> = BTreeMap::new();
        for b in engine.execute(plan).await? {
            let periods = times(&b, BUCKET)?;
            let entities = maybe_strings(&b, cols.entity.as_deref())?;
            let services = maybe_strings(&b, cols.service.as_deref())?;
            let sources = strings(&b, &cols.data_source)?;
            let cats = maybe_strings(&b, cols.category.as_deref())?;
            let n = ints(&b, &sample_col(0))?;
            for r in 0..b.num_rows() {
                let g = groups
                    .entry((periods[r], entities[r].clone(), sources[r].clone()))
                    .or_insert_with(|| (services[r].clone(), Vec::new()));
                if let Some(c) = &cats[r] {
                    g.1.push((c.clone(), n[r].unwrap_or(0)));
                }
            }
        }
        if groups.is_empty() && spec.level == Level::Workspace {
            // A period without events still has a (zero) count.
            let mut row = spec.row(def, spec.sel.from_ms, None, None, None);
            if spec.granularity.is_none() || spec.granularity == Some(Granularity::Daily) {
                row.value = Some(0.0);
                rows.push(row);
            }
        }
        for ((period, entity, source), (service, cats)) in groups {
            rows.extend(category_rows(
                spec.row(def, period, entity, service, source.as_deref()),
                def,
                &cats,
            ));
        }
    }
    Ok(rows)
}

/// The service of a (period, entity) group and its (category, count)s.
type CategoryGroup = (Option<String>, Vec<(String, i64)>);

/// The rows of a categorical value: one per category, and one without a
/// category holding the metric's value (all events, or the number of
/// distinct categories).
pub(super) fn category_rows(
    base: ValueRow,
    def: &MetricDef,
    cats: &[(String, i64)],
) -> Vec<ValueRow> {
    let total: i64 = cats.iter().map(|c| c.1).sum();
    let mut out = vec![ValueRow {
        value: Some(match def.aggregation {
            AggregationName::CountDistinct => cats.len() as f64,
            _ => total as f64,
        }),
        sample_size: total,
        ..base.clone()
    }];
    for (c, n) in cats {
        out.push(ValueRow {
            category: Some(c.clone()),
            value: Some(*n as f64),
            sample_size: *n,
            ..base.clone()
        });
    }
    out
}

/// A text column, or nulls when the plan has no such column (the
/// workspace level has no entity).
fn maybe_strings(b: &RecordBatch, name: Option<&str>) -> Result<Vec<Option<String>>> {
    match name {
        Some(n) => Ok(strings(b, n)?),
        None => Ok(vec![None; b.num_rows()]),
    }
}

/// Epoch milliseconds of a timestamp column (never null in our plans).
pub(super) fn times(b: &RecordBatch, name: &str) -> Result<Vec<i64>> {
    Ok(columns::millis(b, name)?
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect())
}
