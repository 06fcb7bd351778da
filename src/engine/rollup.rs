//! Rollups: partial aggregate states of the built-in definitions per
//! (workspace, 15-minute bucket, rollup dimensions), kept as Parquet in the
//! object store, and answers that merge them with the raw events they do
//! not cover yet.
//!
//! - **What**: [`builtin_specs`] derives, from the skill Metrics catalog,
//!   one rollup per set of dimensions (`stage`, and `stage` with each other
//!   column a metric is filtered or grouped by), holding the states of every
//!   leaf measure that uses it ([`crate::compile::states`]). A rollup is
//!   named by a hash of its dimensions and leaves: a changed definition has
//!   new leaf keys, and is answered raw until a build makes its rollup.
//! - **Coverage** is by ingested file, per UTC day: the manifest (a
//!   versioned catalog document, written with conditional puts) lists, per
//!   rollup and day, the event files its parts were built from. An answer
//!   reads those parts plus every file of the day not in the list (late
//!   events are new files) plus the unpublished rows. A day whose covered
//!   files are no longer all there (compaction merged them) is read raw
//!   until the next build rebuilds it.
//! - **Builds** (after a flush, after `generate`, `metricstore rollup`)
//!   add one small part per day with new files; a day with more than
//!   [`MAX_PARTS`] parts has them merged into one. Parts and the id
//!   dictionary are written before the manifest names them, so a killed
//!   build leaves the previous version readable.
//!
//! One writer per store is assumed (as for flush and compaction).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use datafusion::arrow::array::{AsArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::memory::MemTable;
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::{AggregateUDF, Expr, LogicalPlan, LogicalPlanBuilder, col};
use serde::{Deserialize, Serialize};

use super::{Engine, Error, Result};
use crate::compile::states::{
    LeafSpec, STATE_BUCKET_MS, compile_from_states, merge_aggregates, state_aggregates,
    state_fields, state_groups,
};
use crate::compile::{Compiled, events_predicate};
use crate::definition::{Dimension, Field as DefField, Query, TimeRange, builtin};
use crate::storage::catalog::Catalog;
use crate::storage::events::{self, DAY_MS, EVENTS_DIR};
use crate::storage::{Store, key_segment};
use crate::udaf::idset::{IdDictionary, idset_state_udaf};

/// Bumped when the layout of states changes: old rollups are then unused.
const STATE_VERSION: u32 = 1;
/// Parts a rollup keeps per day before a build merges them.
pub const MAX_PARTS: usize = 4;
const ROLLUPS_DIR: &str = "rollups";
const IDS_DIR: &str = "rollups/ids";
const MANIFEST: &str = "manifest";

/// One rollup: its dimension columns and the leaves whose states it keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollupSpec {
    pub dims: Vec<String>,
    pub leaves: Vec<LeafSpec>,
}

impl RollupSpec {
    pub fn id(&self) -> String {
        let text = serde_json::to_string(&(STATE_VERSION, self)).expect("specs serialise");
        crate::storage::sha256_hex(text.as_bytes())[..16].to_string()
    }

    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(state_fields(&self.dims, &self.leaves)))
    }
}

/// The column a dimension reads, if it is a plain column (attributes and
/// the data source are not kept in rollups).
fn column_of(d: &Dimension) -> Option<String> {
    match d {
        Dimension::Field(DefField::Column(c))
            if crate::definition::STRING_COLUMNS.contains(&c.as_str()) =>
        {
            Some(c.clone())
        }
        Dimension::Country => Some("locale".into()),
        _ => None,
    }
}

/// The rollups of the skill Metrics catalog: for every metric, its leaves
/// (for each stat it supports) under `stage` alone and under `stage` with
/// each other column it can be filtered or grouped by.
pub fn builtin_specs() -> Vec<RollupSpec> {
    let mut by_dims: BTreeMap<Vec<String>, Vec<LeafSpec>> = BTreeMap::new();
    for ns in builtin::namespaces() {
        for m in &ns.metrics {
            let cols: BTreeSet<String> = m
                .supported_dimensions
                .iter()
                .chain(&m.supported_group_by_options)
                .filter_map(|d| column_of(&builtin::dimension(d)))
                .collect();
            let mut leaves = LeafSpec::leaves(&m.measure);
            for stat in &m.supported_stats {
                leaves.extend(LeafSpec::leaves(&m.measure_for_stat(stat)));
            }
            let base: Vec<String> = cols.iter().filter(|c| *c == "stage").cloned().collect();
            let mut sets = vec![base.clone()];
            for c in cols.iter().filter(|c| *c != "stage") {
                let mut s = base.clone();
                s.push(c.clone());
                s.sort();
                sets.push(s);
            }
            for s in sets {
                let entry = by_dims.entry(s).or_default();
                for l in &leaves {
                    if !entry.contains(l) {
                        entry.push(l.clone());
                    }
                }
            }
        }
    }
    by_dims
        .into_iter()
        .map(|(dims, leaves)| RollupSpec { dims, leaves })
        .collect()
}

