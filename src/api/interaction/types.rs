//! Wire types of the Interaction Metrics API, their checks, and the
//! mapping of a stored metric onto the engine's [`Query`].

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::api::ApiError;
use crate::definition::{
    Aggregation, Dimension, Events, Field, Filter, Measure, Operator, Query, TimeRange, TimeWindow,
    Value,
};

pub const MAX_METRICS_PER_WORKSPACE: usize = 500;
pub const MAX_FILTERS: usize = 20;
pub const MAX_GROUP_BY: usize = 5;

/// The metric types and whether each needs a `field`.
pub const TYPES: [(&str, &str, bool, &str); 7] = [
    (
        "COUNT",
        "Count",
        false,
        "Number of matching interactions (of those with `field`, if given).",
    ),
    ("SUM", "Sum", true, "Sum of a numeric field."),
    ("AVG", "Average", true, "Mean of a numeric field."),
    ("MIN", "Minimum", true, "Smallest value of a numeric field."),
    ("MAX", "Maximum", true, "Largest value of a numeric field."),
    (
        "DISTINCT_COUNT",
        "Distinct count",
        true,
        "Number of distinct values of a field.",
    ),
    (
        "RATE",
        "Rate",
        false,
        "Matching interactions per unit of the time window (per minute for `{n}m`, per hour for `{n}h`, per day for `{n}d`); needs timeWindow.",
    ),
];

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricType {
    pub id: &'static str,
    pub name: &'static str,
    pub requires_field: bool,
    pub description: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilterSpec {
    pub field: String,
    pub operator: String,
    pub value: Json,
}

/// A stored interaction metric, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InteractionMetric {
    pub id: uuid::Uuid,
    pub name: String,
    pub description: Option<String>,
    pub metric_type_id: String,
    pub resource_type_id: Option<String>,
    pub action_id: Option<String>,
    pub origin_id: Option<String>,
    pub field: Option<String>,
    pub filters: Vec<FilterSpec>,
    pub time_window: Option<String>,
    pub group_by: Vec<String>,
    pub enabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// Everything a workspace has stored.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WorkspaceMetrics {
    pub metrics: Vec<InteractionMetric>,
}

/// Maps an API field name onto an event field.
pub fn event_field(name: &str) -> Result<Field, String> {
    Ok(match name {
        "resourceId" => Field::Column("resource_id".into()),
        "resourceTypeId" => Field::Column("resource_type".into()),
        "actionId" => Field::Column("action".into()),
        "originId" => Field::Column("origin".into()),
        "userId" => Field::Column("user_id".into()),
        other if other.starts_with("interaction.") => Field::parse(other)?,
        other => {
            return Err(format!(
                "{other:?} is not a field: use interaction.KEY, resourceId, resourceTypeId, actionId, originId or userId"
            ));
        }
    })
}

/// The key of a dimension in results: `interaction.country` ->
/// `interaction_country`.
pub fn dimension_key(group_by: &str) -> String {
    group_by.replace('.', "_")
}

struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, path: &str, message: impl std::fmt::Display) {
        self.0.push(format!("{path}: {message}"));
    }
}

fn opt_string(
    obj: &serde_json::Map<String, Json>,
    key: &str,
    max: usize,
    p: &mut Problems,
) -> Option<String> {
    match obj.get(key) {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) if s.chars().count() <= max => Some(s.clone()),
        Some(Json::String(_)) => {
            p.push(key, format!("must be at most {max} characters"));
            None
        }
        Some(_) => {
            p.push(key, "must be a string");
            None
        }
    }
}

