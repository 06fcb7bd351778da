//! Answering from a rollup: the parts of the covered days, the event
//! files of those days the parts do not cover, the other days' files and
//! the unpublished rows, listed together under the publish lock so that
//! every event is read exactly once; then one plan over all of it.

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt, TryStreamExt};
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::view::ViewTable;
use datafusion::datasource::memory::MemTable;
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, TableSource, col, lit};

use super::{Built, RollupSpec, Rollups, column_of, days_of, parquet_files, scan};
use crate::compile::states::{LeafSpec, compile_from_states};
use crate::compile::{Compiled, events_predicate};
use crate::definition::{Dimension, Query};
use crate::engine::{Engine, Error, Result};
use crate::storage::events;
use crate::storage::events::DAY_MS;

/// Part files and the covered days whose rows each is read for (a week's
/// part serves only the days whose coverage still names it).
type PartDays = BTreeMap<String, Vec<String>>;

/// What an answer reads for its days: the parts of the covered ones, the
/// event files no part covers.
struct Split {
    parts: PartDays,
    tail: Vec<String>,
}

/// Splits listed days (each with its event files) by `built`'s coverage;
/// `None` when it covers none of them (the raw plan is as good). A day
/// without files counts as covered: there is nothing to read.
fn split(
    built: &Built,
    listed: impl IntoIterator<Item = (String, BTreeSet<String>)>,
) -> Option<Split> {
    let mut out = Split {
        parts: PartDays::new(),
        tail: Vec::new(),
    };
    let mut covered_days = 0;
    for (day, files) in listed {
        match built.days.get(&day) {
            _ if files.is_empty() => covered_days += 1,
            Some(c) if c.files.is_subset(&files) => {
                covered_days += 1;
                for p in &c.parts {
                    out.parts.entry(p.clone()).or_default().push(day.clone());
                }
                out.tail.extend(files.difference(&c.files).cloned());
            }
            _ => out.tail.extend(files),
        }
    }
    (covered_days > 0).then_some(out)
}

/// Runs `list` and takes the unflushed rows under the ingest's publish
/// lock, so that no row is both in a listed file and among those rows.
async fn under_publish_lock<T>(
    engine: &Engine,
    list: impl std::future::Future<Output = Result<T>>,
) -> Result<(T, Vec<RecordBatch>)> {
    let unpublished = engine.events.unpublished();
    let _guard = match &unpublished {
        Some(u) => Some(u.publish_lock().read().await),
        None => None,
    };
    let listed = list.await?;
    let pending = unpublished
        .as_ref()
        .map(|u| u.snapshot())
        .unwrap_or_default();
    Ok((listed, pending))
}

/// The rows of `batch` whose `time` lies in one of `days` (`YYYY-MM-DD`),
/// as slices of it: a part's rows of a workspace are in time order, so a
/// run of days is one slice and nothing is copied.
fn of_days(batch: &RecordBatch, days: &[String]) -> Result<Vec<RecordBatch>> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::TimestampMillisecondType;
    let wanted: BTreeSet<i64> = days
        .iter()
        .filter_map(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .map(|d| events::day_start_millis(d).div_euclid(DAY_MS))
        .collect();
    let column = batch
        .column_by_name("time")
        .ok_or_else(|| Error::Column("time".into()))?;
    let times = column
        .as_primitive_opt::<TimestampMillisecondType>()
        .ok_or_else(|| Error::Column("time".into()))?;
    let keep = |i: usize| times.is_valid(i) && wanted.contains(&times.value(i).div_euclid(DAY_MS));
    let mut out = Vec::new();
    let mut run: Option<usize> = None;
    for i in 0..=times.len() {
        match (run, i < times.len() && keep(i)) {
            (None, true) => run = Some(i),
            (Some(from), false) => {
                out.push(batch.slice(from, i - from));
                run = None;
            }
            _ => {}
        }
    }
    Ok(out)
}

/// What paths read of a workspace's sessions: the steps rollup's rows
/// (`session_id`, `l0_steps`), slices of the decoded parts, and the plan
/// of the same columns over the raw events the rollup does not cover.
#[derive(Debug)]
pub struct SessionRows {
    pub parts: Vec<RecordBatch>,
    pub tail: Option<datafusion::logical_expr::LogicalPlan>,
}

impl Rollups {
    /// The event files of each UTC day `range` touches and the unflushed
    /// rows, taken together under the publish lock.
    async fn listed_days(
        &self,
        engine: &Engine,
        range: crate::definition::TimeRange,
    ) -> Result<(Vec<(String, BTreeSet<String>)>, Vec<RecordBatch>)> {
        under_publish_lock(engine, async {
            // The days' listings, several at a time (a LIST each on S3).
            futures::stream::iter(days_of(range))
                .map(
                    |day| async move { Ok::<_, Error>((day.clone(), self.day_files(&day).await?)) },
                )
                .buffered(16)
                .try_collect::<Vec<_>>()
                .await
        })
        .await
    }

