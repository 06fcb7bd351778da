//! A brute-force oracle: metric queries computed by plain Rust loops over
//! event rows, sharing nothing with the compiler or the engine.

use std::collections::{BTreeMap, BTreeSet};

use metricstore::definition::path::Step;
use metricstore::definition::{
    Aggregation, Bucket, Dimension, Events, Field, Filter, JsonPath, Measure, Operator, Query,
    Value,
};
use metricstore::storage::events::EventRow;

pub(crate) fn attr(row: &EventRow, key: &str) -> Option<serde_json::Value> {
    let obj: serde_json::Value = serde_json::from_str(row.attributes.as_deref()?).ok()?;
    obj.get(key).cloned().filter(|v| !v.is_null())
}

fn text(row: &EventRow, f: &Field) -> Option<String> {
    match f {
        Field::Column(c) => match c.as_str() {
            "workspace_id" => Some(row.workspace_id.clone()),
            "event_type" => Some(row.event_type.clone()),
            "stage" => row.stage.clone(),
            "intent" => row.intent.clone(),
            "locale" => row.locale.clone(),
            "user_id" => row.user_id.clone(),
            "session_id" => row.session_id.clone(),
            "outcome" => row.outcome.clone(),
            "channel" => row.channel.clone(),
            "direction" => row.direction.clone(),
            "resource_type" => row.resource_type.clone(),
            "resource_id" => row.resource_id.clone(),
            "action" => row.action.clone(),
            "origin" => row.origin.clone(),
            "latency_ms" => row.latency_ms.map(|v| v.to_string()),
            other => panic!("oracle: column {other}"),
        },
        Field::Attribute(k) => attr(row, k).map(|v| match v {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        }),
        Field::Path(p) => path(row, p).map(|v| match v {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        }),
    }
}

/// The value at a path of `attributes`, walked by hand.
pub(crate) fn path(row: &EventRow, p: &JsonPath) -> Option<serde_json::Value> {
    let mut v: serde_json::Value = serde_json::from_str(row.attributes.as_deref()?).ok()?;
    for step in &p.0 {
        v = match step {
            Step::Key(k) => v.get(k)?.clone(),
            Step::Index(i) => v.get(*i as usize)?.clone(),
        };
    }
    (!v.is_null()).then_some(v)
}

fn number(row: &EventRow, f: &Field) -> Option<f64> {
    match f {
        Field::Column(c) if c == "latency_ms" => row.latency_ms,
        Field::Attribute(k) => attr(row, k).and_then(|v| v.as_f64()),
        Field::Path(p) => path(row, p).and_then(|v| v.as_f64()),
        _ => None,
    }
}

fn keep(row: &EventRow, f: &Filter) -> bool {
    let numeric = f.value.is_number();
    if f.op == Operator::In {
        let got = text(row, &f.field);
        return f
            .value
            .as_array()
            .unwrap()
            .iter()
            .any(|v| got.as_deref() == v.as_str());
    }
    if f.op == Operator::Contains {
        return text(row, &f.field).is_some_and(|t| t.contains(f.value.as_str().unwrap()));
    }
    if numeric {
        let want = f.value.as_f64().unwrap();
        let got = number(row, &f.field);
        return match f.op {
            Operator::Eq => got == Some(want),
            Operator::Neq => got != Some(want),
            Operator::Gt => got.is_some_and(|g| g > want),
            Operator::Gte => got.is_some_and(|g| g >= want),
            Operator::Lt => got.is_some_and(|g| g < want),
            Operator::Lte => got.is_some_and(|g| g <= want),
            _ => unreachable!(),
        };
    }
    let want = f.value.as_str().unwrap();
    let got = text(row, &f.field);
    match f.op {
        Operator::Eq => got.as_deref() == Some(want),
        Operator::Neq => got.as_deref() != Some(want),
        _ => unreachable!(),
    }
}

fn selected(row: &EventRow, events: &Events) -> bool {
    (events.event_types.is_empty() || events.event_types.contains(&row.event_type))
        && events.filters.iter().all(|f| keep(row, f))
}

fn dim(row: &EventRow, d: &Dimension) -> Option<String> {
    match d {
        Dimension::Field(f) => text(row, f),
        Dimension::Country => row
            .locale
            .as_ref()
            .and_then(|l| l.split('-').nth(1))
            .map(String::from),
        Dimension::DataSource => Some(data_source(row).to_string()),
    }
}

/// `simulation` when `attributes.simulation` is `true`.
pub(crate) fn data_source(row: &EventRow) -> &'static str {
    if attr(row, "simulation").and_then(|v| v.as_bool()) == Some(true) {
        "simulation"
    } else {
        "production"
    }
}

