//! Answering from a rollup: the parts of the covered days, the event
//! files of those days the parts do not cover, the other days' files and
//! the unpublished rows, listed together under the publish lock so that
//! every event is read exactly once; then one plan over all of it.

use std::collections::BTreeSet;

use futures::{StreamExt, TryStreamExt};
use std::sync::Arc;

use datafusion::datasource::memory::MemTable;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, col};

use super::{RollupSpec, Rollups, column_of, days_of, parquet_files, scan};
use crate::compile::states::{LeafSpec, STATE_BUCKET_MS, compile_from_states};
use crate::compile::{Compiled, events_predicate};
use crate::definition::{Dimension, Query};
use crate::engine::{Engine, Result};
use crate::storage::events;

impl Rollups {
    /// A plan answering `query` from a rollup and the raw events it does
    /// not cover, or `None` when no rollup serves it.
    pub async fn plan(&self, engine: &Engine, query: &Query) -> Result<Option<Compiled>> {
        let aligned = |ms: i64| ms.rem_euclid(STATE_BUCKET_MS) == 0;
        if !aligned(query.range.start_ms) || !aligned(query.range.end_ms) {
            return Ok(None);
        }
        if query
            .bucket
            .width_ms()
            .is_some_and(|w| w % STATE_BUCKET_MS != 0)
            || !aligned(query.bucket.origin_ms())
        {
            return Ok(None);
        }
        let mut needed = BTreeSet::new();
        for f in &query.filters {
            match column_of(&Dimension::Field(f.field.clone())) {
                Some(c) => needed.insert(c),
                None => return Ok(None),
            };
        }
        for d in &query.group_by {
            match column_of(d) {
                Some(c) => needed.insert(c),
                None => return Ok(None),
            };
        }
        let leaves = LeafSpec::leaves(&query.measure);
        let manifest = self.manifest();
        let Some((built, at)) = manifest
            .rollups
            .values()
            .filter(|b| needed.iter().all(|c| b.spec.dims.contains(c)))
            .filter_map(|b| {
                let at: Option<Vec<usize>> = leaves
                    .iter()
                    .map(|l| b.spec.leaves.iter().position(|s| s == l))
                    .collect();
                Some((b, at?))
            })
            .min_by_key(|(b, _)| b.spec.dims.len())
        else {
            return Ok(None);
        };
        // The rollup's states of the query's leaves only, as leaves 0..k.
        let sub = RollupSpec {
            dims: built.spec.dims.clone(),
            leaves: at.iter().map(|&j| built.spec.leaves[j].clone()).collect(),
        };
        let mut parts = Vec::new();
        let mut tail = Vec::new();
        let mut covered_days = 0;
        let unpublished = engine.events.unpublished();
        let guard = match &unpublished {
            Some(u) => Some(u.publish_lock().read().await),
            None => None,
        };
        // The days' listings, several at a time (a LIST each on S3).
        let listed: Vec<(String, std::collections::BTreeSet<String>)> =
            futures::stream::iter(days_of(query.range))
                .map(|day| async move {
                    let files = self.day_files(&day).await?;
                    Ok::<_, crate::engine::Error>((day, files))
                })
                .buffered(16)
                .try_collect()
                .await?;
        for (day, files) in listed {
            match built.days.get(&day) {
                // No events that day: nothing to read either way.
                _ if files.is_empty() => covered_days += 1,
                Some(c) if c.files.is_subset(&files) => {
                    covered_days += 1;
                    parts.extend(c.parts.iter().cloned());
                    tail.extend(files.difference(&c.files).cloned());
                }
                _ => tail.extend(files),
            }
        }
        let pending = unpublished
            .as_ref()
            .map(|u| u.snapshot())
            .unwrap_or_default();
        drop(guard);
        if covered_days == 0 {
            return Ok(None);
        }
        // Rows of states: the parts (the query's leaves' columns, renamed
        // to their place in `sub`) and the tail aggregated the same way.
        let full = built.spec.schema();
        let mut projection: Vec<Expr> = vec![col("workspace_id"), col("time")];
        projection.extend(sub.dims.iter().map(|d| col(d.as_str())));
        for (k, &j) in at.iter().enumerate() {
            let prefix = format!("l{j}_");
            for f in full
                .fields()
                .iter()
                .filter(|f| f.name().starts_with(&prefix))
            {
                let suffix = &f.name()[prefix.len()..];
                projection.push(col(f.name()).alias(format!("l{k}_{suffix}")));
            }
        }
        let range_filter = events_predicate(&query.workspace_id, query.range, &[], &query.filters)?;
        // Covered days without a row for any leaf have no part.
        let part_scan = if parts.is_empty() {
            scan(MemTable::try_new(Arc::clone(&full), vec![vec![]])?)?
        } else {
            scan(parquet_files(&self.store, &parts, full)?)?
        };
        let mut input = part_scan
            .filter(range_filter.clone())?
            .project(projection)?;
        let mut raw: Vec<LogicalPlanBuilder> = Vec::new();
        if !tail.is_empty() {
            raw.push(scan(parquet_files(&self.store, &tail, events::schema())?)?);
        }
        if !pending.is_empty() {
            let mem = MemTable::try_new(events::schema(), vec![pending])?;
            raw.push(scan(mem)?);
        }
        for r in raw {
            let states = self.states_plan(&sub, r.filter(range_filter.clone())?)?;
            input = input.union(states)?;
        }
        Ok(Some(compile_from_states(
            query,
            input.build()?,
            &(0..at.len()).collect::<Vec<_>>(),
        )?))
    }
}
