//! One evaluation of a rule: the values of its source, the condition per
//! group, and (in [`apply`]) what that does to the stored group states.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::rule::{AlertRule, Condition, Direction};
use super::source::{self, Dimensions};
use super::state::{AlertState, GroupState, Notice, Outcome, Timing, group_key, step};
use crate::api::AppState;

const WEEK_MS: i64 = 7 * 86_400_000;

/// What the condition saw for one group.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GroupEval {
    #[serde(skip)]
    pub key: String,
    pub dimensions: Option<Dimensions>,
    /// The value compared: the metric's value, or the percent change.
    pub value: Option<f64>,
    #[serde(skip)]
    pub outcome: Outcome,
    /// Change conditions: this window's and the previous window's values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<f64>,
    /// Anomaly conditions: the band and what it was made of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stddev: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lower: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upper: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples: Option<usize>,
}

impl GroupEval {
    fn new(dimensions: Option<Dimensions>, value: Option<f64>, outcome: Outcome) -> Self {
        Self {
            key: group_key(&dimensions),
            dimensions,
            value,
            outcome,
            current: None,
            previous: None,
            mean: None,
            stddev: None,
            lower: None,
            upper: None,
            samples: None,
        }
    }

    /// The threshold a notification of this group reports: the rule's, or
    /// the anomaly bound that was crossed (the upper one when none was).
    pub fn threshold(&self, rule: &AlertRule) -> Option<f64> {
        let crossed = match (self.value, self.lower, self.upper) {
            (Some(v), Some(lo), _) if v < lo => Some(lo),
            (_, _, up) => up,
        };
        rule.threshold().or(crossed)
    }
}

fn outcome(holds: Option<bool>) -> Outcome {
    match holds {
        Some(true) => Outcome::Holds,
        Some(false) => Outcome::Clear,
        None => Outcome::NoData,
    }
}

/// Evaluates `rule` with its windows ending at `end_ms`: a value and an
/// outcome per group the source returned (an empty list when it returned
/// none). An error is the evaluation's failure.
pub async fn evaluate(
    state: &AppState,
    ws: &str,
    rule: &AlertRule,
    end_ms: i64,
) -> Result<Vec<GroupEval>, String> {
    let now = source::sample(state, ws, rule, end_ms).await?;
    Ok(match rule.condition {
        Condition::Threshold {
            operator,
            threshold,
        } => now
            .groups
            .into_iter()
            .map(|g| {
                let holds = g.value.map(|v| operator.holds(v, threshold));
                GroupEval::new(g.dimensions, g.value, outcome(holds))
            })
            .collect(),
        Condition::Change {
            operator,
            threshold,
        } => {
            let window = now
                .window_ms
                .ok_or("a change condition needs a metric with a timeWindow")?;
            let before = source::sample(state, ws, rule, end_ms - window).await?;
            let previous: HashMap<String, Option<f64>> = before
                .groups
                .into_iter()
                .map(|g| (group_key(&g.dimensions), g.value))
                .collect();
            now.groups
                .into_iter()
                .map(|g| {
                    let prev = previous.get(&group_key(&g.dimensions)).copied().flatten();
                    let pct = percent_change(g.value, prev);
                    let mut e = GroupEval::new(
                        g.dimensions,
                        pct,
                        outcome(pct.map(|p| operator.holds(p, threshold))),
                    );
                    e.current = g.value;
                    e.previous = prev;
                    e
                })
                .collect()
        }
        Condition::Anomaly {
            k,
            weeks,
            direction,
        } => {
            let mut history: HashMap<String, Vec<f64>> = HashMap::new();
            for week in 1..=i64::from(weeks) {
                let past = source::sample(state, ws, rule, end_ms - week * WEEK_MS).await?;
                for g in past.groups {
                    if let Some(v) = g.value {
                        history.entry(group_key(&g.dimensions)).or_default().push(v);
                    }
                }
            }
            now.groups
                .into_iter()
                .map(|g| {
                    let past = history
                        .get(&group_key(&g.dimensions))
                        .cloned()
                        .unwrap_or_default();
                    let band = band(&past, k);
                    let holds = match (g.value, band) {
                        (Some(v), Some((_, _, lo, up))) => Some(match direction {
                            Direction::Both => v < lo || v > up,
                            Direction::Above => v > up,
                            Direction::Below => v < lo,
                        }),
                        _ => None,
                    };
                    let mut e = GroupEval::new(g.dimensions, g.value, outcome(holds));
                    if let Some((mean, sd, lo, up)) = band {
                        (e.mean, e.stddev, e.lower, e.upper) =
                            (Some(mean), Some(sd), Some(lo), Some(up));
                    }
                    e.samples = Some(past.len());
                    e
                })
                .collect()
        }
    })
}

/// `(current - previous) / |previous|` in percent; undefined (no data)
/// when either is missing or the previous window is 0 and this one not.
pub fn percent_change(current: Option<f64>, previous: Option<f64>) -> Option<f64> {
    let (c, p) = (current?, previous?);
    if p == 0.0 {
        (c == 0.0).then_some(0.0)
    } else {
        Some((c - p) / p.abs() * 100.0)
    }
}

