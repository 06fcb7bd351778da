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
    Rollups, conform, encode, parquet_files, scan, storage_error,
};
use crate::compile::states::{any_selection, merge_aggregates, state_aggregates, state_groups};
use crate::engine::{Engine, Error, Result};
use crate::storage::events;
use crate::storage::key_segment;

/// Id dictionary files a workspace keeps before they are merged.
const MAX_ID_PARTS: usize = 32;

impl Rollups {
    /// Builds or extends the rollups of `days` (all days with events when
    /// `None`): states of the files each rollup does not cover yet.
    pub async fn build(&self, engine: &Engine, days: Option<Vec<String>>) -> Result<BuildReport> {
        let _one = self.building.lock().await;
        let days: Vec<String> = match days {
            Some(d) => d,
            None => self.event_days().await?.into_iter().collect(),
        };
        let mut report = BuildReport::default();
        for day in days {
            let files = self.day_files(&day).await?;
            let manifest = self.manifest();
            let mut changes: Vec<(String, RollupSpec, Covered)> = Vec::new();
            let mut stale: Vec<String> = Vec::new();
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
                    let plan = self.states_of_files(spec, &new)?;
                    let batches = engine.execute(plan).await?;
                    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                    if rows > 0 {
                        covered
                            .parts
                            .push(self.write_part(&id, &day, spec, &batches).await?);
                        report.parts += 1;
                        report.rows += rows;
                    }
                    report.files += new.len();
                    covered.files.extend(new);
                }
                if covered.parts.len() > MAX_PARTS {
                    let plan = self.merged_parts(spec, &covered.parts)?;
                    let batches = engine.execute(plan).await?;
                    let part = self.write_part(&id, &day, spec, &batches).await?;
                    stale.extend(std::mem::replace(&mut covered.parts, vec![part]));
                    report.merged += 1;
                }
                changes.push((id, spec.clone(), covered));
            }
            if changes.is_empty() {
                continue;
            }
            report.days += 1;
            self.persist_dictionary().await?;
            let next = self
                .catalog
                .update(MANIFEST, |m: &mut Manifest| {
                    for (id, spec, covered) in &changes {
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
                .map_err(|e| Error::Storage(storage_error(e)))?;
            *self.manifest.write().expect("not poisoned") = Arc::new(next);
            // Replaced parts are no longer named: remove them (a part left
            // by a failure here is only unused space).
            for part in stale {
                if let Err(e) = self.store.delete_if_exists(&self.store.path(&part)).await {
                    tracing::warn!(%part, error = %e, "could not delete a replaced rollup part");
                }
            }
        }
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

    /// The plan merging `parts` of `spec` into one row per group.
    fn merged_parts(&self, spec: &RollupSpec, parts: &[String]) -> Result<LogicalPlan> {
        let table = parquet_files(&self.store, parts, spec.schema())?;
        let mut groups = vec![col("workspace_id"), col("time")];
        groups.extend(spec.dims.iter().map(|d| col(d.as_str())));
        Ok(scan(table)?
            .aggregate(groups, merge_aggregates(&spec.leaves, &self.idset_state))?
            .build()?)
    }

    async fn write_part(
        &self,
        id: &str,
        day: &str,
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
            "{ROLLUPS_DIR}/{id}/date={day}/{}.parquet",
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
