//! Wire types of the Metric Store API, and the parsing of its query
//! parameters.
//!
//! Longer than most files on purpose: every query parameter of the four
//! query routes and evaluate, with its documented default and error, in one
//! place so the routes stay consistent.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde::Serialize;

use crate::api::ApiError;
use crate::api::csv::{Cell, Table};
use crate::metric_store::level::Level;
use crate::metric_store::read::Lookup;
pub use crate::metric_store::stored::{MetricValue, NotComputed, Subject, Trend};
use crate::metric_store::{
    AggregationName, DataSource, ExtractionMode, Granularity, MetricDef, MetricType, Source,
};
use crate::storage::events::{DAY_MS, day_start_millis};

/// Rejects query parameters a route does not take (a typo would otherwise
/// silently widen the answer).
pub fn check_params(params: &HashMap<String, String>, route: &[&str]) -> Result<(), ApiError> {
    check_names(params.keys(), route, "query parameter")
}

/// The parameters naming whom values describe; every value route takes
/// them besides its own.
pub const SUBJECT_PARAMS: [&str; 5] = [
    "scope",
    "entity_type",
    "entity_id",
    "service_id",
    "session_id",
];

/// Rejects names (query parameters, body fields) other than the route's
/// own and [`SUBJECT_PARAMS`].
pub fn check_names<'a>(
    names: impl Iterator<Item = &'a String>,
    route: &[&str],
    what: &str,
) -> Result<(), ApiError> {
    let allowed: Vec<&str> = route.iter().chain(&SUBJECT_PARAMS).copied().collect();
    let mut unknown: Vec<&String> = names.filter(|k| !allowed.contains(&k.as_str())).collect();
    unknown.sort();
    match unknown.first() {
        None => Ok(()),
        Some(k) => Err(ApiError::bad(
            "INVALID_PARAMETER",
            format!(
                "unknown {what} {k:?}; this route takes {}",
                allowed.join(", ")
            ),
        )),
    }
}

fn text_param(params: &HashMap<String, String>, name: &str) -> Result<Option<String>, ApiError> {
    match params.get(name) {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Err(ApiError::bad(
            "INVALID_PARAMETER",
            format!("{name} is empty"),
        )),
        Some(v) if v.chars().count() > 255 => Err(ApiError::bad(
            "INVALID_PARAMETER",
            format!("{name} is longer than 255 characters"),
        )),
        Some(v) => Ok(Some(v.trim().to_string())),
    }
}

/// An integer parameter within `[min, max]`.
pub fn int_param(
    params: &HashMap<String, String>,
    name: &str,
    min: i64,
    max: i64,
    default: i64,
) -> Result<i64, ApiError> {
    match params.get(name) {
        None => Ok(default),
        Some(v) => {
            let n: i64 = v.trim().parse().map_err(|_| {
                ApiError::bad(
                    "INVALID_PARAMETER",
                    format!("{name} must be a whole number from {min} to {max}, not {v:?}"),
                )
            })?;
            if n < min || n > max {
                return Err(ApiError::bad(
                    "INVALID_PARAMETER",
                    format!("{name} must be from {min} to {max}, not {n}"),
                ));
            }
            Ok(n)
        }
    }
}

/// A date (`YYYY-MM-DD`, a whole UTC day) or an ISO-8601 date and time
/// (RFC 3339; without an offset it is UTC). `end` makes a date mean the
/// end of that day (an inclusive `date_to`).
pub fn parse_date(name: &str, text: &str, end: bool) -> Result<i64, ApiError> {
    let t = text.trim();
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        let ms = day_start_millis(d);
        return Ok(if end { ms + DAY_MS } else { ms });
    }
    if let Ok(d) = NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f") {
        return Ok(d.and_utc().timestamp_millis());
    }
    DateTime::parse_from_rfc3339(t)
        .map(|d| d.timestamp_millis())
        .map_err(|_| {
            ApiError::bad(
                "INVALID_DATE",
                format!("{name} {t:?} is not a date (YYYY-MM-DD) or an ISO-8601 date and time"),
            )
        })
}

