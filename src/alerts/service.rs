//! What the alert handlers ask for: rules read and changed in the
//! workspace's catalog document, each checked whole (its source must exist
//! and evaluate, its webhooks be allowed) before it is saved; a rule's
//! state; its history; and a preview evaluation that stores nothing.

use serde_json::Value as Json;

use super::evaluate::{GroupEval, apply, evaluate};
use super::evaluator::wall_ms;
use super::rule::{
    AlertRule, Condition, MAX_RULES_PER_WORKSPACE, Problems, WorkspaceRules, check_rule,
};
use super::state::{AlertState, GroupState, Notice, Timing};
use super::store::{self, Index, RuleState};
use super::{allow_list, source, timestamp};
use crate::api::{ApiError, AppState};
use crate::storage::catalog::UpdateError;

fn storage_error<E: Into<ApiError>>(e: UpdateError<E>) -> ApiError {
    match e {
        UpdateError::Rejected(e) => e.into(),
        UpdateError::Storage(e) => e.into(),
    }
}

fn not_found(id: uuid::Uuid) -> ApiError {
    ApiError::not_found(
        "ALERT_NOT_FOUND",
        format!("no metric alert {id} in this workspace"),
    )
}

/// The documented 400: `message` lists every problem, `field` names the
/// first, `errors[]` has them all as `{field, message}`.
pub fn validation_error(p: Problems) -> ApiError {
    if let [(field, message)] = p.0.as_slice()
        && field.is_empty()
    {
        return ApiError::bad("INVALID_REQUEST_BODY", message.clone());
    }
    let message =
        p.0.iter()
            .map(|(f, m)| format!("{f}: {m}"))
            .collect::<Vec<_>>()
            .join("; ");
    let errors: Vec<Json> =
        p.0.iter()
            .map(|(f, m)| serde_json::json!({"field": f, "message": m}))
            .collect();
    ApiError::Detailed {
        code: "VALIDATION_ERROR",
        message,
        details: serde_json::json!({"field": p.0[0].0, "errors": errors}),
    }
}

/// Checks a rule whole: its fields, then what needs I/O (webhook hosts
/// resolved against the allow-list, the source's existence and window).
async fn check(
    state: &AppState,
    ws: &str,
    body: &Json,
    id: uuid::Uuid,
    created_at: &str,
    updated_at: &str,
) -> Result<AlertRule, ApiError> {
    let allow = allow_list();
    let rule = check_rule(body, id, created_at, updated_at, &allow).map_err(validation_error)?;
    let mut p = Problems::default();
    for (i, c) in rule.channels.iter().enumerate() {
        if let Err(e) = allow.resolve_checked(&c.url).await {
            p.push(format!("channels[{i}].url"), e);
        }
    }
    match source::check(state, ws, &rule).await {
        Ok(window) => {
            if window.is_none() && !matches!(rule.condition, Condition::Threshold { .. }) {
                p.push(
                    "condition.type",
                    "change and anomaly conditions compare windows: the metric needs a timeWindow",
                );
            }
        }
        Err((field, message)) => p.push(field, message),
    }
    if p.is_empty() {
        Ok(rule)
    } else {
        Err(validation_error(p))
    }
}

/// Every rule of `ws`.
pub async fn list(state: &AppState, ws: &str) -> Result<Vec<AlertRule>, ApiError> {
    let (_, doc) = store::rules(&state.engine.store)
        .load::<WorkspaceRules>(ws)
        .await
        .map_err(ApiError::internal)?;
    Ok(doc.rules)
}

pub async fn get(state: &AppState, ws: &str, id: uuid::Uuid) -> Result<AlertRule, ApiError> {
    list(state, ws)
        .await?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| not_found(id))
}

/// A rule's stored state (the default before its first evaluation).
pub async fn rule_state(state: &AppState, ws: &str, id: uuid::Uuid) -> Result<RuleState, ApiError> {
    Ok(store::states(&state.engine.store)
        .load::<RuleState>(&store::state_key(ws, id))
        .await
        .map_err(ApiError::internal)?
        .1)
}

