//! A brute-force oracle for Metric Store definitions: the values the
//! pipeline stores for a level and period, computed by plain loops over
//! event rows from the definition's own fields (its JSON path walked by
//! hand, a built-in's `sql_expr` text read by a tiny parser), sharing
//! nothing with the lowering or the compiler.

use std::collections::{BTreeMap, BTreeSet};

use metricstore::metric_store::{AggregationName, MetricDef, MetricType};
use metricstore::storage::events::EventRow;

use super::oracle::{attr, data_source};

/// A value row as the oracle sees it: (period start, data source,
/// `metric_key:entity_id`, category) -> (value, sample size).
pub(crate) type Rows = BTreeMap<(i64, String, String, Option<String>), (Option<f64>, i64)>;

/// What the oracle is asked: a level (`workspace`, `service`, `call`), a
/// period width (`None`: the whole range is one period), a range.
pub(crate) struct Ask<'a> {
    pub ws: &'a str,
    pub level: &'a str,
    pub width_ms: Option<i64>,
    pub from_ms: i64,
    pub to_ms: i64,
}

fn column(row: &EventRow, c: &str) -> Option<String> {
    match c {
        "event_type" => Some(row.event_type.clone()),
        "session_id" => row.session_id.clone(),
        "user_id" => row.user_id.clone(),
        "direction" => row.direction.clone(),
        "channel" => row.channel.clone(),
        "outcome" => row.outcome.clone(),
        "latency_ms" => row.latency_ms.map(|v| v.to_string()),
        other => panic!("oracle: column {other}"),
    }
}

/// A JSON value walked by `$.a.b[0]` / `$['a b']` steps.
fn walk(row: &EventRow, path: &str) -> Option<serde_json::Value> {
    let mut v: serde_json::Value = serde_json::from_str(row.attributes.as_deref()?).ok()?;
    let mut rest = path.strip_prefix('$').unwrap();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            v = v.get(&r[..end])?.clone();
            rest = &r[end..];
        } else {
            let r = rest.strip_prefix('[').unwrap();
            let close = r.find(']').unwrap();
            let inner = &r[..close];
            v = match inner.parse::<usize>() {
                Ok(i) => v.get(i)?.clone(),
                Err(_) => v
                    .get(inner.trim_matches(|c| c == '\'' || c == '"'))?
                    .clone(),
            };
            rest = &r[close + 1..];
        }
    }
    (!v.is_null()).then_some(v)
}

