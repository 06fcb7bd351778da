//! The console's breakdowns that are data (`docs/001`, `docs/002`): sessions
//! as successful, failed and no-response with their share of all ended
//! sessions, and each intent's utterances, customers and failures with
//! their shares of all utterances and of all failed utterances.
//!
//! Both are composed from the built-in `Alexa.Custom` definitions (one
//! `SINGLE` query each, run concurrently), so their numbers are those of
//! the skill Metrics API for the same range and stage.

use std::collections::BTreeMap;

use super::{Range, Result, invalid};
use crate::definition::builtin;
use crate::definition::{Bucket, Field, Filter, Operator, Query, TimeRange};
use crate::engine::Engine;
use crate::series::Series;

/// Which skill stage a breakdown counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Live,
    Development,
    All,
}

impl Stage {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "live" => Ok(Self::Live),
            "development" => Ok(Self::Development),
            "all" => Ok(Self::All),
            other => Err(invalid(
                "INVALID_STAGE",
                format!("stage must be live, development or all, not {other:?}"),
            )),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Development => "development",
            Self::All => "all",
        }
    }

    /// The filter on `stage`, none for all stages. Live is everything
    /// not in development: events that carry no stage count as live.
    pub fn filter(&self) -> Option<Filter> {
        let op = match self {
            Self::All => return None,
            Self::Live => Operator::Neq,
            Self::Development => Operator::Eq,
        };
        Some(Filter {
            field: Field::Column("stage".into()),
            op,
            value: "development".into(),
        })
    }
}

/// A count and its share of the total, in percent rounded to 2 decimals
/// (0 when the total is 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Share {
    pub count: i64,
    pub percentage: f64,
}

impl Share {
    fn of(count: f64, total: f64) -> Self {
        let percentage = if total > 0.0 {
            (count / total * 10_000.0).round() / 100.0
        } else {
            0.0
        };
        Self {
            count: count.round() as i64,
            percentage,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sessions {
    /// Ended sessions: the sum of the three kinds below.
    pub total: i64,
    /// Ended by the user or by the skill.
    pub successful: Share,
    /// Ended by an error.
    pub failed: Share,
    /// Ended because the user did not respond.
    pub no_response: Share,
    /// Sessions started per customer who started one (absent: none).
    pub per_customer: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IntentRow {
    /// `None`: utterances not resolved to an intent.
    pub intent: Option<String>,
    pub customers: i64,
    /// Utterances of the intent, as a share of all utterances.
    pub utterances: Share,
    /// Failed utterances of the intent, as a share of all failed ones.
    pub failed: Share,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Intents {
    pub utterances: i64,
    pub failed_utterances: i64,
    /// By utterances, most first, then by name.
    pub items: Vec<IntentRow>,
}

fn query(skill: &str, metric: &str, range: Range, stage: Stage, by_intent: bool) -> Query {
    let m = builtin::namespace("Alexa.Custom")
        .and_then(|ns| ns.metric(metric))
        .unwrap_or_else(|| panic!("Alexa.Custom/{metric} is a built-in"));
    Query {
        workspace_id: skill.to_string(),
        measure: m.measure.clone(),
        filters: stage.filter().into_iter().collect(),
        range: TimeRange {
            start_ms: range.start_ms,
            end_ms: range.end_ms,
        },
        bucket: Bucket::Single,
        group_by: if by_intent {
            vec![builtin::dimension("intent")]
        } else {
            vec![]
        },
    }
}

/// The one value of an ungrouped `SINGLE` answer.
fn single(series: &[Series]) -> Option<f64> {
    series.first().and_then(|s| s.points.first()).map(|p| p.1)
}

fn by_group(series: &[Series]) -> BTreeMap<Option<String>, f64> {
    series
        .iter()
        .filter_map(|s| Some((s.group.first().cloned().flatten(), s.points.first()?.1)))
        .collect()
}

/// Sessions of `skill` ended in `range`, by how they ended.
pub async fn sessions(
    engine: &Engine,
    skill: &str,
    range: Range,
    stage: Stage,
) -> Result<Sessions> {
    let q = |m: &str| query(skill, m, range, stage, false);
    let (ended, ok, no_response, per_customer) = (
        q("ENDED_SESSIONS"),
        q("SUCCESSFUL_SESSIONS"),
        q("USER_DID_NOT_RESPOND"),
        q("ACTIVE_SESSIONS_PER_CUSTOMER"),
    );
    let (ended, ok, no_response, per_customer) = futures::try_join!(
        engine.run(&ended),
        engine.run(&ok),
        engine.run(&no_response),
        engine.run(&per_customer),
    )?;
    let total = single(&ended).unwrap_or(0.0);
    let ok = single(&ok).unwrap_or(0.0);
    let no_response = single(&no_response).unwrap_or(0.0);
    let failed = (total - ok - no_response).max(0.0);
    Ok(Sessions {
        total: total.round() as i64,
        successful: Share::of(ok, total),
        failed: Share::of(failed, total),
        no_response: Share::of(no_response, total),
        per_customer: single(&per_customer),
    })
}

/// Utterances of `skill` in `range`, per intent.
pub async fn intents(engine: &Engine, skill: &str, range: Range, stage: Stage) -> Result<Intents> {
    let q = |m: &str| query(skill, m, range, stage, true);
    let (by_intent, failed_by_intent, customers) =
        (q("UTTERANCES"), q("FAILED_UTTERANCES"), q("CUSTOMERS"));
    let (by_intent, failed_by_intent, customers) = futures::try_join!(
        engine.run(&by_intent),
        engine.run(&failed_by_intent),
        engine.run(&customers),
    )?;
    // Every utterance is in one group (no intent: the `None` group), so
    // the groups add up to the totals.
    let failed_by_intent = by_group(&failed_by_intent);
    let total_failed: f64 = failed_by_intent.values().sum();
    let customers = by_group(&customers);
    let by_intent = by_group(&by_intent);
    let total: f64 = by_intent.values().sum();
    let mut items: Vec<IntentRow> = by_intent
        .into_iter()
        .filter(|(_, n)| *n > 0.0)
        .map(|(intent, n)| IntentRow {
            customers: customers.get(&intent).copied().unwrap_or(0.0).round() as i64,
            failed: Share::of(
                failed_by_intent.get(&intent).copied().unwrap_or(0.0),
                total_failed,
            ),
            utterances: Share::of(n, total),
            intent,
        })
        .collect();
    items.sort_by(|a, b| {
        b.utterances
            .count
            .cmp(&a.utterances.count)
            .then_with(|| a.intent.cmp(&b.intent))
    });
    Ok(Intents {
        utterances: total.round() as i64,
        failed_utterances: total_failed.round() as i64,
        items,
    })
}
