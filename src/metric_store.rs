//! Metric Store definitions: the settings a workspace keeps (41 built-in
//! metrics shipped in `queries/metric_store.json`, up to 50 custom ones),
//! their validation, and the sources they read.
//!
//! A definition says which source and event types it reads, how a value is
//! extracted from each event (a JSON path into `attributes`, a SQL
//! expression for built-ins, or an AI model for the AI modes), how values
//! aggregate per period, and which values are kept (`valid_range_*`,
//! `categories`).

pub mod answers;
pub mod check;
pub mod compute;
pub mod conversations;
pub mod evaluate;
pub mod extract;
pub mod level;
pub mod lower;
pub mod read;
pub mod stored;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

pub use check::{Problem, check_settings, valid_key, wire};
pub use evaluate::{EvaluateError, Evaluation, evaluate};

use crate::storage::catalog::Catalog;
use crate::storage::{self, Store};

/// Errors of the Metric Store's computations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Engine(#[from] crate::engine::Error),
    #[error(transparent)]
    Storage(#[from] storage::Error),
    #[error(transparent)]
    Compile(#[from] crate::compile::Error),
    #[error("{0}")]
    Definition(String),
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("{0}")]
    Range(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How far back a scheduled run (no range given) looks, the window AI
/// metrics are computed over, and `evaluate`'s default range.
pub const LOOKBACK_MS: i64 = 24 * 3_600_000;

/// Days one backfill (or one query of values) may span.
pub const MAX_RANGE_DAYS: i64 = 3660;

const SETTINGS_KIND: &str = "metric-store-settings";

/// The settings catalog of the Metric Store.
pub fn settings_catalog(store: &Store) -> Catalog {
    Catalog::new(store.clone(), SETTINGS_KIND)
}

/// Replaces a workspace's settings in one catalog write.
/// Replaces the custom set; built-ins the new settings do not name keep
/// their stored `active` flag ("built-in metrics are preserved
/// automatically"). Returns the settings as stored.
pub async fn save_settings(
    store: &Store,
    workspace: &str,
    settings: &Settings,
) -> Result<Settings> {
    let new = settings.clone();
    settings_catalog(store)
        .update(workspace, move |doc: &mut Settings| {
            let mut next = new.clone();
            for (key, active) in &doc.builtin_active {
                next.builtin_active.entry(key.clone()).or_insert(*active);
            }
            *doc = next.clone();
            Ok::<_, std::convert::Infallible>(next)
        })
        .await
        .map_err(|e| match e {
            crate::storage::catalog::UpdateError::Storage(e) => Error::Storage(e),
            crate::storage::catalog::UpdateError::Rejected(never) => match never {},
        })
}

/// A workspace's settings (its custom metrics, its built-ins switched off).
pub async fn load_settings(store: &Store, workspace: &str) -> Result<Settings> {
    Ok(settings_catalog(store).load::<Settings>(workspace).await?.1)
}

/// At most this many custom metrics per workspace.
pub const MAX_CUSTOM_METRICS: usize = 50;
pub const MAX_KEY_CHARS: usize = 64;
pub const MAX_NAME_CHARS: usize = 256;
pub const MAX_DESCRIPTION_CHARS: usize = 2000;
pub const MAX_PROMPT_CHARS: usize = 8000;
pub const MAX_LABELS: usize = 50;
pub const MAX_LABEL_CHARS: usize = 100;
pub const MAX_PATH_CHARS: usize = 256;
pub const MAX_UNIT_CHARS: usize = 32;
pub const MAX_EVENT_TYPES: usize = 20;
pub const MAX_EVENT_TYPE_CHARS: usize = 100;

/// Where a metric's events come from: each source is a set of event types.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    CallIntelligence,
    WorldEvents,
    SurfaceEvents,
    EmotionEvents,
    ConnectorEvents,
    VoiceJudgeResults,
}

impl Source {
    pub const ALL: [Source; 6] = [
        Source::CallIntelligence,
        Source::WorldEvents,
        Source::SurfaceEvents,
        Source::EmotionEvents,
        Source::ConnectorEvents,
        Source::VoiceJudgeResults,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Source::CallIntelligence => "call_intelligence",
            Source::WorldEvents => "world_events",
            Source::SurfaceEvents => "surface_events",
            Source::EmotionEvents => "emotion_events",
            Source::ConnectorEvents => "connector_events",
            Source::VoiceJudgeResults => "voice_judge_results",
        }
    }

    /// The `event_type`s a source reads.
    pub fn event_types(self) -> &'static [&'static str] {
        match self {
            Source::CallIntelligence => &["call_intelligence.row"],
            Source::WorldEvents => &["world.event"],
            Source::SurfaceEvents => &["surface.event"],
            Source::EmotionEvents => &["emotion.detected"],
            Source::ConnectorEvents => &["connector.call"],
            Source::VoiceJudgeResults => &["voice_judge.result"],
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.name() == s)
    }

    /// Whether a definition of this source may read `event_type`:
    /// `world_events` reads events of every domain, the others their own
    /// event types only.
    pub fn accepts(self, event_type: &str) -> bool {
        self == Source::WorldEvents || self.event_types().contains(&event_type)
    }
}

