//! The compiler: a [`Query`] becomes a DataFusion [`LogicalPlan`], built with
//! `LogicalPlanBuilder` and `Expr` only, from the definition and the table's
//! schema: no session, no SQL text. Filter values are literals in the plan.
//!
//! Shape of every plan:
//!
//! ```text
//! Sort(bucket, g0..)
//!   Projection(bucket, g0.., value)            -- combines leaf aggregates
//!     Aggregate(bucket, g0.. ; leaf aggregates [FILTER (WHERE selection)])
//!       Filter(workspace AND time range AND common filters AND selections)
//!         TableScan(events)
//! ```
//!
//! A derived measure (ratio, difference) scans once: each leaf aggregate
//! carries its own selection as an aggregate `FILTER`. [`batch`] does the
//! same for many measures at once (the Metric Store's pipeline). The `time`
//! bounds are literals on the `time` column, so Parquet statistics prune
//! row groups and the events table derives its `date` partitions from them.

pub mod batch;
pub mod expr;
pub mod states;

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::DataFusionError;
use datafusion::functions::expr_fn as f;
use datafusion::logical_expr::{
    Expr, LogicalPlan, LogicalPlanBuilder, LogicalTableSource, TableSource, cast, col, lit,
};

pub use batch::{Batch, BatchPlan, Grouping, compile_batch};
pub use expr::{dimension_expr, filter_expr, ts};

use crate::definition::{Filter, Measure, Problems, Query, TimeRange};
use expr::{bucket_expr, collect_leaves, leaf_aggregate, selection_expr, with_filter};

