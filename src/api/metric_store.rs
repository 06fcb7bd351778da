//! The Metric Store API: settings (built-in and custom definitions), the
//! values the pipeline stored (latest, over a range, trend), the catalog
//! and on-demand evaluation.

pub mod types;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde_json::Value as JsonValue;

use super::auth::Principal;
use super::csv::Answer;
use super::{ApiError, AppState, JsonBody};
use crate::metric_store::level::Selection;
use crate::metric_store::stored;
use crate::metric_store::{self as service, EvaluateError};
use crate::metric_store::{self as ms, Granularity, MetricDef, Settings, check_settings};
use types::*;

use crate::storage::events::DAY_MS;

fn workspace(id: &str) -> Result<(), ApiError> {
    let n = id.chars().count();
    if n == 0 || n > 255 || id.chars().any(char::is_control) {
        return Err(ApiError::bad(
            "INVALID_WORKSPACE",
            "workspace_id must be 1 to 255 printable characters",
        ));
    }
    Ok(())
}

fn ws_path(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(ws) = path.map_err(|e| ApiError::bad("INVALID_PATH", e.to_string()))?;
    workspace(&ws)?;
    Ok(ws)
}

fn ws_key_path(
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(String, String), ApiError> {
    let Path((ws, key)) = path.map_err(|e| ApiError::bad("INVALID_PATH", e.to_string()))?;
    workspace(&ws)?;
    Ok((ws, key))
}

fn params(
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<HashMap<String, String>, ApiError> {
    q.map(|Query(p)| p)
        .map_err(|e| ApiError::bad("INVALID_PARAMETER", e.to_string()))
}

async fn settings(state: &AppState, ws: &str) -> Result<Settings, ApiError> {
    service::load_settings(&state.engine.store, ws)
        .await
        .map_err(ApiError::internal)
}

async fn metric(state: &AppState, ws: &str, key: &str) -> Result<MetricDef, ApiError> {
    settings(state, ws).await?.get(key).ok_or_else(|| {
        ApiError::not_found(
            "METRIC_NOT_FOUND",
            format!(
                "no metric {key:?} in workspace {ws:?} (GET /v1/{ws}/metrics/catalog lists them)"
            ),
        )
    })
}

/// `date_from` and `date_to` (dates inclusive, or RFC 3339 instants);
/// without `date_to` the range ends now, without `date_from` it spans
/// `default_span` ms.
fn range(p: &HashMap<String, String>, now: i64, default_span: i64) -> Result<(i64, i64), ApiError> {
    let to_ms = match p.get("date_to") {
        Some(t) => parse_date("date_to", t, true)?,
        None => now,
    };
    let from_ms = match p.get("date_from") {
        Some(t) => parse_date("date_from", t, false)?,
        None => to_ms - default_span,
    };
    if from_ms >= to_ms {
        return Err(ApiError::bad(
            "INVALID_DATE",
            "date_from must be before date_to",
        ));
    }
    if to_ms - from_ms > service::MAX_RANGE_DAYS * DAY_MS {
        return Err(ApiError::bad(
            "INVALID_DATE",
            format!("a range spans at most {} days", service::MAX_RANGE_DAYS),
        ));
    }
    Ok((from_ms, to_ms))
}

fn settings_response(s: &Settings) -> SettingsResponse {
    SettingsResponse {
        definitions: s.all(),
    }
}

/// `GET /v1/{workspace_id}/settings/metrics`.
#[utoipa::path(
    get,
    path = "/v1/{workspace_id}/settings/metrics",
    tag = "Metric Store",
    params(
        ("workspace_id" = String, Path, description = "The workspace", example = "ws-demo")
    ),
    responses((status = 200, description = "Every definition, built-in and custom", body = SettingsResponse))
)]
pub async fn get_settings(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<SettingsResponse>, ApiError> {
    let ws = ws_path(path)?;
    principal.require(&ws)?;
    let s = settings(&state, &ws).await?;
    Ok(Json(settings_response(&s)))
}

/// `PUT /v1/{workspace_id}/settings/metrics`: replaces the custom set (and
/// built-ins' `active` flags) in one catalog write, or changes nothing.
#[utoipa::path(
    put,
    path = "/v1/{workspace_id}/settings/metrics",
    tag = "Metric Store",
    params(
        ("workspace_id" = String, Path, description = "The workspace", example = "ws-demo")
    ),
    request_body = crate::api::openapi::SettingsRequest,
    responses((status = 200, description = "Every definition after the change", body = SettingsResponse))
)]
pub async fn put_settings(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<JsonValue>,
) -> Result<Json<SettingsResponse>, ApiError> {
    let ws = ws_path(path)?;
    principal.require(&ws)?;
    principal.require_admin()?;
    let new = check_settings(&body).map_err(|problems| {
        let first = &problems[0];
        ApiError::Detailed {
            code: "VALIDATION_ERROR",
            message: if problems.len() == 1 {
                first.to_string()
            } else {
                format!("{first} (and {} more problems)", problems.len() - 1)
            },
            details: serde_json::json!({"field": first.path, "errors": problems}),
        }
    })?;
    let new = service::save_settings(&state.engine.store, &ws, &new)
        .await
        .map_err(|e| match e {
            service::Error::Storage(e) => ApiError::from(e),
            e => ApiError::internal(e),
        })?;
    Ok(Json(settings_response(&new)))
}