    /// Scans of the raw events no part covers: `tail` files and the
    /// unflushed rows.
    fn raw_scans(
        &self,
        tail: &[String],
        pending: Vec<RecordBatch>,
    ) -> Result<Vec<LogicalPlanBuilder>> {
        let mut raw = Vec::new();
        if !tail.is_empty() {
            raw.push(scan(parquet_files(&self.store, tail, events::schema())?)?);
        }
        if !pending.is_empty() {
            raw.push(scan(MemTable::try_new(events::schema(), vec![pending])?)?);
        }
        Ok(raw)
    }

    /// `workspace`'s rows of `parts` (of schema `full`, decoded in
    /// memory), each part's cut to the days it is read for; `None` when a
    /// part is gone (replaced by a build since the manifest was read).
    async fn part_rows(
        &self,
        workspace: &str,
        parts: &PartDays,
        full: &SchemaRef,
    ) -> Result<Option<Vec<RecordBatch>>> {
        let mut rows = Vec::new();
        for (part, days) in parts {
            let Some(decoded) = self.parts.get(&self.store, part, full).await? else {
                return Ok(None);
            };
            if let Some(batch) = decoded.of(workspace) {
                rows.extend(of_days(&batch, days)?);
            }
        }
        Ok(Some(rows))
    }

    /// [`Rollups::part_rows`] as one scan, shaped by `shape` (an empty
    /// table when there is no row). The days are cut in memory rather than
    /// by a filter per part in the plan: one table instead of a union of
    /// one per set of days halved the planning of a dashboard query.
    async fn part_scans(
        &self,
        workspace: &str,
        parts: &PartDays,
        full: &SchemaRef,
        shape: impl Fn(LogicalPlanBuilder) -> Result<LogicalPlanBuilder>,
    ) -> Result<Option<LogicalPlanBuilder>> {
        let Some(rows) = self.part_rows(workspace, parts, full).await? else {
            return Ok(None);
        };
        Ok(Some(shape(scan(MemTable::try_new(
            Arc::clone(full),
            vec![rows],
        )?)?)?))
    }

