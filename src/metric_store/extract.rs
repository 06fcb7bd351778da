//! AI extraction: a metric value read from a conversation by a language
//! model. The pipeline and `evaluate` talk to an [`Extractor`]; the shipped
//! one, [`ChatClient`], speaks the OpenAI-compatible chat-completions
//! protocol to an endpoint from the environment. Without one, AI metrics
//! are not computable, and say so; nothing is made up.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use super::{ExtractionMode, MetricDef, MetricType, ModelTier};

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("no AI endpoint is configured (set METRICSTORE_AI_URL)")]
    NotConfigured,
    #[error("no model is configured for tier {0:?} (set METRICSTORE_AI_MODELS, e.g. free=name)")]
    NoModel(String),
    #[error("the AI request budget of this workspace and run ({0} requests) is spent")]
    Budget(usize),
    #[error("AI endpoint: {0}")]
    Endpoint(String),
}

/// What a model said, read as the metric's type. `Dropped` answers (not a
/// number, not a label, out of the valid range) are not values.
#[derive(Debug, Clone, PartialEq)]
pub enum Extracted {
    Number(f64),
    Bool(bool),
    Labels(Vec<String>),
    Dropped(String),
}

/// Something that answers a prompt with a model of a tier.
#[async_trait]
pub trait Extractor: Send + Sync {
    async fn complete(&self, tier: ModelTier, system: &str, user: &str) -> Result<String, Error>;

    /// Whether a model serves `tier` (checked before a run asks hundreds
    /// of questions that would all fail).
    fn has_model(&self, _tier: ModelTier) -> bool {
        true
    }
}

/// Settings of the chat-completions client, from the environment:
/// `METRICSTORE_AI_URL` (base URL; `/chat/completions` is appended),
/// `METRICSTORE_AI_API_KEY` (optional bearer key), `METRICSTORE_AI_MODELS`
/// (`free=model,fast=model,balanced=model,max=model`; `standard` and
/// `advanced` are read as `balanced` and `max`), `METRICSTORE_AI_TIMEOUT_MS`
/// (default 30000), `METRICSTORE_AI_RETRIES` (default 3),
/// `METRICSTORE_AI_BUDGET` (requests per pipeline run, default 2000).
/// `Debug` by hand: the API key must never reach a log.
#[derive(Clone)]
pub struct AiConfig {
    pub url: String,
    pub api_key: Option<String>,
    pub models: HashMap<String, String>,
    pub timeout: Duration,
    pub retries: u32,
    pub budget: usize,
}

impl std::fmt::Debug for AiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AiConfig")
            .field("url", &self.url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("models", &self.models)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("budget", &self.budget)
            .finish()
    }
}

impl AiConfig {
    pub fn from_env() -> Result<Option<Self>, String> {
        let Some(url) = std::env::var("METRICSTORE_AI_URL")
            .ok()
            .filter(|s| !s.is_empty())
        else {
            return Ok(None);
        };
        url::Url::parse(&url).map_err(|e| format!("METRICSTORE_AI_URL {url:?}: {e}"))?;
        let num = |name: &str, default: u64| -> Result<u64, String> {
            match std::env::var(name) {
                Ok(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| format!("{name} must be a whole number, not {v:?}")),
                Err(_) => Ok(default),
            }
        };
        let mut models = HashMap::new();
        if let Ok(spec) = std::env::var("METRICSTORE_AI_MODELS") {
            for part in spec.split(',').filter(|p| !p.trim().is_empty()) {
                let (tier, model) = part
                    .split_once('=')
                    .ok_or_else(|| format!("METRICSTORE_AI_MODELS: {part:?} is not tier=model"))?;
                let tier = tier.trim();
                let Some(tier) = ModelTier::parse(tier) else {
                    return Err(format!(
                        "METRICSTORE_AI_MODELS: unknown tier {tier:?} (free, fast, balanced, max)"
                    ));
                };
                models.insert(tier.name().to_string(), model.trim().to_string());
            }
        }
        Ok(Some(Self {
            url: url.trim_end_matches('/').to_string(),
            api_key: std::env::var("METRICSTORE_AI_API_KEY")
                .ok()
                .filter(|s| !s.is_empty()),
            models,
            timeout: Duration::from_millis(num("METRICSTORE_AI_TIMEOUT_MS", 30_000)?),
            retries: num("METRICSTORE_AI_RETRIES", 3)? as u32,
            budget: num("METRICSTORE_AI_BUDGET", 2000)? as usize,
        }))
    }
}

