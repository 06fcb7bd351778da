//! The Alexa-style skill Metrics API: `POST /v2/skills/{skillId}/metrics`
//! and `GET /v2/skills/metrics`.

pub mod types;

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde_json::Value as JsonValue;

use super::auth::Principal;
use super::csv::Answer;
use super::token::Signer;
use super::{ApiError, AppState, JsonBody};
use crate::definition::builtin;
use crate::engine::AnswerPath;
use crate::series::Sparse;
use types::*;

/// Checks a skill id from the path (1 to 255 characters).
pub(super) fn skill_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(id) =
        path.map_err(|e| ApiError::bad("INVALID_STRING_LENGTH", format!("skillId: {e}")))?;
    let n = id.chars().count();
    if n == 0 || n > 255 {
        return Err(ApiError::bad(
            "INVALID_STRING_LENGTH",
            format!("skillId must be 1 to 255 characters, got {n}"),
        ));
    }
    Ok(id)
}

/// A 404 unless some event names the skill.
pub(super) async fn require_events(state: &AppState, skill: &str) -> Result<(), ApiError> {
    if state.workspace_exists(skill).await? {
        Ok(())
    } else {
        Err(ApiError::not_found(
            "SKILL_NOT_FOUND",
            format!("no skill {skill:?} has any events"),
        ))
    }
}

