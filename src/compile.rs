//! The compiler: a [`Query`] becomes a DataFusion [`LogicalPlan`], built with
//! `LogicalPlanBuilder` and `Expr` only. Filter values are literals in the
//! plan; no text is ever spliced into SQL.
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
//! carries its own selection as an aggregate `FILTER`. The `time` bounds are
//! literals on the `time` column, so Parquet statistics prune row groups and
//! the events table derives its `date` partitions from them.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::functions::expr_fn as f;
use datafusion::functions_aggregate::expr_fn as agg;
use datafusion::logical_expr::{
    Expr, LogicalPlan, LogicalPlanBuilder, LogicalTableSource, TableSource, binary_expr, cast, col,
    lit, try_cast,
};
use datafusion_functions_json::udfs as json;

use crate::definition::{
    Aggregation, Dimension, Field, Filter, Measure, Operator, Problems, Query, Value,
};
use crate::udaf;

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

/// Compiles `query` against the `events` table `source`.
pub fn compile(query: &Query, source: Arc<dyn TableSource>) -> Result<Compiled> {
    query.validate()?;
    let mut leaves = Vec::new();
    collect_leaves(&query.measure, &mut leaves);

    // Rows: the tenant, the range, common filters, and any leaf's selection.
    let mut predicate = col("workspace_id")
        .eq(lit(query.workspace_id.as_str()))
        .and(col("time").gt_eq(ts(query.range.start_ms)))
        .and(col("time").lt(ts(query.range.end_ms)));
    for (i, filter) in query.filters.iter().enumerate() {
        predicate = predicate.and(filter_expr(filter, &format!("filters[{i}]"))?);
    }
    let selections: Vec<Option<Expr>> = leaves
        .iter()
        .enumerate()
        .map(|(i, leaf)| selection_expr(leaf, &format!("measure.leaf[{i}]")))
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

    let mut group_exprs = vec![bucket_expr(query).alias(BUCKET)];
    let mut group_columns = Vec::new();
    for (i, d) in query.group_by.iter().enumerate() {
        let name = format!("g{i}");
        group_exprs.push(dimension_expr(d).alias(&name));
        group_columns.push(name);
    }

    let window_ms = query
        .bucket
        .width_ms()
        .unwrap_or(query.range.end_ms - query.range.start_ms);
    let mut aggr_exprs = Vec::new();
    for (i, (leaf, sel)) in leaves.iter().zip(&selections).enumerate() {
        let mut e = leaf_aggregate(leaf, window_ms, &format!("measure.leaf[{i}]"))?;
        if !shared && let Some(sel) = sel {
            e = with_filter(e, sel.clone());
        }
        aggr_exprs.push(e.alias(format!("a{i}")));
    }

    let mut next = 0;
    let value = combine(&query.measure, &mut next);
    let mut projection = vec![col(BUCKET)];
    projection.extend(group_columns.iter().map(|g| col(g.as_str())));
    projection.push(cast(value, DataType::Float64).alias(VALUE));
    let mut sort = vec![col(BUCKET).sort(true, true)];
    sort.extend(
        group_columns
            .iter()
            .map(|g| col(g.as_str()).sort(true, true)),
    );

    let plan = LogicalPlanBuilder::scan("events", source, None)?
        .filter(predicate)?
        .aggregate(group_exprs, aggr_exprs)?
        .project(projection)?
        .sort(sort)?
        .build()?;
    Ok(Compiled {
        plan,
        group_columns,
        buckets: query.bucket.starts(query.range),
        fill_zero: query.measure.is_additive(),
    })
}

/// Adds `FILTER (WHERE sel)` to an aggregate. Set on the parameters
/// directly: DataFusion 55's `ExprFunctionExt::filter(..).build()` resets
/// `DISTINCT`, which turned `count(DISTINCT x) FILTER (..)` into `count(x)`.
fn with_filter(e: Expr, sel: Expr) -> Expr {
    match e {
        Expr::AggregateFunction(mut f) => {
            f.params.filter = Some(Box::new(sel));
            Expr::AggregateFunction(f)
        }
        other => other,
    }
}

/// A leaf of a measure: one aggregate over one selection of events.
struct Leaf<'a> {
    events: &'a crate::definition::Events,
    value: &'a Value,
    aggregation: Aggregation,
}

