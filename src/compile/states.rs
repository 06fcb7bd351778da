//! Partial aggregate states, for rollups: what a leaf measure keeps per
//! group so that groups merge (counts, sums, minima and maxima, quantile
//! sketches, id sets), the aggregates that compute and merge them, and the
//! plan that answers a [`Query`] from rows of states instead of events.
//!
//! A leaf's state depends on its events, its value and the *kind* of its
//! aggregation only (every numeric aggregation shares one state: count,
//! sum, min, max and a sketch), so one rollup serves `avg`, `p90` and `sum`
//! of the same field. Each leaf also keeps `rows`, the events its selection
//! took: a group exists in an answer exactly when the raw plan would have
//! read an event for it.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion::functions::expr_fn as f;
use datafusion::functions_aggregate::expr_fn as agg;
use datafusion::logical_expr::{
    AggregateUDF, Expr, LogicalPlan, LogicalPlanBuilder, cast, col, lit,
};
use serde::{Deserialize, Serialize};

use super::expr::{
    Leaf, bool_expr, collect_leaves, number_expr, rate, selection_expr, test_expr, text_expr,
    with_filter,
};
use super::{Compiled, Error, Result, events_predicate, finish, groups, window_ms};
use crate::definition::{Aggregation, Events, Measure, Query, Value};
use crate::udaf::idset::idset_count;
use crate::udaf::sketch::{sketch_quantile, sketch_state};
use crate::udaf::steps::steps_state;

/// The bucket width states are kept at: every API bucket (15 minutes, an
/// hour, a day, a week, a single period on 15-minute bounds) and every
/// time zone offset in use is a multiple of it.
pub const STATE_BUCKET_MS: i64 = 15 * 60_000;

/// What a leaf's state holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateKind {
    /// Events counted (counts and rates).
    Count,
    /// Count, sum, min, max and a quantile sketch of a number.
    Numeric,
    /// The set of distinct ids.
    Distinct,
    /// How many values were true, of how many.
    Truth,
    /// A session's utterances with their times, steps and users (the
    /// rollup of paths; no definition compiles to it).
    Steps,
}

impl StateKind {
    fn of(aggregation: Aggregation) -> Self {
        match aggregation {
            Aggregation::Count | Aggregation::Rate { .. } => StateKind::Count,
            Aggregation::Sum
            | Aggregation::Avg
            | Aggregation::Min
            | Aggregation::Max
            | Aggregation::Quantile { .. } => StateKind::Numeric,
            Aggregation::DistinctCount => StateKind::Distinct,
            Aggregation::TrueRatio => StateKind::Truth,
        }
    }

    /// The state columns' suffixes and types (after `rows`).
    fn columns(self) -> &'static [(&'static str, DataType)] {
        match self {
            StateKind::Count => &[("n", DataType::Int64)],
            StateKind::Numeric => &[
                ("n", DataType::Int64),
                ("sum", DataType::Float64),
                ("min", DataType::Float64),
                ("max", DataType::Float64),
                ("sk", DataType::Binary),
            ],
            StateKind::Distinct => &[("ids", DataType::Binary)],
            StateKind::Truth => &[("n", DataType::Int64), ("t", DataType::Float64)],
            StateKind::Steps => &[("steps", DataType::Binary)],
        }
    }
}

/// One leaf measure as a rollup keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeafSpec {
    pub events: Events,
    pub value: Value,
    pub kind: StateKind,
}

impl LeafSpec {
    /// The leaves of `measure`, in the compiler's leaf order.
    pub fn leaves(measure: &Measure) -> Vec<LeafSpec> {
        let mut leaves = Vec::new();
        collect_leaves(measure, &mut leaves);
        leaves
            .iter()
            .map(|l| LeafSpec {
                events: l.events.clone(),
                value: l.value.clone(),
                kind: StateKind::of(l.aggregation),
            })
            .collect()
    }

    /// A stable name of what the leaf computes: a changed definition has
    /// another key, so its old states are never read for it.
    pub fn key(&self) -> String {
        let text = serde_json::to_string(self).expect("leaves serialise");
        crate::storage::sha256_hex(text.as_bytes())[..16].to_string()
    }

    fn as_leaf(&self, aggregation: Aggregation) -> Leaf<'_> {
        Leaf {
            events: &self.events,
            value: &self.value,
            aggregation,
        }
    }
}

fn column(j: usize, suffix: &str) -> String {
    format!("l{j}_{suffix}")
}

