//! The skill Metrics API's queries as the engine runs them: a request body
//! (read loosely, as any JSON) is checked field by field against the
//! built-in catalog (`queries/`), every mistake named with its path
//! (`metricQueries[2].stat: ...`) and the documented code of the first,
//! and lowered onto the one definition model ([`Query`]). The HTTP route
//! and the metric alerts both ask here.
//!
//! About 500 lines: each documented request field with its check, in the
//! document's order.

use std::collections::HashSet;

use serde_json::Value as Json;

use crate::definition::builtin::{self, CatalogMetric};
use crate::definition::{Bucket, Query, TimeRange};

/// A request the API refuses: the documented code of its first mistake,
/// and every mistake in the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub code: &'static str,
    pub message: String,
}

impl Invalid {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

pub const MAX_QUERIES: usize = 5;
pub const DEFAULT_MAX_RESULTS: u64 = 100;
pub const MAX_RESULTS_LIMIT: u64 = 1000;
/// More dimensions than any metric lists is surely a mistake.
pub const MAX_DIMENSIONS: usize = 16;

/// One checked metric query.
#[derive(Debug, Clone)]
pub struct CheckedQuery {
    pub id: String,
    /// As sent: the answer echoes `label` and `stat` only when the query
    /// had them (the document's example `m2`).
    pub label: Option<String>,
    pub namespace: String,
    pub name: String,
    pub stat: Option<String>,
    pub group_by: Option<String>,
    pub query: Query,
}

/// A checked request.
#[derive(Debug, Clone)]
pub struct CheckedRequest {
    pub max_results: u64,
    pub next_token: Option<String>,
    pub queries: Vec<CheckedQuery>,
}

/// The shared validator: every problem with its path and documented code.
type Problems = crate::definition::Validator;

/// Parses `startTime`/`endTime`: RFC 3339 text or epoch milliseconds.
fn time(v: Option<&Json>, path: &str, p: &mut Problems) -> Option<i64> {
    match v {
        None | Some(Json::Null) => {
            p.push_code(
                "MISSING_PARAMETER",
                path,
                "is required (RFC 3339 time or epoch milliseconds)",
            );
            None
        }
        Some(Json::Number(n)) => match n.as_i64() {
            Some(ms) => Some(ms),
            None => {
                p.push_code(
                    "INVALID_TIME",
                    path,
                    "epoch milliseconds must be a whole number",
                );
                None
            }
        },
        Some(Json::String(s)) => match chrono::DateTime::parse_from_rfc3339(s.trim()) {
            Ok(t) => Some(t.timestamp_millis()),
            Err(_) => {
                p.push_code(
                    "INVALID_TIME",
                    path,
                    format!("{s:?} is not an RFC 3339 time (e.g. 2026-01-05T00:00:00Z)"),
                );
                None
            }
        },
        Some(_) => {
            p.push_code(
                "INVALID_TIME",
                path,
                "must be an RFC 3339 string or epoch milliseconds",
            );
            None
        }
    }
}

fn string<'a>(v: Option<&'a Json>, path: &str, max: usize, p: &mut Problems) -> Option<&'a str> {
    match v {
        Some(Json::String(s)) if !s.is_empty() && s.chars().count() <= max => Some(s),
        Some(Json::String(_)) => {
            p.push_code(
                "INVALID_STRING_LENGTH",
                path,
                format!("must be 1 to {max} characters"),
            );
            None
        }
        None | Some(Json::Null) => {
            p.push_code("MISSING_PARAMETER", path, "is required");
            None
        }
        Some(_) => {
            p.push_code("INVALID_PARAMETER", path, "must be a string");
            None
        }
    }
}