/// The output columns of a compiled plan.
pub const BUCKET: &str = "bucket";
pub const VALUE: &str = "value";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(#[from] Problems),
    #[error("{path}: {message}")]
    Field { path: String, message: String },
    #[error("building plan: {0}")]
    Plan(#[from] DataFusionError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A plan and what is needed to read its answer.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub plan: LogicalPlan,
    /// Names of the group columns, in `group_by` order.
    pub group_columns: Vec<String>,
    /// Every bucket start of the range.
    pub buckets: Vec<i64>,
    /// Whether empty buckets read as 0 (and are returned) or are left out.
    pub fill_zero: bool,
}

/// A table source with the events schema but no data, for compiling and
/// snapshot-testing plans without a store.
pub fn schema_source(schema: SchemaRef) -> Arc<dyn TableSource> {
    Arc::new(LogicalTableSource::new(schema))
}

/// A tenant's events in a range, of the given event types (all when
/// empty), that pass `filters`: for plans that read events as they are
/// (the Metric Store's day tables and conversations).
pub fn events_predicate(
    workspace_id: &str,
    range: TimeRange,
    event_types: &[&str],
    filters: &[Filter],
) -> Result<Expr> {
    let mut predicate = expr::range_predicate(workspace_id, range);
    match event_types {
        [] => {}
        [one] => predicate = predicate.and(col("event_type").eq(lit(*one))),
        many => {
            predicate = predicate
                .and(col("event_type").in_list(many.iter().map(|t| lit(*t)).collect(), false))
        }
    }
    for (i, filter) in filters.iter().enumerate() {
        predicate = predicate.and(filter_expr(filter, &format!("filters[{i}]"))?);
    }
    Ok(predicate)
}

/// Compiles `query` against the `events` table `source`.
pub fn compile(query: &Query, source: Arc<dyn TableSource>) -> Result<Compiled> {
    query.validate()?;
    let mut leaves = Vec::new();
    collect_leaves(&query.measure, &mut leaves);

    // Rows: the tenant, the range, common filters, and any leaf's selection.
    let mut predicate = events_predicate(&query.workspace_id, query.range, &[], &query.filters)?;
    let selections: Vec<Option<Expr>> = leaves
        .iter()
        .enumerate()
        .map(|(i, leaf)| selection_expr(leaf, &format!("measure.leaf[{i}]"), false))
        .collect::<Result<_>>()?;
    let shared = selections.windows(2).all(|w| w[0] == w[1]);
    if shared {
        if let Some(Some(sel)) = selections.first() {
            predicate = predicate.and(sel.clone());
        }
    } else if selections.iter().all(Option::is_some) {
        let any = selections
            .iter()
            .flatten()
            .cloned()
            .reduce(Expr::or)
            .expect("at least one leaf");
        predicate = predicate.and(any);
    }

    let (group_exprs, group_columns) = groups(query);
    let window_ms = window_ms(query);
    let mut aggr_exprs = Vec::new();
    let mut finished = Vec::new();
    for (i, (leaf, sel)) in leaves.iter().zip(&selections).enumerate() {
        let a = leaf_aggregate(leaf, window_ms, &format!("measure.leaf[{i}]"))?;
        let mut e = a.aggregate.clone();
        if !shared && let Some(sel) = sel {
            e = with_filter(e, sel.clone());
        }
        aggr_exprs.push(e.alias(format!("a{i}")));
        finished.push(a.finish(col(format!("a{i}"))));
    }

    let rows = LogicalPlanBuilder::scan("events", source, None)?
        .filter(predicate)?
        .aggregate(group_exprs, aggr_exprs)?;
    finish(query, rows, finished, group_columns)
}

/// The bucket and group-by columns of a query's aggregate, and the group
/// columns' names (`g0`, `g1`, ...).
fn groups(query: &Query) -> (Vec<Expr>, Vec<String>) {
    let mut exprs = vec![bucket_expr(query.bucket, query.range).alias(BUCKET)];
    let mut names = Vec::new();
    for (i, d) in query.group_by.iter().enumerate() {
        let name = format!("g{i}");
        exprs.push(dimension_expr(d).alias(&name));
        names.push(name);
    }
    (exprs, names)
}

/// The span a rate is taken over: the bucket, or the range for `SINGLE`.
fn window_ms(query: &Query) -> i64 {
    query
        .bucket
        .width_ms()
        .unwrap_or(query.range.end_ms - query.range.start_ms)
}

/// The answer's columns over aggregated `rows` (bucket, groups and the
/// measure's value combined from its leaves' `finished` values), sorted,
/// and how to read them.
fn finish(
    query: &Query,
    rows: LogicalPlanBuilder,
    finished: Vec<Expr>,
    group_columns: Vec<String>,
) -> Result<Compiled> {
    let value = combine(&query.measure, &mut finished.into_iter());
    let mut projection = vec![col(BUCKET)];
    projection.extend(group_columns.iter().map(|g| col(g.as_str())));
    projection.push(cast(value, DataType::Float64).alias(VALUE));
    let mut sort = vec![col(BUCKET).sort(true, true)];
    sort.extend(
        group_columns
            .iter()
            .map(|g| col(g.as_str()).sort(true, true)),
    );
    let plan = rows.project(projection)?.sort(sort)?.build()?;
    Ok(Compiled {
        plan,
        group_columns,
        buckets: query.bucket.starts(query.range),
        fill_zero: query.measure.is_additive(),
    })
}

/// The measure's value over its leaves' values, in leaf order.
fn combine(m: &Measure, leaves: &mut impl Iterator<Item = Expr>) -> Expr {
    match m {
        Measure::Aggregate { .. } => leaves.next().expect("one value per leaf"),
        Measure::Ratio {
            numerator,
            denominator,
        } => {
            let n = cast(combine(numerator, leaves), DataType::Float64);
            let d = cast(combine(denominator, leaves), DataType::Float64);
            n / f::nullif(d, lit(0.0))
        }
        // Counts read an empty side as 0; averages and ratios have no value
        // without both sides (`METRICS.md`: such buckets are left out).
        Measure::Difference { left, right } if m.is_additive() => {
            let l = cast(combine(left, leaves), DataType::Float64);
            let r = cast(combine(right, leaves), DataType::Float64);
            f::coalesce(vec![l, lit(0.0)]) - f::coalesce(vec![r, lit(0.0)])
        }
        Measure::Difference { left, right } => {
            let l = cast(combine(left, leaves), DataType::Float64);
            let r = cast(combine(right, leaves), DataType::Float64);
            l - r
        }
        Measure::Scaled { factor, measure } => {
            cast(combine(measure, leaves), DataType::Float64) * lit(*factor)
        }
    }
}

#[cfg(test)]
mod tests;
