//! An alert rule: what it watches (a source), when it acts (a condition
//! held for a while), and whom it tells (channels). [`check_rule`] reads a
//! request body loosely and reports every problem with its field path, in
//! the manner of the Interaction Metrics API.
//!
//! Longer than most files on purpose: every field of a rule (its three
//! kinds of source, three kinds of condition, durations, states and
//! channels) with its limits and error message, checked in one place.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::allow::AllowList;

pub const MAX_RULES_PER_WORKSPACE: usize = 500;
pub const MAX_CHANNELS: usize = 5;
pub const MAX_DIMENSIONS: usize = 16;
/// The shortest and longest evaluation intervals.
pub const MIN_INTERVAL_MS: i64 = 1_000;
pub const MAX_INTERVAL_MS: i64 = 86_400_000;
/// The longest `for`, `keepFiringFor` and look-back.
pub const MAX_HOLD_MS: i64 = 7 * 86_400_000;
pub const MAX_LOOK_BACK_MS: i64 = 31 * 86_400_000;

/// A duration as the API writes it: `{n}s`, `{n}m`, `{n}h` or `{n}d`.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let bad = || {
        format!(
            "{text:?} is not a duration: use {{n}}s, {{n}}m, {{n}}h or {{n}}d, e.g. 30s, 5m, 1h"
        )
    };
    let unit = text.chars().last().ok_or_else(bad)?;
    let digits = &text[..text.len() - unit.len_utf8()];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 7 {
        return Err(bad());
    }
    let n: i64 = digits.parse().map_err(|_| bad())?;
    let unit_ms = match unit {
        's' => 1_000,
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        _ => return Err(bad()),
    };
    Ok(n * unit_ms)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Operator {
    Gt,
    Gte,
    Lt,
    Lte,
    Eq,
    Neq,
}

impl Operator {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "gt" => Self::Gt,
            "gte" => Self::Gte,
            "lt" => Self::Lt,
            "lte" => Self::Lte,
            "eq" => Self::Eq,
            "neq" => Self::Neq,
            _ => return None,
        })
    }

    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Self::Gt => value > threshold,
            Self::Gte => value >= threshold,
            Self::Lt => value < threshold,
            Self::Lte => value <= threshold,
            Self::Eq => value == threshold,
            Self::Neq => value != threshold,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Both,
    Above,
    Below,
}

/// When a rule's value is alarming.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Condition {
    /// The value compared with a threshold.
    Threshold { operator: Operator, threshold: f64 },
    /// The percent change against the previous window of the same length,
    /// compared with a threshold (in percent).
    Change { operator: Operator, threshold: f64 },
    /// The value outside `mean ± k·stddev` of the same window (same hour of
    /// the week) over the last `weeks` weeks.
    Anomaly {
        k: f64,
        weeks: u32,
        direction: Direction,
    },
}

/// A Skill Metrics query (`POST /v2/skills/{skillId}/metrics`) over the
/// rule's workspace as the skill, one value per look-back window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkillMetric {
    pub metric_namespace: String,
    pub name: String,
    pub stat: Option<String>,
    pub dimensions: Vec<NameValue>,
    pub group_by: Option<String>,
    pub look_back: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NameValue {
    pub name: String,
    pub value: String,
}

/// A Metric Store metric of the workspace, computed over the look-back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricStoreMetric {
    pub metric_key: String,
    pub look_back: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NoDataState {
    Ok,
    Alerting,
    Nodata,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ErrorState {
    Error,
    Alerting,
    Ok,
    Keep,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Channel {
    #[serde(rename = "type")]
    pub kind: String,
    pub url: String,
    pub secret: String,
}

/// A stored rule (channel secrets included; [`RuleView`] hides them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertRule {
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
    pub channels: Vec<Channel>,
    pub silenced_until: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// Every rule of a workspace.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WorkspaceRules {
    pub rules: Vec<AlertRule>,
}

/// What a rule watches.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    Interaction(uuid::Uuid),
    Skill(&'a SkillMetric),
    Store(&'a MetricStoreMetric),
}

impl AlertRule {
    pub fn source(&self) -> Source<'_> {
        match (&self.metric_id, &self.skill_metric, &self.metric_store) {
            (Some(id), _, _) => Source::Interaction(*id),
            (None, Some(s), _) => Source::Skill(s),
            (None, None, Some(m)) => Source::Store(m),
            (None, None, None) => unreachable!("checked rules have a source"),
        }
    }

    pub fn interval_ms(&self) -> i64 {
        parse_duration(&self.evaluation_interval).unwrap_or(60_000)
    }

    pub fn for_ms(&self) -> i64 {
        parse_duration(&self.for_).unwrap_or(0)
    }

    pub fn keep_firing_ms(&self) -> i64 {
        parse_duration(&self.keep_firing_for).unwrap_or(0)
    }

    pub fn silenced_until_ms(&self) -> Option<i64> {
        self.silenced_until
            .as_deref()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.timestamp_millis())
    }

    /// The threshold a notification reports (`null` for anomalies, whose
    /// bounds move).
    pub fn threshold(&self) -> Option<f64> {
        match self.condition {
            Condition::Threshold { threshold, .. } | Condition::Change { threshold, .. } => {
                Some(threshold)
            }
            Condition::Anomaly { .. } => None,
        }
    }
}