/// Checks a `POST /v2/skills/{skillId}/metrics` body for `skill_id`.
pub fn check_request(body: &Json, skill_id: &str) -> Result<CheckedRequest, Invalid> {
    let mut p = Problems::default();
    let Some(obj) = body.as_object() else {
        return Err(Invalid::new(
            "INVALID_REQUEST_BODY",
            "the request body must be a JSON object",
        ));
    };
    let start = time(obj.get("startTime"), "startTime", &mut p);
    let end = time(obj.get("endTime"), "endTime", &mut p);
    if let (Some(s), Some(e)) = (start, end)
        && s >= e
    {
        p.push_code("INVALID_TIME_RANGE", "startTime", "must be before endTime");
    }
    let max_results = match obj.get("maxResultsPerQuery") {
        None | Some(Json::Null) => DEFAULT_MAX_RESULTS,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_RESULTS_LIMIT).contains(&n) => n,
            _ => {
                p.push_code(
                    "INVALID_MAX_RESULTS",
                    "maxResultsPerQuery",
                    format!("must be a whole number from 1 to {MAX_RESULTS_LIMIT}"),
                );
                DEFAULT_MAX_RESULTS
            }
        },
    };
    let next_token = match obj.get("nextToken") {
        None | Some(Json::Null) => None,
        Some(Json::String(t)) if t.is_empty() => None,
        Some(Json::String(t)) => Some(t.clone()),
        Some(_) => {
            p.push_code(
                "INVALID_NEXT_TOKEN",
                "nextToken",
                "must be a string from a previous answer",
            );
            None
        }
    };
    let queries = match obj.get("metricQueries") {
        Some(Json::Array(q)) if q.is_empty() => {
            p.push_code(
                "MISSING_PARAMETER",
                "metricQueries",
                "needs at least one query",
            );
            &[][..]
        }
        Some(Json::Array(q)) if q.len() > MAX_QUERIES => {
            p.push_code(
                "TOO_MANY_QUERIES",
                "metricQueries",
                format!("at most {MAX_QUERIES} queries per request, got {}", q.len()),
            );
            &[][..]
        }
        Some(Json::Array(q)) => q.as_slice(),
        None | Some(Json::Null) => {
            p.push_code("MISSING_PARAMETER", "metricQueries", "is required");
            &[][..]
        }
        Some(_) => {
            p.push_code("INVALID_PARAMETER", "metricQueries", "must be a list");
            &[][..]
        }
    };
    let mut ids = HashSet::new();
    let mut checked = Vec::new();
    for (i, q) in queries.iter().enumerate() {
        let path = format!("metricQueries[{i}]");
        if let Some(c) = check_query(q, &path, skill_id, start.zip(end), &mut ids, &mut p) {
            checked.push(c);
        }
    }
    if let Some(first) = p.problems().first() {
        let code = first.code.unwrap_or("INVALID_PARAMETER");
        let message = p
            .problems()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        return Err(Invalid::new(code, message));
    }
    Ok(CheckedRequest {
        max_results,
        next_token,
        queries: checked,
    })
}