fn exact_quantile(mut v: Vec<f64>, q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let h = (v.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    Some(v[lo] + (h - lo as f64) * (v[hi] - v[lo]))
}

/// One leaf over the rows of one (bucket, group) cell.
fn aggregate(rows: &[&EventRow], m: &Measure) -> Option<f64> {
    match m {
        Measure::Aggregate {
            events,
            value,
            aggregation,
        } => {
            let rows: Vec<&&EventRow> = rows.iter().filter(|r| selected(r, events)).collect();
            let field = match value {
                Value::Field(f) => Some(f),
                Value::Count => None,
                Value::Test(_) => unreachable!("not generated"),
            };
            let nums = || {
                rows.iter()
                    .filter_map(|r| number(r, field.unwrap()))
                    .collect::<Vec<f64>>()
            };
            match aggregation {
                Aggregation::Count => Some(match field {
                    None => rows.len() as f64,
                    Some(f) => rows.iter().filter(|r| text(r, f).is_some()).count() as f64,
                }),
                Aggregation::Sum => {
                    let n = nums();
                    (!n.is_empty()).then(|| n.iter().sum())
                }
                Aggregation::Avg => {
                    let n = nums();
                    (!n.is_empty()).then(|| n.iter().sum::<f64>() / n.len() as f64)
                }
                Aggregation::Min => nums().into_iter().reduce(f64::min),
                Aggregation::Max => nums().into_iter().reduce(f64::max),
                Aggregation::DistinctCount => Some(
                    rows.iter()
                        .filter_map(|r| text(r, field.unwrap()))
                        .collect::<BTreeSet<_>>()
                        .len() as f64,
                ),
                Aggregation::Quantile { q } => exact_quantile(nums(), *q),
                Aggregation::TrueRatio => {
                    let flags: Vec<bool> = rows
                        .iter()
                        .filter_map(|r| match field.unwrap() {
                            Field::Attribute(k) => attr(r, k).and_then(|v| v.as_bool()),
                            _ => None,
                        })
                        .collect();
                    (!flags.is_empty())
                        .then(|| flags.iter().filter(|b| **b).count() as f64 / flags.len() as f64)
                }
                Aggregation::Rate { .. } => unreachable!("not generated"),
            }
        }
        Measure::Ratio {
            numerator,
            denominator,
        } => {
            let (n, d) = (aggregate(rows, numerator), aggregate(rows, denominator));
            match (n, d) {
                (Some(n), Some(d)) if d != 0.0 => Some(n / d),
                _ => None,
            }
        }
        Measure::Difference { left, right } if m.is_additive() => {
            Some(aggregate(rows, left).unwrap_or(0.0) - aggregate(rows, right).unwrap_or(0.0))
        }
        Measure::Difference { left, right } => {
            Some(aggregate(rows, left)? - aggregate(rows, right)?)
        }
        Measure::Scaled { factor, measure } => aggregate(rows, measure).map(|v| v * factor),
    }
}

fn leaves_union(m: &Measure, row: &EventRow) -> bool {
    match m {
        Measure::Aggregate { events, .. } => selected(row, events),
        Measure::Ratio {
            numerator: a,
            denominator: b,
        }
        | Measure::Difference { left: a, right: b } => leaves_union(a, row) || leaves_union(b, row),
        Measure::Scaled { measure, .. } => leaves_union(measure, row),
    }
}

pub(crate) type Oracle = BTreeMap<Vec<Option<String>>, Vec<(i64, f64)>>;

pub(crate) fn oracle(rows: &[EventRow], q: &Query) -> Oracle {
    let width = q.bucket.width_ms();
    let origin = if q.bucket == Bucket::ByWeek {
        946_857_600_000
    } else {
        0
    };
    let bucket_of = |t: i64| match width {
        Some(w) => origin + (t - origin).div_euclid(w) * w,
        None => q.range.start_ms,
    };
    let mut cells: BTreeMap<(Vec<Option<String>>, i64), Vec<&EventRow>> = BTreeMap::new();
    for r in rows {
        if r.workspace_id != q.workspace_id || r.time < q.range.start_ms || r.time >= q.range.end_ms
        {
            continue;
        }
        if !q.filters.iter().all(|f| keep(r, f)) || !leaves_union(&q.measure, r) {
            continue;
        }
        let group: Vec<Option<String>> = q.group_by.iter().map(|d| dim(r, d)).collect();
        cells.entry((group, bucket_of(r.time))).or_default().push(r);
    }
    let mut buckets = Vec::new();
    match width {
        None => buckets.push(q.range.start_ms),
        Some(w) => {
            let mut t = bucket_of(q.range.start_ms);
            while t < q.range.end_ms {
                buckets.push(t);
                t += w;
            }
        }
    }
    let additive = q.measure.is_additive();
    let mut out: Oracle = BTreeMap::new();
    let groups: BTreeSet<Vec<Option<String>>> = cells.keys().map(|(g, _)| g.clone()).collect();
    for g in groups {
        let mut points = Vec::new();
        for b in &buckets {
            let v = cells
                .get(&(g.clone(), *b))
                .and_then(|rows| aggregate(rows, &q.measure));
            match (v, additive) {
                (Some(v), _) => points.push((*b, v)),
                (None, true) => points.push((*b, 0.0)),
                (None, false) => {}
            }
        }
        out.insert(g, points);
    }
    if out.is_empty() && q.group_by.is_empty() && additive {
        out.insert(vec![], buckets.iter().map(|b| (*b, 0.0)).collect());
    }
    out
}