/// The problems of a body, each `path: message`.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<(String, String)>);

impl Problems {
    pub fn push(&mut self, path: impl Into<String>, message: impl std::fmt::Display) {
        self.0.push((path.into(), message.to_string()));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

type Obj = serde_json::Map<String, Json>;

fn text(
    obj: &Obj,
    key: &str,
    path: &str,
    max: usize,
    required: bool,
    p: &mut Problems,
) -> Option<String> {
    match obj.get(key) {
        None | Some(Json::Null) => {
            if required {
                p.push(path, "is required");
            }
            None
        }
        Some(Json::String(s)) if !s.trim().is_empty() && s.chars().count() <= max => {
            Some(s.clone())
        }
        Some(Json::String(_)) => {
            p.push(path, format!("must be 1 to {max} characters"));
            None
        }
        Some(_) => {
            p.push(path, "must be a string");
            None
        }
    }
}

fn unknown_fields(obj: &Obj, known: &[&str], prefix: &str, p: &mut Problems) {
    for key in obj.keys() {
        if !known.contains(&key.as_str()) {
            p.push(format!("{prefix}{key}"), "unknown field");
        }
    }
}

fn duration(
    obj: &Obj,
    key: &str,
    path: &str,
    default: Option<&str>,
    (min, max): (i64, i64),
    p: &mut Problems,
) -> String {
    let Some(s) = text(obj, key, path, 16, default.is_none(), p).or(default.map(String::from))
    else {
        return String::new();
    };
    match parse_duration(&s) {
        Ok(ms) if ms < min || ms > max => p.push(
            path,
            format!("must be from {} to {}", describe_ms(min), describe_ms(max)),
        ),
        Ok(_) => {}
        Err(e) => p.push(path, e),
    }
    s
}

fn describe_ms(ms: i64) -> String {
    match ms {
        0 => "0s".into(),
        ms if ms % 86_400_000 == 0 => format!("{}d", ms / 86_400_000),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms => format!("{}s", ms / 1_000),
    }
}

fn number(v: Option<&Json>, path: &str, p: &mut Problems) -> Option<f64> {
    match v {
        Some(Json::Number(n)) => match n.as_f64() {
            Some(x) if x.is_finite() => Some(x),
            _ => {
                p.push(path, "must be a finite number");
                None
            }
        },
        None | Some(Json::Null) => {
            p.push(path, "is required (a number)");
            None
        }
        Some(_) => {
            p.push(path, "must be a number");
            None
        }
    }
}

fn operator(v: Option<&Json>, path: &str, p: &mut Problems) -> Option<Operator> {
    match v.and_then(Json::as_str) {
        Some(s) => Operator::parse(s).or_else(|| {
            p.push(
                path,
                format!("{s:?} is not one of gt, gte, lt, lte, eq, neq"),
            );
            None
        }),
        None => {
            p.push(path, "is required (gt, gte, lt, lte, eq or neq)");
            None
        }
    }
}

fn condition(v: Option<&Json>, p: &mut Problems) -> Option<Condition> {
    let obj = match v {
        Some(Json::Object(o)) => o,
        None | Some(Json::Null) => {
            p.push("condition", "is required");
            return None;
        }
        Some(_) => {
            p.push("condition", "must be an object");
            return None;
        }
    };
    let kind = match obj.get("type") {
        None | Some(Json::Null) => "threshold",
        Some(Json::String(s)) => s.as_str(),
        Some(_) => {
            p.push("condition.type", "must be threshold, change or anomaly");
            return None;
        }
    };
    match kind {
        "threshold" | "change" => {
            unknown_fields(obj, &["type", "operator", "threshold"], "condition.", p);
            let op = operator(obj.get("operator"), "condition.operator", p);
            let threshold = number(obj.get("threshold"), "condition.threshold", p);
            let (operator, threshold) = (op?, threshold?);
            Some(if kind == "threshold" {
                Condition::Threshold {
                    operator,
                    threshold,
                }
            } else {
                Condition::Change {
                    operator,
                    threshold,
                }
            })
        }
        "anomaly" => {
            unknown_fields(obj, &["type", "k", "weeks", "direction"], "condition.", p);
            let k = match obj.get("k") {
                None | Some(Json::Null) => Some(3.0),
                v => number(v, "condition.k", p).and_then(|k| {
                    if k > 0.0 && k <= 10.0 {
                        Some(k)
                    } else {
                        p.push("condition.k", "must be more than 0 and at most 10");
                        None
                    }
                }),
            };
            let weeks = match obj.get("weeks") {
                None | Some(Json::Null) => Some(4),
                Some(v) => match v.as_u64() {
                    Some(w) if (2..=12).contains(&w) => Some(w as u32),
                    _ => {
                        p.push("condition.weeks", "must be a whole number from 2 to 12");
                        None
                    }
                },
            };
            let direction = match obj.get("direction") {
                None | Some(Json::Null) => Some(Direction::Both),
                Some(Json::String(s)) => match s.as_str() {
                    "both" => Some(Direction::Both),
                    "above" => Some(Direction::Above),
                    "below" => Some(Direction::Below),
                    _ => {
                        p.push(
                            "condition.direction",
                            format!("{s:?} is not one of both, above, below"),
                        );
                        None
                    }
                },
                Some(_) => {
                    p.push("condition.direction", "must be both, above or below");
                    None
                }
            };
            Some(Condition::Anomaly {
                k: k?,
                weeks: weeks?,
                direction: direction?,
            })
        }
        other => {
            p.push(
                "condition.type",
                format!("{other:?} is not one of threshold, change, anomaly"),
            );
            None
        }
    }
}

fn skill_metric(v: &Json, p: &mut Problems) -> Option<SkillMetric> {
    let Some(obj) = v.as_object() else {
        p.push("skillMetric", "must be an object");
        return None;
    };
    unknown_fields(
        obj,
        &[
            "metricNamespace",
            "name",
            "stat",
            "dimensions",
            "groupBy",
            "lookBack",
        ],
        "skillMetric.",
        p,
    );
    let ns = text(
        obj,
        "metricNamespace",
        "skillMetric.metricNamespace",
        128,
        true,
        p,
    );
    let name = text(obj, "name", "skillMetric.name", 128, true, p);
    let stat = text(obj, "stat", "skillMetric.stat", 64, false, p);
    let group_by = text(obj, "groupBy", "skillMetric.groupBy", 128, false, p);
    let mut dimensions = Vec::new();
    match obj.get("dimensions") {
        None | Some(Json::Null) => {}
        Some(Json::Array(items)) if items.len() > MAX_DIMENSIONS => p.push(
            "skillMetric.dimensions",
            format!("at most {MAX_DIMENSIONS} dimensions"),
        ),
        Some(Json::Array(items)) => {
            for (i, d) in items.iter().enumerate() {
                let path = format!("skillMetric.dimensions[{i}]");
                let n = d.get("name").and_then(Json::as_str);
                let v = d.get("value").and_then(Json::as_str);
                match (n, v) {
                    (Some(n), Some(v)) if n.len() <= 128 && v.len() <= 256 => {
                        dimensions.push(NameValue {
                            name: n.into(),
                            value: v.into(),
                        })
                    }
                    _ => p.push(path, "must be {\"name\": text, \"value\": text}"),
                }
            }
        }
        Some(_) => p.push("skillMetric.dimensions", "must be a list of {name, value}"),
    }
    let look_back = duration(
        obj,
        "lookBack",
        "skillMetric.lookBack",
        None,
        (60_000, MAX_LOOK_BACK_MS),
        p,
    );
    Some(SkillMetric {
        metric_namespace: ns?,
        name: name?,
        stat,
        dimensions,
        group_by,
        look_back,
    })
}

fn metric_store(v: &Json, p: &mut Problems) -> Option<MetricStoreMetric> {
    let Some(obj) = v.as_object() else {
        p.push("metricStore", "must be an object");
        return None;
    };
    unknown_fields(obj, &["metricKey", "lookBack"], "metricStore.", p);
    let key = text(obj, "metricKey", "metricStore.metricKey", 64, true, p);
    let look_back = duration(
        obj,
        "lookBack",
        "metricStore.lookBack",
        Some("24h"),
        (60_000, MAX_LOOK_BACK_MS),
        p,
    );
    Some(MetricStoreMetric {
        metric_key: key?,
        look_back,
    })
}

fn channels(v: Option<&Json>, allow: &AllowList, p: &mut Problems) -> Vec<Channel> {
    let items = match v {
        None | Some(Json::Null) => return Vec::new(),
        Some(Json::Array(items)) if items.len() > MAX_CHANNELS => {
            p.push("channels", format!("at most {MAX_CHANNELS} channels"));
            return Vec::new();
        }
        Some(Json::Array(items)) => items,
        Some(_) => {
            p.push("channels", "must be a list of {type, url, secret}");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, c) in items.iter().enumerate() {
        let path = format!("channels[{i}]");
        let Some(obj) = c.as_object() else {
            p.push(path, "must be an object {type, url, secret}");
            continue;
        };
        unknown_fields(
            obj,
            &["type", "url", "secret", "secretSet"],
            &format!("{path}."),
            p,
        );
        match obj.get("type").and_then(Json::as_str) {
            Some("webhook") => {}
            Some(other) => p.push(
                format!("{path}.type"),
                format!("{other:?} is not a channel type; use webhook"),
            ),
            None => p.push(format!("{path}.type"), "is required (webhook)"),
        }
        let url = text(obj, "url", &format!("{path}.url"), 2048, true, p);
        if let Some(u) = &url
            && let Err(e) = allow.check_url(u)
        {
            p.push(format!("{path}.url"), e);
        }
        let secret = match obj.get("secret") {
            Some(Json::String(s)) if (16..=256).contains(&s.chars().count()) => Some(s.clone()),
            Some(Json::String(_)) => {
                p.push(format!("{path}.secret"), "must be 16 to 256 characters");
                None
            }
            None | Some(Json::Null) => {
                p.push(
                    format!("{path}.secret"),
                    "is required (16 to 256 characters)",
                );
                None
            }
            Some(_) => {
                p.push(format!("{path}.secret"), "must be a string");
                None
            }
        };
        if let (Some(url), Some(secret)) = (url, secret) {
            out.push(Channel {
                kind: "webhook".into(),
                url,
                secret,
            });
        }
    }
    out
}

/// Checks a create (or merged update) body. Returns the rule or every
/// problem found. Host names of webhook URLs are checked by name here;
/// [`AllowList::check_resolved`] checks their addresses.
pub fn check_rule(
    body: &Json,
    id: uuid::Uuid,
    created_at: &str,
    updated_at: &str,
    allow: &AllowList,
) -> Result<AlertRule, Problems> {
    let mut p = Problems::default();
    let Some(obj) = body.as_object() else {
        p.push("", "the request body must be a JSON object");
        return Err(p);
    };
    unknown_fields(
        obj,
        &[
            "id",
            "name",
            "description",
            "enabled",
            "metricId",
            "skillMetric",
            "metricStore",
            "condition",
            "evaluationInterval",
            "for",
            "keepFiringFor",
            "noDataState",
            "errorState",
            "channels",
            "silencedUntil",
            "createdAt",
            "updatedAt",
            "status",
        ],
        "",
        &mut p,
    );
    let name = text(obj, "name", "name", 256, true, &mut p);
    let description = match obj.get("description") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) if s.chars().count() <= 2000 => Some(s.clone()),
        Some(Json::String(_)) => {
            p.push("description", "must be at most 2000 characters");
            None
        }
        Some(_) => {
            p.push("description", "must be a string");
            None
        }
    };
    let enabled = match obj.get("enabled") {
        None | Some(Json::Null) => true,
        Some(Json::Bool(b)) => *b,
        Some(_) => {
            p.push("enabled", "must be true or false");
            true
        }
    };
    let present = |k: &str| obj.get(k).is_some_and(|v| !v.is_null());
    let sources = ["metricId", "skillMetric", "metricStore"]
        .into_iter()
        .filter(|k| present(k))
        .count();
    if sources != 1 {
        p.push(
            "metricId",
            "give exactly one source: metricId (an interaction metric), skillMetric or metricStore",
        );
    }
    let metric_id = match obj.get("metricId") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => uuid::Uuid::parse_str(s).ok().or_else(|| {
            p.push(
                "metricId",
                format!("{s:?} is not an interaction metric id (a UUID)"),
            );
            None
        }),
        Some(_) => {
            p.push("metricId", "must be a string (an interaction metric id)");
            None
        }
    };
    let skill = obj
        .get("skillMetric")
        .filter(|v| !v.is_null())
        .and_then(|v| skill_metric(v, &mut p));
    let store = obj
        .get("metricStore")
        .filter(|v| !v.is_null())
        .and_then(|v| metric_store(v, &mut p));
    let condition = condition(obj.get("condition"), &mut p);
    let evaluation_interval = duration(
        obj,
        "evaluationInterval",
        "evaluationInterval",
        Some("1m"),
        (MIN_INTERVAL_MS, MAX_INTERVAL_MS),
        &mut p,
    );
    let for_ = duration(obj, "for", "for", Some("0s"), (0, MAX_HOLD_MS), &mut p);
    let keep_firing_for = duration(
        obj,
        "keepFiringFor",
        "keepFiringFor",
        Some("0s"),
        (0, MAX_HOLD_MS),
        &mut p,
    );
    let no_data_state = match obj.get("noDataState") {
        None | Some(Json::Null) => NoDataState::Nodata,
        Some(v) => serde_json::from_value(v.clone()).unwrap_or_else(|_| {
            p.push("noDataState", "must be ok, alerting or nodata");
            NoDataState::Nodata
        }),
    };
    let error_state = match obj.get("errorState") {
        None | Some(Json::Null) => ErrorState::Error,
        Some(v) => serde_json::from_value(v.clone()).unwrap_or_else(|_| {
            p.push("errorState", "must be error, alerting, ok or keep");
            ErrorState::Error
        }),
    };
    let channels = channels(obj.get("channels"), allow, &mut p);
    let silenced_until = match obj.get("silencedUntil") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => match chrono::DateTime::parse_from_rfc3339(s) {
            Ok(t) => Some(super::timestamp(t.timestamp_millis())),
            Err(_) => {
                p.push("silencedUntil", format!("{s:?} is not an RFC 3339 time"));
                None
            }
        },
        Some(_) => {
            p.push("silencedUntil", "must be an RFC 3339 time or null");
            None
        }
    };
    if !p.is_empty() {
        return Err(p);
    }
    Ok(AlertRule {
        id,
        name: name.expect("checked"),
        description,
        enabled,
        metric_id,
        skill_metric: skill,
        metric_store: store,
        condition: condition.expect("checked"),
        evaluation_interval,
        for_,
        keep_firing_for,
        no_data_state,
        error_state,
        channels,
        silenced_until,
        created_at: created_at.into(),
        updated_at: updated_at.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0s"), Ok(0));
        assert_eq!(parse_duration("1s"), Ok(1_000));
        assert_eq!(parse_duration("5m"), Ok(300_000));
        assert_eq!(parse_duration("2h"), Ok(7_200_000));
        assert_eq!(parse_duration("1d"), Ok(86_400_000));
        for bad in ["", "5", "m", "-1m", "+1m", "1.5m", "1w", "99999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn checks_every_field() {
        let allow = AllowList::loopback();
        let body = serde_json::json!({
            "name": "",
            "metricId": "nope",
            "skillMetric": {"metricNamespace": "x"},
            "condition": {"operator": "gtx", "threshold": "1"},
            "evaluationInterval": "0s",
            "for": "8d",
            "noDataState": "maybe",
            "channels": [{"type": "email", "url": "http://10.0.0.1/x", "secret": "short"}],
            "silencedUntil": "tomorrow",
            "extra": 1
        });
        let p = check_rule(&body, uuid::Uuid::nil(), "", "", &allow).unwrap_err();
        let paths: Vec<&str> = p.0.iter().map(|(p, _)| p.as_str()).collect();
        for want in [
            "extra",
            "name",
            "metricId",
            "skillMetric.name",
            "skillMetric.lookBack",
            "condition.operator",
            "condition.threshold",
            "evaluationInterval",
            "for",
            "noDataState",
            "channels[0].type",
            "channels[0].url",
            "channels[0].secret",
            "silencedUntil",
        ] {
            assert!(paths.contains(&want), "{want} missing from {paths:?}");
        }
    }

    #[test]
    fn defaults() {
        let allow = AllowList::loopback();
        let body = serde_json::json!({
            "name": "n",
            "metricId": uuid::Uuid::nil().to_string(),
            "condition": {"operator": "gt", "threshold": 3}
        });
        let r = check_rule(&body, uuid::Uuid::nil(), "", "", &allow).unwrap();
        assert_eq!(r.evaluation_interval, "1m");
        assert_eq!(r.for_, "0s");
        assert_eq!(r.no_data_state, NoDataState::Nodata);
        assert_eq!(r.error_state, ErrorState::Error);
        assert!(r.enabled && r.channels.is_empty());
    }
}