/// `GET /v1/{workspace_id}/metrics`: the newest value of every active
/// metric, per subject and source the parameters select.
#[utoipa::path(
    get,
    path = "/v1/{workspace_id}/metrics",
    tag = "Metric Store",
    params(
        ("workspace_id" = String, Path, description = "The workspace", example = "ws-demo"),
        crate::api::openapi::SubjectParams
    ),
    responses((status = 200, description = "The newest value of every active metric", content((LatestResponse = "application/json"), (String = "text/csv"))))
)]
pub async fn latest(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Answer<LatestResponse>, ApiError> {
    let ws = ws_path(path)?;
    principal.require(&ws)?;
    let p = params(query)?;
    check_params(&p, &["source"])?;
    let source = source_param(&p, true)?;
    let lookups = latest_lookups(&p, &ws)?;
    let defs: Vec<MetricDef> = settings(&state, &ws)
        .await?
        .all()
        .into_iter()
        .filter(|d| d.active)
        .collect();
    let found = stored::latest(&state.engine, &state.ai, &defs, lookups, source).await?;
    let answer = LatestResponse {
        workspace_id: ws,
        as_of: crate::format::instant(state.clock.now_ms()),
        count: found.metrics.len(),
        metrics: found.metrics,
        not_computed: found.not_computed,
    };
    Ok(Answer::negotiate(
        &headers,
        answer,
        LatestResponse::to_table,
    ))
}

/// `GET /v1/{workspace_id}/metrics/{metric_key}`: values over a range.
#[utoipa::path(
    get,
    path = "/v1/{workspace_id}/metrics/{metric_key}",
    tag = "Metric Store",
    params(
        ("workspace_id" = String, Path, description = "The workspace", example = "ws-demo"),
        ("metric_key" = String, Path, description = "A metric key of the catalog", example = "call_count"),
        ("date_from" = Option<String>, Query, description = "RFC 3339 time or date, inclusive"),
        ("date_to" = Option<String>, Query, description = "RFC 3339 time or date, exclusive (default now)"),
        ("limit" = Option<u32>, Query, description = "1 to 365 values (default 90)"),
        ("granularity" = Option<String>, Query, description = "hourly or daily"),
        crate::api::openapi::SubjectParams
    ),
    responses((status = 200, description = "Stored values, newest first", content((ValuesResponse = "application/json"), (String = "text/csv"))))
)]
pub async fn values(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Answer<ValuesResponse>, ApiError> {
    let (ws, key) = ws_key_path(path)?;
    principal.require(&ws)?;
    let p = params(query)?;
    check_params(
        &p,
        &["date_from", "date_to", "limit", "granularity", "source"],
    )?;
    let def = metric(&state, &ws, &key).await?;
    let limit = int_param(&p, "limit", 1, 365, 90)?;
    let source = source_param(&p, true)?;
    let subject = subject(&p)?;
    // Without `date_from`, as many days back as values asked for, so the
    // documented default (`limit` 90) gives the last 90 daily values.
    let (from_ms, to_ms) = range(&p, state.clock.now_ms(), limit * DAY_MS)?;
    let granularity = match p.get("granularity") {
        None => None,
        Some(g) => Some(Granularity::parse(g).ok_or_else(|| {
            ApiError::bad(
                "INVALID_PARAMETER",
                format!("granularity {g:?} is not hourly or daily"),
            )
        })?),
    };
    let (values, granularity) = stored::values(
        &state.engine,
        stored::ValuesQuery {
            workspace: &ws,
            def: &def,
            subject: &subject,
            source,
            from_ms,
            to_ms,
            granularity,
            limit: limit as usize,
        },
    )
    .await?;
    let answer = ValuesResponse {
        workspace_id: ws.clone(),
        metric_key: def.key.clone(),
        name: def.name.clone(),
        granularity,
        entity_type: subject.level.entity_type().to_string(),
        entity_id: subject.entity_id.clone().unwrap_or(ws),
        date_from: crate::format::instant(from_ms),
        date_to: crate::format::instant(to_ms),
        limit,
        count: values.len(),
        values,
    };
    Ok(Answer::negotiate(
        &headers,
        answer,
        ValuesResponse::to_table,
    ))
}

/// `GET /v1/{workspace_id}/metrics/{metric_key}/trend`: daily values of
/// the last `days` days (today included).
#[utoipa::path(
    get,
    path = "/v1/{workspace_id}/metrics/{metric_key}/trend",
    tag = "Metric Store",
    params(
        ("workspace_id" = String, Path, description = "The workspace", example = "ws-demo"),
        ("metric_key" = String, Path, description = "A metric key of the catalog", example = "call_count"),
        ("days" = Option<u32>, Query, description = "1 to 365 days (default 30)"),
        crate::api::openapi::SubjectParams
    ),
    responses((status = 200, description = "One point a day and how the values moved", content((TrendResponse = "application/json"), (String = "text/csv"))))
)]
pub async fn trend(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Answer<TrendResponse>, ApiError> {
    let (ws, key) = ws_key_path(path)?;
    principal.require(&ws)?;
    let p = params(query)?;
    check_params(&p, &["days", "source"])?;
    let def = metric(&state, &ws, &key).await?;
    let days = int_param(&p, "days", 1, 365, 30)?;
    let source = source_param(&p, false)?;
    let subject = subject(&p)?;
    let now = state.clock.now_ms();
    let trend = stored::trend(&state.engine, &ws, &def, &subject, source, days, now).await?;
    let date = crate::storage::events::date_of_millis;
    let out = TrendResponse {
        workspace_id: ws.clone(),
        metric_key: def.key.clone(),
        name: def.name.clone(),
        unit: def.unit.clone(),
        entity_type: subject.level.entity_type().to_string(),
        entity_id: subject.entity_id.clone().unwrap_or(ws),
        days,
        date_from: date(now - (days - 1) * DAY_MS),
        date_to: date(now),
        trend,
    };
    Ok(Answer::negotiate(&headers, out, TrendResponse::to_table))
}

/// `GET /v1/{workspace_id}/metrics/catalog`.
#[utoipa::path(
    get,
    path = "/v1/{workspace_id}/metrics/catalog",
    tag = "Metric Store",
    params(
        ("workspace_id" = String, Path, description = "The workspace", example = "ws-demo")
    ),
    responses((status = 200, description = "Every metric the workspace can compute", body = CatalogResponse))
)]
pub async fn catalog(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<CatalogResponse>, ApiError> {
    let ws = ws_path(path)?;
    principal.require(&ws)?;
    let defs = settings(&state, &ws).await?.all();
    let newest = stored::newest_periods(&state.engine, &ws, &defs).await?;
    let metrics: Vec<CatalogEntry> = defs
        .into_iter()
        .map(|d| {
            let unavailable = stored::ai_unavailable(&state.ai, &d);
            CatalogEntry {
                latest_period: newest
                    .get(d.key.as_str())
                    .map(|ms| crate::format::instant(*ms)),
                computable: unavailable.is_none(),
                reason: unavailable,
                event_types: d.event_types().iter().map(|t| t.to_string()).collect(),
                key: d.key,
                name: d.name,
                description: d.description,
                source: d.source,
                metric_type: d.metric_type,
                aggregation: d.aggregation,
                extraction_mode: d.extraction_mode,
                period_granularity: d.period_granularity,
                unit: d.unit,
                builtin: d.builtin,
                active: d.active,
            }
        })
        .collect();
    Ok(Json(CatalogResponse {
        workspace_id: ws,
        sources: ms::Source::ALL
            .iter()
            .map(|s| SourceInfo {
                name: s.name(),
                event_types: s.event_types(),
            })
            .collect(),
        count: metrics.len(),
        metrics,
    }))
}

/// `POST /v1/{workspace_id}/metrics/{metric_key}/evaluate`: computes a
/// value now, without storing it: for `subject_id` (a call's
/// `session_id`), or the subject and range of the other fields (default:
/// the workspace, the last 24 hours).
#[utoipa::path(
    post,
    path = "/v1/{workspace_id}/metrics/{metric_key}/evaluate",
    tag = "Metric Store",
    params(
        ("workspace_id" = String, Path, description = "The workspace", example = "ws-demo"),
        ("metric_key" = String, Path, description = "A metric key of the catalog", example = "call_count")
    ),
    request_body = crate::api::openapi::EvaluateRequest,
    responses(
        (status = 200, description = "The value computed now, not stored", content((EvaluateResponse = "application/json"), (String = "text/csv"))),
        (status = 422, description = "The metric cannot be evaluated for this subject", body = crate::api::openapi::ErrorBody),
        (status = 502, description = "The AI endpoint failed", body = crate::api::openapi::ErrorBody),
    )
)]
pub async fn evaluate(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    JsonBody(body): JsonBody<JsonValue>,
) -> Result<Answer<EvaluateResponse>, ApiError> {
    let (ws, key) = ws_key_path(path)?;
    principal.require(&ws)?;
    let p = evaluate_params(&body)?;
    let def = metric(&state, &ws, &key).await?;
    // An AI metric's evaluation is a paid model call: an admin's.
    if def.extraction_mode.is_ai() {
        principal.require_admin()?;
    }
    let subject = subject(&p)?;
    let now = state.clock.now_ms();
    let (from_ms, to_ms) = range(&p, now, service::LOOKBACK_MS)?;
    let sel = Selection {
        workspace: ws.clone(),
        from_ms,
        to_ms,
        session_id: subject.session_id.clone(),
        service_id: subject.service_id.clone(),
    };
    let e = service::evaluate(&state.engine, &state.ai, &def, subject.level, &sel, now)
        .await
        .map_err(|e| match e {
            EvaluateError::NotFound(m) => ApiError::not_found("SUBJECT_NOT_FOUND", m),
            EvaluateError::NotEvaluable(m) => ApiError::Unprocessable(m),
            EvaluateError::NotConfigured(m) => ApiError::NotConfigured(m),
            EvaluateError::Upstream(m) => ApiError::BadGateway(m),
            EvaluateError::Failed(e) => ApiError::BadGateway(e.to_string()),
        })?;
    let timestamp = crate::format::instant;
    let answer = EvaluateResponse {
        metric: EvaluatedMetric {
            metric_key: def.key.clone(),
            metric_type: def.metric_type,
            value: e.value,
            source: e.source.name().to_string(),
            entity_type: subject.level.entity_type().to_string(),
            entity_id: subject.entity_id.clone().unwrap_or(ws),
            period_start: timestamp(e.period_start),
            period_end: timestamp(e.period_end),
            event_count: e.sample_size,
            unit: def.unit.clone(),
            computed_at: timestamp(now),
            categories: e.categories,
        },
        persisted: false,
        evaluated_at: timestamp(now),
    };
    Ok(Answer::negotiate(
        &headers,
        answer,
        EvaluateResponse::to_table,
    ))
}

