//! The built-in Alexa-style metric catalog, loaded from `queries/` (the
//! files are embedded in the binary, so every workspace has them).
//!
//! A catalog metric is a [`Measure`] plus what the skill Metrics API lists
//! for it: `supportedStats`, `supportedDimensions` and
//! `supportedGroupByOptions`. A stat turns the measure into the aggregation
//! asked for ([`CatalogMetric::measure_for_stat`]).

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use super::{Aggregation, Dimension, Field, Filter, Measure, Operator};

/// The namespace files, in the order the catalog lists them.
const FILES: [(&str, &str); 9] = [
    (
        "Alexa.Custom",
        include_str!("../../queries/alexa.custom.json"),
    ),
    (
        "Alexa.SmartHome",
        include_str!("../../queries/alexa.smarthome.json"),
    ),
    (
        "Alexa.AccountActivationEvents",
        include_str!("../../queries/alexa.accountactivationevents.json"),
    ),
    (
        "Alexa.Music",
        include_str!("../../queries/alexa.music.json"),
    ),
    (
        "Alexa.SkillEnablementEvents",
        include_str!("../../queries/alexa.skillenablementevents.json"),
    ),
    (
        "Alexa.EstimatedTurnError",
        include_str!("../../queries/alexa.estimatedturnerror.json"),
    ),
    (
        "Alexa.SkillQuality",
        include_str!("../../queries/alexa.skillquality.json"),
    ),
    (
        "Alexa.SkillInvocations",
        include_str!("../../queries/alexa.skillinvocations.json"),
    ),
    (
        "Alexa.Automation",
        include_str!("../../queries/alexa.automation.json"),
    ),
];

/// One namespace file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Namespace {
    pub namespace: String,
    pub description: String,
    /// The event types the namespace reads (documentation; the measures
    /// say exactly which).
    pub event_types: Vec<String>,
    /// The `attributes` keys the namespace reads.
    #[serde(default)]
    pub attributes: Vec<String>,
    pub metrics: Vec<CatalogMetric>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogMetric {
    pub name: String,
    pub description: String,
    pub measure: Measure,
    #[serde(rename = "supportedStats")]
    pub supported_stats: Vec<String>,
    #[serde(rename = "supportedDimensions")]
    pub supported_dimensions: Vec<String>,
    #[serde(rename = "supportedGroupByOptions")]
    pub supported_group_by_options: Vec<String>,
}

/// Every built-in namespace.
pub fn namespaces() -> &'static [Namespace] {
    static ALL: LazyLock<Vec<Namespace>> = LazyLock::new(|| {
        FILES
            .iter()
            .map(|(name, text)| {
                let ns: Namespace = serde_json::from_str(text)
                    .unwrap_or_else(|e| panic!("built-in namespace {name} does not parse: {e}"));
                assert_eq!(
                    &ns.namespace, name,
                    "namespace file of {name} names another namespace"
                );
                ns
            })
            .collect()
    });
    &ALL
}

pub fn namespace(name: &str) -> Option<&'static Namespace> {
    namespaces().iter().find(|n| n.namespace == name)
}

impl Namespace {
    pub fn metric(&self, name: &str) -> Option<&CatalogMetric> {
        self.metrics.iter().find(|m| m.name == name)
    }
}

/// The aggregation a stat asks for, `None` for an unknown stat. `count`
/// keeps a counting measure as it is (a distinct count stays distinct).
pub fn stat_aggregation(stat: &str) -> Option<Option<Aggregation>> {
    let s = stat.to_ascii_lowercase();
    Some(match s.as_str() {
        "count" | "sum" => None,
        "avg" | "average" => Some(Aggregation::Avg),
        "min" | "minimum" => Some(Aggregation::Min),
        "max" | "maximum" => Some(Aggregation::Max),
        _ => {
            let p: f64 = s.strip_prefix('p')?.parse().ok()?;
            if !(0.0..=100.0).contains(&p) {
                return None;
            }
            Some(Aggregation::Quantile { q: p / 100.0 })
        }
    })
}

