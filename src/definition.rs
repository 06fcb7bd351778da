//! Metric definitions: data, not code. One model that the three APIs map
//! onto; the compiler turns it into a DataFusion plan.
//!
//! A [`Measure`] says which events, which value and which aggregation (or
//! combines two measures into a ratio or difference); a [`Query`] adds the
//! tenant, the time range, the bucketing and the group-by dimensions.
//! Everything here is pure: serde types, newtypes and validation that
//! reports every problem with the path of the field at fault.

pub mod builtin;
pub mod path;
pub mod time;

pub use path::JsonPath;
pub use time::{Bucket, MAX_BUCKETS, TimeRange, TimeWindow, WEEK_ORIGIN_MS};

use std::fmt;

use serde::{Deserialize, Serialize};

/// A validation problem at a field path (`metricQueries[2].stat`,
/// `definitions[0].event_types`): the one problem type of every API's
/// checks. On the wire it is `{"field", "message"}`, as the Metric Store's
/// document shows its `errors[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    #[serde(rename = "field")]
    pub path: String,
    pub message: String,
    /// The error code an API documents for it (the skill Metrics API's
    /// `INVALID_METRIC`, ...), where the API has codes.
    #[serde(skip)]
    pub code: Option<&'static str>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in a definition, in field order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join("; "))
    }
}

/// Collects problems while walking a definition.
#[derive(Debug, Default)]
pub struct Validator {
    problems: Vec<Problem>,
}

impl Validator {
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
            code: None,
        });
    }

    /// A problem with the code its API documents for it.
    pub fn push_code(
        &mut self,
        code: &'static str,
        path: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
            code: Some(code),
        });
    }

    /// The problems found so far, in order.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    pub fn finish(self) -> Result<(), Problems> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(Problems(self.problems))
        }
    }

    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The columns of the event table that a definition may name.
pub const STRING_COLUMNS: [&str; 15] = [
    "workspace_id",
    "event_type",
    "user_id",
    "session_id",
    "stage",
    "locale",
    "channel",
    "direction",
    "intent",
    "outcome",
    "resource_type",
    "resource_id",
    "action",
    "origin",
    "attributes",
];
pub const NUMBER_COLUMNS: [&str; 1] = ["latency_ms"];

/// A field of an event: a column, a key inside the `attributes` JSON
/// object, or a JSON path into it. Keys are taken whole (`Alexa.SluConfidence`
/// is one key, as `METRICS.md` says). Written as `column`, `attributes.KEY`
/// or a path in brackets (`$["summary"]["scores"][0]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Field {
    Column(String),
    Attribute(String),
    /// Members and indexes into `attributes` (the Metric Store's
    /// `extract_path`).
    Path(JsonPath),
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Column(c) => f.write_str(c),
            Field::Attribute(k) => write!(f, "attributes.{k}"),
            Field::Path(p) => write!(f, "{p}"),
        }
    }
}

impl Serialize for Field {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Field {
    /// Parses `column`, `attributes.key`, `$.key` or `interaction.key` (a
    /// key taken whole), or a bracketed path `$["a"][0]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.starts_with("$[") {
            return JsonPath::parse(text).map(Field::Path);
        }
        for prefix in ["attributes.", "interaction.", "$."] {
            if let Some(key) = text.strip_prefix(prefix) {
                if key.is_empty() || key.len() > 256 {
                    return Err(format!("{text:?} is not a valid attribute path"));
                }
                return Ok(Field::Attribute(key.to_string()));
            }
        }
        if STRING_COLUMNS.contains(&text) || NUMBER_COLUMNS.contains(&text) || text == "time" {
            Ok(Field::Column(text.to_string()))
        } else {
            Err(format!(
                "unknown field {text:?}: use an event column ({}, latency_ms) or attributes.KEY",
                STRING_COLUMNS.join(", ")
            ))
        }
    }

    fn validate(&self, path: &str, v: &mut Validator) {
        match self {
            Field::Column(c) => {
                if !(STRING_COLUMNS.contains(&c.as_str())
                    || NUMBER_COLUMNS.contains(&c.as_str())
                    || c == "time")
                {
                    v.push(path, format!("unknown column {c:?}"));
                }
            }
            Field::Attribute(k) => {
                if k.is_empty() || k.len() > 256 {
                    v.push(path, "attribute key must be 1 to 256 characters");
                }
            }
            Field::Path(p) => {
                if p.0.is_empty() {
                    v.push(path, "a path names a member of attributes");
                }
            }
        }
    }
}