/// `source`: `production` (the default), `simulation`, or, where
/// `all_allowed`, `all` (`None`).
pub fn source_param(
    params: &HashMap<String, String>,
    all_allowed: bool,
) -> Result<Option<DataSource>, ApiError> {
    match params.get("source").map(|s| s.trim()) {
        None => Ok(Some(DataSource::Production)),
        Some("all") if all_allowed => Ok(None),
        Some(s) => DataSource::parse(s).map(Some).ok_or_else(|| {
            ApiError::bad(
                "INVALID_PARAMETER",
                format!(
                    "source {s:?} is not one of production, simulation{}",
                    if all_allowed { ", all" } else { "" }
                ),
            )
        }),
    }
}

/// The stored values `GET /v1/{ws}/metrics` reads, one lookup per level,
/// from `scope` (`aggregate`, the default: the workspace, or a service;
/// `entity`: calls; `all`: both), `entity_type`, `entity_id`, `service_id`
/// and `session_id`.
pub fn latest_lookups(params: &HashMap<String, String>, ws: &str) -> Result<Vec<Lookup>, ApiError> {
    let bad = |m: String| ApiError::bad("INVALID_PARAMETER", m);
    let scope = text_param(params, "scope")?;
    let entity_type = text_param(params, "entity_type")?;
    let entity_id = text_param(params, "entity_id")?;
    let service_id = text_param(params, "service_id")?;
    let session_id = text_param(params, "session_id")?;
    if let Some(s) = &scope
        && !["aggregate", "entity", "all"].contains(&s.as_str())
    {
        return Err(bad(format!("scope {s:?} is not aggregate, entity or all")));
    }
    let typed = match &entity_type {
        Some(t) => Some(Level::parse(t).ok_or_else(|| {
            bad(format!(
                "entity_type {t:?} is not one of workspace, service, call"
            ))
        })?),
        None => None,
    };
    let aggregate = if service_id.is_some() {
        Level::Service
    } else {
        Level::Workspace
    };
    let levels = match (scope.as_deref(), typed) {
        (Some(s), Some(l)) if s != "all" && s != l.scope() => {
            return Err(bad(format!(
                "scope {s:?} does not match entity_type {:?} (whose scope is {:?})",
                l.entity_type(),
                l.scope()
            )));
        }
        (_, Some(l)) => vec![l],
        (Some("entity"), None) => vec![Level::Call],
        (Some("all"), None) if session_id.is_some() => vec![Level::Call],
        (Some("all"), None) => vec![aggregate, Level::Call],
        (Some(_), None) => vec![aggregate],
        (None, None) if session_id.is_some() || entity_id.is_some() => vec![Level::Call],
        (None, None) => vec![aggregate],
    };
    if session_id.is_some() && !levels.contains(&Level::Call) {
        return Err(bad(
            "session_id names a call: use scope entity or all, or entity_type call".into(),
        ));
    }
    let mut out = Vec::new();
    for level in levels {
        let mut q = Lookup {
            workspace: ws.to_string(),
            entity_type: Some(level.entity_type().to_string()),
            ..Default::default()
        };
        match level {
            Level::Workspace => {
                q.entity_id = Some(entity_id.clone().unwrap_or_else(|| ws.to_string()));
            }
            Level::Service => {
                if let (Some(a), Some(b)) = (&entity_id, &service_id)
                    && a != b
                {
                    return Err(bad(format!(
                        "entity_id {a:?} and service_id {b:?} name different services"
                    )));
                }
                q.entity_id = entity_id.clone().or_else(|| service_id.clone());
            }
            Level::Call => {
                if let (Some(a), Some(b)) = (&entity_id, &session_id)
                    && a != b
                {
                    return Err(bad(format!(
                        "entity_id {a:?} and session_id {b:?} name different calls"
                    )));
                }
                q.entity_id = entity_id.clone().or_else(|| session_id.clone());
                q.service_id = service_id.clone();
            }
        }
        out.push(q);
    }
    Ok(out)
}

/// Whom values describe, from `scope`, `entity_type`, `entity_id`,
/// `service_id` and `session_id`.
pub fn subject(params: &HashMap<String, String>) -> Result<Subject, ApiError> {
    let scope = text_param(params, "scope")?;
    let entity_type = text_param(params, "entity_type")?;
    let entity_id = text_param(params, "entity_id")?;
    let service_id = text_param(params, "service_id")?;
    let session_id = text_param(params, "session_id")?;
    subject_of(
        scope.as_deref(),
        entity_type.as_deref(),
        entity_id,
        service_id,
        session_id,
    )
}

