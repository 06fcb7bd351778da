//! The expressions plans are made of: fields, filters, tests, dimensions,
//! buckets and leaf aggregates. Shared by [`super::compile`] and
//! [`super::batch`], so a measure means the same in both.

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::functions::expr_fn as f;
use datafusion::functions_aggregate::expr_fn as agg;
use datafusion::logical_expr::{Expr, binary_expr, cast, col, lit, try_cast, when};
use datafusion_functions_json::udfs as json;

use super::{Error, Result};
use crate::definition::path::Step;
use crate::definition::{
    Aggregation, Bucket, Dimension, Events, Field, Filter, JsonPath, Measure, Operator, TimeRange,
    Value,
};
use crate::udaf;

/// A leaf of a measure: one aggregate over one selection of events.
pub(super) struct Leaf<'a> {
    pub(super) events: &'a Events,
    pub(super) value: &'a Value,
    pub(super) aggregation: Aggregation,
}

pub(super) fn collect_leaves<'a>(m: &'a Measure, out: &mut Vec<Leaf<'a>>) {
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

/// A timestamp literal of the `time` column's type.
pub fn ts(ms: i64) -> Expr {
    lit(ScalarValue::TimestampMillisecond(
        Some(ms),
        Some("UTC".into()),
    ))
}

/// The rows of a tenant's range: the part of every plan's filter that
/// prunes files and row groups.
pub(super) fn range_predicate(workspace_id: &str, range: TimeRange) -> Expr {
    col("workspace_id")
        .eq(lit(workspace_id))
        .and(col("time").gt_eq(ts(range.start_ms)))
        .and(col("time").lt(ts(range.end_ms)))
}

/// The start of an event's bucket (the range's start for `SINGLE`).
pub(super) fn bucket_expr(bucket: Bucket, range: TimeRange) -> Expr {
    match bucket.width_ms() {
        None => ts(range.start_ms),
        Some(w) => {
            let width = lit(ScalarValue::new_interval_mdn(0, 0, w * 1_000_000));
            f::date_bin(width, col("time"), ts(bucket.origin_ms()))
        }
    }
}

/// `attributes` followed by the path's keys and indexes: the arguments of
/// a `json_get_*` call.
fn path_args(path: &JsonPath) -> Vec<Expr> {
    let mut args = vec![col("attributes")];
    args.extend(path.0.iter().map(|s| match s {
        Step::Key(k) => lit(k.as_str()),
        Step::Index(i) => lit(*i),
    }));
    args
}

fn json_args(field: &Field) -> Option<Vec<Expr>> {
    match field {
        Field::Attribute(k) => Some(vec![col("attributes"), lit(k.as_str())]),
        Field::Path(p) => Some(path_args(p)),
        Field::Column(_) => None,
    }
}

/// The text of a field: a column as is, an attribute as its JSON text.
pub(super) fn text_expr(field: &Field) -> Expr {
    if let Some(args) = json_args(field) {
        return json::json_as_text_udf().call(args);
    }
    match field {
        Field::Column(c) if c == "latency_ms" || c == "time" => {
            cast(col(c.as_str()), DataType::Utf8)
        }
        Field::Column(c) => col(c.as_str()),
        _ => unreachable!("attributes handled above"),
    }
}

pub(super) fn number_expr(field: &Field) -> Expr {
    if let Some(args) = json_args(field) {
        return json::json_get_float_udf().call(args);
    }
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
        _ => unreachable!("attributes handled above"),
    }
}

pub(super) fn bool_expr(field: &Field) -> Expr {
    match json_args(field) {
        Some(args) => json::json_get_bool_udf().call(args),
        None => text_expr(field).eq(lit("true")),
    }
}

/// A group-by dimension's value per event.
pub fn dimension_expr(d: &Dimension) -> Expr {
    match d {
        Dimension::Field(field) => text_expr(field),
        Dimension::Country => f::nullif(f::split_part(col("locale"), lit("-"), lit(2)), lit("")),
        Dimension::DataSource => {
            let simulated =
                json::json_get_bool_udf().call(vec![col("attributes"), lit("simulation")]);
            when(simulated, lit("simulation"))
                .otherwise(lit("production"))
                .expect("a CASE with a branch")
        }
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
/// Events without the field are "not equal" (`<>` is `IS DISTINCT FROM`).
pub fn filter_expr(filter: &Filter, path: &str) -> Result<Expr> {
    comparison(filter, path, true)
}

/// A [`Value::Test`]: as a filter, but null where the field is absent.
pub(super) fn test_expr(filter: &Filter, path: &str) -> Result<Expr> {
    comparison(filter, path, false)
}

fn comparison(filter: &Filter, path: &str, absent_differs: bool) -> Result<Expr> {
    let numeric_column = matches!(&filter.field, Field::Column(c) if c == "latency_ms");
    let json = !matches!(filter.field, Field::Column(_));
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
            return Ok(if all_numbers && (numeric_column || json) {
                number_expr(&filter.field).in_list(
                    items.iter().filter_map(scalar_number).map(lit).collect(),
                    false,
                )
            } else {
                text_expr(&filter.field)
                    .in_list(items.iter().map(|i| lit(scalar_text(i))).collect(), false)
            });
        }
        (Operator::In, _) => return Err(bad("`in` needs a list of values")),
        (_, serde_json::Value::Bool(b)) => (bool_expr(&filter.field), lit(*b)),
        (_, serde_json::Value::Number(n)) if numeric_column || json => (
            number_expr(&filter.field),
            lit(n.as_f64().ok_or_else(|| bad("number out of range"))?),
        ),
        (_, v) if numeric_column => (
            number_expr(&filter.field),
            lit(scalar_number(v).ok_or_else(|| bad("latency_ms compares with a number"))?),
        ),
        (_, v) => (text_expr(&filter.field), lit(scalar_text(v))),
    };
    Ok(match filter.op {
        Operator::Eq => lhs.eq(rhs),
        Operator::Neq if absent_differs => {
            binary_expr(lhs, datafusion::logical_expr::Operator::IsDistinctFrom, rhs)
        }
        Operator::Neq => lhs.not_eq(rhs),
        Operator::Gt => lhs.gt(rhs),
        Operator::Gte => lhs.gt_eq(rhs),
        Operator::Lt => lhs.lt(rhs),
        Operator::Lte => lhs.lt_eq(rhs),
        Operator::Contains | Operator::In => unreachable!("handled above"),
    })
}

