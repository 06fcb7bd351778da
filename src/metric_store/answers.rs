//! AI values: the rows of one model answer per conversation, and their
//! aggregation per period and level, with the same aggregation semantics
//! as the plans of static metrics (a count, a sum, a share of true, a rate
//! per hour of the period).

use std::collections::{BTreeMap, BTreeSet};

use super::compute::{category_rows, value_row};
use super::conversations::Conversation;
use crate::metric_store::extract::Extracted;
use crate::metric_store::level::Level;
use crate::metric_store::{DataSource, Granularity, MetricDef, MetricType};
use crate::storage::values::ValueRow;

fn period_of(ms: i64, g: Granularity) -> i64 {
    ms.div_euclid(g.ms()) * g.ms()
}

/// The entity rows of one AI answer.
pub fn answer_rows(
    ws: &str,
    def: &MetricDef,
    conv: &Conversation,
    answer: &Extracted,
    now_ms: i64,
) -> Vec<ValueRow> {
    let g = def.period_granularity;
    let period = period_of(conv.last_ms, g);
    let mut base = value_row(
        ws,
        def,
        (g.name(), period, period + g.ms()),
        Level::Call,
        Some(conv.session_id.clone()),
        conv.service_id.clone(),
        now_ms,
    );
    base.source = conv.source.name().to_string();
    match answer {
        Extracted::Number(v) => vec![ValueRow {
            value: Some(*v),
            sample_size: 1,
            ..base
        }],
        Extracted::Bool(b) => vec![ValueRow {
            value: Some(if *b { 1.0 } else { 0.0 }),
            sample_size: 1,
            ..base
        }],
        Extracted::Labels(labels) => {
            let cats: Vec<(String, i64)> = labels.iter().map(|l| (l.clone(), 1)).collect();
            category_rows(base, def, &cats)
        }
        // A dropped answer is kept as a valueless row, so the
        // conversation is not asked again next run.
        Extracted::Dropped(_) => vec![base],
    }
}

/// Aggregates per-conversation AI values (entity rows) into workspace and
/// service values per period, the same way plans aggregate static ones.
pub fn aggregate_ai(ws: &str, def: &MetricDef, entity: &[ValueRow], now_ms: i64) -> Vec<ValueRow> {
    // Hourly metrics get daily aggregates too (trends are daily).
    let mut grans = vec![def.period_granularity];
    if def.period_granularity == Granularity::Hourly {
        grans.push(Granularity::Daily);
    }
    type Key = (Granularity, i64, DataSource, Level, Option<String>);
    let mut groups: BTreeMap<Key, Vec<&ValueRow>> = BTreeMap::new();
    for r in entity.iter().filter(|r| r.entity_type == "call") {
        let source = DataSource::of_stored(&r.source);
        for g in &grans {
            let period = period_of(r.period_start, *g);
            groups
                .entry((*g, period, source, Level::Workspace, None))
                .or_default()
                .push(r);
            if let Some(s) = &r.service_id {
                groups
                    .entry((*g, period, source, Level::Service, Some(s.clone())))
                    .or_default()
                    .push(r);
            }
        }
    }
    let mut out = Vec::new();
    for ((g, period, source, level, service), rows) in groups {
        let mut base = value_row(
            ws,
            def,
            (g.name(), period, period + g.ms()),
            level,
            service,
            None,
            now_ms,
        );
        base.source = source.name().to_string();
        if def.metric_type == MetricType::Categorical {
            let mut cats: BTreeMap<String, i64> = BTreeMap::new();
            for r in &rows {
                if let Some(c) = &r.category {
                    *cats.entry(c.clone()).or_default() += 1;
                }
            }
            let cats: Vec<(String, i64)> = cats.into_iter().collect();
            out.extend(category_rows(base, def, &cats));
            continue;
        }
        let vals: Vec<f64> = rows
            .iter()
            .filter(|r| r.category.is_none())
            .filter_map(|r| r.value)
            .collect();
        let n = vals.len() as i64;
        let value = fold(def, &vals, g.ms() as f64 / 3_600_000.0);
        out.push(ValueRow {
            value,
            sample_size: n,
            ..base
        });
    }
    out
}