/// `POST`: checks `body` whole and stores it under a new id.
pub async fn create(state: &AppState, ws: &str, body: &Json) -> Result<AlertRule, ApiError> {
    let now = timestamp(wall_ms());
    let rule = check(state, ws, body, uuid::Uuid::new_v4(), &now, &now).await?;
    let store = &state.engine.store;
    let known = store::index(store)
        .load::<Index>(store::index_key())
        .await
        .map_err(ApiError::internal)?
        .1;
    if !known.workspaces.contains(ws) {
        let ws2 = ws.to_string();
        store::index(store)
            .update(store::index_key(), move |doc: &mut Index| {
                doc.workspaces.insert(ws2.clone());
                Ok::<_, ApiError>(())
            })
            .await
            .map_err(storage_error)?;
    }
    let stored = rule.clone();
    store::rules(store)
        .update(ws, move |doc: &mut WorkspaceRules| {
            if doc.rules.len() >= MAX_RULES_PER_WORKSPACE {
                return Err(ApiError::bad(
                    "LIMIT_EXCEEDED",
                    format!("a workspace holds at most {MAX_RULES_PER_WORKSPACE} alert rules"),
                ));
            }
            doc.rules.push(stored.clone());
            Ok(())
        })
        .await
        .map_err(storage_error)?;
    Ok(rule)
}

/// The stored rule with `changes` laid over it. Channels sent back without
/// their secret (as rules read back) keep the stored secret of the same URL.
fn merged(stored: &AlertRule, changes: &serde_json::Map<String, Json>) -> Json {
    let mut merged = serde_json::to_value(stored).expect("rules serialise");
    let obj = merged.as_object_mut().expect("an object");
    for (k, v) in changes {
        if !matches!(k.as_str(), "id" | "createdAt" | "updatedAt" | "status") {
            obj.insert(k.clone(), v.clone());
        }
    }
    if let Some(Json::Array(channels)) = obj.get_mut("channels") {
        for c in channels.iter_mut().filter_map(Json::as_object_mut) {
            c.remove("secretSet");
            if c.get("secret").is_none_or(Json::is_null)
                && let Some(old) = c
                    .get("url")
                    .and_then(Json::as_str)
                    .and_then(|u| stored.channels.iter().find(|s| s.url == u))
            {
                c.insert("secret".into(), old.secret.clone().into());
            }
        }
    }
    merged
}

/// `PUT`: the fields given replace the stored ones, the rest keep their
/// values; the result is checked whole.
pub async fn update(
    state: &AppState,
    ws: &str,
    id: uuid::Uuid,
    body: &Json,
) -> Result<AlertRule, ApiError> {
    let Some(changes) = body.as_object().cloned() else {
        return Err(ApiError::bad(
            "INVALID_REQUEST_BODY",
            "the request body must be a JSON object",
        ));
    };
    let current = get(state, ws, id).await?;
    let now = timestamp(wall_ms());
    // The checks that need I/O run on the rule as it is now; the change is
    // merged again inside the catalog update (which may retry) and checked
    // there without I/O.
    check(
        state,
        ws,
        &merged(&current, &changes),
        id,
        &current.created_at,
        &now,
    )
    .await?;
    let allow = allow_list();
    store::rules(&state.engine.store)
        .update(ws, move |doc: &mut WorkspaceRules| {
            let slot = doc
                .rules
                .iter_mut()
                .find(|r| r.id == id)
                .ok_or_else(|| not_found(id))?;
            let updated = check_rule(&merged(slot, &changes), id, &slot.created_at, &now, &allow)
                .map_err(validation_error)?;
            *slot = updated.clone();
            Ok(updated)
        })
        .await
        .map_err(storage_error::<ApiError>)
}