/// Checks a create (or merged update) body; `id` and times are the
/// caller's. Returns every problem, each naming its field.
pub fn check_metric(
    body: &Json,
    id: uuid::Uuid,
    created_at: &str,
    updated_at: &str,
) -> Result<InteractionMetric, ApiError> {
    let Some(obj) = body.as_object() else {
        return Err(ApiError::bad(
            "INVALID_REQUEST_BODY",
            "the request body must be a JSON object",
        ));
    };
    let mut p = Problems(Vec::new());
    const KNOWN: [&str; 14] = [
        "name",
        "description",
        "metricTypeId",
        "resourceTypeId",
        "actionId",
        "originId",
        "field",
        "filters",
        "timeWindow",
        "groupBy",
        "enabled",
        "id",
        "createdAt",
        "updatedAt",
    ];
    for key in obj.keys() {
        if !KNOWN.contains(&key.as_str()) {
            p.push(key, "unknown field");
        }
    }
    let name = match obj.get("name") {
        Some(Json::String(s)) if !s.trim().is_empty() && s.chars().count() <= 256 => s.clone(),
        Some(Json::String(_)) => {
            p.push("name", "must be 1 to 256 characters");
            String::new()
        }
        None | Some(Json::Null) => {
            p.push("name", "is required");
            String::new()
        }
        Some(_) => {
            p.push("name", "must be a string");
            String::new()
        }
    };
    let description = opt_string(obj, "description", 2000, &mut p);
    let metric_type = match obj.get("metricTypeId") {
        Some(Json::String(s)) => match TYPES.iter().find(|t| t.0 == s) {
            Some(t) => Some(*t),
            None => {
                p.push(
                    "metricTypeId",
                    format!(
                        "unknown type {s:?}; use one of {}",
                        TYPES.map(|t| t.0).join(", ")
                    ),
                );
                None
            }
        },
        None | Some(Json::Null) => {
            p.push("metricTypeId", "is required");
            None
        }
        Some(_) => {
            p.push("metricTypeId", "must be a string");
            None
        }
    };
    let resource_type_id = opt_string(obj, "resourceTypeId", 256, &mut p);
    let action_id = opt_string(obj, "actionId", 256, &mut p);
    let origin_id = opt_string(obj, "originId", 256, &mut p);
    let field = opt_string(obj, "field", 300, &mut p);
    if let Some(f) = &field
        && let Err(e) = event_field(f)
    {
        p.push("field", e);
    }
    if let Some((tid, _, requires, _)) = metric_type
        && requires
        && field.is_none()
    {
        p.push("field", format!("is required for {tid}"));
    }
    let mut filters = Vec::new();
    match obj.get("filters") {
        None | Some(Json::Null) => {}
        Some(Json::Array(items)) if items.len() > MAX_FILTERS => {
            p.push("filters", format!("at most {MAX_FILTERS} filters"))
        }
        Some(Json::Array(items)) => {
            for (i, f) in items.iter().enumerate() {
                let path = format!("filters[{i}]");
                let field = f.get("field").and_then(Json::as_str);
                let op = f.get("operator").and_then(Json::as_str);
                let value = f.get("value").cloned().unwrap_or(Json::Null);
                match field {
                    Some(name) => {
                        if let Err(e) = event_field(name) {
                            p.push(&format!("{path}.field"), e);
                        }
                    }
                    None => p.push(&format!("{path}.field"), "is required (a string)"),
                }
                match op.map(|o| (o, Operator::parse(o))) {
                    Some((_, Some(Operator::In))) | Some((_, None)) => p.push(
                        &format!("{path}.operator"),
                        format!(
                            "{:?} is not one of eq, neq, gt, gte, lt, lte, contains",
                            op.unwrap_or_default()
                        ),
                    ),
                    None => p.push(
                        &format!("{path}.operator"),
                        "is required (eq, neq, gt, gte, lt, lte, contains)",
                    ),
                    Some((_, Some(Operator::Contains))) if !value.is_string() => {
                        p.push(&format!("{path}.value"), "contains needs a string")
                    }
                    _ => {}
                }
                match &value {
                    Json::String(s) if s.chars().count() > 1024 => {
                        p.push(&format!("{path}.value"), "at most 1024 characters")
                    }
                    Json::String(_) | Json::Number(_) | Json::Bool(_) => {}
                    _ => p.push(
                        &format!("{path}.value"),
                        "must be a string, number or boolean",
                    ),
                }
                if let (Some(field), Some(operator)) = (field, op) {
                    filters.push(FilterSpec {
                        field: field.to_string(),
                        operator: operator.to_string(),
                        value,
                    });
                }
            }
        }
        Some(_) => p.push("filters", "must be a list"),
    }
    let time_window = opt_string(obj, "timeWindow", 16, &mut p);
    if let Some(w) = &time_window
        && let Err(e) = TimeWindow::parse(w)
    {
        p.push("timeWindow", e);
    }
    if metric_type.is_some_and(|t| t.0 == "RATE") && time_window.is_none() {
        p.push("timeWindow", "is required for RATE ({n}m, {n}h or {n}d)");
    }
    let mut group_by = Vec::new();
    match obj.get("groupBy") {
        None | Some(Json::Null) => {}
        Some(Json::Array(items)) if items.len() > MAX_GROUP_BY => {
            p.push("groupBy", format!("at most {MAX_GROUP_BY} fields"))
        }
        Some(Json::Array(items)) => {
            for (i, g) in items.iter().enumerate() {
                match g.as_str() {
                    Some(s) => match event_field(s) {
                        Ok(_) => group_by.push(s.to_string()),
                        Err(e) => p.push(&format!("groupBy[{i}]"), e),
                    },
                    None => p.push(&format!("groupBy[{i}]"), "must be a string"),
                }
            }
        }
        Some(_) => p.push(
            "groupBy",
            "must be a list of fields (resourceId or interaction.KEY)",
        ),
    }
    let enabled = match obj.get("enabled") {
        None | Some(Json::Null) => true,
        Some(Json::Bool(b)) => *b,
        Some(_) => {
            p.push("enabled", "must be true or false");
            true
        }
    };
    if !p.0.is_empty() {
        return Err(ApiError::bad("VALIDATION_ERROR", p.0.join("; ")));
    }
    Ok(InteractionMetric {
        id,
        name,
        description,
        metric_type_id: metric_type.expect("checked").0.to_string(),
        resource_type_id,
        action_id,
        origin_id,
        field,
        filters,
        time_window,
        group_by,
        enabled,
        created_at: created_at.to_string(),
        updated_at: updated_at.to_string(),
    })
}