fn collect_leaves<'a>(m: &'a Measure, out: &mut Vec<Leaf<'a>>) {
    match m {
        Measure::Aggregate {
            events,
            value,
            aggregation,
        } => out.push(Leaf {
            events,
            value,
            aggregation: *aggregation,
        }),
        Measure::Ratio {
            numerator: a,
            denominator: b,
        }
        | Measure::Difference { left: a, right: b } => {
            collect_leaves(a, out);
            collect_leaves(b, out);
        }
        Measure::Scaled { measure, .. } => collect_leaves(measure, out),
    }
}

/// The measure's value over the aggregate columns `a0, a1, ...`.
fn combine(m: &Measure, next: &mut usize) -> Expr {
    match m {
        Measure::Aggregate { .. } => {
            let e = col(format!("a{next}"));
            *next += 1;
            e
        }
        Measure::Ratio {
            numerator,
            denominator,
        } => {
            let n = cast(combine(numerator, next), DataType::Float64);
            let d = cast(combine(denominator, next), DataType::Float64);
            n / f::nullif(d, lit(0.0))
        }
        // Counts read an empty side as 0; averages and ratios have no value
        // without both sides (`METRICS.md`: such buckets are left out).
        Measure::Difference { left, right } if m.is_additive() => {
            let l = cast(combine(left, next), DataType::Float64);
            let r = cast(combine(right, next), DataType::Float64);
            f::coalesce(vec![l, lit(0.0)]) - f::coalesce(vec![r, lit(0.0)])
        }
        Measure::Difference { left, right } => {
            let l = cast(combine(left, next), DataType::Float64);
            let r = cast(combine(right, next), DataType::Float64);
            l - r
        }
        Measure::Scaled { factor, measure } => {
            cast(combine(measure, next), DataType::Float64) * lit(*factor)
        }
    }
}

fn selection_expr(leaf: &Leaf, path: &str) -> Result<Option<Expr>> {
    let mut parts = Vec::new();
    match leaf.events.event_types.as_slice() {
        [] => {}
        [one] => parts.push(col("event_type").eq(lit(one.as_str()))),
        many => parts
            .push(col("event_type").in_list(many.iter().map(|t| lit(t.as_str())).collect(), false)),
    }
    for (i, filter) in leaf.events.filters.iter().enumerate() {
        parts.push(filter_expr(filter, &format!("{path}.events.filters[{i}]"))?);
    }
    Ok(parts.into_iter().reduce(Expr::and))
}

/// A timestamp literal of the `time` column's type.
pub fn ts(ms: i64) -> Expr {
    lit(ScalarValue::TimestampMillisecond(
        Some(ms),
        Some("UTC".into()),
    ))
}

fn bucket_expr(query: &Query) -> Expr {
    match query.bucket.width_ms() {
        None => ts(query.range.start_ms),
        Some(w) => {
            let width = lit(ScalarValue::new_interval_mdn(0, 0, w * 1_000_000));
            f::date_bin(width, col("time"), ts(query.bucket.origin_ms()))
        }
    }
}

/// The text of a field: a column as is, an attribute as its JSON text.
fn text_expr(field: &Field) -> Expr {
    match field {
        Field::Column(c) if c == "latency_ms" || c == "time" => {
            cast(col(c.as_str()), DataType::Utf8)
        }
        Field::Column(c) => col(c.as_str()),
        Field::Attribute(k) => {
            json::json_as_text_udf().call(vec![col("attributes"), lit(k.as_str())])
        }
    }
}

fn number_expr(field: &Field) -> Expr {
    match field {
        Field::Column(c) if c == "latency_ms" => col("latency_ms"),
        Field::Column(c) if c == "time" => cast(
            cast(
                col("time"),
                DataType::Timestamp(TimeUnit::Millisecond, None),
            ),
            DataType::Int64,
        ),
        Field::Column(c) => try_cast(col(c.as_str()), DataType::Float64),
        Field::Attribute(k) => {
            json::json_get_float_udf().call(vec![col("attributes"), lit(k.as_str())])
        }
    }
}

fn bool_expr(field: &Field) -> Expr {
    match field {
        Field::Attribute(k) => {
            json::json_get_bool_udf().call(vec![col("attributes"), lit(k.as_str())])
        }
        other => text_expr(other).eq(lit("true")),
    }
}