pub async fn delete(state: &AppState, ws: &str, id: uuid::Uuid) -> Result<(), ApiError> {
    store::rules(&state.engine.store)
        .update(ws, move |doc: &mut WorkspaceRules| {
            let before = doc.rules.len();
            doc.rules.retain(|r| r.id != id);
            if doc.rules.len() == before {
                Err(not_found(id))
            } else {
                Ok(())
            }
        })
        .await
        .map_err(storage_error)
}

/// A page of a rule's transitions, newest first.
pub async fn history(
    state: &AppState,
    ws: &str,
    id: uuid::Uuid,
    limit: usize,
    next_token: Option<&str>,
) -> Result<(Vec<Json>, Option<String>), ApiError> {
    get(state, ws, id).await?;
    if let Some(t) = next_token
        && !store::valid_cursor(t)
    {
        return Err(ApiError::bad(
            "INVALID_NEXT_TOKEN",
            "nextToken is not one this route gave",
        ));
    }
    store::history(&state.engine.store, ws, id, limit, next_token)
        .await
        .map_err(ApiError::internal)
}

/// What an evaluation now would find and do, per group.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviewGroup {
    #[schema(value_type = Option<Object>)]
    pub dimensions: Option<super::source::Dimensions>,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub state: AlertState,
    pub next_state: AlertState,
    /// What the move would notify: `firing`, `resolved` or nothing.
    pub notification: Option<Notice>,
    /// What the condition computed besides the value (`current` and
    /// `previous` of a change, `mean`, `stddev`, `lower`, `upper` and
    /// `samples` of an anomaly).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub detail: serde_json::Map<String, Json>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Preview {
    pub rule_id: uuid::Uuid,
    pub evaluated_at: String,
    pub error: Option<String>,
    pub groups: Vec<PreviewGroup>,
}

/// Evaluates a rule now against its stored state, changing nothing.
pub async fn preview(state: &AppState, ws: &str, id: uuid::Uuid) -> Result<Preview, ApiError> {
    let rule = get(state, ws, id).await?;
    let stored = rule_state(state, ws, id).await?;
    let now = wall_ms();
    let result = evaluate(state, ws, &rule, state.clock.now_ms()).await;
    let timing = Timing {
        for_ms: rule.for_ms(),
        keep_firing_ms: rule.keep_firing_ms(),
        no_data: rule.no_data_state,
        error: rule.error_state,
    };
    let (next, changes) = apply(&stored.groups, &result, now, timing);
    let mut keys: Vec<&String> = stored.groups.keys().chain(next.keys()).collect();
    keys.sort();
    keys.dedup();
    let evals: Vec<GroupEval> = result.as_ref().cloned().unwrap_or_default();
    let groups = keys
        .into_iter()
        .map(|k| {
            let before = stored.groups.get(k);
            let after = next.get(k);
            let change = changes.iter().find(|c| &c.key == k);
            let eval = evals.iter().find(|e| &e.key == k).cloned();
            let dims = before
                .or(after)
                .and_then(|g: &GroupState| g.dimensions.clone());
            let mut detail = eval
                .as_ref()
                .and_then(|e| serde_json::to_value(e).ok())
                .and_then(|v| v.as_object().cloned())
                .unwrap_or_default();
            detail.remove("dimensions");
            detail.remove("value");
            PreviewGroup {
                threshold: eval
                    .as_ref()
                    .and_then(|e| e.threshold(&rule))
                    .or(rule.threshold()),
                value: eval.as_ref().and_then(|e| e.value),
                detail,
                dimensions: dims,
                state: before.map_or(AlertState::Ok, |g| g.state),
                next_state: after.map_or(AlertState::Ok, |g| g.state),
                notification: change.and_then(|c| c.notice),
            }
        })
        .collect();
    Ok(Preview {
        rule_id: id,
        evaluated_at: timestamp(now),
        error: result.err(),
        groups,
    })
}