/// Where a value's events come from: real conversations, or simulated
/// ones (events whose `attributes.simulation` is `true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataSource {
    Production,
    Simulation,
}

impl DataSource {
    pub const ALL: [DataSource; 2] = [DataSource::Production, DataSource::Simulation];

    pub fn name(self) -> &'static str {
        match self {
            DataSource::Production => "production",
            DataSource::Simulation => "simulation",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.name() == s)
    }

    /// The source of a stored value's `source` column: anything but
    /// `simulation` (values stored before the distinction held the
    /// metric's source there) is production.
    pub fn of_stored(s: &str) -> Self {
        if s == "simulation" {
            DataSource::Simulation
        } else {
            DataSource::Production
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MetricType {
    Numerical,
    Categorical,
    Boolean,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExtractionMode {
    Static,
    AiQuery,
    AiClassify,
    AiExtract,
    /// A SQL expression over the event columns: built-in metrics only.
    SqlExpr,
}

impl ExtractionMode {
    pub fn is_ai(self) -> bool {
        matches!(
            self,
            ExtractionMode::AiQuery | ExtractionMode::AiClassify | ExtractionMode::AiExtract
        )
    }
}

/// A definition's `aggregation` as the document names it. Only a name:
/// what it computes is the shared [`crate::definition::Aggregation`] it
/// lowers to ([`MetricDef::shared_aggregation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AggregationName {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    CountDistinct,
    Ratio,
    Rate,
    /// Percentiles: built-in metrics only (custom metrics take the
    /// documented list above).
    P50,
    P90,
    P95,
    P99,
}

impl AggregationName {
    const CUSTOM: [(&'static str, AggregationName); 8] = [
        ("count", AggregationName::Count),
        ("sum", AggregationName::Sum),
        ("avg", AggregationName::Avg),
        ("min", AggregationName::Min),
        ("max", AggregationName::Max),
        ("count_distinct", AggregationName::CountDistinct),
        ("ratio", AggregationName::Ratio),
        ("rate", AggregationName::Rate),
    ];

    pub fn quantile(self) -> Option<f64> {
        match self {
            AggregationName::P50 => Some(0.5),
            AggregationName::P90 => Some(0.9),
            AggregationName::P95 => Some(0.95),
            AggregationName::P99 => Some(0.99),
            _ => None,
        }
    }
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    Hourly,
    Daily,
}

impl Granularity {
    pub fn ms(self) -> i64 {
        match self {
            Granularity::Hourly => 3_600_000,
            Granularity::Daily => 86_400_000,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Granularity::Hourly => "hourly",
            Granularity::Daily => "daily",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hourly" => Some(Granularity::Hourly),
            "daily" => Some(Granularity::Daily),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelScope {
    #[default]
    All,
    Voice,
    Text,
    Surface,
    Inbound,
    Outbound,
}

impl ChannelScope {
    pub const OPTIONS: [(&'static str, ChannelScope); 6] = [
        ("all", ChannelScope::All),
        ("voice", ChannelScope::Voice),
        ("text", ChannelScope::Text),
        ("surface", ChannelScope::Surface),
        ("inbound", ChannelScope::Inbound),
        ("outbound", ChannelScope::Outbound),
    ];

    /// The events kept: (column, value), `None` for all events. Channels
    /// are the `channel` column, directions the `direction` column.
    pub fn filter(self) -> Option<(&'static str, &'static str)> {
        match self {
            ChannelScope::All => None,
            ChannelScope::Voice => Some(("channel", "voice")),
            ChannelScope::Text => Some(("channel", "text")),
            ChannelScope::Surface => Some(("channel", "surface")),
            ChannelScope::Inbound => Some(("direction", "inbound")),
            ChannelScope::Outbound => Some(("direction", "outbound")),
        }
    }

    fn is_all(&self) -> bool {
        *self == ChannelScope::All
    }
}

/// The model tier an AI metric asks for; the server maps each tier to a
/// model name of the configured endpoint (`METRICSTORE_AI_MODELS`).
/// `standard` and `advanced`, the names of an earlier release, still read
/// as `balanced` and `max`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ModelTier {
    #[default]
    Free,
    Fast,
    #[serde(alias = "standard")]
    Balanced,
    #[serde(alias = "advanced")]
    Max,
}

impl ModelTier {
    pub const ALL: [ModelTier; 4] = [
        ModelTier::Free,
        ModelTier::Fast,
        ModelTier::Balanced,
        ModelTier::Max,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ModelTier::Free => "free",
            ModelTier::Fast => "fast",
            ModelTier::Balanced => "balanced",
            ModelTier::Max => "max",
        }
    }

    /// A tier name, or one of the earlier names (`standard`, `advanced`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "standard" => Some(ModelTier::Balanced),
            "advanced" => Some(ModelTier::Max),
            _ => Self::ALL.into_iter().find(|t| t.name() == s),
        }
    }
}

/// One metric definition, built-in or custom, as `GET settings` shows it
/// (and as the catalog stores it): fields that are absent, empty or at
/// their default (`description` "", `period_granularity` daily,
/// `channel_scope` all) are left out, so a definition reads back as it was
/// written. Built-ins leave `event_types` out: they read their source's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MetricDef {
    pub key: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub metric_type: MetricType,
    pub source: Source,
    /// The event types read; empty for "the source's event types".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_types: Vec<String>,
    pub extraction_mode: ExtractionMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract_path: Option<String>,
    /// A built-in's `sql_expr` as SQL text, shown by the API; the plan
    /// reads [`MetricDef::value`], never this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql_expr: Option<String>,
    /// A built-in's value in the shared model (`queries/metric_store.json`):
    /// a column, a column test or a JSON key test. Not shown.
    #[serde(default, skip_serializing)]
    pub value: Option<crate::definition::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ai_query_prompt: Option<String>,
    /// As given; AI metrics without one use `free`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_tier: Option<ModelTier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ai_labels: Option<Vec<String>>,
    /// Categorical metrics: the allowed values; others are dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<String>>,
    #[serde(default = "count")]
    pub aggregation: AggregationName,
    #[serde(default = "daily", skip_serializing_if = "is_daily")]
    pub period_granularity: Granularity,
    #[serde(default, skip_serializing_if = "ChannelScope::is_all")]
    pub channel_scope: ChannelScope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_range_min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_range_max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default = "yes")]
    pub active: bool,
    #[serde(default)]
    pub builtin: bool,
}