pub fn subject_of(
    scope: Option<&str>,
    entity_type: Option<&str>,
    entity_id: Option<String>,
    service_id: Option<String>,
    session_id: Option<String>,
) -> Result<Subject, ApiError> {
    let bad = |m: String| ApiError::bad("INVALID_PARAMETER", m);
    if let Some(s) = scope
        && s != "aggregate"
        && s != "entity"
    {
        return Err(bad(format!("scope {s:?} is not aggregate or entity")));
    }
    let level = match entity_type {
        Some(t) => Level::parse(t).ok_or_else(|| {
            bad(format!(
                "entity_type {t:?} is not one of workspace, service, call"
            ))
        })?,
        None if session_id.is_some() => Level::Call,
        None if scope == Some("entity") => Level::Call,
        None if service_id.is_some() => Level::Service,
        None => Level::Workspace,
    };
    if let Some(s) = scope
        && s != level.scope()
    {
        return Err(bad(format!(
            "scope {s:?} does not match entity_type {:?} (whose scope is {:?})",
            level.entity_type(),
            level.scope()
        )));
    }
    let out = match level {
        Level::Workspace => {
            if service_id.is_some() || session_id.is_some() {
                return Err(bad(
                    "entity_type workspace takes neither service_id nor session_id".into(),
                ));
            }
            Subject {
                level,
                entity_id: None,
                service_id: None,
                session_id: None,
            }
        }
        Level::Service => {
            if session_id.is_some() {
                return Err(bad("a service takes no session_id".into()));
            }
            let id = match (entity_id, service_id) {
                (Some(a), Some(b)) if a != b => {
                    return Err(bad(format!(
                        "entity_id {a:?} and service_id {b:?} name different services"
                    )));
                }
                (Some(a), _) | (None, Some(a)) => a,
                (None, None) => {
                    return Err(bad(
                        "entity_type service needs entity_id or service_id".into()
                    ));
                }
            };
            Subject {
                level,
                entity_id: Some(id.clone()),
                service_id: Some(id),
                session_id: None,
            }
        }
        Level::Call => {
            let id = match (entity_id, session_id) {
                (Some(a), Some(b)) if a != b => {
                    return Err(bad(format!(
                        "entity_id {a:?} and session_id {b:?} name different calls"
                    )));
                }
                (Some(a), _) | (None, Some(a)) => a,
                (None, None) => {
                    return Err(bad(
                        "entity values are per call: give entity_id or session_id".into(),
                    ));
                }
            };
            Subject {
                level,
                entity_id: Some(id.clone()),
                service_id,
                session_id: Some(id),
            }
        }
    };
    Ok(out)
}

/// `GET/PUT /v1/{ws}/settings/metrics`: every definition, built-in and
/// custom.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SettingsResponse {
    pub definitions: Vec<MetricDef>,
}

/// `GET /v1/{ws}/metrics`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LatestResponse {
    pub workspace_id: String,
    pub as_of: String,
    pub count: usize,
    pub metrics: Vec<MetricValue>,
    pub not_computed: Vec<NotComputed>,
}

/// `GET /v1/{ws}/metrics/{key}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ValuesResponse {
    pub workspace_id: String,
    pub metric_key: String,
    pub name: String,
    pub granularity: Granularity,
    pub entity_type: String,
    pub entity_id: String,
    pub date_from: String,
    pub date_to: String,
    pub limit: i64,
    pub count: usize,
    pub values: Vec<MetricValue>,
}

/// `GET /v1/{ws}/metrics/{key}/trend`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TrendResponse {
    pub workspace_id: String,
    pub metric_key: String,
    pub name: String,
    pub unit: Option<String>,
    pub entity_type: String,
    pub entity_id: String,
    pub days: i64,
    pub date_from: String,
    pub date_to: String,
    #[serde(flatten)]
    pub trend: Trend,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SourceInfo {
    pub name: &'static str,
    pub event_types: &'static [&'static str],
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CatalogEntry {
    pub key: String,
    pub name: String,
    pub description: String,
    pub source: Source,
    /// The event types the metric reads.
    pub event_types: Vec<String>,
    pub metric_type: MetricType,
    pub aggregation: AggregationName,
    pub extraction_mode: ExtractionMode,
    pub period_granularity: Granularity,
    pub unit: Option<String>,
    pub builtin: bool,
    pub active: bool,
    /// Whether this server can compute it (AI metrics need an endpoint).
    pub computable: bool,
    pub reason: Option<String>,
    /// The start of the newest stored period, if any.
    pub latest_period: Option<String>,
}

