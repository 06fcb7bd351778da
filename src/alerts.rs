//! Metric alerts: rules that watch a metric (an interaction metric, a
//! Skill Metrics query or a Metric Store metric), move each group through
//! `ok -> pending -> firing -> ok` (plus `nodata` and `error`) as the
//! condition holds or not, and tell webhooks about `firing` and
//! `resolved`. The model and its checks are in [`rule`], the values in
//! [`source`], conditions in [`evaluate`], the state machine in [`state`],
//! webhooks in [`notify`], the background loop in [`evaluator`], and
//! what the HTTP handlers ask for in [`service`].

pub mod allow;
pub mod evaluate;
pub mod evaluator;
pub mod http;
pub mod notify;
pub mod rule;
pub mod service;
pub mod source;
pub mod state;
pub mod store;

use std::sync::OnceLock;

use allow::AllowList;

/// What `serve` configures for alerts.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where webhooks may go (`METRICSTORE_WEBHOOK_ALLOW`).
    pub allow: AllowList,
    /// This server's name in rule leases (`METRICSTORE_NODE_ID`; a random
    /// one by default). A server restarted with the same name takes its
    /// own leases back at once instead of waiting for them to expire.
    pub node_id: String,
}

impl Config {
    pub fn from_env() -> Result<Self, String> {
        let node_id = match std::env::var("METRICSTORE_NODE_ID") {
            Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
            _ => format!("node-{}", uuid::Uuid::new_v4()),
        };
        Ok(Self {
            allow: AllowList::from_env()?,
            node_id,
        })
    }
}

static CONFIG: OnceLock<Config> = OnceLock::new();

/// Sets the process's alert configuration (once, at start).
pub fn configure(config: Config) {
    let _ = CONFIG.set(config);
}

/// The allow-list rules are checked against: the configured one, or (a
/// router built without `serve`) the environment's, loopback by default.
pub fn allow_list() -> AllowList {
    CONFIG
        .get_or_init(|| {
            Config::from_env().unwrap_or_else(|e| {
                tracing::error!(error = %e, "bad alert configuration; webhooks allowed to loopback only");
                Config {
                    allow: AllowList::loopback(),
                    node_id: format!("node-{}", uuid::Uuid::new_v4()),
                }
            })
        })
        .allow
        .clone()
}

/// Times as the Interaction Metrics API writes them.
pub use crate::format::instant_millis as timestamp;