    /// A plan answering `query` from a rollup and the raw events it does
    /// not cover, or `None` when no rollup serves it.
    pub async fn plan(&self, engine: &Engine, query: &Query) -> Result<Option<Compiled>> {
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
        // The rollup's buckets must re-group into the query's: range,
        // bucket width and origin on its bounds.
        let fits = |bucket_ms: i64| {
            let aligned = |ms: i64| ms.rem_euclid(bucket_ms) == 0;
            aligned(query.range.start_ms)
                && aligned(query.range.end_ms)
                && aligned(query.bucket.origin_ms())
                && query.bucket.width_ms().is_none_or(|w| w % bucket_ms == 0)
        };
        let manifest = self.manifest();
        let Some((built, at)) = manifest
            .rollups
            .iter()
            // Built by this version: older states may not decode.
            .filter(|(id, _)| self.current.contains(*id))
            .map(|(_, b)| b)
            .filter(|b| fits(b.spec.bucket_ms))
            .filter(|b| needed.iter().all(|c| b.spec.dims.contains(c)))
            .filter_map(|b| {
                let at: Option<Vec<usize>> = leaves
                    .iter()
                    .map(|l| b.spec.leaves.iter().position(|s| s == l))
                    .collect();
                Some((b, at?))
            })
            // The fewest dimensions, then the widest buckets: the fewest
            // rows to merge.
            .min_by_key(|(b, _)| (b.spec.dims.len(), std::cmp::Reverse(b.spec.bucket_ms)))
        else {
            return Ok(None);
        };
        // The rollup's states of the query's leaves only, as leaves 0..k.
        let sub = RollupSpec {
            dims: built.spec.dims.clone(),
            leaves: at.iter().map(|&j| built.spec.leaves[j].clone()).collect(),
            bucket_ms: built.spec.bucket_ms,
        };
        let (listed, pending) = self.listed_days(engine, query.range).await?;
        let Some(Split { parts, tail }) = split(built, listed) else {
            return Ok(None);
        };
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
        let Some(mut input) = self
            .part_scans(&query.workspace_id, &parts, &full, |b| {
                Ok(b.filter(range_filter.clone())?
                    .project(projection.clone())?)
            })
            .await?
        else {
            return Ok(None);
        };
        for r in self.raw_scans(&tail, pending)? {
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

impl Rollups {
    /// The `events` table as retention reads it (a workspace's utterances
    /// before `end_ms`: `time`, `workspace_id`, `event_type`, `stage`,
    /// `user_id`), one row per user, stage and UTC day, from the activity
    /// rollup plus the raw events it does not cover; `None` when it covers
    /// no day. `time` is the day's start, so week and first-seen
    /// computations on day bounds agree with the raw events.
    pub async fn activity_source(
        &self,
        engine: &Engine,
        workspace: &str,
        end_ms: i64,
    ) -> Result<Option<Arc<dyn TableSource>>> {
        let spec = super::activity_spec();
        let manifest = self.manifest();
        let Some(built) = manifest.rollups.get(&spec.id()) else {
            return Ok(None);
        };
        // Every event file: retention reads all history.
        let (mut listed, pending) = under_publish_lock(engine, self.event_files()).await?;
        let end_day = events::date_of_millis(end_ms);
        listed.retain(|day, _| *day <= end_day);
        let Some(Split { parts, tail }) = split(built, listed) else {
            return Ok(None);
        };
        let columns = |b: LogicalPlanBuilder| -> Result<LogicalPlanBuilder> {
            Ok(b.project(vec![
                col("time"),
                col("workspace_id"),
                lit("utterance").alias("event_type"),
                col("stage"),
                col("user_id"),
            ])?)
        };
        let ws = col("workspace_id").eq(lit(workspace));
        let full = built.spec.schema();
        let Some(mut input) = self
            .part_scans(workspace, &parts, &full, |b| {
                columns(b.filter(col("l0_rows").gt(lit(0i64)))?)
            })
            .await?
        else {
            return Ok(None);
        };
        for r in self.raw_scans(&tail, pending)? {
            let states = self.states_plan(
                &spec,
                r.filter(ws.clone().and(col("event_type").eq(lit("utterance"))))?,
            )?;
            input = input.union(columns(LogicalPlanBuilder::from(states))?.build()?)?;
        }
        let view = ViewTable::new(input.build()?, None);
        Ok(Some(provider_as_source(Arc::new(view))))
    }
}

impl Rollups {
    /// The steps states of `workspace`'s sessions on the days `range`
    /// touches (every step of those days, with its time, so the caller
    /// cuts the range exactly), from the steps rollup plus the raw events
    /// it does not cover; `None` when it covers none of those days. A
    /// session has one row per day, part and tail it appears in: the
    /// caller merges them (most have exactly one). The parts' rows are
    /// handed over as they are held in memory, not through a plan: a
    /// filter and a projection copied every state once more.
    pub async fn session_steps(
        &self,
        engine: &Engine,
        workspace: &str,
        range: crate::definition::TimeRange,
    ) -> Result<Option<SessionRows>> {
        let spec = super::steps_spec();
        let manifest = self.manifest();
        let Some(built) = manifest.rollups.get(&spec.id()) else {
            return Ok(None);
        };
        let (listed, pending) = self.listed_days(engine, range).await?;
        let Some(Split { parts, tail }) = split(built, listed) else {
            return Ok(None);
        };
        let full = built.spec.schema();
        let columns = [full.index_of("session_id"), full.index_of("l0_steps")];
        let [Ok(session), Ok(steps)] = columns else {
            return Err(Error::Column("session_id, l0_steps".into()));
        };
        let Some(rows) = self.part_rows(workspace, &parts, &full).await? else {
            return Ok(None);
        };
        let rows = rows
            .iter()
            .map(|b| b.project(&[session, steps]))
            .collect::<Result<Vec<_>, _>>()
            .map_err(datafusion::error::DataFusionError::from)?;
        let mine = col("workspace_id")
            .eq(lit(workspace))
            .and(col("session_id").is_not_null());
        let in_range = col("time")
            .gt_eq(crate::compile::ts(range.start_ms))
            .and(col("time").lt(crate::compile::ts(range.end_ms)));
        let mut tail_plan: Option<LogicalPlanBuilder> = None;
        for r in self.raw_scans(&tail, pending)? {
            let utterances = col("event_type").eq(lit("utterance"));
            let states = self.states_plan(
                &spec,
                r.filter(mine.clone().and(utterances).and(in_range.clone()))?,
            )?;
            let b = LogicalPlanBuilder::from(states)
                .project(vec![col("session_id"), col("l0_steps")])?;
            tail_plan = Some(match tail_plan {
                Some(t) => t.union(b.build()?)?,
                None => b,
            });
        }
        Ok(Some(SessionRows {
            parts: rows,
            tail: tail_plan.map(LogicalPlanBuilder::build).transpose()?,
        }))
    }
}