impl CatalogMetric {
    /// Stats match without regard to case; `SUM` is taken for `count` on
    /// counting metrics, as clients of the skill Metrics API send it.
    pub fn supports_stat(&self, stat: &str) -> bool {
        self.supported_stats
            .iter()
            .any(|s| s.eq_ignore_ascii_case(stat))
            || (stat.eq_ignore_ascii_case("sum")
                && self.measure.is_additive()
                && self.supported_stats.iter().any(|s| s == "count"))
    }

    /// The measure computing `stat` (which must be supported).
    pub fn measure_for_stat(&self, stat: &str) -> Measure {
        match (&self.measure, stat_aggregation(stat).flatten()) {
            (Measure::Aggregate { events, value, .. }, Some(aggregation)) => Measure::Aggregate {
                events: events.clone(),
                value: value.clone(),
                aggregation,
            },
            (
                Measure::Aggregate {
                    events,
                    value,
                    aggregation,
                },
                None,
            ) if !aggregation.is_additive() => {
                // `count` of a measured value: how many values there were.
                Measure::Aggregate {
                    events: events.clone(),
                    value: value.clone(),
                    aggregation: Aggregation::Count,
                }
            }
            (m, _) => m.clone(),
        }
    }
}

/// A dimension of the skill Metrics API (`queries/dimensions.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DimensionInfo {
    pub name: String,
    /// `country` (the region of `locale`), a column, or `attributes.KEY`.
    pub field: String,
    /// The values a query may ask for; absent: any value.
    #[serde(default)]
    pub values: Option<Vec<String>>,
    /// Applied when a metric lists the dimension and a query leaves it out.
    #[serde(default)]
    pub default: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DimensionsFile {
    #[allow(dead_code)]
    description: String,
    dimensions: Vec<DimensionInfo>,
}

/// Every documented dimension.
pub fn dimensions() -> &'static [DimensionInfo] {
    static ALL: LazyLock<Vec<DimensionInfo>> = LazyLock::new(|| {
        let file: DimensionsFile =
            serde_json::from_str(include_str!("../../queries/dimensions.json"))
                .unwrap_or_else(|e| panic!("queries/dimensions.json does not parse: {e}"));
        file.dimensions
    });
    &ALL
}

pub fn dimension_info(name: &str) -> Option<&'static DimensionInfo> {
    dimensions().iter().find(|d| d.name == name)
}

/// The column or attribute behind a dimension or groupBy name of the API:
/// a documented dimension as `queries/dimensions.json` says, `intent` as
/// the column, any other name as the same-named key inside `attributes`
/// (`METRICS.md`).
pub fn dimension(name: &str) -> Dimension {
    let field = dimension_info(name).map_or(name, |d| d.field.as_str());
    match field {
        "country" => Dimension::Country,
        "intent" => Dimension::Field(Field::Column("intent".into())),
        other => Dimension::Field(
            Field::parse(other).unwrap_or_else(|_| Field::Attribute(other.to_string())),
        ),
    }
}

/// A filter keeping events whose dimension `name` equals `value`. A
/// country keeps the events whose locale is a documented locale of that
/// region (`US`: `en-US`, `es-US`).
pub fn dimension_filter(name: &str, value: &str) -> Filter {
    match dimension(name) {
        Dimension::Field(field) => Filter {
            field,
            op: Operator::Eq,
            value: value.into(),
        },
        Dimension::Country => {
            let locales: Vec<serde_json::Value> = dimension_info("Alexa.Locale")
                .and_then(|d| d.values.as_ref())
                .map(|v| {
                    v.iter()
                        .filter(|l| l.rsplit('-').next() == Some(value))
                        .map(|l| serde_json::Value::from(l.as_str()))
                        .collect()
                })
                .unwrap_or_default();
            Filter {
                field: Field::Column("locale".into()),
                op: Operator::In,
                value: if locales.is_empty() {
                    vec![serde_json::Value::from(format!("-{value}"))].into()
                } else {
                    locales.into()
                },
            }
        }
        Dimension::DataSource => unreachable!("no skill metrics dimension is a data source"),
    }
}
