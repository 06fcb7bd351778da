//! Rollup parts kept decoded in memory.
//!
//! A dashboard request reads the same few dozen parts again and again, a
//! few rows of one workspace from each: opening each part (its footer,
//! its row group statistics, a read and a zstd decode per row group) cost
//! more than merging the rows. Parts never change once written (each has
//! a new name), so a part decoded once serves every later answer until it
//! is evicted; the cache is bounded by the decoded size
//! (`METRICSTORE_ROLLUP_CACHE_MB`).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;

use super::conform;
use crate::engine::{Error, Result};
use crate::storage::Store;

/// Default bound of the decoded parts kept, in MiB.
pub(super) const DEFAULT_CACHE_MB: u64 = 1024;

/// One decoded part: its rows sorted by workspace (as parts are written),
/// and where each workspace's rows are.
#[derive(Debug)]
pub(super) struct PartRows {
    rows: RecordBatch,
    by_workspace: HashMap<String, (usize, usize)>,
    bytes: u64,
}

impl PartRows {
    fn new(rows: RecordBatch) -> Result<Self, String> {
        let mut by_workspace: HashMap<String, (usize, usize)> = HashMap::new();
        let ws = datafusion::arrow::compute::cast(
            rows.column(0),
            &datafusion::arrow::datatypes::DataType::Utf8,
        )
        .map_err(|e| e.to_string())?;
        let ws = ws.as_string::<i32>();
        let mut start = 0;
        for i in 1..=rows.num_rows() {
            if i == rows.num_rows() || ws.value(i) != ws.value(start) {
                // Parts are written sorted by workspace: one run each.
                let entry = by_workspace
                    .entry(ws.value(start).to_string())
                    .or_insert((start, 0));
                if entry.0 + entry.1 != start {
                    return Err("rows not sorted by workspace".into());
                }
                entry.1 += i - start;
                start = i;
            }
        }
        let bytes = rows.get_array_memory_size() as u64;
        Ok(Self {
            rows,
            by_workspace,
            bytes,
        })
    }

    /// The rows of `workspace` (none if the part has none).
    pub(super) fn of(&self, workspace: &str) -> Option<RecordBatch> {
        self.by_workspace
            .get(workspace)
            .map(|&(offset, len)| self.rows.slice(offset, len))
    }
}

#[derive(Debug, Clone)]
struct BySize;

impl quick_cache::Weighter<String, Arc<PartRows>> for BySize {
    fn weight(&self, _key: &String, part: &Arc<PartRows>) -> u64 {
        part.bytes.max(1)
    }
}

/// Decoded parts by path, least recently used evicted first.
#[derive(Debug)]
pub(super) struct PartCache {
    parts: quick_cache::sync::Cache<String, Arc<PartRows>, BySize>,
}

impl PartCache {
    pub(super) fn new(capacity_bytes: u64) -> Self {
        // Parts are tens of KiB to a few MiB decoded.
        let items = (capacity_bytes / (256 * 1024)).clamp(64, 1 << 20) as usize;
        Self {
            parts: quick_cache::sync::Cache::with_weighter(items, capacity_bytes.max(1), BySize),
        }
    }

    /// The bound from `METRICSTORE_ROLLUP_CACHE_MB` (0 keeps nothing;
    /// unset or not a number: [`DEFAULT_CACHE_MB`]).
    pub(super) fn from_env() -> Self {
        let mb = std::env::var("METRICSTORE_ROLLUP_CACHE_MB")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(DEFAULT_CACHE_MB);
        Self::new(mb.saturating_mul(1024 * 1024))
    }

    /// Decoded bytes held now.
    pub(super) fn bytes(&self) -> u64 {
        self.parts.weight()
    }