/// `POST /v2/skills/{skillId}/metrics`.
#[utoipa::path(
    post,
    path = "/v2/skills/{skill_id}/metrics",
    tag = "Skill Metrics",
    params(("skill_id" = String, Path, description = "The skill (its events' workspace), 1 to 255 characters", example = "amzn1.ask.skill.demo-trivia")),
    request_body = crate::api::openapi::GetMetricsRequest,
    responses((
        status = 200,
        description = "One result per query; `paginationContext` when a query has more points",
        content((GetMetricsResponse = "application/json"), (String = "text/csv")),
        headers(("x-metricstore-answered-from" = String, description = "Per query, in order: `rollup` or `raw`"))
    ))
)]
pub async fn get_metrics(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<JsonValue>,
) -> Result<([(&'static str, String); 1], Answer<GetMetricsResponse>), ApiError> {
    let skill = skill_id(path)?;
    principal.require(&skill)?;
    let request = check_request(&body, &skill)?;
    require_events(&state, &skill).await?;

    let mut unpaged = body.clone();
    if let Some(o) = unpaged.as_object_mut() {
        o.remove("nextToken");
    }
    let digest = Signer::request_digest(&["alexa.metrics", &skill, &unpaged.to_string()]);
    let offsets = match &request.next_token {
        None => vec![0; request.queries.len()],
        Some(t) => state
            .tokens
            .verify(&digest, t)
            .filter(|o| o.len() == request.queries.len())
            .ok_or_else(|| {
                ApiError::bad("INVALID_NEXT_TOKEN", "nextToken does not belong to this request (same skill and body, without nextToken)")
            })?,
    };

    let runs = request
        .queries
        .iter()
        .map(|q| state.engine.run_sparse(&q.query));
    let (all, paths): (Vec<Sparse>, Vec<_>) = futures::future::try_join_all(runs)
        .await?
        .into_iter()
        .unzip();
    // Which path answered each query, in order (`rollup` or `raw`).
    let answered: Vec<&str> = paths.iter().map(|p: &AnswerPath| p.name()).collect();

    let max = request.max_results;
    let mut results = Vec::with_capacity(all.len());
    let mut next = Vec::with_capacity(all.len());
    let mut more = false;
    for ((q, series), offset) in request.queries.iter().zip(&all).zip(&offsets) {
        let total = series.total();
        let end = (offset + max).min(total);
        more |= end < total;
        next.push(end);
        results.push(QueryResult {
            id: q.id.clone(),
            label: q.label.clone(),
            namespace: q.namespace.clone(),
            name: q.name.clone(),
            stat: q.stat.clone(),
            data: page(series, q.group_by.as_deref(), *offset, end),
        });
    }
    let pagination_context = more.then(|| PaginationContext {
        next_token: state.tokens.sign(&digest, next),
    });
    let response = GetMetricsResponse {
        results,
        pagination_context,
    };
    Ok((
        [(ANSWERED_FROM, answered.join(","))],
        Answer::negotiate(&headers, response, GetMetricsResponse::to_table),
    ))
}

/// The response header that says, per query in order, whether rollups
/// (`rollup`) or raw events (`raw`) answered it.
pub const ANSWERED_FROM: &str = "x-metricstore-answered-from";

/// The points `[from, to)` of the series laid end to end, as data entries
/// (a series cut by the page boundary appears in both pages); gaps are
/// filled for this page only.
fn page(series: &Sparse, group_by: Option<&str>, from: u64, to: u64) -> Vec<Data> {
    series
        .page(from, to)
        .into_iter()
        .map(|(i, points)| Data {
            grouped_by: group_by.map(|field| GroupedBy {
                field: field.to_string(),
                // The document's `groupedByValue` is a string: events
                // without the field (utterances not resolved to an
                // intent) form the group "".
                value: series.series[i]
                    .group
                    .first()
                    .cloned()
                    .flatten()
                    .unwrap_or_default(),
            }),
            timestamps: points.iter().map(|(t, _)| *t).collect(),
            values: points.iter().map(|(_, v)| *v).collect(),
        })
        .collect()
}

#[derive(Debug, serde::Deserialize)]
pub struct ListParams {
    #[serde(rename = "metricNamespace")]
    namespace: Option<String>,
    #[serde(rename = "maxResults")]
    max_results: Option<String>,
    #[serde(rename = "nextToken")]
    next_token: Option<String>,
}

/// `GET /v2/skills/metrics?metricNamespace=&maxResults=&nextToken=`.
#[utoipa::path(
    get,
    path = "/v2/skills/metrics",
    tag = "Skill Metrics",
    params(
        ("metricNamespace" = Option<String>, Query, description = "Only this namespace's metrics"),
        ("maxResults" = Option<u32>, Query, description = "1 to 100 metrics a page"),
        ("nextToken" = Option<String>, Query, description = "The previous page's nextToken"),
    ),
    responses((status = 200, description = "The metrics, their stats, group-bys and dimensions", body = ListMetricsResponse))
)]
pub async fn list_metrics(
    State(state): State<Arc<AppState>>,
    _principal: Principal,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<ListMetricsResponse>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad("INVALID_PARAMETER", e.body_text()))?;
    let known = || {
        builtin::namespaces()
            .iter()
            .map(|n| n.namespace.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let ns = match params.namespace.as_deref() {
        None | Some("") => {
            return Err(ApiError::bad(
                "MISSING_PARAMETER",
                format!("metricNamespace is required: one of {}", known()),
            ));
        }
        Some(n) => builtin::namespace(n).ok_or_else(|| {
            ApiError::bad(
                "INVALID_NAMESPACE",
                format!(
                    "metricNamespace: unknown namespace {n:?}; known: {}",
                    known()
                ),
            )
        })?,
    };
    let max: u64 = match params.max_results.as_deref() {
        None | Some("") => 100,
        Some(s) => s
            .parse()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                ApiError::bad(
                    "INVALID_MAX_RESULTS",
                    "maxResults must be a whole number from 1 to 100",
                )
            })?,
    };
    let all: Vec<MetricInfo> = ns
        .metrics
        .iter()
        .map(|m| MetricInfo {
            name: m.name.clone(),
            supported_dimensions: m.supported_dimensions.clone(),
            supported_group_by_options: m.supported_group_by_options.clone(),
            supported_stats: m.supported_stats.clone(),
        })
        .collect();
    let digest = Signer::request_digest(&[
        "alexa.list",
        params.namespace.as_deref().unwrap_or(""),
        &max.to_string(),
    ]);
    let from = match params.next_token.as_deref() {
        None | Some("") => 0,
        Some(t) => state
            .tokens
            .verify(&digest, t)
            .and_then(|o| o.first().copied())
            .ok_or_else(|| {
                ApiError::bad(
                    "INVALID_NEXT_TOKEN",
                    "nextToken does not belong to this listing",
                )
            })?,
    };
    let to = (from + max).min(all.len() as u64);
    let pagination_context = (to < all.len() as u64).then(|| PaginationContext {
        next_token: state.tokens.sign(&digest, vec![to]),
    });
    let metrics = all
        .into_iter()
        .skip(from as usize)
        .take((to.saturating_sub(from)) as usize)
        .collect();
    Ok(Json(ListMetricsResponse {
        pagination_context,
        metrics,
    }))
}