/// An OpenAI-compatible chat-completions client with a timeout per
/// request and retries with exponential back-off on timeouts, connection
/// failures, 429 and 5xx answers.
pub struct ChatClient {
    config: AiConfig,
    http: reqwest::Client,
}

impl std::fmt::Debug for ChatClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The configuration holds the API key: not shown.
        f.debug_struct("ChatClient").finish_non_exhaustive()
    }
}

impl ChatClient {
    pub fn new(config: AiConfig) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| format!("building the AI client: {e}"))?;
        Ok(Self { config, http })
    }

    async fn once(&self, model: &str, system: &str, user: &str) -> Result<String, Attempt> {
        let mut req = self
            .http
            .post(format!("{}/chat/completions", self.config.url))
            .json(&json!({
                "model": model,
                "temperature": 0,
                "messages": [
                    {"role": "system", "content": system},
                    {"role": "user", "content": user},
                ],
            }));
        if let Some(key) = &self.config.api_key {
            req = req.bearer_auth(key);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Attempt::Retry(format!("request failed: {e}"), None))?;
        let status = resp.status();
        if status.as_u16() == 429 || status.is_server_error() {
            let after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| Duration::from_secs(s.min(30)));
            return Err(Attempt::Retry(format!("answered {status}"), after));
        }
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            return Err(Attempt::Fail(format!(
                "answered {status}: {}",
                text.chars().take(300).collect::<String>()
            )));
        }
        let body: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| Attempt::Retry(format!("unreadable answer: {e}"), None))?;
        body.pointer("/choices/0/message/content")
            .and_then(|c| c.as_str())
            .map(str::to_string)
            .ok_or_else(|| Attempt::Fail("answer has no choices[0].message.content".into()))
    }
}

enum Attempt {
    Retry(String, Option<Duration>),
    Fail(String),
}

#[async_trait]
impl Extractor for ChatClient {
    fn has_model(&self, tier: ModelTier) -> bool {
        self.config.models.contains_key(tier.name())
    }