fn check_query(
    q: &Json,
    path: &str,
    skill_id: &str,
    range: Option<(i64, i64)>,
    ids: &mut HashSet<String>,
    p: &mut Problems,
) -> Option<CheckedQuery> {
    let Some(obj) = q.as_object() else {
        p.push_code("INVALID_PARAMETER", path, "must be an object");
        return None;
    };
    let id = string(obj.get("id"), &format!("{path}.id"), 64, p);
    if let Some(id) = id
        && !ids.insert(id.to_string())
    {
        p.push_code(
            "DUPLICATE_QUERY_ID",
            format!("{path}.id"),
            format!("{id:?} is used by another query"),
        );
    }
    let label = match obj.get("label") {
        None | Some(Json::Null) => None,
        Some(Json::String(l)) if l.is_empty() => Some(""),
        v => string(v, &format!("{path}.label"), 256, p),
    };
    let namespace = string(
        obj.get("metricNamespace"),
        &format!("{path}.metricNamespace"),
        128,
        p,
    );
    let name = string(obj.get("name"), &format!("{path}.name"), 128, p);
    let ns = namespace.and_then(|n| {
        let found = builtin::namespace(n);
        if found.is_none() {
            let known: Vec<&str> = builtin::namespaces()
                .iter()
                .map(|n| n.namespace.as_str())
                .collect();
            p.push_code(
                "INVALID_NAMESPACE",
                format!("{path}.metricNamespace"),
                format!("unknown namespace {n:?}; known: {}", known.join(", ")),
            );
        }
        found
    });
    let metric: Option<&CatalogMetric> = match (ns, name) {
        (Some(ns), Some(name)) => {
            let m = ns.metric(name);
            if m.is_none() {
                p.push_code(
                    "INVALID_METRIC",
                    format!("{path}.name"),
                    format!("{name:?} is not a metric of {}", ns.namespace),
                );
            }
            m
        }
        _ => None,
    };
    let bucket = match obj.get("aggregationPeriod") {
        Some(Json::String(s)) => {
            let b = Bucket::parse(s);
            if b.is_none() {
                p.push_code(
                    "INVALID_AGGREGATION_PERIOD",
                    format!("{path}.aggregationPeriod"),
                    format!("{s:?} is not one of BY_15, BY_HOUR, BY_DAY, BY_WEEK, SINGLE (or PT15M, PT1H, P1D, P7D)"),
                );
            }
            b
        }
        None | Some(Json::Null) => {
            p.push_code(
                "MISSING_PARAMETER",
                format!("{path}.aggregationPeriod"),
                "is required",
            );
            None
        }
        Some(_) => {
            p.push_code(
                "INVALID_AGGREGATION_PERIOD",
                format!("{path}.aggregationPeriod"),
                "must be a string",
            );
            None
        }
    };
    // `stat` may be left out: a metric's first listed stat is its default
    // (`count` for counts, `avg` for latencies); metrics that list no stat
    // (ratios) take none.
    let stat: Option<Option<String>> = match (obj.get("stat"), metric) {
        (None | Some(Json::Null), Some(_)) => Some(None),
        (Some(Json::String(s)), Some(m)) => {
            if m.supports_stat(s) {
                Some(Some(s.clone()))
            } else {
                let supported = if m.supported_stats.is_empty() {
                    "it takes no stat".to_string()
                } else {
                    format!("use one of {}", m.supported_stats.join(", "))
                };
                p.push_code(
                    "UNSUPPORTED_STAT",
                    format!("{path}.stat"),
                    format!("{s:?} is not a stat of {}: {supported}", m.name),
                );
                None
            }
        }
        (Some(Json::String(_)) | None | Some(Json::Null), None) => None,
        (Some(_), _) => {
            p.push_code(
                "UNSUPPORTED_STAT",
                format!("{path}.stat"),
                "must be a string",
            );
            None
        }
    };
    let group_by: Option<String> = match obj.get("groupBy") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(s.clone()),
        Some(_) => {
            p.push_code(
                "UNSUPPORTED_GROUP_BY",
                format!("{path}.groupBy"),
                "must be a string (one groupBy option of the metric)",
            );
            None
        }
    };
    if let (Some(m), Some(g)) = (metric, &group_by)
        && !m.supported_group_by_options.contains(g)
    {
        let options = if m.supported_group_by_options.is_empty() {
            "none".to_string()
        } else {
            m.supported_group_by_options.join(", ")
        };
        p.push_code(
            "UNSUPPORTED_GROUP_BY",
            format!("{path}.groupBy"),
            format!("{g:?} is not a groupBy of {}: supported: {options}", m.name),
        );
    }
    let mut filters = Vec::new();
    let mut named: Vec<String> = Vec::new();
    match obj.get("dimensions") {
        None | Some(Json::Null) => {}
        Some(Json::Array(items)) if items.len() > MAX_DIMENSIONS => p.push_code(
            "UNSUPPORTED_DIMENSION",
            format!("{path}.dimensions"),
            format!("at most {MAX_DIMENSIONS} dimensions, got {}", items.len()),
        ),
        Some(Json::Array(items)) => {
            for (j, d) in items.iter().enumerate() {
                let dpath = format!("{path}.dimensions[{j}]");
                let (Some(dn), Some(dv)) = (
                    d.get("name").and_then(Json::as_str),
                    d.get("value").and_then(Json::as_str),
                ) else {
                    p.push_code(
                        "INVALID_DIMENSION",
                        &dpath,
                        "must be {\"name\": ..., \"value\": ...} with string values",
                    );
                    continue;
                };
                if dv.is_empty() || dv.chars().count() > 256 {
                    p.push_code(
                        "INVALID_STRING_LENGTH",
                        format!("{dpath}.value"),
                        "must be 1 to 256 characters",
                    );
                    continue;
                }
                if named.iter().any(|n| n == dn) {
                    p.push_code(
                        "UNSUPPORTED_DIMENSION",
                        format!("{dpath}.name"),
                        format!("{dn:?} is named twice; give each dimension once"),
                    );
                    continue;
                }
                named.push(dn.to_string());
                if let Some(m) = metric
                    && !m.supported_dimensions.iter().any(|s| s == dn)
                {
                    p.push_code(
                        "UNSUPPORTED_DIMENSION",
                        format!("{dpath}.name"),
                        format!(
                            "{dn:?} is not a dimension of {}: supported: {}",
                            m.name,
                            m.supported_dimensions.join(", ")
                        ),
                    );
                    continue;
                }
                if let Some(values) = builtin::dimension_info(dn).and_then(|i| i.values.as_ref())
                    && !values.iter().any(|v| v == dv)
                {
                    p.push_code(
                        "INVALID_DIMENSION_VALUE",
                        format!("{dpath}.value"),
                        format!(
                            "{dv:?} is not a value of {dn}: use one of {}",
                            values.join(", ")
                        ),
                    );
                    continue;
                }
                filters.push(builtin::dimension_filter(dn, dv));
            }
        }
        Some(_) => p.push_code(
            "INVALID_DIMENSION",
            format!("{path}.dimensions"),
            "must be a list of {\"name\", \"value\"}",
        ),
    }
    // Documented defaults (`Alexa.SluConfidence` MEDIUM, ...) apply to the
    // metrics that list the dimension when the query leaves it out.
    if let Some(m) = metric {
        for dn in &m.supported_dimensions {
            if let Some(default) = builtin::dimension_info(dn).and_then(|i| i.default.as_ref())
                && !named.contains(dn)
            {
                filters.push(builtin::dimension_filter(dn, default));
            }
        }
    }
    let (metric, bucket, stat, (start, end), id, namespace, name) =
        (metric?, bucket?, stat?, range?, id?, namespace?, name?);
    let effective = stat
        .clone()
        .or_else(|| metric.supported_stats.first().cloned());
    let query = Query {
        workspace_id: skill_id.to_string(),
        measure: match &effective {
            Some(s) => metric.measure_for_stat(s),
            None => metric.measure.clone(),
        },
        filters,
        range: TimeRange {
            start_ms: start,
            end_ms: end,
        },
        bucket,
        group_by: group_by.iter().map(|g| builtin::dimension(g)).collect(),
    };
    if let Err(problems) = query.validate() {
        for problem in problems.0 {
            let code = if problem.path == "range" {
                "INVALID_TIME_RANGE"
            } else {
                "INVALID_PARAMETER"
            };
            p.push_code(code, path, problem.message);
        }
        return None;
    }
    Some(CheckedQuery {
        id: id.to_string(),
        label: label.map(str::to_string),
        namespace: namespace.to_string(),
        name: name.to_string(),
        stat,
        group_by,
        query,
    })
}
