//! Flush: a manifest naming the segments and the file to make, one
//! Parquet file per day published under the publish lock (dropping the
//! same rows from memory), then the segments and the manifest deleted; and
//! the background task that flushes and compacts.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;

use super::{Ingest, Manifest, Result, new_id};
use crate::storage;
use crate::storage::events::{self, DATE_COLUMN, EVENTS_DIR};

/// When the background task compacts: every `every_flushes` flushes, the
/// days holding more than `files` ingest files.
#[derive(Debug, Clone, Copy)]
pub struct Compaction {
    pub every_flushes: u64,
    pub files: usize,
}

impl Default for Compaction {
    fn default() -> Self {
        Self {
            every_flushes: 60,
            files: 32,
        }
    }
}

impl Ingest {
    pub(super) fn segment_path(&self, id: &str) -> object_store::path::Path {
        self.store.path(&format!("wal/seg-{id}.parquet"))
    }

    pub(super) async fn read_segment(&self, id: &str) -> Result<Option<RecordBatch>> {
        let Some(batches) = self.store.read_parquet(&self.segment_path(id)).await? else {
            return Ok(None);
        };
        let batch = datafusion::arrow::compute::concat_batches(&events::schema(), &batches)
            .map_err(storage::Error::from)?;
        Ok(Some(batch))
    }

    /// Publishes `batches` (the segments `ids`) as `ingest-{name}.parquet`
    /// in each day they touch, then forgets them in memory, atomically for
    /// readers.
    pub(super) async fn publish(
        &self,
        name: &str,
        ids: &[String],
        batches: &[RecordBatch],
    ) -> Result<()> {
        let merged = datafusion::arrow::compute::concat_batches(&events::schema(), batches)
            .map_err(storage::Error::from)?;
        let days = events::split_by_day(&merged)?;
        let mut encoded = Vec::with_capacity(days.len());
        for (date, day) in days {
            encoded.push((date, events::encode_parquet(&[day])?));
        }
        let _guard = self.pending.publish.write().await;
        for (date, bytes) in encoded {
            let path = self.store.path(&format!(
                "{EVENTS_DIR}/{DATE_COLUMN}={date}/ingest-{name}.parquet"
            ));
            self.store.put_durable(&path, bytes).await?;
        }
        self.pending.remove(ids);
        Ok(())
    }

    pub(super) async fn retire(
        &self,
        manifest: &object_store::path::Path,
        ids: &[String],
    ) -> Result<()> {
        for id in ids {
            // A keyed segment's record is stored before the segment goes,
            // so a resent body still finds its answer.
            let keyed = id.starts_with('k');
            if keyed {
                self.settle_key(id).await?;
            }
            self.store.delete_if_exists(&self.segment_path(id)).await?;
            if keyed {
                self.store.delete_if_exists(&self.sidecar_path(id)).await?;
            }
        }
        self.store.delete_if_exists(manifest).await?;
        Ok(())
    }

    /// Publishes every pending segment; returns the rows published.
    pub async fn flush(&self) -> Result<usize> {
        let mut unfinished = self.flushing.lock().await;
        // A flush that failed half-way first, under its own names: the
        // days it published are overwritten, not published again.
        if let Some(m) = unfinished.clone() {
            let manifest_path = self.store.path(&format!("wal/flush-{}.json", m.name));
            let batches: Vec<RecordBatch> = m
                .segments
                .iter()
                .filter_map(|id| self.pending.get(id))
                .collect();
            if batches.len() == m.segments.len() {
                self.publish(&m.name, &m.segments, &batches).await?;
            }
            self.retire(&manifest_path, &m.segments).await?;
            *unfinished = None;
        }
        let ids = self.pending.ids();
        if ids.is_empty() {
            return Ok(0);
        }
        let batches: Vec<RecordBatch> = ids.iter().filter_map(|id| self.pending.get(id)).collect();
        let rows = batches.iter().map(|b| b.num_rows()).sum();
        let name = new_id();
        let manifest_path = self.store.path(&format!("wal/flush-{name}.json"));
        let manifest = Manifest {
            segments: ids.clone(),
            name: name.clone(),
        };
        self.store
            .put_durable(
                &manifest_path,
                serde_json::to_vec(&manifest).expect("serialisable"),
            )
            .await?;
        *unfinished = Some(manifest);
        self.publish(&name, &ids, &batches).await?;
        self.retire(&manifest_path, &ids).await?;
        *unfinished = None;
        Ok(rows)
    }

    /// Flushes every `every` (or sooner when the backlog passes a quarter
    /// of its limit) and compacts now and then, until the process ends.
    pub fn spawn_background(self: &Arc<Self>, every: Duration, compaction: Compaction) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticks = 0u64;
            loop {
                let mut waited = Duration::ZERO;
                while waited < every && this.pending.rows() < this.limits.max_pending_rows / 4 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    waited += Duration::from_millis(50);
                }
                if let Err(e) = this.flush().await {
                    tracing::error!(error = %e, "flushing ingested events failed; will retry");
                }
                ticks += 1;
                if ticks.is_multiple_of(compaction.every_flushes.max(1))
                    && let Err(e) = this.compact(compaction.files).await
                {
                    tracing::error!(error = %e, "compaction failed; will retry");
                }
            }
        });
    }
}