    async fn complete(&self, tier: ModelTier, system: &str, user: &str) -> Result<String, Error> {
        let model = self
            .config
            .models
            .get(tier.name())
            .ok_or_else(|| Error::NoModel(tier.name().to_string()))?;
        let mut delay = Duration::from_millis(200);
        let mut attempt = 0;
        loop {
            match self.once(model, system, user).await {
                Ok(text) => return Ok(text),
                Err(Attempt::Fail(m)) => return Err(Error::Endpoint(m)),
                Err(Attempt::Retry(m, after)) => {
                    attempt += 1;
                    if attempt > self.config.retries {
                        return Err(Error::Endpoint(format!("{m} (after {attempt} attempts)")));
                    }
                    tracing::warn!(attempt, reason = %m, "AI request failed; retrying");
                    tokio::time::sleep(after.unwrap_or(delay)).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// Requests allowed in one pipeline run (or one evaluate call).
#[derive(Debug)]
pub struct Budget {
    left: AtomicUsize,
    total: usize,
}

impl Budget {
    pub fn new(total: usize) -> Self {
        Self {
            left: AtomicUsize::new(total),
            total,
        }
    }

    pub fn take(&self) -> Result<(), Error> {
        self.left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .map(|_| ())
            .map_err(|_| Error::Budget(self.total))
    }

    pub fn used(&self) -> usize {
        self.total - self.left.load(Ordering::SeqCst)
    }
}

/// The configured extractor, if any, and its per-run budget.
#[derive(Clone)]
pub struct Ai {
    pub extractor: Option<Arc<dyn Extractor>>,
    pub budget: usize,
}

impl std::fmt::Debug for Ai {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ai")
            .field("configured", &self.extractor.is_some())
            .field("budget", &self.budget)
            .finish()
    }
}

impl Ai {
    pub fn none() -> Self {
        Self {
            extractor: None,
            budget: 0,
        }
    }

    /// Why the AI metric `def` cannot be computed by this server (no
    /// endpoint, or no model for its tier), if it cannot.
    pub fn unavailable(&self, def: &MetricDef) -> Option<Error> {
        let tier = def.tier();
        match &self.extractor {
            None => Some(Error::NotConfigured),
            Some(x) if !x.has_model(tier) => Some(Error::NoModel(tier.name().to_string())),
            Some(_) => None,
        }
    }

    pub fn from_env() -> Result<Self, String> {
        match AiConfig::from_env()? {
            None => Ok(Self::none()),
            Some(config) => {
                let budget = config.budget;
                Ok(Self {
                    extractor: Some(Arc::new(ChatClient::new(config)?)),
                    budget,
                })
            }
        }
    }
}

/// The system and user messages for one metric and conversation.
pub fn prompt(def: &MetricDef, conversation: &str) -> (String, String) {
    let labels = def.labels().join(", ");
    let task = def.ai_query_prompt.clone().unwrap_or_default();
    let system = match def.extraction_mode {
        ExtractionMode::AiClassify => format!(
            "You classify customer conversations. Extracted with exactly one of these labels and nothing else: {labels}."
        ),
        ExtractionMode::AiExtract => format!(
            "You read customer conversations. Extracted with every label that applies, separated by commas, from: {labels}. Extracted none if none applies."
        ),
        _ => match def.metric_type {
            MetricType::Numerical => {
                "You measure customer conversations. Extracted with a single number and nothing else.".to_string()
            }
            MetricType::Boolean => {
                "You judge customer conversations. Extracted yes or no and nothing else.".to_string()
            }
            MetricType::Categorical if !labels.is_empty() => format!(
                "You classify customer conversations. Extracted with exactly one of: {labels}."
            ),
            MetricType::Categorical => {
                "You classify customer conversations. Extracted with a short label of one to three words.".to_string()
            }
        },
    };
    let user = if task.is_empty() {
        format!("Conversation:\n{conversation}")
    } else {
        format!("{task}\n\nConversation:\n{conversation}")
    };
    (system, user)
}

/// Reads a model's answer as the metric's value.
pub fn interpret(def: &MetricDef, text: &str) -> Extracted {
    let clean = text
        .trim()
        .trim_matches(|c: char| c == '"' || c == '\'' || c == '`' || c == '.' || c.is_whitespace());
    let labels = def.labels();
    let find_label = |s: &str| {
        let s = s
            .trim()
            .trim_matches(|c: char| c == '"' || c == '\'' || c == '.' || c.is_whitespace());
        labels.iter().find(|l| l.eq_ignore_ascii_case(s)).cloned()
    };
    match (def.extraction_mode, def.metric_type) {
        (ExtractionMode::AiExtract, _) => {
            if clean.eq_ignore_ascii_case("none") {
                return Extracted::Labels(Vec::new());
            }
            let mut found: Vec<String> = Vec::new();
            for part in clean.split([',', '\n', ';']) {
                if let Some(l) = find_label(part)
                    && !found.contains(&l)
                {
                    found.push(l);
                }
            }
            if found.is_empty() {
                Extracted::Dropped(format!("no known label in {clean:?}"))
            } else {
                Extracted::Labels(found)
            }
        }
        (_, MetricType::Categorical) => {
            if labels.is_empty() {
                if clean.is_empty() || clean.chars().count() > 100 {
                    Extracted::Dropped(format!("not a short label: {clean:?}"))
                } else {
                    Extracted::Labels(vec![clean.to_lowercase()])
                }
            } else {
                match find_label(clean) {
                    Some(l) => Extracted::Labels(vec![l]),
                    None => Extracted::Dropped(format!("{clean:?} is not one of the labels")),
                }
            }
        }
        (_, MetricType::Boolean) => match clean.to_ascii_lowercase().as_str() {
            "yes" | "true" | "1" | "y" => Extracted::Bool(true),
            "no" | "false" | "0" | "n" => Extracted::Bool(false),
            other => Extracted::Dropped(format!("{other:?} is not yes or no")),
        },
        (_, MetricType::Numerical) => {
            let number = clean
                .split(|c: char| c.is_whitespace() || c == ',')
                .map(|w| w.trim_matches(|c: char| !(c.is_ascii_digit() || c == '-' || c == '.')))
                .find_map(|w| w.parse::<f64>().ok().filter(|v| v.is_finite()));
            match number {
                None => Extracted::Dropped(format!("no number in {clean:?}")),
                Some(v) if !def.in_range(v) => {
                    Extracted::Dropped(format!("{v} is outside the valid range"))
                }
                Some(v) => Extracted::Number(v),
            }
        }
    }
}

/// Asks the model about one conversation, within the budget.
pub async fn extract(
    ai: &Ai,
    budget: &Budget,
    def: &MetricDef,
    conversation: &str,
) -> Result<Extracted, Error> {
    let extractor = ai.extractor.as_ref().ok_or(Error::NotConfigured)?;
    budget.take()?;
    let (system, user) = prompt(def, conversation);
    let text = extractor.complete(def.tier(), &system, &user).await?;
    Ok(interpret(def, &text))
}