fn daily() -> Granularity {
    Granularity::Daily
}

fn is_daily(g: &Granularity) -> bool {
    *g == Granularity::Daily
}

fn count() -> AggregationName {
    AggregationName::Count
}

fn yes() -> bool {
    true
}

impl MetricDef {
    /// The event types the metric reads: its own, else its source's.
    pub fn event_types(&self) -> Vec<&str> {
        if self.event_types.is_empty() {
            self.source.event_types().to_vec()
        } else {
            self.event_types.iter().map(String::as_str).collect()
        }
    }

    /// The model tier asked of the AI endpoint (`free` unless given).
    pub fn tier(&self) -> ModelTier {
        self.model_tier.unwrap_or_default()
    }

    /// The labels a model may answer: `ai_labels` (ai_classify,
    /// ai_extract), else `categories`.
    pub fn labels(&self) -> &[String] {
        self.ai_labels
            .as_deref()
            .or(self.categories.as_deref())
            .unwrap_or(&[])
    }

    /// Whether a value lies in the metric's valid range (values outside
    /// are dropped, not clamped).
    pub fn in_range(&self, v: f64) -> bool {
        v.is_finite()
            && self.valid_range_min.is_none_or(|m| v >= m)
            && self.valid_range_max.is_none_or(|m| v <= m)
    }
}

/// What a workspace stores: its custom metrics and which built-ins it
/// switched off. Built-ins themselves are never stored, so a new release's
/// built-ins reach every workspace.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Settings {
    #[serde(default)]
    pub custom: Vec<MetricDef>,
    #[serde(default)]
    pub builtin_active: BTreeMap<String, bool>,
}

impl Settings {
    /// Every definition of the workspace: built-ins first (with the
    /// workspace's `active` flags), then custom ones.
    pub fn all(&self) -> Vec<MetricDef> {
        let mut out: Vec<MetricDef> = builtins()
            .iter()
            .map(|b| {
                let mut b = b.clone();
                if let Some(active) = self.builtin_active.get(&b.key) {
                    b.active = *active;
                }
                b
            })
            .collect();
        out.extend(self.custom.iter().cloned());
        out
    }

    pub fn get(&self, key: &str) -> Option<MetricDef> {
        self.all().into_iter().find(|m| m.key == key)
    }
}

static BUILTINS: LazyLock<Vec<MetricDef>> = LazyLock::new(|| {
    let mut defs: Vec<MetricDef> =
        serde_json::from_str(include_str!("../queries/metric_store.json"))
            .expect("queries/metric_store.json is valid (checked by tests)");
    for d in &mut defs {
        d.builtin = true;
        d.sql_expr = d.value.as_ref().map(lower::sql_text);
    }
    defs
});

/// The built-in definitions shipped with every workspace.
pub fn builtins() -> &'static [MetricDef] {
    &BUILTINS
}