/// The columns of a row of states: `workspace_id`, `time` (the
/// 15-minute bucket), the dimension columns, then each leaf's states.
pub fn state_fields(dims: &[String], leaves: &[LeafSpec]) -> Vec<Field> {
    let mut out = vec![
        Field::new("workspace_id", DataType::Utf8, false),
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
    ];
    out.extend(dims.iter().map(|d| Field::new(d, DataType::Utf8, true)));
    for (j, leaf) in leaves.iter().enumerate() {
        out.push(Field::new(column(j, "rows"), DataType::Int64, true));
        for (suffix, t) in leaf.kind.columns() {
            out.push(Field::new(column(j, suffix), t.clone(), true));
        }
    }
    out
}

/// Aggregates over events that compute every leaf's states (each under its
/// selection), named as [`state_fields`].
pub fn state_aggregates(leaves: &[LeafSpec], idset_state: &Arc<AggregateUDF>) -> Result<Vec<Expr>> {
    let mut out = Vec::new();
    for (j, spec) in leaves.iter().enumerate() {
        let path = format!("leaf[{j}]");
        // The aggregation only picks the value expression's kind.
        let aggregation = match spec.kind {
            StateKind::Count => Aggregation::Count,
            StateKind::Numeric => Aggregation::Sum,
            StateKind::Distinct => Aggregation::DistinctCount,
            StateKind::Truth => Aggregation::TrueRatio,
            StateKind::Steps => Aggregation::Count,
        };
        let leaf = spec.as_leaf(aggregation);
        let sel = selection_expr(&leaf, &path, false)?;
        let filtered = |e: Expr, name: &str| -> Expr {
            match &sel {
                Some(s) => with_filter(e, s.clone()),
                None => e,
            }
            .alias(column(j, name))
        };
        let field = || match &spec.value {
            Value::Field(f) => Ok(f),
            _ => Err(Error::Field {
                path: format!("{path}.value"),
                message: "this state needs a field".into(),
            }),
        };
        out.push(filtered(agg::count(lit(1i64)), "rows"));
        match spec.kind {
            StateKind::Count => {
                let v = match &spec.value {
                    Value::Count => lit(1i64),
                    Value::Field(f) => text_expr(f),
                    Value::Test(t) => datafusion::logical_expr::when(
                        test_expr(t, &format!("{path}.value.test"))?,
                        lit(1i64),
                    )
                    .end()?,
                };
                out.push(filtered(agg::count(v), "n"));
            }
            StateKind::Numeric => {
                let v = number_expr(field()?);
                out.push(filtered(agg::count(v.clone()), "n"));
                out.push(filtered(agg::sum(v.clone()), "sum"));
                out.push(filtered(agg::min(v.clone()), "min"));
                out.push(filtered(agg::max(v.clone()), "max"));
                out.push(filtered(sketch_state(v), "sk"));
            }
            StateKind::Distinct => {
                let v = text_expr(field()?);
                out.push(filtered(
                    idset_state.call(vec![col("workspace_id"), v]),
                    "ids",
                ));
            }
            StateKind::Steps => {
                let v = text_expr(field()?);
                out.push(filtered(
                    steps_state(vec![col("time"), v, col("user_id")]),
                    "steps",
                ));
            }
            StateKind::Truth => {
                let b = match &spec.value {
                    Value::Test(t) => test_expr(t, &format!("{path}.value.test"))?,
                    _ => bool_expr(field()?),
                };
                out.push(filtered(agg::count(b.clone()), "n"));
                out.push(filtered(agg::sum(cast(b, DataType::Float64)), "t"));
            }
        }
    }
    Ok(out)
}

/// The events any of `leaves` reads (`None`: every event), so that a build
/// makes rows only for groups some leaf counts.
pub fn any_selection(leaves: &[LeafSpec]) -> Result<Option<Expr>> {
    let mut any: Option<Expr> = None;
    for (j, spec) in leaves.iter().enumerate() {
        let leaf = spec.as_leaf(Aggregation::Count);
        match selection_expr(&leaf, &format!("leaf[{j}]"), false)? {
            None => return Ok(None),
            Some(sel) => any = Some(any.map_or(sel.clone(), |a| a.or(sel))),
        }
    }
    Ok(any)
}

/// The group columns of a row of states, computed from events, in buckets
/// of `bucket_ms` (a multiple of [`STATE_BUCKET_MS`]).
pub fn state_groups(dims: &[String], bucket_ms: i64) -> Vec<Expr> {
    let width = lit(datafusion::common::ScalarValue::new_interval_mdn(
        0,
        0,
        bucket_ms * 1_000_000,
    ));
    let mut out = vec![
        col("workspace_id").alias("workspace_id"),
        f::date_bin(width, col("time"), super::ts(0)).alias("time"),
    ];
    out.extend(dims.iter().map(|d| col(d.as_str()).alias(d.as_str())));
    out
}

