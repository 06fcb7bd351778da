//! The values the pipeline stored, as users ask for them: the newest value
//! of every active metric per subject, one metric's values over a range, a
//! daily trend, and each metric's newest period. The API parses and shapes;
//! what is selected and how stored rows become values is decided here.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::extract::Ai;
use super::level::Level;
use super::read::{Lookup, lookup, newest};
use super::{AggregationName, DataSource, Granularity, MetricDef, MetricType};
use crate::engine::{Engine, Result};
use crate::format::instant as timestamp;
use crate::storage::events::DAY_MS;
use crate::storage::values::ValueRow;

/// Whom values describe: the workspace, one service, or one call.
#[derive(Debug, Clone, PartialEq)]
pub struct Subject {
    pub level: Level,
    pub entity_id: Option<String>,
    pub service_id: Option<String>,
    pub session_id: Option<String>,
}

/// One value of one metric for one period and subject.
#[derive(Debug, Serialize, Clone, PartialEq, utoipa::ToSchema)]
pub struct MetricValue {
    pub metric_key: String,
    pub name: String,
    /// `production` or `simulation`.
    pub source: String,
    pub metric_type: MetricType,
    pub aggregation: AggregationName,
    pub unit: Option<String>,
    pub granularity: String,
    pub period_start: String,
    pub period_end: String,
    pub scope: String,
    pub entity_type: String,
    pub entity_id: String,
    pub service_id: Option<String>,
    pub session_id: Option<String>,
    pub value: Option<f64>,
    /// Categorical metrics: events per category.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub categories: Option<BTreeMap<String, f64>>,
    pub sample_size: i64,
    pub computed_at: String,
    /// Whether the period had ended when the value was computed.
    pub complete: bool,
    #[serde(skip)]
    pub period_start_ms: i64,
}

/// Why a metric has no value.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NotComputed {
    pub metric_key: String,
    pub reason: String,
}

/// The newest values of a workspace's active metrics.
#[derive(Debug)]
pub struct Latest {
    pub metrics: Vec<MetricValue>,
    pub not_computed: Vec<NotComputed>,
}

/// One day of a trend.
#[derive(Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct TrendPoint {
    pub date: String,
    pub value: Option<f64>,
    pub sample_size: i64,
}

/// Daily values of a window, and how they moved.
#[derive(Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Trend {
    /// One point per day of the window, oldest first; `value` is null for
    /// a day without a stored value.
    pub points: Vec<TrendPoint>,
    pub first: Option<f64>,
    pub last: Option<f64>,
    pub change: Option<f64>,
    pub change_pct: Option<f64>,
    /// `up`, `down` or `flat` (first to last point with a value).
    pub direction: Option<String>,
    pub average: Option<f64>,
}

impl Trend {
    fn of(points: Vec<TrendPoint>) -> Self {
        let vals: Vec<f64> = points.iter().filter_map(|p| p.value).collect();
        let first = vals.first().copied();
        let last = vals.last().copied();
        let (mut change, mut change_pct, mut direction) = (None, None, None);
        if let (Some(a), Some(b)) = (first, last) {
            change = Some(b - a);
            change_pct = (a != 0.0).then(|| (b - a) / a.abs() * 100.0);
            direction = Some(
                if (b - a).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0) {
                    "flat"
                } else if b > a {
                    "up"
                } else {
                    "down"
                }
                .to_string(),
            );
        }
        Self {
            points,
            first,
            last,
            change,
            change_pct,
            direction,
            average: (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64),
        }
    }
}