    /// The part at `rel`, decoded with `schema`'s types, from memory or
    /// read once (concurrent readers of one part wait for one read;
    /// `get_or_insert_async` looks in memory first);
    /// `None` when it is gone (a build replaced it since the manifest was
    /// read: the caller answers from the events instead).
    pub(super) async fn get(
        &self,
        store: &Store,
        rel: &str,
        schema: &SchemaRef,
    ) -> Result<Option<Arc<PartRows>>> {
        let loaded = self
            .parts
            .get_or_insert_async(rel, async {
                let Some(batches) = store.read_parquet(&store.path(rel)).await? else {
                    return Err(Gone);
                };
                let schema = Arc::clone(schema);
                let rel = rel.to_string();
                tokio::task::spawn_blocking(move || decode(&rel, &schema, &batches))
                    .await
                    .map_err(|e| {
                        Error::from(datafusion::error::DataFusionError::External(Box::new(e)))
                    })?
                    .map(Arc::new)
                    .map_err(Missing::Failed)
            })
            .await;
        match loaded {
            Ok(p) => Ok(Some(p)),
            Err(Missing::Gone) => Ok(None),
            Err(Missing::Failed(e)) => Err(e),
        }
    }
}

/// Why a part could not be loaded.
enum Missing {
    Gone,
    Failed(Error),
}
use Missing::Gone;

impl From<Error> for Missing {
    fn from(e: Error) -> Self {
        Missing::Failed(e)
    }
}

impl From<crate::storage::Error> for Missing {
    fn from(e: crate::storage::Error) -> Self {
        Missing::Failed(e.into())
    }
}

/// One part's batches as one batch of `schema`, indexed by workspace.
fn decode(rel: &str, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<PartRows> {
    let batches = batches
        .iter()
        .map(|b| conform(b, schema))
        .collect::<Result<Vec<_>>>()?;
    let rows = datafusion::arrow::compute::concat_batches(schema, &batches)
        .map_err(datafusion::error::DataFusionError::from)?;
    PartRows::new(rows).map_err(|reason| Error::BadFile {
        path: rel.to_string(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("workspace_id", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
        ]))
    }

    fn batch(ws: &[&str], n: &[i64]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(ws.to_vec())),
                Arc::new(Int64Array::from(n.to_vec())),
            ],
        )
        .unwrap()
    }

    fn values(b: &RecordBatch) -> Vec<i64> {
        b.column(1)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
            .values()
            .to_vec()
    }

    /// A store holding `batches` as the part `p.parquet`.
    async fn store_with_part(batches: &[RecordBatch]) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let bytes = super::super::encode(&schema(), batches).unwrap();
        store
            .put_durable(&store.path("p.parquet"), bytes)
            .await
            .unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn a_part_is_read_once_and_sliced_by_workspace() {
        // Two batches, so the decoded part is one concatenation of both.
        let (_dir, store) = store_with_part(&[
            batch(&["a", "a", "b"], &[1, 2, 3]),
            batch(&["b", "c"], &[4, 5]),
        ])
        .await;
        let cache = PartCache::new(1 << 20);
        let part = cache
            .get(&store, "p.parquet", &schema())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(values(&part.of("a").unwrap()), [1, 2]);
        assert_eq!(values(&part.of("b").unwrap()), [3, 4]);
        assert_eq!(values(&part.of("c").unwrap()), [5]);
        assert!(part.of("d").is_none());
        assert!(cache.bytes() > 0);
        // Deleted from the store, still answered from memory.
        store
            .delete_if_exists(&store.path("p.parquet"))
            .await
            .unwrap();
        let again = cache
            .get(&store, "p.parquet", &schema())
            .await
            .unwrap()
            .unwrap();
        assert!(Arc::ptr_eq(&part, &again));
        // A part that is not there is `None`, not an error.
        assert!(
            cache
                .get(&store, "q.parquet", &schema())
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_part_not_sorted_by_workspace_is_refused_by_name() {
        let (_dir, store) = store_with_part(&[batch(&["a", "b", "a"], &[1, 2, 3])]).await;
        let err = PartCache::new(1 << 20)
            .get(&store, "p.parquet", &schema())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("p.parquet"), "{err}");
    }

    #[tokio::test]
    async fn a_zero_bound_keeps_nothing_but_still_answers() {
        let (_dir, store) = store_with_part(&[batch(&["a"], &[7])]).await;
        let cache = PartCache::new(0);
        let part = cache
            .get(&store, "p.parquet", &schema())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(values(&part.of("a").unwrap()), [7]);
        assert_eq!(cache.bytes(), 0);
    }
}
