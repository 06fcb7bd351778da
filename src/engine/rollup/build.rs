//! Building rollups: the states of the event files a rollup does not
//! cover yet, one part per day; parts merged when a day has too many; the
//! id dictionary and then the manifest written, in that order.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder, col};

use super::{
    BuildReport, Built, Covered, IDS_DIR, MANIFEST, MAX_PARTS, Manifest, ROLLUPS_DIR, RollupSpec,
    Rollups, conform, days_predicate, encode, manifest_error, parquet_files, scan,
};
use crate::compile::states::{any_selection, merge_aggregates, state_aggregates, state_groups};
use crate::definition::WEEK_ORIGIN_MS;
use crate::engine::{Engine, Result};
use crate::storage::events::{self, DAY_MS};
use crate::storage::key_segment;

/// Id dictionary files a workspace keeps before they are merged.
const MAX_ID_PARTS: usize = 32;

/// States a build made for a day: the rollup, the event files they
/// cover, the rows.
type Made<'a> = (&'a RollupSpec, Vec<String>, Vec<RecordBatch>);

impl Rollups {
    /// Builds or extends the rollups of `days` (all days with events when
    /// `None`): states of the files each rollup does not cover yet.
    pub async fn build(&self, engine: &Engine, days: Option<Vec<String>>) -> Result<BuildReport> {
        let _one = self.building.lock().await;
        let listing = match days {
            None => self.event_files().await?,
            Some(days) => {
                let mut listing = BTreeMap::new();
                for day in days {
                    let files = self.day_files(&day).await?;
                    listing.insert(day, files);
                }
                listing
            }
        };
        let mut report = BuildReport::default();
        for (day, files) in listing {
            let manifest = self.manifest();
            let mut changes: Vec<(String, RollupSpec, Covered)> = Vec::new();
            let mut stale: Vec<String> = Vec::new();
            let mut made: Vec<Made<'_>> = Vec::new();
            for spec in &self.specs {
                let id = spec.id();
                let prev = manifest
                    .rollups
                    .get(&id)
                    .and_then(|b| b.days.get(&day))
                    .cloned();
                let mut covered = match prev {
                    Some(p) if p.files.is_subset(&files) => p,
                    Some(p) => {
                        // Compacted (or deleted) event files: rebuild the day.
                        stale.extend(p.parts);
                        Covered::default()
                    }
                    None => Covered::default(),
                };
                let new: Vec<String> = files.difference(&covered.files).cloned().collect();
                if new.is_empty() && covered.parts.len() <= MAX_PARTS {
                    if manifest.rollups.get(&id).and_then(|b| b.days.get(&day)) != Some(&covered) {
                        changes.push((id, spec.clone(), covered));
                    }
                    continue;
                }
                if !new.is_empty() {
                    let covered_now = |fid: &str| {
                        changes
                            .iter()
                            .find(|(id, _, _)| id == fid)
                            .map(|(_, _, c)| c)
                            .or_else(|| manifest.rollups.get(fid).and_then(|b| b.days.get(&day)))
                    };
                    let plan = match self.finer_states(spec, &day, &new, &made, covered_now)? {
                        Some(rows) => self.coarsened(spec, rows)?,
                        None => self.states_of_files(spec, &new)?,
                    };
                    let batches = engine.execute_local(plan).await?;
                    made.push((spec, new.clone(), batches.clone()));
                    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                    if rows > 0 {
                        covered.parts.push(
                            self.write_part(&id, &format!("date={day}"), spec, &batches)
                                .await?,
                        );
                        report.parts += 1;
                        report.rows += rows;
                    }
                    report.files += new.len();
                    covered.files.extend(new);
                }
                if covered.parts.len() > MAX_PARTS {
                    let plan =
                        self.merged_parts(spec, &covered.parts, std::slice::from_ref(&day))?;
                    let batches = engine.execute_local(plan).await?;
                    let part = self
                        .write_part(&id, &format!("date={day}"), spec, &batches)
                        .await?;
                    stale.extend(std::mem::replace(&mut covered.parts, vec![part]));
                    report.merged += 1;
                }
                changes.push((id, spec.clone(), covered));
            }
            if changes.is_empty() {
                continue;
            }
            report.days += 1;
            self.commit(
                changes
                    .into_iter()
                    .map(|(id, spec, covered)| (id, spec, day.clone(), covered))
                    .collect(),
                stale,
            )
            .await?;
        }
        self.merge_weeks(engine, &mut report).await?;
        Ok(report)
    }