/// Groups stored rows (one metric) into values: one per period, subject
/// and source, categories folded in. Sorted by period.
pub fn assemble(def: &MetricDef, rows: &[ValueRow]) -> Vec<MetricValue> {
    type Key = (i64, String, String, String, DataSource);
    let mut groups: BTreeMap<Key, (Option<&ValueRow>, BTreeMap<String, f64>)> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.metric_key == def.key) {
        let g = groups
            .entry((
                r.period_start,
                r.granularity.clone(),
                r.entity_type.clone(),
                r.entity_id.clone(),
                DataSource::of_stored(&r.source),
            ))
            .or_default();
        match &r.category {
            Some(c) => {
                g.1.insert(c.clone(), r.value.unwrap_or(0.0));
            }
            None => g.0 = Some(r),
        }
    }
    groups
        .into_values()
        .filter_map(|(head, cats)| {
            let h = head?;
            Some(MetricValue {
                metric_key: def.key.clone(),
                name: def.name.clone(),
                source: DataSource::of_stored(&h.source).name().to_string(),
                metric_type: def.metric_type,
                aggregation: def.aggregation,
                unit: def.unit.clone(),
                granularity: h.granularity.clone(),
                period_start: timestamp(h.period_start),
                period_end: timestamp(h.period_end),
                scope: h.scope.clone(),
                entity_type: h.entity_type.clone(),
                entity_id: h.entity_id.clone(),
                service_id: h.service_id.clone(),
                session_id: h.session_id.clone(),
                value: h.value,
                categories: (def.metric_type == MetricType::Categorical).then_some(cats),
                sample_size: h.sample_size,
                computed_at: timestamp(h.computed_at),
                complete: h.period_end <= h.computed_at,
                period_start_ms: h.period_start,
            })
        })
        .collect()
}

/// The values of the metric's own granularity, else (entity and service
/// values are daily only) daily ones.
fn own_granularity(def: &MetricDef, values: Vec<MetricValue>) -> Vec<MetricValue> {
    let own = def.period_granularity.name();
    let wanted = if values.iter().any(|v| v.granularity == own) {
        own
    } else {
        "daily"
    };
    values
        .into_iter()
        .filter(|v| v.granularity == wanted)
        .collect()
}

fn lookup_for(ws: &str, subject: &Subject, source: Option<DataSource>) -> Lookup {
    Lookup {
        workspace: ws.to_string(),
        entity_type: Some(subject.level.entity_type().to_string()),
        entity_id: match subject.level {
            Level::Workspace => Some(ws.to_string()),
            _ => subject.entity_id.clone(),
        },
        source,
        ..Default::default()
    }
}

/// Why an AI metric cannot be computed by this server, if so.
pub fn ai_unavailable(ai: &Ai, def: &MetricDef) -> Option<String> {
    if !def.extraction_mode.is_ai() {
        return None;
    }
    let e = ai.unavailable(def)?;
    Some(format!("AI metric: {e}"))
}

/// The newest value of each of `defs` (the active metrics) per subject and
/// source, for each lookup (one per level asked for); a metric without any
/// is listed with the reason.
pub async fn latest(
    engine: &Engine,
    ai: &Ai,
    defs: &[MetricDef],
    lookups: Vec<Lookup>,
    source: Option<DataSource>,
) -> Result<Latest> {
    let keys: Vec<String> = defs.iter().map(|d| d.key.clone()).collect();
    let mut found: HashMap<&str, Vec<MetricValue>> = HashMap::new();
    for mut q in lookups {
        q.keys = Some(keys.clone());
        q.source = source;
        let mut by_key: HashMap<String, Vec<ValueRow>> = HashMap::new();
        for r in newest(engine, &q).await? {
            by_key.entry(r.metric_key.clone()).or_default().push(r);
        }
        for def in defs {
            let rows = by_key.remove(&def.key).unwrap_or_default();
            let mut per_subject: BTreeMap<(String, String), MetricValue> = BTreeMap::new();
            for v in own_granularity(def, assemble(def, &rows)) {
                let k = (v.entity_id.clone(), v.source.clone());
                if per_subject
                    .get(&k)
                    .is_none_or(|old| old.period_start_ms < v.period_start_ms)
                {
                    per_subject.insert(k, v);
                }
            }
            found
                .entry(def.key.as_str())
                .or_default()
                .extend(per_subject.into_values());
        }
    }
    let mut metrics = Vec::new();
    let mut not_computed = Vec::new();
    for def in defs {
        let values = found.remove(def.key.as_str()).unwrap_or_default();
        if values.is_empty() {
            not_computed.push(NotComputed {
                metric_key: def.key.clone(),
                reason: ai_unavailable(ai, def).unwrap_or_else(|| {
                    "no stored value for this subject yet (the pipeline has not run over its events)"
                        .into()
                }),
            });
        }
        metrics.extend(values);
    }
    Ok(Latest {
        metrics,
        not_computed,
    })
}

/// What [`values`] reads: one metric, one subject, periods starting in
/// `[from_ms, to_ms)`, at most `limit` (the newest), of `granularity`
/// (default: the metric's own, else daily).
#[derive(Debug)]
pub struct ValuesQuery<'a> {
    pub workspace: &'a str,
    pub def: &'a MetricDef,
    pub subject: &'a Subject,
    pub source: Option<DataSource>,
    pub from_ms: i64,
    pub to_ms: i64,
    pub granularity: Option<Granularity>,
    pub limit: usize,
}