fn as_text(v: serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

/// One event's value of a definition, before guards.
enum Raw {
    Text(Option<String>),
    Number(Option<f64>),
    Flag(Option<bool>),
}

/// A built-in's SQL text: `col`, `col = 'x'`, `json_get_str(attributes,
/// 'k') = 'x'`, `... <> 'x'`, `... IN ('a', 'b')`.
fn sql(row: &EventRow, text: &str) -> (Option<String>, Option<bool>) {
    let (lhs, rest) = match text.find(" ") {
        _ if text.starts_with("json_get_str(") => {
            let close = text.find(')').unwrap();
            let key = text["json_get_str(attributes, '".len()..close - 1].to_string();
            let got = attr(row, &key).and_then(|v| v.as_str().map(String::from));
            (got, text[close + 1..].trim())
        }
        Some(i) => (column(row, &text[..i]), text[i..].trim()),
        None => (column(row, text), ""),
    };
    if rest.is_empty() {
        return (lhs, None);
    }
    let quoted = |s: &str| s.trim().trim_matches('\'').to_string();
    let flag = lhs.as_ref().map(|l| {
        if let Some(v) = rest.strip_prefix("= ") {
            *l == quoted(v)
        } else if let Some(v) = rest.strip_prefix("<> ") {
            *l != quoted(v)
        } else {
            let list = rest.strip_prefix("IN (").unwrap().trim_end_matches(')');
            list.split(',').any(|v| *l == quoted(v))
        }
    });
    (None, flag)
}

fn raw(row: &EventRow, d: &MetricDef) -> Raw {
    let counting = d.metric_type == MetricType::Numerical
        && matches!(
            d.aggregation,
            AggregationName::Count | AggregationName::CountDistinct | AggregationName::Rate
        )
        && d.valid_range_min.is_none()
        && d.valid_range_max.is_none();
    if let Some(text) = &d.sql_expr {
        let (value, flag) = sql(row, text);
        return match d.metric_type {
            MetricType::Boolean => Raw::Flag(flag),
            MetricType::Categorical => Raw::Text(value),
            MetricType::Numerical if counting => Raw::Text(value),
            MetricType::Numerical => Raw::Number(value.and_then(|v| v.parse().ok())),
        };
    }
    let v = walk(row, d.extract_path.as_deref().unwrap());
    match d.metric_type {
        MetricType::Boolean => Raw::Flag(v.and_then(|v| v.as_bool())),
        MetricType::Categorical => Raw::Text(v.map(as_text)),
        MetricType::Numerical if counting => Raw::Text(v.map(as_text)),
        MetricType::Numerical => Raw::Number(v.and_then(|v| v.as_f64())),
    }
}

/// The event's value as the metric keeps it: in scope, of its event
/// types, in range, one of the categories; `None` otherwise.
fn kept(row: &EventRow, d: &MetricDef) -> Option<Raw> {
    if !d.event_types().contains(&row.event_type.as_str()) {
        return None;
    }
    let scope = match serde_json::to_value(d.channel_scope)
        .unwrap()
        .as_str()
        .unwrap()
    {
        "all" => true,
        "voice" | "text" | "surface" => {
            row.channel.as_deref() == serde_json::to_value(d.channel_scope).unwrap().as_str()
        }
        _ => row.direction.as_deref() == serde_json::to_value(d.channel_scope).unwrap().as_str(),
    };
    if !scope {
        return None;
    }
    Some(match raw(row, d) {
        Raw::Number(Some(v)) if !d.in_range(v) => Raw::Number(None),
        Raw::Text(Some(t))
            if d.metric_type == MetricType::Categorical
                && d.categories.as_ref().is_some_and(|c| !c.contains(&t)) =>
        {
            Raw::Text(None)
        }
        r => r,
    })
}

fn quantile(mut v: Vec<f64>, q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let h = (v.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    Some(v[lo] + (h - lo as f64) * (v[hi] - v[lo]))
}

/// A numerical or boolean metric over one group's events.
fn value(rows: &[&EventRow], d: &MetricDef, hours: f64) -> (Option<f64>, i64) {
    let raws: Vec<Raw> = rows.iter().filter_map(|r| kept(r, d)).collect();
    let mut texts = Vec::new();
    let mut nums = Vec::new();
    let mut flags = Vec::new();
    for r in raws {
        match r {
            Raw::Text(Some(t)) => texts.push(t),
            Raw::Number(Some(n)) => nums.push(n),
            Raw::Flag(Some(f)) => flags.push(f),
            _ => {}
        }
    }
    let n = (texts.len() + nums.len() + flags.len()) as i64;
    let trues = flags.iter().filter(|f| **f).count() as f64;
    let v = match (d.metric_type, d.aggregation) {
        (MetricType::Boolean, AggregationName::Ratio) => (n > 0).then(|| trues / n as f64),
        (MetricType::Boolean, AggregationName::Rate) => Some(trues / hours),
        (MetricType::Boolean, _) => Some(trues),
        (_, AggregationName::Count) => Some(n as f64),
        (_, AggregationName::Rate) => Some(n as f64 / hours),
        (_, AggregationName::CountDistinct) => Some(if texts.is_empty() {
            nums.iter()
                .map(|x| x.to_bits())
                .collect::<BTreeSet<_>>()
                .len() as f64
        } else {
            texts.iter().collect::<BTreeSet<_>>().len() as f64
        }),
        (_, AggregationName::Sum) => (!nums.is_empty()).then(|| nums.iter().sum()),
        (_, AggregationName::Avg) => {
            (!nums.is_empty()).then(|| nums.iter().sum::<f64>() / nums.len() as f64)
        }
        (_, AggregationName::Min) => nums.iter().copied().reduce(f64::min),
        (_, AggregationName::Max) => nums.iter().copied().reduce(f64::max),
        (_, AggregationName::Ratio) => (!nums.is_empty())
            .then(|| nums.iter().filter(|x| **x != 0.0).count() as f64 / nums.len() as f64),
        (_, a) => quantile(nums, a.quantile().unwrap()),
    };
    (v, n)
}

/// The rows the pipeline stores for `defs` (all of one source; a
/// categorical metric alone) at one level and period width.
pub(crate) fn expected(events: &[EventRow], defs: &[&MetricDef], ask: &Ask) -> Rows {
    let types: BTreeSet<&str> = defs.iter().flat_map(|d| d.event_types()).collect();
    let categorical = defs[0].metric_type == MetricType::Categorical;
    let period = |t: i64| match ask.width_ms {
        Some(w) => t.div_euclid(w) * w,
        None => ask.from_ms,
    };
    let hours = ask.width_ms.unwrap_or(ask.to_ms - ask.from_ms) as f64 / 3_600_000.0;
    let mut groups: BTreeMap<(i64, String, String), Vec<&EventRow>> = BTreeMap::new();
    for r in events {
        if r.workspace_id != ask.ws
            || r.time < ask.from_ms
            || r.time >= ask.to_ms
            || !types.contains(r.event_type.as_str())
        {
            continue;
        }
        let entity = match ask.level {
            "workspace" => Some(ask.ws.to_string()),
            "service" => attr(r, "service_id").and_then(|v| v.as_str().map(String::from)),
            _ => r.session_id.clone(),
        };
        let Some(entity) = entity else { continue };
        if categorical && !matches!(kept(r, defs[0]), Some(Raw::Text(Some(_)))) {
            continue;
        }
        groups
            .entry((period(r.time), data_source(r).to_string(), entity))
            .or_default()
            .push(r);
    }
    let mut out = Rows::new();
    let whole = ask.width_ms.is_none_or(|w| w == 86_400_000);
    if groups.is_empty() && ask.level == "workspace" && whole {
        for d in defs {
            let zero = categorical
                || matches!(
                    d.aggregation,
                    AggregationName::Count | AggregationName::Rate | AggregationName::CountDistinct
                );
            let key = (
                ask.from_ms,
                "production".to_string(),
                format!("{}:{}", d.key, ask.ws),
                None,
            );
            out.insert(key, (zero.then_some(0.0), 0));
        }
        return out;
    }
    for ((p, source, entity), rows) in groups {
        if categorical {
            let d = defs[0];
            let mut cats: BTreeMap<String, i64> = BTreeMap::new();
            for r in &rows {
                if let Some(Raw::Text(Some(c))) = kept(r, d) {
                    *cats.entry(c).or_default() += 1;
                }
            }
            let total: i64 = cats.values().sum();
            let v = if d.aggregation == AggregationName::CountDistinct {
                cats.len() as f64
            } else {
                total as f64
            };
            let entity = format!("{}:{entity}", d.key);
            out.insert((p, source.clone(), entity.clone(), None), (Some(v), total));
            for (c, n) in cats {
                out.insert(
                    (p, source.clone(), entity.clone(), Some(c)),
                    (Some(n as f64), n),
                );
            }
            continue;
        }
        for d in defs {
            let (v, n) = value(&rows, d, hours);
            if n == 0 && ask.level != "workspace" {
                continue;
            }
            out.insert(
                (p, source.clone(), format!("{}:{entity}", d.key), None),
                (v, n),
            );
        }
    }
    out
}