/// Mean, population standard deviation and `mean ± k·sd` of `past`;
/// `None` with fewer than two values.
pub fn band(past: &[f64], k: f64) -> Option<(f64, f64, f64, f64)> {
    if past.len() < 2 {
        return None;
    }
    let n = past.len() as f64;
    let mean = past.iter().sum::<f64>() / n;
    let sd = (past.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    Some((mean, sd, mean - k * sd, mean + k * sd))
}

/// A group that changed state in an evaluation.
#[derive(Debug, Clone)]
pub struct Change {
    pub key: String,
    pub from: AlertState,
    pub to: GroupState,
    pub notice: Option<Notice>,
    pub eval: Option<GroupEval>,
}

/// The group states after an evaluation at `now`, and the changes.
///
/// Groups the source returned are stepped with their outcome. A group
/// stored before but not returned now has stopped matching: its condition
/// no longer holds, and once `ok` it is forgotten. When the source
/// returned nothing at all (or failed), every stored group (or, with none,
/// the rule's single ungrouped one) gets "no data" (or the failure).
pub fn apply(
    prev: &BTreeMap<String, GroupState>,
    result: &Result<Vec<GroupEval>, String>,
    now: i64,
    timing: Timing,
) -> (BTreeMap<String, GroupState>, Vec<Change>) {
    let mut targets: Vec<(String, Option<Dimensions>, Outcome, Option<GroupEval>)> = Vec::new();
    let whole = match result {
        Err(_) => Some(Outcome::Failed),
        Ok(groups) if groups.is_empty() => Some(Outcome::NoData),
        Ok(_) => None,
    };
    match (whole, result) {
        (Some(o), _) => {
            if prev.is_empty() {
                targets.push((String::new(), None, o, None));
            }
            for (k, g) in prev {
                targets.push((k.clone(), g.dimensions.clone(), o, None));
            }
        }
        (None, Ok(groups)) => {
            for g in groups {
                targets.push((
                    g.key.clone(),
                    g.dimensions.clone(),
                    g.outcome,
                    Some(g.clone()),
                ));
            }
            for (k, g) in prev {
                if !groups.iter().any(|e| &e.key == k) {
                    targets.push((k.clone(), g.dimensions.clone(), Outcome::Clear, None));
                }
            }
        }
        (None, Err(_)) => unreachable!("errors are whole"),
    }
    let mut next = BTreeMap::new();
    let mut changes = Vec::new();
    for (key, dimensions, outcome, eval) in targets {
        let before = prev.get(&key).cloned().unwrap_or_else(|| GroupState {
            dimensions: dimensions.clone(),
            since_ms: now,
            ..Default::default()
        });
        let value = eval.as_ref().and_then(|e| e.value);
        let (after, change) = step(&before, outcome, value, now, timing);
        if let Some(notice) = change {
            changes.push(Change {
                key: key.clone(),
                from: before.state,
                to: after.clone(),
                notice,
                eval: eval.clone(),
            });
        }
        let returned = eval.is_some() || whole.is_some();
        if returned || after.state != AlertState::Ok {
            next.insert(key, after);
        }
    }
    (next, changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::rule::{ErrorState, NoDataState};

    const T: Timing = Timing {
        for_ms: 0,
        keep_firing_ms: 0,
        no_data: NoDataState::Nodata,
        error: ErrorState::Error,
    };

    fn group(country: &str, outcome: Outcome) -> GroupEval {
        let dims: Dimensions = [(
            "interaction_country".to_string(),
            serde_json::json!(country),
        )]
        .into_iter()
        .collect();
        GroupEval::new(Some(dims), Some(1.0), outcome)
    }

    #[test]
    fn changes_and_band() {
        assert_eq!(percent_change(Some(30.0), Some(10.0)), Some(200.0));
        assert_eq!(percent_change(Some(5.0), Some(-10.0)), Some(150.0));
        assert_eq!(percent_change(Some(0.0), Some(0.0)), Some(0.0));
        assert_eq!(percent_change(Some(1.0), Some(0.0)), None);
        assert_eq!(percent_change(None, Some(1.0)), None);
        let (mean, sd, lo, up) = band(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0], 2.0).unwrap();
        assert_eq!((mean, sd, lo, up), (5.0, 2.0, 1.0, 9.0));
        assert!(band(&[1.0], 3.0).is_none());
    }

    #[test]
    fn groups_fire_apart_and_vanished_groups_resolve() {
        let (s1, c1) = apply(
            &BTreeMap::new(),
            &Ok(vec![
                group("ZA", Outcome::Holds),
                group("US", Outcome::Clear),
            ]),
            0,
            T,
        );
        assert_eq!(c1.len(), 1);
        assert_eq!(c1[0].notice, Some(Notice::Firing));
        assert_eq!(s1.len(), 2);
        // ZA disappears: it resolves and is then forgotten.
        let (s2, c2) = apply(&s1, &Ok(vec![group("US", Outcome::Clear)]), 1_000, T);
        assert_eq!(c2.len(), 1);
        assert_eq!(c2[0].notice, Some(Notice::Resolved));
        assert_eq!(s2.len(), 1);
        // Nothing at all: no data for every stored group.
        let (s3, c3) = apply(&s2, &Ok(vec![]), 2_000, T);
        assert_eq!(s3.values().next().unwrap().state, AlertState::Nodata);
        assert_eq!(c3.len(), 1);
        // A failure with nothing stored: the ungrouped group errs.
        let (s4, _) = apply(&BTreeMap::new(), &Err("boom".into()), 0, T);
        assert_eq!(s4[""].state, AlertState::Error);
    }
}