/// Comparison operators of filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    Contains,
    /// The field is one of a list of values.
    In,
}

impl Operator {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "eq" => Self::Eq,
            "neq" => Self::Neq,
            "gt" => Self::Gt,
            "gte" => Self::Gte,
            "lt" => Self::Lt,
            "lte" => Self::Lte,
            "contains" => Self::Contains,
            "in" => Self::In,
            _ => return None,
        })
    }
}

/// `field op value`. A JSON number compares as a number, a string as text,
/// a boolean as a boolean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    pub field: Field,
    pub op: Operator,
    pub value: serde_json::Value,
}

impl Filter {
    fn validate(&self, path: &str, v: &mut Validator) {
        self.field.validate(&format!("{path}.field"), v);
        let value_path = format!("{path}.value");
        match (&self.op, &self.value) {
            (Operator::In, serde_json::Value::Array(items)) => {
                if items.is_empty() {
                    v.push(value_path.clone(), "`in` needs at least one value");
                }
                if items.iter().any(|i| !(i.is_string() || i.is_number())) {
                    v.push(value_path, "`in` values must be strings or numbers");
                }
            }
            (Operator::In, _) => v.push(value_path, "`in` needs a list of values"),
            (Operator::Contains, serde_json::Value::String(_)) => {}
            (Operator::Contains, _) => v.push(value_path, "`contains` needs a string"),
            (
                Operator::Gt | Operator::Gte | Operator::Lt | Operator::Lte,
                serde_json::Value::Number(_) | serde_json::Value::String(_),
            ) => {}
            (Operator::Gt | Operator::Gte | Operator::Lt | Operator::Lte, _) => {
                v.push(value_path, "ordering comparisons need a number or a string")
            }
            (
                _,
                serde_json::Value::Null
                | serde_json::Value::Array(_)
                | serde_json::Value::Object(_),
            ) => v.push(value_path, "must be a string, number or boolean"),
            _ => {}
        }
        if let (Field::Column(c), serde_json::Value::Number(_)) = (&self.field, &self.value)
            && STRING_COLUMNS.contains(&c.as_str())
            && self.op != Operator::Eq
            && self.op != Operator::Neq
        {
            v.push(
                path,
                format!("column {c:?} is text; compare it with a string"),
            );
        }
    }
}

/// Which events a measure reads.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Events {
    /// Event types to read; empty means all.
    #[serde(default)]
    pub event_types: Vec<String>,
    #[serde(default)]
    pub filters: Vec<Filter>,
}

/// What is aggregated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    /// A constant 1 per event (counts).
    Count,
    Field(Field),
    /// A yes/no per event: the comparison, null where the field is absent
    /// (SQL's rule, so `<>` is null too there). Counts and rates count the
    /// events where it holds; a true-ratio is the share where it holds.
    Test(Filter),
}

/// How values are combined within a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Aggregation {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    DistinctCount,
    /// The exact continuous quantile `q` in `[0, 1]`.
    Quantile {
        q: f64,
    },
    /// Events per `per_ms` over the bucket (or window).
    Rate {
        per_ms: i64,
    },
    /// The share of events whose value is true (boolean metrics).
    TrueRatio,
}

impl Aggregation {
    /// Whether empty buckets read as 0 (and are gap-filled) rather than
    /// being left out (`METRICS.md`: counts, sums and distinct counts).
    pub fn is_additive(&self) -> bool {
        matches!(
            self,
            Self::Count | Self::Sum | Self::DistinctCount | Self::Rate { .. }
        )
    }

    /// Whether the value is ignored (a count of events).
    pub fn counts_rows(&self) -> bool {
        matches!(self, Self::Count | Self::Rate { .. })
    }
}

/// A metric's value: an aggregate over events, or a combination of two.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    Aggregate {
        #[serde(default)]
        events: Events,
        value: Value,
        aggregation: Aggregation,
    },
    /// `numerator / denominator`; buckets where the denominator is 0 are
    /// left out.
    Ratio {
        numerator: Box<Measure>,
        denominator: Box<Measure>,
    },
    /// `left - right`: for counts, an empty side reads 0; otherwise a
    /// bucket without both sides has no value.
    Difference {
        left: Box<Measure>,
        right: Box<Measure>,
    },
    /// `factor * measure`: percentages (`100 * ratio`), unit changes.
    Scaled { factor: f64, measure: Box<Measure> },
}

