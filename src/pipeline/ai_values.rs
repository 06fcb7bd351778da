//! AI values of a run: the most recent conversations of the window not
//! yet valued, per metric, within a request budget.

use std::collections::{BTreeMap, HashSet};

use futures::StreamExt;

use super::Report;
use super::run::{AI_CONVERSATIONS_PER_RUN, day_of_ms};
use crate::engine::Engine;
use crate::metric_store::answers::{aggregate_ai, answer_rows};
use crate::metric_store::conversations::Conversation;
use crate::metric_store::conversations::conversations;
use crate::metric_store::extract::{self, Ai, Budget, Extracted};
use crate::metric_store::{MetricDef, Result};
use crate::storage::events::day_start_millis;
use crate::storage::values::{self, ValueRow};

#[allow(clippy::too_many_arguments)]
pub(super) async fn run_ai_metric(
    engine: &Engine,
    ai: &Ai,
    budget: &Budget,
    ws: &str,
    def: &MetricDef,
    window: (i64, i64),
    now_ms: i64,
    report: &mut Report,
) -> Result<()> {
    let store = &engine.store;
    let file = values::ai_file(&def.key);
    // What earlier runs valued, per day of the window.
    let mut by_day: BTreeMap<String, Vec<ValueRow>> = BTreeMap::new();
    let mut d = day_of_ms(window.0);
    while day_start_millis(d) < window.1 {
        let rows = values::read_file(store, ws, &d.to_string(), &file).await?;
        by_day.insert(d.to_string(), rows);
        d = d + chrono::Days::new(1);
    }
    let done: HashSet<String> = by_day
        .values()
        .flatten()
        .filter_map(|r| r.session_id.clone())
        .collect();
    let convs = conversations(
        engine,
        ws,
        def,
        window,
        None,
        &done,
        AI_CONVERSATIONS_PER_RUN,
    )
    .await?;
    if convs.is_empty() {
        return Ok(());
    }
    let answers: Vec<(Conversation, Result<Extracted, extract::Error>)> =
        futures::stream::iter(convs.into_iter().map(|c| async move {
            let a = extract::extract(ai, budget, def, &c.text).await;
            (c, a)
        }))
        .buffer_unordered(4)
        .collect()
        .await;
    let mut new_rows: BTreeMap<String, Vec<ValueRow>> = BTreeMap::new();
    for (conv, answer) in answers {
        match answer {
            Ok(a) => {
                if let Extracted::Dropped(why) = &a {
                    tracing::info!(metric = %def.key, session = %conv.session_id, reason = %why, "AI answer dropped");
                    report.ai_dropped += 1;
                } else {
                    report.ai_values += 1;
                }
                let day = day_of_ms(conv.last_ms).to_string();
                new_rows
                    .entry(day)
                    .or_default()
                    .extend(answer_rows(ws, def, &conv, &a, now_ms));
            }
            Err(extract::Error::Budget(n)) => {
                report.ai_failed += 1;
                tracing::warn!(metric = %def.key, budget = n, "AI budget spent; the rest waits for the next run");
            }
            Err(e) => {
                report.ai_failed += 1;
                tracing::warn!(metric = %def.key, session = %conv.session_id, error = %e, "AI extraction failed; retried next run");
            }
        }
    }
    for (day, fresh) in new_rows {
        let mut entity: Vec<ValueRow> = by_day
            .remove(&day)
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.entity_type == "call")
            .collect();
        entity.extend(fresh);
        let mut all = aggregate_ai(ws, def, &entity, now_ms);
        all.extend(entity);
        report.values_written += all.len();
        values::write_file(store, ws, &day, &file, &all).await?;
    }
    Ok(())
}