fn dimension_expr(d: &Dimension) -> Expr {
    match d {
        Dimension::Field(field) => text_expr(field),
        Dimension::Country => f::nullif(f::split_part(col("locale"), lit("-"), lit(2)), lit("")),
    }
}

fn scalar_number(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn scalar_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `field op value`, typed by the value: numbers compare as numbers (on
/// `latency_ms`, or a JSON number), booleans as booleans, the rest as text.
pub fn filter_expr(filter: &Filter, path: &str) -> Result<Expr> {
    let numeric_column = matches!(&filter.field, Field::Column(c) if c == "latency_ms");
    let bad = |message: &str| Error::Field {
        path: path.to_string(),
        message: message.to_string(),
    };
    let (lhs, rhs): (Expr, Expr) = match (&filter.op, &filter.value) {
        (Operator::Contains, v) => {
            return Ok(f::contains(text_expr(&filter.field), lit(scalar_text(v))));
        }
        (Operator::In, serde_json::Value::Array(items)) => {
            let all_numbers = items.iter().all(|i| i.is_number());
            return Ok(
                if all_numbers && (numeric_column || matches!(filter.field, Field::Attribute(_))) {
                    number_expr(&filter.field).in_list(
                        items.iter().filter_map(scalar_number).map(lit).collect(),
                        false,
                    )
                } else {
                    text_expr(&filter.field)
                        .in_list(items.iter().map(|i| lit(scalar_text(i))).collect(), false)
                },
            );
        }
        (Operator::In, _) => return Err(bad("`in` needs a list of values")),
        (_, serde_json::Value::Bool(b)) => (bool_expr(&filter.field), lit(*b)),
        (_, serde_json::Value::Number(n))
            if numeric_column || matches!(filter.field, Field::Attribute(_)) =>
        {
            (
                number_expr(&filter.field),
                lit(n.as_f64().ok_or_else(|| bad("number out of range"))?),
            )
        }
        (_, v) if numeric_column => (
            number_expr(&filter.field),
            lit(scalar_number(v).ok_or_else(|| bad("latency_ms compares with a number"))?),
        ),
        (_, v) => (text_expr(&filter.field), lit(scalar_text(v))),
    };
    Ok(match filter.op {
        Operator::Eq => lhs.eq(rhs),
        // Events without the field are "not equal" too.
        Operator::Neq => binary_expr(lhs, datafusion::logical_expr::Operator::IsDistinctFrom, rhs),
        Operator::Gt => lhs.gt(rhs),
        Operator::Gte => lhs.gt_eq(rhs),
        Operator::Lt => lhs.lt(rhs),
        Operator::Lte => lhs.lt_eq(rhs),
        Operator::Contains | Operator::In => unreachable!("handled above"),
    })
}

fn leaf_aggregate(leaf: &Leaf, window_ms: i64, path: &str) -> Result<Expr> {
    let need_field = || match leaf.value {
        Value::Field(f) => Ok(f),
        Value::Count => Err(Error::Field {
            path: format!("{path}.value"),
            message: "this aggregation needs a field".into(),
        }),
    };
    Ok(match leaf.aggregation {
        Aggregation::Count => match leaf.value {
            Value::Count => agg::count(lit(1i64)),
            Value::Field(f) => agg::count(text_expr(f)),
        },
        Aggregation::Sum => agg::sum(number_expr(need_field()?)),
        Aggregation::Avg => agg::avg(number_expr(need_field()?)),
        Aggregation::Min => agg::min(number_expr(need_field()?)),
        Aggregation::Max => agg::max(number_expr(need_field()?)),
        Aggregation::DistinctCount => agg::count_distinct(text_expr(need_field()?)),
        Aggregation::Quantile { q } => udaf::quantile(number_expr(need_field()?), q),
        Aggregation::Rate { per_ms } => {
            let v = match leaf.value {
                Value::Count => lit(1i64),
                Value::Field(f) => text_expr(f),
            };
            udaf::rate(v, window_ms, per_ms)
        }
        Aggregation::TrueRatio => {
            let b = bool_expr(need_field()?);
            udaf::ratio(cast(b, DataType::Float64), lit(1.0))
        }
    })
}

#[cfg(test)]
mod tests;