    /// The plan of states of `files` (event files) for `spec`.
    fn states_of_files(&self, spec: &RollupSpec, files: &[String]) -> Result<LogicalPlan> {
        let table = parquet_files(&self.store, files, events::schema())?;
        let mut input = scan(table)?;
        if let Some(any) = any_selection(&spec.leaves)? {
            input = input.filter(any)?;
        }
        self.states_plan(spec, input)
    }

    /// States of a finer rollup (same dimensions and leaves) for exactly
    /// the files `new` of `day`: those this build just `made`, else the
    /// parts of a finer rollup whose coverage of the day (`covered_now`,
    /// by rollup id) is exactly `new` (a coarser rollup added to existing
    /// ones); `None` when neither exists (then from the events).
    fn finer_states<'a>(
        &self,
        spec: &RollupSpec,
        day: &str,
        new: &[String],
        made: &[Made<'_>],
        covered_now: impl Fn(&str) -> Option<&'a Covered>,
    ) -> Result<Option<LogicalPlanBuilder>> {
        if let Some((finer, _, rows)) = made
            .iter()
            .filter(|(f, files, _)| spec.coarsens(f) && files == new)
            .max_by_key(|(f, _, _)| f.bucket_ms)
        {
            let full = finer.schema();
            let rows = rows
                .iter()
                .map(|b| conform(b, &full))
                .collect::<Result<Vec<_>>>()?;
            let table = datafusion::datasource::memory::MemTable::try_new(full, vec![rows])?;
            return Ok(Some(scan(table)?));
        }
        let same_files =
            |c: &Covered| c.files.len() == new.len() && new.iter().all(|n| c.files.contains(n));
        let from_parts = self
            .specs
            .iter()
            .filter(|f| spec.coarsens(f))
            .filter_map(|f| {
                let covered = covered_now(&f.id())?;
                (same_files(covered) && !covered.parts.is_empty()).then_some((f, covered))
            })
            .max_by_key(|(f, _)| f.bucket_ms);
        match from_parts {
            Some((finer, covered)) => {
                let table = parquet_files(&self.store, &covered.parts, finer.schema())?;
                let day = [day.to_string()];
                Ok(Some(scan(table)?.filter(days_predicate(&day))?))
            }
            None => Ok(None),
        }
    }

    /// Rows of a finer rollup's states (same dimensions and leaves)
    /// re-grouped into `spec`'s coarser buckets.
    fn coarsened(&self, spec: &RollupSpec, rows: LogicalPlanBuilder) -> Result<LogicalPlan> {
        let mut groups = state_groups(&[], spec.bucket_ms);
        groups.extend(spec.dims.iter().map(|d| col(d.as_str())));
        let schema = spec.schema();
        Ok(rows
            .aggregate(groups, merge_aggregates(&spec.leaves, &self.idset_state))?
            .project(schema.fields().iter().map(|f| col(f.name())))?
            .build()?)
    }

    /// `input` (events) aggregated to `spec`'s states.
    pub(super) fn states_plan(
        &self,
        spec: &RollupSpec,
        input: LogicalPlanBuilder,
    ) -> Result<LogicalPlan> {
        let aggregates = state_aggregates(&spec.leaves, &self.idset_state)?;
        let schema = spec.schema();
        // Columns in the order of the parts' schema, so the two union.
        let plan = input
            .aggregate(state_groups(&spec.dims, spec.bucket_ms), aggregates)?
            .project(schema.fields().iter().map(|f| col(f.name())))?
            .build()?;
        Ok(plan)
    }

