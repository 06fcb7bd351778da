//! The one place a Metric Store definition becomes the shared model: a
//! [`Measure`] the compiler knows, as the Interaction API's wire type is
//! lowered in its own `types`.
//!
//! - the value: `extract_path` is a [`Field::Path`]; a built-in's
//!   `sql_expr` is an ordinary [`Value`] (a column, a column test, or a
//!   JSON key compared with `=`, `<>` or `IN`), kept structured in
//!   `queries/metric_store.json` and shown as SQL text;
//! - `event_types` and `channel_scope` are the measure's selection;
//! - `valid_range_min/max` are filters on the value (values outside are
//!   not read), `categories` an `IN` filter on it;
//! - the aggregation: `rate` per hour of the period, boolean `ratio` the
//!   share that is true (numerical: the share that is not 0), boolean
//!   `count` the events where it is true; categorical metrics count per
//!   category (the category is a group-by of the batch).

use serde_json::json;

use super::{AggregationName as Agg, MetricDef, MetricType};
use crate::definition::{Aggregation, Events, Field, Filter, JsonPath, Measure, Operator, Value};

/// Milliseconds of an hour: `rate` is per hour of the period.
const HOUR_MS: i64 = 3_600_000;

impl MetricDef {
    /// The field a static metric reads, or a built-in's SQL column or key.
    pub fn field(&self) -> Result<Field, String> {
        match (&self.value, &self.extract_path) {
            (Some(Value::Field(f)), _) => Ok(f.clone()),
            (Some(Value::Test(t)), _) => Ok(t.field.clone()),
            (_, Some(p)) => JsonPath::parse(p).map(Field::Path),
            _ => Err(format!("{}: a static metric needs extract_path", self.key)),
        }
    }

    /// The metric's aggregation in the shared model, which the plans of
    /// static metrics and the folding of AI values both follow: `rate` is
    /// per hour of the period, `ratio` the share that is true (not 0), a
    /// boolean `count` the events where it is true, a categorical metric a
    /// count per category.
    pub fn shared_aggregation(&self) -> Aggregation {
        match (self.metric_type, self.aggregation) {
            (MetricType::Categorical, _) => Aggregation::Count,
            (_, Agg::Ratio) => Aggregation::TrueRatio,
            (_, Agg::Rate) => Aggregation::Rate { per_ms: HOUR_MS },
            (MetricType::Numerical, Agg::Sum) => Aggregation::Sum,
            (MetricType::Numerical, Agg::Avg) => Aggregation::Avg,
            (MetricType::Numerical, Agg::Min) => Aggregation::Min,
            (MetricType::Numerical, Agg::Max) => Aggregation::Max,
            (MetricType::Numerical, Agg::CountDistinct) => Aggregation::DistinctCount,
            (MetricType::Numerical, a) if a.quantile().is_some() => Aggregation::Quantile {
                q: a.quantile().expect("a quantile"),
            },
            _ => Aggregation::Count,
        }
    }

    /// The metric as a measure; `Err` for AI metrics (valued outside
    /// plans) and definitions without a value.
    pub fn measure(&self) -> Result<Measure, String> {
        if self.extraction_mode.is_ai() {
            return Err(format!(
                "{}: AI metrics are not computed by a plan",
                self.key
            ));
        }
        let field = self.field()?;
        let mut filters = Vec::new();
        if let Some((column, value)) = self.channel_scope.filter() {
            filters.push(Filter {
                field: Field::Column(column.into()),
                op: Operator::Eq,
                value: value.into(),
            });
        }
        let bound = |op, v: f64| Filter {
            field: field.clone(),
            op,
            value: json!(v),
        };
        match self.metric_type {
            MetricType::Numerical => {
                if let Some(lo) = self.valid_range_min {
                    filters.push(bound(Operator::Gte, lo));
                }
                if let Some(hi) = self.valid_range_max {
                    filters.push(bound(Operator::Lte, hi));
                }
            }
            MetricType::Categorical => {
                if let Some(cats) = &self.categories {
                    filters.push(Filter {
                        field: field.clone(),
                        op: Operator::In,
                        value: json!(cats),
                    });
                }
            }
            MetricType::Boolean => {}
        }
        let events = Events {
            event_types: self.event_types().into_iter().map(str::to_string).collect(),
            filters,
        };
        let test = || match &self.value {
            Some(Value::Test(t)) => t.clone(),
            _ => Filter {
                field: field.clone(),
                op: Operator::Eq,
                value: true.into(),
            },
        };
        let aggregation = self.shared_aggregation();
        let value = match (self.metric_type, aggregation) {
            (MetricType::Boolean, _) => Value::Test(test()),
            // The share of a number that is not 0.
            (MetricType::Numerical, Aggregation::TrueRatio) => Value::Test(Filter {
                field: field.clone(),
                op: Operator::Neq,
                value: json!(0.0),
            }),
            _ => Value::Field(field),
        };
        Ok(Measure::Aggregate {
            events,
            value,
            aggregation,
        })
    }
}

/// A built-in's value as the SQL text the API shows in `sql_expr`.
pub fn sql_text(value: &Value) -> String {
    fn field(f: &Field) -> String {
        match f {
            Field::Column(c) => c.clone(),
            Field::Attribute(k) => format!("json_get_str(attributes, '{k}')"),
            Field::Path(p) => format!("json_get_str(attributes, '{p}')"),
        }
    }
    fn literal(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::String(s) => format!("'{}'", s.replace('\'', "''")),
            other => other.to_string(),
        }
    }
    match value {
        Value::Count => "1".into(),
        Value::Field(f) => field(f),
        Value::Test(t) => {
            let rhs = match (&t.op, &t.value) {
                (Operator::In, serde_json::Value::Array(items)) => format!(
                    "({})",
                    items.iter().map(literal).collect::<Vec<_>>().join(", ")
                ),
                (_, v) => literal(v),
            };
            let op = match t.op {
                Operator::Eq => "=",
                Operator::Neq => "<>",
                Operator::Gt => ">",
                Operator::Gte => ">=",
                Operator::Lt => "<",
                Operator::Lte => "<=",
                Operator::Contains => "LIKE",
                Operator::In => "IN",
            };
            format!("{} {op} {rhs}", field(&t.field))
        }
    }
}