/// A metric's values over a range, oldest first, and the granularity they
/// have.
pub async fn values(
    engine: &Engine,
    q: ValuesQuery<'_>,
) -> Result<(Vec<MetricValue>, Granularity)> {
    let mut l = lookup_for(q.workspace, q.subject, q.source);
    l.keys = Some(vec![q.def.key.clone()]);
    l.from_ms = Some(q.from_ms);
    l.to_ms = Some(q.to_ms);
    let all = assemble(q.def, &lookup(engine, &l).await?);
    let mut values = match q.granularity {
        Some(g) => all
            .into_iter()
            .filter(|v| v.granularity == g.name())
            .collect(),
        None => own_granularity(q.def, all),
    };
    values.sort_by_key(|v| v.period_start_ms);
    let skip = values.len().saturating_sub(q.limit);
    let values: Vec<MetricValue> = values.into_iter().skip(skip).collect();
    let granularity = q.granularity.unwrap_or_else(|| {
        values
            .first()
            .and_then(|v| Granularity::parse(&v.granularity))
            .unwrap_or(q.def.period_granularity)
    });
    Ok((values, granularity))
}

/// The daily values of the `days` days up to and including `last_day_ms`'s
/// day.
pub async fn trend(
    engine: &Engine,
    workspace: &str,
    def: &MetricDef,
    subject: &Subject,
    source: Option<DataSource>,
    days: i64,
    last_day_ms: i64,
) -> Result<Trend> {
    let today = last_day_ms.div_euclid(DAY_MS) * DAY_MS;
    let from_ms = today - (days - 1) * DAY_MS;
    let mut q = lookup_for(workspace, subject, source);
    q.keys = Some(vec![def.key.clone()]);
    q.granularity = Some(Granularity::Daily);
    q.from_ms = Some(from_ms);
    q.to_ms = Some(today + DAY_MS);
    let by_day: BTreeMap<i64, MetricValue> = assemble(def, &lookup(engine, &q).await?)
        .into_iter()
        .map(|v| (v.period_start_ms, v))
        .collect();
    let points = (0..days)
        .map(|i| {
            let day = from_ms + i * DAY_MS;
            let v = by_day.get(&day);
            TrendPoint {
                date: crate::storage::events::date_of_millis(day),
                value: v.and_then(|v| v.value),
                sample_size: v.map(|v| v.sample_size).unwrap_or(0),
            }
        })
        .collect();
    Ok(Trend::of(points))
}

/// The start of the newest stored workspace period of each of `defs`.
pub async fn newest_periods(
    engine: &Engine,
    workspace: &str,
    defs: &[MetricDef],
) -> Result<HashMap<String, i64>> {
    let rows = newest(
        engine,
        &Lookup {
            workspace: workspace.to_string(),
            keys: Some(defs.iter().map(|d| d.key.clone()).collect()),
            entity_type: Some("workspace".into()),
            ..Default::default()
        },
    )
    .await?;
    let mut out: HashMap<String, i64> = HashMap::new();
    for r in rows {
        let e = out.entry(r.metric_key).or_insert(r.period_start);
        *e = (*e).max(r.period_start);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(value: Option<f64>) -> TrendPoint {
        TrendPoint {
            date: String::new(),
            value,
            sample_size: 0,
        }
    }

    #[test]
    fn a_trend_moves_from_its_first_to_its_last_value() {
        let t = Trend::of(vec![
            point(None),
            point(Some(4.0)),
            point(None),
            point(Some(5.0)),
        ]);
        assert_eq!(
            (t.first, t.last, t.change),
            (Some(4.0), Some(5.0), Some(1.0))
        );
        assert_eq!(t.change_pct, Some(25.0));
        assert_eq!(t.direction.as_deref(), Some("up"));
        assert_eq!(t.average, Some(4.5));
        let flat = Trend::of(vec![point(Some(0.0)), point(Some(0.0))]);
        assert_eq!(
            (flat.direction.as_deref(), flat.change_pct),
            (Some("flat"), None)
        );
        let empty = Trend::of(vec![point(None)]);
        assert_eq!(
            (empty.first, empty.direction, empty.average),
            (None, None, None)
        );
    }
}
