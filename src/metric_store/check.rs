//! Checking a `PUT settings` document: every rule of the document's
//! definition fields, each violation named by its field path, the whole
//! document refused on any.
//!
//! Longer than most files on purpose: one rule per documented field, in
//! the document's order, so the file reads as the document's field table.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::*;

pub use crate::definition::Problem;

struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn bad(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: field.into(),
            message: message.into(),
            code: None,
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
        &AggregationName::CUSTOM,
        Some(AggregationName::Count),
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
                matches!(a, AggregationName::Count | AggregationName::CountDistinct)
            }
            MetricType::Boolean => {
                matches!(
                    a,
                    AggregationName::Ratio | AggregationName::Count | AggregationName::Rate
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