/// Aggregates that merge rows of states into one per group (compaction of
/// a rollup's parts), named as [`state_fields`].
pub fn merge_aggregates(leaves: &[LeafSpec], idset_state: &Arc<AggregateUDF>) -> Vec<Expr> {
    let mut out = Vec::new();
    for (j, leaf) in leaves.iter().enumerate() {
        out.push(agg::sum(col(column(j, "rows"))).alias(column(j, "rows")));
        for (suffix, _) in leaf.kind.columns() {
            let c = col(column(j, suffix));
            let e = match *suffix {
                "min" => agg::min(c),
                "max" => agg::max(c),
                "sk" => sketch_state(c),
                "ids" => idset_state.call(vec![c]),
                "steps" => steps_state(vec![c]),
                _ => agg::sum(c),
            };
            out.push(e.alias(column(j, suffix)));
        }
    }
    out
}

/// Compiles `query` over `input`, rows of states as [`state_fields`] names
/// them; query leaf `i` reads the states of leaf `leaf_at[i]`. The answer
/// is the raw plan's: same buckets, groups, values and gaps.
pub fn compile_from_states(
    query: &Query,
    input: LogicalPlan,
    leaf_at: &[usize],
) -> Result<Compiled> {
    query.validate()?;
    let mut leaves = Vec::new();
    collect_leaves(&query.measure, &mut leaves);
    let predicate = events_predicate(&query.workspace_id, query.range, &[], &query.filters)?;
    let (group_exprs, group_columns) = groups(query);
    let window_ms = window_ms(query);
    let mut aggr_exprs = Vec::new();
    let mut finished = Vec::new();
    let mut any_rows: Option<Expr> = None;
    for (i, (leaf, &j)) in leaves.iter().zip(leaf_at).enumerate() {
        let s = |suffix: &str| col(column(j, suffix));
        let a = |name: &str| col(format!("a{i}_{name}"));
        aggr_exprs.push(agg::sum(s("rows")).alias(format!("a{i}_rows")));
        let has = a("rows").gt(lit(0i64));
        any_rows = Some(match any_rows {
            Some(e) => e.or(has),
            None => has,
        });
        let sum_of = |x: Expr, y: Expr| {
            cast(x, DataType::Float64) / f::nullif(cast(y, DataType::Float64), lit(0.0))
        };
        let value = match leaf.aggregation {
            Aggregation::Count => {
                aggr_exprs.push(agg::sum(s("n")).alias(format!("a{i}_n")));
                f::coalesce(vec![a("n"), lit(0i64)])
            }
            Aggregation::Rate { per_ms } => {
                aggr_exprs.push(agg::sum(s("n")).alias(format!("a{i}_n")));
                rate(f::coalesce(vec![a("n"), lit(0i64)]), window_ms, per_ms)
            }
            Aggregation::Sum => {
                aggr_exprs.push(agg::sum(s("sum")).alias(format!("a{i}_sum")));
                a("sum")
            }
            Aggregation::Avg => {
                aggr_exprs.push(agg::sum(s("sum")).alias(format!("a{i}_sum")));
                aggr_exprs.push(agg::sum(s("n")).alias(format!("a{i}_n")));
                sum_of(a("sum"), a("n"))
            }
            Aggregation::Min => {
                aggr_exprs.push(agg::min(s("min")).alias(format!("a{i}_min")));
                a("min")
            }
            Aggregation::Max => {
                aggr_exprs.push(agg::max(s("max")).alias(format!("a{i}_max")));
                a("max")
            }
            Aggregation::Quantile { q } => {
                aggr_exprs.push(sketch_quantile(s("sk"), q).alias(format!("a{i}_q")));
                a("q")
            }
            Aggregation::DistinctCount => {
                aggr_exprs.push(idset_count(s("ids")).alias(format!("a{i}_ids")));
                a("ids")
            }
            Aggregation::TrueRatio => {
                aggr_exprs.push(agg::sum(s("t")).alias(format!("a{i}_t")));
                aggr_exprs.push(agg::sum(s("n")).alias(format!("a{i}_n")));
                sum_of(a("t"), a("n"))
            }
        };
        finished.push(value);
    }
    let rows = LogicalPlanBuilder::from(input)
        .filter(predicate)?
        .aggregate(group_exprs, aggr_exprs)?
        .filter(any_rows.expect("a measure has a leaf"))?;
    finish(query, rows, finished, group_columns)
}