/// The event types and filters of a leaf, or `None` when it reads every
/// event. `skip_types` leaves the event types out (the plan's filter has
/// them already).
pub(super) fn selection_expr(leaf: &Leaf, path: &str, skip_types: bool) -> Result<Option<Expr>> {
    let mut parts = Vec::new();
    match leaf.events.event_types.as_slice() {
        _ if skip_types => {}
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

/// Adds `FILTER (WHERE sel)` to an aggregate. Set on the parameters
/// directly: DataFusion 55's `ExprFunctionExt::filter(..).build()` resets
/// `DISTINCT`, which turned `count(DISTINCT x) FILTER (..)` into `count(x)`.
pub(super) fn with_filter(e: Expr, sel: Expr) -> Expr {
    match e {
        Expr::AggregateFunction(mut f) => {
            f.params.filter = Some(Box::new(sel));
            Expr::AggregateFunction(f)
        }
        other => other,
    }
}

/// `count` events per `per_ms` over `window_ms`: `count * per / window`,
/// both exact until the division, so the rate is the correctly rounded
/// quotient.
pub(super) fn rate(count: Expr, window_ms: i64, per_ms: i64) -> Expr {
    cast(count, DataType::Float64) * lit(per_ms as f64) / lit(window_ms as f64)
}

/// A leaf's aggregate, and how its column becomes the leaf's value.
pub(super) struct LeafAggregate {
    pub(super) aggregate: Expr,
    /// What the sample size counts: the values the aggregate reads.
    pub(super) sampled: Expr,
    /// Events per `per_ms` over a window of `window_ms`: the aggregate is
    /// a count, turned into a rate after aggregation.
    pub(super) rate: Option<(i64, i64)>,
}

impl LeafAggregate {
    /// The leaf's value over its aggregate column `column`.
    pub(super) fn finish(&self, column: Expr) -> Expr {
        match self.rate {
            Some((window_ms, per_ms)) => rate(column, window_ms, per_ms),
            None => column,
        }
    }
}

pub(super) fn leaf_aggregate(leaf: &Leaf, window_ms: i64, path: &str) -> Result<LeafAggregate> {
    let need_field = || match leaf.value {
        Value::Field(f) => Ok(f),
        Value::Count | Value::Test(_) => Err(Error::Field {
            path: format!("{path}.value"),
            message: "this aggregation needs a field".into(),
        }),
    };
    let plain = |aggregate: Expr, sampled: Expr| LeafAggregate {
        aggregate,
        sampled,
        rate: None,
    };
    // What a count counts: every event, a field's presence, a test's
    // passes. The sample is what was looked at.
    let counted = || -> Result<(Expr, Expr)> {
        Ok(match leaf.value {
            Value::Count => (lit(1i64), lit(1i64)),
            Value::Field(f) => (text_expr(f), text_expr(f)),
            Value::Test(t) => {
                let t = test_expr(t, &format!("{path}.value.test"))?;
                (when(t.clone(), lit(1i64)).end()?, t)
            }
        })
    };
    let number = |f: fn(Expr) -> Expr| -> Result<LeafAggregate> {
        let v = number_expr(need_field()?);
        Ok(plain(f(v.clone()), v))
    };
    Ok(match leaf.aggregation {
        Aggregation::Count => {
            let (v, sampled) = counted()?;
            plain(agg::count(v), sampled)
        }
        Aggregation::Sum => number(agg::sum)?,
        Aggregation::Avg => number(agg::avg)?,
        Aggregation::Min => number(agg::min)?,
        Aggregation::Max => number(agg::max)?,
        Aggregation::DistinctCount => {
            let v = text_expr(need_field()?);
            plain(agg::count_distinct(v.clone()), v)
        }
        Aggregation::Quantile { q } => {
            let v = number_expr(need_field()?);
            plain(udaf::quantile(v.clone(), q), v)
        }
        Aggregation::Rate { per_ms } => {
            let (v, sampled) = counted()?;
            LeafAggregate {
                aggregate: agg::count(v),
                sampled,
                rate: Some((window_ms, per_ms)),
            }
        }
        // The share of true among the values: the mean of 1.0 and 0.0,
        // null when there is no value.
        Aggregation::TrueRatio => {
            let b = match leaf.value {
                Value::Test(t) => test_expr(t, &format!("{path}.value.test"))?,
                _ => bool_expr(need_field()?),
            };
            plain(agg::avg(cast(b.clone(), DataType::Float64)), b)
        }
    })
}
