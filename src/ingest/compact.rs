//! Compaction: partitions holding many small ingest files become one file,
//! under the publish lock, so no reader ever counts a row twice.

use super::{Ingest, Result, new_id};
use crate::storage::events::{self, DATE_COLUMN, EVENTS_DIR};

impl Ingest {
    /// Merges the ingest files of every partition holding more than
    /// `threshold` of them into one file. Returns the partitions compacted.
    pub async fn compact(&self, threshold: usize) -> Result<usize> {
        let _one = self.flushing.lock().await;
        let files = self.store.list(EVENTS_DIR).await?;
        let mut by_day: std::collections::BTreeMap<String, Vec<object_store::path::Path>> =
            Default::default();
        for m in files {
            let loc = m.location.as_ref();
            let name = loc.rsplit('/').next().unwrap_or_default();
            if !(name.starts_with("ingest-") && name.ends_with(".parquet")) {
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
            let _guard = self.pending.publish.write().await;
            self.store.put_durable(&target, bytes).await?;
            for p in &paths {
                self.store.delete_if_exists(p).await?;
            }
            compacted += 1;
        }
        Ok(compacted)
    }
}
