//! Rollups: partial aggregate states of the built-in definitions per
//! (workspace, 15-minute bucket, rollup dimensions), kept as Parquet in the
//! object store, and answers that merge them with the raw events they do
//! not cover yet.
//!
//! - **What**: [`builtin_specs`] derives, from the skill Metrics catalog,
//!   one rollup per set of dimensions (`stage`, and `stage` with each other
//!   column a metric is filtered or grouped by), holding the states of every
//!   leaf measure that uses it ([`crate::compile::states`]), plus the
//!   activity rollup ([`activity_spec`]: users per stage and day, for
//!   retention). A rollup is named by a hash of its dimensions, leaves and
//!   bucket: a changed definition has new leaf keys, and is answered raw
//!   until a build makes its rollup.
//! - **Coverage** is by ingested file, per UTC day: the manifest (a
//!   versioned catalog document, written with conditional puts) lists, per
//!   rollup and day, the event files its parts were built from. An answer
//!   reads those parts plus every file of the day not in the list (late
//!   events are new files) plus the unpublished rows. A day whose covered
//!   files are no longer all there (compaction merged them) is read raw
//!   until the next build rebuilds it.
//! - **Builds** (periodically in `serve`, after `generate`, `metricstore
//!   rollup`) add one small part per day with new files; a day with more
//!   than [`MAX_PARTS`] parts has them merged into one, and the day parts
//!   of each past week are merged into one week part (read, for each day,
//!   only while that day's coverage names it). Parts and the id dictionary
//!   are written before the manifest names them, so a killed build leaves
//!   the previous version readable.
//!
//! One writer per store is assumed (as for flush and compaction).

mod answer;
pub use answer::SessionRows;
mod build;
mod cache;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::{AggregateUDF, LogicalPlanBuilder, col};
use serde::{Deserialize, Serialize};

use super::{Error, Result};
use crate::compile::states::{LeafSpec, STATE_BUCKET_MS, state_fields};
use crate::definition::{Dimension, Field as DefField, TimeRange, builtin};
use crate::storage::Store;
use crate::storage::catalog::Catalog;
use crate::storage::events::{self, DAY_MS, EVENTS_DIR};
use crate::udaf::idset::{IdDictionary, idset_state_udaf};

/// Bumped when the layout of states changes: old rollups are then unused.
const STATE_VERSION: u32 = 2;
/// Coarser buckets each 15-minute rollup is also kept in: an hourly or
/// daily query over a month then merges 720 or 30 states per group instead
/// of 2,880 (a quarter of the 15-minute rows, and 1% of them).
const COARSE_BUCKETS_MS: [i64; 2] = [3_600_000, DAY_MS];
/// Parts a rollup keeps per day before a build merges them.
pub const MAX_PARTS: usize = 4;
const ROLLUPS_DIR: &str = "rollups";
/// Rows per row group of a part: small, so that the row groups of other
/// workspaces are skipped by their statistics.
const PART_ROW_GROUP_ROWS: usize = 4096;
const IDS_DIR: &str = "rollups/ids";
const MANIFEST: &str = "manifest";

/// One rollup: its dimension columns and the leaves whose states it keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollupSpec {
    pub dims: Vec<String>,
    pub leaves: Vec<LeafSpec>,
    /// Width of its time buckets: 15 minutes, or a day for the activity
    /// rollup.
    pub bucket_ms: i64,
}

impl RollupSpec {
    pub fn id(&self) -> String {
        let text = serde_json::to_string(&(STATE_VERSION, self)).expect("specs serialise");
        crate::storage::sha256_hex(text.as_bytes())[..16].to_string()
    }

    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(state_fields(&self.dims, &self.leaves)))
    }

    /// Whether this rollup's states re-group `finer`'s: the same
    /// dimensions and leaves in buckets that are whole numbers of its.
    fn coarsens(&self, finer: &RollupSpec) -> bool {
        self.dims == finer.dims
            && self.leaves == finer.leaves
            && self.bucket_ms > finer.bucket_ms
            && self.bucket_ms % finer.bucket_ms == 0
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
    // Each finest rollup before its coarser copies: a build derives the
    // copies from the states it just made.
    by_dims
        .into_iter()
        .flat_map(|(dims, leaves)| {
            std::iter::once(STATE_BUCKET_MS)
                .chain(COARSE_BUCKETS_MS)
                .map(move |bucket_ms| RollupSpec {
                    dims: dims.clone(),
                    leaves: leaves.clone(),
                    bucket_ms,
                })
        })
        .chain([activity_spec(), steps_spec()])
        .collect()
}