/// The body of `evaluate` as subject parameters: `subject_id` (a CallSid,
/// call UUID or simulation session id: the `session_id` of the events),
/// and the subject fields and `date_from` / `date_to` of the query routes.
fn evaluate_params(body: &JsonValue) -> Result<HashMap<String, String>, ApiError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::bad("INVALID_REQUEST_BODY", "the body must be a JSON object"))?;
    check_names(obj.keys(), &["subject_id", "date_from", "date_to"], "field")?;
    let mut p = HashMap::new();
    for (k, v) in obj {
        match v {
            JsonValue::Null => {}
            JsonValue::String(s) => {
                p.insert(k.clone(), s.clone());
            }
            other => {
                return Err(ApiError::bad(
                    "INVALID_PARAMETER",
                    format!("{k} must be a string, not {other}"),
                ));
            }
        }
    }
    if let Some(id) = p.remove("subject_id") {
        let id = id.trim().to_string();
        if id.is_empty() {
            return Err(ApiError::bad("INVALID_PARAMETER", "subject_id is empty"));
        }
        if let Some(s) = p.get("session_id")
            && s.trim() != id
        {
            return Err(ApiError::bad(
                "INVALID_PARAMETER",
                format!("subject_id {id:?} and session_id {s:?} name different calls"),
            ));
        }
        p.insert("session_id".into(), id);
    }
    Ok(p)
}