impl InteractionMetric {
    /// The engine query computing this metric for `workspace` at `now_ms`.
    pub fn to_query(&self, workspace: &str, now_ms: i64) -> Result<Query, ApiError> {
        let bad = |m: String| ApiError::bad("VALIDATION_ERROR", m);
        let mut filters = Vec::new();
        for (col, v) in [
            ("resource_type", &self.resource_type_id),
            ("action", &self.action_id),
            ("origin", &self.origin_id),
        ] {
            if let Some(v) = v {
                filters.push(Filter {
                    field: Field::Column(col.into()),
                    op: Operator::Eq,
                    value: v.clone().into(),
                });
            }
        }
        for f in &self.filters {
            let op = Operator::parse(&f.operator)
                .ok_or_else(|| bad(format!("unknown operator {:?}", f.operator)))?;
            filters.push(Filter {
                field: event_field(&f.field).map_err(bad)?,
                op,
                value: f.value.clone(),
            });
        }
        let window = self
            .time_window
            .as_deref()
            .map(TimeWindow::parse)
            .transpose()
            .map_err(bad)?;
        let value = match &self.field {
            Some(f) => Value::Field(event_field(f).map_err(bad)?),
            None => Value::Count,
        };
        let aggregation = match self.metric_type_id.as_str() {
            "COUNT" => Aggregation::Count,
            "SUM" => Aggregation::Sum,
            "AVG" => Aggregation::Avg,
            "MIN" => Aggregation::Min,
            "MAX" => Aggregation::Max,
            "DISTINCT_COUNT" => Aggregation::DistinctCount,
            "RATE" => {
                let w = window.ok_or_else(|| bad("RATE needs a timeWindow".into()))?;
                Aggregation::Rate {
                    per_ms: w.unit_ms(),
                }
            }
            other => return Err(bad(format!("unknown metric type {other:?}"))),
        };
        let range = match window {
            Some(w) => w.range_ending(now_ms),
            None => TimeRange {
                start_ms: 0,
                end_ms: now_ms.max(1),
            },
        };
        let group_by = self
            .group_by
            .iter()
            .map(|g| event_field(g).map(Dimension::Field))
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?;
        Ok(Query {
            workspace_id: workspace.to_string(),
            measure: Measure::Aggregate {
                events: Events {
                    event_types: vec!["interaction".into()],
                    filters,
                },
                value,
                aggregation,
            },
            filters: vec![],
            range,
            bucket: crate::definition::Bucket::Single,
            group_by,
        })
    }
}

