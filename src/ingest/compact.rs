//! Compaction: partitions holding many small ingest files become one file,
//! under the publish lock, so no reader of this server counts a row twice.
//!
//! An intent (`wal/compact-{id}.json`: the file to make and the files it
//! replaces) is written before the merged file; the sources are deleted
//! after it, then the intent. Recovery finishes an intent whose merged file
//! exists (deletes the sources left) and drops one whose file was never
//! written, so a kill at any step leaves every row once.

use serde::{Deserialize, Serialize};

use super::{Ingest, Result, new_id};
use crate::storage;
use crate::storage::events::{self, DATE_COLUMN, EVENTS_DIR};

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct CompactIntent {
    /// Paths relative to the store's root.
    target: String,
    sources: Vec<String>,
}

impl Ingest {
    /// Finishes or drops the compaction intents a killed process left.
    pub(super) async fn recover_compactions(&self) -> Result<usize> {
        let mut finished = 0;
        for meta in self.store.list("wal").await? {
            let name = meta
                .location
                .as_ref()
                .rsplit('/')
                .next()
                .unwrap_or_default();
            if !(name.starts_with("compact-") && name.ends_with(".json")) {
                continue;
            }
            let Some(bytes) = self.store.get_opt(&meta.location).await? else {
                continue;
            };
            let intent: CompactIntent =
                serde_json::from_slice(&bytes).map_err(|e| storage::Error::Corrupt {
                    path: meta.location.to_string(),
                    reason: e.to_string(),
                })?;
            let target = self.store.path(&intent.target);
            if self.store.exists(&target).await? {
                for s in &intent.sources {
                    self.store.delete_if_exists(&self.store.path(s)).await?;
                }
                finished += 1;
            }
            self.store.delete_if_exists(&meta.location).await?;
        }
        Ok(finished)
    }

    /// Merges the ingest files of every partition holding more than
    /// `threshold` of them into one file. Returns the partitions compacted.
    pub async fn compact(&self, threshold: usize) -> Result<usize> {
        let unfinished = self.flushing.lock().await;
        // The files of a flush that failed half-way stay out: its retry
        // writes them again under the same names, which would count their
        // rows twice if they had been merged away meanwhile.
        let in_flight = unfinished
            .as_ref()
            .map(|m| format!("ingest-{}.parquet", m.name));
        // A compaction that failed half-way (its merged file written, a
        // source not deleted yet) is finished first, or its sources would
        // be merged a second time. Under the publish lock, as the
        // compaction itself: no reader sees the merged file and a source.
        {
            let _guard = self.pending.publish.write().await;
            self.recover_compactions().await?;
        }
        let files = self.store.list(EVENTS_DIR).await?;
        let mut by_day: std::collections::BTreeMap<String, Vec<object_store::path::Path>> =
            Default::default();
        for m in files {
            let loc = m.location.as_ref();
            let name = loc.rsplit('/').next().unwrap_or_default();
            if !(name.starts_with("ingest-") && name.ends_with(".parquet"))
                || in_flight.as_deref() == Some(name)
            {
                continue;
            }
            if let Some(day) = loc.split('/').find_map(|p| p.strip_prefix("date=")) {
                by_day
                    .entry(day.to_string())
                    .or_default()
                    .push(m.location.clone());
            }
        }
        let mut compacted = 0;
        for (day, paths) in by_day.into_iter().filter(|(_, p)| p.len() > threshold) {
            let mut batches = Vec::new();
            for p in &paths {
                if let Some(b) = self.store.read_parquet(p).await? {
                    batches.extend(b);
                }
            }
            let bytes = events::encode_parquet(&batches)?;
            let target = self.store.path(&format!(
                "{EVENTS_DIR}/{DATE_COLUMN}={day}/compact-{}.parquet",
                new_id()
            ));
            let intent_path = self.store.path(&format!("wal/compact-{}.json", new_id()));
            let intent = CompactIntent {
                target: self.store.relative(&target),
                sources: paths.iter().map(|p| self.store.relative(p)).collect(),
            };
            self.store
                .put_durable(
                    &intent_path,
                    serde_json::to_vec(&intent).expect("serialisable"),
                )
                .await?;
            let _guard = self.pending.publish.write().await;
            self.store.put_durable(&target, bytes).await?;
            for p in &paths {
                self.store.delete_if_exists(p).await?;
            }
            self.store.delete_if_exists(&intent_path).await?;
            compacted += 1;
        }
        Ok(compacted)
    }
}
