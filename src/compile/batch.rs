//! Many measures in one scan: the measures of one selection of events (for
//! the Metric Store, one source, level and granularity) become one
//! aggregate, each measure with its own selection as an aggregate `FILTER`
//! (as [`super::compile`] does for the parts of a ratio), and each with a
//! sample size: how many values it read. The groups are those of every
//! event the batch reads (its filters, its measures' event types), so a
//! period with events but none a measure reads has that measure's empty
//! value (a count of 0, no average).
//!
//! ```text
//! Projection(bucket, g0.., c0.., v0, n0, v1, n1, ..)
//!   Aggregate(bucket, g0.. ; max(carried).., a_i [FILTER (WHERE sel_i)], n_i [FILTER ..])
//!     Filter(workspace AND time range AND filters AND groups present AND event types)
//!       TableScan(events)
//! ```

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::functions_aggregate::expr_fn as agg;
use datafusion::logical_expr::{
    Expr, LogicalPlan, LogicalPlanBuilder, TableSource, cast, col, lit,
};

use super::expr::{
    self, Leaf, bucket_expr, dimension_expr, filter_expr, leaf_aggregate, selection_expr,
    text_expr, with_filter,
};
use super::{BUCKET, Error, Result};
use crate::definition::{
    Bucket, Dimension, Field, Filter, Measure, Problems, TimeRange, Validator,
};

/// A group-by of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Grouping {
    pub dimension: Dimension,
    /// Events without a value of the dimension are not read at all.
    pub required: bool,
}

/// The measures to compute over one selection of events.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub workspace_id: String,
    pub range: TimeRange,
    /// Filters on every event read (a call, a service).
    pub filters: Vec<Filter>,
    pub bucket: Bucket,
    /// Columns `g0, g1, ..`.
    pub group_by: Vec<Grouping>,
    /// Text fields carried along per group, as their greatest value:
    /// columns `c0, c1, ..` (a call's service).
    pub carry: Vec<Field>,
    /// Aggregates (not ratios or differences): columns `v{i}` (Float64)
    /// and, with `sample_sizes`, `n{i}` (how many values it read, Int64).
    pub measures: Vec<Measure>,
    pub sample_sizes: bool,
}

/// Column names of a batch plan.
pub fn group_col(i: usize) -> String {
    format!("g{i}")
}
pub fn carry_col(i: usize) -> String {
    format!("c{i}")
}
pub fn value_col(i: usize) -> String {
    format!("v{i}")
}
pub fn sample_col(i: usize) -> String {
    format!("n{i}")
}

/// A compiled batch.
#[derive(Debug, Clone)]
pub struct BatchPlan {
    pub plan: LogicalPlan,
}

impl Batch {
    fn validate(&self) -> Result<(), Problems> {
        let mut v = Validator::default();
        if self.workspace_id.is_empty() {
            v.push("workspace_id", "must not be empty");
        }
        self.range.validate("range", self.bucket, &mut v);
        for (i, m) in self.measures.iter().enumerate() {
            let path = format!("measures[{i}]");
            if !matches!(m, Measure::Aggregate { .. }) {
                v.push(&path, "a batch computes aggregates, not combinations");
            }
            m.validate(&path, &mut v);
        }
        v.finish()
    }
}

/// Compiles `batch` against the `events` table `source`.
pub fn compile_batch(batch: &Batch, source: Arc<dyn TableSource>) -> Result<BatchPlan> {
    batch.validate()?;
    let leaves: Vec<Leaf> = batch
        .measures
        .iter()
        .map(|m| {
            let mut out = Vec::new();
            expr::collect_leaves(m, &mut out);
            out.pop().expect("an aggregate is one leaf")
        })
        .collect();

    let mut predicate = expr::range_predicate(&batch.workspace_id, batch.range);
    for (i, filter) in batch.filters.iter().enumerate() {
        predicate = predicate.and(filter_expr(filter, &format!("filters[{i}]"))?);
    }
    for g in batch.group_by.iter().filter(|g| g.required) {
        predicate = predicate.and(dimension_expr(&g.dimension).is_not_null());
    }
    // The event types any measure reads, when every measure names some:
    // the scan reads only those, and a measure reading all of them needs
    // no test of its own.
    let mut types: Vec<&str> = Vec::new();
    let typed = leaves.iter().all(|l| !l.events.event_types.is_empty());
    if typed {
        for l in &leaves {
            for t in &l.events.event_types {
                if !types.contains(&t.as_str()) {
                    types.push(t);
                }
            }
        }
        predicate = predicate.and(match types.as_slice() {
            [one] => col("event_type").eq(lit(*one)),
            many => col("event_type").in_list(many.iter().map(|t| lit(*t)).collect(), false),
        });
    }
    let covers = |l: &Leaf| {
        typed
            && l.events.event_types.len() == types.len()
            && types
                .iter()
                .all(|t| l.events.event_types.iter().any(|u| u == t))
    };
    let selections: Vec<Option<Expr>> = leaves
        .iter()
        .enumerate()
        .map(|(i, l)| selection_expr(l, &format!("measures[{i}]"), covers(l)))
        .collect::<Result<_>>()?;

    let mut groups = vec![bucket_expr(batch.bucket, batch.range).alias(BUCKET)];
    for (i, g) in batch.group_by.iter().enumerate() {
        groups.push(dimension_expr(&g.dimension).alias(group_col(i)));
    }
    let mut aggs = Vec::new();
    for (i, field) in batch.carry.iter().enumerate() {
        aggs.push(agg::max(text_expr(field)).alias(carry_col(i)));
    }
    let window_ms = batch
        .bucket
        .width_ms()
        .unwrap_or(batch.range.end_ms - batch.range.start_ms);
    let mut values = Vec::new();
    for (i, (leaf, sel)) in leaves.iter().zip(&selections).enumerate() {
        let a = leaf_aggregate(leaf, window_ms, &format!("measures[{i}]"))?;
        let mut value = a.aggregate.clone();
        let mut sample = agg::count(a.sampled.clone());
        if let Some(sel) = sel {
            value = with_filter(value, sel.clone());
            sample = with_filter(sample, sel.clone());
        }
        let a_col = format!("a{i}");
        aggs.push(value.alias(&a_col));
        if batch.sample_sizes {
            aggs.push(sample.alias(sample_col(i)));
        }
        values.push(cast(a.finish(col(a_col)), DataType::Float64).alias(value_col(i)));
    }

    let mut projection = vec![col(BUCKET)];
    projection.extend((0..batch.group_by.len()).map(|i| col(group_col(i))));
    projection.extend((0..batch.carry.len()).map(|i| col(carry_col(i))));
    for (i, v) in values.into_iter().enumerate() {
        projection.push(v);
        if batch.sample_sizes {
            projection.push(col(sample_col(i)));
        }
    }
    let plan = LogicalPlanBuilder::scan("events", source, None)?
        .filter(predicate)?
        .aggregate(groups, aggs)?
        .project(projection)?
        .build()
        .map_err(Error::Plan)?;
    Ok(BatchPlan { plan })
}
