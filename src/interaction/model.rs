//! Wire types of the Interaction Metrics API, their checks, and the
//! mapping of a stored metric onto the engine's [`Query`].
//!
//! Longer than most files on purpose: the stored definition is also the
//! wire shape, so its checks and its lowering sit with it.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::Error;
use crate::definition::{
    Aggregation, Dimension, Events, Field, Filter, Measure, Operator, Query, TimeRange, TimeWindow,
    Validator, Value,
};

pub const MAX_METRICS_PER_WORKSPACE: usize = 500;
pub const MAX_FILTERS: usize = 20;
pub const MAX_GROUP_BY: usize = 5;

/// A metric type as `GET /api/interaction-metrics/types` lists it. The ids
/// are stable strings (`count-metric-type`, ...); `metricTypeId` takes an
/// id or, as a convenience, a mnemonic, and is stored as the id.
#[derive(Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = InteractionMetricType)]
pub struct MetricType {
    pub id: &'static str,
    pub name: &'static str,
    pub mnemonic: &'static str,
    pub description: &'static str,
    pub requires_field: bool,
}

const fn metric_type_row(
    id: &'static str,
    name: &'static str,
    mnemonic: &'static str,
    description: &'static str,
    requires_field: bool,
) -> MetricType {
    MetricType {
        id,
        name,
        mnemonic,
        description,
        requires_field,
    }
}

/// The metric types, names and descriptions as the document lists them.
/// RATE needs no field but a `timeWindow` (checked with the definition).
pub const TYPES: [MetricType; 7] = [
    metric_type_row(
        "count-metric-type",
        "Count",
        "COUNT",
        "Number of matching interactions",
        false,
    ),
    metric_type_row(
        "sum-metric-type",
        "Sum",
        "SUM",
        "Sum of a numeric field",
        true,
    ),
    metric_type_row(
        "avg-metric-type",
        "Average",
        "AVG",
        "Average of a numeric field",
        true,
    ),
    metric_type_row(
        "min-metric-type",
        "Minimum",
        "MIN",
        "Minimum value of a field",
        true,
    ),
    metric_type_row(
        "max-metric-type",
        "Maximum",
        "MAX",
        "Maximum value of a field",
        true,
    ),
    metric_type_row(
        "distinct-count-metric-type",
        "Distinct Count",
        "DISTINCT_COUNT",
        "Count of unique values",
        true,
    ),
    metric_type_row(
        "rate-metric-type",
        "Rate",
        "RATE",
        "Count per time unit",
        false,
    ),
];

/// The metric type named by `text`: its id or its mnemonic.
pub fn metric_type(text: &str) -> Option<&'static MetricType> {
    TYPES.iter().find(|t| t.id == text || t.mnemonic == text)
}

/// The times this API writes (`calculatedAt`, `createdAt`, `updatedAt`):
/// UTC with milliseconds, `2026-03-20T14:30:00.000Z`.
pub use crate::format::instant_millis as timestamp;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FilterSpec {
    pub field: String,
    pub operator: String,
    pub value: Json,
}

/// A stored interaction metric, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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