/// One value of a calculation.
#[derive(Debug, Serialize, Clone)]
pub struct ResultRow {
    pub value: Option<f64>,
    pub dimensions: Option<serde_json::Map<String, Json>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Calculation {
    pub metric_id: uuid::Uuid,
    pub metric_name: String,
    pub metric_type: String,
    pub calculated_at: String,
    pub results: Vec<ResultRow>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CalculatedMetric {
    pub metric_id: uuid::Uuid,
    pub metric_name: String,
    pub metric_type: String,
    pub result_count: usize,
    pub sample_value: Option<f64>,
    pub results: Vec<ResultRow>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CalculateAll {
    pub calculated: usize,
    pub calculated_at: String,
    pub metrics: Vec<CalculatedMetric>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveredFields {
    pub resource_type_id: Option<String>,
    pub action_id: Option<String>,
    pub fields: Vec<String>,
}

/// Calculations as CSV: one row per result, a column per dimension (in
/// order of first appearance, empty where a result lacks it).
fn calculations_table<'a>(
    calculated_at: &str,
    metrics: impl Iterator<Item = (&'a uuid::Uuid, &'a str, &'a str, &'a [ResultRow])> + Clone,
) -> crate::api::csv::Table {
    use crate::api::csv::{Cell, Table};
    let mut dims: Vec<&str> = Vec::new();
    for (_, _, _, results) in metrics.clone() {
        for key in results
            .iter()
            .flat_map(|r| r.dimensions.iter().flat_map(|d| d.keys()))
        {
            if !dims.contains(&key.as_str()) {
                dims.push(key);
            }
        }
    }
    let mut header = vec!["metricId", "metricName", "metricType", "calculatedAt"];
    header.extend(&dims);
    header.push("value");
    let mut table = Table::new(header);
    for (id, name, kind, results) in metrics {
        for r in results {
            let mut row: Vec<Cell> = vec![
                id.to_string().into(),
                name.into(),
                kind.into(),
                calculated_at.into(),
            ];
            row.extend(
                dims.iter()
                    .map(|k| match r.dimensions.as_ref().and_then(|d| d.get(*k)) {
                        None | Some(Json::Null) => Cell::Empty,
                        Some(Json::String(s)) => Cell::Text(s.clone()),
                        Some(other) => Cell::Text(other.to_string()),
                    }),
            );
            row.push(r.value.into());
            table.push(row);
        }
    }
    table
}

impl Calculation {
    pub fn to_table(&self) -> crate::api::csv::Table {
        calculations_table(
            &self.calculated_at,
            std::iter::once((
                &self.metric_id,
                self.metric_name.as_str(),
                self.metric_type.as_str(),
                self.results.as_slice(),
            )),
        )
    }
}

impl CalculateAll {
    pub fn to_table(&self) -> crate::api::csv::Table {
        calculations_table(
            &self.calculated_at,
            self.metrics.iter().map(|m| {
                (
                    &m.metric_id,
                    m.metric_name.as_str(),
                    m.metric_type.as_str(),
                    m.results.as_slice(),
                )
            }),
        )
    }
}