/// Each session's utterances: one row per (workspace, UTC day, session)
/// with its steps, times and users, the input of paths without a scan and
/// a window over every utterance.
pub fn steps_spec() -> RollupSpec {
    RollupSpec {
        dims: vec!["session_id".into()],
        leaves: vec![LeafSpec {
            events: crate::definition::Events {
                event_types: vec!["utterance".into()],
                filters: vec![],
            },
            value: crate::definition::Value::Field(DefField::Column("intent".into())),
            kind: crate::compile::states::StateKind::Steps,
        }],
        bucket_ms: DAY_MS,
    }
}

/// Who was active when: one row per (workspace, UTC day, stage, user) with
/// utterances, the input of retention cohorts (first-seen week and active
/// weeks per user) without a scan of every utterance.
pub fn activity_spec() -> RollupSpec {
    RollupSpec {
        dims: vec!["stage".into(), "user_id".into()],
        leaves: vec![LeafSpec {
            events: crate::definition::Events {
                event_types: vec!["utterance".into()],
                filters: vec![],
            },
            value: crate::definition::Value::Count,
            kind: crate::compile::states::StateKind::Count,
        }],
        bucket_ms: DAY_MS,
    }
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
    /// The ids of `specs` (hashes of each spec and the state layout): the
    /// only rollups answered from and kept by builds.
    current: BTreeSet<String>,
    building: tokio::sync::Mutex<()>,
    parts: cache::PartCache,
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

/// A manifest write's failure (its change never refuses).
fn manifest_error(e: crate::storage::catalog::UpdateError<std::convert::Infallible>) -> Error {
    match e {
        crate::storage::catalog::UpdateError::Storage(e) => Error::Storage(e),
        crate::storage::catalog::UpdateError::Rejected(never) => match never {},
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
        .set_max_row_group_row_count(Some(PART_ROW_GROUP_ROWS))
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

/// Rows whose `time` lies in one of `days` (`YYYY-MM-DD`): one range per
/// run of consecutive days.
fn days_predicate(days: &[String]) -> datafusion::logical_expr::Expr {
    use crate::compile::ts;
    let mut starts: Vec<i64> = days
        .iter()
        .filter_map(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .map(events::day_start_millis)
        .collect();
    starts.sort_unstable();
    starts.dedup();
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for s in starts {
        match runs.last_mut() {
            Some(r) if r.1 == s => r.1 = s + DAY_MS,
            _ => runs.push((s, s + DAY_MS)),
        }
    }
    runs.into_iter()
        .map(|(a, b)| col("time").gt_eq(ts(a)).and(col("time").lt(ts(b))))
        .reduce(datafusion::logical_expr::Expr::or)
        .unwrap_or_else(|| datafusion::logical_expr::lit(false))
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
        let (_, manifest) = catalog.load::<Manifest>(MANIFEST).await?;
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
            current: builtin_specs().iter().map(RollupSpec::id).collect(),
            specs: builtin_specs(),
            building: tokio::sync::Mutex::new(()),
            parts: cache::PartCache::from_env(),
        }))
    }

    pub fn manifest(&self) -> Arc<Manifest> {
        Arc::clone(&self.manifest.read().expect("not poisoned"))
    }

    pub fn specs(&self) -> &[RollupSpec] {
        &self.specs
    }

    /// Bytes of decoded parts held in memory.
    pub fn cached_bytes(&self) -> u64 {
        self.parts.bytes()
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

    /// Every event file (relative paths), by day: one listing.
    async fn event_files(&self) -> Result<BTreeMap<String, BTreeSet<String>>> {
        let prefix = format!("{}=", events::DATE_COLUMN);
        let mut by_day: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for meta in self.store.list(EVENTS_DIR).await? {
            let rel = self.store.relative(&meta.location);
            let day = rel.split('/').find_map(|s| s.strip_prefix(&prefix));
            if let Some(day) = day
                && rel.ends_with(".parquet")
            {
                by_day
                    .entry(day.to_string())
                    .or_default()
                    .insert(rel.clone());
            }
        }
        Ok(by_day)
    }
}