/// What a rollup's parts cover on one day.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Covered {
    /// Event files (relative paths) the parts were built from.
    pub files: BTreeSet<String>,
    /// Part files (relative paths).
    pub parts: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Built {
    pub spec: RollupSpec,
    pub days: BTreeMap<String, Covered>,
}

/// Every rollup built, by id.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub rollups: BTreeMap<String, Built>,
}

/// What a build did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BuildReport {
    pub days: usize,
    pub files: usize,
    pub parts: usize,
    pub rows: usize,
    pub merged: usize,
}

/// Which path answered a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerPath {
    Raw,
    Rollup,
}

impl AnswerPath {
    pub fn name(self) -> &'static str {
        match self {
            AnswerPath::Raw => "raw",
            AnswerPath::Rollup => "rollup",
        }
    }
}

/// The rollups of one store.
#[derive(Debug)]
pub struct Rollups {
    store: Store,
    catalog: Catalog,
    dictionary: Arc<IdDictionary>,
    idset_state: Arc<AggregateUDF>,
    manifest: RwLock<Arc<Manifest>>,
    specs: Vec<RollupSpec>,
    building: tokio::sync::Mutex<()>,
}

fn parquet_files(store: &Store, files: &[String], schema: SchemaRef) -> Result<ListingTable> {
    let urls = files
        .iter()
        .map(|f| ListingTableUrl::parse(store.file_url(f)))
        .collect::<datafusion::error::Result<Vec<_>>>()?;
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(schema);
    Ok(ListingTable::try_new(config)?)
}

fn scan(table: impl datafusion::datasource::TableProvider + 'static) -> Result<LogicalPlanBuilder> {
    Ok(LogicalPlanBuilder::scan(
        "states",
        provider_as_source(Arc::new(table)),
        None,
    )?)
}

fn storage_error<E: std::fmt::Display>(e: E) -> crate::storage::Error {
    crate::storage::Error::Corrupt {
        path: format!("catalog/rollups/{MANIFEST}"),
        reason: e.to_string(),
    }
}

/// `batch` with `schema`'s types (an aggregate's columns may be typed or
/// marked a little differently from the parts' schema).
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, c)| datafusion::arrow::compute::cast(c, f.data_type()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(datafusion::error::DataFusionError::from)?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)
        .map_err(datafusion::error::DataFusionError::from)?)
}

/// One Parquet file of `batches` (zstd, with statistics).
fn encode(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::basic::{Compression, ZstdLevel};
    use datafusion::parquet::file::properties::WriterProperties;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut buf = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buf, Arc::clone(schema), Some(props))
        .map_err(datafusion::error::DataFusionError::from)?;
    for b in batches {
        writer
            .write(b)
            .map_err(datafusion::error::DataFusionError::from)?;
    }
    writer
        .close()
        .map_err(datafusion::error::DataFusionError::from)?;
    Ok(buf)
}

/// The UTC days `range` touches, as `YYYY-MM-DD`.
fn days_of(range: TimeRange) -> Vec<String> {
    let first = range.start_ms.div_euclid(DAY_MS);
    let last = (range.end_ms - 1).div_euclid(DAY_MS);
    (first..=last)
        .map(|d| events::date_of_millis(d * DAY_MS))
        .collect()
}

