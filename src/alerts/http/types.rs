//! Wire types of the metric alerts API: a rule as it reads back (channel
//! secrets hidden, its evaluation state added) and the history page.

use serde::Serialize;
use serde_json::Value as Json;

use crate::alerts::rule::{
    AlertRule, Condition, ErrorState, MetricStoreMetric, NoDataState, SkillMetric,
};
use crate::alerts::state::AlertState;
use crate::alerts::store::RuleState;
use crate::alerts::timestamp;

/// A group's state as a rule reads back.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupStatus {
    #[schema(value_type = Option<Object>)]
    pub dimensions: Option<serde_json::Map<String, Json>>,
    pub state: AlertState,
    pub since: String,
    pub value: Option<f64>,
    pub active_at: Option<String>,
    pub fired_at: Option<String>,
}

/// A rule's evaluation state: `state` is its most urgent group's
/// (`paused` when disabled, `ok` before any group exists).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub state: &'static str,
    pub last_evaluated_at: Option<String>,
    pub last_error: Option<String>,
    pub groups: Vec<GroupStatus>,
    /// Transitions whose webhooks have not all answered yet.
    pub pending_notifications: usize,
}

impl Status {
    pub fn new(rule: &AlertRule, st: &RuleState) -> Self {
        let worst = st
            .groups
            .values()
            .map(|g| g.state)
            .max_by_key(|s| s.rank())
            .unwrap_or(AlertState::Ok);
        Self {
            state: if rule.enabled { worst.name() } else { "paused" },
            last_evaluated_at: st.last_evaluated_ms.map(timestamp),
            last_error: st.last_error.clone(),
            groups: st
                .groups
                .values()
                .map(|g| GroupStatus {
                    dimensions: g.dimensions.clone(),
                    state: g.state,
                    since: timestamp(g.since_ms),
                    value: g.value,
                    active_at: g.active_ms.map(timestamp),
                    fired_at: g.fired_ms.map(timestamp),
                })
                .collect(),
            pending_notifications: st.outbox.iter().filter(|t| !t.delivered()).count(),
        }
    }
}

/// A rule as the API shows it: every stored field, channels as
/// `{type, url, secretSet}`, and `status`.
/// A channel as it reads back: its secret is never shown, only that one
/// is set.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelView {
    #[serde(rename = "type")]
    pub kind: String,
    pub url: String,
    pub secret_set: bool,
}

/// A rule as the API shows it: the stored rule without channel secrets,
/// and its evaluation state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleView {
    pub id: uuid::Uuid,
    pub name: String,
    pub description: Option<String>,
    pub enabled: bool,
    pub metric_id: Option<uuid::Uuid>,
    pub skill_metric: Option<SkillMetric>,
    pub metric_store: Option<MetricStoreMetric>,
    pub condition: Condition,
    pub evaluation_interval: String,
    #[serde(rename = "for")]
    pub for_: String,
    pub keep_firing_for: String,
    pub no_data_state: NoDataState,
    pub error_state: ErrorState,
    pub channels: Vec<ChannelView>,
    pub silenced_until: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub status: Status,
}

impl RuleView {
    pub fn new(rule: &AlertRule, st: &RuleState) -> Self {
        let r = rule.clone();
        Self {
            status: Status::new(rule, st),
            id: r.id,
            name: r.name,
            description: r.description,
            enabled: r.enabled,
            metric_id: r.metric_id,
            skill_metric: r.skill_metric,
            metric_store: r.metric_store,
            condition: r.condition,
            evaluation_interval: r.evaluation_interval,
            for_: r.for_,
            keep_firing_for: r.keep_firing_for,
            no_data_state: r.no_data_state,
            error_state: r.error_state,
            channels: r
                .channels
                .into_iter()
                .map(|c| ChannelView {
                    kind: c.kind,
                    url: c.url,
                    secret_set: true,
                })
                .collect(),
            silenced_until: r.silenced_until,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPage {
    /// Newest first: each a group's move from one state to another.
    #[schema(value_type = Vec<Object>)]
    pub transitions: Vec<Json>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `POST /api/metric-alerts` and `PUT .../{id}`: a rule watches exactly
/// one of `metricId` (an interaction metric), `skillMetric` or
/// `metricStore`. On PUT fields left out keep their values.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleRequest {
    #[schema(example = "Too many failed utterances")]
    pub name: String,
    pub description: Option<String>,
    pub enabled: Option<bool>,
    pub metric_id: Option<uuid::Uuid>,
    pub skill_metric: Option<SkillMetric>,
    pub metric_store: Option<MetricStoreMetric>,
    pub condition: Condition,
    /// At least `1s` (default `1m`).
    #[schema(example = "1m")]
    pub evaluation_interval: Option<String>,
    #[serde(rename = "for")]
    #[schema(example = "5m")]
    pub for_: Option<String>,
    pub keep_firing_for: Option<String>,
    pub no_data_state: Option<NoDataState>,
    pub error_state: Option<ErrorState>,
    pub channels: Option<Vec<crate::alerts::rule::Channel>>,
    pub silenced_until: Option<String>,
}
