//! Wire types of the metric alerts API: a rule as it reads back (channel
//! secrets hidden, its evaluation state added) and the history page.

use serde::Serialize;
use serde_json::Value as Json;

use crate::alerts::rule::AlertRule;
use crate::alerts::state::AlertState;
use crate::alerts::store::RuleState;
use crate::alerts::timestamp;

/// A group's state as a rule reads back.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupStatus {
    pub dimensions: Option<serde_json::Map<String, Json>>,
    pub state: AlertState,
    pub since: String,
    pub value: Option<f64>,
    pub active_at: Option<String>,
    pub fired_at: Option<String>,
}

/// A rule's evaluation state: `state` is its most urgent group's
/// (`paused` when disabled, `ok` before any group exists).
#[derive(Debug, Serialize)]
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
pub fn rule_view(rule: &AlertRule, st: &RuleState) -> Json {
    let mut v = serde_json::to_value(rule).expect("rules serialise");
    if let Some(Json::Array(channels)) = v.get_mut("channels") {
        for c in channels.iter_mut().filter_map(Json::as_object_mut) {
            c.remove("secret");
            c.insert("secretSet".into(), true.into());
        }
    }
    v["status"] = serde_json::to_value(Status::new(rule, st)).expect("serialisable");
    v
}

/// `GET /api/metric-alerts/{id}/history`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPage {
    pub transitions: Vec<Json>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}
