//! Metric Store definitions: the settings a workspace keeps (41 built-in
//! metrics shipped in `queries/metric_store.json`, up to 50 custom ones),
//! their validation, and the sources they read.
//!
//! A definition says which source and event types it reads, how a value is
//! extracted from each event (a JSON path into `attributes`, a SQL
//! expression for built-ins, or an AI model for the AI modes), how values
//! aggregate per period, and which values are kept (`valid_range_*`,
//! `categories`).

pub mod extract;
pub mod level;
pub mod lower;
pub mod values;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricType {
    Numerical,
    Categorical,
    Boolean,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
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

impl Aggregation {
    const CUSTOM: [(&'static str, Aggregation); 8] = [
        ("count", Aggregation::Count),
        ("sum", Aggregation::Sum),
        ("avg", Aggregation::Avg),
        ("min", Aggregation::Min),
        ("max", Aggregation::Max),
        ("count_distinct", Aggregation::CountDistinct),
        ("ratio", Aggregation::Ratio),
        ("rate", Aggregation::Rate),
    ];

    pub fn quantile(self) -> Option<f64> {
        match self {
            Aggregation::P50 => Some(0.5),
            Aggregation::P90 => Some(0.9),
            Aggregation::P95 => Some(0.95),
            Aggregation::P99 => Some(0.99),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    pub aggregation: Aggregation,
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

fn count() -> Aggregation {
    Aggregation::Count
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

/// One rule a settings document broke, naming the field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn bad(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            field: field.into(),
            message: message.into(),
        });
    }

    fn string(
        &mut self,
        obj: &Map<String, Value>,
        at: &str,
        key: &str,
        required: bool,
        max: usize,
    ) -> Option<String> {
        let field = format!("{at}.{key}");
        match obj.get(key) {
            None | Some(Value::Null) => {
                if required {
                    self.bad(field, "is required");
                }
                None
            }
            Some(Value::String(s)) => {
                let n = s.chars().count();
                if n > max {
                    self.bad(
                        field,
                        format!("is {n} characters; at most {max} are allowed"),
                    );
                    None
                } else if required && s.trim().is_empty() {
                    self.bad(field, "must not be empty");
                    None
                } else {
                    Some(s.clone())
                }
            }
            Some(other) => {
                self.bad(field, format!("must be a string, not {}", kind(other)));
                None
            }
        }
    }

    fn choice<T: Copy>(
        &mut self,
        obj: &Map<String, Value>,
        at: &str,
        key: &str,
        options: &[(&str, T)],
        default: Option<T>,
    ) -> Option<T> {
        let field = format!("{at}.{key}");
        let names = || {
            options
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match obj.get(key) {
            None | Some(Value::Null) => {
                if default.is_none() {
                    self.bad(field, format!("is required (one of {})", names()));
                }
                default
            }
            Some(Value::String(s)) => match options.iter().find(|(n, _)| n == s) {
                Some((_, v)) => Some(*v),
                None => {
                    self.bad(field, format!("{s:?} is not one of {}", names()));
                    None
                }
            },
            Some(other) => {
                self.bad(
                    field,
                    format!("must be a string (one of {}), not {}", names(), kind(other)),
                );
                None
            }
        }
    }

    fn number(&mut self, obj: &Map<String, Value>, at: &str, key: &str) -> Option<f64> {
        match obj.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_f64() {
                Some(v) if v.is_finite() => Some(v),
                _ => {
                    self.bad(format!("{at}.{key}"), "must be a finite number");
                    None
                }
            },
            Some(other) => {
                self.bad(
                    format!("{at}.{key}"),
                    format!("must be a number, not {}", kind(other)),
                );
                None
            }
        }
    }

    fn boolean(&mut self, obj: &Map<String, Value>, at: &str, key: &str) -> Option<bool> {
        match obj.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                self.bad(
                    format!("{at}.{key}"),
                    format!("must be true or false, not {}", kind(other)),
                );
                None
            }
        }
    }
}

