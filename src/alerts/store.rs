//! Where alerts live in the store. Rules: a versioned catalog document per
//! workspace (as interaction metrics), plus an index of the workspaces that
//! have rules, so the evaluator finds them. State: a versioned document per
//! rule holding its groups, its lease and its outbox of transitions not yet
//! delivered; every change is a create-only put of the next version, so of
//! two servers only one can take a lease or commit an evaluation. History:
//! one object per transition, named so that names sort by time.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::notify::Transition;
use super::state::GroupState;
use crate::storage::Store;
use crate::storage::catalog::Catalog;

const RULES: &str = "metric-alerts";
const INDEX: &str = "metric-alerts-index";
const INDEX_KEY: &str = "workspaces";
const STATE: &str = "metric-alert-state";

pub fn rules(store: &Store) -> Catalog {
    Catalog::new(store.clone(), RULES)
}

pub fn index(store: &Store) -> Catalog {
    Catalog::new(store.clone(), INDEX)
}

pub const fn index_key() -> &'static str {
    INDEX_KEY
}

pub fn states(store: &Store) -> Catalog {
    Catalog::new(store.clone(), STATE)
}

pub fn state_key(ws: &str, rule: uuid::Uuid) -> String {
    format!("{ws}/{rule}")
}

/// The workspaces with rules.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Index {
    pub workspaces: BTreeSet<String>,
}

/// Who holds a rule, until when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    pub owner: String,
    pub token: uuid::Uuid,
    pub until_ms: i64,
}

/// A rule's evaluation state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleState {
    pub lease: Option<Lease>,
    pub last_evaluated_ms: Option<i64>,
    pub last_error: Option<String>,
    pub groups: BTreeMap<String, GroupState>,
    /// Transitions not yet archived and delivered, oldest first.
    pub outbox: Vec<Transition>,
    pub seq: u64,
}

fn history_dir(ws: &str, rule: uuid::Uuid) -> String {
    format!("alerts/history/{}/{rule}", crate::storage::key_segment(ws))
}

fn history_name(t: &Transition) -> String {
    format!("{:013}-{:010}", t.at_ms.max(0), t.seq)
}

/// Writes (or rewrites, with newer delivery results) a transition's
/// history entry; the name is fixed by the transition, so this is
/// idempotent.
pub async fn write_history(store: &Store, t: &Transition) -> crate::storage::Result<()> {
    let path = store.path(&format!(
        "{}/{}.json",
        history_dir(&t.workspace_id, t.rule_id),
        history_name(t)
    ));
    let body = serde_json::to_vec(&t.view()).expect("serialisable");
    store.put_durable(&path, body).await
}

/// Whether `token` is a history cursor.
pub fn valid_cursor(token: &str) -> bool {
    let b = token.as_bytes();
    b.len() == 24
        && b[13] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 13 || c.is_ascii_digit())
}

/// Up to `limit` history entries of a rule, newest first, older than the
/// cursor `before`; and the cursor of the next page, if any.
pub async fn history(
    store: &Store,
    ws: &str,
    rule: uuid::Uuid,
    limit: usize,
    before: Option<&str>,
) -> crate::storage::Result<(Vec<serde_json::Value>, Option<String>)> {
    let mut names: Vec<(String, object_store::path::Path)> = store
        .list(&history_dir(ws, rule))
        .await?
        .into_iter()
        .filter_map(|m| {
            let stem = m.location.filename()?.strip_suffix(".json")?.to_string();
            valid_cursor(&stem).then_some((stem, m.location))
        })
        .filter(|(stem, _)| before.is_none_or(|b| stem.as_str() < b))
        .collect();
    names.sort_by(|a, b| b.0.cmp(&a.0));
    let more = names.len() > limit;
    names.truncate(limit);
    let mut out = Vec::with_capacity(names.len());
    for (_, path) in &names {
        if let Some(bytes) = store.get_opt(path).await? {
            let v = serde_json::from_slice(&bytes).map_err(|e| crate::storage::Error::Corrupt {
                path: path.to_string(),
                reason: e.to_string(),
            })?;
            out.push(v);
        }
    }
    let next = more.then(|| names.last().map(|n| n.0.clone())).flatten();
    Ok((out, next))
}