    /// The plan merging `parts` of `spec` into one row per group, keeping
    /// only the rows of `days` (a week's part holds other days too).
    fn merged_parts(
        &self,
        spec: &RollupSpec,
        parts: &[String],
        days: &[String],
    ) -> Result<LogicalPlan> {
        let table = parquet_files(&self.store, parts, spec.schema())?;
        let mut groups = vec![col("workspace_id"), col("time")];
        groups.extend(spec.dims.iter().map(|d| col(d.as_str())));
        Ok(scan(table)?
            .filter(days_predicate(days))?
            .aggregate(groups, merge_aggregates(&spec.leaves, &self.idset_state))?
            .build()?)
    }

    /// Merges the single-day parts of each past week (Monday to Sunday,
    /// UTC) into one part per rollup and week: a month's query then opens
    /// a few files instead of one per day.
    async fn merge_weeks(&self, engine: &Engine, report: &mut BuildReport) -> Result<()> {
        // Monday 00:00 UTC of this week: only weeks before it are whole.
        let now = chrono::Utc::now().timestamp_millis();
        let this_week = now - (now - WEEK_ORIGIN_MS).rem_euclid(7 * DAY_MS);
        let manifest = self.manifest();
        let mut changes: Vec<(String, RollupSpec, String, Covered)> = Vec::new();
        let mut stale = Vec::new();
        for spec in &self.specs {
            let id = spec.id();
            let Some(built) = manifest.rollups.get(&id) else {
                continue;
            };
            let mut weeks: BTreeMap<i64, Vec<(&String, &Covered)>> = BTreeMap::new();
            for (day, c) in &built.days {
                let single = c.parts.len() == 1 && c.parts[0].contains("/date=");
                let Ok(d) = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d") else {
                    continue;
                };
                let ms = events::day_start_millis(d);
                let week = ms - (ms - WEEK_ORIGIN_MS).rem_euclid(7 * DAY_MS);
                if single && week < this_week {
                    weeks.entry(week).or_default().push((day, c));
                }
            }
            for (week, days) in weeks.into_iter().filter(|(_, d)| d.len() >= 2) {
                let parts: Vec<String> = days.iter().map(|(_, c)| c.parts[0].clone()).collect();
                let names: Vec<String> = days.iter().map(|(d, _)| (*d).clone()).collect();
                let batches = engine
                    .execute_local(self.merged_parts(spec, &parts, &names)?)
                    .await?;
                let label = format!("week={}", events::date_of_millis(week));
                let part = self.write_part(&id, &label, spec, &batches).await?;
                for (day, c) in days {
                    changes.push((
                        id.clone(),
                        spec.clone(),
                        day.clone(),
                        Covered {
                            files: c.files.clone(),
                            parts: vec![part.clone()],
                        },
                    ));
                }
                stale.extend(parts);
                report.merged += 1;
            }
        }
        if changes.is_empty() {
            return Ok(());
        }
        self.commit(changes, stale).await
    }

    /// Writes `changes` (rollup, spec, day, coverage) to the manifest, then
    /// deletes the `stale` parts no day names any more.
    async fn commit(
        &self,
        changes: Vec<(String, RollupSpec, String, Covered)>,
        mut stale: Vec<String>,
    ) -> Result<()> {
        self.persist_dictionary().await?;
        // Rollups of other specs (a changed definition, an older state
        // layout) are never answered from: they leave the manifest, and
        // their parts are removed.
        let current = &self.current;
        stale.extend(
            self.manifest()
                .rollups
                .iter()
                .filter(|(id, _)| !current.contains(*id))
                .flat_map(|(_, b)| b.days.values())
                .flat_map(|c| c.parts.iter().cloned()),
        );
        let next = self
            .catalog
            .update(MANIFEST, |m: &mut Manifest| {
                m.rollups.retain(|id, _| current.contains(id));
                for (id, spec, day, covered) in &changes {
                    m.rollups
                        .entry(id.clone())
                        .or_insert_with(|| Built {
                            spec: spec.clone(),
                            days: BTreeMap::new(),
                        })
                        .days
                        .insert(day.clone(), covered.clone());
                }
                Ok::<Manifest, std::convert::Infallible>(m.clone())
            })
            .await
            .map_err(manifest_error)?;
        let named: std::collections::BTreeSet<&String> = next
            .rollups
            .values()
            .flat_map(|b| b.days.values())
            .flat_map(|c| &c.parts)
            .collect();
        // Replaced parts no day names are removed (a part left by a
        // failure here is only unused space).
        for part in stale.iter().filter(|p| !named.contains(p)) {
            if let Err(e) = self.store.delete_if_exists(&self.store.path(part)).await {
                tracing::warn!(%part, error = %e, "could not delete a replaced rollup part");
            }
        }
        *self.manifest.write().expect("not poisoned") = Arc::new(next);
        Ok(())
    }

    /// Writes one part under `rollups/<id>/<dir>/` (`date=D` for a day's
    /// part, `week=D` for a week's).
    async fn write_part(
        &self,
        id: &str,
        dir: &str,
        spec: &RollupSpec,
        batches: &[RecordBatch],
    ) -> Result<String> {
        let schema = spec.schema();
        let batches = batches
            .iter()
            .map(|b| conform(b, &schema))
            .collect::<Result<Vec<_>>>()?;
        // Sorted by workspace and time, in small row groups: a query of
        // one workspace skips the others' row groups by their statistics.
        let all = datafusion::arrow::compute::concat_batches(&schema, &batches)
            .map_err(datafusion::error::DataFusionError::from)?;
        let order = datafusion::arrow::compute::lexsort_to_indices(
            &[
                datafusion::arrow::compute::SortColumn {
                    values: Arc::clone(all.column(0)),
                    options: None,
                },
                datafusion::arrow::compute::SortColumn {
                    values: Arc::clone(all.column(1)),
                    options: None,
                },
            ],
            None,
        )
        .map_err(datafusion::error::DataFusionError::from)?;
        let sorted = datafusion::arrow::compute::take_record_batch(&all, &order)
            .map_err(datafusion::error::DataFusionError::from)?;
        let bytes = encode(&schema, &[sorted])?;
        let rel = format!(
            "{ROLLUPS_DIR}/{id}/{dir}/{}.parquet",
            uuid::Uuid::new_v4().simple()
        );
        self.store
            .put_durable(&self.store.path(&rel), bytes)
            .await?;
        Ok(rel)
    }

    /// Writes the ids numbered since the last write, one file per
    /// workspace named by its first number; a workspace with more than
    /// [`MAX_ID_PARTS`] files has them merged into one (named 0, written
    /// before the others are deleted, so a reader always finds every name).
    async fn persist_dictionary(&self) -> Result<()> {
        for (ws, start, names) in self.dictionary.unpersisted() {
            let n = names.len();
            let dir = format!("{IDS_DIR}/{}", key_segment(&ws));
            self.write_ids(&format!("{dir}/{start:012}.parquet"), &ws, names)
                .await?;
            self.dictionary.mark_persisted(&ws, start + n);
            let files = self.store.list(&dir).await?;
            if files.len() > MAX_ID_PARTS {
                let merged = format!("{dir}/{:012}.parquet", 0);
                self.write_ids(&merged, &ws, self.dictionary.persisted_names(&ws))
                    .await?;
                for f in files {
                    if self.store.relative(&f.location) != merged {
                        self.store.delete_if_exists(&f.location).await?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn write_ids(&self, rel: &str, ws: &str, names: Vec<String>) -> Result<()> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("workspace_id", DataType::Utf8, false),
            Field::new("id", DataType::Utf8, false),
        ]));
        let n = names.len();
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(vec![ws; n])),
                Arc::new(StringArray::from(names)),
            ],
        )
        .map_err(datafusion::error::DataFusionError::from)?;
        let bytes = encode(&schema, &[batch])?;
        self.store.put_durable(&self.store.path(rel), bytes).await?;
        Ok(())
    }
}
