//! Recovery on start: finish any manifest (re-publishing its file under
//! the same name is idempotent), then flush the segments left.

use super::{Ingest, Manifest, Result};
use crate::storage;

impl Ingest {
    /// Finishes what a previous process left in the log: manifests first,
    /// then segments never flushed. Run before serving.
    pub async fn recover(&self) -> Result<usize> {
        self.recover_compactions().await?;
        let mut listed = self.store.list("wal").await?;
        listed.sort_by(|a, b| a.location.as_ref().cmp(b.location.as_ref()));
        let mut in_manifest = std::collections::HashSet::new();
        let file_name = |m: &object_store::ObjectMeta| {
            m.location
                .as_ref()
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string()
        };
        for meta in listed.iter().filter(|m| {
            let name = file_name(m);
            name.starts_with("flush-") && name.ends_with(".json")
        }) {
            let Some(bytes) = self.store.get_opt(&meta.location).await? else {
                continue;
            };
            let manifest: Manifest =
                serde_json::from_slice(&bytes).map_err(|e| storage::Error::Corrupt {
                    path: meta.location.to_string(),
                    reason: e.to_string(),
                })?;
            let mut batches = Vec::new();
            for id in &manifest.segments {
                in_manifest.insert(id.clone());
                if let Some(b) = self.read_segment(id).await? {
                    batches.push(b);
                }
            }
            // Segments are deleted only after every file is published, so
            // if one is gone the publish finished; otherwise redo it (the
            // same names, so it overwrites rather than duplicates).
            if batches.len() == manifest.segments.len() {
                self.publish(&manifest.name, &manifest.segments, &batches)
                    .await?;
            }
            self.retire(&meta.location, &manifest.segments).await?;
        }
        for meta in listed.iter() {
            let name = meta
                .location
                .as_ref()
                .rsplit('/')
                .next()
                .unwrap_or_default();
            let Some(id) = name
                .strip_prefix("seg-")
                .and_then(|n| n.strip_suffix(".parquet"))
            else {
                continue;
            };
            if in_manifest.contains(id) {
                continue;
            }
            if let Some(b) = self.read_segment(id).await? {
                self.pending.insert(id, b);
            }
        }
        // Sidecars of keyed bodies whose segment never landed (or is
        // retired, its record stored): nothing to keep.
        // The listing says which segments there were; those a manifest
        // retired took their sidecars with them.
        let names: std::collections::HashSet<String> = listed.iter().map(file_name).collect();
        for meta in &listed {
            let name = file_name(meta);
            if let Some(id) = name
                .strip_prefix("seg-")
                .and_then(|n| n.strip_suffix(".key.json"))
                && !names.contains(&format!("seg-{id}.parquet"))
            {
                self.store.delete_if_exists(&meta.location).await?;
            }
        }
        let rows = self.pending.rows();
        self.flush().await?;
        Ok(rows)
    }
}