fn opt_string(
    obj: &serde_json::Map<String, Json>,
    key: &str,
    max: usize,
    p: &mut Validator,
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
) -> Result<InteractionMetric, Error> {
    let Some(obj) = body.as_object() else {
        return Err(Error::invalid(
            "INVALID_REQUEST_BODY",
            "the request body must be a JSON object",
        ));
    };
    let mut p = Validator::default();
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
        Some(Json::String(s)) => match metric_type(s) {
            Some(t) => Some(t),
            None => {
                p.push(
                    "metricTypeId",
                    format!(
                        "unknown type {s:?}; use an id of GET /api/interaction-metrics/types ({}) or a mnemonic ({})",
                        TYPES.map(|t| t.id).join(", "),
                        TYPES.map(|t| t.mnemonic).join(", ")
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
    if let Some(t) = metric_type
        && t.requires_field
        && field.is_none()
    {
        p.push("field", format!("is required for {}", t.mnemonic));
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
                            p.push(format!("{path}.field"), e);
                        }
                    }
                    None => p.push(format!("{path}.field"), "is required (a string)"),
                }
                match op.map(|o| (o, Operator::parse(o))) {
                    Some((_, Some(Operator::In))) | Some((_, None)) => p.push(
                        format!("{path}.operator"),
                        format!(
                            "{:?} is not one of eq, neq, gt, gte, lt, lte, contains",
                            op.unwrap_or_default()
                        ),
                    ),
                    None => p.push(
                        format!("{path}.operator"),
                        "is required (eq, neq, gt, gte, lt, lte, contains)",
                    ),
                    Some((_, Some(Operator::Contains))) if !value.is_string() => {
                        p.push(format!("{path}.value"), "contains needs a string")
                    }
                    _ => {}
                }
                match &value {
                    Json::String(s) if s.chars().count() > 1024 => {
                        p.push(format!("{path}.value"), "at most 1024 characters")
                    }
                    Json::String(_) | Json::Number(_) | Json::Bool(_) => {}
                    _ => p.push(
                        format!("{path}.value"),
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
    if metric_type.is_some_and(|t| t.mnemonic == "RATE") && time_window.is_none() {
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
                    // Result keys replace `.` with `_`: two fields that
                    // make the same key would overwrite each other.
                    Some(s) => match event_field(s) {
                        Ok(_) if group_by.iter().any(|g: &String| dimension_key(g) == dimension_key(s)) => p.push(
                            format!("groupBy[{i}]"),
                            format!("{s:?} repeats a field, or names the same result key {:?} as another", dimension_key(s)),
                        ),
                        Ok(_) => group_by.push(s.to_string()),
                        Err(e) => p.push(format!("groupBy[{i}]"), e),
                    },
                    None => p.push(format!("groupBy[{i}]"), "must be a string"),
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
    if let Err(problems) = p.finish() {
        return Err(Error::invalid("VALIDATION_ERROR", problems.to_string()));
    }
    Ok(InteractionMetric {
        id,
        name,
        description,
        metric_type_id: metric_type.expect("checked").id.to_string(),
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
    /// The type this metric names (by id, or by the mnemonic older
    /// versions stored).
    pub fn metric_type(&self) -> Option<&'static MetricType> {
        metric_type(&self.metric_type_id)
    }

    /// Reports `metricTypeId` as the canonical id, whatever was stored.
    pub fn canonicalize(&mut self) {
        if let Some(t) = self.metric_type() {
            self.metric_type_id = t.id.to_string();
        }
    }

    /// The mnemonic calculations report as `metricType` (`COUNT`).
    pub fn mnemonic(&self) -> &str {
        self.metric_type()
            .map_or(self.metric_type_id.as_str(), |t| t.mnemonic)
    }

    /// The scope fields set, in the order [`Self::to_query`] lowers them.
    fn scope(&self) -> Vec<(&'static str, &'static str, &str)> {
        [
            ("resourceTypeId", "resource_type", &self.resource_type_id),
            ("actionId", "action", &self.action_id),
            ("originId", "origin", &self.origin_id),
        ]
        .into_iter()
        .filter_map(|(api, col, v)| v.as_deref().map(|v| (api, col, v)))
        .collect()
    }

    /// Lowers the metric onto the shared definition model: the engine query
    /// computing it for `workspace` with the window ending at `now_ms`.
    /// The scope (`resourceTypeId`, `actionId`, `originId`) selects the
    /// measure's events; the API's `filters[i]` become the query's
    /// `filters[i]`, so problems the compiler finds keep their index.
    pub fn to_query(&self, workspace: &str, now_ms: i64) -> Result<Query, String> {
        let scope = self
            .scope()
            .into_iter()
            .map(|(_, col, v)| Filter {
                field: Field::Column(col.into()),
                op: Operator::Eq,
                value: v.into(),
            })
            .collect();
        let mut filters = Vec::new();
        for (i, f) in self.filters.iter().enumerate() {
            let op = Operator::parse(&f.operator)
                .filter(|op| *op != Operator::In)
                .ok_or_else(|| format!("filters[{i}].operator: unknown {:?}", f.operator))?;
            filters.push(Filter {
                field: event_field(&f.field).map_err(|e| format!("filters[{i}].field: {e}"))?,
                op,
                value: f.value.clone(),
            });
        }
        let window = self
            .time_window
            .as_deref()
            .map(TimeWindow::parse)
            .transpose()
            .map_err(|e| format!("timeWindow: {e}"))?;
        let kind = self
            .metric_type()
            .ok_or_else(|| format!("metricTypeId: unknown type {:?}", self.metric_type_id))?;
        // COUNT and RATE count matching interactions, whether or not they
        // carry a `field` given anyway.
        let value = match &self.field {
            Some(_) if matches!(kind.mnemonic, "COUNT" | "RATE") => Value::Count,
            Some(f) => Value::Field(event_field(f).map_err(|e| format!("field: {e}"))?),
            None => Value::Count,
        };
        let aggregation = match kind.mnemonic {
            "COUNT" => Aggregation::Count,
            "SUM" => Aggregation::Sum,
            "AVG" => Aggregation::Avg,
            "MIN" => Aggregation::Min,
            "MAX" => Aggregation::Max,
            "DISTINCT_COUNT" => Aggregation::DistinctCount,
            "RATE" => {
                let w = window.ok_or("timeWindow: is required for RATE")?;
                Aggregation::Rate {
                    per_ms: w.unit_ms(),
                }
            }
            other => unreachable!("every type is lowered: {other}"),
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
            .enumerate()
            .map(|(i, g)| {
                event_field(g)
                    .map(Dimension::Field)
                    .map_err(|e| format!("groupBy[{i}]: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Query {
            workspace_id: workspace.to_string(),
            measure: Measure::Aggregate {
                events: Events {
                    event_types: vec!["interaction".into()],
                    filters: scope,
                },
                value,
                aggregation,
            },
            filters,
            range,
            bucket: crate::definition::Bucket::Single,
            group_by,
        })
    }

    /// The API field a path of the lowered query stands for
    /// (`group_by[1]` -> `groupBy[1]`, `measure.value` -> `field`).
    pub fn api_path(&self, path: &str) -> String {
        let measure = path
            .strip_prefix("measure.leaf[0].")
            .or_else(|| path.strip_prefix("measure."));
        if let Some(rest) = measure {
            if rest.starts_with("value") {
                return "field".into();
            }
            if rest.starts_with("aggregation") {
                return "timeWindow".into();
            }
            if let Some(i) = rest
                .strip_prefix("events.filters[")
                .and_then(|r| r.split(']').next())
                .and_then(|i| i.parse::<usize>().ok())
                && let Some((api, _, _)) = self.scope().get(i)
            {
                return (*api).to_string();
            }
            return "metricTypeId".into();
        }
        if let Some(rest) = path.strip_prefix("group_by") {
            return format!("groupBy{rest}");
        }
        if path == "range" {
            return "timeWindow".into();
        }
        path.to_string()
    }

    /// A compiler's refusal of this metric, with the API's field names.
    pub fn plan_problem(
        &self,
        e: crate::compile::Error,
    ) -> Result<super::Error, crate::compile::Error> {
        use crate::compile::Error;
        let problems: Vec<String> = match e {
            Error::Invalid(problems) => problems
                .0
                .iter()
                .map(|p| format!("{}: {}", self.api_path(&p.path), p.message))
                .collect(),
            Error::Field { path, message } => {
                vec![format!("{}: {message}", self.api_path(&path))]
            }
            other => return Err(other),
        };
        Ok(super::Error::invalid(
            "VALIDATION_ERROR",
            problems.join("; "),
        ))
    }
}

/// A calculated value: whole numbers as JSON integers (`42`, as the
/// document shows), others as floats, no value as `null`.
fn number<S: serde::Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => s.serialize_i64(*x as i64),
        Some(x) => s.serialize_f64(*x),
        None => s.serialize_none(),
    }
}

/// One value of a calculation; `dimensions` is `null` for an ungrouped
/// metric, else `{"interaction_country": "ZA", ...}`.
#[derive(Debug, Serialize, Clone, utoipa::ToSchema)]
pub struct ResultRow {
    #[serde(serialize_with = "number")]
    pub value: Option<f64>,
    #[schema(value_type = Option<Object>)]
    pub dimensions: Option<serde_json::Map<String, Json>>,
}

/// `POST /api/interaction-metrics/{id}/calculate`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Calculation {
    pub metric_id: uuid::Uuid,
    pub metric_name: String,
    pub metric_type: String,
    pub calculated_at: String,
    pub results: Vec<ResultRow>,
}

/// One metric of `calculate-all`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CalculatedMetric {
    pub metric_id: uuid::Uuid,
    pub metric_name: String,
    pub metric_type: String,
    pub calculated_at: String,
    pub result_count: usize,
    /// The first result's value; `null` when there is no result (a grouped
    /// metric with no matching interactions) or the first has no value.
    #[serde(serialize_with = "number")]
    pub sample_value: Option<f64>,
    pub results: Vec<ResultRow>,
}

impl From<Calculation> for CalculatedMetric {
    fn from(c: Calculation) -> Self {
        Self {
            result_count: c.results.len(),
            sample_value: c.results.first().and_then(|r| r.value),
            metric_id: c.metric_id,
            metric_name: c.metric_name,
            metric_type: c.metric_type,
            calculated_at: c.calculated_at,
            results: c.results,
        }
    }
}

/// `POST /api/interaction-metrics/calculate-all`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CalculateAll {
    pub calculated: usize,
    pub results: Vec<CalculatedMetric>,
}

#[cfg(test)]
mod tests;