/// The name a value has on the wire (its serde name).
pub fn wire<T: Serialize>(t: T) -> String {
    match serde_json::to_value(t) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

const FIELDS: [&str; 20] = [
    "key",
    "name",
    "description",
    "metric_type",
    "source",
    "event_types",
    "extraction_mode",
    "extract_path",
    "sql_expr",
    "ai_query_prompt",
    "model_tier",
    "ai_labels",
    "categories",
    "aggregation",
    "period_granularity",
    "channel_scope",
    "valid_range_min",
    "valid_range_max",
    "unit",
    "active",
];

/// The one place a `PUT settings` body (`{"definitions": [...]}`) becomes
/// the internal model: checks it and returns the new settings, or every
/// problem found (each naming its field). Entries with `"builtin": true`
/// may only switch a built-in on or off; all others are the workspace's
/// complete custom set.
pub fn check_settings(body: &Value) -> Result<Settings, Vec<Problem>> {
    let mut c = Checker {
        problems: Vec::new(),
    };
    let Some(obj) = body.as_object() else {
        c.bad("body", "must be a JSON object with a \"definitions\" array");
        return Err(c.problems);
    };
    for k in obj.keys() {
        if k != "definitions" {
            c.bad(
                k.clone(),
                "unknown field (the body holds only \"definitions\")",
            );
        }
    }
    let Some(items) = obj.get("definitions").and_then(Value::as_array) else {
        c.bad("definitions", "is required and must be an array");
        return Err(c.problems);
    };
    let builtin_keys: HashSet<&str> = builtins().iter().map(|b| b.key.as_str()).collect();
    let mut settings = Settings::default();
    let mut seen = HashSet::new();
    let mut custom_count = 0;
    for (i, item) in items.iter().enumerate() {
        let at = format!("definitions[{i}]");
        let Some(m) = item.as_object() else {
            c.bad(at, format!("must be an object, not {}", kind(item)));
            continue;
        };
        let is_builtin = c.boolean(m, &at, "builtin").unwrap_or(false);
        let key = c.string(m, &at, "key", true, usize::MAX);
        if let Some(k) = &key
            && !seen.insert(k.clone())
        {
            c.bad(format!("{at}.key"), format!("{k:?} appears more than once"));
        }
        if is_builtin {
            match key {
                Some(k) if builtin_keys.contains(k.as_str()) => {
                    if let Some(active) = c.boolean(m, &at, "active") {
                        settings.builtin_active.insert(k, active);
                    }
                }
                Some(k) => c.bad(
                    format!("{at}.key"),
                    format!("{k:?} is not a built-in metric"),
                ),
                None => {}
            }
            continue;
        }
        custom_count += 1;
        if let Some(k) = &key
            && builtin_keys.contains(k.as_str())
        {
            c.bad(
                format!("{at}.key"),
                format!(
                    "{k:?} is a built-in metric; pick another key or send it with \"builtin\": true"
                ),
            );
        }
        if let Some(def) = check_custom(&mut c, m, &at, key) {
            settings.custom.push(def);
        }
    }
    if custom_count > MAX_CUSTOM_METRICS {
        c.bad(
            "definitions",
            format!(
                "{custom_count} custom metrics; a workspace holds at most {MAX_CUSTOM_METRICS}"
            ),
        );
    }
    if c.problems.is_empty() {
        Ok(settings)
    } else {
        Err(c.problems)
    }
}

fn check_custom(
    c: &mut Checker,
    m: &Map<String, Value>,
    at: &str,
    key: Option<String>,
) -> Option<MetricDef> {
    let before = c.problems.len();
    for k in m.keys() {
        if !FIELDS.contains(&k.as_str()) && k != "builtin" {
            c.bad(format!("{at}.{k}"), "unknown field");
        }
    }
    if let Some(k) = &key {
        let n = k.chars().count();
        if n > MAX_KEY_CHARS {
            c.bad(
                format!("{at}.key"),
                format!("is {n} characters; at most {MAX_KEY_CHARS} are allowed"),
            );
        } else if k == "catalog" {
            c.bad(
                format!("{at}.key"),
                "\"catalog\" is reserved (GET /v1/{ws}/metrics/catalog is the catalog)",
            );
        } else if !valid_key(k) {
            c.bad(
                format!("{at}.key"),
                format!("{k:?} must match ^[a-z][a-z0-9_]*$ (lower-case letter, then lower-case letters, digits or _)"),
            );
        }
    }
    let name = c.string(m, at, "name", true, MAX_NAME_CHARS);
    let description = c
        .string(m, at, "description", false, MAX_DESCRIPTION_CHARS)
        .unwrap_or_default();
    let unit = c.string(m, at, "unit", false, MAX_UNIT_CHARS);
    let metric_type = c.choice(
        m,
        at,
        "metric_type",
        &[
            ("numerical", MetricType::Numerical),
            ("categorical", MetricType::Categorical),
            ("boolean", MetricType::Boolean),
        ],
        None,
    );
    let sources: Vec<(&str, Source)> = Source::ALL.iter().map(|s| (s.name(), *s)).collect();
    let source = c.choice(m, at, "source", &sources, None);
    let event_types = check_event_types(c, m, at, source);
    let mode = c.choice(
        m,
        at,
        "extraction_mode",
        &[
            ("static", ExtractionMode::Static),
            ("ai_classify", ExtractionMode::AiClassify),
            ("ai_extract", ExtractionMode::AiExtract),
            ("ai_query", ExtractionMode::AiQuery),
            ("sql_expr", ExtractionMode::SqlExpr),
        ],
        None,
    );
    let aggregation = c.choice(
        m,
        at,
        "aggregation",
        &Aggregation::CUSTOM,
        Some(Aggregation::Count),
    );
    let granularity = c.choice(
        m,
        at,
        "period_granularity",
        &[
            ("hourly", Granularity::Hourly),
            ("daily", Granularity::Daily),
        ],
        Some(Granularity::Daily),
    );
    let channel_scope = c.choice(
        m,
        at,
        "channel_scope",
        &ChannelScope::OPTIONS,
        Some(ChannelScope::All),
    );
    let tiers: Vec<(&str, ModelTier)> = ModelTier::ALL.iter().map(|t| (t.name(), *t)).collect();
    let model_tier_given = !matches!(m.get("model_tier"), None | Some(Value::Null));
    let model_tier = c.choice(m, at, "model_tier", &tiers, Some(ModelTier::Free));
    let extract_path = c.string(m, at, "extract_path", false, MAX_PATH_CHARS);
    let prompt = c.string(m, at, "ai_query_prompt", false, MAX_PROMPT_CHARS);
    let labels = check_labels(c, m, at, "ai_labels");
    let categories = check_labels(c, m, at, "categories");
    let vmin = c.number(m, at, "valid_range_min");
    let vmax = c.number(m, at, "valid_range_max");
    let active = c.boolean(m, at, "active").unwrap_or(true);
    if !matches!(m.get("sql_expr"), None | Some(Value::Null)) {
        c.bad(
            format!("{at}.sql_expr"),
            "SQL expressions are reserved for built-in metrics (SQL injection risk); use extraction_mode \"static\" with extract_path, or \"ai_query\"",
        );
    }
    if let (Some(lo), Some(hi)) = (vmin, vmax)
        && lo > hi
    {
        c.bad(
            format!("{at}.valid_range_min"),
            format!("{lo} is greater than valid_range_max {hi}"),
        );
    }
    if (vmin.is_some() || vmax.is_some()) && metric_type.is_some_and(|t| t != MetricType::Numerical)
    {
        c.bad(
            format!("{at}.valid_range_min"),
            "a valid range applies to numerical metrics only",
        );
    }
    if categories.is_some() && metric_type.is_some_and(|t| t != MetricType::Categorical) {
        c.bad(
            format!("{at}.categories"),
            "applies to categorical metrics only",
        );
    }
    if let (Some(labels), Some(cats)) = (&labels, &categories) {
        for (i, l) in labels.iter().enumerate() {
            if !cats.contains(l) {
                c.bad(
                    format!("{at}.ai_labels[{i}]"),
                    format!("{l:?} is not one of the categories"),
                );
            }
        }
    }
    if let (Some(t), Some(a)) = (metric_type, aggregation) {
        let ok = match t {
            MetricType::Numerical => true,
            MetricType::Categorical => {
                matches!(a, Aggregation::Count | Aggregation::CountDistinct)
            }
            MetricType::Boolean => {
                matches!(
                    a,
                    Aggregation::Ratio | Aggregation::Count | Aggregation::Rate
                )
            }
        };
        if !ok {
            let allowed = match t {
                MetricType::Categorical => "count or count_distinct",
                _ => "ratio, count or rate",
            };
            c.bad(
                format!("{at}.aggregation"),
                format!(
                    "{} does not apply to a {} metric (use {allowed})",
                    wire(a),
                    wire(t)
                ),
            );
        }
    }
    match mode {
        Some(ExtractionMode::Static) => {
            match &extract_path {
                None => c.bad(
                    format!("{at}.extract_path"),
                    "is required when extraction_mode is \"static\" (a JSON path into attributes, e.g. \"$.quality_score\")",
                ),
                Some(p) => {
                    if let Err(e) = crate::definition::JsonPath::parse(p) {
                        c.bad(format!("{at}.extract_path"), e);
                    }
                }
            }
            for (field, present) in [
                ("ai_query_prompt", prompt.is_some()),
                ("ai_labels", labels.is_some()),
            ] {
                if present {
                    c.bad(
                        format!("{at}.{field}"),
                        "applies to AI extraction modes only, not \"static\"",
                    );
                }
            }
        }
        Some(ExtractionMode::SqlExpr) => c.bad(
            format!("{at}.extraction_mode"),
            "\"sql_expr\" is not available for custom metrics (SQL injection risk); use \"static\" or \"ai_query\"",
        ),
        Some(ExtractionMode::AiQuery) => {
            if prompt.is_none() {
                c.bad(
                    format!("{at}.ai_query_prompt"),
                    "is required when extraction_mode is \"ai_query\"",
                );
            }
            if !model_tier_given {
                c.bad(
                    format!("{at}.model_tier"),
                    "is required when extraction_mode is \"ai_query\" (free, fast, balanced or max)",
                );
            }
        }
        Some(ExtractionMode::AiClassify | ExtractionMode::AiExtract) => {
            if labels.is_none() {
                c.bad(
                    format!("{at}.ai_labels"),
                    "is required when extraction_mode is \"ai_classify\" or \"ai_extract\" (a non-empty list of labels)",
                );
            }
            if metric_type.is_some_and(|t| t != MetricType::Categorical) {
                c.bad(
                    format!("{at}.metric_type"),
                    "ai_classify and ai_extract give labels: the metric must be categorical",
                );
            }
        }
        None => {}
    }
    if mode.is_some_and(ExtractionMode::is_ai) && extract_path.is_some() {
        c.bad(
            format!("{at}.extract_path"),
            "applies to extraction_mode \"static\" only",
        );
    }
    if c.problems.len() > before {
        return None;
    }
    Some(MetricDef {
        key: key?,
        name: name?,
        description,
        metric_type: metric_type?,
        source: source?,
        event_types: event_types?,
        extraction_mode: mode?,
        extract_path,
        sql_expr: None,
        value: None,
        ai_query_prompt: prompt,
        model_tier: if model_tier_given { model_tier } else { None },
        ai_labels: labels,
        categories,
        aggregation: aggregation?,
        period_granularity: granularity?,
        channel_scope: channel_scope?,
        valid_range_min: vmin,
        valid_range_max: vmax,
        unit,
        active,
        builtin: false,
    })
}

/// `event_types`: required, one to [`MAX_EVENT_TYPES`] event types the
/// source reads (`world_events` reads any).
fn check_event_types(
    c: &mut Checker,
    m: &Map<String, Value>,
    at: &str,
    source: Option<Source>,
) -> Option<Vec<String>> {
    let field = format!("{at}.event_types");
    let example = source
        .unwrap_or(Source::CallIntelligence)
        .event_types()
        .iter()
        .map(|t| format!("{t:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let items = match m.get("event_types") {
        None | Some(Value::Null) => {
            c.bad(
                field,
                format!("is required: the event types to scan (e.g. [{example}])"),
            );
            return None;
        }
        Some(Value::Array(items)) => items,
        Some(other) => {
            c.bad(
                field,
                format!("must be an array of event types, not {}", kind(other)),
            );
            return None;
        }
    };
    if items.is_empty() || items.len() > MAX_EVENT_TYPES {
        c.bad(
            field,
            format!(
                "holds {} event types; give 1 to {MAX_EVENT_TYPES} (e.g. [{example}])",
                items.len()
            ),
        );
        return None;
    }
    let before = c.problems.len();
    let mut out: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item.as_str() {
            Some(t) if !t.trim().is_empty() && t.chars().count() <= MAX_EVENT_TYPE_CHARS => {
                if out.iter().any(|o| o == t) {
                    c.bad(format!("{field}[{i}]"), format!("{t:?} appears twice"));
                } else if let Some(s) = source
                    && !s.accepts(t)
                {
                    c.bad(
                        format!("{field}[{i}]"),
                        format!(
                            "source {} does not read {t:?} (it reads {example})",
                            s.name()
                        ),
                    );
                }
                out.push(t.to_string());
            }
            _ => c.bad(
                format!("{field}[{i}]"),
                format!("must be a non-empty string of at most {MAX_EVENT_TYPE_CHARS} characters"),
            ),
        }
    }
    (c.problems.len() == before).then_some(out)
}

/// A list of labels (`ai_labels`, `categories`): 1 to [`MAX_LABELS`]
/// distinct non-empty strings.
fn check_labels(
    c: &mut Checker,
    m: &Map<String, Value>,
    at: &str,
    name: &str,
) -> Option<Vec<String>> {
    let field = format!("{at}.{name}");
    match m.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            if items.is_empty() {
                c.bad(field, "must hold at least one label");
                return None;
            }
            if items.len() > MAX_LABELS {
                c.bad(
                    field,
                    format!("{} labels; at most {MAX_LABELS} are allowed", items.len()),
                );
                return None;
            }
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(s) if !s.trim().is_empty() && s.chars().count() <= MAX_LABEL_CHARS => {
                        if out.iter().any(|o: &String| o == s) {
                            c.bad(format!("{field}[{i}]"), format!("{s:?} appears twice"));
                        }
                        out.push(s.to_string());
                    }
                    _ => c.bad(
                        format!("{field}[{i}]"),
                        format!(
                            "must be a non-empty string of at most {MAX_LABEL_CHARS} characters"
                        ),
                    ),
                }
            }
            Some(out)
        }
        Some(other) => {
            c.bad(
                field,
                format!("must be an array of strings, not {}", kind(other)),
            );
            None
        }
    }
}

/// `^[a-z][a-z0-9_]*$`, written out: one character class check does not
/// need a regex engine.
pub fn valid_key(k: &str) -> bool {
    let mut chars = k.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}