/// `GET /v1/{ws}/metrics/catalog`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CatalogResponse {
    pub workspace_id: String,
    pub sources: Vec<SourceInfo>,
    pub count: usize,
    pub metrics: Vec<CatalogEntry>,
}

/// The value `evaluate` computed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EvaluatedMetric {
    pub metric_key: String,
    pub metric_type: MetricType,
    pub value: Option<f64>,
    /// `production` or `simulation`.
    pub source: String,
    pub entity_type: String,
    pub entity_id: String,
    pub period_start: String,
    pub period_end: String,
    pub event_count: i64,
    pub unit: Option<String>,
    pub computed_at: String,
    /// Categorical metrics: events per category.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub categories: Option<BTreeMap<String, f64>>,
}

/// `POST /v1/{ws}/metrics/{key}/evaluate`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EvaluateResponse {
    pub metric: EvaluatedMetric,
    /// Always false: evaluated values are not stored.
    pub persisted: bool,
    pub evaluated_at: String,
}

/// The CSV columns of values: one row per value, and for categorical
/// metrics one more per category (the `category` column set).
const VALUE_COLUMNS: [&str; 14] = [
    "metric_key",
    "source",
    "granularity",
    "period_start",
    "period_end",
    "scope",
    "entity_type",
    "entity_id",
    "service_id",
    "session_id",
    "category",
    "value",
    "sample_size",
    "computed_at",
];

fn value_table(values: &[MetricValue]) -> Table {
    let mut t = Table::new(VALUE_COLUMNS);
    for v in values {
        let row = |category: Option<&str>, value: Option<f64>, n: Option<i64>| -> Vec<Cell> {
            vec![
                v.metric_key.as_str().into(),
                v.source.as_str().into(),
                v.granularity.as_str().into(),
                v.period_start.as_str().into(),
                v.period_end.as_str().into(),
                v.scope.as_str().into(),
                v.entity_type.as_str().into(),
                v.entity_id.as_str().into(),
                v.service_id.as_deref().into(),
                v.session_id.as_deref().into(),
                category.into(),
                value.into(),
                n.into(),
                v.computed_at.as_str().into(),
            ]
        };
        t.push(row(None, v.value, Some(v.sample_size)));
        for (c, n) in v.categories.iter().flatten() {
            t.push(row(Some(c), Some(*n), None));
        }
    }
    t
}

impl LatestResponse {
    pub fn to_table(&self) -> Table {
        value_table(&self.metrics)
    }
}

impl ValuesResponse {
    pub fn to_table(&self) -> Table {
        value_table(&self.values)
    }
}

impl TrendResponse {
    pub fn to_table(&self) -> Table {
        let mut t = Table::new(["metric_key", "date", "value", "sample_size"]);
        for p in &self.trend.points {
            t.push(vec![
                self.metric_key.as_str().into(),
                p.date.as_str().into(),
                p.value.into(),
                p.sample_size.into(),
            ]);
        }
        t
    }
}

impl EvaluateResponse {
    pub fn to_table(&self) -> Table {
        let m = &self.metric;
        let mut t = Table::new([
            "metric_key",
            "source",
            "entity_type",
            "entity_id",
            "period_start",
            "period_end",
            "category",
            "value",
            "event_count",
        ]);
        let row = |category: Option<&str>, value: Option<f64>, n: Option<i64>| -> Vec<Cell> {
            vec![
                m.metric_key.as_str().into(),
                m.source.as_str().into(),
                m.entity_type.as_str().into(),
                m.entity_id.as_str().into(),
                m.period_start.as_str().into(),
                m.period_end.as_str().into(),
                category.into(),
                value.into(),
                n.into(),
            ]
        };
        t.push(row(None, m.value, Some(m.event_count)));
        for (c, n) in m.categories.iter().flatten() {
            t.push(row(Some(c), Some(*n), None));
        }
        t
    }
}