impl Measure {
    pub fn is_additive(&self) -> bool {
        match self {
            Measure::Aggregate { aggregation, .. } => aggregation.is_additive(),
            Measure::Ratio { .. } => false,
            Measure::Difference { left, right } => left.is_additive() && right.is_additive(),
            Measure::Scaled { measure, .. } => measure.is_additive(),
        }
    }

    pub fn validate(&self, path: &str, v: &mut Validator) {
        self.validate_depth(path, v, 0);
    }

    fn validate_depth(&self, path: &str, v: &mut Validator, depth: usize) {
        if depth > 8 {
            v.push(path, "measures nest at most 8 deep");
            return;
        }
        match self {
            Measure::Aggregate {
                events,
                value,
                aggregation,
            } => {
                for (i, t) in events.event_types.iter().enumerate() {
                    if t.is_empty() || t.len() > 128 {
                        v.push(
                            format!("{path}.events.event_types[{i}]"),
                            "must be 1 to 128 characters",
                        );
                    }
                }
                for (i, f) in events.filters.iter().enumerate() {
                    f.validate(&format!("{path}.events.filters[{i}]"), v);
                }
                match (value, aggregation) {
                    (Value::Count, a) if !a.counts_rows() => v.push(
                        format!("{path}.value"),
                        "this aggregation needs a field, not a count",
                    ),
                    (Value::Field(f), _) => f.validate(&format!("{path}.value"), v),
                    (
                        Value::Test(t),
                        Aggregation::Count | Aggregation::Rate { .. } | Aggregation::TrueRatio,
                    ) => t.validate(&format!("{path}.value.test"), v),
                    (Value::Test(_), _) => v.push(
                        format!("{path}.value"),
                        "a test is counted, taken as a rate or as a share of true",
                    ),
                    _ => {}
                }
                match aggregation {
                    Aggregation::Quantile { q } if !(0.0..=1.0).contains(q) => {
                        v.push(format!("{path}.aggregation.q"), "must be between 0 and 1")
                    }
                    Aggregation::Rate { per_ms } if *per_ms <= 0 => {
                        v.push(format!("{path}.aggregation.per_ms"), "must be positive")
                    }
                    _ => {}
                }
            }
            Measure::Ratio {
                numerator: a,
                denominator: b,
            } => {
                a.validate_depth(&format!("{path}.numerator"), v, depth + 1);
                b.validate_depth(&format!("{path}.denominator"), v, depth + 1);
            }
            Measure::Difference { left, right } => {
                left.validate_depth(&format!("{path}.left"), v, depth + 1);
                right.validate_depth(&format!("{path}.right"), v, depth + 1);
            }
            Measure::Scaled { factor, measure } => {
                if !factor.is_finite() || *factor == 0.0 {
                    v.push(
                        format!("{path}.factor"),
                        "must be a finite number other than 0",
                    );
                }
                measure.validate_depth(&format!("{path}.measure"), v, depth + 1);
            }
        }
    }
}

/// A group-by dimension.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Field(Field),
    /// The region part of `locale` (`en-US` -> `US`).
    Country,
    /// `simulation` for an event of a simulated conversation (its
    /// `attributes.simulation` is `true`), `production` for every other.
    DataSource,
}

/// A metric to compute: a measure over a tenant's events in a range.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub workspace_id: String,
    pub measure: Measure,
    /// Filters on every event read (API dimensions, Metric Store scopes).
    pub filters: Vec<Filter>,
    pub range: TimeRange,
    pub bucket: Bucket,
    pub group_by: Vec<Dimension>,
}

impl Query {
    pub fn validate(&self) -> Result<(), Problems> {
        let mut v = Validator::default();
        if self.workspace_id.is_empty() {
            v.push("workspace_id", "must not be empty");
        }
        self.measure.validate("measure", &mut v);
        for (i, f) in self.filters.iter().enumerate() {
            f.validate(&format!("filters[{i}]"), &mut v);
        }
        self.range.validate("range", self.bucket, &mut v);
        if self.group_by.len() > 5 {
            v.push("group_by", "at most 5 dimensions");
        }
        for (i, d) in self.group_by.iter().enumerate() {
            if let Dimension::Field(f) = d {
                f.validate(&format!("group_by[{i}]"), &mut v);
            }
        }
        v.finish()
    }
}

#[cfg(test)]
mod tests;