/// AI values of one group folded by the metric's shared aggregation
/// ([`MetricDef::shared_aggregation`]), as a plan would aggregate them: a
/// boolean value is 1 or 0, so a count (or rate) counts the ones and a
/// true-ratio is the share of values other than 0. `hours` is the period.
fn fold(def: &MetricDef, vals: &[f64], hours: f64) -> Option<f64> {
    use crate::definition::Aggregation as A;
    let boolean = def.metric_type == MetricType::Boolean;
    let n = vals.len() as f64;
    let counted = || {
        if boolean {
            vals.iter().filter(|v| **v != 0.0).count()
        } else {
            vals.len()
        }
    } as f64;
    match def.shared_aggregation() {
        A::Count => Some(counted()),
        A::Rate { .. } => Some(counted() / hours),
        A::Sum => (!vals.is_empty()).then(|| vals.iter().sum()),
        A::Avg => (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / n),
        A::Min => vals.iter().copied().reduce(f64::min),
        A::Max => vals.iter().copied().reduce(f64::max),
        A::DistinctCount => {
            let set: BTreeSet<u64> = vals.iter().map(|v| v.to_bits()).collect();
            Some(set.len() as f64)
        }
        A::TrueRatio => {
            (!vals.is_empty()).then(|| vals.iter().filter(|v| **v != 0.0).count() as f64 / n)
        }
        A::Quantile { q } => {
            let mut v = vals.to_vec();
            crate::udaf::quantile::quantile_of(&mut v, q)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ai_values_aggregate_per_period_level_and_day() {
        let mut def = crate::metric_store::check_settings(&serde_json::json!({"definitions": [{
            "key": "ai_score", "name": "AI score", "metric_type": "numerical",
            "source": "call_intelligence", "event_types": ["call_intelligence.row"],
            "extraction_mode": "ai_query", "ai_query_prompt": "Score it", "model_tier": "fast",
            "aggregation": "avg", "period_granularity": "hourly"
        }]}))
        .unwrap()
        .custom
        .remove(0);
        let day = 1_767_830_400_000;
        let conv = |id: &str, hour: i64, svc: &str| Conversation {
            session_id: id.into(),
            last_ms: day + hour * 3_600_000 + 60_000,
            service_id: Some(svc.into()),
            source: DataSource::Production,
            text: String::new(),
        };
        let mut entity = Vec::new();
        for (c, v) in [
            (conv("a", 1, "s1"), 1.0),
            (conv("b", 1, "s1"), 2.0),
            (conv("c", 5, "s2"), 6.0),
        ] {
            entity.extend(answer_rows("ws", &def, &c, &Extracted::Number(v), 0));
        }
        entity.extend(answer_rows(
            "ws",
            &def,
            &conv("d", 5, "s2"),
            &Extracted::Dropped("x".into()),
            0,
        ));
        // A simulated conversation is aggregated apart from the real ones.
        let simulated = Conversation {
            source: DataSource::Simulation,
            ..conv("e", 1, "s1")
        };
        entity.extend(answer_rows(
            "ws",
            &def,
            &simulated,
            &Extracted::Number(9.0),
            0,
        ));
        assert!(entity.iter().all(|r| r.granularity == "hourly"));
        let agg = aggregate_ai("ws", &def, &entity, 0);
        let find_in = |source: &str, g: &str, level: &str, id: &str, start: i64| {
            agg.iter()
                .find(|r| {
                    r.source == source
                        && r.granularity == g
                        && r.entity_type == level
                        && r.entity_id == id
                        && r.period_start == start
                })
                .map(|r| (r.value, r.sample_size))
        };
        let find =
            |g: &str, level: &str, id: &str, start: i64| find_in("production", g, level, id, start);
        assert_eq!(
            find_in("simulation", "daily", "workspace", "ws", day),
            Some((Some(9.0), 1))
        );
        assert_eq!(
            find_in("simulation", "daily", "service", "s1", day),
            Some((Some(9.0), 1))
        );
        assert_eq!(
            find("hourly", "workspace", "ws", day + 3_600_000),
            Some((Some(1.5), 2))
        );
        assert_eq!(
            find("hourly", "workspace", "ws", day + 5 * 3_600_000),
            Some((Some(6.0), 1))
        );
        assert_eq!(find("daily", "workspace", "ws", day), Some((Some(3.0), 3)));
        assert_eq!(find("daily", "service", "s1", day), Some((Some(1.5), 2)));
        assert_eq!(find("daily", "service", "s2", day), Some((Some(6.0), 1)));
        def.period_granularity = Granularity::Daily;
        assert!(aggregate_ai("ws", &def, &[], 0).is_empty());
    }
}