impl Rollups {
    /// Opens the rollups of `store`: the manifest and the id dictionaries.
    pub async fn open(store: &Store) -> Result<Arc<Self>> {
        let catalog = Catalog::new(store.clone(), "rollups");
        let (_, manifest) = catalog
            .load::<Manifest>(MANIFEST)
            .await
            .map_err(|e| Error::Storage(storage_error(e)))?;
        let dictionary = Arc::new(IdDictionary::default());
        let mut parts: Vec<(String, usize, String)> = Vec::new();
        for meta in store.list(IDS_DIR).await? {
            let rel = store.relative(&meta.location);
            let mut segs = rel.rsplit('/');
            let (Some(file), Some(ws)) = (segs.next(), segs.next()) else {
                continue;
            };
            if let Some(start) = file.strip_suffix(".parquet").and_then(|s| s.parse().ok()) {
                parts.push((ws.to_string(), start, rel));
            }
        }
        parts.sort();
        for (_, start, rel) in parts {
            let batches = store
                .read_parquet(&store.path(&rel))
                .await?
                .unwrap_or_default();
            let mut ws = None;
            let mut names = Vec::new();
            for b in &batches {
                let w = b.column(0).as_string::<i32>();
                let ids = b.column(1).as_string::<i32>();
                for i in 0..b.num_rows() {
                    ws.get_or_insert_with(|| w.value(i).to_string());
                    names.push(ids.value(i).to_string());
                }
            }
            if let Some(ws) = ws {
                dictionary
                    .load(&ws, start, names)
                    .map_err(|e| Error::BadFile {
                        path: rel.clone(),
                        reason: e,
                    })?;
            }
        }
        Ok(Arc::new(Self {
            store: store.clone(),
            catalog,
            idset_state: idset_state_udaf(Arc::clone(&dictionary)),
            dictionary,
            manifest: RwLock::new(Arc::new(manifest)),
            specs: builtin_specs(),
            building: tokio::sync::Mutex::new(()),
        }))
    }

    pub fn manifest(&self) -> Arc<Manifest> {
        Arc::clone(&self.manifest.read().expect("not poisoned"))
    }

    pub fn specs(&self) -> &[RollupSpec] {
        &self.specs
    }

    /// Ids numbered in the dictionary (all workspaces).
    pub fn dictionary_len(&self) -> usize {
        self.dictionary.len()
    }

    /// The event files of `day` (relative paths), sorted.
    async fn day_files(&self, day: &str) -> Result<BTreeSet<String>> {
        Ok(self
            .store
            .list(&format!("{EVENTS_DIR}/{}={day}/", events::DATE_COLUMN))
            .await?
            .iter()
            .map(|m| self.store.relative(&m.location))
            .filter(|p| p.ends_with(".parquet"))
            .collect())
    }

    /// The days that have event files.
    async fn event_days(&self) -> Result<BTreeSet<String>> {
        let prefix = format!("{}=", events::DATE_COLUMN);
        Ok(self
            .store
            .list(EVENTS_DIR)
            .await?
            .iter()
            .filter_map(|m| {
                self.store
                    .relative(&m.location)
                    .split('/')
                    .find_map(|s| s.strip_prefix(&prefix).map(str::to_string))
            })
            .collect())
    }

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
        self.states_plan(spec, scan(table)?)
    }

    /// `input` (events) aggregated to `spec`'s states.
    fn states_plan(&self, spec: &RollupSpec, input: LogicalPlanBuilder) -> Result<LogicalPlan> {
        let aggregates = state_aggregates(&spec.leaves, &self.idset_state)?;
        let schema = spec.schema();
        // Columns in the order of the parts' schema, so the two union.
        let plan = input
            .aggregate(state_groups(&spec.dims), aggregates)?
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
        let bytes = encode(&schema, &batches)?;
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
    /// workspace named by its first number.
    async fn persist_dictionary(&self) -> Result<()> {
        for (ws, start, names) in self.dictionary.unpersisted() {
            let schema = Arc::new(Schema::new(vec![
                Field::new("workspace_id", DataType::Utf8, false),
                Field::new("id", DataType::Utf8, false),
            ]));
            let n = names.len();
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(StringArray::from(vec![ws.as_str(); n])),
                    Arc::new(StringArray::from(names)),
                ],
            )
            .map_err(datafusion::error::DataFusionError::from)?;
            let bytes = encode(&schema, &[batch])?;
            let rel = format!("{IDS_DIR}/{}/{start:012}.parquet", key_segment(&ws));
            self.store
                .put_durable(&self.store.path(&rel), bytes)
                .await?;
            self.dictionary.mark_persisted(&ws, start + n);
        }
        Ok(())
    }

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
        for day in days_of(query.range) {
            let files = self.day_files(&day).await?;
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
